//! The object store: one global, monotonically increasing resourceVersion bumped by every
//! write, the objects, and a change history from which watches are served and older states
//! reconstructed (exact-version lists and continue tokens). History older than the compaction
//! point is gone, as after etcd compaction: asking for it is `410 Expired`.
//!
//! Owns the server-set metadata (uid, resourceVersion, creationTimestamp, generation) and the
//! update rules every write goes through (precondition conflicts, immutable uid, no-op writes
//! keep their version). Knows nothing about HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::meta::{ensure_meta, name_error, now};
use crate::resource::Resource;
use crate::status::{self, ApiError, FieldError};

/// Where an object lives: resource, namespace, name (sorted as etcd sorts its keys).
pub type Key = (Resource, String, String);

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

/// One write, as kept in the history.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion this write created.
    pub rv: u64,
    /// The object's key.
    pub key: Key,
    /// What happened.
    pub kind: ChangeKind,
    /// The object before (None for Added).
    pub prev: Option<Value>,
    /// The object after; for Deleted, the last state stamped with the deletion's version.
    pub object: Value,
}

/// The default number of changes kept before the oldest are compacted away.
pub const DEFAULT_HISTORY: usize = 10_000;

#[derive(Debug)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// Watches and exact reads are served from any version `>= compacted`.
    compacted: u64,
    max_history: usize,
    seq: u64,
}

/// The shared store. Writers notify watchers through a `tokio::sync::watch` of the version.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    notify: tokio::sync::watch::Sender<u64>,
    seed: RandomState,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store at resourceVersion 1.
    pub fn new() -> Self {
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 1,
                max_history: DEFAULT_HISTORY,
                seq: 0,
            }),
            notify: tokio::sync::watch::Sender::new(1),
            seed: RandomState::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes whenever the version moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Drops all history: watches and exact reads from older versions get 410.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.compacted = g.rv;
        g.history.clear();
    }

    /// Caps the history length (older changes are compacted away as writes come in).
    pub fn set_max_history(&self, n: usize) {
        self.lock().max_history = n.max(1);
    }

    /// One object, if present.
    pub fn get(&self, resource: Resource, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource, ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The objects of `resource` (in `ns`, or all namespaces) at version `at` (None: now),
    /// sorted by namespace and name, and the version the list reflects.
    pub fn list(
        &self,
        resource: Resource,
        ns: Option<&str>,
        at: Option<u64>,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let g = self.lock();
        let in_scope = |k: &Key| k.0 == resource && ns.is_none_or(|n| k.1 == n);
        let Some(at) = at.filter(|a| *a != g.rv) else {
            let items = g
                .objects
                .iter()
                .filter(|(k, _)| in_scope(k))
                .map(|(_, v)| v.clone())
                .collect();
            return Ok((items, g.rv));
        };
        if at > g.rv {
            return Err(status::too_large_resource_version(at, g.rv));
        }
        if at < g.compacted {
            return Err(status::expired(
                "The resourceVersion for the provided list is too old.",
            ));
        }
        let mut state: BTreeMap<Key, Value> = g
            .objects
            .iter()
            .filter(|(k, _)| in_scope(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for c in g.history.iter().rev().take_while(|c| c.rv > at) {
            if !in_scope(&c.key) {
                continue;
            }
            match &c.prev {
                Some(p) => state.insert(c.key.clone(), p.clone()),
                None => state.remove(&c.key),
            };
        }
        Ok((state.into_values().collect(), at))
    }

    /// The changes after version `from` and the version they bring a reader to; 410 Expired
    /// when `from` is older than the compacted history.
    pub fn changes_after(&self, from: u64) -> Result<(Vec<Change>, u64), ApiError> {
        let g = self.lock();
        if from < g.compacted {
            return Err(status::expired(format!(
                "too old resource version: {from} ({})",
                g.compacted
            )));
        }
        let out = g.history.iter().filter(|c| c.rv > from).cloned().collect();
        Ok((out, g.rv))
    }

    fn next_uid(&self, g: &mut Inner) -> String {
        g.seq += 1;
        let a = self.seed.hash_one((g.seq, 1u8));
        let b = self.seed.hash_one((g.seq, 2u8));
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    fn record(&self, mut g: std::sync::MutexGuard<'_, Inner>, change: Change) {
        let rv = change.rv;
        g.history.push_back(change);
        while g.history.len() > g.max_history {
            if let Some(old) = g.history.pop_front() {
                g.compacted = old.rv;
            }
        }
        drop(g);
        self.notify.send_replace(rv);
    }

    /// Creates an object; the server sets uid, resourceVersion, creationTimestamp, generation.
    pub fn create(&self, resource: Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let mut g = self.lock();
        let meta = ensure_meta(&mut obj);
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if name.is_empty() {
            let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
                return Err(status::invalid(
                    resource,
                    "",
                    &[FieldError {
                        reason: "FieldValueRequired",
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                ));
            };
            g.seq += 1;
            name = format!("{prefix}{:05x}", self.seed.hash_one(g.seq) & 0xfffff);
        }
        if let Some(e) = name_error(&name) {
            return Err(status::invalid(
                resource,
                &name,
                &[FieldError::invalid("metadata.name", &json!(name), e)],
            ));
        }
        let key = (resource, ns.to_owned(), name.clone());
        if g.objects.contains_key(&key) {
            return Err(status::already_exists(resource, &name));
        }
        let uid = self.next_uid(&mut g);
        g.rv += 1;
        let rv = g.rv;
        obj["apiVersion"] = json!(resource.api_version());
        obj["kind"] = json!(resource.kind());
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        m["namespace"] = json!(ns);
        m["uid"] = json!(uid);
        m["resourceVersion"] = json!(rv.to_string());
        m["creationTimestamp"] = json!(now());
        if resource != Resource::Event {
            m["generation"] = json!(1);
        }
        if let Some(o) = m.as_object_mut() {
            o.remove("deletionTimestamp");
            o.remove("managedFields");
        }
        g.objects.insert(key.clone(), obj.clone());
        self.record(
            g,
            Change {
                rv,
                key,
                kind: ChangeKind::Added,
                prev: None,
                object: obj.clone(),
            },
        );
        Ok(obj)
    }

    /// Replaces an object after the update rules: a `metadata.resourceVersion` in `new` that
    /// is not the stored one is 409 Conflict; a different `metadata.uid` is 422 (immutable);
    /// server-set metadata is kept; for `status_only` the spec (and owner references) stay,
    /// otherwise a pod's status stays; a write that changes nothing keeps the version.
    pub fn update(
        &self,
        resource: Resource,
        ns: &str,
        name: &str,
        mut new: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let mut g = self.lock();
        let key = (resource, ns.to_owned(), name.to_owned());
        let Some(old) = g.objects.get(&key).cloned() else {
            return Err(status::not_found(resource, name));
        };
        let meta = ensure_meta(&mut new);
        if let Some(n) = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| *n != name)
        {
            return Err(status::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if meta
            .get("namespace")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty() && n != ns)
        {
            return Err(status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        match meta.get("resourceVersion") {
            None | Some(Value::Null) => {}
            Some(v) if v == &old["metadata"]["resourceVersion"] => {}
            Some(_) => return Err(status::conflict(resource, name)),
        }
        // rest.BeforeUpdate: an empty uid takes the stored one, a different one fails
        // ValidateObjectMetaUpdate (immutable, 422); creationTimestamp, generation and a set
        // deletionTimestamp are silently restored from the stored object.
        match meta.get("uid") {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) if u.is_empty() => {}
            Some(v) if v == &old["metadata"]["uid"] => {}
            Some(v) => {
                let e = FieldError::invalid("metadata.uid", v, "field is immutable");
                return Err(status::invalid(resource, name, &[e]));
            }
        }
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ] {
            new["metadata"][field] = old["metadata"][field].clone();
        }
        if let Some(ts) = old["metadata"].get("deletionTimestamp") {
            new["metadata"]["deletionTimestamp"] = ts.clone();
        }
        new["apiVersion"] = json!(resource.api_version());
        new["kind"] = json!(resource.kind());
        let keep = |new: &mut Value, field: &str| match old.get(field) {
            Some(v) => new[field] = v.clone(),
            None => {
                new.as_object_mut().map(|o| o.remove(field));
            }
        };
        if status_only {
            keep(&mut new, "spec");
            match old["metadata"].get("ownerReferences") {
                Some(v) => new["metadata"]["ownerReferences"] = v.clone(),
                None => {
                    new["metadata"]
                        .as_object_mut()
                        .map(|o| o.remove("ownerReferences"));
                }
            }
        } else if resource == Resource::Pod {
            keep(&mut new, "status");
        }
        if new == old {
            return Ok(old);
        }
        if !status_only && resource != Resource::Event && new.get("spec") != old.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        g.rv += 1;
        let rv = g.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        g.objects.insert(key.clone(), new.clone());
        self.record(
            g,
            Change {
                rv,
                key,
                kind: ChangeKind::Modified,
                prev: Some(old),
                object: new.clone(),
            },
        );
        Ok(new)
    }

    /// Sets `deletionTimestamp` (now) and `deletionGracePeriodSeconds` on an object, the first
    /// step of a graceful delete; a second call keeps the first timestamp.
    pub fn mark_terminating(
        &self,
        resource: Resource,
        ns: &str,
        name: &str,
        grace_secs: u64,
    ) -> Result<Value, ApiError> {
        let mut g = self.lock();
        let key = (resource, ns.to_owned(), name.to_owned());
        let Some(old) = g.objects.get(&key).cloned() else {
            return Err(status::not_found(resource, name));
        };
        if old["metadata"].get("deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = json!(now());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(grace_secs);
        g.rv += 1;
        let rv = g.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        g.objects.insert(key.clone(), new.clone());
        let change = Change {
            rv,
            key,
            kind: ChangeKind::Modified,
            prev: Some(old),
            object: new.clone(),
        };
        self.record(g, change);
        Ok(new)
    }

    /// Deletes an object (immediately, as with a zero grace period), checking optional
    /// uid/resourceVersion preconditions (409 Conflict when they do not hold).
    pub fn delete(
        &self,
        resource: Resource,
        ns: &str,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut g = self.lock();
        let key = (resource, ns.to_owned(), name.to_owned());
        let Some(old) = g.objects.get(&key).cloned() else {
            return Err(status::not_found(resource, name));
        };
        for (what, want, field) in [
            ("UID", precondition_uid, "uid"),
            ("ResourceVersion", precondition_rv, "resourceVersion"),
        ] {
            let have = old["metadata"][field].as_str().unwrap_or("");
            if let Some(w) = want.filter(|w| *w != have) {
                let mut e = status::conflict(resource, name);
                e.body["message"] = json!(format!(
                    "Precondition failed: {what} in precondition: {w}, {what} in object meta: {have}"
                ));
                return Err(e);
            }
        }
        g.objects.remove(&key);
        g.rv += 1;
        let rv = g.rv;
        let mut last = old.clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(
            g,
            Change {
                rv,
                key,
                kind: ChangeKind::Deleted,
                prev: Some(old),
                object: last.clone(),
            },
        );
        Ok(last)
    }
}

#[cfg(test)]
mod tests;
