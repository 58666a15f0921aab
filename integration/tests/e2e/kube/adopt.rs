//! Adoption on the CNI shim path (issue 12): with NRI off there is no Synchronize, so plexusd
//! asks containerd's API (`containerd.socket`) which pods run. A pod started before plexus
//! was installed (containerd ran the primary conflist itself) is adopted as it is — eth0
//! untouched — and a later annotation edit is acted on; its delete then leaves nothing.

use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::NAMESPACE;
use plexus_integration::plexus;
use plexus_integration::{PodSpec, require_privileged};

use super::hotplug::{attach_by_annotation_then_delete, names};
use super::{Api, KubeEnv, PROMPT};
use crate::common::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_shim_a_pod_started_before_plexus_is_adopted_through_containerd() {
    if !require_privileged() {
        return;
    }
    let containerd = Containerd::start(containerd::Options {
        nri: false,
        private_cni_bin: true,
        ..containerd::Options::default()
    })
    .await
    .unwrap();
    let api = Api::start_in(containerd.host_netns().path());
    // plexus is not installed yet: containerd runs its primary conflist itself.
    let spec = api.create_pod(&PodSpec::new(NAMESPACE, "shim-old"));
    let pod = containerd.run_pod(&spec).await.unwrap();
    let eth0 = pod.interface("eth0").unwrap();

    let opts = plexus::Options {
        shim: true,
        containerd_adoption: true,
        ..plexus::Options::default()
    };
    let k = KubeEnv::start_plexus(containerd, api, opts).await;
    k.env.wait_shim_loaded().await.unwrap();

    // No NRI: only containerd's API can have told plexusd about the pod.
    let plexus = &k.env.plexus;
    let id = pod.id.clone();
    eventually(
        "the pod to be adopted through containerd",
        PROMPT,
        || async {
            plexus
                .attachments_of(&id)
                .await
                .is_ok_and(|a| a.iter().any(|a| a.interface == "eth0"))
        },
    )
    .await;
    let adopted = plexus.attachments_of(&pod.id).await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].driver, "runtime", "{adopted:?}");
    assert_eq!(
        (
            adopted[0].pod.as_ref().unwrap().name.as_str(),
            adopted[0].netns_path.as_str()
        ),
        ("shim-old", pod.netns.to_str().unwrap()),
        "identity and netns from containerd's CRI metadata"
    );
    assert_eq!(names(&pod), ["eth0"]);
    assert_eq!(
        pod.interface("eth0").unwrap(),
        eth0,
        "adoption touched eth0"
    );
    let log = std::fs::read_to_string(&plexus.paths().plexusd_log).unwrap();
    assert!(log.contains("adopted live pods"), "{log}");

    // A later edit of the annotation is acted on; the delete leaves nothing.
    attach_by_annotation_then_delete(&k, &pod).await;
    assert!(
        k.env.primary_leases().is_empty(),
        "the primary's lease of the adopted pod: {:?}\n{}",
        k.env.primary_leases(),
        std::fs::read_to_string(&k.env.plexus.paths().plexusd_log).unwrap_or_default()
    );
}
