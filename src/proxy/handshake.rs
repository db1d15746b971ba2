//! An upstream session's login, in one place for lanes, the pool and clients'
//! own connections: `AUTH` as the turnstile user of the client's rule (never the
//! service credential, see [`super::users`]), then `HELLO 3` for a RESP3 session.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use super::Upstream;
use super::io::{READ_MIN, ReadSome, UpstreamRead, UpstreamWrite};
use super::users::Credential;
use crate::resp::replies;
use crate::resp::reply::ReplyScanner;

/// Why an upstream session could not be had. [`Self::reply`] is what the client is
/// told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream is unreachable or did not answer in time")]
    Unavailable,
    /// `WRONGPASS` for a turnstile user: the upstream lost its users (a restart
    /// without an ACL file) or they were changed behind turnstile's back.
    #[error("the upstream refused turnstile's user")]
    LoginRefused,
    #[error("the upstream refused the service credentials")]
    ServiceRefused,
    /// The service credential may not create users (ACL SETUSER refused).
    #[error("the upstream refuses to manage turnstile's users with the service credentials")]
    CannotManage,
    /// The upstream refused the rule of the client's user (a command or category
    /// it does not know, on an older Redis).
    #[error("the upstream refused the ACL rule of the client's user")]
    RuleRefused,
    /// The upstream does not speak RESP3.
    #[error("the upstream does not support RESP3")]
    NoProto,
    #[error("the upstream closed the connection")]
    Lost,
    /// A Sentinel-managed node that says it is not the primary (a failover under
    /// way): the connection is not used.
    #[error("the upstream node is not the primary")]
    NotPrimary,
    /// No verified primary came within the wait bound.
    #[error("no verified upstream primary is known")]
    NoPrimary,
}

impl UpstreamError {
    /// The reply a client gets for it.
    pub fn reply(&self) -> &'static [u8] {
        match self {
            Self::Unavailable => replies::UPSTREAM_UNAVAILABLE,
            Self::LoginRefused | Self::ServiceRefused | Self::CannotManage => replies::UPSTREAM_AUTH_FAILED,
            Self::RuleRefused => replies::UPSTREAM_RULE_REFUSED,
            Self::NoProto => replies::NOPROTO,
            Self::Lost => replies::UPSTREAM_LOST,
            Self::NotPrimary | Self::NoPrimary => replies::NO_PRIMARY,
        }
    }
}

/// The request that logs a session in (and makes it RESP3). Wiped when dropped.
/// `verify`: a `HELLO` follows in any case, whose `role` field says whether the node
/// is the primary (Sentinel-managed upstreams; see [`check_role`]).
pub fn login_request(cred: &Credential, resp3: bool, verify: bool) -> Zeroizing<Vec<u8>> {
    let mut out = cred.auth_command();
    if resp3 {
        out.extend_from_slice(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    } else if verify {
        // Keeps the session RESP2, as it is.
        out.extend_from_slice(b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n");
    }
    out
}

/// Whether a `HELLO` reply (RESP2 or RESP3: both encode the field and its value as
/// bulk strings) says `role: master`.
///
/// Why `HELLO` and not `ROLE`, as the Sentinel client spec has it: the session is
/// already logged in as the rule's user, and `ROLE` needs `@admin`, which a rule
/// rarely grants; `HELLO` is allowed to every user, and its `role` is the same
/// fact (`server.masterhost == NULL`). The watcher asks `ROLE` itself, with the
/// service credential, before a node is installed.
pub fn check_role(reply: &[u8]) -> Result<(), UpstreamError> {
    const MASTER: &[u8] = b"$4\r\nrole\r\n$6\r\nmaster\r\n";
    if reply.windows(MASTER.len()).any(|w| w == MASTER) { Ok(()) } else { Err(UpstreamError::NotPrimary) }
}

/// Connects to `upstream` and logs the session in as `cred`, each step bounded
/// by the connect timeout.
pub async fn open(
    upstream: &Upstream,
    cred: &Credential,
    resp3: bool,
) -> Result<(UpstreamRead, UpstreamWrite), UpstreamError> {
    if !upstream.is_current() {
        return Err(UpstreamError::NotPrimary);
    }
    let stream = upstream.connect().await.map_err(|e| {
        tracing::warn!(error = %e, upstream = %upstream.address, "upstream unavailable");
        UpstreamError::Unavailable
    })?;
    let (mut reader, mut writer) = stream.into_split();
    let login = login(&mut reader, &mut writer, cred, resp3, upstream.sentinel.is_some());
    match tokio::time::timeout(upstream.connect_timeout, login).await {
        Ok(Ok(())) => Ok((reader, writer)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            tracing::warn!(upstream = %upstream.address, "upstream did not answer the login in time");
            Err(UpstreamError::Unavailable)
        }
    }
}

/// Sends the login on a fresh session and checks its replies; nothing may follow
/// them. The caller bounds it in time.
pub async fn login<R: ReadSome, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    cred: &Credential,
    resp3: bool,
    verify: bool,
) -> Result<(), UpstreamError> {
    let request = login_request(cred, resp3, verify);
    let sent = async {
        writer.write_all(&request).await?;
        writer.flush().await
    };
    sent.await.map_err(|_| UpstreamError::Lost)?;
    let (kinds, bytes) = first_replies(reader, 1 + usize::from(resp3 || verify)).await?;
    if kinds[0] != b'+' {
        tracing::warn!(user = %cred.name, "upstream refused turnstile's user");
        return Err(UpstreamError::LoginRefused);
    }
    if resp3 && kinds[1] != b'%' {
        return Err(UpstreamError::NoProto);
    }
    if verify {
        check_role(&bytes)?;
    }
    Ok(())
}

/// Reads `n` replies and returns the kind of each (`+OK` is `+`, an error `-`, a
/// HELLO 3 reply `%`), and their bytes. Nothing may follow them.
pub async fn first_replies<R: ReadSome>(
    reader: &mut R,
    n: usize,
) -> Result<(Vec<u8>, BytesMut), UpstreamError> {
    let mut buf = BytesMut::new();
    let mut chunk = READ_MIN;
    let mut scanner = ReplyScanner::new();
    let mut kinds = Vec::new();
    let mut pos = 0;
    loop {
        match reader.read_some(&mut buf, &mut chunk).await {
            Ok(0) | Err(_) => return Err(UpstreamError::Lost),
            Ok(_) => {}
        }
        while pos < buf.len() {
            if kinds.len() == n {
                tracing::warn!("unexpected bytes after the upstream login replies");
                return Err(UpstreamError::Lost);
            }
            let (k, info) = scanner.scan(&buf[pos..]).map_err(|_| UpstreamError::Lost)?;
            pos += k;
            if let Some(info) = info {
                kinds.push(info.kind);
            }
        }
        if kinds.len() == n {
            return Ok((kinds, buf));
        }
        if buf.len() > 64 * 1024 {
            return Err(UpstreamError::Lost);
        }
    }
}
