use super::*;

fn sid(id: &str) -> SandboxId {
    SandboxId::new(id).unwrap()
}

pub(crate) fn planned(iface: &str) -> PlannedAttachment {
    serde_json::from_value(serde_json::json!({
        "index": 1, "network": "default/net-a", "interface": iface, "origin": "annotation",
        "primary": false, "source": {"kind": "nad", "namespace": "default", "name": "net-a"},
        "config": {"form": "conf", "name": "net-a", "cni_version": "1.0.0",
            "plugin_types": ["macvlan"],
            "bytes": br#"{"cniVersion":"1.0.0","name":"net-a","type":"macvlan"}"#.to_vec()},
    }))
    .unwrap()
}

fn record() -> SandboxRecord {
    SandboxRecord {
        version: RECORD_VERSION,
        sandbox_id: sid("sb1"),
        pod: PodIdentity::new("default", "p", "u"),
        netns: "/var/run/netns/x".into(),
        attachments: vec![AttachmentRecord {
            network: "default/net-a".into(),
            interface: plexus_core::InterfaceName::new("net1").unwrap(),
            driver: Driver::Native,
            phase: Phase::Intent,
            planned: planned("net1"),
            result: None,
            native: NativeRecord {
                kind: "macvlan".into(),
                leases: vec![LeaseRecord {
                    dir: "/var/lib/cni/networks/net-a".into(),
                    container_id: "sb1".into(),
                    ifname: "net1".into(),
                    ips: vec![],
                }],
                ..Default::default()
            },
        }],
        tearing_down: false,
    }
}

#[test]
fn save_load_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s")).unwrap();
    assert_eq!(store.load(&sid("sb1")).unwrap(), None);
    let rec = record();
    store.save(&rec).unwrap();
    assert_eq!(store.load(&sid("sb1")).unwrap(), Some(rec.clone()));
    assert_eq!(store.ids().unwrap(), vec![sid("sb1")]);
    // No temp files are left behind.
    let names: Vec<_> = fs::read_dir(store.dir()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
    store.remove(&sid("sb1")).unwrap();
    store.remove(&sid("sb1")).unwrap();
    assert_eq!(store.load(&sid("sb1")).unwrap(), None);
}

#[test]
fn tearing_down_is_optional_on_disk_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rec = record();
    store.save(&rec).unwrap();
    // Not written while unset: records stay readable by the previous format.
    let text = fs::read_to_string(store.path(&sid("sb1"))).unwrap();
    assert!(!text.contains("tearing_down"), "{text}");
    rec.tearing_down = true;
    store.save(&rec).unwrap();
    assert!(store.load(&sid("sb1")).unwrap().unwrap().tearing_down);
}

#[test]
fn corrupt_or_truncated_record_is_an_error_not_absence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(&record()).unwrap();
    let bytes = fs::read(store.path(&sid("sb1"))).unwrap();
    fs::write(store.path(&sid("sb1")), &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        store.load(&sid("sb1")),
        Err(Error::CorruptRecord { .. })
    ));
    fs::write(store.path(&sid("sb1")), b"").unwrap();
    assert!(matches!(
        store.load(&sid("sb1")),
        Err(Error::CorruptRecord { .. })
    ));
}

#[test]
fn record_under_the_wrong_name_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(&record()).unwrap();
    fs::rename(store.path(&sid("sb1")), store.path(&sid("sb2"))).unwrap();
    assert!(matches!(
        store.load(&sid("sb2")),
        Err(Error::CorruptRecord { .. })
    ));
}

#[test]
fn ids_skips_files_whose_stem_is_not_a_sandbox_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(&record()).unwrap();
    fs::write(dir.path().join("-x.json"), b"{}").unwrap();
    fs::write(dir.path().join("a b.json"), b"{}").unwrap();
    fs::write(dir.path().join(format!("{}.json", "a".repeat(200))), b"{}").unwrap();
    assert_eq!(store.ids().unwrap(), vec![sid("sb1")]);
}

#[test]
fn a_record_naming_an_invalid_sandbox_id_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(&record()).unwrap();
    let text = fs::read_to_string(store.path(&sid("sb1"))).unwrap();
    let text = text.replace(r#""sandbox_id":"sb1""#, r#""sandbox_id":"../sb1""#);
    fs::write(store.path(&sid("sb1")), text).unwrap();
    assert!(matches!(
        store.load(&sid("sb1")),
        Err(Error::CorruptRecord { .. })
    ));
}

#[test]
fn an_unchanged_record_is_parsed_once_and_every_change_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s")).unwrap();
    let mut a = record();
    store.save(&a).unwrap();
    // Written by an earlier plexusd (another store): parsed once by this one.
    let mut b = record();
    b.sandbox_id = sid("sb2");
    Store::open(store.dir()).unwrap().save(&b).unwrap();
    let ids = |s: &Store| -> Vec<String> {
        s.all()
            .unwrap()
            .iter()
            .map(|r| r.sandbox_id.to_string())
            .collect()
    };
    assert_eq!(ids(&store), ["sb1", "sb2"]);
    assert_eq!(store.index.misses(), 1, "only sb2 was parsed");
    for _ in 0..3 {
        assert_eq!(ids(&store), ["sb1", "sb2"]);
        assert_eq!(store.load(&sid("sb1")).unwrap(), Some(a.clone()));
    }
    assert_eq!(store.index.misses(), 1, "unchanged files were parsed again");
    // Changed behind this store's back: seen at once.
    a.attachments.clear();
    Store::open(store.dir()).unwrap().save(&a).unwrap();
    assert!(
        store
            .load(&sid("sb1"))
            .unwrap()
            .unwrap()
            .attachments
            .is_empty()
    );
    fs::remove_file(store.path(&sid("sb2"))).unwrap();
    assert_eq!(ids(&store), ["sb1"]);
    assert_eq!(store.load(&sid("sb2")).unwrap(), None);
    // Truncated in place (same inode): not served from memory.
    let path = store.path(&sid("sb1"));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        store.load(&sid("sb1")),
        Err(Error::CorruptRecord { .. })
    ));
}

#[test]
fn an_unreadable_record_is_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s")).unwrap();
    fs::write(store.path(&sid("sb1")), b"{\"version\":2,").unwrap();
    assert!(store.all().unwrap().is_empty());
    for _ in 0..2 {
        assert!(matches!(
            store.load(&sid("sb1")),
            Err(Error::CorruptRecord { .. })
        ));
    }
    // Rewritten whole: the next load reads it.
    store.save(&record()).unwrap();
    assert_eq!(store.load(&sid("sb1")).unwrap(), Some(record()));
}

#[test]
fn a_done_write_is_whole_at_once_and_its_directory_sync_follows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s")).unwrap();
    store.save(&record()).unwrap();
    let mut done = record();
    done.attachments[0].phase = Phase::Done;

    // Without a runtime the directory's fsync runs at once.
    store.save_done(&done).unwrap();
    assert_eq!(store.load(&sid("sb1")).unwrap(), Some(done.clone()));
    assert_eq!(store.dir_sync.counts(), (1, 1));

    // On a runtime it runs on the blocking pool; the record is already the done version
    // for every reader, and a flush makes it durable.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    done.attachments[0].native.kind = "ipvlan".into();
    rt.block_on(async { store.save_done(&done) }).unwrap();
    assert_eq!(store.load(&sid("sb1")).unwrap(), Some(done));
    store.flush_deferred();
    assert_eq!(store.dir_sync.counts(), (2, 2));
    assert_eq!(store.dir_sync.syncs(), 2);
    // No temp file is left behind.
    let names: Vec<_> = fs::read_dir(store.dir()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_teardown_mark_is_applied_by_every_read_and_lives_as_long_as_the_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rec = record();
    rec.attachments[0].phase = Phase::Done;
    let mut runtime = rec.attachments[0].clone();
    runtime.interface = plexus_core::InterfaceName::new("eth0").unwrap();
    runtime.driver = Driver::Runtime;
    rec.attachments.insert(0, runtime);
    store.save(&rec).unwrap();
    let text = fs::read_to_string(store.path(&sid("sb1"))).unwrap();
    let fsyncs = super::fsyncs();

    store.mark(&sid("sb1")).unwrap();
    assert_eq!(super::fsyncs(), fsyncs, "a mark costs no fsync");
    assert_eq!(
        fs::read_to_string(store.path(&sid("sb1"))).unwrap(),
        text,
        "not rewritten"
    );
    let mut marked = rec.clone();
    assert!(marked.mark_for_teardown());
    assert!(!marked.clone().mark_for_teardown(), "marked once");
    assert_eq!(store.load(&sid("sb1")).unwrap(), Some(marked.clone()));
    let phases: Vec<Phase> = marked.attachments.iter().map(|a| a.phase).collect();
    assert_eq!(
        phases,
        [Phase::Done, Phase::Removing],
        "the runtime's own is not plexus's to remove"
    );
    assert_eq!(store.all().unwrap(), vec![marked.clone()]);
    assert_eq!(
        store.ids().unwrap(),
        vec![sid("sb1")],
        "a mark is not a record"
    );
    // Rewritten while tearing down (what is left of it), the mark stays.
    marked.attachments.remove(0);
    store.save(&marked).unwrap();
    assert!(dir.path().join("sb1.tearing-down").is_file());
    // The record's removal takes the mark with it.
    store.remove(&sid("sb1")).unwrap();
    assert!(!dir.path().join("sb1.tearing-down").exists());

    // A mark left from an earlier teardown of the id (a power loss between the two
    // removals) does not apply to a new record: its first write removes it.
    store.mark(&sid("sb1")).unwrap();
    store.save(&rec).unwrap();
    assert!(!dir.path().join("sb1.tearing-down").exists());
    assert_eq!(store.load(&sid("sb1")).unwrap(), Some(rec.clone()));
}

#[test]
fn start_up_removes_only_the_marks_whose_record_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(&record()).unwrap();
    store.mark(&sid("sb1")).unwrap();
    store.mark(&sid("sb2")).unwrap();
    fs::write(dir.path().join("notes.txt"), "not plexus's").unwrap();
    fs::create_dir(dir.path().join("sb3.tearing-down")).unwrap();
    let removed = store.remove_orphan_marks().unwrap();
    assert_eq!(removed, vec![dir.path().join("sb2.tearing-down")]);
    assert!(
        dir.path().join("sb1.tearing-down").is_file(),
        "its record is there"
    );
    assert!(dir.path().join("notes.txt").is_file());
    assert!(
        dir.path().join("sb3.tearing-down").is_dir(),
        "not a file: not a mark"
    );
    assert!(store.load(&sid("sb1")).unwrap().unwrap().tearing_down);
}
