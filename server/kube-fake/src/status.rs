//! `Status` objects (`kind: Status, apiVersion: v1`) as the API server answers errors, with
//! the reasons, codes and message shapes of `k8s.io/apimachinery/pkg/api/errors`. Pure.

use serde_json::{Value, json};

use crate::resource::Resource;

/// An API error: the HTTP code and the Status body to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (same as the Status `code`).
    pub code: u16,
    /// The Status object.
    pub body: Value,
    /// `Retry-After` seconds, sent as a header too (429).
    pub retry_after: Option<u64>,
}

/// One field error of an Invalid (422) Status, as `details.causes[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueTooLong`, ...
    pub reason: &'static str,
    /// The field path (`metadata.uid`, `reportingController`).
    pub field: String,
    /// The rendered message (`Required value`, `Invalid value: "x": field is immutable`).
    pub message: String,
}

impl FieldError {
    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.to_owned(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `field.Required(path, "")`.
    pub fn required(field: &str) -> Self {
        FieldError {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message: "Required value".to_owned(),
        }
    }

    /// `field.Invalid(path, value, detail)`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {shown}: {detail}"),
        }
    }
}

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> ApiError {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    if reason.is_empty() {
        body.as_object_mut().map(|o| o.remove("reason"));
    }
    ApiError {
        code,
        body,
        retry_after: None,
    }
}

fn details(resource: Resource, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": resource.plural() });
    if !resource.group().is_empty() {
        d["group"] = json!(resource.group());
    }
    d
}

/// 401: no or wrong bearer token.
pub fn unauthorized() -> ApiError {
    status(401, "Unauthorized", "Unauthorized".to_owned(), None)
}

/// 403 Forbidden: an authorization denial (`message` from [`crate::rbac::message`]).
pub fn forbidden(resource: Resource, name: Option<&str>, message: String) -> ApiError {
    status(
        403,
        "Forbidden",
        message,
        Some(details(resource, name.unwrap_or(""))),
    )
}

/// 404 for an object: `pods "x" not found`.
pub fn not_found(resource: Resource, name: &str) -> ApiError {
    let msg = format!("{} {name:?} not found", resource.qualified());
    status(404, "NotFound", msg, Some(details(resource, name)))
}

/// 404 for a path the server does not serve.
pub fn path_not_found() -> ApiError {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource".to_owned(),
        Some(json!({})),
    )
}

/// 409 AlreadyExists on create.
pub fn already_exists(resource: Resource, name: &str) -> ApiError {
    let msg = format!("{} {name:?} already exists", resource.qualified());
    status(409, "AlreadyExists", msg, Some(details(resource, name)))
}

/// 409 Conflict: stale `metadata.resourceVersion` on update or patch.
pub fn conflict(resource: Resource, name: &str) -> ApiError {
    let msg = format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
        resource.qualified()
    );
    status(409, "Conflict", msg, Some(details(resource, name)))
}

/// 422 Invalid with field causes: `Pod "x" is invalid: metadata.uid: Invalid value: ...`.
pub fn invalid(resource: Resource, name: &str, errors: &[FieldError]) -> ApiError {
    invalid_kind(
        &resource.qualified_kind(),
        resource.group(),
        resource.kind(),
        name,
        errors,
    )
}

/// 422 Invalid for any kind (`ListOptions.meta.k8s.io "" is invalid: ...`).
pub fn invalid_kind(
    qualified_kind: &str,
    group: &str,
    kind: &str,
    name: &str,
    errors: &[FieldError],
) -> ApiError {
    let rendered: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let joined = if rendered.len() == 1 {
        rendered[0].clone()
    } else {
        format!("[{}]", rendered.join(", "))
    };
    let msg = format!("{qualified_kind} {name:?} is invalid: {joined}");
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "reason": e.reason, "message": e.message, "field": e.field }))
        .collect();
    let mut d = json!({ "name": name, "kind": kind, "causes": causes });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    status(422, "Invalid", msg, Some(d))
}

/// 400 BadRequest with a message.
pub fn bad_request(message: impl Into<String>) -> ApiError {
    status(400, "BadRequest", message.into(), None)
}

/// 410 Expired: a resourceVersion or continue token older than the compacted history.
pub fn expired(message: impl Into<String>) -> ApiError {
    status(410, "Expired", message.into(), None)
}

/// 504 Timeout: a list asked for a resourceVersion the server has not reached.
pub fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
    status(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {requested}, current: {current}"),
        Some(json!({
            "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }],
            "retryAfterSeconds": 1
        })),
    )
}

/// 415 for a patch content type the resource does not accept.
pub fn unsupported_media_type(content_type: &str) -> ApiError {
    status(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"
        ),
        None,
    )
}

/// 406 for an Accept header the server cannot satisfy.
pub fn not_acceptable(accept: &str) -> ApiError {
    status(
        406,
        "NotAcceptable",
        format!(
            "the server was unable to respond with a content type that the client supports: {accept:?}"
        ),
        None,
    )
}

/// 405 for a verb the path does not support.
pub fn method_not_allowed(method: &str) -> ApiError {
    status(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource: {method}"),
        None,
    )
}

/// 413 for a body over the limit.
pub fn too_large(limit: usize) -> ApiError {
    status(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {limit}"),
        None,
    )
}

/// 500 InternalError (injected failures).
pub fn internal(message: &str) -> ApiError {
    status(
        500,
        "InternalError",
        format!("Internal error occurred: {message}"),
        Some(json!({ "causes": [{ "message": message }] })),
    )
}

/// 429 TooManyRequests with `Retry-After`.
pub fn too_many_requests(retry_after: u64) -> ApiError {
    let mut e = status(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.".to_owned(),
        Some(json!({ "retryAfterSeconds": retry_after })),
    );
    e.retry_after = Some(retry_after);
    e
}

/// The success Status a delete of a custom resource or event answers.
pub fn deleted(resource: Resource, name: &str, uid: &str) -> Value {
    let mut d = details(resource, name);
    d["uid"] = json!(uid);
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d })
}
