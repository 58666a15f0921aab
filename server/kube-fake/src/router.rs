//! The HTTP front: authenticates every request (`Authorization: Bearer`, 401 Status
//! otherwise), applies injected failures, logs the request, and dispatches API paths to the
//! read (`read`) and write verbs below. Every error is a `Status` object with its HTTP code.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::control::{FailureKind, RequestRecord, Shared};
use crate::discovery;
use crate::event;
use crate::patch::{self, PatchType};
use crate::query::Query;
use crate::rbac;
use crate::read;
use crate::resource::{Resource, Subresource, Target, parse_path};
use crate::status::{self, ApiError, FieldError};

/// The response body type: a full JSON body or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the API server's default limit is 3 MiB).
pub const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.body);
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, secs.into());
    }
    r
}

fn header(h: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = header(req.headers(), CONTENT_TYPE);
    let accept = header(req.headers(), ACCEPT);
    let resp = route(
        &shared,
        req,
        &method,
        &path,
        &query,
        content_type.as_deref(),
        accept.as_deref(),
    )
    .await
    .unwrap_or_else(error_response);
    tracing::debug!(%method, %path, %query, status = resp.status().as_u16(), "fake kube-apiserver");
    shared.log(RequestRecord {
        method,
        path,
        query,
        content_type,
        accept,
        status: resp.status().as_u16(),
    });
    Ok(resp)
}

async fn route(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    method: &str,
    path: &str,
    raw_query: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let token = header(req.headers(), AUTHORIZATION);
    let token = token
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    if !token.is_some_and(|t| !t.is_empty() && shared.token_ok(t)) {
        return Err(status::unauthorized());
    }
    if let Some(kind) = shared.take_failure(method, path) {
        return Err(match kind {
            FailureKind::InternalError => status::internal("injected failure"),
            FailureKind::TooManyRequests { retry_after_secs } => {
                status::too_many_requests(retry_after_secs)
            }
            FailureKind::Conflict => match parse_path(path) {
                Ok(t) => status::conflict(t.resource, t.name.as_deref().unwrap_or("")),
                Err(_) => status::internal("injected conflict on an unknown path"),
            },
        });
    }
    match path {
        "/version" => return Ok(json_response(200, &version())),
        "/healthz" | "/livez" | "/readyz" => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
            r.headers_mut()
                .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
            return Ok(r);
        }
        _ => {}
    }
    if method == "GET"
        && let Some(doc) = discovery::document(path, shared.nad_crd_installed(), shared.address())
    {
        return Ok(json_response(200, &doc));
    }
    let target = parse_path(path)
        .ok()
        .filter(|t| {
            t.resource != Resource::NetworkAttachmentDefinition || shared.nad_crd_installed()
        })
        .ok_or_else(status::path_not_found)?;
    let query = Query::parse(raw_query).ok_or_else(|| {
        status::bad_request("the query string is not valid percent-encoding or is over 16 KiB")
    })?;
    authorize(shared, method, raw_query, &target)?;
    match (method, target.name.as_deref()) {
        ("GET", Some(name)) => read::get(shared, &target, name, accept),
        ("GET", None) => read::list_or_watch(shared, &target, &query, accept),
        ("POST", None) if target.namespace.is_some() => {
            let body = read_json(req, content_type).await?;
            create(shared, &target, body)
        }
        ("PUT", Some(name)) => {
            let body = read_json(req, content_type).await?;
            update(shared, &target, name, body)
        }
        ("PATCH", Some(name)) => patch_object(shared, req, &target, name, content_type).await,
        ("DELETE", Some(name)) if target.subresource.is_none() => {
            let body = read_body(req).await?;
            delete(shared, &target, name, &body)
        }
        _ => Err(status::method_not_allowed(method)),
    }
}

/// RBAC: a denied verb on the target's resource is 403 Forbidden, as the authorizer answers.
fn authorize(shared: &Shared, method: &str, raw_query: &str, t: &Target) -> Result<(), ApiError> {
    let watch = raw_query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = rbac::verb(method, t.name.is_some(), watch);
    let resource = rbac::resource(t);
    if !shared.denied(verb, &resource) {
        return Ok(());
    }
    let reason = rbac::reason(verb, &resource, t.resource.group(), t.namespace.as_deref());
    Err(status::forbidden(
        t.resource,
        t.name.as_deref(),
        rbac::message(t.resource, t.name.as_deref(), &reason),
    ))
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-plexus-kube-fake",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "", "compiler": "", "platform": "linux/amd64"
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(status::too_large(BODY_LIMIT)),
        Err(e) => Err(status::bad_request(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

async fn read_json(req: Request<Incoming>, content_type: Option<&str>) -> Result<Value, ApiError> {
    let mime = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    if !matches!(mime, None | Some("application/json")) {
        return Err(status::unsupported_media_type(content_type.unwrap_or("")));
    }
    let body = read_body(req).await?;
    parse_json(&body)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| status::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// The body of a create or update: an object whose `apiVersion`, `kind` and
/// `metadata.namespace`, when given, are the ones of the URL (400 otherwise).
fn check_body(r: Resource, ns: &str, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(status::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(v) = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|v| *v != r.api_version())
    {
        return Err(status::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    if let Some(k) = body
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| *k != r.kind())
    {
        return Err(status::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            r.kind()
        )));
    }
    if body
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty() && n != ns)
    {
        return Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// PUT: custom resources refuse unconditional updates (the CRD strategy's
/// `AllowUnconditionalUpdate` is false), built-in pods and events accept them.
fn update(
    shared: &Shared,
    t: &Target,
    name: &str,
    body: Value,
) -> Result<Response<Body>, ApiError> {
    let ns = t.namespace.as_deref().unwrap_or("");
    check_body(t.resource, ns, &body)?;
    let rv = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if t.resource.is_custom() && rv.is_none_or(str::is_empty) {
        let e = FieldError::invalid(
            "metadata.resourceVersion",
            &json!("0x0"),
            "must be specified for an update",
        );
        let mut err = status::invalid(t.resource, name, &[e]);
        // the server renders this value unquoted
        err.body["message"] = json!(format!(
            "{} {name:?} is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            t.resource.qualified_kind()
        ));
        return Err(err);
    }
    let status_only = t.subresource == Some(Subresource::Status);
    let obj = shared
        .store
        .update(t.resource, ns, name, body, status_only)?;
    Ok(json_response(200, &obj))
}

fn create(shared: &Shared, t: &Target, body: Value) -> Result<Response<Body>, ApiError> {
    let ns = t.namespace.as_deref().unwrap_or("");
    let r = t.resource;
    check_body(r, ns, &body)?;
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let errors = match r {
        Resource::Event => event::validate(&body, ns),
        Resource::Pod
            if body
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty) =>
        {
            vec![FieldError::required("spec.containers")]
        }
        Resource::NetworkAttachmentDefinition => match body.pointer("/spec/config") {
            None | Some(Value::String(_)) => Vec::new(),
            Some(v) => vec![FieldError::invalid(
                "spec.config",
                v,
                "spec.config in body must be of type string",
            )],
        },
        _ => Vec::new(),
    };
    if !errors.is_empty() {
        return Err(status::invalid(r, &name, &errors));
    }
    let obj = shared.store.create(r, ns, body)?;
    Ok(json_response(201, &obj))
}

async fn patch_object(
    shared: &Shared,
    req: Request<Incoming>,
    t: &Target,
    name: &str,
    content_type: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let ct = content_type.unwrap_or("");
    let kind = PatchType::from_content_type(ct)
        .filter(|k| !(t.resource.is_custom() && *k == PatchType::Strategic))
        .ok_or_else(|| status::unsupported_media_type(ct))?;
    let body = read_body(req).await?;
    let patch = parse_json(&body)?;
    let ns = t.namespace.as_deref().unwrap_or("");
    let current = shared
        .store
        .get(t.resource, ns, name)
        .ok_or_else(|| status::not_found(t.resource, name))?;
    let patched = patch::apply(kind, &current, &patch).map_err(|e| match kind {
        PatchType::Json => {
            let mut s = status::invalid(t.resource, name, &[]);
            s.body["message"] = json!(e);
            s
        }
        _ => status::bad_request(e),
    })?;
    let status_only = t.subresource == Some(Subresource::Status);
    let obj = shared
        .store
        .update(t.resource, ns, name, patched, status_only)?;
    Ok(json_response(200, &obj))
}

fn delete(
    shared: &Shared,
    t: &Target,
    name: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let opts = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    let uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
    let rv = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str);
    let ns = t.namespace.as_deref().unwrap_or("");
    let last = shared.store.delete(t.resource, ns, name, uid, rv)?;
    if t.resource == Resource::Pod {
        Ok(json_response(200, &last))
    } else {
        let uid = last
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        Ok(json_response(200, &status::deleted(t.resource, name, uid)))
    }
}
