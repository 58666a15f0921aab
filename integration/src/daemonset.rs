//! The chart's DaemonSet on the private containerd: each rendered container (init
//! containers first, to completion) is started from the plexus image with `ctr run`, with
//! the pod's host network and host PID namespace, the container's command, args, env,
//! capabilities (or privileged) and volume mounts translated as the kubelet would (hostPath
//! directories created for `DirectoryOrCreate`, ConfigMaps written to files, propagation
//! `HostToContainer` → `rslave`, `Bidirectional` → `rshared`). The harness's containerd
//! runs in its test network namespace, so "host network" is that namespace. Dropping a
//! [`Running`] kills and deletes the containers it started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::run;

/// The node name the containers get for `fieldRef: spec.nodeName`.
pub const NODE_NAME: &str = "plexus-e2e-node";

/// The capabilities containerd gives a container by default; `drop: [ALL]` drops these.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The DaemonSet's containers running in a private containerd.
#[derive(Debug)]
pub struct Running {
    socket: String,
    /// Container ids by container name.
    pub containers: Vec<(String, String)>,
    /// Where each container's output goes (`<work>/<name>.log`).
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

/// `ctr run` arguments (after `run`) for `container` of the pod `spec`.
pub fn ctr_run_args(
    spec: &Value,
    container: &Value,
    configmaps: &[Value],
    image: &str,
    id: &str,
    work: &Path,
) -> Result<Vec<String>> {
    let mut args: Vec<String> = Vec::new();
    if spec["hostNetwork"] == true {
        args.push("--net-host".into());
    }
    if spec["hostPID"] == true {
        // The harness's "host" PID namespace: this process's, which containerd shares.
        // (`/proc/1/ns/pid` may be another one where the tests run inside a container,
        // and runc then fails with "can't get final child's PID from pipe".)
        args.extend([
            "--with-ns".into(),
            format!("pid:/proc/{}/ns/pid", std::process::id()),
        ]);
    }
    let sc = &container["securityContext"];
    if sc["privileged"] == true {
        args.push("--privileged".into());
    }
    for cap in strs(&sc["capabilities"]["add"]) {
        args.extend(["--cap-add".into(), format!("CAP_{cap}")]);
    }
    for cap in strs(&sc["capabilities"]["drop"]) {
        if cap == "ALL" {
            for c in DEFAULT_CAPS {
                args.extend(["--cap-drop".into(), c.into()]);
            }
        } else {
            args.extend(["--cap-drop".into(), format!("CAP_{cap}")]);
        }
    }
    for env in container["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().unwrap_or_default();
        let value = match (&env["value"], &env["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(f)) if f == "spec.nodeName" => NODE_NAME.to_owned(),
            other => return Err(unexpected(format!("env {name}: {other:?} not supported"))),
        };
        args.extend(["--env".into(), format!("{name}={value}")]);
    }
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap_or_default();
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .ok_or_else(|| unexpected(format!("volumeMount {name} has no volume")))?;
        let src = if let Some(path) = volume["hostPath"]["path"].as_str() {
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
            path
        } else if let Some(cm) = volume["configMap"]["name"].as_str() {
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
            dir
        } else {
            return Err(unexpected(format!(
                "volume {name}: only hostPath and configMap"
            )));
        };
        let access = if mount["readOnly"] == true {
            "ro"
        } else {
            "rw"
        };
        let propagation = match mount["mountPropagation"].as_str() {
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            _ => "rprivate",
        };
        let dst = mount["mountPath"].as_str().unwrap_or_default();
        args.extend([
            "--mount".into(),
            format!(
                "type=bind,src={},dst={dst},options=rbind:{access}:{propagation}",
                src.display()
            ),
        ]);
    }
    let log = work.join(format!("{}.log", container["name"].as_str().unwrap_or("c")));
    args.extend([format!("--log-uri=file://{}", log.display())]);
    args.push(image.to_owned());
    args.push(id.to_owned());
    args.extend(strs(&container["command"]));
    args.extend(strs(&container["args"]));
    Ok(args)
}

impl Running {
    /// Runs the init containers of `daemonset` to completion, then starts its containers
    /// (detached). `objects` are the chart's rendered objects (for ConfigMaps).
    pub fn start(socket: &Path, objects: &[Value], image: &str, work: &Path) -> Result<Self> {
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
        let mut me = Running {
            socket: socket.display().to_string(),
            containers: Vec::new(),
            work: work.to_path_buf(),
        };
        let base = [
            "-a".to_owned(),
            me.socket.clone(),
            "-n".into(),
            "k8s.io".into(),
        ];
        for init in spec["initContainers"].as_array().into_iter().flatten() {
            let id = format!(
                "pxds-{}-{}",
                std::process::id(),
                init["name"].as_str().unwrap_or("init")
            );
            let mut args: Vec<String> = vec!["120".into(), "ctr".into()];
            args.extend(base.iter().cloned());
            args.extend(["run".into(), "--rm".into()]);
            args.extend(ctr_run_args(spec, init, &configmaps, image, &id, work)?);
            run("timeout", &args)?;
        }
        for c in spec["containers"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("c").to_owned();
            let id = format!("pxds-{}-{name}", std::process::id());
            let mut args: Vec<String> = base.to_vec();
            args.extend(["run".into(), "-d".into()]);
            args.extend(ctr_run_args(spec, c, &configmaps, image, &id, work)?);
            run("ctr", &args)?;
            me.containers.push((name, id));
        }
        Ok(me)
    }

    /// Runs `command` in the container named `name` (an exec probe); `Ok(output)` when it
    /// exits 0.
    pub fn exec(&self, name: &str, command: &[String]) -> Result<String> {
        let id = self.id(name)?;
        let exec_id = format!("probe-{}", crate::netns::next_id());
        let mut args = vec![
            "30".to_owned(),
            "ctr".into(),
            "-a".into(),
            self.socket.clone(),
            "-n".into(),
            "k8s.io".into(),
            "task".into(),
            "exec".into(),
            "--exec-id".into(),
            exec_id,
            id.to_owned(),
        ];
        args.extend(command.iter().cloned());
        run("timeout", &args)
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
            let last = match self.exec(name, command) {
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

    /// The container's output so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, id) in self.containers.iter().rev() {
            let base = ["-a", self.socket.as_str(), "-n", "k8s.io"];
            let _ = run(
                "ctr",
                base.iter()
                    .copied()
                    .chain(["task", "kill", "-s", "SIGKILL", id]),
            );
            let _ = run(
                "timeout",
                ["20", "ctr"]
                    .into_iter()
                    .chain(base)
                    .chain(["task", "delete", "--force", id]),
            );
            let _ = run(
                "ctr",
                base.iter().copied().chain(["containers", "delete", id]),
            );
        }
    }
}
