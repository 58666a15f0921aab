//! Field and label selectors as the API server parses and applies them. Pure.
//!
//! Field selectors: `a=b`, `a==b`, `a!=b`, comma-separated (all must hold); only the
//! fields each resource registers are accepted, others are `400 field label not supported`.
//! An unset field compares as the empty string (`spec.nodeName=` selects unscheduled pods).
//! Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.

use serde_json::Value;

use crate::resource::Resource;

/// One parsed requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Req>);

/// A parsed label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Req>);

/// Fields a resource can be selected by (the server's registered field labels).
fn supported_fields(resource: Resource) -> &'static [&'static str] {
    match resource {
        Resource::Pod => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Resource::NetworkAttachmentDefinition => &["metadata.name", "metadata.namespace"],
        Resource::Event => &[
            "metadata.name",
            "metadata.namespace",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
    }
}

impl FieldSelector {
    /// Parses `spec.nodeName=n1,metadata.name!=x` for `resource`.
    pub fn parse(resource: Resource, s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, eq) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid field selector {term:?}: expected field=value, field==value or field!=value"
                ));
            };
            let field = field.trim();
            if !supported_fields(resource).contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            let (f, v) = (field.to_owned(), value.trim().to_owned());
            reqs.push(if eq { Req::Eq(f, v) } else { Req::Ne(f, v) });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether `obj` satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(f, v) => field_value(obj, f) == *v,
            Req::Ne(f, v) => field_value(obj, f) != *v,
            _ => true,
        })
    }
}

fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl LabelSelector {
    /// Parses a label selector.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let bad = || format!("unable to parse requirement: {term:?}: found unexpected syntax");
            let req = if let Some((k, rest)) = term.split_once(" notin ") {
                Req::NotIn(k.trim().to_owned(), set_values(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Req::In(k.trim().to_owned(), set_values(rest).ok_or_else(bad)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Req::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once("==") {
                Req::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once('=') {
                Req::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().to_owned())
            } else {
                Req::Exists(term.to_owned())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_name_selector_matches_and_unset_is_empty() {
        let sel = FieldSelector::parse(Resource::Pod, "spec.nodeName=n1").unwrap();
        assert!(sel.matches(&json!({"spec": {"nodeName": "n1"}})));
        assert!(!sel.matches(&json!({"spec": {"nodeName": "n2"}})));
        let unscheduled = FieldSelector::parse(Resource::Pod, "spec.nodeName=").unwrap();
        assert!(unscheduled.matches(&json!({"spec": {}})));
        let both =
            FieldSelector::parse(Resource::Pod, "spec.nodeName==n1,metadata.name!=a").unwrap();
        assert!(both.matches(&json!({"metadata": {"name": "b"}, "spec": {"nodeName": "n1"}})));
        assert!(!both.matches(&json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}})));
    }

    #[test]
    fn unsupported_field_is_refused() {
        let err = FieldSelector::parse(Resource::NetworkAttachmentDefinition, "spec.config=x");
        assert_eq!(err.unwrap_err(), "field label not supported: spec.config");
        assert!(FieldSelector::parse(Resource::Pod, "spec.nodeName").is_err());
    }

    #[test]
    fn label_selector_forms() {
        let obj = json!({"metadata": {"labels": {"app": "a", "tier": "web"}}});
        for (s, want) in [
            ("app=a", true),
            ("app!=a", false),
            ("tier", true),
            ("!tier", false),
            ("app in (b, a),tier", true),
            ("app notin (a)", false),
            ("missing notin (a)", true),
        ] {
            assert_eq!(LabelSelector::parse(s).unwrap().matches(&obj), want, "{s}");
        }
    }
}
