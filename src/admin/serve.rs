//! Serving the admin API on a listener: a bound on connections per source address
//! and in all, a time limit on the TLS handshake, on request heads and on idle
//! connections, for HTTP/1.1 and HTTP/2 alike. hyper does the HTTP; this only
//! decides whether and how long a connection may hold a descriptor.

use std::convert::Infallible;
use std::net::IpAddr;
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
use crate::metrics::{AdminMetrics, AdminRefusal};
use crate::proxy::admission::{Admission, Permit};

/// How long the admin API's connections may hold on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// 0 = no bound.
    pub max_connections_per_address: usize,
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
/// at most `grace`. Connections closed at accept are counted in `metrics`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: &AdminMetrics,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let bounds = Bounds::new(&limits);
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
        // Over a bound: closed now, before any handshake, so a flood of them
        // holds no descriptor and costs no CPU.
        let admitted = match bounds.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                metrics.refused(why);
                tracing::debug!(%peer, ?why, "admin API: too many connections; closed");
                continue;
            }
        };
        let span = tracing::debug_span!("admin_conn", %peer);
        let conn = connection(stream, app.clone(), tls.clone(), limits, shutdown.clone(), admitted);
        connections.spawn(conn.instrument(span));
    }
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(remaining = connections.len(), "admin API: grace period over; closing connections");
    }
}

/// The two bounds on open connections: per source address and in all.
struct Bounds {
    /// No bound in all here (that is `slots`), so its only refusal is per address.
    per_address: Arc<Admission>,
    slots: Arc<Semaphore>,
}

/// What an admitted connection holds until it ends, however it ends: the
/// connection's future owns it, and is dropped on return, on a failed or timed-out
/// handshake, at the end of the grace period and on a panic alike.
struct Admitted {
    _address: Permit,
    _slot: OwnedSemaphorePermit,
}

impl Bounds {
    fn new(limits: &Limits) -> Self {
        Self {
            per_address: Admission::new(0, limits.max_connections_per_address),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
        }
    }

    /// The address's share first: an address at its bound is refused without
    /// touching the slots in all, so it can hold at most its share of them and
    /// never starve the other addresses. A refusal in all gives the address's
    /// share back (the permit is dropped).
    fn admit(&self, ip: IpAddr) -> Result<Admitted, AdminRefusal> {
        let address = self.per_address.admit(ip).map_err(|_| AdminRefusal::PerAddress)?;
        let slot = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| AdminRefusal::Total)?;
        Ok(Admitted { _address: address, _slot: slot })
    }
}

/// Serves one connection; `_admitted` counts it toward both bounds until it ends.
async fn connection(
    stream: TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: CancellationToken,
    _admitted: Admitted,
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4));

    fn bounds(total: usize, per_address: usize) -> Bounds {
        let d = Duration::from_secs(1);
        Bounds::new(&Limits {
            max_connections: total,
            max_connections_per_address: per_address,
            header_timeout: d,
            idle_timeout: d,
            tls_handshake_timeout: d,
            body_timeout: d,
        })
    }

    #[test]
    fn an_address_at_its_bound_takes_no_slot_in_all() {
        let b = bounds(2, 1);
        let a = b.admit(A).unwrap();
        for _ in 0..100 {
            assert_eq!(b.admit(A).err(), Some(AdminRefusal::PerAddress));
        }
        assert_eq!(b.slots.available_permits(), 1, "refusals per address hold no slot");
        let b1 = b.admit(B).unwrap();
        assert_eq!(b.admit(C).err(), Some(AdminRefusal::Total));
        drop(b1);
        // C's share was given back when the slots refused it, or this would be
        // refused per address.
        let _c = b.admit(C).unwrap();
        drop(a);
        let _a = b.admit(A).unwrap();
        assert_eq!(b.slots.available_permits(), 0);
    }

    #[test]
    fn zero_per_address_leaves_only_the_bound_in_all() {
        let b = bounds(5, 0);
        let _all: Vec<_> = (0..5).map(|_| b.admit(A).unwrap()).collect();
        assert_eq!(b.admit(A).err(), Some(AdminRefusal::Total));
    }
}
