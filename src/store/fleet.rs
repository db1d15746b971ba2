//! What nodes sharing one store need of it besides the state: the current revision
//! alone (the poll), change notifications, the node registry, and the counters that
//! must be fleet-wide because they are security (admin login failures, failed AUTHs
//! per address).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::events::EventLog;
use super::{Loaded, Revision, StoreError};

/// One node as the registry shows it (`GET /v1/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub uid: u32,
    /// The node's admin API address.
    pub addr: String,
    /// The revision it applies.
    pub applied: u64,
    /// Its content hash, hex.
    pub hash: String,
    /// Unix milliseconds of its last heartbeat.
    pub last_seen_ms: u64,
}

pub trait Fleet: Send + Sync {
    /// The store's revision, without the state (one cheap round trip).
    fn head(&self) -> Result<Revision, StoreError>;
    /// The last state this node read or wrote, from its local cache (start-up while
    /// the store is down).
    fn cached(&self) -> Result<Option<Loaded>, StoreError>;
    /// Keeps `state` as the local cache.
    fn cache(&self, loaded: &Loaded) -> Result<(), StoreError>;
    /// A new node uid, unique in the fleet.
    fn register(&self) -> Result<u32, StoreError>;
    /// Heartbeat: writes this node's record.
    fn report(&self, node: &NodeRecord) -> Result<(), StoreError>;
    /// Every registered node.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// Adds `log`'s events to the fleet's event log (capped), without touching the
    /// state: an event is no change of the state and bumps no revision.
    fn append_events(&self, log: &EventLog) -> Result<(), StoreError>;
    /// The fleet's event log (each ring at most its capacity), oldest first.
    fn events(&self) -> Result<EventLog, StoreError>;
    /// Removes the records of nodes last seen before `seen_before_ms` (Unix
    /// milliseconds); returns their uids.
    fn forget(&self, seen_before_ms: u64) -> Result<Vec<u32>, StoreError>;
    /// Blocks, calling `changed` on every change notification, until `stop()` says
    /// so (checked at least every second). Returns an error when the subscription
    /// is lost; the caller subscribes again.
    fn watch(&self, stop: &dyn Fn() -> bool, changed: &dyn Fn()) -> Result<(), StoreError>;
    /// Counts a failed admin login of user `uid`; returns the fleet's count within
    /// `window_secs` of the first.
    fn login_failed(&self, uid: u32, window_secs: u64) -> Result<u64, StoreError>;
    /// Forgets user `uid`'s failed logins (a good login, a new password).
    fn login_reset(&self, uid: u32) -> Result<(), StoreError>;
    /// Records user `uid`'s successful admin login at `at` (Unix seconds).
    fn record_login(&self, uid: u32, at: u64) -> Result<(), StoreError>;
    /// Every user's last admin login, as the fleet saw it.
    fn last_logins(&self) -> Result<Vec<(u32, u64)>, StoreError>;
    /// Adds this node's failed AUTHs per address to the fleet's counts for the
    /// current window, and returns the fleet's totals for those addresses.
    fn auth_failures(&self, counts: &[(IpAddr, u64)], window_secs: u64) -> Result<Vec<u64>, StoreError>;
}
