//! Cleanup of what a private containerd leaves behind, callable from `Drop` and from the
//! demo's `--cleanup`: pods removed through CRI, shims of that containerd killed by PID,
//! mounts under the run dir detached, pod netns bind mounts and the run dir removed.
//! Touches nothing that does not belong to the given run dir or socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cri::{self, Client};
use crate::netns::remove_netns_path;
use crate::process::pids_with_arg;

/// Stops and removes every pod of the containerd at `socket`, from a dedicated thread with
/// its own runtime (callable from `Drop`, inside or outside tokio); returns their netns paths.
pub fn remove_all_pods_blocking(socket: &Path) -> Vec<PathBuf> {
    let socket = socket.to_owned();
    let worker = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        rt.block_on(async {
            let work = async {
                let mut seen = Vec::new();
                let Ok(cri) = Client::connect(&socket).await else {
                    return seen;
                };
                for sb in cri.list_pod_sandboxes().await.unwrap_or_default() {
                    if let Ok(st) = cri.pod_sandbox_status(&sb.id).await
                        && let Ok(p) = cri::netns_path(&st)
                    {
                        seen.push(p);
                    }
                    let _ = cri.stop_pod_sandbox(&sb.id).await;
                    let _ = cri.remove_pod_sandbox(&sb.id).await;
                }
                seen
            };
            tokio::time::timeout(Duration::from_secs(60), work)
                .await
                .unwrap_or_default()
        })
    });
    worker.join().unwrap_or_default()
}

/// Kills shims started for the containerd at `socket`, unmounts everything under
/// `run_dir`, removes the pod netns bind mounts in `netns` and the run dir itself.
pub fn cleanup_leftovers(run_dir: &Path, socket: &Path, netns: &[PathBuf]) {
    let needle = socket.display().to_string();
    for pid in pids_with_arg(&needle) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for m in mounts_under(run_dir).into_iter().rev() {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    for p in netns {
        remove_netns_path(p);
    }
    let _ = std::fs::remove_dir_all(run_dir);
}

/// Mount points at or below `dir`, in mount order (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}
