//! The fake API server (`plexus-kube-fake`) serving inside a network namespace, with what
//! the Kubernetes-mode tests and the kube bench do on it: NADs and pod objects created as
//! other clients would, network-status and events read back. Shared by the e2e tests and
//! `benches/kube.rs` (included there by path).

use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plexus_integration::{Nad, Pod, PodSpec};
use plexus_kube_fake::{FakeApiServer, Resource};
use serde_json::{Value, json};

/// The node name plexusd runs as (`NODE_NAME`) and the pods' `spec.nodeName`.
pub const NODE: &str = "plexus-e2e-node";
/// The pod annotation plexusd publishes.
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// A fake API server serving inside a network namespace, on a runtime of its own.
pub struct Api {
    fake: Option<Arc<FakeApiServer>>,
    rt: tokio::runtime::Handle,
    done: Option<std::sync::mpsc::Sender<Arc<FakeApiServer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Api {
    /// Starts the fake with its listener in the namespace at `netns`.
    pub fn start_in(netns: &Path) -> Self {
        let ns = File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Arc<FakeApiServer>>();
        let thread = std::thread::spawn(move || {
            // Threads inherit the namespace of the thread that creates them: the runtime's
            // workers (and every socket the fake binds, also on restart) live in `netns`.
            // This thread and that runtime serve the fake only and end with it, which is
            // what the workspace's setns rule protects (no shared worker changes namespace).
            #[allow(clippy::disallowed_methods)]
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering containerd's network namespace");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("fake API runtime");
            let fake = rt.block_on(FakeApiServer::start()).map(Arc::new);
            let _ = ready_tx.send((fake, rt.handle().clone()));
            if let Ok(fake) = done_rx.recv() {
                rt.block_on(fake.stop());
                drop(fake);
            }
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        let (fake, rt) = ready_rx.recv().expect("fake API thread");
        Self {
            fake: Some(fake.expect("starting the fake API server")),
            rt,
            done: Some(done_tx),
            thread: Some(thread),
        }
    }

    fn fake(&self) -> Arc<FakeApiServer> {
        Arc::clone(self.fake.as_ref().expect("fake API server"))
    }

    /// Stops serving (connections and watches cut, objects kept).
    pub async fn stop(&self) {
        let f = self.fake();
        self.rt.spawn(async move { f.stop().await }).await.unwrap();
    }

    /// Serves again on the same address (bound inside the namespace).
    pub async fn restart(&self) {
        let f = self.fake();
        self.rt
            .spawn(async move { f.restart().await })
            .await
            .unwrap()
            .expect("restarting the fake API server");
    }

    /// Creates a NAD object for `nad`.
    pub fn create_nad(&self, nad: &Nad) -> Result<Value, plexus_kube_fake::Error> {
        let obj: Value = serde_json::from_str(&nad.manifest()).expect("NAD manifest");
        self.create(Resource::NetworkAttachmentDefinition, &nad.namespace, obj)
    }

    /// Creates the pod object a kubelet would see for `spec` on [`NODE`]; returns `spec`
    /// with the uid the API server gave it.
    pub fn create_pod(&self, spec: &PodSpec) -> PodSpec {
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": spec.name,
                "namespace": spec.namespace,
                "annotations": spec.annotations,
                "labels": spec.labels,
            },
            "spec": {
                "nodeName": NODE,
                "containers": [{ "name": "pause", "image": "registry.k8s.io/pause:3.10" }],
            },
        });
        let stored = self
            .create(Resource::Pod, &spec.namespace, obj)
            .unwrap_or_else(|e| panic!("creating pod {}/{}: {e}", spec.namespace, spec.name));
        let mut spec = spec.clone();
        spec.uid = stored["metadata"]["uid"].as_str().unwrap().to_owned();
        spec
    }

    /// The pod object's network-status annotation, if set.
    pub fn network_status(&self, pod: &Pod) -> Option<String> {
        let obj = self.get(Resource::Pod, &pod.namespace, &pod.name)?;
        obj.pointer("/metadata/annotations")?
            .get(NETWORK_STATUS)?
            .as_str()
            .map(str::to_owned)
    }

    /// Waits (woken by each write to the fake) until the pod object carries a
    /// network-status; panics after `timeout`.
    pub async fn wait_network_status(&self, pod: &Pod, timeout: Duration) -> String {
        let found = self
            .wait_for(Resource::Pod, &pod.namespace, &pod.name, timeout, |o| {
                o.and_then(|o| o.pointer("/metadata/annotations"))
                    .and_then(|a| a.get(NETWORK_STATUS))
                    .is_some()
            })
            .await;
        assert!(
            found.is_some(),
            "no network-status on pod {}/{} after {timeout:?}",
            pod.namespace,
            pod.name
        );
        self.network_status(pod).unwrap()
    }

    /// Events about the pod with uid `uid` and this `reason`.
    pub fn events(&self, namespace: &str, uid: &str, reason: &str) -> Vec<Value> {
        self.list(Resource::Event, Some(namespace))
            .into_iter()
            .filter(|e| e.pointer("/regarding/uid").and_then(Value::as_str) == Some(uid))
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    /// Waits until at least `n` such events exist; returns them.
    pub async fn wait_events(
        &self,
        namespace: &str,
        uid: &str,
        reason: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self.events(namespace, uid, reason);
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} {reason} event(s) about {uid} after {timeout:?}, wanted {n}: {found:?}",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Deref for Api {
    type Target = FakeApiServer;
    fn deref(&self) -> &FakeApiServer {
        self.fake.as_ref().expect("fake API server")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let (Some(fake), Some(done)) = (self.fake.take(), self.done.take()) {
            let _ = done.send(fake);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
