//! Upgrades and rollbacks keep every running pod's record readable: a record written by
//! the first format (version 1, `tests/golden/record-v1.json`, config bytes as numbers)
//! and one written by a future plexus (version 3, `record-v3-future.json`, with fields this
//! version does not know) are listed, and torn down, by this binary; what it writes back is
//! its own version. The pods' netns is gone (as after the runtime removed them), so the
//! teardown is the native driver's idempotent removal of what is no longer there.

mod common;

use std::path::Path;

use common::{Fixture, sid};
use plexus_engine::state::{RECORD_VERSION, Store};
use plexus_engine::{DelegationMode, Driver};
use plexus_netlink::test_util::require_privileged;

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Puts a golden record in the state dir the way the store names files.
fn install(fx: &Fixture, id: &str, name: &str) {
    let state = fx.config(DelegationMode::Auto).state_dir;
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(format!("{id}.json")), golden(name)).unwrap();
}

#[test]
fn both_golden_records_parse_with_their_config_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sb-golden-v1.json"),
        golden("record-v1.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sb-golden-v3.json"),
        golden("record-v3-future.json"),
    )
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    for id in ["sb-golden-v1", "sb-golden-v3"] {
        let rec = store
            .load(&sid(id))
            .unwrap_or_else(|e| panic!("{id}: {e}"))
            .expect("recorded");
        assert_eq!(
            rec.version, RECORD_VERSION,
            "{id} is this version in memory"
        );
        let a = &rec.attachments[0];
        assert_eq!((a.interface.as_str(), a.driver), ("net1", Driver::Native));
        let config: serde_json::Value = serde_json::from_slice(&a.planned.config.bytes).unwrap();
        assert_eq!(config["master"], "plexusgoldenmaster0", "{id}");
        // Written back in this version, with the config as text.
        store.save(&rec).unwrap();
        let text = std::fs::read_to_string(store.path(&sid(id))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], RECORD_VERSION);
        assert!(
            v["attachments"][0]["planned"]["config"]["bytes"].is_string(),
            "{text}"
        );
    }
}

#[tokio::test]
async fn upgrade_and_rollback_records_are_listed_and_torn_down() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    install(&fx, "sb-golden-v1", "record-v1.json");
    install(&fx, "sb-golden-v3", "record-v3-future.json");
    let engine = fx.engine(DelegationMode::Auto);
    let mut listed: Vec<String> = engine
        .sandboxes()
        .expect("records of other versions list")
        .into_iter()
        .map(|r| r.sandbox_id.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["sb-golden-v1", "sb-golden-v3"]);
    for id in ["sb-golden-v1", "sb-golden-v3"] {
        let report = engine
            .teardown(&sid(id))
            .await
            .unwrap_or_else(|e| panic!("teardown of {id}: {e}"));
        assert_eq!(report.removed, ["net1"], "{id}: {report:?}");
        assert_eq!(engine.sandbox(&sid(id)).unwrap(), None, "{id} record gone");
    }
}
