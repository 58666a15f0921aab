//! Client configuration files for the fake server: a kubeconfig (JSON, which kubeconfig
//! readers accept as YAML) with the CA data and either an inline token or a `tokenFile`, and
//! in-cluster style service-account files (`token`, `ca.crt`, `namespace`).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::error::{Error, Result};

/// How the kubeconfig's user authenticates.
#[derive(Debug, Clone)]
pub enum User<'a> {
    /// `user.token`.
    Token(&'a str),
    /// `user.tokenFile`: the client reads (and re-reads) the token from this file.
    TokenFile(&'a Path),
}

/// Writes `content` to `path` atomically (temporary file in the same directory, then rename),
/// so a client re-reading a token never sees a half-written file.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let err = |source| Error::WriteFile {
        path: path.to_owned(),
        source,
    };
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// How the kubeconfig's cluster names its CA.
#[derive(Debug, Clone)]
pub enum Ca<'a> {
    /// `certificate-authority-data` (base64 of the PEM).
    Data(&'a str),
    /// `certificate-authority`: a PEM file the client reads.
    File(&'a Path),
}

/// Writes a kubeconfig for `server` trusting `ca`, context namespace `default`.
pub fn write(path: &Path, server: &str, ca: Ca<'_>, user: User<'_>) -> Result<()> {
    let user = match user {
        User::Token(t) => json!({ "token": t }),
        User::TokenFile(p) => json!({ "tokenFile": p.to_string_lossy() }),
    };
    let mut cluster = json!({ "server": server });
    match ca {
        Ca::Data(pem) => cluster["certificate-authority-data"] = json!(STANDARD.encode(pem)),
        Ca::File(p) => cluster["certificate-authority"] = json!(p.to_string_lossy()),
    }
    let cfg = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "plexus-kube-fake", "cluster": cluster }],
        "users": [{ "name": "plexus-kube-fake", "user": user }],
        "contexts": [{ "name": "plexus-kube-fake", "context": {
            "cluster": "plexus-kube-fake", "user": "plexus-kube-fake", "namespace": "default",
        }}],
        "current-context": "plexus-kube-fake",
        "preferences": {},
    });
    let text = serde_json::to_vec_pretty(&cfg).unwrap_or_default();
    write_atomic(path, &text)
}

/// Writes `token`, `ca.crt` and `namespace` into `dir` as a pod's service-account mount has
/// them (`/var/run/secrets/kubernetes.io/serviceaccount`).
pub fn write_incluster(dir: &Path, token: &str, ca_pem: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
        path: dir.to_owned(),
        source,
    })?;
    write_atomic(&dir.join("ca.crt"), ca_pem.as_bytes())?;
    write_atomic(&dir.join("namespace"), b"default")?;
    write_atomic(&dir.join("token"), token.as_bytes())
}
