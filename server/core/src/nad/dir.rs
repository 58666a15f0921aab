//! The `networks.d/` directory source: NAD manifests (`*.yaml`, `*.yml`, `*.json`,
//! hidden files ignored), reloaded when a file's size or mtime changes, checked on
//! every lookup (one `readdir` and one `stat` per file; no background thread).
//!
//! Failure policy: a bad document never blocks the others. Good documents of every
//! file load; each problem is kept in [`DirSource::errors`] and logged once. A lookup
//! of a name whose document is broken, or which two files define, returns that error
//! instead of "not found", so the pod's event says what to fix.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::manifest::{self, Parsed};
use super::{Nad, NadSource};
use crate::error::{Error, Result};

/// NADs read from a directory of manifests.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    state: Mutex<State>,
}

/// What tells a changed file: mtime and size.
type Stamp = (Option<SystemTime>, u64);

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, File>,
    index: HashMap<(String, String), Entry>,
}

#[derive(Debug)]
struct File {
    stamp: Stamp,
    content: std::result::Result<Vec<Parsed>, (std::io::ErrorKind, String)>,
}

#[derive(Debug, Clone)]
enum Entry {
    Good(Nad, PathBuf),
    Broken {
        path: PathBuf,
        document: usize,
        reason: String,
    },
    Duplicate(PathBuf, PathBuf),
}

impl DirSource {
    /// A source over `dir`; nothing is read until the first lookup or [`refresh`].
    ///
    /// [`refresh`]: DirSource::refresh
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            state: Mutex::new(State::default()),
        }
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads files that were added, removed or changed since the last look. A
    /// missing directory counts as empty; an unreadable one is an error.
    pub fn refresh(&self) -> Result<()> {
        let listing = match self.scan() {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(cause) => {
                return Err(Error::ReadNadDir {
                    path: self.dir.clone(),
                    cause,
                });
            }
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        let mut files = BTreeMap::new();
        for (path, stamp) in listing {
            match state.files.remove(&path) {
                Some(file) if file.stamp == stamp => {
                    files.insert(path, file);
                }
                _ => {
                    changed = true;
                    let file = load(&path, stamp);
                    log_problems(&path, &file);
                    files.insert(path, file);
                }
            }
        }
        changed |= !state.files.is_empty();
        state.files = files;
        if changed {
            state.index = index(&state.files);
        }
        Ok(())
    }

    /// Every problem found in the directory (bad documents, unreadable files,
    /// duplicates), as of the last refresh.
    pub fn errors(&self) -> Vec<Error> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut errors = Vec::new();
        for (path, file) in &state.files {
            match &file.content {
                Err((kind, message)) => errors.push(Error::ReadNadFile {
                    path: path.clone(),
                    cause: std::io::Error::new(*kind, message.clone()),
                }),
                Ok(parsed) => {
                    for p in parsed {
                        if let Err(b) = &p.result {
                            errors.push(Error::ParseNad {
                                path: path.clone(),
                                document: p.document,
                                reason: b.reason.clone(),
                            });
                        }
                    }
                }
            }
        }
        let mut duplicates: Vec<_> = state
            .index
            .iter()
            .filter_map(|((ns, name), e)| match e {
                Entry::Duplicate(a, b) => Some(duplicate(ns, name, a, b)),
                _ => None,
            })
            .collect();
        duplicates.sort_by_key(|e| e.to_string());
        errors.extend(duplicates);
        errors
    }

    /// Every NAD that loaded, sorted by namespace and name (refreshes first).
    pub fn list(&self) -> Result<Vec<Nad>> {
        self.refresh()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut nads: Vec<Nad> = state
            .index
            .values()
            .filter_map(|e| match e {
                Entry::Good(nad, _) => Some(nad.clone()),
                _ => None,
            })
            .collect();
        nads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(nads)
    }

    fn scan(&self) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let wanted = !name.starts_with('.')
                && [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
            if !wanted {
                continue;
            }
            // Follow symlinks (ConfigMap mounts are symlink farms).
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_file() {
                out.push((path, (meta.modified().ok(), meta.len())));
            }
        }
        out.sort();
        Ok(out)
    }
}

fn load(path: &Path, stamp: Stamp) -> File {
    let content = std::fs::read_to_string(path)
        .map(|text| {
            let json = path.extension().is_some_and(|e| e == "json");
            manifest::parse(&text, json)
        })
        .map_err(|e| (e.kind(), e.to_string()));
    File { stamp, content }
}

fn log_problems(path: &Path, file: &File) {
    match &file.content {
        Err((_, message)) => {
            tracing::warn!(file = %path.display(), error = %message, "cannot read network file");
        }
        Ok(parsed) => {
            for p in parsed {
                if let Err(b) = &p.result {
                    tracing::warn!(file = %path.display(), document = p.document, error = %b.reason, "skipping malformed network document");
                }
            }
        }
    }
}

fn duplicate(ns: &str, name: &str, a: &Path, b: &Path) -> Error {
    Error::DuplicateNad {
        namespace: ns.to_string(),
        name: name.to_string(),
        first: a.to_path_buf(),
        second: b.to_path_buf(),
    }
}

/// Builds the lookup index; files are visited in name order, so "first" is stable.
fn index(files: &BTreeMap<PathBuf, File>) -> HashMap<(String, String), Entry> {
    let mut index: HashMap<(String, String), Entry> = HashMap::new();
    for (path, file) in files {
        let Ok(parsed) = &file.content else { continue };
        for p in parsed {
            let (key, entry) = match &p.result {
                Ok(nad) => (
                    (nad.namespace.clone(), nad.name.clone()),
                    Entry::Good(nad.clone(), path.clone()),
                ),
                Err(b) => match &b.key {
                    Some(key) => (
                        key.clone(),
                        Entry::Broken {
                            path: path.clone(),
                            document: p.document,
                            reason: b.reason.clone(),
                        },
                    ),
                    None => continue,
                },
            };
            match index.get(&key) {
                None => {
                    index.insert(key, entry);
                }
                Some(existing) => {
                    let first = match existing {
                        Entry::Good(_, f) | Entry::Broken { path: f, .. } => f.clone(),
                        Entry::Duplicate(..) => continue,
                    };
                    tracing::warn!(namespace = %key.0, name = %key.1, first = %first.display(), second = %path.display(), "network defined twice");
                    index.insert(key, Entry::Duplicate(first, path.clone()));
                }
            }
        }
    }
    index
}

impl NadSource for DirSource {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<Nad>> {
        self.refresh()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.index.get(&(namespace.to_string(), name.to_string())) {
            None => Ok(None),
            Some(Entry::Good(nad, _)) => Ok(Some(nad.clone())),
            Some(Entry::Broken {
                path,
                document,
                reason,
            }) => Err(Error::ParseNad {
                path: path.clone(),
                document: *document,
                reason: reason.clone(),
            }),
            Some(Entry::Duplicate(a, b)) => Err(duplicate(namespace, name, a, b)),
        }
    }
}
