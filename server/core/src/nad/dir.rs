//! The `networks.d/` directory source: NAD manifests (`*.yaml`, `*.yml`, `*.json`,
//! hidden files ignored), held in an in-memory index. The first lookup loads the
//! directory; after that a lookup is a map read, and the index changes only when
//! [`DirSource::refresh`] runs (plexusd calls it from a file watcher), which re-reads just
//! the files whose size or mtime changed. Nothing here starts a thread.
//!
//! Failure policy: a bad document never blocks the others. Good documents of every
//! file load; each problem is kept in [`DirSource::errors`] and logged once. A lookup
//! of a name whose document is broken, or which two files define, returns that error
//! instead of "not found", so the pod's event says what to fix. A name found nowhere is
//! "not found" only when every file could be used: while a file cannot be read, is larger
//! than [`MAX_FILE_BYTES`], or holds a document whose name is unreadable (a YAML error),
//! the lookup names those files and why, since the network may be defined there. A
//! directory that is missing or cannot be listed fails every lookup, naming it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::manifest::{self, Parsed};
use super::{Nad, NadSource};
use crate::error::{Error, Result, shorten};

/// Largest NAD manifest file read, as for CNI config files (parsing takes several times
/// the file's size in memory).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// NADs read from a directory of manifests.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    state: Mutex<State>,
    /// How many times the directory was listed.
    scans: AtomicU64,
}

/// What tells a changed file: mtime and size.
type Stamp = (Option<SystemTime>, u64);

#[derive(Debug, Default)]
struct State {
    /// False until the first refresh.
    loaded: bool,
    /// Why the directory itself cannot be listed (missing, not a directory, no access).
    dir_problem: Option<(std::io::ErrorKind, String)>,
    files: BTreeMap<PathBuf, File>,
    index: HashMap<(String, String), Entry>,
    /// Problems that may hide a NAD of any name: unusable files and documents whose
    /// name could not be read, as messages naming the file.
    unattributed: Vec<String>,
}

#[derive(Debug)]
struct File {
    stamp: Stamp,
    content: std::result::Result<Vec<Parsed>, Unusable>,
}

/// Why a whole file was not parsed.
#[derive(Debug, Clone)]
enum Unusable {
    Read(std::io::ErrorKind, String),
    TooLarge(u64),
}

impl Unusable {
    fn error(&self, path: &Path) -> Error {
        match self {
            Unusable::Read(kind, message) => Error::ReadNadFile {
                path: path.to_path_buf(),
                cause: std::io::Error::new(*kind, message.clone()),
            },
            Unusable::TooLarge(size) => Error::NadFileTooLarge {
                path: path.to_path_buf(),
                size: *size,
                limit: MAX_FILE_BYTES,
            },
        }
    }
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
    /// A source over `dir`; nothing is read until the first lookup or [`refresh`], and
    /// later changes are seen only after a [`refresh`].
    ///
    /// [`refresh`]: DirSource::refresh
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            state: Mutex::new(State::default()),
            scans: AtomicU64::new(0),
        }
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads files that were added, removed or changed since the last look. A
    /// directory that is missing or cannot be listed is an error, and until it can be
    /// listed again every lookup fails naming it.
    pub fn refresh(&self) -> Result<()> {
        let listing = match self.scan() {
            Ok(listing) => listing,
            Err(cause) => {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if state.dir_problem.is_none() {
                    tracing::warn!(dir = %self.dir.display(), error = %cause, "cannot read network directory");
                }
                state.loaded = true;
                state.dir_problem = Some((cause.kind(), cause.to_string()));
                state.files.clear();
                state.index.clear();
                state.unattributed.clear();
                return Err(Error::ReadNadDir {
                    path: self.dir.clone(),
                    cause,
                });
            }
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = state.dir_problem.take().is_some() || !state.loaded;
        state.loaded = true;
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
            let (index, unattributed) = index(&state.files);
            state.index = index;
            state.unattributed = unattributed;
        }
        Ok(())
    }

    /// Every problem found in the directory (bad documents, unreadable files,
    /// duplicates), as of the last refresh.
    pub fn errors(&self) -> Vec<Error> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut errors = Vec::new();
        if let Some(e) = self.dir_error(&state) {
            errors.push(e);
        }
        for (path, file) in &state.files {
            match &file.content {
                Err(unusable) => errors.push(unusable.error(path)),
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

    fn dir_error(&self, state: &State) -> Option<Error> {
        let (kind, message) = state.dir_problem.as_ref()?;
        Some(Error::ReadNadDir {
            path: self.dir.clone(),
            cause: std::io::Error::new(*kind, message.clone()),
        })
    }

    /// How many times the directory has been listed (each [`refresh`]); lookups do not
    /// list it.
    ///
    /// [`refresh`]: DirSource::refresh
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    fn scan(&self) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
        self.scans.fetch_add(1, Ordering::Relaxed);
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
            // Follow symlinks (ConfigMap mounts are symlink farms). One that cannot be
            // followed stays listed, so loading it reports why.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    out.push((path, (meta.modified().ok(), meta.len())));
                }
                Ok(_) => {}
                Err(_) => out.push((path, (None, 0))),
            }
        }
        out.sort();
        Ok(out)
    }
}

fn load(path: &Path, stamp: Stamp) -> File {
    File {
        stamp,
        content: read_capped(path).map(|text| {
            let json = path.extension().is_some_and(|e| e == "json");
            manifest::parse(&text, json)
        }),
    }
}

/// The file's text, refused past [`MAX_FILE_BYTES`] (also when it grew since the stat).
fn read_capped(path: &Path) -> std::result::Result<String, Unusable> {
    let io = |e: std::io::Error| Unusable::Read(e.kind(), e.to_string());
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(Unusable::TooLarge(size));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Unusable::TooLarge(text.len() as u64));
    }
    Ok(text)
}

fn log_problems(path: &Path, file: &File) {
    match &file.content {
        Err(unusable) => {
            tracing::warn!(error = %unusable.error(path), "cannot use network file");
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

/// At most three problems, then how many more.
fn summary(problems: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = problems
        .iter()
        .take(SHOWN)
        .map(|p| shorten(p, 300))
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

fn duplicate(ns: &str, name: &str, a: &Path, b: &Path) -> Error {
    Error::DuplicateNad {
        namespace: ns.to_string(),
        name: name.to_string(),
        first: a.to_path_buf(),
        second: b.to_path_buf(),
    }
}

/// Builds the lookup index (files are visited in name order, so "first" is stable) and
/// the problems no name can be given to.
fn index(files: &BTreeMap<PathBuf, File>) -> (HashMap<(String, String), Entry>, Vec<String>) {
    let mut index: HashMap<(String, String), Entry> = HashMap::new();
    let mut unattributed = Vec::new();
    for (path, file) in files {
        let parsed = match &file.content {
            Ok(parsed) => parsed,
            Err(unusable) => {
                unattributed.push(unusable.error(path).to_string());
                continue;
            }
        };
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
                    None => {
                        unattributed.push(
                            Error::ParseNad {
                                path: path.clone(),
                                document: p.document,
                                reason: b.reason.clone(),
                            }
                            .to_string(),
                        );
                        continue;
                    }
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
    (index, unattributed)
}

impl NadSource for DirSource {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<Nad>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.loaded {
            drop(state);
            // A failure is kept in the state and answered below.
            let _ = self.refresh();
            state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = self.dir_error(&state) {
            return Err(e);
        }
        match state.index.get(&(namespace.to_string(), name.to_string())) {
            None if state.unattributed.is_empty() => Ok(None),
            None => Err(Error::NadFilesUnusable {
                namespace: namespace.to_string(),
                name: name.to_string(),
                dir: self.dir.clone(),
                problems: summary(&state.unattributed),
            }),
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
