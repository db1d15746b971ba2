//! The admin API's certificate: the operator's, or a self-signed one made on first
//! start and kept in the store directory (so `curl -k` works out of the box and the
//! certificate does not change on every restart).

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Installs rustls's ring provider once per process (several callers may race).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Loads `cert`/`key` (PEM) if given, else the self-signed pair in `dir/tls`,
/// creating it the first time. Offers HTTP/2 and HTTP/1.1 (ALPN), so the protocol
/// is known when the handshake ends, without sniffing the first bytes.
pub fn config(
    dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> std::io::Result<Arc<rustls::ServerConfig>> {
    install_crypto_provider();
    let (cert, key) = cert_paths(dir, cert, key)?;
    let loaded = crate::tls::server_config(&cert, &key, None).map_err(std::io::Error::other)?;
    let mut config = (*loaded).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The admin API's certificate and key files: the operator's, else the self-signed
/// pair in `dir/tls` (made the first time). Database listeners with TLS and no
/// certificate of their own use the same pair.
pub fn cert_paths(
    dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> std::io::Result<(PathBuf, PathBuf)> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok((c.to_path_buf(), k.to_path_buf())),
        _ => self_signed(dir),
    }
}

fn self_signed(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let tls = dir.join("tls");
    let cert = tls.join("cert.pem");
    let key = tls.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&tls)?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for the admin API");
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
