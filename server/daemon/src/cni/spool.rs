//! DELs the shim spooled while plexusd was unreachable, run before plexusd serves.
//!
//! The spool is a directory (`<stateDir>/cni-spool` unless the generated config names
//! another) holding one file per container, `<container id>.del`, written by `plexus-cni`
//! with temp file + fsync + rename + directory fsync. Its content is a small JSON object,
//! `{"version":1,"containerId":"<id>","netns":"<path or empty>","args":"<CNI_ARGS>"}`; only
//! the container id matters (the sandbox record says what to remove), and it is taken from
//! the validated file name, never trusted from the content. A file is removed only after
//! its teardown succeeded; a failing one stays for the next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attacher::Attacher;
use crate::node::Node;
use crate::planner::Planner;

/// The spool directory name under the state dir.
pub const DIR_NAME: &str = "cni-spool";
/// Suffix of a spooled DEL.
pub const SUFFIX: &str = ".del";
/// Longest containerd container id accepted.
pub const MAX_ID_LEN: usize = 128;

/// The spool directory of a state dir.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR_NAME)
}

/// Checks a container id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 bytes.
pub fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    id.len() <= MAX_ID_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The container ids spooled in `dir`, sorted; files with other names are logged and
/// left alone (temp files of an interrupted write are removed).
pub fn pending(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(dir = %dir.display(), "a spool file name is not UTF-8; ignored");
            continue;
        };
        if name.starts_with(".tmp-") {
            // An interrupted write: the shim answered nothing for it, the runtime retries.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        match name.strip_suffix(SUFFIX) {
            Some(id) if valid_id(id) => ids.push(id.to_owned()),
            _ => tracing::warn!(file = %entry.path().display(), "not a spooled DEL; ignored"),
        }
    }
    ids.sort();
    Ok(ids)
}

/// Runs every spooled DEL as a teardown of its sandbox; returns the ids completed.
pub async fn drain<A: Attacher, P: Planner>(node: &Arc<Node<A, P>>, dir: &Path) -> Vec<String> {
    let ids = match pending(dir) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the CNI DEL spool");
            return Vec::new();
        }
    };
    let mut done = Vec::new();
    for id in ids {
        let Ok(sandbox) = plexus_core::id::SandboxId::new(id.clone()) else {
            tracing::warn!(sandbox.id = %id, "a spooled DEL names an invalid sandbox id; ignored");
            continue;
        };
        let replay = node.teardown_pod(sandbox, None, plexus_engine::LinkDeletion::AfterAnswer);
        match crate::entry::scope(plexus_telemetry::Path::Cni, replay).await {
            Ok(outcome) => {
                let file = dir.join(format!("{id}{SUFFIX}"));
                if let Err(e) = std::fs::remove_file(&file) {
                    tracing::warn!(file = %file.display(), error = %e, "cannot remove a completed spooled DEL");
                }
                tracing::info!(sandbox.id = %id, known = outcome.known,
                    removed = outcome.removed.len(), "ran a DEL spooled while plexusd was down");
                done.push(id);
            }
            Err(e) => {
                tracing::warn!(sandbox.id = %id, error = %e, "a spooled DEL failed; kept for the next start")
            }
        }
    }
    done
}
