//! Helper processes: short commands whose output we need (`ip`, `ctr`, `nsenter`), and
//! long-running daemons (containerd, plexusd, plexus-nri) owned by a [`Daemon`] guard that
//! stops exactly the PID it started (SIGTERM, then SIGKILL) when dropped.
//!
//! Daemons can be started inside a test network namespace with `nsenter --net=<path>`,
//! which changes only the network namespace: bind mounts under `/var/run/netns` made by
//! containerd stay visible to every other process.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Runs `program args...`, returns its standard output; a non-zero exit is an error.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    output(&mut cmd)
}

/// Runs `program args...` inside the network namespace at `netns` (via `nsenter --net`).
pub fn run_in_netns<I, S>(netns: &Path, program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(program)
        .args(args);
    output(&mut cmd)
}

/// Runs a prepared command, returns its standard output; a non-zero exit is an error.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: line.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 2000),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// Finds `program` in `$PATH` (and the sbin dirs, which a non-login root shell may lack).
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<&str> = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .collect();
    dirs.iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingProgram {
            program: program.to_owned(),
            searched: dirs.join(":"),
        })
}

/// A long-running process we started; stopped (by its PID only) when dropped.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: std::process::Child,
    log: PathBuf,
    detached: bool,
}

impl Daemon {
    /// Starts `program args...` with stdout and stderr appended to `log`, optionally inside
    /// the network namespace at `netns`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&OsStr],
        netns: Option<&Path>,
        log: &Path,
    ) -> Result<Self> {
        Self::spawn_with_env(name, program, args, netns, log, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables (e.g. plexusd's `NODE_NAME`).
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[&OsStr],
        netns: Option<&Path>,
        log: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io("open", log))?;
        let err = out.try_clone().map_err(Error::io("open", log))?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: describe(&cmd),
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            detached: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file holding its output.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Exited {
                program: self.name.clone(),
                status,
                log: self.log.clone(),
            }),
            Ok(None) => Ok(()),
            Err(source) => Err(Error::Spawn {
                program: self.name.clone(),
                source,
            }),
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILLs; always reaps the process.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Leaves the process running when the guard is dropped (the demo's `--keep`).
    pub fn detach(&mut self) {
        self.detached = true;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.detached {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(
    what: impl Into<String>,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.into(),
                seconds: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PIDs of processes (other than ours) whose command line contains `needle`: used to find
/// containerd shims that our private containerd started and that outlived it.
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .any(|a| String::from_utf8_lossy(a).contains(needle))
                })
                .unwrap_or(false)
        })
        .collect()
}
