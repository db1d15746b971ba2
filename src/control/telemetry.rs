//! The control plane's side of observability: readiness, the event log (recorded in
//! the same store write as the change it describes, failed AUTHs flushed from
//! memory), and the admin metrics it owns.

use std::sync::Arc;
use std::time::Duration;

use super::{Control, login::Caller, time};
use crate::auth::SetChange;
use crate::auth::failures::{Drained, FailureKind};
use crate::metrics::AdminMetrics;
use crate::proxy::failover::Switch;
use crate::store::State;
use crate::store::events::Event;

/// How often failed AUTHs waiting in memory are written when no admin change
/// writes them first. One store write per period at most, whatever the AUTH rate.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// Why `GET /ready` says no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("shutting down")]
    ShuttingDown,
    #[error("database endpoints not listening: {0:?}")]
    Unbound(Vec<u32>),
    #[error(
        "the upstream of databases {0:?} refuses to manage turnstile's users with the service credentials"
    )]
    Unmanaged(Vec<u32>),
}

/// The event type of a password change.
pub fn password_event(op: SetChange) -> &'static str {
    match op {
        SetChange::Add => "password_added",
        SetChange::Remove => "password_removed",
        SetChange::Replace => "passwords_replaced",
    }
}

impl Control {
    pub fn admin_metrics(&self) -> &AdminMetrics {
        &self.inner.metrics
    }

    /// Whether `GET /metrics` requires credentials (`admin.metrics_auth`).
    pub fn metrics_auth(&self) -> bool {
        self.inner.metrics_auth
    }

    /// Ready: the store is loaded (a `Control` exists only after that), every
    /// database has a bound listener, and the process is not shutting down.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.inner.endpoints.shutdown().is_cancelled() {
            return Err(NotReady::ShuttingDown);
        }
        let unbound: Vec<u32> = self
            .snapshot()
            .bdbs
            .keys()
            .copied()
            .filter(|uid| self.inner.endpoints.addr(*uid).is_none())
            .collect();
        if !unbound.is_empty() {
            return Err(NotReady::Unbound(unbound));
        }
        let unmanaged: Vec<u32> = self
            .inner
            .endpoints
            .all()
            .into_iter()
            .filter(|(_, ctx)| {
                matches!(
                    ctx.users.problem(),
                    Some(crate::proxy::users::ManageError::Upstream(
                        crate::proxy::UpstreamError::CannotManage
                            | crate::proxy::UpstreamError::ServiceRefused
                    ))
                )
            })
            .map(|(uid, _)| uid)
            .collect();
        if unmanaged.is_empty() { Ok(()) } else { Err(NotReady::Unmanaged(unmanaged)) }
    }

    /// Adds an administrative event to `next`, the state about to be committed.
    pub(super) fn record(&self, next: &mut State, mut event: Event) {
        event.node = self.node_uid();
        next.events.push_admin(event, self.inner.event_log_capacity);
    }

    /// An event of `kind`, now, made by `actor`.
    pub(super) fn event_by(kind: &str, actor: Option<&Caller>) -> Event {
        let mut e = Event::new(kind, time::now_ms());
        if let Some(c) = actor {
            e.actor = Some(c.name.clone());
            e.actor_uid = Some(c.uid);
        }
        e
    }

    /// Turns pending failed AUTHs into security events of `next`.
    pub(super) fn append_failures(&self, next: &mut State, drained: &Drained) {
        for mut e in failure_events(drained) {
            e.node = self.node_uid();
            next.events.push_security(e, self.inner.event_log_capacity);
        }
    }

    /// The whole log, oldest first: what is stored plus the failed AUTHs and
    /// changes of primary not yet written (so the log is current without a store
    /// write per event). A shared store's log is read from it (every node's
    /// events); while it cannot be reached, this node's own recent events.
    pub async fn events(&self) -> Vec<Event> {
        let store = Arc::clone(&self.inner.store);
        let shared =
            tokio::task::spawn_blocking(move || store.fleet().map(|f| f.events())).await.ok().flatten();
        let mut log = match shared {
            Some(Ok(log)) => log,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the fleet's event log; showing this node's");
                self.snapshot().events.clone()
            }
            None => self.snapshot().events.clone(),
        };
        for e in failure_events(&self.inner.directory.failures().peek()) {
            log.push_security(e, self.inner.event_log_capacity);
        }
        for e in self.inner.fleet.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            log.push_admin(e.clone(), self.inner.event_log_capacity);
        }
        for (uid, ctx) in self.inner.endpoints.all() {
            for s in ctx.failover.peek_switches() {
                log.push_admin(switch_event(uid, &s), self.inner.event_log_capacity);
            }
        }
        log.all()
    }

    /// Takes the changes of primary the databases saw since the last write.
    pub(super) fn take_switches(&self) -> Vec<(u32, Switch)> {
        let mut out = Vec::new();
        for (uid, ctx) in self.inner.endpoints.all() {
            out.extend(ctx.failover.take_switches().into_iter().map(|s| (uid, s)));
        }
        out
    }

    /// Puts back changes of primary a failed write did not keep.
    pub(super) fn restore_switches(&self, taken: Vec<(u32, Switch)>) {
        for (uid, ctx) in self.inner.endpoints.all() {
            let mine: Vec<Switch> = taken.iter().filter(|(u, _)| *u == uid).map(|(_, s)| s.clone()).collect();
            ctx.failover.restore_switches(mine);
        }
    }

    /// Adds changes of primary to `next` (administrative ring: they are rare and
    /// must not be pushed out by failed AUTHs).
    pub(super) fn append_switches(&self, next: &mut State, switches: &[(u32, Switch)]) {
        for (uid, s) in switches {
            next.events.push_admin(switch_event(*uid, s), self.inner.event_log_capacity);
        }
    }

    /// Writes pending failed AUTHs and changes of primary, if any (a commit of the
    /// unchanged state carries them).
    pub async fn flush_events(&self) {
        let unconfirmed = !self.inner.fleet.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        let switched = self.inner.endpoints.all().iter().any(|(_, c)| !c.failover.peek_switches().is_empty());
        if self.inner.directory.failures().peek().is_empty() && !switched && !unconfirmed {
            return;
        }
        self.commit_pending("the event log").await;
    }

    /// Flushes pending events every [`FLUSH_EVERY`], password usage every
    /// [`super::usage::FLUSH_EVERY`], and both once at shutdown. Holds the control
    /// plane weakly: a dropped control plane stops flushing.
    pub(super) fn spawn_event_flusher(&self) {
        let weak = Arc::downgrade(&self.inner);
        let shutdown = self.inner.endpoints.shutdown().clone();
        self.inner.endpoints.tracker().spawn(async move {
            let mut last_events = tokio::time::Instant::now();
            loop {
                let stopping = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tokio::time::sleep(super::usage::FLUSH_EVERY) => false,
                };
                let Some(inner) = weak.upgrade() else { return };
                let control = Control { inner };
                if stopping || last_events.elapsed() >= FLUSH_EVERY {
                    // A write for the events carries the usage too.
                    control.flush_events().await;
                    last_events = tokio::time::Instant::now();
                }
                control.flush_usage().await;
                if stopping {
                    return;
                }
            }
        });
    }
}

/// `primary_switched`: a Sentinel-managed database's new verified primary
/// (`address`) and the one before (`previous_address`, absent when none was known).
fn switch_event(uid: u32, s: &Switch) -> Event {
    let mut e = Event::new("primary_switched", s.time_ms);
    e.bdb_uid = Some(uid);
    e.address = Some(s.to.clone());
    e.previous_address = Some(s.from.clone()).filter(|f| !f.is_empty());
    e
}

fn failure_events(drained: &Drained) -> Vec<Event> {
    let mut out = Vec::with_capacity(drained.entries.len() + 1);
    for (k, a) in &drained.entries {
        let kind = match k.kind {
            FailureKind::AuthFailed => "auth_failed",
            FailureKind::Throttled => "address_throttled",
        };
        let mut e = Event::new(kind, a.first);
        e.bdb_uid = Some(k.bdb);
        e.address = k.address.map(|a| a.to_string());
        if k.kind == FailureKind::AuthFailed {
            e.user = Some(k.user.to_string());
            e.count = Some(a.count);
            e.last_time_ms = Some(a.last);
        }
        out.push(e);
    }
    if drained.dropped > 0 {
        let mut e = Event::new("auth_failures_dropped", time::now_ms());
        e.count = Some(drained.dropped);
        out.push(e);
    }
    out
}
