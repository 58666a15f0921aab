//! Query string and Accept header parsing for API requests. Pure and bounded.

use std::collections::HashMap;

/// The decoded query parameters (last value wins for repeated keys).
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

/// Longest query string accepted.
pub const QUERY_LIMIT: usize = 16 * 1024;

impl Query {
    /// Parses `a=b&c=d%3De`; `None` when over [`QUERY_LIMIT`] or not valid percent-encoding.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > QUERY_LIMIT {
            return None;
        }
        let mut out = HashMap::new();
        for kv in raw.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            out.insert(decode(k)?, decode(v)?);
        }
        Some(Query(out))
    }

    /// A parameter's value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A parameter's value, `None` when absent or empty.
    pub fn non_empty(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The representation a client asked for with `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// The full object (`application/json`).
    Full,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList` in `meta.k8s.io/v1`.
    Metadata,
}

/// Picks the first media range the server can serve, in the client's order: plain JSON (or a
/// wildcard), or JSON `as=PartialObjectMetadata` (single objects and watches) /
/// `as=PartialObjectMetadataList` (lists) with `g=meta.k8s.io;v=v1`. Tables, protobuf, YAML
/// and CBOR are not served. `None` when nothing acceptable (406).
pub fn negotiate(accept: Option<&str>, list: bool) -> Option<Repr> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Repr::Full);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("");
        if !matches!(mime, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let mut params = HashMap::new();
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                params.insert(k.trim(), v.trim());
            }
        }
        let Some(as_kind) = params.get("as") else {
            return Some(Repr::Full);
        };
        let want = if list {
            "PartialObjectMetadataList"
        } else {
            "PartialObjectMetadata"
        };
        if *as_kind == want
            && params.get("g") == Some(&"meta.k8s.io")
            && matches!(params.get("v"), Some(&"v1" | &"v1beta1"))
        {
            return Some(Repr::Metadata);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decodes_percent_and_plus() {
        let q = Query::parse("fieldSelector=spec.nodeName%3Dn1&watch=true&x=a+b").unwrap();
        assert_eq!(q.get("fieldSelector"), Some("spec.nodeName=n1"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("x"), Some("a b"));
        assert!(Query::parse("a=%zz").is_none());
        assert!(Query::parse(&"a".repeat(QUERY_LIMIT + 1)).is_none());
    }

    #[test]
    fn accept_negotiation() {
        let meta_list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        let meta = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(Some(meta_list), true), Some(Repr::Metadata));
        assert_eq!(negotiate(Some(meta), false), Some(Repr::Metadata));
        assert_eq!(negotiate(Some(meta), true), None);
        assert_eq!(
            negotiate(Some(&format!("{meta}, application/json")), true),
            Some(Repr::Full)
        );
        assert_eq!(negotiate(None, true), Some(Repr::Full));
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), false),
            None
        );
        assert_eq!(
            negotiate(Some("application/json;as=Table;g=meta.k8s.io;v=v1"), true),
            None
        );
    }
}
