//! What the data path knows of a Sentinel-managed database's primary, cheap to
//! read per new upstream connection: the current node is the database's
//! `Upstream` (an `ArcSwap`), usable while its `retired` token is not cancelled;
//! this holds what goes with it — who waits for the next primary, how the data
//! path asks the watcher to look again, the counters for `/metrics`, and the
//! switches not yet written to the event log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::Upstream;

/// Switches kept for the event log until the control plane takes them.
const PENDING_MAX: usize = 256;

/// A change of primary, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// Empty when no primary was known before (start, or after one was lost).
    pub from: String,
    pub to: String,
}

/// See the module documentation. One per database.
#[derive(Debug)]
pub struct Failover {
    /// Bumped whenever a new primary is installed, for those waiting for one.
    installed: watch::Sender<u64>,
    /// The data path saw a sign of a failover (a connection error, `-READONLY`, a
    /// node that says it is a replica): the watcher looks again at once.
    nudge: Notify,
    /// Changes of primary seen (the first resolution is not one).
    failovers: AtomicU64,
    /// Milliseconds without a verified primary, closed periods only.
    unknown_ms: AtomicU64,
    /// Since when no primary is known, if none is.
    unknown_since: Mutex<Option<Instant>>,
    pending: Mutex<Vec<Switch>>,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            installed: watch::Sender::new(0),
            nudge: Notify::new(),
            failovers: AtomicU64::new(0),
            unknown_ms: AtomicU64::new(0),
            // A Sentinel-managed database starts without a primary; a fixed one never
            // asks (see `BdbContext::primary`).
            unknown_since: Mutex::new(None),
            pending: Mutex::default(),
        }
    }
}

impl Failover {
    /// Asks the watcher to resolve the primary again now.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    pub(super) async fn nudged(&self) {
        self.nudge.notified().await;
    }

    /// `node` is known not to be the primary any more (or not reachable, as the
    /// watcher found): it is retired — its lanes and clients' own connections end —
    /// and new requests wait for the next verified primary.
    pub fn retire(&self, node: &Upstream) {
        if node.sentinel.is_none() || node.retired.is_cancelled() {
            return;
        }
        tracing::warn!(primary = %node.address, "the upstream primary is retired; waiting for Sentinel's next");
        self.lock_since().get_or_insert_with(Instant::now);
        node.retired.cancel();
        self.nudge();
    }

    /// Marks the start of a period without a primary (a database that starts
    /// before its Sentinels answered).
    pub(super) fn unknown(&self) {
        self.lock_since().get_or_insert_with(Instant::now);
    }

    /// A new verified primary is in place: the period without one ends, and the
    /// switch is counted and queued for the event log.
    pub(super) fn installed(&self, from: &str, to: &str) {
        if let Some(since) = self.lock_since().take() {
            self.unknown_ms.fetch_add(since.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        if !from.is_empty() && from != to {
            self.failovers.fetch_add(1, Ordering::Relaxed);
        }
        if from != to {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.len() < PENDING_MAX {
                p.push(Switch { time_ms: crate::time::now_ms(), from: from.into(), to: to.into() });
            }
        }
        self.installed.send_modify(|g| *g += 1);
    }

    /// Waits until a primary is installed after `rx` was made, or `deadline`.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.installed.subscribe()
    }

    /// Changes of primary seen so far.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Seconds without a verified primary so far, the current period included.
    pub fn seconds_without_primary(&self) -> f64 {
        let open = self.lock_since().map_or(Duration::ZERO, |s| s.elapsed());
        (self.unknown_ms.load(Ordering::Relaxed) as f64 + open.as_millis() as f64) / 1000.0
    }

    /// Whether no verified primary is known right now.
    pub fn without_primary(&self) -> bool {
        self.lock_since().is_some()
    }

    /// The switches not yet in the event log, taken.
    pub fn take_switches(&self) -> Vec<Switch> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The switches not yet in the event log, left in place.
    pub fn peek_switches(&self) -> Vec<Switch> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts back switches a failed store write did not keep.
    pub fn restore_switches(&self, mut taken: Vec<Switch>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        taken.append(&mut p);
        taken.truncate(PENDING_MAX);
        *p = taken;
    }

    fn lock_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.unknown_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}
