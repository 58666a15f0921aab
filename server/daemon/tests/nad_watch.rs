//! The NAD directory watcher: lookups read the in-memory index (no directory listing), and
//! the index follows files added, changed and removed, and the directory going and coming
//! back, through inotify events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plexus_core::nad::{DirSource, NadSource};
use plexus_server::nad_watch;
use tokio::sync::watch;

/// Only reached when the watcher misses a change (the test then fails).
const GIVE_UP: Duration = Duration::from_secs(20);

fn nad(name: &str) -> String {
    format!(
        "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
         metadata: {{name: {name}, namespace: home}}\n\
         spec: {{config: '{{\"cniVersion\":\"1.0.0\",\"type\":\"bridge\"}}'}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// Waits for watcher refreshes until `done` holds.
async fn until(refreshed: &mut watch::Receiver<u64>, what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            refreshed.changed().await.unwrap();
        }
    };
    tokio::time::timeout(GIVE_UP, wait)
        .await
        .unwrap_or_else(|_| panic!("the watcher never saw: {what}"));
}

#[tokio::test]
async fn the_index_follows_the_directory_through_watch_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("networks.d");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "a.yaml", &nad("lan"));
    let source = Arc::new(DirSource::new(&dir));
    let watcher = nad_watch::spawn(Arc::clone(&source));
    let mut refreshed = watcher.refreshed();
    let found = |name: &str| matches!(source.get("home", name), Ok(Some(_)));
    until(&mut refreshed, "the first load", || found("lan")).await;

    // Lookups, hits and misses, do not list the directory.
    let scans = source.scans();
    for _ in 0..100 {
        assert!(found("lan"));
        assert!(!found("absent"));
    }
    assert_eq!(source.scans(), scans);

    // A new file, a changed file, a removed file.
    write(&dir, "b.yaml", &nad("wan"));
    until(&mut refreshed, "b.yaml added", || found("wan")).await;
    write(&dir, "a.yaml", &nad("lan2"));
    until(&mut refreshed, "a.yaml changed", || {
        found("lan2") && !found("lan")
    })
    .await;
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    until(&mut refreshed, "b.yaml removed", || !found("wan")).await;

    // The directory goes away: lookups name it; it comes back: lookups answer again.
    std::fs::remove_dir_all(&dir).unwrap();
    until(
        &mut refreshed,
        "the directory removed",
        || matches!(source.get("home", "lan2"), Err(e) if e.kind() == "read-nad-dir"),
    )
    .await;
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "c.yaml", &nad("back"));
    until(&mut refreshed, "the directory back", || found("back")).await;
    drop(watcher);
}
