//! plexus-cni: the CNI shim. Reads its `CNI_*` environment and stdin, lets
//! [`plexus_client::shim::run`] answer VERSION or forward the call to plexusd (spooling a DEL
//! while plexusd is down), and prints the result (exit 0) or a CNI error JSON (exit 1).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use plexus_client::shim::{self, Answer, Settings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin()
        .take(shim::MAX_STDIN as u64 + 1)
        .read_to_end(&mut stdin);
    let settings = Settings::read(&stdin, std::env::var(shim::SOCKET_ENV).ok());
    let answer = match read {
        Err(e) => Answer::Error {
            code: shim::CNI_IO,
            msg: "cannot read stdin".into(),
            details: e.to_string(),
            cni_version: settings.cni_version.clone(),
        },
        Ok(_) if stdin.len() > shim::MAX_STDIN => Answer::Error {
            code: shim::CNI_IO,
            msg: "config too large".into(),
            details: format!("stdin is over {} bytes", shim::MAX_STDIN),
            cni_version: settings.cni_version.clone(),
        },
        Ok(_) => shim::run(env, stdin, &settings).await,
    };
    let mut out = std::io::stdout().lock();
    let printed = out.write_all(&answer.render()).and_then(|()| out.flush());
    match (answer, printed) {
        (Answer::Stdout(_), Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
