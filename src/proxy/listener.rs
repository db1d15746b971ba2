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
use crate::descriptors;
use crate::resp::replies;

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
/// The usual 128 (std) or 1,024 (tokio) overflow during a burst of connections:
/// the kernel then drops SYNs, and a client retries only after 1 s, then 3 s.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` for listening with [`BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let Ok(parsed) = addr.parse::<std::net::SocketAddr>() else {
        // A host name: resolved by tokio, with its default backlog.
        return TcpListener::bind(addr).await;
    };
    bind_addr(parsed)
}

/// Binds `addr` for listening with [`BACKLOG`] (not async: nothing to resolve).
pub fn bind_addr(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As `TcpListener::bind` does: a restarted turnstile can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

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
    // A Sentinel-managed upstream: follow its primary while the database is served.
    ctx.watch_upstream();
    // Idle upstream connections expire even when no client comes to notice.
    let mut sweep = tokio::time::interval(POOL_SWEEP);
    let mut last_warned: Option<std::time::Instant> = None;
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Idle client connections park (see `park`).
    let mut park = tokio::time::interval(super::park::PARK_SWEEP);
    park.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.cancelled() => break,
            r = listener.accept() => r,
            _ = sweep.tick() => {
                ctx.pool.sweep(&ctx.upstream_full());
                continue;
            }
            _ = park.tick() => {
                ctx.sessions.sweep_idle();
                continue;
            }
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) if descriptors::exhausted(&e) => {
                // Out of descriptors: shed what is queued with a spare one (Redis's
                // refusal on plain ports; TLS clients are just closed), then back off
                // instead of spinning on `accept`.
                let tls = ctx.tls_enabled();
                let shed = descriptors::shed(&listener, |s| refuse(s, tls)).await;
                if last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(error = %e, bdb = ctx.uid, shed, "accept failed: out of file descriptors");
                    last_warned = Some(std::time::Instant::now());
                }
                tokio::time::sleep(descriptors::EXHAUSTED_BACKOFF).await;
                continue;
            }
            Err(e) => {
                // A connection reset before it was accepted, or a kernel shortage.
                tracing::debug!(error = %e, bdb = ctx.uid, "accept failed");
                tokio::time::sleep(descriptors::EXHAUSTED_BACKOFF).await;
                continue;
            }
        };
        crate::metrics::inc(&ctx.stats.accepted);
        // Unauthenticated connections are bounded before anything is spent on them
        // (no task, no TLS handshake): refused ones are closed here and now.
        let permit = match ctx.admission().admit(peer.ip()) {
            Ok(p) => p,
            Err(bound) => {
                tracing::debug!(bdb = ctx.uid, %peer, ?bound, "too many unauthenticated connections; refused");
                crate::metrics::inc(&ctx.stats.refused_unauthenticated);
                refuse(&stream, ctx.tls_enabled());
                continue;
            }
        };
        let active = ctx.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = ConnectionGuard(Arc::clone(&ctx));
        let max = ctx.max_connections();
        let full = max > 0 && active > max;
        let span = tracing::info_span!("conn", bdb = ctx.uid, %peer);
        let ctx = Arc::clone(&ctx);
        // Read per connection: turning TLS on or off applies to the next one.
        match ctx.tls_acceptor() {
            None if full => {
                tracker.spawn(async move {
                    let _guard = guard;
                    let _ = stream.write_all(replies::MAX_CLIENTS).await;
                });
            }
            None => {
                // The connection's future itself is the task (no wrapper: an
                // `async` block awaiting it would hold it twice); it logs its end.
                span.in_scope(|| tracing::debug!("connected"));
                tracker.spawn(serve_tcp(ctx, stream, Some(peer), Some(permit), guard).instrument(span));
            }
            Some(acceptor) => {
                // Closable to make room from now on, its handshake included: a flood
                // of handshakes that never finish must not hold the bound in all
                // (see `admission`). The session binds its own switch after.
                let early = super::kill::Kill::new();
                permit.bind(&early);
                // The handshake runs in the connection's task, never in the accept loop.
                tracker.spawn(
                    async move {
                        let _guard = guard;
                        let tls = tokio::select! {
                            tls = handshake(&ctx, acceptor, stream) => tls,
                            () = early.killed() => None,
                        };
                        let Some(mut tls) = tls else {
                            return;
                        };
                        if full {
                            let _ = tls.write_all(replies::MAX_CLIENTS).await;
                            let _ = tls.shutdown().await;
                            return;
                        }
                        tracing::debug!("connected (TLS)");
                        serve_tls(ctx, tls, Some(peer), Some(permit)).await;
                    }
                    .instrument(span),
                );
            }
        }
    }
    // Connections do not watch `shutdown` themselves: they are asked, by a flag on
    // each one's kill switch (see `proxy::kill`).
    // (A loop stopped for a new listener leaves them to that one's end.)
    if shutdown.is_cancelled() {
        ctx.sessions.stop_all();
    }
}

/// Refuses a connection as Redis does when it has too many clients: the error, then
/// close. Written without waiting (a fresh socket's buffer takes it); a TLS port
/// sends nothing, since plaintext would only confuse a TLS client.
fn refuse(stream: &tokio::net::TcpStream, tls: bool) {
    if !tls {
        let _ = stream.try_write(replies::MAX_CLIENTS);
    }
}

/// At most one "out of descriptors" warning per this, however long it lasts.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// How often a database's idle upstream connections are checked for expiry.
const POOL_SWEEP: Duration = Duration::from_secs(5);

/// Counts a connection for `max_connections` for as long as it lives.
struct ConnectionGuard(Arc<BdbContext>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
