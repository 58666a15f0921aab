//! Running one CNI plugin process per the spec (libcni `pkg/invoke`): find the binary in
//! the configured bin dirs only, set the six `CNI_*` variables over the inherited
//! environment, write the config on stdin, enforce a deadline (killing the plugin's whole
//! process group), retry "text file busy", and turn a failure into a typed error from the
//! plugin's error JSON or its stderr. Plugins are spawned so that they die with the daemon
//! (`spawn.rs`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use plexus_core::cni;
use tokio::io::AsyncWriteExt;

use super::error::{Error, Result};
use super::netconf::validate_plugin_type;

/// Finds `plugin` in `dirs` (first regular file wins; `PATH` is never searched).
pub fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    validate_plugin_type(plugin)?;
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .ok_or_else(|| Error::PluginNotFound {
            plugin: plugin.to_owned(),
            dirs: dirs.to_vec(),
        })
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: &'static str,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`.
    pub path: String,
}

/// How processes are run.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Deadline per plugin execution.
    pub timeout: Duration,
    /// Extra attempts when exec fails with ETXTBSY.
    pub busy_retries: u32,
    /// Pause between those attempts.
    pub busy_retry_delay: Duration,
    /// Netns the plugin process runs in (`None` = ours).
    pub host_netns: Option<PathBuf>,
}

/// What a successful plugin run printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Stdout (the result JSON).
    pub stdout: Vec<u8>,
    /// Stderr (informational).
    pub stderr: Vec<u8>,
}

impl Runner {
    /// Runs `binary` (the plugin `plugin`) once with `env` and `stdin`.
    pub async fn run(
        &self,
        plugin: &str,
        binary: &Path,
        env: &Env,
        stdin: &[u8],
    ) -> Result<Output> {
        let netns = match &self.host_netns {
            Some(p) => {
                let err = |source| Error::HostNetns {
                    path: p.clone(),
                    source,
                };
                // Checked here so a missing netns is not reported as a missing plugin
                // (the child's open in pre_exec would fail with the same ENOENT).
                std::fs::metadata(p).map_err(err)?;
                let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                    err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "the path contains a NUL byte",
                    ))
                })?;
                Some(c)
            }
            None => None,
        };
        let mut attempt = 0;
        let mut child = loop {
            let mut cmd = tokio::process::Command::new(binary);
            cmd.env("CNI_COMMAND", env.command)
                .env("CNI_CONTAINERID", &env.container_id)
                .env("CNI_NETNS", &env.netns)
                .env("CNI_IFNAME", &env.ifname)
                .env("CNI_ARGS", &env.args)
                .env("CNI_PATH", &env.path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            // First in pre_exec: nothing runs in the child before it is tied to us.
            super::spawn::die_with_daemon(&mut cmd);
            if let Some(path) = netns.clone() {
                // SAFETY: the closure runs in the forked child before exec and only makes
                // async-signal-safe calls (open, setns, close) on a string built before fork.
                unsafe {
                    cmd.pre_exec(move || plexus_netlink::netns::enter_netns_in_child(&path));
                }
            }
            match super::spawn::spawn(cmd).await {
                Ok(child) => break child,
                Err(e)
                    if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < self.busy_retries =>
                {
                    attempt += 1;
                    tracing::debug!(plugin, attempt, "cni plugin binary busy, retrying exec");
                    tokio::time::sleep(self.busy_retry_delay).await;
                }
                Err(source) => {
                    return Err(Error::Spawn {
                        path: binary.to_owned(),
                        source,
                    });
                }
            }
        };
        // Kills the plugin's whole process group if this future is dropped (caller
        // cancelled, deadline) or times out before the plugin exits; disarmed once it has.
        let mut group = GroupKill(child.id().and_then(|p| i32::try_from(p).ok()));
        let mut pipe = child.stdin.take();
        let input = stdin.to_vec();
        let write = async move {
            if let Some(p) = pipe.as_mut() {
                // A plugin may exit without reading stdin (EPIPE); its exit status tells.
                let _ = p.write_all(&input).await;
            }
            drop(pipe);
        };
        let run = async move {
            let ((), out) = tokio::join!(write, child.wait_with_output());
            out
        };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(output)) => {
                group.disarm();
                output
            }
            Ok(Err(source)) => {
                return Err(Error::Wait {
                    path: binary.to_owned(),
                    source,
                });
            }
            Err(_) => {
                // The child itself got SIGKILL when its handle was dropped; `group` kills
                // whatever it spawned too (it leads its own process group).
                drop(group);
                return Err(Error::Timeout {
                    plugin: plugin.to_owned(),
                    verb: env.command,
                    timeout: self.timeout,
                });
            }
        };
        if output.status.success() {
            if !output.stderr.is_empty() {
                tracing::debug!(
                    plugin,
                    verb = env.command,
                    stderr = %String::from_utf8_lossy(&output.stderr),
                    "cni plugin stderr"
                );
            }
            return Ok(Output {
                stdout: output.stdout,
                stderr: output.stderr,
            });
        }
        Err(Error::Plugin {
            plugin: plugin.to_owned(),
            verb: env.command,
            error: Box::new(plugin_error(&output.status, &output.stdout, &output.stderr)),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// SIGKILLs a plugin's process group when dropped while armed.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// libcni's `pluginErr`: the error JSON on stdout, else a message from stderr, else the
/// exit status. Output that is neither gets code 999 (internal).
fn plugin_error(
    status: &std::process::ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> cni::PluginError {
    if let Some(e) = cni::PluginError::parse(stdout) {
        return e;
    }
    let msg = if !stdout.iter().all(u8::is_ascii_whitespace) {
        format!(
            "netplugin failed but error parsing its diagnostic message {:?}",
            String::from_utf8_lossy(stdout)
        )
    } else if stderr.is_empty() {
        format!("netplugin failed with no error message: {status}")
    } else {
        format!("netplugin failed: {:?}", String::from_utf8_lossy(stderr))
    };
    cni::PluginError::new(cni::ErrorCode::INTERNAL, msg, "")
}
