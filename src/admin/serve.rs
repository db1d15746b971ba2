//! Serving the admin API on a listener: a bound on connections, a time limit on
//! the TLS handshake, on request heads and on idle connections, for HTTP/1.1 and
//! HTTP/2 alike. hyper does the HTTP; this only decides how long a connection may
//! hold a descriptor.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::activity::Activity;
use super::bodies::{HeldResponse, share};
use super::linger::Lingering;
use crate::descriptors;

/// How long the admin API's connections may hold on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// How long a handler waits for a request's body.
    pub body_timeout: Duration,
}

/// After asking an idle connection to close (HTTP/2: GOAWAY), how long it gets
/// before it is dropped regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepts until `shutdown`, then lets the connections finish what is in flight for
/// at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                if descriptors::exhausted(&e) {
                    let shed = descriptors::shed(&listener, |_| {}).await;
                    if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, shed, "admin API: accept failed: out of file descriptors");
                        last_warned = Some(std::time::Instant::now());
                    }
                } else {
                    tracing::debug!(error = %e, "admin API: accept failed");
                }
                // Never retry at once: that would spin a core.
                tokio::time::sleep(descriptors::EXHAUSTED_BACKOFF).await;
                continue;
            }
        };
        // Over the bound: closed now, before any handshake, so a flood of them
        // holds no descriptor and costs no CPU.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "admin API: too many connections; closed");
            continue;
        };
        let span = tracing::debug_span!("admin_conn", %peer);
        let conn = connection(stream, app.clone(), tls.clone(), limits, shutdown.clone(), slot);
        connections.spawn(conn.instrument(span));
    }
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(remaining = connections.len(), "admin API: grace period over; closing connections");
    }
}

/// Serves one connection; `_slot` counts it toward `max_connections` until it ends.
async fn connection(
    stream: TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let Some(acceptor) = tls else {
        return http(Lingering::new(stream, Arc::clone(&activity)), None, app, activity, limits, shutdown)
            .await;
    };
    let tls = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "admin API: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("admin API: TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    http(Lingering::new(tls, Arc::clone(&activity)), Some(h2), app, activity, limits, shutdown).await
}

/// Runs hyper on `io` (`h2`: what ALPN chose; None: plaintext, detected from the
/// first bytes), closing the connection when its watchdog says so.
async fn http<T>(
    io: Lingering<T>,
    h2: Option<bool>,
    app: Router,
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: CancellationToken,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match h2 {
        Some(true) => builder.http2_only(),
        Some(false) => builder.http1_only(),
        None => builder,
    };
    // hyper's header timer also runs while an HTTP/1.1 connection waits for its
    // next request, so idle HTTP/1.1 keep-alive ends after `header_timeout` too.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    // Pings find dead HTTP/2 peers; live idle ones are closed by the watchdog.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = requests.begin();
        let (mut parts, incoming) = req.into_parts();
        parts.extensions.insert(super::extract::BodyTimeout(limits.body_timeout));
        let (body, keep) = share(incoming);
        let mut app = app.clone();
        async move {
            let response =
                tower_service::Service::call(&mut app, hyper::Request::from_parts(parts, Body::new(body)))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response.map(|b| HeldResponse::new(b, keep, busy)))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Some(t): asked to close (idle or shutting down); dropped at t if still open.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let wake = closing.unwrap_or_else(|| activity.deadline(limits.header_timeout, limits.idle_timeout));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // A header timeout, a reset, a malformed request: the client's doing.
                    tracing::debug!(error = %e, "admin API: connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    tracing::debug!("admin API: connection did not close in time; dropped");
                    return;
                }
                if activity.deadline(limits.header_timeout, limits.idle_timeout) <= tokio::time::Instant::now() {
                    if !activity.started() {
                        // No request ever came (a half-sent one, or nothing): nothing
                        // is owed a goodbye, and HTTP/2's would wait for the client.
                        tracing::debug!("admin API: no request within the header timeout; closed");
                        return;
                    }
                    tracing::debug!("admin API: idle; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
            _ = activity.request_ended(), if closing.is_none() => {}
            _ = shutdown.cancelled(), if closing.is_none() => {
                // In-flight requests finish; the accept loop's grace bounds them.
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + Duration::from_secs(86_400));
            }
        }
    }
}
