//! The engine's spans and observer: `attachment` spans below the caller's span, `delegate`
//! (or `native`) spans below them, with plexus-telemetry's field names, and one observer
//! event per attachment step. A recording `tracing` layer captures names, fields and
//! parents. The first test needs no root (a fallback teardown through fake plugin
//! scripts); the second runs real setups in network namespaces.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{Fixture, attachment, plan, sid};
use plexus_core::id::SandboxId;
use plexus_engine::delegate::{CACHE_KIND_V1, CacheEntry};
use plexus_engine::{
    AttachmentEvent, Call, DelegationMode, Driver, Engine, EngineConfig, Observer, Op, Outcome,
};
use plexus_netlink::test_util::require_privileged;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as the recorder saw it.
#[derive(Debug, Clone)]
struct SpanRec {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<usize>,
}

impl SpanRec {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
}

/// An event's message and the span it was emitted in.
type LogEvent = (String, Option<usize>);

/// A layer recording every span (index in creation order, resolved parent) and the span
/// each event was emitted in.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<SpanRec>>>,
    events: Arc<Mutex<Vec<LogEvent>>>,
}

struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("new span is registered");
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(SpanRec {
            name: attrs.metadata().name(),
            fields,
            parent,
        });
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(i) = span.extensions().get::<Index>().map(|i| i.0) else {
            return;
        };
        values.record(&mut Fields(&mut self.spans.lock().unwrap()[i].fields));
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        self.events.lock().unwrap().push((message, span));
    }
}

impl Recorder {
    fn take(&self) -> Vec<SpanRec> {
        std::mem::take(&mut *self.spans.lock().unwrap())
    }

    /// Spans of the events whose message is `message`.
    fn event_spans(&self, message: &str) -> Vec<Option<usize>> {
        let events = std::mem::take(&mut *self.events.lock().unwrap());
        events
            .into_iter()
            .filter(|(m, _)| m == message)
            .map(|(_, s)| s)
            .collect()
    }
}

/// Indices of the spans named `name` whose parent is `parent`.
fn children(spans: &[SpanRec], parent: usize, name: &str) -> Vec<usize> {
    (0..spans.len())
        .filter(|&i| spans[i].name == name && spans[i].parent == Some(parent))
        .collect()
}

/// The one `attachment` child of `parent` with this `otel.name`.
fn attachment_span(spans: &[SpanRec], parent: usize, otel_name: &str) -> usize {
    let found: Vec<usize> = children(spans, parent, "attachment")
        .into_iter()
        .filter(|&i| spans[i].field("otel.name") == otel_name)
        .collect();
    assert_eq!(found.len(), 1, "one span {otel_name:?} in {spans:#?}");
    found[0]
}

/// `(otel.name, outcome)` of the children of `parent` named `name`, in creation order.
fn steps(spans: &[SpanRec], parent: usize, name: &str) -> Vec<(String, String)> {
    children(spans, parent, name)
        .into_iter()
        .map(|i| {
            (
                spans[i].field("otel.name").to_owned(),
                spans[i].field("plexus.outcome").to_owned(),
            )
        })
        .collect()
}

/// The observer events, owned.
type Event = (Op, Call, String, String, Driver, Outcome);

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Observer for Events {
    fn attachment_done(&self, e: &AttachmentEvent<'_>) {
        assert!(e.elapsed.as_nanos() > 0, "a step takes some time: {e:?}");
        self.0.lock().unwrap().push((
            e.op,
            e.call,
            e.network.to_owned(),
            e.interface.to_owned(),
            e.driver,
            e.outcome,
        ));
    }
}

impl Events {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn ev(op: Op, call: Call, net: &str, ifname: &str, driver: Driver, outcome: Outcome) -> Event {
    (op, call, net.into(), ifname.into(), driver, outcome)
}

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn cache_entry(cache: &Path, sandbox: &str, network: &str, ifname: &str, conf: serde_json::Value) {
    let entry = CacheEntry {
        kind: CACHE_KIND_V1.to_owned(),
        container_id: sandbox.to_owned(),
        config: serde_json::to_vec(&conf).unwrap(),
        if_name: ifname.to_owned(),
        network_name: network.to_owned(),
        netns: String::new(),
        cni_args: Vec::new(),
        capability_args: Default::default(),
        result: None,
    };
    let dir = cache.join("results");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{network}-{sandbox}-{ifname}"));
    std::fs::write(file, serde_json::to_vec(&entry).unwrap()).unwrap();
}

#[tokio::test]
async fn fallback_teardown_makes_attachment_and_delegate_spans_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    script(&bin, "fake-a", "echo 'fake-a ran' >&2; exit 0");
    script(&bin, "fake-b", "exit 0");
    script(
        &bin,
        "fake-fail",
        r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"boom"}'; exit 1"#,
    );
    let mut cfg = EngineConfig::new(dir.path().join("state"));
    cfg.cni_bin_dirs = vec![bin];
    cfg.cni_cache_dir = dir.path().join("cache");
    cfg.ipam_data_dir = dir.path().join("leases");
    let engine = Engine::open(cfg).unwrap();
    let sandbox = "sb-telemetry-fallback";
    std::fs::write(
        dir.path().join("state").join(format!("{sandbox}.json")),
        b"{\"version\":1,\"sandbox_id\":",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    cache_entry(
        &cache,
        sandbox,
        "net-ok",
        "net1",
        serde_json::json!({"cniVersion":"1.0.0","name":"net-ok",
            "plugins":[{"type":"fake-a"},{"type":"fake-b"}]}),
    );
    cache_entry(
        &cache,
        sandbox,
        "net-bad",
        "net2",
        serde_json::json!({"cniVersion":"1.0.0","name":"net-bad","type":"fake-fail"}),
    );
    let events = Arc::new(Events::default());
    engine.set_observer(events.clone());
    let recorder = Recorder::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));

    let report = engine
        .teardown(&SandboxId::new(sandbox).unwrap())
        .instrument(tracing::info_span!("rpc"))
        .await
        .expect("fallback teardown");
    assert!(report.fallback);
    assert_eq!(report.removed, vec!["net1"]);
    assert!(
        report.unresolved.iter().any(|u| u.contains("boom")),
        "{report:?}"
    );

    let spans = recorder.take();
    let rpc = spans.iter().position(|s| s.name == "rpc").unwrap();
    assert_eq!(children(&spans, rpc, "attachment").len(), 2, "{spans:#?}");
    let ok = attachment_span(&spans, rpc, "detach net-ok");
    assert_eq!(spans[ok].field("plexus.network"), "net-ok");
    assert_eq!(spans[ok].field("network.interface.name"), "net1");
    assert_eq!(spans[ok].field("plexus.driver"), "exec");
    assert_eq!(spans[ok].field("plexus.outcome"), "ok");
    // DEL runs the chain in reverse, one span per plugin.
    assert_eq!(
        steps(&spans, ok, "delegate"),
        vec![
            ("DEL fake-b".to_owned(), "ok".to_owned()),
            ("DEL fake-a".to_owned(), "ok".to_owned())
        ]
    );
    // What the plugin run logs is inside its delegate span.
    let last = children(&spans, ok, "delegate")[1];
    assert_eq!(recorder.event_spans("cni plugin stderr"), vec![Some(last)]);
    let first = children(&spans, ok, "delegate")[0];
    assert_eq!(spans[first].field("plexus.cni.plugin"), "fake-b");
    assert_eq!(spans[first].field("plexus.cni.command"), "DEL");
    let bad = attachment_span(&spans, rpc, "detach net-bad");
    assert_eq!(spans[bad].field("plexus.outcome"), "error");
    // ERROR status exactly on the failing spans, with the reason and the message.
    assert_eq!(spans[bad].field("otel.status_code"), "ERROR");
    assert_eq!(spans[bad].field("error.type"), "plugin_failed");
    assert!(
        spans[bad].field("otel.status_description").contains("boom"),
        "{spans:#?}"
    );
    let failed_del = children(&spans, bad, "delegate")[0];
    assert_eq!(spans[failed_del].field("otel.status_code"), "ERROR");
    assert_eq!(spans[failed_del].field("error.type"), "plugin_failed");
    for i in [ok, first, last] {
        assert_eq!(spans[i].field("otel.status_code"), "", "{:#?}", spans[i]);
    }
    assert_eq!(
        steps(&spans, bad, "delegate"),
        vec![("DEL fake-fail".to_owned(), "error".to_owned())]
    );

    let mut got = events.take();
    got.sort_by(|a, b| a.2.cmp(&b.2));
    let (t, c, x) = (Op::Teardown, Call::Teardown, Driver::Exec);
    assert_eq!(
        got,
        vec![
            ev(t, c, "net-bad", "net2", x, Outcome::Error("plugin_failed")),
            ev(t, c, "net-ok", "net1", x, Outcome::Ok),
        ]
    );
}

#[tokio::test]
async fn setup_teardown_and_rollback_spans_nest_below_the_rpc_and_report_each_step() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let events = Arc::new(Events::default());
    engine.set_observer(events.clone());
    let recorder = Recorder::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let native = attachment(1, "net1", &fx.macvlan("tm-a", "bridge", "10.41.0.0/24"));
    let chain = serde_json::json!({
        "cniVersion":"1.0.0","name":"tm-chain","plugins":[
            {"type":"macvlan","master":fx.uplink,"ipam":{"type":"host-local","subnet":"10.42.0.0/24","dataDir":fx.leases()}},
            {"type":"tuning","sysctl":{"net.ipv4.conf.net2.arp_ignore":"1"}}
        ]
    });
    let exec = attachment(2, "net2", &chain);
    let (na, ex) = ("default/tm-a", "default/tm-chain");

    // Setup: attach spans below the RPC span, native/delegate spans below them.
    let rec = engine
        .setup(fx.sandbox("sb-tm"), plan(vec![native.clone(), exec]))
        .instrument(tracing::info_span!("rpc"))
        .await
        .expect("setup");
    assert_eq!(rec.attachments[0].driver, Driver::Native);
    assert_eq!(rec.attachments[1].driver, Driver::Exec);
    let spans = recorder.take();
    let rpc = spans.iter().position(|s| s.name == "rpc").unwrap();
    assert_eq!(children(&spans, rpc, "attachment").len(), 2, "{spans:#?}");
    let a = attachment_span(&spans, rpc, &format!("attach {na}"));
    assert_eq!(spans[a].field("plexus.network"), na);
    assert_eq!(spans[a].field("network.interface.name"), "net1");
    assert_eq!(spans[a].field("plexus.driver"), "native");
    assert_eq!(spans[a].field("plexus.outcome"), "ok");
    assert_eq!(
        steps(&spans, a, "native"),
        vec![("create macvlan".to_owned(), "ok".to_owned())]
    );
    assert!(children(&spans, a, "delegate").is_empty());
    // No plugin ran for the native driver: no CNI fields on its span.
    let native_step = children(&spans, a, "native")[0];
    assert_eq!(spans[native_step].field("plexus.native.kind"), "macvlan");
    assert_eq!(spans[native_step].field("plexus.native.op"), "create");
    assert_eq!(spans[native_step].field("plexus.cni.command"), "");
    let b = attachment_span(&spans, rpc, &format!("attach {ex}"));
    assert_eq!(spans[b].field("plexus.driver"), "exec");
    assert_eq!(spans[b].field("plexus.outcome"), "ok");
    assert_eq!(
        steps(&spans, b, "delegate"),
        vec![
            ("ADD macvlan".to_owned(), "ok".to_owned()),
            ("ADD tuning".to_owned(), "ok".to_owned())
        ]
    );
    let (s, c, n, x) = (Op::Setup, Call::Setup, Driver::Native, Driver::Exec);
    assert_eq!(
        events.take(),
        vec![
            ev(s, c, na, "net1", n, Outcome::Ok),
            ev(s, c, ex, "net2", x, Outcome::Ok)
        ]
    );

    // Teardown: a detach span per attachment, removed all at once (in no set order).
    engine
        .teardown(&sid("sb-tm"))
        .instrument(tracing::info_span!("rpc"))
        .await
        .expect("teardown");
    let spans = recorder.take();
    let rpc = spans.iter().position(|s| s.name == "rpc").unwrap();
    let mut detached = steps(&spans, rpc, "attachment");
    detached.sort();
    assert_eq!(
        detached,
        vec![
            (format!("detach {na}"), "ok".to_owned()),
            (format!("detach {ex}"), "ok".to_owned())
        ]
    );
    let b = attachment_span(&spans, rpc, &format!("detach {ex}"));
    assert_eq!(
        steps(&spans, b, "delegate"),
        vec![
            ("DEL tuning".to_owned(), "ok".to_owned()),
            ("DEL macvlan".to_owned(), "ok".to_owned())
        ]
    );
    let a = attachment_span(&spans, rpc, &format!("detach {na}"));
    assert_eq!(
        steps(&spans, a, "native"),
        vec![("delete macvlan".to_owned(), "ok".to_owned())]
    );
    let (t, c) = (Op::Teardown, Call::Teardown);
    // Removed all at once: both reported, in no set order.
    let detached = events.take();
    assert_eq!(detached.len(), 2, "{detached:?}");
    for e in [
        ev(t, c, ex, "net2", x, Outcome::Ok),
        ev(t, c, na, "net1", n, Outcome::Ok),
    ] {
        assert!(detached.contains(&e), "{e:?} in {detached:?}");
    }

    // A failing exec attachment: error on its spans, both attachments undone.
    let mut broken = attachment(
        2,
        "net2",
        &serde_json::json!({"cniVersion":"1.0.0","name":"tm-bad","type":"macvlan",
            "master":"tmnosuch0","ipam":{"type":"host-local","subnet":"10.43.0.0/24","dataDir":fx.leases()}}),
    );
    broken.force_exec = true;
    let bad = "default/tm-bad";
    let err = engine
        .setup(fx.sandbox("sb-tm"), plan(vec![native, broken]))
        .instrument(tracing::info_span!("rpc"))
        .await
        .expect_err("setup with a missing master fails")
        .to_string();
    // The macvlan plugin's DEL after its failed ADD fails too (same missing master): the
    // error says so instead of counting net2 as undone.
    assert!(err.contains("(undone: net1)"), "{err}");
    assert!(
        err.contains("net2: DEL after its failed ADD failed too"),
        "{err}"
    );
    let spans = recorder.take();
    let rpc = spans.iter().position(|s| s.name == "rpc").unwrap();
    assert_eq!(
        steps(&spans, rpc, "attachment"),
        vec![
            (format!("attach {na}"), "ok".to_owned()),
            (format!("attach {bad}"), "error".to_owned()),
            (format!("undo {bad}"), "error".to_owned()),
            (format!("undo {na}"), "undone".to_owned()),
        ]
    );
    let failed = attachment_span(&spans, rpc, &format!("attach {bad}"));
    assert_eq!(
        steps(&spans, failed, "delegate"),
        vec![("ADD macvlan".to_owned(), "error".to_owned())]
    );
    // ERROR status on the failing attachment and its plugin run, nowhere else.
    let failed_add = children(&spans, failed, "delegate")[0];
    for i in [failed, failed_add] {
        assert_eq!(
            spans[i].field("otel.status_code"),
            "ERROR",
            "{:#?}",
            spans[i]
        );
        assert_eq!(spans[i].field("error.type"), "plugin_failed");
        let why = spans[i].field("otel.status_description");
        assert!(why.contains("Link not found"), "{why}");
    }
    let erred = spans
        .iter()
        .filter(|s| s.field("otel.status_code") == "ERROR")
        .count();
    // ... and on the undo of the failed network and its DEL, which failed too.
    let undone = attachment_span(&spans, rpc, &format!("undo {bad}"));
    assert_eq!(spans[undone].field("otel.status_code"), "ERROR");
    assert_eq!(erred, 4, "{spans:#?}");
    assert_eq!(children(&spans, undone, "delegate").len(), 1);
    let (s, t, c) = (Op::Setup, Op::Teardown, Call::Setup);
    assert_eq!(
        events.take(),
        vec![
            ev(s, c, na, "net1", n, Outcome::Ok),
            ev(s, c, bad, "net2", x, Outcome::Error("plugin_failed")),
            ev(t, c, bad, "net2", x, Outcome::Error("plugin_failed")),
            ev(t, c, na, "net1", n, Outcome::Undone),
        ]
    );
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}
