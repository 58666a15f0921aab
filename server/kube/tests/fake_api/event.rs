//! Pod events against the fake API server (standing in for the real one), whose create
//! validation follows events.k8s.io/v1's rules.

use plexus_kube::{PodKey, Recorder, event};
use plexus_kube_fake::Resource;

use crate::support::{self, FAST, eventually};

#[tokio::test]
async fn every_event_shape_is_accepted_and_refers_to_the_pod() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    let pod = PodKey {
        namespace: "default".to_string(),
        name: "web".to_string(),
        uid: uid.clone(),
    };
    let recorder = Recorder::start_with(support::client(&fake).await, "node-a", 64, FAST);
    let reports = [
        event::added_interface("net1", &["10.1.1.5/24".to_string()], "default/macvlan-conf"),
        event::added_interface("net2", &["10.2.0.7/16".to_string()], "default/bridge"),
        event::no_network_found("default", "missing", "not found"),
        event::attach_failed("default/br", "net3", "link br0 not found"),
    ];
    for r in &reports {
        assert!(recorder.record(&pod, r));
    }
    eventually("four events", || async { recorder.stats().delivered == 4 }).await;
    assert_eq!(recorder.stats().dropped, 0, "{:?}", recorder.stats());
    let events = fake.list(Resource::Event, Some("default"));
    let mut notes: Vec<&str> = events.iter().map(|e| e["note"].as_str().unwrap()).collect();
    notes.sort_unstable();
    let mut want: Vec<&str> = reports.iter().map(|r| r.note.as_str()).collect();
    want.sort_unstable();
    assert_eq!(
        notes, want,
        "one event per interface, none folded into another"
    );
    for e in &events {
        assert_eq!(e["regarding"]["uid"], uid.as_str());
        assert_eq!(e["regarding"]["kind"], "Pod");
        assert_eq!(e["reportingController"], "plexus");
        assert_eq!(e["reportingInstance"], "plexus-node-a");
    }
}
