use std::time::Duration;

#[test]
fn undone_text_is_truthful_in_every_combination() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cut = s(&["undo cut short after 300ms: net2, net1, eth0 left to teardown/recovery"]);
    assert_eq!(
        super::undone_text(&[], &[]),
        "nothing had been attached yet, so nothing was undone"
    );
    assert_eq!(
        super::undone_text(&s(&["net1 (iot/a)"]), &[]),
        "undid net1 (iot/a)"
    );
    let text = super::undone_text(&[], &cut);
    assert!(!text.contains("nothing had been attached"), "{text}");
    assert!(
        text.starts_with("nothing could be undone in time, left to teardown: undo cut short"),
        "{text}"
    );
    assert!(text.contains("net2, net1, eth0"), "{text}");
    let text = super::undone_text(&s(&["net3 (iot/c)"]), &cut);
    assert!(!text.contains("nothing"), "{text}");
    assert!(
        text.starts_with("undid net3 (iot/c); not undone, left to teardown: "),
        "{text}"
    );
}

use plexus_engine::{AttachmentEvent, Call, Observer, Op, Outcome};

use super::*;

#[tokio::test]
async fn an_unreadable_record_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(plexus_engine::EngineConfig::new(dir.path())).unwrap();
    std::fs::write(dir.path().join("sb-broken.json"), b"{not json").unwrap();
    let attacher = EngineAttacher::new(engine);
    let err = attacher
        .sandbox(&SandboxId::new("sb-broken").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("reading state of sandbox sb-broken: "),
        "{err}"
    );
}

#[tokio::test]
async fn a_dhcp_lease_file_gives_the_attachment_its_expiry() {
    use plexus_engine::ipam::dhcp::{Granted, LeaseFile, LeaseStore};
    let dir = tempfile::tempdir().unwrap();
    let cfg = plexus_engine::EngineConfig::new(dir.path());
    let store = LeaseStore::new(&cfg.dhcp_lease_dir);
    let attacher = EngineAttacher::new(Engine::open(cfg).unwrap());
    let lease: LeaseFile = serde_json::from_value(serde_json::json!({
        "network": "lan", "sandbox_id": "sb1", "ifname": "net1", "netns": "/run/netns/x",
        "mac": [2, 0, 0, 0, 0, 1], "timeout_secs": 10, "bound_at": 1000,
        "granted": serde_json::to_value(Granted {
            address: "192.0.2.5".parse().unwrap(), prefix_len: 24,
            server_id: "192.0.2.1".parse().unwrap(), router: None,
            classless_routes: vec![], dns: vec![], domain: None,
            lease_secs: 600, t1_secs: 300, t2_secs: 525,
        }).unwrap(),
    }))
    .unwrap();
    store.save(&lease).unwrap();
    let view = |iface: &str| AttachmentView {
        network: "default/lan".into(),
        interface: iface.into(),
        ips: vec![],
        mac: String::new(),
        driver: "native".into(),
        plugin: "macvlan".into(),
        origin: "annotation".into(),
        state: AttachmentState::Attached,
        mtu: None,
        gateways: vec![],
        primary: false,
        lease_expires: None,
        result: None,
    };
    let sb = attacher.with_dhcp_leases(SandboxView {
        sandbox_id: plexus_core::id::SandboxId::new("sb1").unwrap(),
        pod: plexus_core::pod::PodIdentity::new("default", "p", "u"),
        netns: "/run/netns/x".into(),
        attachments: vec![view("net1"), view("net2")],
    });
    assert_eq!(sb.attachments[0].lease_expires, Some(1600));
    assert_eq!(sb.attachments[1].lease_expires, None);
}

#[tokio::test]
async fn engine_errors_keep_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(plexus_engine::EngineConfig::new(dir.path())).unwrap();
    // A directory where the record should be: the read fails with EISDIR, a `source`.
    std::fs::create_dir(dir.path().join("sb-dir.json")).unwrap();
    let attacher = EngineAttacher::new(engine);
    let err = attacher
        .sandbox(&SandboxId::new("sb-dir").unwrap())
        .unwrap_err()
        .to_string();
    let cause = std::io::Error::from_raw_os_error(libc::EISDIR).to_string();
    let cause = cause.split(" (os error").next().unwrap();
    assert!(err.contains(cause), "{err}");
}

#[test]
fn engine_timings_land_in_the_histograms_by_path_and_driver() {
    let mut registry = plexus_telemetry::Registry::default();
    let bridge = EngineMetrics(plexus_telemetry::Metrics::new(&mut registry));
    let event = |op, call, driver| AttachmentEvent {
        op,
        call,
        network: "iot/lan",
        interface: "net1",
        driver,
        elapsed: Duration::from_millis(3),
        outcome: Outcome::Ok,
    };
    bridge.attachment_done(&event(Op::Setup, Call::Setup, Driver::Native));
    bridge.attachment_done(&event(Op::Setup, Call::Attach, Driver::Exec));
    bridge.attachment_done(&event(Op::Teardown, Call::Teardown, Driver::Native));
    // Inside an entry point's scope, the step is labelled with it.
    let failed = AttachmentEvent {
        outcome: Outcome::Error("plugin_failed"),
        ..event(Op::Setup, Call::Setup, Driver::Exec)
    };
    let in_cni = async { bridge.attachment_done(&failed) };
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(crate::entry::scope(plexus_telemetry::Path::Cni, in_cni));
    let text = plexus_telemetry::render(&registry);
    for series in [
        r#"plexus_setup_duration_seconds_count{path="nri",driver="native",outcome="ok"} 1"#,
        r#"plexus_setup_duration_seconds_count{path="api",driver="exec",outcome="ok"} 1"#,
        r#"plexus_teardown_duration_seconds_count{path="nri",driver="native",outcome="ok"} 1"#,
        r#"plexus_setup_duration_seconds_count{path="cni",driver="exec",outcome="error"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
}
