//! Store rules: versions, update preconditions, immutable metadata, history and compaction.

use serde_json::json;

use super::*;

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}})
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn every_write_bumps_the_global_version_and_a_no_op_does_not() {
    let s = Store::new();
    let a = s.create(Resource::Pod, "ns", pod("a")).unwrap();
    let b = s
        .create(
            Resource::NetworkAttachmentDefinition,
            "ns",
            json!({"metadata": {"name": "b"}}),
        )
        .unwrap();
    assert!(rv(&b) > rv(&a));
    assert_eq!(s.resource_version(), rv(&b));
    let same = s
        .update(Resource::Pod, "ns", "a", a.clone(), false)
        .unwrap();
    assert_eq!(
        rv(&same),
        rv(&a),
        "an update that changes nothing keeps the version"
    );
    assert_eq!(s.resource_version(), rv(&b));
    let mut changed = a.clone();
    changed["metadata"]["labels"] = json!({"x": "y"});
    let c = s.update(Resource::Pod, "ns", "a", changed, false).unwrap();
    assert_eq!(rv(&c), rv(&b) + 1);
    let d = s.delete(Resource::Pod, "ns", "a", None, None).unwrap();
    assert_eq!(
        rv(&d),
        rv(&c) + 1,
        "a delete is a write with its own version"
    );
}

#[test]
fn stale_version_conflicts_and_a_changed_uid_is_invalid() {
    let s = Store::new();
    let a = s.create(Resource::Pod, "ns", pod("a")).unwrap();
    let mut touched = a.clone();
    touched["metadata"]["labels"] = json!({"x": "1"});
    s.update(Resource::Pod, "ns", "a", touched.clone(), false)
        .unwrap();
    touched["metadata"]["labels"] = json!({"x": "2"});
    let e = s
        .update(Resource::Pod, "ns", "a", touched, false)
        .unwrap_err();
    assert_eq!((e.code, e.body["reason"].as_str()), (409, Some("Conflict")));

    let mut other_uid = s.get(Resource::Pod, "ns", "a").unwrap();
    other_uid["metadata"]["uid"] = json!("not-the-uid");
    let e = s
        .update(Resource::Pod, "ns", "a", other_uid, true)
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.body["message"],
        "Pod \"a\" is invalid: metadata.uid: Invalid value: \"not-the-uid\": field is immutable"
    );
    assert_eq!(e.body["details"]["causes"][0]["field"], "metadata.uid");
}

#[test]
fn server_owned_metadata_is_restored_and_empty_uid_takes_the_stored_one() {
    let s = Store::new();
    let a = s.create(Resource::Pod, "ns", pod("a")).unwrap();
    let mut new = json!({"metadata": {"name": "a", "uid": "", "creationTimestamp": "1999-01-01T00:00:00Z",
        "generation": 42, "labels": {"l": "v"}}, "spec": {"nodeName": "n1"}});
    new["status"] = a["status"].clone();
    let b = s.update(Resource::Pod, "ns", "a", new, false).unwrap();
    for f in ["uid", "creationTimestamp", "generation"] {
        assert_eq!(b["metadata"][f], a["metadata"][f], "{f}");
    }
    assert_eq!(b["metadata"]["labels"]["l"], "v");
}

#[test]
fn status_writes_keep_the_spec_and_main_writes_keep_a_pods_status() {
    let s = Store::new();
    let a = s.create(Resource::Pod, "ns", pod("a")).unwrap();
    let mut via_status = a.clone();
    via_status["spec"]["nodeName"] = json!("elsewhere");
    via_status["status"]["phase"] = json!("Running");
    via_status["metadata"]["annotations"] = json!({"k": "v"});
    let b = s
        .update(Resource::Pod, "ns", "a", via_status, true)
        .unwrap();
    assert_eq!(
        (
            b["spec"]["nodeName"].as_str(),
            b["status"]["phase"].as_str()
        ),
        (Some("n1"), Some("Running"))
    );
    assert_eq!(
        b["metadata"]["annotations"]["k"], "v",
        "pods/status persists metadata changes"
    );
    let mut via_main = b.clone();
    via_main["status"]["phase"] = json!("Failed");
    let c = s.update(Resource::Pod, "ns", "a", via_main, false).unwrap();
    assert_eq!(c["status"]["phase"], "Running");
}

#[test]
fn exact_lists_replay_history_until_compacted() {
    let s = Store::new();
    s.create(Resource::Pod, "ns", pod("a")).unwrap();
    let at = s.resource_version();
    s.create(Resource::Pod, "ns", pod("b")).unwrap();
    s.delete(Resource::Pod, "ns", "a", None, None).unwrap();
    let (items, v) = s.list(Resource::Pod, Some("ns"), Some(at)).unwrap();
    assert_eq!(v, at);
    let names: Vec<&str> = items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"]);
    let (changes, now) = s.changes_after(at).unwrap();
    assert_eq!(
        changes.iter().map(|c| c.kind).collect::<Vec<_>>(),
        [ChangeKind::Added, ChangeKind::Deleted]
    );
    assert_eq!(now, s.resource_version());
    s.compact();
    let e = s.list(Resource::Pod, Some("ns"), Some(at)).unwrap_err();
    assert_eq!((e.code, e.body["reason"].as_str()), (410, Some("Expired")));
    let e = s.changes_after(at).unwrap_err();
    assert_eq!(
        e.body["message"],
        format!("too old resource version: {at} ({})", s.resource_version())
    );
    assert!(s.changes_after(s.resource_version()).unwrap().0.is_empty());
    let e = s
        .list(Resource::Pod, None, Some(s.resource_version() + 5))
        .unwrap_err();
    assert_eq!(e.code, 504);
}

#[test]
fn bounded_history_compacts_the_oldest_changes() {
    let s = Store::new();
    s.set_max_history(2);
    let start = s.resource_version();
    for n in ["a", "b", "c"] {
        s.create(Resource::Pod, "ns", pod(n)).unwrap();
    }
    assert_eq!(s.changes_after(start).unwrap_err().code, 410);
    assert_eq!(s.changes_after(start + 1).unwrap().0.len(), 2);
}

#[test]
fn create_rules() {
    let s = Store::new();
    let e = s
        .create(Resource::Pod, "ns", json!({"metadata": {}}))
        .unwrap_err();
    assert_eq!(e.code, 422);
    let e = s
        .create(
            Resource::Pod,
            "ns",
            json!({"metadata": {"name": "Bad_Name"}}),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    let g = s
        .create(
            Resource::Event,
            "ns",
            json!({"metadata": {"generateName": "p."}}),
        )
        .unwrap();
    assert!(g["metadata"]["name"].as_str().unwrap().starts_with("p."));
    s.create(Resource::Pod, "ns", pod("a")).unwrap();
    assert_eq!(
        s.create(Resource::Pod, "ns", pod("a")).unwrap_err().code,
        409
    );
    let b = s.create(Resource::Pod, "ns", pod("b")).unwrap();
    let a = s.get(Resource::Pod, "ns", "a").unwrap();
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
}

#[test]
fn delete_preconditions_conflict() {
    let s = Store::new();
    s.create(Resource::Pod, "ns", pod("a")).unwrap();
    let e = s
        .delete(Resource::Pod, "ns", "a", Some("other"), None)
        .unwrap_err();
    assert_eq!(e.code, 409);
    assert!(
        e.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Precondition failed: UID in precondition: other")
    );
    assert_eq!(
        s.delete(Resource::Pod, "ns", "nope", None, None)
            .unwrap_err()
            .code,
        404
    );
}
