//! Netlink dumps that notice interruption and retry.
//!
//! The kernel sets `NLM_F_DUMP_INTR` on dump messages when the object list changed while
//! the dump was being produced (netlink(7); `nl_dump_check_consistent` in
//! include/net/genetlink.h and net/netlink/af_netlink.c), so the result may miss or repeat
//! entries. rtnetlink's typed `get()` streams drop the header flags, so dumps go through
//! [`dump_once`], and [`retry_dump`] repeats an interrupted dump (dranet's nlwrap does 5).

use std::future::Future;

use futures::StreamExt;
use rtnetlink::packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};

/// How many times an interrupted dump is attempted before giving up.
pub(crate) const DUMP_ATTEMPTS: u32 = 5;

/// The messages of one dump attempt and whether the kernel flagged it interrupted.
#[derive(Debug)]
pub(crate) struct Dumped<T> {
    pub(crate) items: Vec<T>,
    pub(crate) interrupted: bool,
}

/// Sends one dump request and collects every reply.
pub(crate) async fn dump_once(
    handle: &rtnetlink::Handle,
    request: RouteNetlinkMessage,
) -> Result<Dumped<RouteNetlinkMessage>, rtnetlink::Error> {
    let mut req = NetlinkMessage::from(request);
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut replies = handle.clone().request(req)?;
    let mut out = Dumped {
        items: Vec::new(),
        interrupted: false,
    };
    while let Some(msg) = replies.next().await {
        if msg.header.flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match msg.payload {
            NetlinkPayload::InnerMessage(inner) => out.items.push(inner),
            NetlinkPayload::Error(err) if err.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(err));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Runs `attempt` until it returns an uninterrupted dump, at most `attempts` times.
pub(crate) async fn retry_dump<T, F, Fut>(
    what: &'static str,
    attempts: u32,
    mut attempt: F,
) -> Result<Vec<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Dumped<T>, rtnetlink::Error>>,
{
    for n in 1..=attempts {
        let dumped = attempt()
            .await
            .map_err(|source| Error::List { what, source })?;
        if !dumped.interrupted {
            return Ok(dumped.items);
        }
        tracing::debug!(what, attempt = n, "netlink dump interrupted, retrying");
    }
    Err(Error::DumpInterrupted { what, attempts })
}

/// Dumps with retry and maps each reply through `pick` (which drops unrelated messages).
pub(crate) async fn dump<T>(
    handle: &rtnetlink::Handle,
    what: &'static str,
    request: impl Fn() -> RouteNetlinkMessage,
    pick: impl Fn(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>> {
    let items = retry_dump(what, DUMP_ATTEMPTS, || dump_once(handle, request())).await?;
    Ok(items.into_iter().filter_map(pick).collect())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn retries_until_a_clean_dump() {
        let calls = Cell::new(0u32);
        let out = block_on(retry_dump("links", 5, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                Ok(Dumped {
                    items: vec![n],
                    interrupted: n < 3,
                })
            }
        }))
        .unwrap();
        assert_eq!(out, vec![3]);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn gives_up_after_the_attempt_budget() {
        let calls = Cell::new(0u32);
        let err = block_on(retry_dump("routes", 4, || {
            calls.set(calls.get() + 1);
            async {
                Ok(Dumped::<u8> {
                    items: vec![],
                    interrupted: true,
                })
            }
        }))
        .unwrap_err();
        assert_eq!(calls.get(), 4);
        assert!(matches!(
            err,
            Error::DumpInterrupted {
                what: "routes",
                attempts: 4
            }
        ));
    }

    #[test]
    fn request_errors_are_not_retried() {
        let calls = Cell::new(0u32);
        let err = block_on(retry_dump("addresses", 5, || {
            calls.set(calls.get() + 1);
            async { Err::<Dumped<u8>, _>(rtnetlink::Error::RequestFailed) }
        }))
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert!(matches!(
            err,
            Error::List {
                what: "addresses",
                ..
            }
        ));
    }
}
