//! Object metadata helpers shared by the store and validation: name rules, the server's
//! timestamp format, a guaranteed `metadata` map. Pure.

use serde_json::{Value, json};

/// Makes `obj` an object with a `metadata` object and returns that metadata.
pub fn ensure_meta(obj: &mut Value) -> &serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object().expect("metadata is an object")
}

/// `metadata.name` must be a DNS-1123 subdomain (what pods, NADs and events require).
pub fn name_error(name: &str) -> Option<&'static str> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > 253 {
        Some("must be no more than 253 characters")
    } else if !ok_chars || !ends_ok(name.bytes().next()) || !ends_ok(name.bytes().last()) {
        Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    } else {
        None
    }
}

/// The current time as the API renders `metav1.Time` (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
