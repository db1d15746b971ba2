//! A minimal HTTP/1.1 client for the admin API: one request per connection
//! (`Connection: close`), JSON in and out, over TCP or TLS. Bounded in time and
//! size: an admin API that hangs or answers without end cannot hang the command.

use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// Longest a whole request/response may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response read.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Where the admin API is and who the command acts as.
pub struct Client {
    https: bool,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `Basic …`, secret.
    authorization: Zeroizing<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad --url {0:?}: expected http[s]://host:port")]
    Url(String),
    #[error("cannot reach the admin API: {0}")]
    Io(#[from] std::io::Error),
    #[error("the admin API did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer from the admin API: {0}")]
    Protocol(&'static str),
    #[error("{0}")]
    Tls(String),
}

impl Client {
    /// `url` is `http[s]://host:port`; `ca` the PEM file that signs the admin API's
    /// certificate (its default self-signed one is `<store dir>/tls/cert.pem`).
    pub fn new(
        url: &str,
        user: &str,
        password: &str,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, HttpError> {
        let bad = || HttpError::Url(url.to_string());
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let tls = match (https, ca) {
            (true, Some(ca)) => {
                Some(crate::tls::client_config(ca, None).map_err(|e| HttpError::Tls(e.to_string()))?)
            }
            (true, None) => Some(system_roots()),
            (false, _) => None,
        };
        let creds = Zeroizing::new(format!("{user}:{password}"));
        let authorization = Zeroizing::new(format!("Basic {}", Base64::encode_string(creds.as_bytes())));
        Ok(Self { https, host, port, tls, authorization })
    }

    /// One request; returns the status and the body as JSON (Null if empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), HttpError> {
        tokio::time::timeout(TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| HttpError::Timeout(TIMEOUT))?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), HttpError> {
        let payload = Zeroizing::new(body.map(|b| b.to_string()).unwrap_or_default());
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let mut request = Zeroizing::new(format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}:{}\r\nAuthorization: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.port, *self.authorization
        ));
        if body.is_some() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                payload.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(&payload);
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let raw = match (&self.tls, self.https) {
            (Some(config), true) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| HttpError::Url(self.host.clone()))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await?;
                roundtrip(tls, request.as_bytes()).await?
            }
            _ => roundtrip(tcp, request.as_bytes()).await?,
        };
        parse(&raw)
    }
}

/// The platform's usual CA bundle, for an admin API with a public certificate.
fn system_roots() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for path in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"] {
        if let Ok(pem) = std::fs::read(path) {
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(config)
}

async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> Result<Vec<u8>, HttpError> {
    s.write_all(request).await?;
    s.flush().await?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            // A TLS peer that closes without close_notify: what arrived is whole
            // if its length says so (checked in `parse`).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        };
        if out.len() + n > MAX_RESPONSE {
            return Err(HttpError::Protocol("response too large"));
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Status and JSON body of a whole `Connection: close` response.
fn parse(raw: &[u8]) -> Result<(u16, serde_json::Value), HttpError> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(HttpError::Protocol("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| HttpError::Protocol("header not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Protocol("bad status line"))?;
    let mut body = &raw[end + 4..];
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v.trim().parse().map_err(|_| HttpError::Protocol("bad content-length"))?;
            if body.len() < n {
                return Err(HttpError::Protocol("truncated body"));
            }
            body = &body[..n];
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let owned;
    if chunked {
        owned = dechunk(body)?;
        body = &owned;
    }
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).map_err(|_| HttpError::Protocol("body is not JSON"))?
    };
    Ok((status, value))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or(HttpError::Protocol("bad chunked body"))?;
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let size = size.ok_or(HttpError::Protocol("bad chunked body"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        // A hostile size (near usize::MAX) must not overflow.
        if b.len() < size.saturating_add(2) {
            return Err(HttpError::Protocol("truncated chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let r = b"HTTP/1.1 409 Conflict\r\ncontent-length: 13\r\n\r\n{\"a\": [1, 2]}";
        assert_eq!(parse(r).unwrap(), (409, serde_json::json!({"a": [1, 2]})));
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\": 1}\r\n0\r\n\r\n";
        assert_eq!(parse(r).unwrap(), (200, serde_json::json!({"a": 1})));
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}").is_err());
        let huge = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nx\r\n";
        assert!(parse(huge).is_err(), "a chunk size near usize::MAX is refused, not a panic");
        assert!(Client::new("ftp://x:1", "a", "b", None).is_err());
    }
}
