//! Failed AUTHs on the data path, waiting to enter the event log.
//!
//! A brute-force storm must neither cost a store write per failure nor flood the
//! event log, so failures are aggregated in memory per (database, address, user
//! name) — a count plus first and last time — and written with the next store write
//! (or the control plane's periodic flush). The map is bounded: past
//! [`MAX_PENDING`] distinct keys, further failures are only counted as dropped.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Distinct (kind, database, address, user) keys held at most between flushes.
pub const MAX_PENDING: usize = 1000;

/// User names from the network are kept to this many bytes.
pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// A wrong password, an unknown user, a user without access to the database.
    AuthFailed,
    /// The address reached the throttling threshold and is now refused for a while.
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureKey {
    pub kind: FailureKind,
    pub bdb: u32,
    pub address: Option<IpAddr>,
    /// The name the client gave (`default` for `AUTH <password>`), at most
    /// [`MAX_NAME`] bytes, lossily decoded. Never the password.
    pub user: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    pub count: u64,
    /// Unix milliseconds of the first and the last failure.
    pub first: u64,
    pub last: u64,
}

/// What a flush takes out.
#[derive(Debug, Default)]
pub struct Drained {
    pub entries: Vec<(FailureKey, Aggregate)>,
    pub dropped: u64,
}

impl Drained {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.dropped == 0
    }
}

#[derive(Debug, Default)]
pub struct FailureLog {
    map: DashMap<FailureKey, Aggregate>,
    dropped: AtomicU64,
}

impl FailureLog {
    /// Records a failed AUTH (`user` of `None` is the default user).
    pub fn auth_failed(&self, bdb: u32, address: Option<IpAddr>, user: Option<&[u8]>, now: u64) {
        let user = match user {
            None => "default".into(),
            Some(u) => String::from_utf8_lossy(&u[..u.len().min(MAX_NAME)]).into(),
        };
        self.record(FailureKey { kind: FailureKind::AuthFailed, bdb, address, user }, 1, now, now);
    }

    /// Records that `address` is throttled from now on.
    pub fn throttled(&self, bdb: u32, address: IpAddr, now: u64) {
        let key = FailureKey { kind: FailureKind::Throttled, bdb, address: Some(address), user: "".into() };
        self.record(key, 1, now, now);
    }

    fn record(&self, key: FailureKey, count: u64, first: u64, last: u64) {
        if let Some(mut a) = self.map.get_mut(&key) {
            a.count += count;
            a.first = a.first.min(first);
            a.last = a.last.max(last);
            return;
        }
        if self.map.len() >= MAX_PENDING {
            self.dropped.fetch_add(count, Ordering::Relaxed);
            return;
        }
        self.map
            .entry(key)
            .and_modify(|a| {
                a.count += count;
                a.first = a.first.min(first);
                a.last = a.last.max(last);
            })
            .or_insert(Aggregate { count, first, last });
    }

    /// Everything pending, left in place (for reading the log).
    pub fn peek(&self) -> Drained {
        let mut entries: Vec<_> = self.map.iter().map(|e| (e.key().clone(), *e.value())).collect();
        entries.sort_by(|a, b| (a.1.first, &a.0).cmp(&(b.1.first, &b.0)));
        Drained { entries, dropped: self.dropped.load(Ordering::Relaxed) }
    }

    /// Takes everything pending out (to be written to the store).
    pub fn take(&self) -> Drained {
        let keys: Vec<FailureKey> = self.map.iter().map(|e| e.key().clone()).collect();
        let mut entries: Vec<_> = keys.into_iter().filter_map(|k| self.map.remove(&k)).collect();
        entries.sort_by(|a, b| (a.1.first, &a.0).cmp(&(b.1.first, &b.0)));
        Drained { entries, dropped: self.dropped.swap(0, Ordering::Relaxed) }
    }

    /// Puts back what [`take`](Self::take) returned when the store write failed.
    pub fn restore(&self, drained: Drained) {
        for (k, a) in drained.entries {
            self.record(k, a.count, a.first, a.last);
        }
        self.dropped.fetch_add(drained.dropped, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_per_key_and_is_bounded() {
        let log = FailureLog::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        log.auth_failed(1, Some(a), Some(b"app"), 100);
        log.auth_failed(1, Some(a), Some(b"app"), 105);
        log.auth_failed(1, Some(a), None, 101);
        let long = vec![b'x'; 500];
        log.auth_failed(2, None, Some(&long), 102);
        let d = log.peek();
        assert_eq!(d.entries.len(), 3);
        assert_eq!(d.entries[0].1, Aggregate { count: 2, first: 100, last: 105 });
        assert_eq!(&*d.entries[1].0.user, "default");
        assert_eq!(d.entries[2].0.user.len(), MAX_NAME);
        for i in 0..(MAX_PENDING as u32 + 5) {
            log.auth_failed(3, Some(a), Some(i.to_string().as_bytes()), 200);
        }
        let d = log.take();
        assert_eq!(d.entries.len(), MAX_PENDING);
        assert_eq!(d.dropped, 8, "3 + 1005 keys offered, 1000 kept");
        assert!(log.take().is_empty());
        log.restore(d);
        assert_eq!(log.peek().entries.len(), MAX_PENDING);
        assert_eq!(log.peek().dropped, 8);
    }
}
