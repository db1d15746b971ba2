//! Wiring: a validated config becomes a directory, bound listeners, and a running
//! server that shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{BdbAccess, Directory, SetChange, SetId};
use crate::config::Validated;
use crate::proxy::{BdbContext, listener};

/// Startup failed after validation: a port could not be bound, or bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bdbs uid {uid}: cannot listen on {addr}: {source}")]
    Bind { uid: u32, addr: SocketAddr, source: std::io::Error },
    #[error("bdbs uid {uid}: seeding the default password failed: {why}")]
    Seed { uid: u32, why: String },
}

/// Listeners bound and the directory populated; nothing is served yet.
pub struct Bound {
    pub directory: Directory,
    pub endpoints: Vec<(Arc<BdbContext>, TcpListener)>,
    pub shutdown_grace: Duration,
}

impl Bound {
    /// The address each database endpoint actually listens on, by uid.
    pub fn local_addrs(&self) -> Vec<(u32, SocketAddr)> {
        self.endpoints.iter().filter_map(|(c, l)| l.local_addr().ok().map(|a| (c.uid, a))).collect()
    }
}

/// Builds the directory from the config and binds every listener.
pub async fn bind(config: &Validated) -> Result<Bound, StartError> {
    let directory = Directory::new(config.hash_params, config.verify.clone());
    let mut endpoints = Vec::new();
    for b in &config.bdbs {
        directory.set_bdb(b.uid, BdbAccess { default_user: b.default_user, roles: Vec::new() });
        if let Some(pw) = &b.default_password {
            directory
                .change(&SetId::BdbDefault(b.uid), SetChange::Replace, pw.as_bytes())
                .await
                .map_err(|e| StartError::Seed { uid: b.uid, why: e.to_string() })?;
        }
        let l = TcpListener::bind(b.listen).await.map_err(|source| StartError::Bind {
            uid: b.uid,
            addr: b.listen,
            source,
        })?;
        let ctx = BdbContext::new(b.uid, directory.clone(), b.upstream.clone(), b.max_connections);
        endpoints.push((Arc::new(ctx), l));
    }
    Ok(Bound { directory, endpoints, shutdown_grace: config.shutdown_grace })
}

/// Serves every endpoint until `shutdown`, then lets open connections finish what
/// is in flight for up to the grace period.
pub async fn run(bound: Bound, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for (ctx, l) in bound.endpoints {
        tracing::info!(bdb = ctx.uid, listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), upstream = %ctx.upstream.address, "database endpoint ready");
        accept_loops.push(tokio::spawn(listener::serve(l, ctx, shutdown.clone(), tracker.clone())));
    }
    shutdown.cancelled().await;
    for a in accept_loops {
        let _ = a.await;
    }
    tracker.close();
    tracing::info!(connections = tracker.len(), "shutting down: finishing in-flight requests");
    if tokio::time::timeout(bound.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!(remaining = tracker.len(), "grace period over; closing remaining connections");
    }
}
