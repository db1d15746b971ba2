//! One Sentinel's `+switch-master` channel: a message naming the database's master
//! makes the watcher look again at once (the poll is only the safety net).

use std::sync::Arc;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;
use tokio_util::sync::CancellationToken;

use super::super::Upstream;
use super::super::failover::Failover;
use super::super::handshake::UpstreamError;
use super::super::manage::{self, Session};
use super::{SENTINEL_TIMEOUT, Spec};

/// How long to wait before subscribing again to a Sentinel that is down or
/// closed the subscription.
const RETRY: Duration = Duration::from_secs(1);
const CHANNEL: &[u8] = b"+switch-master";

/// Follows Sentinel `i`'s `+switch-master` until `stop`.
pub async fn run(
    spec: Spec,
    template: Arc<Upstream>,
    i: usize,
    failover: Arc<Failover>,
    stop: CancellationToken,
) {
    let sentinel = spec.sentinel(i, &template);
    let mut warned = false;
    loop {
        let followed = tokio::select! {
            _ = stop.cancelled() => return,
            r = follow(&sentinel, &spec.master, &failover, !warned) => r,
        };
        match followed {
            Err(e) if !warned => {
                tracing::warn!(sentinel = %sentinel.address, error = %e, "cannot follow this Sentinel; retrying every second");
                warned = true;
            }
            Err(_) => {}
            Ok(()) => warned = false,
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Subscribes and waits for messages until the connection ends.
async fn follow(
    sentinel: &Upstream,
    master: &str,
    failover: &Failover,
    warn: bool,
) -> Result<(), UpstreamError> {
    let subscribed = async {
        let mut s = Session::open_logged(sentinel, warn).await?;
        match s.call(&[b"SUBSCRIBE", CHANNEL]).await? {
            OwnedFrame::Array(_) => Ok(s),
            _ => Err(UpstreamError::Lost),
        }
    };
    let mut s = tokio::time::timeout(SENTINEL_TIMEOUT * 2, subscribed)
        .await
        .map_err(|_| UpstreamError::Unavailable)??;
    tracing::debug!(sentinel = %sentinel.address, "subscribed to +switch-master");
    // A switch may have happened while this was not subscribed.
    failover.nudge();
    loop {
        let frame = s.receive().await?;
        if is_switch_of(&frame, master) {
            tracing::info!(sentinel = %sentinel.address, master, "Sentinel announced +switch-master");
            failover.nudge();
        }
    }
}

/// `message +switch-master "<master> <old ip> <old port> <new ip> <new port>"`.
fn is_switch_of(frame: &OwnedFrame, master: &str) -> bool {
    let OwnedFrame::Array(parts) = frame else { return false };
    let [kind, channel, payload] = parts.as_slice() else { return false };
    manage::text(kind).as_deref() == Some("message")
        && manage::text(channel).as_deref() == Some("+switch-master")
        && manage::text(payload).is_some_and(|p| p.split(' ').next() == Some(master))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn recognises_the_switch_of_its_master_only() {
        let msg = |p: &str| OwnedFrame::Array(vec![bulk("message"), bulk("+switch-master"), bulk(p)]);
        assert!(is_switch_of(&msg("mymaster 127.0.0.1 6379 127.0.0.1 6380"), "mymaster"));
        assert!(!is_switch_of(&msg("other 127.0.0.1 6379 127.0.0.1 6380"), "mymaster"));
        assert!(!is_switch_of(&msg("mymaster2 127.0.0.1 6379 127.0.0.1 6380"), "mymaster"));
        assert!(!is_switch_of(&bulk("message"), "mymaster"));
    }
}
