//! The verification cache: a password checked recently skips argon2, whether it
//! matched or not.
//!
//! Keys are BLAKE3 keyed hashes of (set, salt, cost, password) under a random key made
//! at start and never written anywhere, so the cache holds no plaintext and its keys
//! cannot be checked against guesses without that key. Values are the argon2 digest
//! of that password under that salt and cost: a set's salt never changes while
//! passwords are added or removed, so the digest stays exact, and a lookup decides
//! against the set *as it is now*: a removed password misses, a password added since
//! it was last tried matches. Nothing cached can let a password in that the current
//! set would refuse.
//!
//! Why failures are cached too: after a rotation, clients still configured with the
//! removed password reconnect in a loop, and a storm of one wrong password would cost
//! argon2 (~40 ms of a core) per attempt; each distinct guess still costs argon2,
//! so a brute force gains nothing. Failures have their own, smaller bound, so a flood
//! of guesses can never push out the verified passwords that keep clients fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::hasher::{Digest, HashParams, SALT_LEN};

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

/// What an attempt was checked against: a set, or (no set: an unknown user, a
/// database that does not admit it) the decoy evaluation that makes a failure cost
/// the same whatever its reason, keyed by what the client named: on database `bdb`
/// (None: an admin API login), as `user` (None: the default user).
pub enum Checked<'a> {
    Set(&'a SetId),
    Decoy { bdb: Option<u32>, user: Option<&'a [u8]> },
}

#[derive(Debug)]
struct Entry {
    /// The set it belongs to (None for a decoy), for purging.
    set: Option<SetId>,
    digest: Digest,
    expires: Instant,
}

/// Entries of one kind, bounded.
#[derive(Debug)]
struct Bounded {
    map: DashMap<[u8; 32], Entry>,
    capacity: usize,
}

impl Bounded {
    fn new(capacity: usize) -> Self {
        Self { map: DashMap::new(), capacity }
    }

    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Digest> {
        let e = self.map.get(key)?;
        (e.expires > now).then_some(e.digest)
    }

    /// When full, expired entries are dropped first; if it is still full, the new
    /// entry is not kept (bounded memory wins).
    fn insert(&self, key: [u8; 32], entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            let now = Instant::now();
            self.map.retain(|_, e| e.expires > now);
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(key, entry);
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct VerifyCache {
    key: [u8; 32],
    /// Passwords that matched their set when checked.
    matched: Bounded,
    /// Passwords that did not (and decoys).
    missed: Bounded,
    ttl: Duration,
    hits: AtomicU64,
    known_misses: AtomicU64,
}

/// Failures kept at most, as a share of the cache's capacity.
const MISSED_SHARE: usize = 10;

impl VerifyCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random number generator is unavailable");
        let capacity = if ttl.is_zero() { 0 } else { capacity };
        Self {
            key,
            matched: Bounded::new(capacity),
            missed: Bounded::new(capacity.div_ceil(MISSED_SHARE)),
            ttl,
            hits: AtomicU64::new(0),
            known_misses: AtomicU64::new(0),
        }
    }

    /// The cache key of `password` checked as `what`, under `params` and `salt`.
    pub fn key(
        &self,
        what: Checked<'_>,
        params: HashParams,
        salt: &[u8; SALT_LEN],
        password: &[u8],
    ) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        match what {
            Checked::Set(set) => set.write_to(&mut h),
            Checked::Decoy { bdb, user } => {
                h.update(b"d");
                if let Some(bdb) = bdb {
                    h.update(b"b");
                    h.update(&bdb.to_le_bytes());
                }
                if let Some(u) = user {
                    h.update(b"u");
                    h.update(&(u.len() as u64).to_le_bytes());
                    h.update(u);
                }
            }
        }
        for n in [params.m_cost, params.t_cost, params.p_cost] {
            h.update(&n.to_le_bytes());
        }
        h.update(salt);
        h.update(password);
        *h.finalize().as_bytes()
    }

    /// The digest this key was found to have recently (matched or not), if any and
    /// not expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<Digest> {
        let now = Instant::now();
        self.matched.get(key, now).or_else(|| self.missed.get(key, now))
    }

    /// Counts a hit that was confirmed against the current set.
    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Counts a failure decided from the cache, without argon2.
    pub fn record_known_miss(&self) {
        self.known_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn known_misses(&self) -> u64 {
        self.known_misses.load(Ordering::Relaxed)
    }

    /// Remembers a verification: `matched` says whether the password was in its set
    /// (None: a decoy). Each kind has its own bound.
    pub fn insert(&self, key: [u8; 32], set: Option<SetId>, digest: Digest, matched: bool) {
        let entry = Entry { set, digest, expires: Instant::now() + self.ttl };
        if matched { self.matched.insert(key, entry) } else { self.missed.insert(key, entry) }
    }

    /// Forgets everything cached for `set`. Called when a password is removed or the
    /// set replaced; correctness does not depend on it (lookups are decided against
    /// the current set), it keeps stale digests from lingering in memory.
    pub fn purge(&self, set: &SetId) {
        self.matched.map.retain(|_, e| e.set.as_ref() != Some(set));
        self.missed.map.retain(|_, e| e.set.as_ref() != Some(set));
    }

    pub fn len(&self) -> usize {
        self.matched.map.len() + self.missed.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: HashParams = HashParams { m_cost: 8, t_cost: 1, p_cost: 1 };
    const SALT: [u8; SALT_LEN] = [7; SALT_LEN];

    fn k(c: &VerifyCache, s: &SetId, pw: &[u8]) -> [u8; 32] {
        c.key(Checked::Set(s), P, &SALT, pw)
    }

    #[test]
    fn keys_depend_on_set_salt_cost_password_and_process_key() {
        let c = VerifyCache::new(Duration::from_secs(60), 10);
        let a = SetId::BdbDefault(1);
        let u = SetId::User("alice".into());
        assert_ne!(k(&c, &a, b"pw"), k(&c, &u, b"pw"));
        assert_ne!(k(&c, &a, b"pw"), k(&c, &a, b"pw2"));
        assert_ne!(k(&c, &a, b"pw"), c.key(Checked::Set(&a), P, &[8; SALT_LEN], b"pw"));
        assert_ne!(k(&c, &a, b"pw"), c.key(Checked::Set(&a), HashParams { t_cost: 2, ..P }, &SALT, b"pw"));
        assert_ne!(k(&c, &a, b"pw"), c.key(Checked::Decoy { bdb: Some(1), user: None }, P, &SALT, b"pw"));
        assert_ne!(
            c.key(Checked::Decoy { bdb: Some(1), user: Some(b"bob") }, P, &SALT, b"pw"),
            c.key(Checked::Decoy { bdb: None, user: Some(b"bob") }, P, &SALT, b"pw")
        );
        assert_ne!(k(&c, &a, b"pw"), k(&VerifyCache::new(Duration::from_secs(60), 10), &a, b"pw"));
    }

    #[test]
    fn bounded_per_kind_and_purgeable() {
        let c = VerifyCache::new(Duration::from_secs(60), 20);
        let s = SetId::BdbDefault(1);
        for i in 0..50u8 {
            c.insert(k(&c, &s, &[i]), Some(s.clone()), [i; 32], i % 2 == 0);
        }
        // 20 matched at most, and failures a tenth of that: a flood of wrong
        // passwords cannot push out the verified ones.
        assert_eq!(c.len(), 22);
        assert_eq!(c.get(&k(&c, &s, &[0])), Some([0; 32]));
        assert_eq!(c.get(&k(&c, &s, &[1])), Some([1; 32]));
        assert_eq!(c.get(&k(&c, &s, &[49])), None);
        c.insert(k(&c, &s, b"decoy"), None, [9; 32], false);
        c.purge(&s);
        assert!(c.is_empty());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let c = VerifyCache::new(Duration::ZERO, 20);
        let s = SetId::BdbDefault(1);
        c.insert(k(&c, &s, b"x"), Some(s.clone()), [1; 32], true);
        c.insert(k(&c, &s, b"y"), Some(s), [1; 32], false);
        assert!(c.is_empty());
    }
}
