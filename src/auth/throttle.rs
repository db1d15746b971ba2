//! Brute-force throttling: failed AUTHs are counted per client address; past a
//! threshold within a window, that address's AUTHs are refused (without spending
//! argon2) for a while. Other addresses and authenticated connections are untouched.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// When to throttle. `failures == 0` turns throttling off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub failures: u32,
    pub window: Duration,
    pub block: Duration,
}

impl Default for ThrottlePolicy {
    /// 100 failures a minute from one address, then a minute of refusals: far above
    /// what a misconfigured client produces, far below argon2's own ~35/s per core.
    fn default() -> Self {
        Self { failures: 100, window: Duration::from_secs(60), block: Duration::from_secs(60) }
    }
}

impl ThrottlePolicy {
    pub fn off() -> Self {
        Self { failures: 0, ..Self::default() }
    }
}

#[derive(Debug)]
struct Entry {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

/// Addresses tracked at most; beyond this, expired entries are dropped, and if none
/// are, new addresses are not tracked (memory stays bounded under a spoofing storm).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    map: DashMap<IpAddr, Entry>,
    /// Failures per address not yet added to the fleet's counts (a shared store
    /// takes them in batches, never one round trip per AUTH).
    unshared: DashMap<IpAddr, u64>,
    /// Whether `unshared` is kept at all (only in a fleet).
    sharing: std::sync::atomic::AtomicBool,
    refused: AtomicU64,
    /// Times an address crossed the threshold and was blocked.
    blocks: AtomicU64,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            map: DashMap::new(),
            unshared: DashMap::new(),
            sharing: std::sync::atomic::AtomicBool::new(false),
            refused: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
        }
    }

    /// Whether `ip` may try to authenticate now. Counts refusals.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.policy.failures == 0 {
            return true;
        }
        let blocked = self.map.get(&ip).and_then(|e| e.blocked_until).is_some_and(|t| t > Instant::now());
        if blocked {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        !blocked
    }

    /// Records a failed AUTH from `ip`. True if this failure got the address blocked.
    pub fn failed(&self, ip: IpAddr) -> bool {
        if self.policy.failures == 0 {
            return false;
        }
        let now = Instant::now();
        if !self.map.contains_key(&ip) && self.map.len() >= MAX_TRACKED {
            self.map.retain(|_, e| {
                now.duration_since(e.since) < self.policy.window || e.blocked_until.is_some_and(|t| t > now)
            });
            if self.map.len() >= MAX_TRACKED {
                return false;
            }
        }
        if self.sharing.load(Ordering::Relaxed)
            && (self.unshared.len() < MAX_TRACKED || self.unshared.contains_key(&ip))
        {
            *self.unshared.entry(ip).or_insert(0) += 1;
        }
        let mut e = self.map.entry(ip).or_insert(Entry { count: 0, since: now, blocked_until: None });
        if now.duration_since(e.since) > self.policy.window && e.blocked_until.is_none_or(|t| t <= now) {
            *e = Entry { count: 0, since: now, blocked_until: None };
        }
        e.count += 1;
        if e.count >= self.policy.failures && e.blocked_until.is_none_or(|t| t <= now) {
            e.blocked_until = Some(now + self.policy.block);
            self.blocks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%ip, failures = e.count, block_secs = self.policy.block.as_secs(), "throttling AUTH from this address");
            return true;
        }
        false
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// Starts keeping failures for [`take_unshared`](Self::take_unshared) (a node of
    /// a fleet; a single node keeps nothing extra).
    pub fn share(&self) {
        self.sharing.store(true, Ordering::Relaxed);
    }

    /// The failures counted since the last call, per address (for the fleet).
    pub fn take_unshared(&self) -> Vec<(IpAddr, u64)> {
        let keys: Vec<IpAddr> = self.unshared.iter().map(|e| *e.key()).collect();
        keys.into_iter().filter_map(|k| self.unshared.remove(&k)).collect()
    }

    /// Blocks `ip` now, as if it had failed here as often as in the whole fleet
    /// (`fleet_failures` over the window). No-op if already blocked.
    pub fn block_for_fleet(&self, ip: IpAddr, fleet_failures: u64) {
        if self.policy.failures == 0 || fleet_failures < u64::from(self.policy.failures) {
            return;
        }
        let now = Instant::now();
        let mut e = self.map.entry(ip).or_insert(Entry { count: 0, since: now, blocked_until: None });
        if e.blocked_until.is_none_or(|t| t <= now) {
            e.blocked_until = Some(now + self.policy.block);
            e.count = e.count.max(self.policy.failures);
            self.blocks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%ip, fleet_failures, "throttling AUTH from this address: the fleet's count reached the threshold");
        }
    }

    /// Times an address was blocked so far.
    pub fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Relaxed)
    }

    /// Addresses blocked right now (walks the table: for scrapes, not the data path).
    pub fn blocked_now(&self) -> usize {
        let now = Instant::now();
        self.map.iter().filter(|e| e.blocked_until.is_some_and(|t| t > now)).count()
    }

    /// AUTH attempts refused by throttling so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_threshold_per_address_only() {
        let t = Throttle::new(ThrottlePolicy {
            failures: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            t.failed(a);
            assert!(t.allows(a));
        }
        assert!(t.failed(a), "the third failure blocks");
        assert!(!t.allows(a));
        assert!(t.allows(b));
        assert_eq!(t.refused(), 1);
        assert_eq!((t.blocks(), t.blocked_now()), (1, 1));
        let off = Throttle::new(ThrottlePolicy::off());
        for _ in 0..1000 {
            off.failed(a);
        }
        assert!(off.allows(a));
    }

    #[test]
    fn the_block_ends() {
        let t = Throttle::new(ThrottlePolicy {
            failures: 1,
            window: Duration::from_secs(60),
            block: Duration::ZERO,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed(a);
        assert!(t.allows(a), "a zero-length block is over at once");
    }
}
