//! The accept loop of one database endpoint. Knows nothing of RESP.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::BdbContext;
use super::session::{handshake, serve_tcp, serve_tls};
use crate::resp::replies;

/// Accepts connections until `shutdown`, serving each on `tracker` (so the caller
/// can wait for them to finish). `shutdown` also asks the connections to finish.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<BdbContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    serve_until(listener, ctx, shutdown.clone(), shutdown, tracker).await
}

/// Like [`serve`], with separate signals: `stop_accepting` ends the accept loop
/// only (moving a database to another port keeps its connections), `shutdown` asks
/// the connections to finish.
pub async fn serve_until(
    listener: TcpListener,
    ctx: Arc<BdbContext>,
    stop_accepting: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    // Idle upstream connections expire even when no client comes to notice.
    let mut sweep = tokio::time::interval(POOL_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.cancelled() => break,
            r = listener.accept() => r,
            _ = sweep.tick() => {
                ctx.pool.sweep(&ctx.upstream_full());
                continue;
            }
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, bdb = ctx.uid, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        crate::metrics::inc(&ctx.stats.accepted);
        let active = ctx.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = ConnectionGuard(Arc::clone(&ctx));
        let max = ctx.max_connections();
        let full = max > 0 && active > max;
        let span = tracing::info_span!("conn", bdb = ctx.uid, %peer);
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        // Read per connection: turning TLS on or off applies to the next one.
        match ctx.tls_acceptor() {
            None if full => {
                tracker.spawn(async move {
                    let _guard = guard;
                    let _ = stream.write_all(replies::MAX_CLIENTS).await;
                });
            }
            None => {
                tracker.spawn(
                    async move {
                        let _guard = guard;
                        tracing::debug!("connected");
                        serve_tcp(ctx, stream, shutdown).await;
                        tracing::debug!("disconnected");
                    }
                    .instrument(span),
                );
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, never in the accept loop.
                tracker.spawn(
                    async move {
                        let _guard = guard;
                        let Some(mut tls) = handshake(&ctx, acceptor, stream).await else {
                            return;
                        };
                        if full {
                            let _ = tls.write_all(replies::MAX_CLIENTS).await;
                            let _ = tls.shutdown().await;
                            return;
                        }
                        tracing::debug!("connected (TLS)");
                        serve_tls(ctx, tls, shutdown).await;
                        tracing::debug!("disconnected");
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// How often a database's idle upstream connections are checked for expiry.
const POOL_SWEEP: Duration = Duration::from_secs(5);

/// Counts a connection for `max_connections` for as long as it lives.
struct ConnectionGuard(Arc<BdbContext>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
