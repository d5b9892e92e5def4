//! TLS to the CQL nodes: the CA that signed their certificates, the name those certificates
//! are checked against, and a client certificate for clusters that require one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

/// `[…scylla.tls]`: present, every connection to the cluster is TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CqlTls {
    /// PEM file of the CA certificates the nodes' certificates are checked against; without
    /// it, the public web's roots (a managed service with a public certificate).
    pub ca_file: Option<PathBuf>,
    /// The name every node's certificate must carry. Without it, the node's IP address must
    /// be in its certificate: the driver dials the addresses the cluster announces.
    pub server_name: Option<String>,
    /// PEM certificate chain Herald presents, for clusters with `require_client_auth`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CqlTlsError {
    #[error("scylla.tls.{setting} {path}: {reason}")]
    File { setting: &'static str, path: String, reason: String },
    #[error("scylla.tls.server_name {0:?} is not a DNS name or an IP address")]
    ServerName(String),
    #[error("scylla.tls.cert_file and scylla.tls.key_file go together: set both or neither")]
    HalfClientCertificate,
    #[error("scylla.tls: {0}")]
    Config(String),
}

impl CqlTls {
    /// The client configuration every connection of a session uses.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, CqlTlsError> {
        // Not the process-wide default: a store must not depend on who installed one first.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(self.roots()?);
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| CqlTlsError::Config(e.to_string()))?;
        let builder = match &self.server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|_| CqlTlsError::ServerName(name.clone()))?;
                let checker = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| CqlTlsError::Config(e.to_string()))?;
                // `dangerous` only by its module's name: the chain and the name are checked
                // as usual, against the configured name instead of the dialled address.
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NamedServer { checker, name }))
            }
        };
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates("cert_file", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| CqlTlsError::File {
                    setting: "key_file",
                    path: key.display().to_string(),
                    reason: format!("no usable private key: {e}"),
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| CqlTlsError::File {
                    setting: "cert_file",
                    path: cert.display().to_string(),
                    reason: format!("does not go with key_file: {e}"),
                })?
            }
            _ => return Err(CqlTlsError::HalfClientCertificate),
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, CqlTlsError> {
        let Some(path) = &self.ca_file else {
            return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
        };
        let mut roots = RootCertStore::empty();
        for certificate in certificates("ca_file", path)? {
            roots.add(certificate).map_err(|e| CqlTlsError::File {
                setting: "ca_file",
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(roots)
    }
}

/// Every certificate of a PEM file; a file without one is an error, not an empty list.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CqlTlsError> {
    let failed =
        |reason: String| CqlTlsError::File { setting, path: path.display().to_string(), reason };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("holds no PEM certificate".into()));
    }
    Ok(certificates)
}

/// Checks a node's certificate against a configured name rather than the address the driver
/// dialled (which is all it passes).
#[derive(Debug)]
struct NamedServer {
    checker: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.checker.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checker.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checker.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.checker.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_without_its_key_is_refused_before_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let tls = CqlTls { cert_file: Some(dir.path().join("client.pem")), ..CqlTls::default() };
        let err = tls.client_config().unwrap_err();
        assert!(matches!(err, CqlTlsError::HalfClientCertificate), "{err}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_names_the_setting_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let tls = CqlTls { ca_file: Some(path.clone()), ..CqlTls::default() };
        let err = tls.client_config().unwrap_err().to_string();
        assert!(err.contains("scylla.tls.ca_file") && err.contains(&path.display().to_string()));
        assert!(err.contains("no PEM certificate"), "{err}");
        let missing = CqlTls { ca_file: Some(dir.path().join("gone.pem")), ..CqlTls::default() };
        let err = missing.client_config().unwrap_err().to_string();
        assert!(err.contains("gone.pem"), "{err}");
    }

    #[test]
    fn a_server_name_must_be_a_name() {
        let tls = CqlTls { server_name: Some("not a name!".into()), ..CqlTls::default() };
        let err = tls.client_config().unwrap_err();
        assert!(matches!(err, CqlTlsError::ServerName(_)), "{err}");
        let tls = CqlTls { server_name: Some("scylla.example.com".into()), ..CqlTls::default() };
        assert!(tls.client_config().is_ok());
    }
}
