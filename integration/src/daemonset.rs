//! The chart's DaemonSet on the private containerd, started through CRI as the kubelet
//! would: one pod sandbox with the template's host network / host PID namespace options,
//! then each rendered container (init containers first, to completion) created from the
//! plexus image with its command, args, env, capabilities (or privileged) and volume mounts
//! translated the kubelet's way (hostPath directories created for `DirectoryOrCreate`,
//! ConfigMaps written to files, propagation `HostToContainer` / `Bidirectional` passed as
//! CRI mount propagation). The harness's containerd runs in its test network namespace, so
//! "host network" is that namespace. Dropping a [`Running`] stops and removes the
//! containers and the sandbox it made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cri::{Client, api};
use crate::error::{Error, Result};

/// The node name the containers get for `fieldRef: spec.nodeName`.
pub const NODE_NAME: &str = "plexus-e2e-node";

/// The DaemonSet's pod running in a private containerd.
#[derive(Debug)]
pub struct Running {
    cri: Client,
    socket: PathBuf,
    sandbox: String,
    /// Container ids by container name.
    pub containers: Vec<(String, String)>,
    /// Where the pod's logs go (`<work>/logs/<name>.log`).
    pub work: PathBuf,
}

fn unexpected(detail: String) -> Error {
    Error::Unexpected {
        what: "rendered DaemonSet",
        detail,
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: &Value) -> std::collections::HashMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// The namespace options of the pod template (the kubelet gives containers the same).
fn namespace_options(spec: &Value) -> api::NamespaceOption {
    let mode = |node: bool, otherwise: api::NamespaceMode| {
        if node {
            api::NamespaceMode::Node
        } else {
            otherwise
        }
    };
    api::NamespaceOption {
        network: mode(spec["hostNetwork"] == true, api::NamespaceMode::Pod) as i32,
        // The kubelet sets CONTAINER for a pod without shareProcessNamespace.
        pid: mode(spec["hostPID"] == true, api::NamespaceMode::Container) as i32,
        ipc: mode(spec["hostIPC"] == true, api::NamespaceMode::Pod) as i32,
        target_id: String::new(),
    }
}

/// The CRI sandbox config of the DaemonSet's pod on [`NODE_NAME`], logs under `work/logs`.
pub fn sandbox_config(daemonset: &Value, work: &Path) -> api::PodSandboxConfig {
    let template = &daemonset["spec"]["template"];
    let spec = &template["spec"];
    let privileged = ["initContainers", "containers"].iter().any(|k| {
        spec[k]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["securityContext"]["privileged"] == true)
    });
    let name = daemonset["metadata"]["name"].as_str().unwrap_or("plexus");
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: format!("{name}-{NODE_NAME}"),
            uid: format!("ds-{}-{}", std::process::id(), crate::netns::next_id()),
            namespace: daemonset["metadata"]["namespace"]
                .as_str()
                .unwrap_or("kube-system")
                .to_owned(),
            attempt: 0,
        }),
        log_directory: work.join("logs").display().to_string(),
        labels: string_map(&template["metadata"]["labels"]),
        annotations: string_map(&template["metadata"]["annotations"]),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(spec)),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The CRI container config of `container` of the pod `spec`: what the kubelet would ask
/// the runtime for. ConfigMap volumes are written under `work/configmaps`.
pub fn container_config(
    spec: &Value,
    container: &Value,
    configmaps: &[Value],
    image: &str,
    work: &Path,
) -> Result<api::ContainerConfig> {
    let name = container["name"].as_str().unwrap_or("c").to_owned();
    let sc = &container["securityContext"];
    let mut envs = Vec::new();
    for env in container["env"].as_array().into_iter().flatten() {
        let key = env["name"].as_str().unwrap_or_default().to_owned();
        let value = match (&env["value"], &env["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(f)) if f == "spec.nodeName" => NODE_NAME.to_owned(),
            other => return Err(unexpected(format!("env {key}: {other:?} not supported"))),
        };
        envs.push(api::KeyValue { key, value });
    }
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let vname = mount["name"].as_str().unwrap_or_default();
        let volume = volumes
            .iter()
            .find(|v| v["name"] == vname)
            .ok_or_else(|| unexpected(format!("volumeMount {vname} has no volume")))?;
        let src = host_source(volume, vname, configmaps, work)?;
        let propagation = match mount["mountPropagation"].as_str() {
            Some("HostToContainer") => api::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => api::MountPropagation::PropagationBidirectional,
            _ => api::MountPropagation::PropagationPrivate,
        };
        mounts.push(api::Mount {
            container_path: mount["mountPath"].as_str().unwrap_or_default().to_owned(),
            host_path: src.display().to_string(),
            readonly: mount["readOnly"] == true,
            selinux_relabel: false,
            propagation: propagation as i32,
        });
    }
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.clone(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: strs(&container["command"]),
        args: strs(&container["args"]),
        envs,
        mounts,
        log_path: format!("{name}.log"),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                // CRI takes the names without `CAP_` (the runtime adds it) and `ALL`.
                capabilities: Some(api::Capability {
                    add_capabilities: strs(&sc["capabilities"]["add"]),
                    drop_capabilities: strs(&sc["capabilities"]["drop"]),
                }),
                privileged: sc["privileged"] == true,
                namespace_options: Some(namespace_options(spec)),
                readonly_rootfs: sc["readOnlyRootFilesystem"] == true,
                no_new_privs: sc["allowPrivilegeEscalation"] == false,
            }),
        }),
        ..Default::default()
    })
}

/// The host directory behind `volume`: a hostPath (created for `DirectoryOrCreate`, which
/// the kubelet does too) or a ConfigMap written out under `work/configmaps/<name>`.
fn host_source(volume: &Value, name: &str, configmaps: &[Value], work: &Path) -> Result<PathBuf> {
    if let Some(path) = volume["hostPath"]["path"].as_str() {
        let path = PathBuf::from(path);
        match volume["hostPath"]["type"].as_str().unwrap_or("") {
            "DirectoryOrCreate" => {
                std::fs::create_dir_all(&path).map_err(Error::io("create", &path))?
            }
            "Directory" if !path.is_dir() => {
                return Err(unexpected(format!("hostPath {} missing", path.display())));
            }
            _ => {}
        }
        return Ok(path);
    }
    let Some(cm) = volume["configMap"]["name"].as_str() else {
        return Err(unexpected(format!(
            "volume {name}: only hostPath and configMap"
        )));
    };
    let data = configmaps
        .iter()
        .find(|c| c["metadata"]["name"] == cm)
        .map(|c| c["data"].clone())
        .ok_or_else(|| unexpected(format!("configMap {cm} not rendered")))?;
    let dir = work.join("configmaps").join(name);
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    for (key, text) in data.as_object().into_iter().flatten() {
        let file = dir.join(key);
        std::fs::write(&file, text.as_str().unwrap_or_default())
            .map_err(Error::io("write", &file))?;
    }
    Ok(dir)
}

/// How long an init container may run.
const INIT_TIMEOUT: Duration = Duration::from_secs(120);

impl Running {
    /// Runs the DaemonSet's pod through CRI on `cri`: the sandbox, the init containers to
    /// completion (a failing one is an error carrying its log), then the containers.
    /// `objects` are the chart's rendered objects (for ConfigMaps).
    pub async fn start(socket: &Path, objects: &[Value], image: &str, work: &Path) -> Result<Self> {
        let cri = &Client::connect(socket).await?;
        let daemonset = objects
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .ok_or_else(|| unexpected("no DaemonSet".into()))?;
        let configmaps: Vec<Value> = objects
            .iter()
            .filter(|o| o["kind"] == "ConfigMap")
            .cloned()
            .collect();
        let spec = &daemonset["spec"]["template"]["spec"];
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs).map_err(Error::io("create", &logs))?;
        let sandbox_cfg = sandbox_config(daemonset, work);
        let sandbox = cri.run_pod_sandbox(sandbox_cfg.clone()).await?;
        let mut me = Running {
            cri: cri.clone(),
            socket: socket.to_path_buf(),
            sandbox,
            containers: Vec::new(),
            work: work.to_path_buf(),
        };
        for init in spec["initContainers"].as_array().into_iter().flatten() {
            let cfg = container_config(spec, init, &configmaps, image, work)?;
            let name = cfg
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let id = cri
                .create_container(&me.sandbox, cfg, sandbox_cfg.clone())
                .await?;
            cri.start_container(&id).await?;
            let status = me.wait_exited(&id, &name).await;
            let _ = cri.remove_container(&id).await;
            let status = status?;
            if status.exit_code != 0 {
                return Err(unexpected(format!(
                    "init container {name} exited {} ({}): {}",
                    status.exit_code,
                    status.reason,
                    me.log(&name)
                )));
            }
        }
        for c in spec["containers"].as_array().into_iter().flatten() {
            let cfg = container_config(spec, c, &configmaps, image, work)?;
            let name = cfg
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let id = cri
                .create_container(&me.sandbox, cfg, sandbox_cfg.clone())
                .await?;
            me.containers.push((name, id.clone()));
            cri.start_container(&id).await?;
        }
        Ok(me)
    }

    async fn wait_exited(&self, id: &str, name: &str) -> Result<api::ContainerStatus> {
        let deadline = tokio::time::Instant::now() + INIT_TIMEOUT;
        loop {
            let status = self.cri.container_status(id).await?;
            if status.state == api::ContainerState::ContainerExited as i32 {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("init container {name} to finish: {}", self.log(name)),
                    seconds: INIT_TIMEOUT.as_secs_f64(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `command` in the container named `name` through CRI `ExecSync` (an exec
    /// probe); `Ok(stdout)` when it exits 0.
    pub async fn exec(&self, name: &str, command: &[String]) -> Result<String> {
        let id = self.id(name)?;
        let out = self.cri.exec_sync(id, command, 30).await?;
        if out.exit_code != 0 {
            return Err(unexpected(format!(
                "exec {command:?} in {name} exited {}: {}{}",
                out.exit_code,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls the exec `command` in `name` until it succeeds (a readiness probe).
    pub async fn wait_ready(
        &self,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match self.exec(name, command).await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{name}'s readiness probe {command:?} (last: {last}; logs in {})",
                        self.work.display()
                    ),
                    seconds: timeout.as_secs_f64(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn id(&self, name: &str) -> Result<&str> {
        self.containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.as_str())
            .ok_or_else(|| unexpected(format!("no container {name}")))
    }

    /// The container's output so far (CRI log format: time, stream, tag, line).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Stops and removes the containers and the sandbox (what [`Drop`] does, awaited).
    pub async fn stop(mut self) {
        self.teardown().await;
    }

    async fn teardown(&mut self) {
        for (_, id) in self.containers.drain(..).rev() {
            let _ = self.cri.stop_container(&id, 0).await;
            let _ = self.cri.remove_container(&id).await;
        }
        if !self.sandbox.is_empty() {
            let _ = self.cri.stop_pod_sandbox(&self.sandbox).await;
            let _ = self.cri.remove_pod_sandbox(&self.sandbox).await;
            self.sandbox.clear();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.containers.is_empty() && self.sandbox.is_empty() {
            return;
        }
        // Drop may run on the test's (blocked) runtime, which drives this client's
        // connection: the cleanup gets a thread, a runtime and a connection of its own.
        let socket = self.socket.clone();
        let sandbox = std::mem::take(&mut self.sandbox);
        let containers = std::mem::take(&mut self.containers);
        let work = self.work.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(cri) = Client::connect(&socket).await else {
                    return;
                };
                let mut me = Running {
                    cri,
                    socket,
                    sandbox,
                    containers,
                    work,
                };
                me.teardown().await;
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests;
