//! The real exec path: [`crate::exec::Exec`] over the CNI delegate executor
//! ([`crate::delegate::Executor`]), configured from the engine config.

use futures::FutureExt;
use futures::future::BoxFuture;
use plexus_core::cni;

use crate::config::EngineConfig;
use crate::delegate::{self, CacheEntry, Executor, Invocation};
use crate::exec::{BoxError, Exec, ExecRequest};

/// Runs attachments through CNI plugin binaries.
#[derive(Debug)]
pub struct DelegateExec {
    executor: Executor,
}

/// The delegate config an engine config implies.
pub fn delegate_config(cfg: &EngineConfig) -> delegate::Config {
    let mut c = delegate::Config::new(cfg.cni_bin_dirs.clone(), cfg.cni_cache_dir.clone());
    c.timeout = cfg.delegate_timeout;
    c.host_netns = cfg.host_netns.clone();
    c.ipam_data_dir = Some(cfg.ipam_data_dir.clone());
    c
}

impl DelegateExec {
    /// An executor for `cfg`'s bin dirs, cache dir, timeout and host netns.
    pub fn new(cfg: &EngineConfig) -> DelegateExec {
        DelegateExec {
            executor: Executor::new(delegate_config(cfg)),
        }
    }
}

fn invocation<'a>(req: &ExecRequest<'a>) -> Invocation<'a> {
    let mut inv = Invocation::for_attachment(req.attachment, req.pod, req.sandbox_id, req.netns);
    inv.prev_result = req.prev_result;
    inv
}

impl Exec for DelegateExec {
    fn add<'a>(&'a self, req: ExecRequest<'a>) -> BoxFuture<'a, Result<cni::Result, BoxError>> {
        async move {
            let out = self.executor.add(&invocation(&req)).await?;
            Ok(out.result)
        }
        .boxed()
    }

    fn del<'a>(&'a self, req: ExecRequest<'a>) -> BoxFuture<'a, Result<(), BoxError>> {
        async move { Ok(self.executor.del(&invocation(&req)).await?) }.boxed()
    }
}

/// libcni cache entries naming `sandbox_id` (for teardown without a readable record).
#[allow(clippy::result_large_err)] // the delegate's own error type
pub(crate) fn cached_entries(
    cfg: &EngineConfig,
    sandbox_id: &str,
) -> delegate::Result<Vec<CacheEntry>> {
    Executor::new(delegate_config(cfg)).cached_attachments(Some(sandbox_id))
}
