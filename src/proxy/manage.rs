//! The service credential's session: the only connection that logs in with a
//! database's upstream credentials, and it only manages turnstile's own users
//! (`ACL SETUSER`, `DELUSER`, `LIST`, `DRYRUN`, `GETUSER`). Client commands never
//! travel on it.

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::AsyncWriteExt;

use super::Upstream;
use super::handshake::UpstreamError;
use super::io::{READ_MIN, ReadSome, UpstreamRead, UpstreamWrite};
use crate::resp::encode;

/// Replies larger than this end the session (ACL LIST of a Redis with thousands
/// of users is still far below it).
const MAX_REPLY: usize = 8 * 1024 * 1024;

pub struct Session {
    reader: UpstreamRead,
    writer: UpstreamWrite,
    buf: BytesMut,
}

impl Session {
    /// Connects and logs in with the service credentials (if the upstream has any).
    /// The caller bounds the whole session in time.
    pub async fn open(upstream: &Upstream) -> Result<Self, UpstreamError> {
        Self::open_logged(upstream, true).await
    }

    /// [`Self::open`], logging an unreachable upstream only if `warn` (a Sentinel
    /// that is down is retried every second: once is enough to say so).
    pub async fn open_logged(upstream: &Upstream, warn: bool) -> Result<Self, UpstreamError> {
        let stream = upstream.connect().await.map_err(|e| {
            if warn {
                tracing::warn!(error = %e, upstream = %upstream.address, "upstream unavailable");
            } else {
                tracing::debug!(error = %e, upstream = %upstream.address, "upstream unavailable");
            }
            UpstreamError::Unavailable
        })?;
        let (reader, writer) = stream.into_split();
        let mut s = Self { reader, writer, buf: BytesMut::new() };
        if let Some(auth) = upstream.auth_command() {
            let auth = zeroize::Zeroizing::new(auth.to_vec());
            match s.send(&auth).await? {
                OwnedFrame::SimpleString(_) => {}
                _ => {
                    tracing::warn!(upstream = %upstream.address, "upstream refused the service credentials");
                    return Err(UpstreamError::ServiceRefused);
                }
            }
        }
        Ok(s)
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<OwnedFrame, UpstreamError> {
        let request = zeroize::Zeroizing::new(encode::command(args).to_vec());
        self.send(&request).await
    }

    async fn send(&mut self, request: &[u8]) -> Result<OwnedFrame, UpstreamError> {
        self.writer.write_all(request).await.map_err(|_| UpstreamError::Lost)?;
        self.writer.flush().await.map_err(|_| UpstreamError::Lost)?;
        self.receive().await
    }

    /// Reads the next frame (a reply, or a message once subscribed).
    pub async fn receive(&mut self) -> Result<OwnedFrame, UpstreamError> {
        let mut chunk = READ_MIN;
        loop {
            match decode(&self.buf) {
                Ok(Some((frame, n))) => {
                    let _ = self.buf.split_to(n);
                    return Ok(frame);
                }
                Ok(None) if self.buf.len() <= MAX_REPLY => {}
                _ => return Err(UpstreamError::Lost),
            }
            match self.reader.read_some(&mut self.buf, &mut chunk).await {
                Ok(n) if n > 0 => {}
                _ => return Err(UpstreamError::Lost),
            }
        }
    }
}

/// The text of a simple or bulk string reply, or of an error.
pub fn text(f: &OwnedFrame) -> Option<String> {
    match f {
        OwnedFrame::SimpleString(b) | OwnedFrame::BulkString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        OwnedFrame::Error(e) => Some(e.clone()),
        _ => None,
    }
}
