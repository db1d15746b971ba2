//! Wiring: a validated config becomes a store, a control plane with its database
//! listeners, and the admin API; then graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::config::Validated;
use crate::control::{Control, DefaultCert, Settings, StartError};
use crate::store::FileStore;

/// Everything bound and the databases already serving; the admin API not yet.
pub struct Running {
    pub control: Control,
    admin: std::net::TcpListener,
    pub admin_addr: SocketAddr,
    tls: Option<RustlsConfig>,
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

/// Opens the store, starts the control plane (which starts every database
/// listener) and binds the admin API. `admin_password` is `TURNSTILE_ADMIN_PASSWORD`.
pub async fn start(
    config: &Validated,
    admin_password: Option<Zeroizing<String>>,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    let admin = std::net::TcpListener::bind(config.admin_listen)
        .map_err(|source| Error::AdminBind { addr: config.admin_listen, source })?;
    admin.set_nonblocking(true).map_err(|source| Error::AdminBind { addr: config.admin_listen, source })?;
    let admin_addr =
        admin.local_addr().map_err(|source| Error::AdminBind { addr: config.admin_listen, source })?;
    let store = FileStore::open(&config.config.store.dir)?;
    let tls = if config.config.admin.tls {
        let a = &config.config.admin;
        Some(
            crate::admin::tls::config(store.dir(), a.cert.as_deref(), a.key.as_deref())
                .await
                .map_err(Error::Tls)?,
        )
    } else {
        None
    };
    let a = &config.config.admin;
    let default_cert =
        DefaultCert { dir: store.dir().to_path_buf(), cert: a.cert.clone(), key: a.key.clone() };
    let tracker = TaskTracker::new();
    let settings = Settings {
        default_cert: Some(default_cert),
        hash_params: config.hash_params,
        verify: config.verify.clone(),
        admin_name: config.config.bootstrap.admin_name.clone(),
        admin_email: config.config.bootstrap.admin_email.clone(),
        admin_password,
        bdbs: config.bdbs.clone(),
        default_bind_host: config.admin_listen.ip().to_string(),
        connect_timeout: Duration::from_millis(config.config.proxy.upstream_connect_timeout_ms),
        auth_timeout: Duration::from_secs(config.config.proxy.auth_timeout_secs),
        pool: config.config.proxy.pool_limits(),
        event_log_capacity: config.config.admin.event_log_capacity,
        metrics_auth: config.config.admin.metrics_auth,
    };
    let control = Control::start(settings, Arc::new(store), shutdown.clone(), tracker.clone()).await?;
    Ok(Running { control, admin, admin_addr, tls, tracker, shutdown, grace: config.shutdown_grace })
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
        let served = match self.tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                let shutdown = self.shutdown.clone();
                let grace = self.grace;
                tokio::spawn(async move {
                    shutdown.cancelled().await;
                    h.graceful_shutdown(Some(grace));
                });
                match axum_server::from_tcp_rustls(self.admin, tls) {
                    Ok(server) => server.handle(handle).serve(app.into_make_service()).await,
                    Err(e) => Err(e),
                }
            }
            None => match tokio::net::TcpListener::from_std(self.admin) {
                Ok(l) => {
                    axum::serve(l, app).with_graceful_shutdown(self.shutdown.clone().cancelled_owned()).await
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "admin API stopped");
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
