//! This node in a fleet sharing a Redis store: catching up with changes other nodes
//! commit (pub/sub, with a poll as the safety net), the heartbeat in the node
//! registry, waiting for the other live nodes to apply a change before its 200, and
//! the store's health as `/ready` and `/metrics` report it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{MutexGuard, Notify};

use super::error::{Error, Result};
use super::{Control, StartError, time};
use crate::store::{Loaded, NodeRecord, Revision, State, Store, StoreError};

/// The version poll: a change whose notification was lost is applied within this.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// How often a node writes its registry record.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// How often this node's failed AUTHs per address join the fleet's counts.
pub const THROTTLE_SHARE_EVERY: Duration = Duration::from_millis(250);

/// A node not heard from for this long is `down`: writers stop waiting for it.
pub const LIVE_FOR: Duration = Duration::from_secs(3);

/// Default bound on a writer's wait for the other nodes.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);

/// The store as this node last found it.
pub struct FleetState {
    shared: bool,
    addr: String,
    confirm_timeout: Duration,
    /// A node not heard from for this long is removed from the registry.
    forget_after: Duration,
    /// Unix milliseconds of this node's last sweep of the registry.
    last_sweep_ms: AtomicU64,
    /// 0 until registered (a node started while the store is down registers later).
    node_uid: AtomicU32,
    up: AtomicBool,
    /// Unix milliseconds of the last successful contact with the store.
    last_sync_ms: AtomicU64,
    /// The revision number applied here.
    applied: AtomicU64,
    wake: Arc<Notify>,
    /// The newest state applied, for the local cache writer (which coalesces: an
    /// fsync per change on every node must not delay the change itself).
    to_cache: tokio::sync::watch::Sender<Option<Arc<Loaded>>>,
    /// `change_unconfirmed` events waiting for the next store write (bounded).
    pub(super) unconfirmed: std::sync::Mutex<Vec<crate::store::events::Event>>,
}

impl FleetState {
    pub fn new(
        shared: bool,
        addr: String,
        confirm_timeout: Duration,
        forget_after: Duration,
        up: bool,
    ) -> Self {
        Self {
            shared,
            addr,
            confirm_timeout,
            forget_after,
            last_sweep_ms: AtomicU64::new(0),
            node_uid: AtomicU32::new(0),
            up: AtomicBool::new(up),
            last_sync_ms: AtomicU64::new(if up { time::now_ms() } else { 0 }),
            applied: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            to_cache: tokio::sync::watch::Sender::new(None),
            unconfirmed: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Puts events back in the queue for the next write (oldest dropped past 100).
    pub(super) fn requeue(&self, mut events: Vec<crate::store::events::Event>) {
        let mut q = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        events.append(&mut q);
        events.sort_by_key(|e| e.time_ms);
        let excess = events.len().saturating_sub(100);
        events.drain(..excess);
        *q = events;
    }

    /// Queues `state` at `revision` for the local cache.
    pub(super) fn keep(&self, state: &State, revision: Revision) {
        if self.shared {
            self.to_cache.send_replace(Some(Arc::new(Loaded { state: state.clone(), revision })));
        }
    }

    pub(super) fn store_ok(&self, at: Revision) {
        self.up.store(true, Ordering::Relaxed);
        self.last_sync_ms.store(time::now_ms(), Ordering::Relaxed);
        self.applied.store(at.number, Ordering::Relaxed);
    }

    pub(super) fn store_failed(&self) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!("the store is unreachable: serving the last known state, refusing changes");
        }
    }

    pub fn node_uid(&self) -> Option<u32> {
        Some(self.node_uid.load(Ordering::Relaxed)).filter(|u| *u != 0)
    }
}

/// What `/metrics` and `/ready` say of the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreStatus {
    pub shared: bool,
    pub up: bool,
    pub revision: u64,
    /// Seconds since the store last answered (None: never).
    pub since_sync_secs: Option<f64>,
    pub node_uid: Option<u32>,
}

/// A node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub uid: u32,
    pub addr: String,
    /// `active`, `stale` (alive but behind the store) or `down` (no heartbeat).
    pub status: &'static str,
    pub applied_version: u64,
    /// ISO 8601 time of its last heartbeat.
    pub last_seen: String,
}

/// Reads the state to start from: the store's, or, with a shared store that cannot
/// be reached, this node's cache of it (the bool says so).
pub(super) async fn load_at_start(
    store: &Arc<dyn Store>,
) -> std::result::Result<(Option<Loaded>, bool), StartError> {
    let s = Arc::clone(store);
    let loaded = tokio::task::spawn_blocking(move || s.load())
        .await
        .map_err(|e| StartError::Invalid(e.to_string()))?;
    match loaded {
        Err(StoreError::Unavailable(why)) if store.fleet().is_some() => {
            let s = Arc::clone(store);
            let cached = tokio::task::spawn_blocking(move || s.fleet().map(|f| f.cached()).transpose())
                .await
                .map_err(|e| StartError::Invalid(e.to_string()))??
                .flatten();
            match cached {
                Some(c) => {
                    tracing::warn!(error = %why, revision = c.revision.number, "the store is unreachable: starting from the local cache");
                    Ok((Some(c), true))
                }
                None => Err(StartError::Store(StoreError::Unavailable(format!(
                    "{why}, and there is no local cache to start from"
                )))),
            }
        }
        other => Ok((other?, false)),
    }
}

impl Control {
    pub fn store_status(&self) -> StoreStatus {
        let f = &self.inner.fleet;
        let last = f.last_sync_ms.load(Ordering::Relaxed);
        StoreStatus {
            shared: f.shared,
            up: f.up.load(Ordering::Relaxed),
            revision: self.inner.revision.lock().unwrap_or_else(|p| p.into_inner()).number,
            since_sync_secs: (last != 0).then(|| time::now_ms().saturating_sub(last) as f64 / 1000.0),
            node_uid: f.node_uid(),
        }
    }

    /// This node's uid in the fleet (events name it), if it has one.
    pub fn node_uid(&self) -> Option<u32> {
        self.inner.fleet.node_uid()
    }

    /// Brings `guard` up to the store's revision (one round trip when nothing
    /// changed). Called with the writers' lock held.
    pub(super) async fn catch_up(&self, guard: &mut MutexGuard<'_, State>) -> Result<()> {
        let current = *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner());
        let store = Arc::clone(&self.inner.store);
        let head = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.head())).await.ok().flatten();
        let head = match head {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                self.inner.fleet.store_failed();
                return Err(super::store_error_because(&e.to_string()));
            }
            None => {
                self.inner.fleet.store_failed();
                return Err(super::store_error());
            }
        };
        if head == current {
            self.inner.fleet.store_ok(head);
            return Ok(());
        }
        let store = Arc::clone(&self.inner.store);
        let loaded = tokio::task::spawn_blocking(move || store.load()).await.ok();
        let loaded = match loaded {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read the store");
                self.inner.fleet.store_failed();
                return Err(super::store_error_because(&e.to_string()));
            }
            None => return Err(super::store_error()),
        };
        let Some(loaded) = loaded else {
            // The store lost everything (a restart without persistence): this node
            // writes back the state it knows, so the fleet carries on with it.
            tracing::warn!("the store is empty: writing back this node's last known state");
            *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner()) = Revision::EMPTY;
            let next = (**guard).clone();
            return self.commit(guard, next).await;
        };
        let revision = loaded.revision;
        tracing::info!(from = current.number, to = revision.number, "applying a change from the store");
        *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner()) = revision;
        self.inner.snapshot.store(Arc::new(loaded.state.clone()));
        let before = std::mem::replace(&mut **guard, loaded.state);
        let after = (**guard).clone();
        self.apply(&before, &after).await;
        self.inner.fleet.store_ok(revision);
        self.report_applied();
        self.inner.fleet.keep(&after, revision);
        Ok(())
    }

    fn record_of(&self, uid: u32) -> NodeRecord {
        let rev = *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner());
        NodeRecord {
            uid,
            addr: self.inner.fleet.addr.clone(),
            applied: rev.number,
            hash: rev.hash_hex(),
            last_seen_ms: time::now_ms(),
        }
    }

    /// Tells the registry, off the caller's path, which revision this node applies.
    pub(super) fn report_applied(&self) {
        let Some(uid) = self.node_uid() else { return };
        let record = self.record_of(uid);
        let store = Arc::clone(&self.inner.store);
        tokio::task::spawn_blocking(move || {
            if let Some(f) = store.fleet() {
                let _ = f.report(&record);
            }
        });
    }

    /// Waits, at most the confirm timeout, until every other live node applies the
    /// revision this node is at. Returns the nodes that did not (named in the log
    /// and shown `stale` by `GET /v1/nodes`).
    pub(super) async fn confirm(&self) -> Vec<u32> {
        if !self.inner.fleet.shared {
            return Vec::new();
        }
        let target = self.inner.revision.lock().unwrap_or_else(|p| p.into_inner()).number;
        let me = self.node_uid();
        let deadline = Instant::now() + self.inner.fleet.confirm_timeout;
        loop {
            let store = Arc::clone(&self.inner.store);
            let nodes = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.nodes()))
                .await
                .ok()
                .flatten()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let now = time::now_ms();
            let behind: Vec<u32> = nodes
                .iter()
                .filter(|n| Some(n.uid) != me && live(n, now) && n.applied < target)
                .map(|n| n.uid)
                .collect();
            if behind.is_empty() {
                return behind;
            }
            if Instant::now() >= deadline {
                tracing::warn!(nodes = ?behind, revision = target, "nodes did not confirm the change in time");
                return behind;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// `GET /v1/nodes`: every registered node (just this one with a file store).
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        let head = self.store_status().revision;
        if !self.inner.fleet.shared {
            return Ok(vec![view(&self.record_of(1), head)]);
        }
        let store = Arc::clone(&self.inner.store);
        let nodes = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.nodes()))
            .await
            .ok()
            .flatten()
            .ok_or_else(super::store_error)?
            .map_err(|_| super::store_error())?;
        Ok(nodes.iter().map(|n| view(n, head)).collect())
    }

    /// Starts the subscriber, the poll and the heartbeat (shared stores only).
    pub(super) fn spawn_fleet(&self) {
        if !self.inner.fleet.shared {
            return;
        }
        let shutdown = self.inner.endpoints.shutdown().clone();
        self.inner.directory.throttle().share();
        // The subscriber blocks on its socket: a thread of its own, holding the
        // control plane weakly and checking for shutdown every second.
        let weak = Arc::downgrade(&self.inner);
        let stop = shutdown.clone();
        let _ = std::thread::Builder::new().name("store-watch".into()).spawn(move || {
            while !stop.is_cancelled() {
                let Some(inner) = weak.upgrade() else { return };
                let store = Arc::clone(&inner.store);
                drop(inner);
                let Some(f) = store.fleet() else { return };
                let stopped = || stop.is_cancelled() || weak.strong_count() == 0;
                let wake = || {
                    if let Some(i) = weak.upgrade() {
                        i.fleet.wake.notify_one();
                    }
                };
                if let Err(e) = f.watch(&stopped, &wake) {
                    tracing::debug!(error = %e, "change notifications lost; subscribing again");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let stop = shutdown.clone();
        self.inner.endpoints.tracker().spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let wake = Arc::clone(&inner.fleet.wake);
                Control { inner }.poll().await;
                // A notification that came during the poll left a permit: not lost.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        });
        let mut cached = self.inner.fleet.to_cache.subscribe();
        // What start-up loaded is cached too.
        cached.mark_changed();
        let store = Arc::clone(&self.inner.store);
        let stop = shutdown.clone();
        self.inner.endpoints.tracker().spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    r = cached.changed() => if r.is_err() { return },
                }
                let latest = cached.borrow_and_update().clone();
                if let Some(l) = latest {
                    let store = Arc::clone(&store);
                    let written =
                        tokio::task::spawn_blocking(move || store.fleet().map(|f| f.cache(&l))).await;
                    if let Ok(Some(Err(e))) = written {
                        tracing::warn!(error = %e, "could not update the local cache of the state");
                    }
                }
                if stop.is_cancelled() {
                    return;
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let stop = shutdown.clone();
        self.inner.endpoints.tracker().spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(THROTTLE_SHARE_EVERY) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                Control { inner }.share_throttle().await;
            }
        });
        let weak = Arc::downgrade(&self.inner);
        self.inner.endpoints.tracker().spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                Control { inner }.heartbeat().await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                }
            }
        });
    }

    /// Checks the store's revision without the writers' lock; takes it only to
    /// apply a change.
    async fn poll(&self) {
        let store = Arc::clone(&self.inner.store);
        let head = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.head())).await.ok().flatten();
        match head {
            Some(Ok(h)) => {
                let current = *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner());
                if h == current {
                    self.inner.fleet.store_ok(h);
                    return;
                }
                let mut guard = self.inner.state.lock().await;
                if let Err(e) = self.catch_up(&mut guard).await {
                    tracing::debug!(error = %e, "could not catch up with the store");
                }
            }
            _ => self.inner.fleet.store_failed(),
        }
    }

    /// Adds this node's failed AUTHs per address to the fleet's counts (one round
    /// trip per period, whatever the AUTH rate) and blocks here the addresses the
    /// fleet as a whole has seen fail too often: spreading a brute force over N
    /// nodes gives it no N-fold budget. A store that cannot be reached leaves each
    /// node's own throttle.
    async fn share_throttle(&self) {
        let throttle = self.inner.directory.throttle();
        if throttle.policy().failures == 0 {
            return;
        }
        let counts = throttle.take_unshared();
        if counts.is_empty() {
            return;
        }
        let window = throttle.policy().window.as_secs();
        let store = Arc::clone(&self.inner.store);
        let sent = counts.clone();
        let totals =
            tokio::task::spawn_blocking(move || store.fleet().map(|f| f.auth_failures(&sent, window)))
                .await
                .ok()
                .flatten();
        if let Some(Ok(totals)) = totals {
            for ((ip, _), total) in counts.iter().zip(totals) {
                throttle.block_for_fleet(*ip, total);
            }
        }
    }

    /// Registers this node if it has no uid yet, then writes its record.
    async fn heartbeat(&self) {
        let f = &self.inner.fleet;
        if f.node_uid().is_none() {
            let store = Arc::clone(&self.inner.store);
            let uid = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.register()))
                .await
                .ok()
                .flatten()
                .and_then(|r| r.ok());
            match uid {
                Some(uid) => {
                    f.node_uid.store(uid, Ordering::Relaxed);
                    tracing::info!(node = uid, "registered in the fleet");
                }
                None => return,
            }
        }
        self.report_applied();
        self.forget_gone().await;
        let store = Arc::clone(&self.inner.store);
        let logins = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.last_logins())).await;
        if let Ok(Some(Ok(logins))) = logins {
            // Only users that exist: a deleted user's entry must not come back.
            let users = self.snapshot();
            let known: Vec<(u32, u64)> =
                logins.into_iter().filter(|(u, _)| users.users.contains_key(u)).collect();
            self.merge_logins(&known);
        }
    }
}

impl Control {
    /// Removes from the registry the nodes not heard from for `forget_after`: a node
    /// stopped for good (scaled down, replaced) is shown `down` meanwhile, then
    /// leaves `GET /v1/nodes`. Any live node may do it (the removal is atomic with
    /// the check, so a node that came back is kept); each sweeps at most every
    /// tenth of the period, so the fleet does not scan the registry on every
    /// heartbeat.
    async fn forget_gone(&self) {
        let f = &self.inner.fleet;
        let now = time::now_ms();
        let period = f.forget_after.as_millis() as u64;
        if now.saturating_sub(f.last_sweep_ms.load(Ordering::Relaxed))
            < (period / 10).max(HEARTBEAT_EVERY.as_millis() as u64)
        {
            return;
        }
        f.last_sweep_ms.store(now, Ordering::Relaxed);
        let store = Arc::clone(&self.inner.store);
        let cutoff = now.saturating_sub(period);
        let gone = tokio::task::spawn_blocking(move || store.fleet().map(|f| f.forget(cutoff))).await;
        if let Ok(Some(Ok(gone))) = gone
            && !gone.is_empty()
        {
            tracing::info!(nodes = ?gone, "removed nodes without a heartbeat from the registry");
        }
    }
}

fn live(n: &NodeRecord, now_ms: u64) -> bool {
    now_ms.saturating_sub(n.last_seen_ms) <= LIVE_FOR.as_millis() as u64
}

fn view(n: &NodeRecord, head: u64) -> NodeView {
    let status = if !live(n, time::now_ms()) {
        "down"
    } else if n.applied < head {
        "stale"
    } else {
        "active"
    };
    NodeView {
        uid: n.uid,
        addr: n.addr.clone(),
        status,
        applied_version: n.applied,
        last_seen: time::iso8601(n.last_seen_ms / 1000),
    }
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        StartError::Invalid(e.description)
    }
}
