//! Start-up sweep of the temp files a killed process left behind. Records and libcni cache
//! entries are written to a temp file and renamed into place; a kill between the two leaves
//! the temp file forever. Only names of our own making are removed ([`state::is_temp_name`],
//! [`cache::is_temp_name`]), never anything else in those directories.

use std::path::PathBuf;

use crate::delegate::cache;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::state;

impl Engine {
    /// Removes stale temp files from the state directory and the CNI cache directory, and
    /// teardown marks whose record is gone (`state::marks`), and returns their paths. Call
    /// it only while nothing writes there: at start, under the state-directory lock and
    /// before recovery and serving (a sweep during a write would delete that write's temp
    /// file).
    pub fn remove_stale_temp_files(&self) -> Result<Vec<PathBuf>> {
        let state_dir = self.inner.store.dir();
        let mut removed =
            state::remove_stale_temp_files(state_dir).map_err(|source| Error::RemoveTempFiles {
                dir: state_dir.to_path_buf(),
                source,
            })?;
        // Teardown marks whose record is gone (a power loss between the two removals).
        removed.extend(self.inner.store.remove_orphan_marks()?);
        let cache_dir = self.inner.cfg.cni_cache_dir.join("results");
        removed.extend(
            cache::remove_stale_temp_files(&self.inner.cfg.cni_cache_dir).map_err(|source| {
                Error::RemoveTempFiles {
                    dir: cache_dir,
                    source,
                }
            })?,
        );
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::config::EngineConfig;

    #[test]
    fn the_writers_names_are_recognised_and_nothing_else() {
        assert!(state::is_temp_name(&state::temp_name("sb1.json", 42, 7)));
        let cache_tmp = cache::temp_name(42, OsStr::new("net-a-sb1-net1"));
        assert!(cache::is_temp_name(cache_tmp.to_str().unwrap()));
        for other in [
            "sb1.json",
            ".sb1.json.tmp",
            ".sb1.json.42.tmp",
            "..42.7.tmp",
            ".sb1.json.4x.7.tmp",
            ".sb1.json.42.7.tmp.bak",
            "sb1.json.42.7.tmp",
            "plexusd.lock",
        ] {
            assert!(!state::is_temp_name(other), "{other}");
        }
        for other in [
            ".tmp-",
            ".tmp-42-",
            ".tmp-x1-net",
            "tmp-42-net",
            ".tmp42-net",
        ] {
            assert!(!cache::is_temp_name(other), "{other}");
        }
    }

    fn plant(dir: &Path, names: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for name in names {
            fs::write(dir.join(name), b"x").unwrap();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn only_our_stale_temp_files_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let state_dir = root.path().join("state");
        let cache_dir = root.path().join("cache");
        let ours_state = [".sb1.json.4242.0.tmp", ".sb2.json.1.17.tmp"];
        let theirs_state = ["sb1.json", ".sb1.json.tmp", "notes.tmp", "plexusd.lock"];
        plant(&state_dir, &ours_state);
        plant(&state_dir, &theirs_state);
        // A directory with our naming is not ours to remove.
        fs::create_dir(state_dir.join(".dir.json.1.2.tmp")).unwrap();
        let results = cache_dir.join("results");
        let ours_cache = [".tmp-4242-net-a-sb1-net1"];
        let theirs_cache = ["net-a-sb1-net1", ".tmp-x-net", "cni.tmp"];
        plant(&results, &ours_cache);
        plant(&results, &theirs_cache);
        // The cache root itself is the runtime's too: untouched even with our names.
        plant(&cache_dir, &[".tmp-1-net"]);

        let engine = Engine::open(EngineConfig {
            cni_cache_dir: cache_dir.clone(),
            ..EngineConfig::new(&state_dir)
        })
        .unwrap();
        let removed = engine.remove_stale_temp_files().unwrap();

        let mut expected: Vec<PathBuf> = ours_state.iter().map(|n| state_dir.join(n)).collect();
        expected.extend(ours_cache.iter().map(|n| results.join(n)));
        let mut got = removed.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        let mut left_state: Vec<String> = theirs_state.iter().map(|s| s.to_string()).collect();
        left_state.push(".dir.json.1.2.tmp".into());
        left_state.sort();
        assert_eq!(names(&state_dir), left_state);
        let mut left_cache: Vec<String> = theirs_cache.iter().map(|s| s.to_string()).collect();
        left_cache.sort();
        assert_eq!(names(&results), left_cache);
        assert_eq!(names(&cache_dir), [".tmp-1-net", "results"]);
        // A second sweep finds nothing; a missing cache directory is not an error.
        assert!(engine.remove_stale_temp_files().unwrap().is_empty());
        fs::remove_dir_all(&cache_dir).unwrap();
        assert!(engine.remove_stale_temp_files().unwrap().is_empty());
    }

    #[test]
    fn a_new_state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/state");
        state::Store::open(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mode:o}");
    }
}
