//! The read verbs: get, list (with resourceVersion semantics, `limit`/`continue` paging,
//! selectors) and watch, in full or metadata-only (`PartialObjectMetadata`) form.
//!
//! List `resourceVersion` semantics (API concepts, "Resource versions"): unset is the most
//! recent state; `"0"` is any state (served whole, `limit` ignored, as the watch cache does);
//! `X` with `NotOlderThan` (or no match) is a state at least as new as `X` (504 when the server
//! has not reached `X`); `X` with `Exact` is the state at `X` (410 Expired once compacted).
//! A continue token pins the version of the first page; once compacted it is 410 Expired.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use http::Response;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::control::Shared;
use crate::query::{Query, Repr, negotiate};
use crate::resource::Target;
use crate::router::{Body, json_response};
use crate::select::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError, FieldError};
use crate::watch::{self, render};

/// Watch length when `timeoutSeconds` is not given (the server picks 30-60 minutes).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Longest `timeoutSeconds` honoured.
pub const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(86_400);

/// GET of one object.
pub fn get(
    shared: &Shared,
    t: &Target,
    name: &str,
    accept: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let repr =
        negotiate(accept, false).ok_or_else(|| status::not_acceptable(accept.unwrap_or("")))?;
    let ns = t.namespace.as_deref().unwrap_or("");
    let obj = shared
        .store
        .get(t.resource, ns, name)
        .ok_or_else(|| status::not_found(t.resource, name))?;
    Ok(json_response(200, &render(&obj, repr == Repr::Metadata)))
}

fn list_options_error(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(status::invalid_kind(
            "ListOptions.meta.k8s.io",
            "meta.k8s.io",
            "ListOptions",
            "",
            &errors,
        ))
    }
}

fn validate_options(q: &Query, watch: bool) -> Result<(), ApiError> {
    let rv = q.non_empty("resourceVersion");
    let rvm = q.non_empty("resourceVersionMatch");
    let mut errs = Vec::new();
    if watch {
        if q.flag("sendInitialEvents") {
            if rvm != Some("NotOlderThan") {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !q.flag("allowWatchBookmarks") {
                errs.push(FieldError::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires allowWatchBookmarks=true",
                ));
            }
        } else if rvm.is_some() {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
    } else {
        if q.non_empty("sendInitialEvents").is_some() {
            errs.push(FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
        if let Some(m) = rvm {
            if !matches!(m, "NotOlderThan" | "Exact") {
                errs.push(FieldError {
                    reason: "FieldValueNotSupported",
                    field: "resourceVersionMatch".into(),
                    message: format!("Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""),
                });
            }
            if rv.is_none() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if q.non_empty("continue").is_some() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m == "Exact" && rv == Some("0") {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
    }
    list_options_error(errs)
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| status::bad_request(format!("invalid resource version {s:?}: a resourceVersion is an opaque string the server returned")))
}

/// GET of a collection: a list, or a watch with `watch=true`.
pub fn list_or_watch(
    shared: &Arc<Shared>,
    t: &Target,
    q: &Query,
    accept: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let watching = q.flag("watch");
    validate_options(q, watching)?;
    let fields = FieldSelector::parse(t.resource, q.get("fieldSelector").unwrap_or(""))
        .map_err(status::bad_request)?;
    let labels =
        LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(status::bad_request)?;
    let repr =
        negotiate(accept, !watching).ok_or_else(|| status::not_acceptable(accept.unwrap_or("")))?;
    if watching {
        let after = match q.non_empty("resourceVersion") {
            None | Some("0") => None,
            Some(x) => Some(parse_rv(x)?),
        };
        let timeout = match q.non_empty("timeoutSeconds") {
            // unset or 0: the server picks its own (minRequestTimeout-based) length
            None | Some("0") => DEFAULT_WATCH_TIMEOUT,
            Some(s) => Duration::from_secs(s.parse().map_err(|_| {
                status::bad_request(format!(
                    "invalid timeoutSeconds {s:?}: expected a non-negative integer"
                ))
            })?),
        }
        .min(MAX_WATCH_TIMEOUT);
        let params = watch::Params {
            resource: t.resource,
            namespace: t.namespace.clone(),
            fields,
            labels,
            after,
            metadata_only: repr == Repr::Metadata,
            bookmarks: q.flag("allowWatchBookmarks"),
            send_initial_events: q.flag("sendInitialEvents"),
            timeout,
            bookmark_interval: shared.bookmark_interval(),
        };
        let s = watch::stream(
            shared.store.clone(),
            params,
            shared.close_watches.subscribe(),
        );
        let body = BodyExt::boxed(StreamBody::new(s.map(|b: Bytes| Ok(Frame::data(b)))));
        let mut r = Response::new(body);
        r.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    list(shared, t, q, &fields, &labels, repr)
}

fn list(
    shared: &Shared,
    t: &Target,
    q: &Query,
    fields: &FieldSelector,
    labels: &LabelSelector,
    repr: Repr,
) -> Result<Response<Body>, ApiError> {
    let limit: usize = match q.non_empty("limit") {
        None => 0,
        Some(s) => s.parse().map_err(|_| {
            status::bad_request(format!(
                "invalid limit {s:?}: expected a non-negative integer"
            ))
        })?,
    };
    let ns = t.namespace.as_deref();
    let (items, rv, start, limit) = if let Some(token) = q.non_empty("continue") {
        if q.non_empty("resourceVersion").is_some() {
            return Err(status::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (rv, start) = decode_continue(token)?;
        let (items, rv) = shared.store.list(t.resource, ns, Some(rv)).map_err(|e| {
            if e.code == 410 {
                status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            } else {
                e
            }
        })?;
        (items, rv, Some(start), limit)
    } else {
        match (
            q.non_empty("resourceVersion"),
            q.non_empty("resourceVersionMatch"),
        ) {
            (None, _) => {
                let (items, rv) = shared.store.list(t.resource, ns, None)?;
                (items, rv, None, limit)
            }
            (Some("0"), _) => {
                let (items, rv) = shared.store.list(t.resource, ns, None)?;
                (items, rv, None, 0)
            }
            (Some(x), Some("Exact")) => {
                let (items, rv) = shared.store.list(t.resource, ns, Some(parse_rv(x)?))?;
                (items, rv, None, limit)
            }
            (Some(x), _) => {
                let x = parse_rv(x)?;
                let current = shared.store.resource_version();
                if x > current {
                    return Err(status::too_large_resource_version(x, current));
                }
                let (items, rv) = shared.store.list(t.resource, ns, None)?;
                (items, rv, None, limit)
            }
        }
    };
    let key = |o: &Value| {
        let m = &o["metadata"];
        format!(
            "{}/{}",
            m["namespace"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or("")
        )
    };
    let mut selected: Vec<Value> = items
        .into_iter()
        .filter(|o| start.as_ref().is_none_or(|s| key(o).as_str() > s.as_str()))
        .filter(|o| fields.matches(o) && labels.matches(o))
        .collect();
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if limit > 0 && selected.len() > limit {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        let last = key(selected.last().expect("limit > 0"));
        meta["continue"] = json!(encode_continue(rv, &last));
        if fields == &FieldSelector::default() && labels == &LabelSelector::default() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let metadata_only = repr == Repr::Metadata;
    let items: Vec<Value> = selected
        .iter()
        .map(|o| {
            let mut v = render(o, metadata_only);
            if !metadata_only && !t.resource.is_custom() {
                // built-in lists carry no kind/apiVersion on their items; custom resources do
                v.as_object_mut().map(|m| {
                    m.remove("kind");
                    m.remove("apiVersion")
                });
            }
            v
        })
        .collect();
    let (kind, api_version) = if metadata_only {
        ("PartialObjectMetadataList".to_owned(), "meta.k8s.io/v1")
    } else {
        (
            format!("{}List", t.resource.kind()),
            t.resource.api_version(),
        )
    };
    Ok(json_response(
        200,
        &json!({ "kind": kind, "apiVersion": api_version, "metadata": meta, "items": items }),
    ))
}

fn encode_continue(rv: u64, start: &str) -> String {
    let raw = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": start });
    URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let bad = || {
        status::bad_request(
            "continue key is not valid: pass the metadata.continue value of the previous page unchanged",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_owned()))
}
