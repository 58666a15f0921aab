//! The `plexus-cni` shim's logic, apart from the process (the binary reads its environment
//! and stdin, calls [`run`] and prints the [`Answer`]).
//!
//! It decides nothing about networks: VERSION is answered here (so it works while plexusd is
//! down), every other verb is forwarded verbatim to plexusd's `Cni` call. When plexusd cannot
//! be reached, ADD (and CHECK, STATUS, GC) fail at once with CNI code 11 ("try again later")
//! naming the socket, so the runtime retries the pod instead of starting it without its
//! networks; DEL is spooled durably (one file per container in the spool dir, written temp +
//! fsync + rename + directory fsync) and answered success, and plexusd runs it before it
//! serves again. The spool format is plexusd's contract (`plexus_server::cni::spool`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::v1;

/// Env var overriding plexusd's socket (tests, non-default installs).
pub const SOCKET_ENV: &str = "PLEXUS_SOCKET";
/// Where DELs are spooled unless the generated config names a `spoolDir`.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/plexus/cni-spool";
/// Largest stdin read.
pub const MAX_STDIN: usize = 1 << 20;
/// Longest containerd container id accepted.
pub const MAX_ID_LEN: usize = 128;
/// CNI spec versions plexus implements (the VERSION answer).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// CNI error code 4: invalid environment variables.
pub const CNI_INVALID_ENV: u32 = 4;
/// CNI error code 5: I/O failure.
pub const CNI_IO: u32 = 5;
/// CNI error code 11: try again later.
pub const CNI_TRY_AGAIN: u32 = 11;
/// CNI error code 999: internal.
pub const CNI_INTERNAL: u32 = 999;

/// What the shim prints: a result (exit 0) or a CNI error object (exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Printed as is, exit 0.
    Stdout(Vec<u8>),
    /// Printed as a CNI error JSON, exit 1.
    Error {
        /// CNI error code.
        code: u32,
        /// Message.
        msg: String,
        /// Details.
        details: String,
        /// `cniVersion` of the error.
        cni_version: String,
    },
}

impl Answer {
    fn error(code: u32, msg: impl Into<String>, details: impl Into<String>, version: &str) -> Self {
        Answer::Error {
            code,
            msg: msg.into(),
            details: details.into(),
            cni_version: version.to_owned(),
        }
    }

    /// The bytes to print.
    pub fn render(&self) -> Vec<u8> {
        match self {
            Answer::Stdout(bytes) => bytes.clone(),
            Answer::Error {
                code,
                msg,
                details,
                cni_version,
            } => {
                let version = if cni_version.is_empty() {
                    "1.0.0"
                } else {
                    cni_version
                };
                let body = serde_json::json!({
                    "cniVersion": version, "code": code, "msg": msg, "details": details,
                });
                format!("{body}\n").into_bytes()
            }
        }
    }
}

/// What the shim reads from its config (stdin): version, socket and spool dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The config's `cniVersion` (empty when absent or unreadable).
    pub cni_version: String,
    /// plexusd's socket: `PLEXUS_SOCKET`, else the config's `socket`, else the default.
    pub socket: PathBuf,
    /// The DEL spool: the config's `spoolDir`, else the default.
    pub spool_dir: PathBuf,
}

impl Settings {
    /// Reads the settings from stdin and the socket override.
    pub fn read(stdin: &[u8], socket_env: Option<String>) -> Settings {
        let config: serde_json::Value = serde_json::from_slice(stdin).unwrap_or_default();
        let text = |k: &str| {
            config
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        Settings {
            cni_version: text("cniVersion").unwrap_or("").to_owned(),
            socket: socket_env
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .or_else(|| text("socket").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_SOCKET)),
            spool_dir: text("spoolDir").unwrap_or(DEFAULT_SPOOL_DIR).into(),
        }
    }
}

/// A containerd container id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 bytes.
pub fn valid_container_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    id.len() <= MAX_ID_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Spools a DEL for `id` durably: `<dir>/<id>.del`, written temp + fsync + rename + dir
/// fsync. The id must already be valid.
pub fn spool_del(dir: &Path, id: &str, env: &HashMap<String, String>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let body = serde_json::json!({
        "version": 1,
        "containerId": id,
        "netns": env.get("CNI_NETNS").cloned().unwrap_or_default(),
        "args": env.get("CNI_ARGS").cloned().unwrap_or_default(),
    });
    let target = dir.join(format!("{id}.del"));
    let temp = dir.join(format!(".tmp-{id}-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(body.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| target)
}

/// The VERSION answer, labelled with the request's version.
pub fn version_answer(cni_version: &str) -> Vec<u8> {
    let version = if cni_version.is_empty() {
        "0.1.0"
    } else {
        cni_version
    };
    let body = serde_json::json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS});
    format!("{body}\n").into_bytes()
}

/// What to do when plexusd is unreachable: spool a DEL, fail anything else with code 11.
fn unreachable(
    verb: &str,
    env: &HashMap<String, String>,
    settings: &Settings,
    cause: &str,
) -> Answer {
    let version = &settings.cni_version;
    let socket = settings.socket.display();
    if verb != "DEL" {
        return Answer::error(
            CNI_TRY_AGAIN,
            format!("plexusd is not reachable on {socket}"),
            cause,
            version,
        );
    }
    let id = env.get("CNI_CONTAINERID").map(String::as_str).unwrap_or("");
    if !valid_container_id(id) {
        return Answer::error(
            CNI_INVALID_ENV,
            "invalid CNI_CONTAINERID",
            format!("{id:?}; accepted: [A-Za-z0-9][A-Za-z0-9_.-]*, at most {MAX_ID_LEN} bytes"),
            version,
        );
    }
    match spool_del(&settings.spool_dir, id, env) {
        Ok(_) => Answer::Stdout(Vec::new()),
        Err(e) => Answer::error(
            CNI_TRY_AGAIN,
            format!("plexusd is not reachable on {socket} and the DEL cannot be spooled"),
            format!("spool dir {}: {e}", settings.spool_dir.display()),
            version,
        ),
    }
}

/// Runs one invocation: `env` is the `CNI_*` environment, `stdin` the config.
pub async fn run(env: HashMap<String, String>, stdin: Vec<u8>, settings: &Settings) -> Answer {
    let verb = env.get("CNI_COMMAND").cloned().unwrap_or_default();
    if verb == "VERSION" {
        return Answer::Stdout(version_answer(&settings.cni_version));
    }
    let mut client = match crate::connect(&settings.socket).await {
        Ok(c) => c,
        Err(e) => return unreachable(&verb, &env, settings, &e.to_string()),
    };
    let request = v1::CniRequest {
        env: env.clone(),
        stdin,
    };
    match client.cni(request).await {
        Ok(answer) => match answer.into_inner().outcome {
            Some(v1::cni_response::Outcome::Stdout(bytes)) => Answer::Stdout(bytes),
            Some(v1::cni_response::Outcome::Error(e)) => Answer::Error {
                code: e.code,
                msg: e.msg,
                details: e.details,
                cni_version: if e.cni_version.is_empty() {
                    settings.cni_version.clone()
                } else {
                    e.cni_version
                },
            },
            None => Answer::error(
                CNI_INTERNAL,
                "plexusd answered the CNI call with neither a result nor an error",
                "",
                &settings.cni_version,
            ),
        },
        // plexusd went away during the call: as if it had been unreachable.
        Err(status) if status.code() == tonic::Code::Unavailable => {
            unreachable(&verb, &env, settings, status.message())
        }
        Err(status) => Answer::error(
            CNI_INTERNAL,
            format!(
                "plexusd on {} refused the CNI call",
                settings.socket.display()
            ),
            format!("{:?}: {}", status.code(), status.message()),
            &settings.cni_version,
        ),
    }
}
