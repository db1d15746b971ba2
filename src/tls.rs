//! TLS material for the data path: PEM files loaded into rustls configurations for
//! database listeners (optionally requiring client certificates) and for upstream
//! `rediss://` connections. Errors name the file, never its contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS material could not be used: which file, and what kind of problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read certificates (PEM): {why}", path.display())]
    Certs { path: PathBuf, why: String },
    #[error("{}: holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("{}: cannot read a private key (PEM)", path.display())]
    Key { path: PathBuf },
    #[error("{}: not a usable CA certificate: {why}", path.display())]
    Ca { path: PathBuf, why: String },
    #[error("the certificate and key do not make a usable pair: {0}")]
    Pair(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        // The error's text is about the file (missing, unreadable, bad base64), never
        // its bytes.
        .map_err(|e| TlsError::Certs { path: path.to_path_buf(), why: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // Deliberately no detail: a parse error could describe key bytes.
    PrivateKeyDer::from_pem_file(path).map_err(|_| TlsError::Key { path: path.to_path_buf() })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| TlsError::Ca { path: ca.to_path_buf(), why: e.to_string() })?;
    }
    Ok(roots)
}

/// What a database listener serves: its certificate chain and key, and, when
/// `client_ca` is given, client certificates required and verified against it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key = load_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .map_err(|e| TlsError::Ca { path: ca.to_path_buf(), why: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| TlsError::Pair(e.to_string()))?;
    Ok(Arc::new(config))
}

/// How turnstile speaks TLS to an upstream: the server is verified against `ca`;
/// `client` is a certificate and key to present (for an upstream requiring them).
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Pair(e.to_string()))?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_not_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        std::fs::write(&key, secret).unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let e = server_config(&cert, &key, None).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("no certificate"), "{e}");
        let good = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, good.cert.pem()).unwrap();
        let e = server_config(&cert, &key, None).unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0") && !e.contains("secret"), "{e}");
        let e = server_config(&cert, &dir.path().join("missing.pem"), None).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::write(&key, good.signing_key.serialize_pem()).unwrap();
        assert!(server_config(&cert, &key, Some(&cert)).is_ok());
        assert!(client_config(&cert, Some((&cert, &key))).is_ok());
    }
}
