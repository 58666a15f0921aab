//! Certificates for the fake API server: a fresh self-signed CA per server and a server
//! certificate for `127.0.0.1` and `localhost` signed by it, and the rustls server config.
//! Owns no sockets.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};

/// The generated TLS material of one fake server.
#[derive(Debug, Clone)]
pub struct Material {
    /// The CA certificate in PEM, what a client trusts (`certificate-authority-data`).
    pub ca_pem: String,
    /// The rustls server configuration presenting the server certificate.
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Generates a CA and a server certificate for 127.0.0.1/localhost and the server config.
pub fn generate() -> Result<Material> {
    let ca_err = |source| Error::GenerateCert { what: "CA", source };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "plexus-kube-fake CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(ca_err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(ca_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let srv_err = |source| Error::GenerateCert {
        what: "server",
        source,
    };
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(srv_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(srv_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(srv_err)?;

    // ring is the workspace's one crypto provider (kube is built with `ring` too); rustls
    // deprecates it only for lacking post-quantum key exchange, irrelevant for a test server.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(cert.der().to_vec()),
                CertificateDer::from(ca_cert.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Material {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}
