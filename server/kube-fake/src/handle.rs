//! The test handle: starts the server on `127.0.0.1:<ephemeral>` over HTTPS, writes its client
//! files, and gives tests the controls of a cluster operator: objects written as another
//! client would, stop/restart on the same port, injected failures, compaction, token
//! rotation, closing watches, and the request log. Dropping the handle stops the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::control::{Failure, RequestRecord, Shared};
use crate::error::{Error, Result};
use crate::kubeconfig::{self, Ca, User};
use crate::patch::{self, PatchType};
use crate::resource::Resource;
use crate::status::ApiError;
use crate::tls;

type Conns = Arc<Mutex<JoinSet<()>>>;

/// A running fake Kubernetes API server. See the crate docs.
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    tls: tls::Material,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    conns: Conns,
    dir: tempfile::TempDir,
}

fn new_token(seed: &std::hash::RandomState, n: u64) -> String {
    use std::hash::BuildHasher;
    format!(
        "fake-{:016x}{:016x}",
        seed.hash_one((n, 'a')),
        seed.hash_one((n, 'b'))
    )
}

impl FakeApiServer {
    /// Generates a CA, server certificate and token, binds `127.0.0.1:0` and serves; writes
    /// the kubeconfigs and service-account files into a private temporary directory.
    pub async fn start() -> Result<Self> {
        let tls = tls::generate()?;
        let seed = std::hash::RandomState::new();
        let dir = tempfile::Builder::new()
            .prefix("plexus-kube-fake-")
            .tempdir()
            .map_err(|source| Error::WriteFile {
                path: std::env::temp_dir(),
                source,
            })?;
        let want: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = TcpListener::bind(want)
            .await
            .map_err(|source| Error::Bind { addr: want, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr: want, source })?;
        let shared = Arc::new(Shared::new(new_token(&seed, 0), addr.to_string()));
        let server = FakeApiServer {
            shared,
            tls,
            addr,
            accept: Mutex::new(None),
            conns: Arc::new(Mutex::new(JoinSet::new())),
            dir,
        };
        server.write_client_files()?;
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.server_config.clone());
        let (shared, conns) = (self.shared.clone(), self.conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // e.g. EMFILE: back off instead of spinning on the error
                        tracing::warn!(error = %e, "fake kube-apiserver accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                let mut set = conns.lock().unwrap_or_else(|p| p.into_inner());
                while set.try_join_next().is_some() {}
                set.spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        crate::router::handle(shared.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *self.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    fn write_client_files(&self) -> Result<()> {
        let token = self.shared.token();
        kubeconfig::write_incluster(&self.incluster_dir(), &token, &self.tls.ca_pem)?;
        kubeconfig::write(
            &self.kubeconfig_path(),
            &self.url(),
            Ca::Data(&self.tls.ca_pem),
            User::Token(&token),
        )?;
        kubeconfig::write(
            &self.kubeconfig_token_file_path(),
            &self.url(),
            Ca::File(&self.ca_file_path()),
            User::TokenFile(&self.token_file_path()),
        )
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bound address (stays the same across [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// The bearer token currently accepted.
    pub fn token(&self) -> String {
        self.shared.token()
    }

    /// A kubeconfig with the CA data and the current token inline (rewritten on rotation).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubeconfig that reads the in-cluster style files: the CA from
    /// [`ca_file_path`](Self::ca_file_path) (`certificate-authority`) and the token from
    /// [`token_file_path`](Self::token_file_path) (`tokenFile`).
    pub fn kubeconfig_token_file_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig-tokenfile")
    }

    /// The in-cluster style directory: `token`, `ca.crt`, `namespace`.
    pub fn incluster_dir(&self) -> PathBuf {
        self.dir.path().join("serviceaccount")
    }

    /// The token file (`incluster_dir()/token`), rewritten on rotation.
    pub fn token_file_path(&self) -> PathBuf {
        self.incluster_dir().join("token")
    }

    /// The CA file (`incluster_dir()/ca.crt`).
    pub fn ca_file_path(&self) -> PathBuf {
        self.incluster_dir().join("ca.crt")
    }

    /// The private directory holding the client files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a new token: the old one gets 401 from now on, the token file and the inline
    /// kubeconfig are rewritten with the new one. Returns the new token.
    pub fn rotate_token(&self) -> Result<String> {
        let token = new_token(&std::hash::RandomState::new(), 1);
        self.shared.set_token(token.clone());
        self.write_client_files()?;
        Ok(token)
    }

    /// Issues a new token as the kubelet refreshes a bound service-account token: the files
    /// get the new token, the old one stays valid until [`revoke_old_tokens`]
    /// (its expiry). Returns the new token.
    ///
    /// [`revoke_old_tokens`]: Self::revoke_old_tokens
    pub fn rotate_token_with_grace(&self) -> Result<String> {
        let token = new_token(&std::hash::RandomState::new(), 2);
        self.shared.add_token(token.clone());
        self.write_client_files()?;
        Ok(token)
    }

    /// Expires every token but the current one (they get 401 from now on).
    pub fn revoke_old_tokens(&self) {
        self.shared.revoke_old_tokens();
    }

    /// Denies `verb` on `resource` (RBAC resource: `pods`, `pods/status`,
    /// `network-attachment-definitions`, `events`) to the token's user: such requests get
    /// 403 Forbidden from now on, with the API server's message.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.shared.deny(crate::rbac::Denial::new(verb, resource));
    }

    /// Lifts every [`deny`](Self::deny).
    pub fn allow_all(&self) {
        self.shared.allow_all();
    }

    /// Stops serving: the listener is closed and every open connection (and watch) is cut.
    /// Objects and history are kept. Waits until the port is released.
    pub async fn stop(&self) {
        let task = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        let mut conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|p| p.into_inner()));
        conns.shutdown().await;
    }

    /// Serves again on the same address after [`stop`](Self::stop) (a no-op when running).
    pub async fn restart(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr,
                source,
            })?;
        self.serve(listener);
        Ok(())
    }

    /// Whether the server is accepting connections.
    pub fn is_running(&self) -> bool {
        self.accept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn store_err(resource: Resource, ns: &str, name: &str, e: ApiError) -> Error {
        Error::Store {
            resource: resource.plural(),
            namespace: ns.to_owned(),
            name: name.to_owned(),
            reason: e.body["message"].as_str().unwrap_or("").to_owned(),
        }
    }

    /// Creates an object as another client would (no admission validation); the server sets
    /// uid, resourceVersion and creationTimestamp. Returns the stored object.
    pub fn create(&self, resource: Resource, namespace: &str, obj: Value) -> Result<Value> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        self.shared
            .store
            .create(resource, namespace, obj)
            .map_err(|e| Self::store_err(resource, namespace, &name, e))
    }

    /// Replaces an object (as PUT; a `metadata.resourceVersion` in `obj` must be current).
    pub fn replace(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value> {
        self.shared
            .store
            .update(resource, namespace, name, obj, false)
            .map_err(|e| Self::store_err(resource, namespace, name, e))
    }

    /// Applies a JSON merge patch to an object (to its status too, as a status writer would).
    pub fn merge_patch(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value> {
        let err = |e| Self::store_err(resource, namespace, name, e);
        let current = self
            .get(resource, namespace, name)
            .ok_or_else(|| err(crate::status::not_found(resource, name)))?;
        let patched = patch::apply(PatchType::Merge, &current, patch).map_err(|reason| {
            Error::InvalidObject {
                resource: resource.plural(),
                reason,
            }
        })?;
        let store = &self.shared.store;
        let obj = store
            .update(resource, namespace, name, patched.clone(), false)
            .map_err(err)?;
        if resource == Resource::Pod && patched.get("status") != obj.get("status") {
            return store
                .update(resource, namespace, name, patched, true)
                .map_err(err);
        }
        Ok(obj)
    }

    /// Marks a pod as terminating, as a graceful delete does before the kubelet confirms:
    /// sets `metadata.deletionTimestamp` and `deletionGracePeriodSeconds` (a MODIFIED event).
    /// [`delete`](Self::delete) then removes it.
    pub fn mark_terminating(&self, namespace: &str, name: &str, grace_secs: u64) -> Result<Value> {
        let err = |e| Self::store_err(Resource::Pod, namespace, name, e);
        self.shared
            .store
            .mark_terminating(Resource::Pod, namespace, name, grace_secs)
            .map_err(err)
    }

    /// Deletes an object immediately (grace period 0). Returns its last state.
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> Result<Value> {
        self.shared
            .store
            .delete(resource, namespace, name, None, None)
            .map_err(|e| Self::store_err(resource, namespace, name, e))
    }

    /// One object as stored.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.shared.store.get(resource, namespace, name)
    }

    /// All objects of a resource (in one namespace or all), sorted by namespace and name.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        self.shared
            .store
            .list(resource, namespace, None)
            .map(|(v, _)| v)
            .unwrap_or_default()
    }

    /// Waits until the object satisfies `pred` (or, with `pred` on `None`, is absent), woken
    /// by each write; `None` when `timeout` passes first.
    pub async fn wait_for(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Option<Value>> {
        let mut rx = self.shared.store.subscribe();
        let check = async {
            loop {
                rx.borrow_and_update();
                let obj = self.get(resource, namespace, name);
                if pred(obj.as_ref()) {
                    return obj;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, check).await.ok()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.resource_version()
    }

    /// Forgets all history: a watch or exact list from an older version gets 410 Expired.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Keeps at most `n` changes of history (older ones are compacted as writes come in).
    pub fn set_max_history(&self, n: usize) {
        self.shared.store.set_max_history(n);
    }

    /// Ends every open watch stream cleanly (clients reconnect from their last version).
    pub fn close_watches(&self) {
        self.shared.close_watches.send_modify(|n| *n += 1);
    }

    /// How often open watches with `allowWatchBookmarks` get a BOOKMARK (default 60 s;
    /// applies to watches opened afterwards).
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.shared.set_bookmark_interval(d);
    }

    /// Installs or removes the NetworkAttachmentDefinition CRD: while removed, its paths are
    /// 404 (`the server could not find the requested resource`) and its group is missing from
    /// discovery, and open watches are ended (as when a CRD is deleted). Objects are kept.
    pub fn set_nad_crd_installed(&self, installed: bool) {
        self.shared.set_nad_crd_installed(installed);
        if !installed {
            self.close_watches();
        }
    }

    /// Fails the next matching requests (see [`Failure`]).
    pub fn inject_failure(&self, f: Failure) {
        self.shared.inject(f);
    }

    /// Drops injected failures not yet used.
    pub fn clear_failures(&self) {
        self.shared.clear_failures();
    }

    /// Every request answered so far, including those refused with 401, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(t) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}
