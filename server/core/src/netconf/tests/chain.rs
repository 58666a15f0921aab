//! F28 paths and F35: a `.conflist` given as a path gains the plugins of
//! `<dir>/<name>/*.conf`; every rejection of that path.

use super::*;

fn chain_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "10-cbr0.conflist",
        r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"flannel","delegate":{"isDefaultGateway":true}}]}"#,
    );
    fs::create_dir(tmp.path().join("cbr0")).unwrap();
    write(
        &tmp.path().join("cbr0"),
        "20-portmap.conf",
        r#"{"type":"portmap","capabilities":{"portMappings":true}}"#,
    );
    write(
        &tmp.path().join("cbr0"),
        "10-tuning.conf",
        r#"{"type":"tuning","mtu":1400}"#,
    );
    write(
        &tmp.path().join("cbr0"),
        "30-ignored.json",
        r#"{"type":"ignored"}"#,
    );
    tmp
}

#[test]
fn conflist_path_appends_subdirectory_plugins_in_name_order() {
    let tmp = chain_dir();
    let (path, conf) = load_path(&tmp.path().join("10-cbr0.conflist")).unwrap();
    assert!(path.ends_with("10-cbr0.conflist"));
    assert_eq!(conf.plugin_types, ["flannel", "tuning", "portmap"]);
    let d = conf.into_delegate();
    let v: serde_json::Value = serde_json::from_slice(&d.bytes).unwrap();
    assert_eq!(v["plugins"][0]["delegate"]["isDefaultGateway"], true);
    assert_eq!(v["plugins"][1], json!({"type":"tuning","mtu":1400}));
    assert_eq!(v["plugins"][2]["capabilities"]["portMappings"], true);
    assert_eq!(d.name, "cbr0");
}

#[test]
fn conflist_path_without_subdirectory_keeps_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = r#"{"name":"solo", "plugins":[{"type":"ptp"}]}"#;
    write(tmp.path(), "a.conflist", raw);
    let (_, conf) = load_path(&tmp.path().join("a.conflist")).unwrap();
    assert_eq!(conf.into_delegate().bytes, raw.as_bytes());
}

#[test]
fn plugins_may_come_only_from_the_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "n.conflist",
        r#"{"cniVersion":"1.0.0","name":"n"}"#,
    );
    fs::create_dir(tmp.path().join("n")).unwrap();
    write(&tmp.path().join("n"), "a.conf", r#"{"type":"bridge"}"#);
    let (_, conf) = load_path(&tmp.path().join("n.conflist")).unwrap();
    assert_eq!(conf.plugin_types, ["bridge"]);
}

#[test]
fn load_only_inlined_plugins_skips_the_subdirectory() {
    let tmp = chain_dir();
    write(
        tmp.path(),
        "10-cbr0.conflist",
        r#"{"name":"cbr0","loadOnlyInlinedPlugins":true,"plugins":[{"type":"flannel"}]}"#,
    );
    let (_, conf) = load_path(&tmp.path().join("10-cbr0.conflist")).unwrap();
    assert_eq!(conf.plugin_types, ["flannel"]);
    // libcni also reads the strings "true"/"false".
    write(
        tmp.path(),
        "10-cbr0.conflist",
        r#"{"name":"cbr0","loadOnlyInlinedPlugins":"TRUE","plugins":[{"type":"flannel"}]}"#,
    );
    let (_, conf) = load_path(&tmp.path().join("10-cbr0.conflist")).unwrap();
    assert_eq!(conf.plugin_types, ["flannel"]);
    write(
        tmp.path(),
        "10-cbr0.conflist",
        r#"{"name":"cbr0","loadOnlyInlinedPlugins":"false","plugins":[{"type":"flannel"}]}"#,
    );
    let (_, conf) = load_path(&tmp.path().join("10-cbr0.conflist")).unwrap();
    assert_eq!(conf.plugin_types, ["flannel", "tuning", "portmap"]);
}

#[test]
fn chain_rejections() {
    let tmp = tempfile::tempdir().unwrap();
    let load = |file: &str, text: &str| {
        write(tmp.path(), file, text);
        err_text(load_path(&tmp.path().join(file)))
    };
    let cases: &[(&str, &str, &str)] = &[
        (
            "a.conflist",
            r#"{"name":"bad name","plugins":[{"type":"ptp"}]}"#,
            "invalid network config name: \"bad name\"",
        ),
        (
            "b.conflist",
            r#"{"plugins":[{"type":"ptp"}]}"#,
            "invalid network config name: \"\"",
        ),
        ("c.conflist", r#"{"name":"c"}"#, "no plugin configs found"),
        (
            "d.conflist",
            r#"{"name":"d","loadOnlyInlinedPlugins":true}"#,
            "`loadOnlyInlinedPlugins` is true, and no 'plugins' key",
        ),
        (
            "e.conflist",
            r#"{"name":"e","loadOnlyInlinedPlugins":"yes","plugins":[{"type":"ptp"}]}"#,
            "\"loadOnlyInlinedPlugins\" must be true or false",
        ),
        (
            "f.conflist",
            r#"{"name":"f","plugins":[]}"#,
            "'plugins' list is empty",
        ),
        ("g.conflist", "{nope", "failed to unmarshal config"),
    ];
    for (file, text, want) in cases {
        let e = load(file, text);
        assert!(e.contains(want), "{file}: {e:?} lacks {want:?}");
        assert!(e.contains(file), "{file}: {e:?} does not name the file");
    }

    fs::create_dir(tmp.path().join("h")).unwrap();
    write(&tmp.path().join("h"), "x.conf", r#"{"mtu":1}"#);
    let e = load("h.conflist", r#"{"name":"h","plugins":[{"type":"ptp"}]}"#);
    assert!(
        e.contains("error parsing configuration: missing 'type'"),
        "{e}"
    );
    assert!(e.contains("x.conf"), "{e}");
    write(&tmp.path().join("h"), "x.conf", r#"{"type":"/bin/sh"}"#);
    let e = load("h.conflist", r#"{"name":"h","plugins":[{"type":"ptp"}]}"#);
    assert!(e.contains("plugin 1 has type \"/bin/sh\""), "{e}");
    write(&tmp.path().join("h"), "x.conf", "[1]");
    let e = load("h.conflist", r#"{"name":"h","plugins":[{"type":"ptp"}]}"#);
    assert!(e.contains("must hold one JSON object"), "{e}");

    // Multus option 4: a file path must be a regular file.
    let e = err_text(load_path(Path::new("/dev/null")));
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn single_plugin_file_needs_a_type() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "x.conf",
        r#"{"name":"x","plugins":[{"type":"ptp"}]}"#,
    );
    let e = err_text(load_path(&tmp.path().join("x.conf")));
    assert!(e.contains("no 'type'; perhaps this is a .conflist?"), "{e}");
}
