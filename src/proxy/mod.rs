//! The data path: one listener per database, and per connection a client half
//! (framing, AUTH, forwarding) and a relay half (replies, in order).

mod acl;
pub mod admission;
mod both;
mod client;
pub mod failover;
pub mod handshake;
mod hello;
pub mod io;
pub mod kill;
pub mod lane;
pub mod listener;
mod local;
mod mailbox;
mod manage;
pub mod park;
mod plan;
pub mod pool;
pub mod registry;
mod relay;
mod route;
pub mod sentinel;
pub mod session;
pub mod upstream;
pub mod users;
mod waiter;

use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::auth::Directory;
use crate::authz::Secret;
pub use handshake::UpstreamError;
pub use mailbox::{Backlog, OutputLimits};
pub use pool::{FailoverTiming, PoolLimits};
pub use registry::Sessions;
pub use upstream::Upstream;

/// Everything a connection to one database needs. Shared by its connections; the
/// settings the admin API can change are swappable without stopping anything.
#[derive(Debug)]
pub struct BdbContext {
    pub uid: u32,
    pub directory: Directory,
    upstream: ArcSwap<Upstream>,
    /// 0 means unlimited.
    max_connections: AtomicUsize,
    /// Connections open right now (counted at accept, including refused ones).
    pub connections: AtomicUsize,
    /// Authenticated connections, for targeted disconnects.
    pub sessions: Sessions,
    /// Counters for `/metrics`.
    pub stats: crate::metrics::BdbStats,
    /// How long a new connection may stay unauthenticated (zero: no limit), in ms.
    auth_timeout_ms: std::sync::atomic::AtomicU64,
    /// Idle upstream connections, reused by the next clients.
    pub pool: pool::Pool,
    /// Upstream connections shared by the clients of a rule for stateless commands.
    pub lanes: lane::Lanes,
    /// turnstile's users on the upstream, which client sessions log in as.
    pub users: users::UpstreamUsers,
    /// Reply bytes queued for this database's clients of those connections (bounded
    /// by `proxy.client_output_buffer_total_mb`), and its clients disconnected for
    /// their output limits.
    pub lane_replies: std::sync::Arc<mailbox::Backlog>,
    /// Some: new connections must speak TLS with this configuration.
    tls: arc_swap::ArcSwapOption<rustls::ServerConfig>,
    /// The bound on unauthenticated connections, shared with the other databases.
    admission: ArcSwap<admission::Admission>,
    /// For a Sentinel-managed upstream: waiting for the primary, and its counters.
    pub failover: std::sync::Arc<failover::Failover>,
    /// Stops the task following the Sentinel-managed primary (a new one starts when
    /// the upstream changes).
    watcher: std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>,
}

impl Drop for BdbContext {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            w.cancel();
        }
    }
}

impl BdbContext {
    /// A database whose upstream users get a fresh secret (tests, tools); see
    /// [`Self::with_secret`].
    pub fn new(uid: u32, directory: Directory, upstream: Upstream, max_connections: usize) -> Self {
        Self::with_secret(uid, directory, upstream, max_connections, Secret::random())
    }

    /// A database whose upstream users' names and passwords come from `secret`
    /// (the store's, so that they survive restarts and are shared by a fleet).
    pub fn with_secret(
        uid: u32,
        directory: Directory,
        upstream: Upstream,
        max_connections: usize,
        secret: Secret,
    ) -> Self {
        let failover = std::sync::Arc::new(failover::Failover::default());
        if upstream.sentinel.is_some() {
            failover.unknown();
        }
        Self {
            uid,
            directory,
            upstream: ArcSwap::from_pointee(upstream),
            max_connections: AtomicUsize::new(max_connections),
            connections: AtomicUsize::new(0),
            sessions: Sessions::default(),
            stats: crate::metrics::BdbStats::default(),
            auth_timeout_ms: std::sync::atomic::AtomicU64::new(0),
            pool: pool::Pool::default(),
            lanes: lane::Lanes::new(std::sync::Arc::clone(&failover)),
            users: users::UpstreamUsers::new(uid, secret),
            lane_replies: Default::default(),
            tls: arc_swap::ArcSwapOption::empty(),
            admission: ArcSwap::new(admission::Admission::unlimited()),
            failover,
            watcher: std::sync::Mutex::new(None),
        }
    }

    /// Serves TLS (`Some`) or plain TCP (`None`) to connections accepted from now on.
    pub fn set_tls(&self, config: Option<std::sync::Arc<rustls::ServerConfig>>) {
        self.tls.store(config);
    }

    /// Whether new connections get TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.load().is_some()
    }

    /// The acceptor for a new connection, if the database serves TLS.
    pub fn tls_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.load_full().map(tokio_rustls::TlsAcceptor::from)
    }

    /// The upstream new connections go to.
    pub fn upstream(&self) -> arc_swap::Guard<std::sync::Arc<Upstream>> {
        self.upstream.load()
    }

    /// The upstream new connections go to, as an owned handle (to hold across
    /// `.await`, and to tell which upstream a pooled connection belongs to).
    pub fn upstream_full(&self) -> std::sync::Arc<Upstream> {
        self.upstream.load_full()
    }

    /// Changes the upstream for connections opened from now on; idle connections
    /// to the old one are closed. The same Sentinel-managed upstream again (another
    /// of the database's settings changed) keeps the primary it follows.
    pub fn set_upstream(self: &std::sync::Arc<Self>, upstream: Upstream) {
        let old = self.upstream_full();
        if upstream.sentinel.is_some() && old.same_as(&upstream) {
            return;
        }
        let sentinel = upstream.sentinel.is_some();
        let upstream = std::sync::Arc::new(upstream);
        self.upstream.store(std::sync::Arc::clone(&upstream));
        self.pool.sweep(&upstream);
        // Connections to a Sentinel-managed node end with it; a fixed upstream's
        // connections carry on as before (they were opened with what was current).
        if old.sentinel.is_some() {
            old.retired.cancel();
        }
        if sentinel {
            self.failover.unknown();
            self.stop_watching();
            self.watch_upstream();
        } else {
            self.stop_watching();
        }
    }

    /// Installs `node`, a verified primary of the Sentinel-managed upstream, for
    /// new connections; those to the previous one end (see [`Upstream::retired`]).
    pub fn install_primary(&self, node: Upstream) {
        let old = self.upstream_full();
        let node = std::sync::Arc::new(node);
        self.upstream.store(std::sync::Arc::clone(&node));
        self.pool.sweep(&node);
        old.retired.cancel();
        let from = if old.address.is_empty() || old.sentinel.is_none() { "" } else { old.address.as_str() };
        tracing::info!(bdb = self.uid, from, to = %node.address, "upstream primary installed");
        self.failover.installed(from, &node.address);
    }

    /// Starts following the primary, if the upstream is Sentinel-managed and no
    /// watcher runs yet.
    pub fn watch_upstream(self: &std::sync::Arc<Self>) {
        let upstream = self.upstream_full();
        if upstream.sentinel.is_none() {
            return;
        }
        let mut w = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if w.as_ref().is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        let stop = tokio_util::sync::CancellationToken::new();
        *w = Some(stop.clone());
        sentinel::watch::spawn(std::sync::Arc::downgrade(self), upstream, stop);
    }

    fn stop_watching(&self) {
        if let Some(w) = self.watcher.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.cancel();
        }
    }

    /// The upstream a new connection goes to: at once for a fixed upstream or a
    /// verified primary; during a failover, the next verified primary, waited for
    /// at most the configured bound ([`UpstreamError::NoPrimary`] then).
    pub async fn primary(&self) -> Result<std::sync::Arc<Upstream>, UpstreamError> {
        let up = self.upstream_full();
        if up.is_current() {
            return Ok(up);
        }
        self.failover.nudge();
        let deadline = tokio::time::Instant::now() + up.pool.failover.wait;
        let mut installed = self.failover.subscribe();
        loop {
            let up = self.upstream_full();
            if up.is_current() {
                return Ok(up);
            }
            if tokio::time::timeout_at(deadline, installed.changed()).await.is_err() {
                return Err(UpstreamError::NoPrimary);
            }
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// The deadline for a new connection's first successful AUTH, if any.
    pub fn auth_timeout(&self) -> Option<std::time::Duration> {
        match self.auth_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    pub fn set_auth_timeout(&self, timeout: std::time::Duration) {
        self.auth_timeout_ms.store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// Bounds the unauthenticated connections of this database by `a` (shared).
    pub fn set_admission(&self, a: std::sync::Arc<admission::Admission>) {
        self.admission.store(a);
    }

    pub fn admission(&self) -> std::sync::Arc<admission::Admission> {
        self.admission.load_full()
    }

    pub fn set_max_connections(&self, n: usize) {
        self.max_connections.store(n, Ordering::Relaxed);
    }
}
