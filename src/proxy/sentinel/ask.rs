//! Asking: which node the Sentinels name as primary (each in turn, short
//! timeouts, the one that answered moved to the front as the spec says), and
//! whether that node agrees (`ROLE` with the service credential).

use redis_protocol::resp2::types::OwnedFrame;

use super::super::Upstream;
use super::super::handshake::UpstreamError;
use super::super::manage::{self, Session};
use super::{SENTINEL_TIMEOUT, Spec};

/// What the Sentinels said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `host:port` of the primary, as a Sentinel reported it.
    Primary(String),
    /// Sentinels answered but none knows the master name.
    Unknown,
    /// No Sentinel could be reached (or none answered in time).
    Unreachable,
}

/// Asks the Sentinels in `order` (indices into the spec's list) for the primary's
/// address; the first that knows it is moved to the front of `order`.
pub async fn primary(spec: &Spec, template: &Upstream, order: &mut [usize], warned: &mut [bool]) -> Answer {
    let mut answered = false;
    for pos in 0..order.len() {
        let i = order[pos];
        let sentinel = spec.sentinel(i, template);
        let asked =
            tokio::time::timeout(SENTINEL_TIMEOUT * 2, ask_one(&sentinel, &spec.master, !warned[i])).await;
        match asked {
            Ok(Ok(Some(addr))) => {
                warned[i] = false;
                order[..=pos].rotate_right(1);
                return Answer::Primary(addr);
            }
            Ok(Ok(None)) => {
                warned[i] = false;
                answered = true;
            }
            Ok(Err(_)) | Err(_) => warned[i] = true,
        }
    }
    if answered { Answer::Unknown } else { Answer::Unreachable }
}

/// `SENTINEL get-master-addr-by-name` on one Sentinel.
async fn ask_one(sentinel: &Upstream, master: &str, warn: bool) -> Result<Option<String>, UpstreamError> {
    let mut s = Session::open_logged(sentinel, warn).await?;
    match s.call(&[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()]).await? {
        OwnedFrame::Array(parts) if parts.len() == 2 => {
            let (Some(ip), Some(port)) = (manage::text(&parts[0]), manage::text(&parts[1])) else {
                return Err(UpstreamError::Lost);
            };
            Ok(Some(join(&ip, &port)))
        }
        OwnedFrame::Null | OwnedFrame::Array(_) => Ok(None),
        other => {
            tracing::warn!(sentinel = %sentinel.address, reply = ?manage::text(&other), "Sentinel refused the query");
            Err(UpstreamError::Lost)
        }
    }
}

/// `host:port`, bracketing an IPv6 address.
pub fn join(ip: &str, port: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

/// What a node says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    /// A replica (or a Sentinel, or anything but a primary).
    Other,
    Unreachable,
}

/// `ROLE` on `node`, logged in with the service credential, bounded by the
/// connect timeout.
pub async fn role(node: &Upstream) -> Role {
    let asked = async {
        let mut s = Session::open(node).await?;
        s.call(&[b"ROLE"]).await
    };
    match tokio::time::timeout(node.connect_timeout, asked).await {
        Ok(Ok(OwnedFrame::Array(parts))) => match parts.first().and_then(manage::text).as_deref() {
            Some("master") => Role::Master,
            _ => Role::Other,
        },
        Ok(Ok(other)) => {
            tracing::warn!(node = %node.address, reply = ?manage::text(&other), "ROLE refused (the service credential needs it)");
            Role::Unreachable
        }
        Ok(Err(_)) | Err(_) => Role::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn joins_addresses() {
        assert_eq!(super::join("127.0.0.1", "6379"), "127.0.0.1:6379");
        assert_eq!(super::join("::1", "6379"), "[::1]:6379");
    }
}
