//! What one password of a set is used for: its public id, when it last
//! authenticated a connection and how many connections it holds open now.
//!
//! Recorded on the data path with relaxed atomics only (no lock, no allocation per
//! `AUTH`): readers (the admin GET, `/metrics`, the store flush) only need each
//! figure to be recent, not ordered with anything else. The entry travels with its
//! digest through every new set built from an old one, so the figures survive
//! additions and removals of other passwords.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Length of a public id's random part, in bytes (hex-encoded in the id).
const ID_BYTES: usize = 8;

/// One password's identity and usage. Never holds the password or its hash.
pub struct Usage {
    id: Arc<str>,
    /// Unix milliseconds of the last successful AUTH; 0 = never (since tracking began).
    last_used_ms: AtomicU64,
    /// Connections authenticated with this password and open now.
    connections: AtomicU64,
    /// When and from where the first AUTH with this password came (for the event log).
    first: OnceLock<(u64, Option<IpAddr>)>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Usage {
    /// A new entry with a fresh random id: not derived from the password, so it
    /// tells nothing about it, and stable for the entry's life.
    pub fn fresh() -> Arc<Self> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::with_id(&format!("pw-{hex}"), None)
    }

    /// An entry read back from the store.
    pub fn with_id(id: &str, last_used_ms: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            id: Arc::from(id),
            last_used_ms: AtomicU64::new(last_used_ms.unwrap_or(0)),
            connections: AtomicU64::new(0),
            first: OnceLock::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn id_arc(&self) -> Arc<str> {
        Arc::clone(&self.id)
    }

    /// Unix milliseconds of the last successful AUTH, if any.
    pub fn last_used_ms(&self) -> Option<u64> {
        Some(self.last_used_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// When (Unix ms) and from where the first AUTH with this password came, once
    /// there was one since this process started.
    pub fn first_use(&self) -> Option<(u64, Option<IpAddr>)> {
        self.first.get().copied()
    }

    /// A successful AUTH, now, from `peer`. A load and a store rather than a swap:
    /// no read-modify-write on the hot path; two AUTHs racing for "first" both
    /// write a time, and the first peer is set once whoever wins.
    pub fn authenticated(&self, peer: Option<IpAddr>, now_ms: u64) {
        if self.last_used_ms.load(Ordering::Relaxed) == 0 {
            let _ = self.first.set((now_ms, peer));
        }
        self.last_used_ms.store(now_ms.max(1), Ordering::Relaxed);
    }
}

/// A connection authenticated with a password: counted in its entry's
/// `connections` while this lives (the session holds it; dropping it, on close,
/// RESET or a later AUTH, uncounts it).
#[derive(Debug)]
pub struct InUse(Arc<Usage>);

impl InUse {
    pub fn new(usage: Arc<Usage>) -> Self {
        usage.connections.fetch_add(1, Ordering::Relaxed);
        Self(usage)
    }

    pub fn usage(&self) -> &Arc<Usage> {
        &self.0
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_public() {
        let (a, b) = (Usage::fresh(), Usage::fresh());
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("pw-") && a.id().len() == 3 + 2 * ID_BYTES);
    }

    #[test]
    fn connections_follow_the_guards() {
        let u = Usage::fresh();
        let g1 = InUse::new(Arc::clone(&u));
        let g2 = InUse::new(Arc::clone(&u));
        assert_eq!(u.connections(), 2);
        drop(g1);
        assert_eq!(u.connections(), 1);
        drop(g2);
        assert_eq!(u.connections(), 0);
    }

    #[test]
    fn first_use_is_remembered_once() {
        let u = Usage::fresh();
        assert_eq!(u.last_used_ms(), None);
        u.authenticated(Some("10.0.0.1".parse().unwrap()), 5_000);
        u.authenticated(Some("10.0.0.2".parse().unwrap()), 6_000);
        assert_eq!(u.last_used_ms(), Some(6_000));
        assert_eq!(u.first_use(), Some((5_000, Some("10.0.0.1".parse().unwrap()))));
    }
}
