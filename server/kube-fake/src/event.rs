//! Create-time validation of `events.k8s.io/v1` Events, the rules of the API server's
//! `ValidateEventCreate` for the events.k8s.io/v1 API (field paths as the server reports
//! them, which are the internal `core` names: `involvedObject.namespace`, `message`, ...).
//! Pure.

use serde_json::Value;

use crate::meta::name_error;
use crate::status::FieldError;

/// Longest `reportingInstance`, `action` and `reason` the server accepts.
pub const FIELD_LIMIT: usize = 128;
/// Longest `note` the server accepts.
pub const NOTE_LIMIT: usize = 1024;

fn s<'a>(ev: &'a Value, ptr: &str) -> &'a str {
    ev.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The field errors of an Event created in `namespace`; empty when valid.
pub fn validate(ev: &Value, namespace: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let regarding_ns = s(ev, "/regarding/namespace");
    if regarding_ns.is_empty() {
        if !namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &Value::from(regarding_ns),
                "does not match event.namespace",
            ));
        }
    } else if regarding_ns != namespace {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            &Value::from(regarding_ns),
            "does not match event.namespace",
        ));
    }
    let controller = s(ev, "/reportingController");
    if controller.is_empty() {
        errs.push(FieldError::required("reportingController"));
    } else if let Some(e) = qualified_name_error(controller) {
        errs.push(FieldError::invalid(
            "reportingController",
            &Value::from(controller),
            e,
        ));
    }
    for (field, limit) in [
        ("reportingInstance", FIELD_LIMIT),
        ("action", FIELD_LIMIT),
        ("reason", FIELD_LIMIT),
    ] {
        let v = s(ev, &format!("/{field}"));
        if v.is_empty() {
            errs.push(FieldError::required(field));
        } else if v.len() > limit {
            errs.push(FieldError::invalid(
                field,
                &Value::from(""),
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if s(ev, "/note").len() > NOTE_LIMIT {
        errs.push(FieldError::invalid(
            "message",
            &Value::from(""),
            &format!("can have at most {NOTE_LIMIT} characters"),
        ));
    }
    if let Some(e) = name_error(namespace) {
        errs.push(FieldError::invalid("namespace", &Value::from(namespace), e));
    }
    match ev.get("eventTime") {
        Some(Value::String(t)) if t.parse::<jiff::Timestamp>().is_ok() => {}
        _ => errs.push(FieldError::required("eventTime")),
    }
    if let Some(series) = ev.get("series").filter(|v| !v.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                &series["count"],
                "should be at least 2",
            ));
        }
        if !series.get("lastObservedTime").is_some_and(Value::is_string) {
            errs.push(FieldError::required("series.lastObservedTime"));
        }
    }
    let ty = s(ev, "/type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            &Value::from(""),
            &format!("has invalid value: {ty}"),
        ));
    }
    for (field, ptr) in [
        ("deprecatedFirstTimestamp", "/deprecatedFirstTimestamp"),
        ("deprecatedLastTimestamp", "/deprecatedLastTimestamp"),
    ] {
        if ev.pointer(ptr).is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::invalid(
                field,
                &Value::from(""),
                "needs to be unset",
            ));
        }
    }
    if ev
        .get("deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        errs.push(FieldError::invalid(
            "deprecatedCount",
            &Value::from(""),
            "needs to be unset",
        ));
    }
    if !s(ev, "/deprecatedSource/component").is_empty()
        || !s(ev, "/deprecatedSource/host").is_empty()
    {
        errs.push(FieldError::invalid(
            "deprecatedSource",
            &Value::from(""),
            "needs to be unset",
        ));
    }
    errs
}

/// A qualified name: optional DNS subdomain prefix and `/`, then 1-63 alphanumerics, `-`,
/// `_`, `.`, starting and ending alphanumeric.
fn qualified_name_error(v: &str) -> Option<&'static str> {
    let (prefix, name) = match v.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, v),
    };
    if prefix.is_some_and(|p| p.is_empty() || name_error(p).is_some()) {
        return Some("prefix part must be a lowercase RFC 1123 subdomain");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && alnum(name.bytes().next())
        && alnum(name.bytes().last());
    (!ok).then_some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "metadata": {"name": "e1", "namespace": "ns"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "plexus",
            "reportingInstance": "plexus-node1",
            "action": "Attach",
            "reason": "AddedInterface",
            "type": "Normal",
            "note": "Add eth1",
            "regarding": {"kind": "Pod", "namespace": "ns", "name": "p"}
        })
    }

    #[test]
    fn valid_event_passes() {
        assert!(validate(&good(), "ns").is_empty());
    }

    #[test]
    fn each_required_field_is_named() {
        for field in [
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "eventTime",
        ] {
            let mut ev = good();
            ev.as_object_mut().unwrap().remove(field);
            let errs = validate(&ev, "ns");
            assert_eq!(errs.len(), 1, "{field}: {errs:?}");
            assert_eq!(
                (errs[0].field.as_str(), errs[0].reason),
                (field, "FieldValueRequired")
            );
        }
    }

    #[test]
    fn wrong_type_namespace_and_long_note_are_invalid() {
        let mut ev = good();
        ev["type"] = json!("Info");
        ev["regarding"]["namespace"] = json!("other");
        ev["note"] = json!("x".repeat(NOTE_LIMIT + 1));
        let fields: Vec<String> = validate(&ev, "ns").into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["involvedObject.namespace", "message", "type"]);
    }
}
