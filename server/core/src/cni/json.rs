//! JSON text exactly as Go's `encoding/json` writes it, for the wire formats plexus must
//! reproduce byte for byte (CNI results, network-status). serde_json already matches Go's
//! key order (struct order), number and string formatting; what differs is Go's HTML-safe
//! escaping, which is applied here. Nothing else lives in this module.

use serde::Serialize;

/// Rewrites the characters Go escapes by default (`<`, `>`, `&`, U+2028, U+2029) into
/// their `\uXXXX` form. These characters can only occur inside JSON strings, so a text
/// replacement is exact.
pub(crate) fn go_escape(text: String) -> String {
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `json.Marshal`: compact text.
pub(crate) fn marshal<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value).map(go_escape)
}

/// Go's `json.MarshalIndent(v, "", "    ")`.
pub(crate) fn marshal_indent<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser)?;
    // serde_json only writes valid UTF-8.
    Ok(go_escape(String::from_utf8_lossy(&buf).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            marshal(&"a<b>&c\u{2028}").unwrap(),
            r#""a\u003cb\u003e\u0026c\u2028""#
        );
    }

    #[test]
    fn indent_matches_go_for_empty_containers() {
        let v = serde_json::json!({"a": {}, "b": [], "c": ["x"]});
        assert_eq!(
            marshal_indent(&v).unwrap(),
            "{\n    \"a\": {},\n    \"b\": [],\n    \"c\": [\n        \"x\"\n    ]\n}"
        );
    }
}
