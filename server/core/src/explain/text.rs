//! The human rendering of explain: one block per attachment, only the lines that say
//! something. Not a contract (tooling reads the JSON).

use std::fmt::Write as _;

use crate::error::Error;
use crate::plan::{ConfigForm, NetworkSource, Plan, PlannedAttachment};
use crate::pod::PodIdentity;

/// Text for a resolved plan.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let n = plan.attachments.len();
    let _ = writeln!(
        out,
        "pod {}{}: {n} attachment{}",
        plan.pod,
        uid(&plan.pod),
        if n == 1 { "" } else { "s" }
    );
    for a in &plan.attachments {
        attachment(&mut out, a);
    }
    out
}

/// Text for a resolution error.
pub fn error_text(pod: &PodIdentity, error: &Error) -> String {
    format!(
        "pod {}{}: cannot resolve networks ({}): {error}\n",
        pod,
        uid(pod),
        error.kind()
    )
}

fn uid(pod: &PodIdentity) -> String {
    if pod.uid.is_empty() {
        String::new()
    } else {
        format!(" (uid {})", pod.uid)
    }
}

fn attachment(out: &mut String, a: &PlannedAttachment) {
    let network = if a.network.is_empty() {
        "(the runtime's cluster network)"
    } else {
        a.network.as_str()
    };
    let mut flags = vec![a.origin.as_str().to_string()];
    if a.primary {
        flags.push("primary".into());
    }
    if a.runtime_managed {
        flags.push("set up by the runtime".into());
    }
    if a.force_exec {
        flags.push("exec forced".into());
    }
    let _ = writeln!(
        out,
        "[{}] {} <- {}  ({})",
        a.index,
        a.interface,
        network,
        flags.join(", ")
    );
    let source = match &a.source {
        NetworkSource::Nad { namespace, name } => format!("nad {namespace}/{name}"),
        NetworkSource::NadFile {
            namespace,
            name,
            path,
        } => format!("nad {namespace}/{name} (spec-less) -> file {path}"),
        NetworkSource::File { path } => format!("file {path}"),
        NetworkSource::Delegate { position } => format!("resolver config delegates[{position}]"),
        NetworkSource::Runtime => "the runtime's own CNI config".to_string(),
    };
    line(out, "source", &source);
    if !a.config.plugin_types.is_empty() {
        let form = match a.config.form {
            ConfigForm::Conf => "conf",
            ConfigForm::Conflist => "conflist",
        };
        let version = if a.config.cni_version.is_empty() {
            String::new()
        } else {
            format!(", cniVersion {}", a.config.cni_version)
        };
        line(
            out,
            "plugins",
            &format!(
                "{} ({form} {:?}{version})",
                a.config.plugin_types.join(" -> "),
                a.config.name
            ),
        );
    }
    if !a.runtime_config.is_empty() {
        let rc = serde_json::to_string(&a.runtime_config).unwrap_or_default();
        line(out, "runtimeConfig", &rc);
    }
    if let Some(args) = &a.cni_args {
        line(
            out,
            "cni-args",
            &serde_json::to_string(args).unwrap_or_default(),
        );
    }
    if !a.extra_cni_args.is_empty() {
        let args: Vec<String> = a
            .extra_cni_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line(out, "CNI_ARGS", &args.join(";"));
    }
    if let Some(gws) = &a.default_route {
        let gws: Vec<String> = gws.iter().map(ToString::to_string).collect();
        line(out, "default-route", &format!("[{}]", gws.join(", ")));
    }
    if !a.route_plan.is_noop() {
        let mut steps = Vec::new();
        match (a.route_plan.remove_v4, a.route_plan.remove_v6) {
            (true, true) => steps.push("remove IPv4 and IPv6 default routes".to_string()),
            (true, false) => steps.push("remove IPv4 default routes".to_string()),
            (false, true) => steps.push("remove IPv6 default routes".to_string()),
            (false, false) => {}
        }
        for gw in &a.route_plan.install {
            steps.push(format!("add default via {gw}"));
        }
        line(out, "routes", &steps.join(", then "));
    }
    if let Some(resource) = &a.resource_name {
        line(out, "resourceName", resource);
    }
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "    {:<14}{value}", format!("{key}:"));
}
