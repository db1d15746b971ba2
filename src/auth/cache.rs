//! The verification cache: a recently verified password skips argon2.
//!
//! Keys are BLAKE3 keyed hashes of (set, password) under a random key made at start
//! and never written anywhere, so the cache holds no plaintext and its keys cannot be
//! checked against guesses without that key. Values are the digest that matched. A hit
//! only counts if that digest is still in the *current* set, so a removed or replaced
//! password can never get in through the cache, whatever is cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::hasher::Digest;

/// Which password set a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetId {
    /// The default user of a database.
    BdbDefault(u32),
    /// A named user.
    User(Arc<str>),
}

impl SetId {
    fn write_to(&self, h: &mut blake3::Hasher) {
        match self {
            Self::BdbDefault(uid) => {
                h.update(b"b");
                h.update(&uid.to_le_bytes());
            }
            Self::User(name) => {
                h.update(b"u");
                h.update(&(name.len() as u64).to_le_bytes());
                h.update(name.as_bytes());
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    set: SetId,
    digest: Digest,
    expires: Instant,
}

/// See the module documentation.
#[derive(Debug)]
pub struct VerifyCache {
    key: [u8; 32],
    map: DashMap<[u8; 32], Entry>,
    ttl: Duration,
    capacity: usize,
    hits: AtomicU64,
}

impl VerifyCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random number generator is unavailable");
        Self { key, map: DashMap::new(), ttl, capacity, hits: AtomicU64::new(0) }
    }

    /// The cache key of `password` for `set`.
    pub fn key(&self, set: &SetId, password: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        set.write_to(&mut h);
        h.update(password);
        *h.finalize().as_bytes()
    }

    /// The digest this key matched recently, if any and not expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<Digest> {
        let e = self.map.get(key)?;
        (e.expires > Instant::now()).then_some(e.digest)
    }

    /// Counts a hit that was confirmed against the current set.
    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Remembers a successful verification. When full, expired entries are dropped
    /// first; if it is still full, the new entry is not kept (bounded memory wins).
    pub fn insert(&self, key: [u8; 32], set: SetId, digest: Digest) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        if self.map.len() >= self.capacity {
            let now = Instant::now();
            self.map.retain(|_, e| e.expires > now);
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(key, Entry { set, digest, expires: Instant::now() + self.ttl });
    }

    /// Forgets everything cached for `set`. Called when a password is removed or the
    /// set replaced; correctness does not depend on it (hits are re-checked), it
    /// keeps stale digests from lingering in memory.
    pub fn purge(&self, set: &SetId) {
        self.map.retain(|_, e| &e.set != set);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_set_and_password_and_process_key() {
        let c = VerifyCache::new(Duration::from_secs(60), 10);
        let a = SetId::BdbDefault(1);
        let u = SetId::User("alice".into());
        assert_ne!(c.key(&a, b"pw"), c.key(&u, b"pw"));
        assert_ne!(c.key(&a, b"pw"), c.key(&a, b"pw2"));
        assert_ne!(c.key(&a, b"pw"), VerifyCache::new(Duration::from_secs(60), 10).key(&a, b"pw"));
    }

    #[test]
    fn bounded_and_purgeable() {
        let c = VerifyCache::new(Duration::from_secs(60), 2);
        let s = SetId::BdbDefault(1);
        for i in 0..5u8 {
            c.insert(c.key(&s, &[i]), s.clone(), [i; 32]);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&c.key(&s, &[0])), Some([0; 32]));
        c.purge(&s);
        assert!(c.is_empty());
    }
}
