//! NAD manifests, the directory source's reload and failure policy, the memory source.

use std::fs;

use super::*;
use crate::error::Error;

const MACVLAN: &str = r#"---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: iot
  namespace: home
  annotations:
    k8s.v1.cni.cncf.io/resourceName: intel.com/sriov
    plexus.io/delegation: exec
spec:
  config: |
    {"cniVersion":"1.0.0","type":"macvlan","master":"eth1"}
---
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: plain
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

#[test]
fn yaml_documents_load_with_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.yaml", MACVLAN);
    let src = DirSource::new(tmp.path());
    let iot = src.get("home", "iot").unwrap().unwrap();
    assert_eq!(iot.key(), "home/iot");
    assert_eq!(iot.resource_name(), Some("intel.com/sriov"));
    assert_eq!(iot.delegation(), Ok(Delegation::Exec));
    assert_eq!(
        iot.config.trim(),
        r#"{"cniVersion":"1.0.0","type":"macvlan","master":"eth1"}"#
    );
    let plain = src.get("default", "plain").unwrap().unwrap();
    assert_eq!(plain.config, "", "spec-less NAD");
    assert_eq!(plain.delegation(), Ok(Delegation::Auto));
    assert_eq!(src.get("home", "nope").unwrap(), None);
    assert!(src.errors().is_empty());
    assert_eq!(src.list().unwrap().len(), 2);
}

#[test]
fn json_files_single_object_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "one.json",
        r#"{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition",
            "metadata":{"name":"br","namespace":"lab"},"spec":{"config":"{\"type\":\"bridge\"}"}}"#,
    );
    write(
        tmp.path(),
        "list.json",
        r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition","metadata":{"name":"x"}},
            {"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition","metadata":{"name":"y"}}]}"#,
    );
    let src = DirSource::new(tmp.path());
    assert_eq!(
        src.get("lab", "br").unwrap().unwrap().config,
        r#"{"type":"bridge"}"#
    );
    assert!(src.get("default", "x").unwrap().is_some());
    assert!(src.get("default", "y").unwrap().is_some());
}

#[test]
fn bad_documents_do_not_block_good_ones() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "good.yaml", MACVLAN);
    write(
        tmp.path(),
        "mixed.yml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n\
         apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: broken, namespace: home}\nspec: {config: {type: bridge}}\n---\n\
         apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: fine, namespace: home}\n",
    );
    write(tmp.path(), "syntax.yaml", "a: [1, 2\n");
    write(tmp.path(), "ignored.txt", "garbage");
    write(tmp.path(), ".hidden.yaml", "garbage: [");
    let src = DirSource::new(tmp.path());
    assert!(src.get("home", "iot").unwrap().is_some());
    assert!(src.get("home", "fine").unwrap().is_some());
    match src.get("home", "broken").unwrap_err() {
        Error::ParseNad {
            path,
            document,
            reason,
        } => {
            assert!(path.ends_with("mixed.yml"));
            assert_eq!(document, 2);
            assert!(reason.contains("spec.config must be a string"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let errors: Vec<String> = src.errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("mixed.yml, document 1") && errors[0].contains("kind \"Pod\""));
    assert!(errors[1].contains("mixed.yml, document 2"));
    assert!(errors[2].contains("syntax.yaml, document 1") && errors[2].contains("invalid YAML"));
}

#[test]
fn manifest_rejections() {
    let nad = |v: serde_json::Value| Nad::from_manifest(&v).unwrap_err();
    let head = |meta: serde_json::Value| serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta});
    assert!(nad(serde_json::json!([1])).contains("expected a"));
    assert!(
        nad(serde_json::json!({"kind": KIND, "metadata": {"name": "a"}})).contains("apiVersion")
    );
    assert!(nad(serde_json::json!({"apiVersion": API_VERSION, "kind": KIND})).contains("metadata"));
    assert!(nad(head(serde_json::json!({}))).contains("metadata.name"));
    assert!(nad(head(serde_json::json!({"name": "Bad_Name"}))).contains("object name"));
    assert!(nad(head(serde_json::json!({"name": "a", "namespace": "a.b"}))).contains("namespace"));
    assert!(
        nad(head(
            serde_json::json!({"name": "a", "annotations": {"k": 1}})
        ))
        .contains("must be a string")
    );
    assert!(
        nad(head(serde_json::json!({"name": "a", "annotations": [1]})))
            .contains("metadata.annotations must be a map")
    );
    let e = nad(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
    );
    assert!(
        e.contains("is not accepted; expected apiVersion k8s.cni.cncf.io/v1 kind NetworkAttachmentDefinition"),
        "{e}"
    );
    let mut v = head(serde_json::json!({"name": "a"}));
    v["spec"] = serde_json::json!("x");
    assert!(nad(v).contains("spec must be a map"));
}

#[test]
fn duplicates_across_files_name_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.yaml", MACVLAN);
    write(tmp.path(), "b.yaml", MACVLAN);
    let src = DirSource::new(tmp.path());
    let e = src.get("home", "iot").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::DuplicateNad { .. }));
    assert!(msg.contains("a.yaml") && msg.contains("b.yaml"), "{msg}");
    assert_eq!(src.errors().len(), 2, "both home/iot and default/plain");
}

#[test]
fn reloads_on_change_add_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let src = DirSource::new(tmp.path());
    assert_eq!(src.get("home", "iot").unwrap(), None);
    write(tmp.path(), "a.yaml", MACVLAN);
    src.refresh().unwrap();
    assert!(src.get("home", "iot").unwrap().is_some());
    write(
        tmp.path(),
        "a.yaml",
        &MACVLAN.replace("name: iot", "name: iot2"),
    );
    src.refresh().unwrap();
    assert_eq!(src.get("home", "iot").unwrap(), None);
    assert!(src.get("home", "iot2").unwrap().is_some());
    write(
        tmp.path(),
        "b.yaml",
        &MACVLAN.replace("name: plain", "name: other"),
    );
    src.refresh().unwrap();
    assert!(src.get("default", "other").unwrap().is_some());
    fs::remove_file(tmp.path().join("a.yaml")).unwrap();
    src.refresh().unwrap();
    assert_eq!(src.get("home", "iot2").unwrap(), None);
    assert!(src.get("default", "other").unwrap().is_some());
}

#[test]
fn lookups_read_the_index_not_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..50 {
        write(
            tmp.path(),
            &format!("n{i}.yaml"),
            &MACVLAN.replace("name: iot", &format!("name: iot{i}")),
        );
    }
    let src = DirSource::new(tmp.path());
    assert_eq!(src.scans(), 0, "nothing is read before the first lookup");
    for round in 0..20 {
        for i in 0..50 {
            assert!(src.get("home", &format!("iot{i}")).unwrap().is_some());
        }
        assert_eq!(src.get("home", &format!("absent{round}")).unwrap(), None);
    }
    assert_eq!(src.scans(), 1, "only the first lookup listed the directory");
    // A file added since is not seen until the next refresh.
    write(
        tmp.path(),
        "new.yaml",
        &MACVLAN.replace("name: iot", "name: fresh"),
    );
    assert_eq!(src.get("home", "fresh").unwrap(), None);
    src.refresh().unwrap();
    assert_eq!(src.scans(), 2);
    assert!(src.get("home", "fresh").unwrap().is_some());
}

#[test]
fn missing_directory_fails_lookups_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let absent = tmp.path().join("absent");
    let src = DirSource::new(&absent);
    let e = src.get("a", "b").unwrap_err();
    assert_eq!(e.kind(), "read-nad-dir");
    assert!(
        e.to_string().starts_with(&format!(
            "cannot read network directory {}: ",
            absent.display()
        )),
        "{e}"
    );
    assert_eq!(src.errors().len(), 1);
    // Once it exists, lookups answer again.
    fs::create_dir(&absent).unwrap();
    write(&absent, "a.yaml", MACVLAN);
    src.refresh().unwrap();
    assert!(src.get("home", "iot").unwrap().is_some());
    assert_eq!(src.get("a", "b").unwrap(), None);
    assert!(src.errors().is_empty());
}

#[test]
fn unusable_files_are_named_by_lookups_of_unknown_names() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "good.yaml", MACVLAN);
    write(tmp.path(), "syntax.yaml", "a: [1, 2\n");
    let src = DirSource::new(tmp.path());
    // Names that loaded still resolve.
    assert!(src.get("home", "iot").unwrap().is_some());
    let e = src.get("home", "lan").unwrap_err();
    assert!(matches!(e, Error::NadFilesUnusable { .. }), "{e:?}");
    assert_eq!(e.kind(), "unusable-nad-files");
    let text = e.to_string();
    assert!(
        text.contains("cannot find network-attachment-definition home/lan in")
            && text.contains("syntax.yaml, document 1: invalid YAML"),
        "{text}"
    );

    // A file that cannot be read (a dangling symlink: root reads everything else).
    fs::remove_file(tmp.path().join("syntax.yaml")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("gone"), tmp.path().join("lost.yaml")).unwrap();
    src.refresh().unwrap();
    let text = src.get("home", "lan").unwrap_err().to_string();
    assert!(
        text.contains("cannot read network file") && text.contains("lost.yaml"),
        "{text}"
    );
    assert!(!text.contains("syntax.yaml"), "{text}");
    fs::remove_file(tmp.path().join("lost.yaml")).unwrap();
    src.refresh().unwrap();
    assert_eq!(src.get("home", "lan").unwrap(), None);
}

#[test]
fn files_over_the_cap_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.yaml");
    // A valid manifest padded with a comment past the cap.
    let mut text = MACVLAN.to_string();
    text.push('#');
    text.push_str(&"x".repeat(MAX_FILE_BYTES as usize));
    fs::write(&big, &text).unwrap();
    let src = DirSource::new(tmp.path());
    let e = src.get("home", "iot").unwrap_err();
    assert_eq!(e.kind(), "unusable-nad-files");
    let want = format!(
        "network file {} is {} bytes, more than the {MAX_FILE_BYTES} accepted",
        big.display(),
        text.len()
    );
    assert!(e.to_string().contains(&want), "{e}");
    let errors = src.errors();
    assert_eq!(errors.len(), 1);
    assert!(matches!(errors[0], Error::NadFileTooLarge { .. }));
    assert_eq!(errors[0].to_string(), want);
}

#[test]
fn delegation_annotation_values() {
    let mut nad = Nad::new("a", "b", "{}");
    nad.annotations.insert(DELEGATION.into(), "auto".into());
    assert_eq!(nad.delegation(), Ok(Delegation::Auto));
    nad.annotations.insert(DELEGATION.into(), "native".into());
    assert!(
        nad.delegation()
            .unwrap_err()
            .contains("accepted: exec or auto")
    );
    nad.annotations.insert(RESOURCE_NAME.into(), String::new());
    assert_eq!(nad.resource_name(), None);
}

#[test]
fn memory_source_lookups() {
    let src = MemorySource::new([Nad::new("a", "b", "{}"), Nad::new("a", "b", "{\"x\":1}")]);
    assert_eq!(src.get("a", "b").unwrap().unwrap().config, "{\"x\":1}");
    assert_eq!(src.get("a", "c").unwrap(), None);
    let shared: std::sync::Arc<dyn NadSource> = std::sync::Arc::new(src);
    assert!(shared.get("a", "b").unwrap().is_some());
}

#[test]
fn parse_documents_reports_indexes() {
    let docs = parse_documents(MACVLAN, false);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].0, 1);
    assert_eq!(docs[1].0, 3, "empty document 2 is counted but skipped");
}

#[test]
fn deeply_nested_manifest_is_refused_before_parsing() {
    let yaml = format!("kind: {KIND}\nspec: {}", "{a: ".repeat(256 * 1024));
    let json = format!(
        "{{\"kind\": \"{KIND}\", \"spec\": {}",
        "[".repeat(1024 * 1024)
    );
    for (text, json, line) in [(yaml, false, 2), (json, true, 1)] {
        let docs = parse_documents(&text, json);
        assert_eq!(docs.len(), 1);
        let (document, result) = &docs[0];
        assert_eq!(*document, 1);
        let reason = result.as_ref().unwrap_err();
        assert!(
            reason.contains(&format!("nesting deeper than 64 levels at line {line};")),
            "{reason}"
        );
    }
}
