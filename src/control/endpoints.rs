//! The database listeners that are running, started and stopped live.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{Error, Kind, Result};
use super::{Control, access_of};
use crate::proxy::{BdbContext, listener};
use crate::store::state::BdbRecord;

struct Running {
    ctx: Arc<BdbContext>,
    /// Ends the accept loop only.
    stop: CancellationToken,
    /// The accept loop; it owns the listening socket, so awaiting it means the port
    /// is free again.
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

impl Running {
    async fn halt(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub struct Endpoints {
    map: DashMap<u32, Running>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Endpoints {
    pub fn new(shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        Self { map: DashMap::new(), shutdown, tracker }
    }

    /// Fires when the process is shutting down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    pub fn addrs(&self) -> Vec<(u32, SocketAddr)> {
        let mut v: Vec<_> = self.map.iter().map(|e| (*e.key(), e.addr)).collect();
        v.sort_unstable();
        v
    }

    pub fn addr(&self, uid: u32) -> Option<SocketAddr> {
        self.map.get(&uid).map(|r| r.addr)
    }

    pub fn ctx(&self, uid: u32) -> Option<Arc<BdbContext>> {
        self.map.get(&uid).map(|r| Arc::clone(&r.ctx))
    }

    pub fn all(&self) -> Vec<(u32, Arc<BdbContext>)> {
        self.map.iter().map(|e| (*e.key(), Arc::clone(&e.ctx))).collect()
    }

    /// Serves `ctx` on `listener`, replacing (and stopping the accept loop of) any
    /// listener the database had; its connections carry on. Returns once the old
    /// address is released.
    async fn run(&self, ctx: Arc<BdbContext>, listener: TcpListener) -> Result<()> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(Kind::NotAcceptable, "port_unavailable", e.to_string()))?;
        let stop = self.shutdown.child_token();
        let uid = ctx.uid;
        let task = self.tracker.spawn(listener::serve_until(
            listener,
            Arc::clone(&ctx),
            stop.clone(),
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
        let tls = ctx.tls_enabled();
        tracing::info!(bdb = uid, listen = %addr, tls, upstream = %ctx.upstream().address, "database endpoint ready");
        if let Some(old) = self.map.insert(uid, Running { ctx, stop, task, addr }) {
            old.halt().await;
        }
        Ok(())
    }

    /// Stops a database: no new connections, every open one is closed, and the port
    /// is released before this returns.
    pub async fn stop(&self, uid: u32) {
        if let Some((_, r)) = self.map.remove(&uid) {
            let ctx = Arc::clone(&r.ctx);
            r.halt().await;
            ctx.sessions.close_all();
        }
    }
}

/// Binds `listen` (`host:port`), or explains in RS's terms why not.
pub async fn bind(listen: &str) -> Result<TcpListener> {
    crate::proxy::listener::bind(listen).await.map_err(|e| {
        Error::new(Kind::NotAcceptable, "port_unavailable", format!("cannot listen on {listen}: {e}"))
    })
}

impl Control {
    /// Starts serving a database on an already bound listener.
    pub(super) async fn start_endpoint(&self, record: &BdbRecord, listener: TcpListener) -> Result<()> {
        let upstream = self.upstream_of(record)?;
        let tls = self.listener_tls(record)?;
        let d = &self.inner.directory;
        d.set_bdb(record.uid, access_of(record));
        let ctx = match self.inner.endpoints.ctx(record.uid) {
            Some(ctx) => ctx,
            None => Arc::new(BdbContext::with_secret(
                record.uid,
                d.clone(),
                upstream,
                record.max_connections as usize,
                self.inner.secret.clone(),
            )),
        };
        ctx.set_auth_timeout(self.inner.auth_timeout);
        ctx.set_admission(Arc::clone(&self.inner.admission));
        ctx.set_tls(tls);
        self.inner.endpoints.run(ctx, listener).await
    }
}
