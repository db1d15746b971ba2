//! The data path: one listener per database, and per connection a client half
//! (framing, AUTH, forwarding) and a relay half (replies, in order).

mod acl;
pub mod admission;
mod client;
pub mod handshake;
mod hello;
pub mod io;
pub mod lane;
pub mod listener;
mod local;
mod mailbox;
mod manage;
mod plan;
pub mod pool;
pub mod registry;
mod relay;
mod route;
pub mod session;
pub mod upstream;
pub mod users;

use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::auth::Directory;
use crate::authz::Secret;
pub use handshake::UpstreamError;
pub use mailbox::OutputLimits;
pub use pool::PoolLimits;
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
    /// by `proxy.client_output_buffer_total_mb`).
    pub lane_replies: std::sync::Arc<AtomicUsize>,
    /// Some: new connections must speak TLS with this configuration.
    tls: arc_swap::ArcSwapOption<rustls::ServerConfig>,
    /// The bound on unauthenticated connections, shared with the other databases.
    admission: ArcSwap<admission::Admission>,
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
            lanes: lane::Lanes::default(),
            users: users::UpstreamUsers::new(uid, secret),
            lane_replies: Default::default(),
            tls: arc_swap::ArcSwapOption::empty(),
            admission: ArcSwap::new(admission::Admission::unlimited()),
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
    /// to the old one are closed.
    pub fn set_upstream(&self, upstream: Upstream) {
        let upstream = std::sync::Arc::new(upstream);
        self.upstream.store(std::sync::Arc::clone(&upstream));
        self.pool.sweep(&upstream);
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
