//! The threads [`crate::netns::run_in`] runs its jobs on.
//!
//! `setns(2)` moves only the calling thread, so a job inside another network namespace
//! (a sysctl write, a netlink socket bound to a pod's netns) needs a thread of its own
//! while it runs. A fresh thread per job cost about 0.12 ms (median, measured in plexusd
//! under the paths bench), and a pod's setup ran five to seven of them. Instead, after
//! each job a thread goes back to the namespace it started in and waits for the next
//! one; up to [`MAX_IDLE`] wait, the rest end.
//!
//! A job runs in two parts: the first inside the namespace, the second (handing the
//! result over) only once the thread is back home, so no caller goes on while a worker
//! still holds its namespace (the reaper counts on the runtime's removal of a pod's netns
//! taking the links with it). A thread that cannot go back, or whose job panicked, ends
//! instead of waiting: no job ever starts where another left a thread.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc::{self, SendError, Sender};

use super::Netns;

/// What a job left to do once its worker is back in its own namespace.
pub(crate) struct Done {
    /// Hands the result over.
    pub(crate) deliver: Box<dyn FnOnce() + Send>,
    /// The job's work panicked (caught inside the job, so the result, an error, still
    /// waits for the worker to be home): the worker ends after delivering it.
    pub(crate) panicked: bool,
}

/// The part of a job that runs inside the target namespace (it enters it itself). It must
/// not unwind: a panic would hand its caller an error (its sender dropped) while the
/// thread is still inside the namespace.
pub(crate) type Job = Box<dyn FnOnce() -> Done + Send>;

/// Workers kept waiting for a job at most. A burst needing more spawns threads that end
/// after their job, as before the pool.
const MAX_IDLE: usize = 8;

/// The waiting workers, each by the sender of its job queue.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Sender<Job>>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `job` on a waiting worker, or on a new thread when none waits.
pub(crate) fn submit(mut job: Job) -> io::Result<()> {
    loop {
        let Some(worker) = idle().pop() else {
            return spawn(job);
        };
        match worker.send(job) {
            Ok(()) => return Ok(()),
            // That worker ended meanwhile: the next one, or a new thread.
            Err(SendError(back)) => job = back,
        }
    }
}

/// Workers waiting right now (tests).
#[cfg(test)]
pub(crate) fn waiting() -> usize {
    idle().len()
}

fn spawn(first: Job) -> io::Result<()> {
    std::thread::Builder::new()
        .name("plexus-netns".into())
        .spawn(move || work(first))
        .map(drop)
}

fn work(first: Job) {
    // Home: the namespace this thread was created in (its creator's, the daemon's own).
    let home = Netns::open("/proc/thread-self/ns/net");
    let (queue, jobs) = mpsc::channel::<Job>();
    let mut job = first;
    loop {
        let done = job();
        let back = home.as_ref().is_ok_and(|h| h.enter().is_ok());
        (done.deliver)();
        if !back || done.panicked {
            // Nothing else runs on a thread left in another namespace, or on one whose
            // job panicked.
            return;
        }
        {
            let mut idle = idle();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(queue.clone());
        }
        match jobs.recv() {
            Ok(next) => job = next,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Privileged (they make network namespaces). A process per test (nextest), so the
    //! waiting workers are this test's own.

    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::netns::run_in;
    use crate::test_util::{TestNetns, require_privileged};

    fn own_netns() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    /// Threads of this process whose netns is `ino`.
    fn threads_in(ino: u64) -> Vec<String> {
        let want = format!("net:[{ino}]");
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_link(t.path().join("ns/net"))
                    .is_ok_and(|l| l.to_string_lossy() == want)
            })
            .map(|t| t.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Waits until `n` workers wait for jobs: a worker hands its result over before it
    /// queues itself again.
    fn wait_idle(n: usize) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while waiting() < n {
            assert!(
                std::time::Instant::now() < until,
                "{} workers waiting, not {n}",
                waiting()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// A job that enters nothing: where its worker is, and which thread it is.
    fn where_is_a_worker() -> (u64, std::thread::ThreadId) {
        let (tx, rx) = mpsc::channel();
        submit(Box::new(move || {
            let seen = (own_netns(), std::thread::current().id());
            Done {
                deliver: Box::new(move || {
                    let _ = tx.send(seen);
                }),
                panicked: false,
            }
        }))
        .unwrap();
        rx.recv().unwrap()
    }

    #[tokio::test]
    async fn a_worker_leaves_the_namespace_before_the_answer_and_is_used_again() {
        if !require_privileged() {
            return;
        }
        let home = own_netns();
        let pod = TestNetns::new().await;
        let pod_ino = pod.netns().id().unwrap().ino;
        // The worker that opened the netns's netlink socket waits again.
        wait_idle(1);
        let (inside, worker) = run_in(pod.netns(), || (own_netns(), std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(inside, pod_ino, "the job ran outside the pod's netns");
        // Back home before the answer: no thread of ours holds the pod's netns.
        assert_eq!(threads_in(pod_ino), Vec::<String>::new());
        wait_idle(1);
        assert_eq!(waiting(), 1, "one thread did every job so far");
        let (seen, again) = where_is_a_worker();
        assert_eq!(again, worker, "the waiting worker was not used again");
        assert_eq!(seen, home, "a reused worker started outside its own netns");
    }

    #[tokio::test]
    async fn a_job_that_panics_ends_its_thread_and_the_next_job_runs() {
        if !require_privileged() {
            return;
        }
        let pod = TestNetns::new().await;
        let pod_ino = pod.netns().id().unwrap().ino;
        let failed_on = std::sync::Arc::new(Mutex::new(None));
        let on = std::sync::Arc::clone(&failed_on);
        let failed = run_in(pod.netns(), move || -> u64 {
            *on.lock().unwrap() = Some(std::thread::current().id());
            panic!("the job fails")
        })
        .await;
        let err = failed.unwrap_err().to_string();
        assert!(err.contains("panicked"), "{err}");
        // The error arrives once the thread has left the pod's netns, as a result does.
        assert_eq!(threads_in(pod_ino), Vec::<String>::new());
        let failed_on = failed_on.lock().unwrap().expect("the job ran");
        let inside = run_in(pod.netns(), own_netns).await.unwrap();
        assert_eq!(inside, pod_ino);
        wait_idle(1);
        for _ in 0..3 {
            let (seen, next) = where_is_a_worker();
            assert_ne!(
                next, failed_on,
                "the thread whose job panicked took another job"
            );
            assert_eq!(seen, own_netns());
        }
        assert_eq!(threads_in(pod_ino), Vec::<String>::new());
    }
}
