//! F14, F18–F21 and the plugin-type and size guards.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::*;

mod chain;

fn nad(config: &str) -> Nad {
    Nad::new("lab", "br", config)
}

fn err_text(r: Result<impl std::fmt::Debug>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn name_is_injected_only_when_missing_and_bytes_stay_faithful_otherwise() {
    let raw = "{ \"cniVersion\": \"1.0.0\",\n  \"name\": \"mine\", \"type\": \"bridge\", \"z\": 1.5, \"a\": 2 }";
    let (conf, source) = from_nad(&nad(raw), Path::new("/nonexistent")).unwrap();
    assert_eq!(conf.name, "mine");
    assert_eq!(
        source,
        NetworkSource::Nad {
            namespace: "lab".into(),
            name: "br".into()
        }
    );
    assert_eq!(conf.clone().into_delegate().bytes, raw.as_bytes());

    for raw in [
        r#"{"type":"bridge","cniVersion":"0.4.0"}"#,
        r#"{"name":"","type":"bridge","cniVersion":"0.4.0"}"#,
    ] {
        let (conf, _) = from_nad(&nad(raw), Path::new("/nonexistent")).unwrap();
        let d = conf.into_delegate();
        assert_eq!(d.name, "br");
        assert_eq!(d.cni_version, "0.4.0");
        let v: serde_json::Value = serde_json::from_slice(&d.bytes).unwrap();
        assert_eq!(v["name"], "br");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys[0],
            if raw.contains("\"name\"") {
                "name"
            } else {
                "type"
            }
        );
    }
}

#[test]
fn conf_and_conflist_detection() {
    let d = NetConf::parse("n", br#"{"type":"macvlan","master":"eth1"}"#, Some("n"))
        .unwrap()
        .into_delegate();
    assert_eq!(d.form, ConfigForm::Conf);
    assert_eq!(d.plugin_types, ["macvlan"]);
    let d = NetConf::parse(
        "n",
        br#"{"cniVersion":"1.0.0","name":"c","plugins":[{"type":"bridge"},{"type":"tuning"}]}"#,
        None,
    )
    .unwrap()
    .into_delegate();
    assert_eq!(d.form, ConfigForm::Conflist);
    assert_eq!(d.plugin_types, ["bridge", "tuning"]);
    assert_eq!(d.name, "c");
}

#[test]
fn config_rejections_follow_multus_messages() {
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"name":"x"}"#,
            "delegate must have the 'type' or 'plugin' field",
        ),
        (
            br#"{"plugins":null}"#,
            "delegate must have the 'type' or 'plugin' field",
        ),
        (br#"{"plugins":[]}"#, "'plugins' list is empty"),
        (br#"{"plugins":{}}"#, "must be a list"),
        (
            br#"{"plugins":[{"type":"bridge"},{"mtu":1}]}"#,
            "a plugin delegate must have the 'type' field (plugin 1",
        ),
        (
            br#"{"plugins":[{"type":""}]}"#,
            "a plugin delegate must have the 'type' field (plugin 0",
        ),
        (b"{not json", "failed to unmarshal config"),
        (b"[1]", "must be a JSON object"),
        (br#"{"name":5,"type":"x"}"#, "\"name\" must be a string"),
        (br#"{"type":7}"#, "\"type\" must be a string"),
        (
            br#"{"type":"x","cniVersion":1}"#,
            "\"cniVersion\" must be a string",
        ),
    ];
    for (bytes, want) in cases {
        let e = err_text(NetConf::parse("lab/br", bytes, Some("br")));
        assert!(e.starts_with("network lab/br: "), "{e}");
        assert!(
            e.contains(want),
            "{}: {e:?} lacks {want:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn plugin_types_must_be_bare_names() {
    for good in [
        "bridge",
        "host-local",
        "my_plugin.v2",
        "SR-IOV",
        "0x",
        &"a".repeat(64),
    ] {
        check_type("n", 0, good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, why) in [
        ("", "empty"),
        ("../../bin/sh", "'/'"),
        ("/usr/bin/bridge", "'/'"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        (".", "does not start"),
        (".hidden", "does not start"),
        ("-x", "does not start"),
        ("a b", "characters"),
        ("a\0b", "characters"),
        (&"a".repeat(65), "longer than 64"),
    ] {
        let e = check_type("lab/br", 2, bad).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(
            e,
            Error::InvalidPluginType {
                plugin_index: 2,
                ..
            }
        ));
        assert!(msg.contains(why), "{bad:?}: {msg}");
        assert!(msg.contains("network lab/br: plugin 2"), "{msg}");
        assert!(
            msg.contains("accepted") || msg.contains("must be a bare plugin name"),
            "{msg}"
        );
    }
    let e = err_text(NetConf::parse(
        "lab/br",
        br#"{"plugins":[{"type":"bridge"},{"type":"../x"}]}"#,
        None,
    ));
    assert!(e.contains("plugin 1"), "{e}");
    let e = err_text(NetConf::parse("lab/br", br#"{"type":"/bin/sh"}"#, None));
    assert!(e.contains("plugin 0"), "{e}");
}

#[test]
fn oversized_configs_are_rejected() {
    let big = format!(
        r#"{{"type":"bridge","pad":"{}"}}"#,
        "x".repeat(MAX_CONFIG_BYTES)
    );
    let e = err_text(NetConf::parse("lab/br", big.as_bytes(), None));
    assert!(e.contains("more than the 1048576 accepted"), "{e}");
    // Files are checked before they are read, and the message names the file.
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "big.conf", &big);
    let e = err_text(load_path(&tmp.path().join("big.conf")));
    assert!(e.contains("big.conf: file is"), "{e}");
    assert!(e.contains("more than the 1048576 accepted"), "{e}");
}

#[test]
fn cni_args_are_merged_into_every_plugin() {
    let args = json!({"k": "new", "extra": true});
    let args = args.as_object().unwrap();
    let mut conf = NetConf::parse(
        "n",
        br#"{"type":"bridge","args":{"cni":{"k":"old","keep":1},"other":2}}"#,
        None,
    )
    .unwrap();
    conf.inject_cni_args("n", args).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&conf.into_delegate().bytes).unwrap();
    assert_eq!(
        v["args"],
        json!({"cni":{"k":"new","keep":1,"extra":true},"other":2})
    );

    let mut conf = NetConf::parse(
        "n",
        br#"{"name":"c","plugins":[{"type":"bridge"},{"type":"tuning","args":{}}]}"#,
        None,
    )
    .unwrap();
    conf.inject_cni_args("n", args).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&conf.into_delegate().bytes).unwrap();
    for p in v["plugins"].as_array().unwrap() {
        assert_eq!(p["args"]["cni"]["k"], "new");
    }

    let raw = br#"{"type":"bridge"}"#;
    let mut conf = NetConf::parse("n", raw, None).unwrap();
    conf.inject_cni_args("n", &serde_json::Map::new()).unwrap();
    assert_eq!(conf.into_delegate().bytes, raw);

    let mut conf = NetConf::parse("n", br#"{"type":"bridge","args":"x"}"#, None).unwrap();
    assert!(err_text(conf.inject_cni_args("n", args)).contains("\"args\" must be an object"));
    let mut conf = NetConf::parse("n", br#"{"type":"bridge","args":{"cni":[]}}"#, None).unwrap();
    assert!(err_text(conf.inject_cni_args("n", args)).contains("\"args.cni\""));
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

#[test]
fn specless_nad_is_found_in_conf_dir_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "00-broken.conf", "{oops");
    write(
        tmp.path(),
        "10-other.conf",
        r#"{"name":"other","type":"bridge"}"#,
    );
    write(
        tmp.path(),
        "20-br.conflist",
        r#"{"name":"br","plugins":[{"type":"bridge"}]}"#,
    );
    write(
        tmp.path(),
        "30-br.conf",
        r#"{"name":"br","type":"macvlan"}"#,
    );
    write(tmp.path(), "br.txt", r#"{"name":"br","type":"ignored"}"#);
    let (conf, source) = from_nad(&nad(""), tmp.path()).unwrap();
    assert_eq!(conf.form, ConfigForm::Conflist);
    assert_eq!(conf.plugin_types, ["bridge"]);
    match source {
        NetworkSource::NadFile {
            namespace,
            name,
            path,
        } => {
            assert_eq!((namespace.as_str(), name.as_str()), ("lab", "br"));
            assert!(path.ends_with("20-br.conflist"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn conf_dir_lookup_failures() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "other.conf",
        r#"{"name":"other","type":"bridge"}"#,
    );
    let e = from_nad(&nad(""), tmp.path()).unwrap_err();
    assert!(matches!(e, Error::NetworkConfigFileNotFound { .. }));
    assert!(
        e.to_string()
            .contains("no network available in the name br in cni dir")
    );

    write(
        tmp.path(),
        "br.conf",
        r#"{"name":"br","plugins":[{"type":"bridge"}]}"#,
    );
    let e = err_text(from_nad(&nad(""), tmp.path()));
    assert!(e.contains("no 'type'; perhaps this is a .conflist?"), "{e}");
    assert!(e.contains("br.conf"), "{e}");

    // F20: a missing directory holds no configs (libcni ConfFiles), like an empty one.
    for dir in [
        tmp.path().join("absent"),
        tempfile::tempdir().unwrap().keep(),
    ] {
        let e = from_nad(&nad(""), &dir).unwrap_err();
        assert!(matches!(e, Error::NoNetworkConfigs { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "network lab/br: no networks found in {} (no .conf, .conflist or .json file there)",
                dir.display()
            )
        );
        assert_eq!(e.kind(), "network-config-file-not-found");
    }
}

#[test]
fn load_path_takes_a_file_or_the_first_file_of_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "20-b.conf", r#"{"name":"b","type":"bridge"}"#);
    write(
        tmp.path(),
        "10-a.conflist",
        r#"{"name":"a","plugins":[{"type":"ptp"},{"type":"portmap"}]}"#,
    );
    let (path, conf) = load_path(tmp.path()).unwrap();
    assert!(path.ends_with("10-a.conflist"));
    assert_eq!(conf.plugin_types, ["ptp", "portmap"]);
    let (_, conf) = load_path(&tmp.path().join("20-b.conf")).unwrap();
    assert_eq!(conf.name, "b");
    assert!(load_path(&tmp.path().join("nope.conf")).is_err());
    let empty = tempfile::tempdir().unwrap();
    assert!(err_text(load_path(empty.path())).contains("holds no .conf"));
}

#[test]
fn unusable_conf_files_are_named_when_nothing_matches() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "00-broken.conf", "{oops");
    write(
        tmp.path(),
        "10-other.conf",
        r#"{"name":"other","type":"bridge"}"#,
    );
    fs::write(
        tmp.path().join("20-huge.conflist"),
        vec![b' '; MAX_CONFIG_BYTES + 1],
    )
    .unwrap();
    let e = from_nad(&nad(""), tmp.path()).unwrap_err();
    assert!(matches!(e, Error::UnusableNetworkConfigs { .. }), "{e:?}");
    assert_eq!(e.kind(), "read-network-config");
    let text = e.to_string();
    assert!(
        text.contains("no usable CNI config named br in")
            && text.contains("00-broken.conf: not JSON")
            && text.contains("20-huge.conflist")
            && text.contains("more than the 1048576 accepted")
            && !text.contains("10-other.conf"),
        "{text}"
    );
}
