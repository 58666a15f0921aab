//! Failure paths: error JSON, stderr fallbacks, bad results, the deadline, ETXTBSY,
//! rejected plugin types, configs and arguments.

use std::time::Instant;

use super::*;

#[tokio::test]
async fn error_json_becomes_a_typed_error_with_stderr_kept() {
    let f = Fixture::new();
    f.plugin(
        "p1",
        r#"echo 'details on stderr' >&2; printf '%s' '{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"subnet too small"}'; exit 1"#,
    );
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let err = f
        .executor()
        .add(&f.invocation(&config, &rc))
        .await
        .unwrap_err();
    let Error::Plugin {
        ref plugin,
        verb,
        ref error,
        ref stderr,
    } = err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((plugin.as_str(), verb), ("p1", "ADD"));
    assert_eq!(error.code, cni::ErrorCode::INVALID_NETWORK_CONFIG);
    assert_eq!(error.details, "subnet too small");
    assert_eq!(stderr, "details on stderr\n");
    assert_eq!(
        err.to_string(),
        "cni plugin \"p1\" ADD failed (code 7): invalid network config; subnet too small"
    );
    assert_eq!(err.to_plugin_error().code.0, 7);
    assert!(!f.cache.join("results/one-c1-net1").exists());
}

#[tokio::test]
async fn stderr_and_exit_status_fallbacks() {
    let f = Fixture::new();
    f.plugin("p1", "echo boom >&2; exit 1");
    f.plugin("p2", "exit 3");
    f.plugin("p3", "echo 'not json'; exit 1");
    let rc = RuntimeConfig::default();
    let msg = |e: Error| match e {
        Error::Plugin { error, .. } => (error.code, error.msg),
        other => panic!("unexpected {other:?}"),
    };
    let c1 = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let e = f.executor().add(&f.invocation(&c1, &rc)).await.unwrap_err();
    assert_eq!(
        msg(e),
        (
            cni::ErrorCode::INTERNAL,
            r#"netplugin failed: "boom\n""#.to_owned()
        )
    );
    let c2 = conf(r#"{"cniVersion":"1.0.0","name":"two","type":"p2"}"#);
    let e = f.executor().add(&f.invocation(&c2, &rc)).await.unwrap_err();
    assert_eq!(
        msg(e).1,
        "netplugin failed with no error message: exit status: 3"
    );
    let c3 = conf(r#"{"cniVersion":"1.0.0","name":"three","type":"p3"}"#);
    let e = f.executor().add(&f.invocation(&c3, &rc)).await.unwrap_err();
    assert_eq!(
        msg(e).1,
        r#"netplugin failed but error parsing its diagnostic message "not json\n""#
    );
}

#[tokio::test]
async fn bad_result_on_success_is_an_error() {
    let f = Fixture::new();
    f.plugin(
        "p1",
        "echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"x\"}]}'",
    );
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let err = f
        .executor()
        .add(&f.invocation(&config, &rc))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BadResult { verb: "ADD", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn timeout_kills_the_plugin_and_its_children() {
    let f = Fixture::new();
    let pidfile = f.log.join("child.pid");
    f.plugin(
        "p1",
        &format!("sleep 30 & echo $! > '{}'; wait", pidfile.display()),
    );
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let ex = Executor::new(Config {
        timeout: Duration::from_millis(500),
        ..f.config()
    });
    // The plugin never ends by itself (its child sleeps 30 s): the Timeout error kind and
    // the dead child show the timeout was enforced, without reading the clock.
    let err = ex.add(&f.invocation(&config, &rc)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { verb: "ADD", .. }), "{err:?}");
    assert_dies(&pidfile, "the timeout").await;
}

#[tokio::test]
async fn cancelling_a_call_kills_the_plugin_and_its_children() {
    let f = Fixture::new();
    let pidfile = f.log.join("child.pid");
    f.plugin(
        "p1",
        &format!("sleep 30 & echo $! > '{}'; wait", pidfile.display()),
    );
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let ex = f.executor();
    let inv = f.invocation(&config, &rc);
    // The caller gives up (drops the request future) once the plugin's child runs.
    {
        let call = ex.add(&inv);
        tokio::pin!(call);
        tokio::select! {
            r = &mut call => panic!("the plugin should still have been running: {r:?}"),
            () = wait_written(&pidfile) => {}
        }
    }
    assert_dies(&pidfile, "the cancelled call").await;
}

/// Waits until `file` holds a complete line (a pid written by a plugin script); fails after
/// a generous bound.
pub(super) async fn wait_written(file: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(file).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            Instant::now() < deadline,
            "{} not written after 30 s",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the pid written to `pidfile` no longer runs (gone or a zombie).
pub(super) async fn assert_dies(pidfile: &std::path::Path, after: &str) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its reaper: either way no longer running.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sleep child {pid} survived {after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn text_file_busy_is_retried() {
    let f = Fixture::new();
    f.result_plugin("p1", P2_RESULT);
    // Hold the binary open for writing: exec fails with ETXTBSY until it is closed.
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(f.bin.join("p1"))
        .unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(writer);
    });
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let out = f.executor().add(&f.invocation(&config, &rc)).await.unwrap();
    assert_eq!(out.result.ips.len(), 1);
    closer.join().unwrap();

    // Without retries the same situation is a spawn error carrying ETXTBSY.
    let _writer = std::fs::OpenOptions::new()
        .write(true)
        .open(f.bin.join("p1"))
        .unwrap();
    let ex = Executor::new(Config {
        busy_retries: 0,
        ..f.config()
    });
    let err = ex.add(&f.invocation(&config, &rc)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Spawn { source, .. } if source.raw_os_error() == Some(libc::ETXTBSY)),
        "{err:?}"
    );
}

#[tokio::test]
async fn plugin_types_are_bare_names_found_only_in_bin_dirs() {
    let f = Fixture::new();
    f.plugin("p1", "exit 0");
    let rc = RuntimeConfig::default();
    let long = "a".repeat(129);
    for bad in [
        "../p1",
        "/bin/sh",
        "",
        "..",
        ".",
        "a b",
        "p1\n",
        long.as_str(),
        "x/../p1",
    ] {
        let text = json!({"cniVersion": "1.0.0", "name": "one", "type": bad}).to_string();
        let config = conf(&text);
        let err = f
            .executor()
            .add(&f.invocation(&config, &rc))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidPluginType { .. }),
            "{bad:?}: {err:?}"
        );
    }
    // `sh` exists on PATH but not in the bin dir.
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"sh"}"#);
    let err = f
        .executor()
        .add(&f.invocation(&config, &rc))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PluginNotFound { .. }), "{err:?}");
    // A bad type anywhere in a chain stops it before anything runs.
    let config =
        conflist(r#"{"cniVersion":"1.0.0","name":"c","plugins":[{"type":"p1"},{"type":"../x"}]}"#);
    assert!(f.executor().add(&f.invocation(&config, &rc)).await.is_err());
    assert!(f.calls().is_empty());
    assert!(validate_plugin_type("macvlan").is_ok());
    // The executor applies the resolver's one rule: they agree on every case.
    let long = "a".repeat(65);
    for t in [
        "macvlan",
        "my-plugin_2.0",
        "",
        "../x",
        "a/b",
        "a b",
        "+x",
        "é",
        long.as_str(),
    ] {
        assert_eq!(
            validate_plugin_type(t).is_ok(),
            plexus_core::netconf::plugin_type_problem(t).is_none(),
            "{t:?}"
        );
    }
    assert!(validate_plugin_type(&long).is_err(), "over 64 bytes");
}

#[tokio::test]
async fn invalid_configs_and_arguments_are_rejected() {
    let f = Fixture::new();
    f.plugin("p1", "exit 0");
    let rc = RuntimeConfig::default();
    for text in [
        r#"{"cniVersion":"1.0.0","name":"c","plugins":[]}"#,
        r#"{"cniVersion":"1.0.0","name":"c"}"#,
        r#"{"cniVersion":"1.0.0","name":"c","plugins":[1]}"#,
        r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"p1"}]}"#,
        "not json",
    ] {
        let config = conflist(text);
        let err = f
            .executor()
            .add(&f.invocation(&config, &rc))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { .. }),
            "{text}: {err:?}"
        );
    }
    // Container ids and interface names are valid by their types (plexus_core::id).
    assert!(f.calls().is_empty());
}

#[tokio::test]
async fn a_missing_host_netns_is_reported_as_such() {
    let f = Fixture::new();
    f.result_plugin("p1", P2_RESULT);
    let ex = Executor::new(Config {
        host_netns: Some(f.log.join("no-such-netns")),
        ..f.config()
    });
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let err = ex.add(&f.invocation(&config, &rc)).await.unwrap_err();
    assert!(matches!(err, Error::HostNetns { .. }), "{err:?}");
    assert!(f.calls().is_empty());
}
