//! Wiring: a validated config becomes a store, a control plane with its database
//! listeners, and the admin API; then graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::config::Validated;
use crate::control::{Control, DefaultCert, Settings, StartError};
use crate::store::redis::RedisOptions;
use crate::store::{FileStore, RedisStore, Store};

/// Everything bound and the databases already serving; the admin API not yet.
pub struct Running {
    pub control: Control,
    admin: std::net::TcpListener,
    pub admin_addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: crate::admin::serve::Limits,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    grace: Duration,
}

/// Why start-up failed (config problems are caught before, by validation).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Control(#[from] StartError),
    #[error("admin.listen: cannot listen on {addr}: {source}")]
    AdminBind { addr: SocketAddr, source: std::io::Error },
    #[error("admin TLS certificate: {0}")]
    Tls(std::io::Error),
    #[error("store.dir: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl Error {
    /// A configuration the upstream cannot serve (its service credential may not
    /// manage turnstile's users, or it refuses a rule): the operator must change
    /// the configuration, as for an invalid file.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Control(StartError::Unmanageable(_)))
    }
}

/// Opens the store, starts the control plane (which starts every database
/// listener) and binds the admin API. `admin_password` is `TURNSTILE_ADMIN_PASSWORD`.
pub async fn start(
    config: &Validated,
    admin_password: Option<Zeroizing<String>>,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    let admin = crate::proxy::listener::bind_addr(config.admin_listen)
        .and_then(|l| l.into_std())
        .map_err(|source| Error::AdminBind { addr: config.admin_listen, source })?;
    let admin_addr =
        admin.local_addr().map_err(|source| Error::AdminBind { addr: config.admin_listen, source })?;
    let dir = config.config.store.dir.clone();
    let store = open_store(config)?;
    let tls = if config.config.admin.tls {
        let a = &config.config.admin;
        Some(crate::admin::tls::config(&dir, a.cert.as_deref(), a.key.as_deref()).map_err(Error::Tls)?)
    } else {
        None
    };
    let (limits, admission) = connection_bounds(config, crate::descriptors::prepare());
    let a = &config.config.admin;
    let default_cert = DefaultCert { dir: dir.clone(), cert: a.cert.clone(), key: a.key.clone() };
    let tracker = TaskTracker::new();
    let settings = Settings {
        default_cert: Some(default_cert),
        hash_params: config.hash_params,
        verify: config.verify.clone(),
        admin_name: config.config.bootstrap.admin_name.clone(),
        admin_email: config.config.bootstrap.admin_email.clone(),
        admin_password,
        bdbs: config.bdbs.clone(),
        credential_envs: config.credential_envs.clone(),
        default_bind_host: config.admin_listen.ip().to_string(),
        connect_timeout: Duration::from_millis(config.config.proxy.upstream_connect_timeout_ms),
        auth_timeout: Duration::from_secs(config.config.proxy.auth_timeout_secs),
        pool: config.config.proxy.pool_limits(),
        event_log_capacity: config.config.admin.event_log_capacity,
        metrics_auth: config.config.admin.metrics_auth,
        admission,
        node_addr: admin_addr.to_string(),
        confirm_timeout: Duration::from_millis(config.config.store.confirm_timeout_ms),
        node_forget: Duration::from_secs(config.config.store.node_forget_secs),
    };
    let control = Control::start(settings, store, shutdown.clone(), tracker.clone()).await?;
    Ok(Running { control, admin, admin_addr, tls, limits, tracker, shutdown, grace: config.shutdown_grace })
}

/// The file store, or with `[store] redis` the shared store (its cache in `dir`).
pub fn open_store(config: &Validated) -> Result<Arc<dyn Store>, Error> {
    let s = &config.config.store;
    Ok(match &s.redis {
        None => Arc::new(FileStore::open(&s.dir)?),
        Some(url) => Arc::new(RedisStore::open(RedisOptions {
            url: url.clone(),
            password: config.store_password.clone(),
            key_prefix: s.key_prefix.clone(),
            timeout: Duration::from_millis(s.timeout_ms),
            min_replicas: s.min_replicas,
            cache_dir: s.dir.clone(),
            event_capacity: config.config.admin.event_log_capacity,
            tls: s.tls_ca.clone().map(|ca| crate::store::redis::StoreTls {
                ca,
                client: s.tls_cert.clone().zip(s.tls_key.clone()),
            }),
        })?),
    })
}

/// `turnstile store import`: copies the file store in `from` into the (empty)
/// Redis store the config names. The compare-and-set against the empty revision
/// makes "empty" hold at the moment of the write, not just when checked.
pub fn import_store(config: &Validated, from: &std::path::Path) -> Result<String, String> {
    if config.config.store.redis.is_none() {
        return Err("the config has no [store] redis to import into".into());
    }
    let source = FileStore::open(from).map_err(|e| e.to_string())?;
    let state = source
        .read_state()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} holds no state.json to import", from.display()))?;
    let target = open_store(config).map_err(|e| e.to_string())?;
    match target.commit(&crate::store::Revision::EMPTY, &state) {
        Ok(c) => Ok(format!(
            "imported {} users, {} databases, {} events from {} (store version {})",
            state.users.len(),
            state.bdbs.len(),
            state.events.admin.len() + state.events.security.len(),
            from.display(),
            c.revision.number
        )),
        Err(crate::store::StoreError::Conflict(_)) => {
            Err("the Redis store is not empty; nothing was imported".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The admin API's limits and the bound on unauthenticated database connections,
/// fitted to the open file limit: those two are what a client without credentials
/// can occupy, so together they may take at most three quarters of it (a half for
/// the database ports, a quarter for the admin port). The rest stays for
/// authenticated clients, upstream connections and the store, so a flood on one
/// port never leaves another without descriptors.
fn connection_bounds(
    config: &Validated,
    fd_limit: u64,
) -> (crate::admin::serve::Limits, Arc<crate::proxy::admission::Admission>) {
    let a = &config.config.admin;
    let p = &config.config.proxy;
    let fit = |key: &str, wanted: usize, share: usize| {
        let used = crate::descriptors::cap(wanted, fd_limit, share);
        // 0 means "just the cap"; anything else lowered deserves a word.
        if wanted != 0 && used < wanted {
            tracing::warn!(
                key,
                configured = wanted,
                used,
                fd_limit,
                "bound lowered to fit the open file limit (raise `ulimit -n` to allow more)"
            );
        }
        used
    };
    let limits = crate::admin::serve::Limits {
        max_connections: fit("admin.max_connections", a.max_connections, 4),
        max_connections_per_address: a.max_connections_per_address,
        header_timeout: Duration::from_secs(a.header_timeout_secs),
        idle_timeout: Duration::from_secs(a.idle_timeout_secs),
        tls_handshake_timeout: Duration::from_secs(a.tls_handshake_timeout_secs),
        body_timeout: Duration::from_secs(a.body_timeout_secs),
    };
    let total = fit("proxy.max_unauthenticated_connections", p.max_unauthenticated_connections, 2);
    tracing::info!(
        fd_limit,
        admin_max_connections = limits.max_connections,
        admin_max_connections_per_address = limits.max_connections_per_address,
        max_unauthenticated = total,
        max_unauthenticated_per_address = p.max_unauthenticated_per_address,
        "connection bounds"
    );
    (limits, crate::proxy::admission::Admission::new(total, p.max_unauthenticated_per_address))
}

impl Running {
    /// Database addresses by uid.
    pub fn bdb_addrs(&self) -> Vec<(u32, SocketAddr)> {
        self.control.endpoint_addrs()
    }

    /// Whether the admin API speaks HTTPS.
    pub fn admin_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves the admin API until shutdown, then gives connections the grace period
    /// to finish what is in flight.
    pub async fn run(self) {
        let app = crate::admin::app(self.control.clone());
        match tokio::net::TcpListener::from_std(self.admin) {
            Ok(listener) => {
                let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
                let metrics = self.control.admin_metrics();
                let shutdown = self.shutdown.clone();
                crate::admin::serve::serve(listener, app, tls, self.limits, metrics, shutdown, self.grace)
                    .await
            }
            Err(e) => tracing::error!(error = %e, "admin API stopped"),
        }
        self.shutdown.cancelled().await;
        self.tracker.close();
        tracing::info!(connections = self.tracker.len(), "shutting down: finishing in-flight requests");
        if tokio::time::timeout(self.grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                remaining = self.tracker.len(),
                "grace period over; closing remaining connections"
            );
        }
    }
}
