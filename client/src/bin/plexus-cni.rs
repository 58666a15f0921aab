//! plexus-cni: the CNI shim. Forwards one CNI invocation (its `CNI_*` environment and stdin)
//! to plexusd's `Cni` call and prints the answer: the result on stdout (exit 0) or a CNI error
//! JSON (exit 1). It decides nothing; when plexusd cannot be reached it says which socket.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use plexus_client::v1;

/// Where the shim finds plexusd (overridable for tests and non-default installs).
const SOCKET_ENV: &str = "PLEXUS_SOCKET";

/// CNI error code 11: "try again later" (the daemon is unavailable).
const CNI_TRY_AGAIN: u32 = 11;
/// CNI error code 999 is reserved for plugin-specific failures.
const CNI_PLUGIN_ERROR: u32 = 999;

fn print_error(code: u32, msg: &str, details: &str, version: &str) -> ExitCode {
    let version = if version.is_empty() { "1.0.0" } else { version };
    let body = serde_json::json!({
        "cniVersion": version,
        "code": code,
        "msg": msg,
        "details": details,
    });
    println!("{body}");
    ExitCode::FAILURE
}

fn cni_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return print_error(CNI_PLUGIN_ERROR, "cannot read stdin", &e.to_string(), "");
    }
    let version = cni_version(&stdin);
    let socket = std::env::var(SOCKET_ENV).unwrap_or_else(|_| plexus_client::DEFAULT_SOCKET.into());
    let mut client = match plexus_client::connect(&socket).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("plexusd is not reachable on {socket}");
            return print_error(CNI_TRY_AGAIN, &msg, &e.to_string(), &version);
        }
    };
    let answer = match client.cni(v1::CniRequest { env, stdin }).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            let msg = format!("plexusd on {socket} refused the CNI call");
            let details = format!("{:?}: {}", status.code(), status.message());
            return print_error(CNI_PLUGIN_ERROR, &msg, &details, &version);
        }
    };
    match answer.outcome {
        Some(v1::cni_response::Outcome::Stdout(bytes)) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Some(v1::cni_response::Outcome::Error(e)) => {
            let v = if e.cni_version.is_empty() {
                version
            } else {
                e.cni_version
            };
            print_error(e.code, &e.msg, &e.details, &v)
        }
        None => print_error(
            CNI_PLUGIN_ERROR,
            "plexusd answered the CNI call with neither a result nor an error",
            "",
            &version,
        ),
    }
}
