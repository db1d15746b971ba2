//! Who may authenticate where: databases' default-user sets and named users' sets.
//!
//! Readers (every `AUTH` on the data path) load sets through `ArcSwap` and never wait
//! for a writer; writers are serialised among themselves, build a new set, let the
//! caller persist it, and only then swap it in — so nothing that is not durable is
//! ever visible, and the next `AUTH` after a change returns sees the change.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use zeroize::Zeroizing;

use super::cache::{Checked, SetId, VerifyCache};
use super::failures::FailureLog;
use super::hasher::{AtTurn, Derived, Digest, HashError, HashParams, Hasher};
use super::set::PasswordSet;
use super::throttle::{Throttle, ThrottlePolicy};
use super::usage::Usage;
use crate::authz::{Grant, RuleKey};

/// Name that `AUTH <password>` authenticates as.
pub const DEFAULT_USER: &str = "default";

/// Tuning of password verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// argon2 evaluations allowed to run at once.
    pub concurrency: usize,
    /// How long a successful verification is remembered.
    pub cache_ttl: Duration,
    /// At most this many remembered verifications.
    pub cache_capacity: usize,
    /// Per-address brute-force throttling of failed AUTHs.
    pub throttle: ThrottlePolicy,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            concurrency: (cores / 2).max(1),
            cache_ttl: Duration::from_secs(300),
            cache_capacity: 100_000,
            throttle: ThrottlePolicy::default(),
        }
    }
}

/// One `roles_permissions` entry: users with `role` act under rule `acl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub role: u32,
    pub acl: u32,
}

/// A database's access policy, replaced whole when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BdbAccess {
    /// Whether `AUTH <password>` (the default user) is accepted at all.
    pub default_user: bool,
    /// Which roles' users may authenticate to this database, and under which rule:
    /// the first entry whose role a user has decides (as in Redis Enterprise).
    pub permissions: Vec<Permission>,
}

impl Default for BdbAccess {
    fn default() -> Self {
        Self { default_user: true, permissions: Vec::new() }
    }
}

impl BdbAccess {
    /// The rule a user with `roles` acts under, if any of its roles is admitted.
    fn rule_for(&self, roles: &[u32]) -> Option<u32> {
        self.permissions.iter().find(|p| roles.contains(&p.role)).map(|p| p.acl)
    }
}

struct BdbAuth {
    access: ArcSwap<BdbAccess>,
    passwords: ArcSwap<PasswordSet>,
}

struct UserAuth {
    roles: ArcSwap<Vec<u32>>,
    passwords: ArcSwap<PasswordSet>,
    /// AUTHs as this user on any database (metrics; only names that exist count).
    auth_success: AtomicU64,
    auth_failure: AtomicU64,
}

/// Who a connection authenticated as, and with which password (by digest), so a
/// later removal of that password can be matched to the connection; and that
/// password's entry, where the connection's use of it is counted.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user: its name is the set's (the default user's is [`DEFAULT_USER`]). Not
    /// kept twice: every connection holds an identity, twice (its task and its slot).
    pub set: SetId,
    pub digest: Digest,
    pub usage: Arc<Usage>,
}

/// The same identity: same set, same password (the entry follows from those).
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.set == other.set && self.digest == other.digest
    }
}

impl Eq for Identity {}

impl Identity {
    pub fn name(&self) -> &str {
        match &self.set {
            SetId::BdbDefault(_) => DEFAULT_USER,
            SetId::User(n) => n,
        }
    }

    /// The name as a shared string (the default user's is one for the process:
    /// no allocation per connection).
    pub fn shared_name(&self) -> Arc<str> {
        match &self.set {
            SetId::BdbDefault(_) => default_user_name(),
            SetId::User(n) => Arc::clone(n),
        }
    }
}

/// [`DEFAULT_USER`], allocated once.
pub fn default_user_name() -> Arc<str> {
    static NAME: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(DEFAULT_USER));
    Arc::clone(&NAME)
}

/// The three password operations of the Redis Enterprise API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetChange {
    /// Add a password to the set (POST).
    Add,
    /// Remove one password (DELETE).
    Remove,
    /// Replace the whole set with one password (PUT).
    Replace,
}

/// Why a password change was refused. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such database or user")]
    NotFound,
    #[error("the password is already in the set")]
    AlreadyPresent,
    #[error("the password is not in the set")]
    NotPresent,
    #[error("the last password of a set cannot be deleted")]
    LastPassword,
    #[error("the password is empty")]
    Empty,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("the change could not be stored: {0}")]
    Persist(String),
}

/// Cheap-to-clone handle on all password sets. See the module documentation.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

struct Inner {
    params: HashParams,
    hasher: Hasher,
    cache: VerifyCache,
    bdbs: DashMap<u32, Arc<BdbAuth>>,
    users: DashMap<Arc<str>, Arc<UserAuth>>,
    /// `redis_acl` rule strings by uid.
    acls: DashMap<u32, Arc<str>>,
    /// Bumped by every change that can change a client's grant (policies, roles,
    /// rules, users): connections re-check theirs when it moves.
    generation: AtomicU64,
    writes: tokio::sync::Mutex<()>,
    throttle: Throttle,
    /// Failed AUTHs naming a user that does not exist (never a metric label).
    unknown_user_failures: AtomicU64,
    /// Failed AUTHs waiting to enter the event log.
    failures: FailureLog,
    /// Evaluated when there is no set to check against (unknown user, no password),
    /// so that a failure costs the same time whatever the reason.
    decoy: PasswordSet,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("bdbs", &self.inner.bdbs.len())
            .field("users", &self.inner.users.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty directory. New sets are hashed with `params`.
    pub fn new(params: HashParams, options: VerifyOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                params,
                hasher: Hasher::new(options.concurrency),
                cache: VerifyCache::new(options.cache_ttl, options.cache_capacity),
                bdbs: DashMap::new(),
                users: DashMap::new(),
                acls: DashMap::new(),
                generation: AtomicU64::new(0),
                writes: tokio::sync::Mutex::new(()),
                throttle: Throttle::new(options.throttle.clone()),
                unknown_user_failures: AtomicU64::new(0),
                failures: FailureLog::default(),
                decoy: PasswordSet::empty(params),
            }),
        }
    }

    /// argon2 evaluations performed so far.
    pub fn evaluations(&self) -> u64 {
        self.inner.hasher.evaluations()
    }

    /// Attempts waiting for their turn to evaluate argon2 right now.
    pub fn argon2_waiting(&self) -> usize {
        self.inner.hasher.waiting()
    }

    /// Successful verifications answered from the cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.inner.cache.hits()
    }

    /// Brute-force throttling shared by every database endpoint.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// Failed AUTHs not yet in the event log.
    pub fn failures(&self) -> &FailureLog {
        &self.inner.failures
    }

    /// AUTH outcomes per existing user, by name: (name, successes, failures); and
    /// failures that named no existing user.
    pub fn user_auth_counts(&self) -> (Vec<(Arc<str>, u64, u64)>, u64) {
        let mut v: Vec<_> = self
            .inner
            .users
            .iter()
            .map(|e| {
                let u = e.value();
                (
                    Arc::clone(e.key()),
                    crate::metrics::get(&u.auth_success),
                    crate::metrics::get(&u.auth_failure),
                )
            })
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        (v, crate::metrics::get(&self.inner.unknown_user_failures))
    }

    /// Creates a database (with an empty default-user set) or updates its policy.
    pub fn set_bdb(&self, uid: u32, access: BdbAccess) {
        self.bump();
        match self.inner.bdbs.get(&uid) {
            Some(b) => b.access.store(Arc::new(access)),
            None => {
                let b = BdbAuth {
                    access: ArcSwap::from_pointee(access),
                    passwords: ArcSwap::from_pointee(PasswordSet::empty(self.inner.params)),
                };
                self.inner.bdbs.insert(uid, Arc::new(b));
            }
        }
    }

    pub fn remove_bdb(&self, uid: u32) -> bool {
        self.bump();
        let removed = self.inner.bdbs.remove(&uid).is_some();
        self.inner.cache.purge(&SetId::BdbDefault(uid));
        removed
    }

    /// Creates a user (with an empty set) or updates its roles. `default` is
    /// reserved for databases' default users.
    pub fn set_user(&self, name: &str, roles: Vec<u32>) -> Result<(), ChangeError> {
        if name == DEFAULT_USER || name.is_empty() {
            return Err(ChangeError::NotFound);
        }
        self.bump();
        match self.inner.users.get(name) {
            Some(u) => u.roles.store(Arc::new(roles)),
            None => {
                let u = UserAuth {
                    roles: ArcSwap::from_pointee(roles),
                    passwords: ArcSwap::from_pointee(PasswordSet::empty(self.inner.params)),
                    auth_success: AtomicU64::new(0),
                    auth_failure: AtomicU64::new(0),
                };
                self.inner.users.insert(Arc::from(name), Arc::new(u));
            }
        }
        Ok(())
    }

    pub fn remove_user(&self, name: &str) -> bool {
        self.bump();
        let removed = self.inner.users.remove(name).is_some();
        self.inner.cache.purge(&SetId::User(Arc::from(name)));
        removed
    }

    /// Creates or changes the rule string of `redis_acl` `uid`.
    pub fn set_acl(&self, uid: u32, rule: &str) {
        self.inner.acls.insert(uid, Arc::from(rule));
        self.bump();
    }

    pub fn remove_acl(&self, uid: u32) {
        self.inner.acls.remove(&uid);
        self.bump();
    }

    fn bump(&self) {
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// Moves whenever a grant may have changed (see [`Self::grant`]).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The rights `identity` has on database `bdb` now: the default user's full
    /// access, or the rule of the first `roles_permissions` entry whose role the
    /// user has. None if it is no longer admitted there (or no longer exists).
    pub fn grant(&self, bdb: u32, identity: &Identity) -> Option<Grant> {
        let b = self.inner.bdbs.get(&bdb).map(|b| Arc::clone(&*b))?;
        let access = b.access.load();
        match &identity.set {
            SetId::BdbDefault(uid) => (*uid == bdb && access.default_user).then(Grant::full_access),
            SetId::User(name) => {
                let roles = self.inner.users.get(&**name)?.roles.load_full();
                let acl = access.rule_for(&roles)?;
                let rule = self.inner.acls.get(&acl).map(|r| Arc::clone(&*r))?;
                Some(Grant { key: RuleKey::Acl(acl), rule })
            }
        }
    }

    /// Every rule in use on database `bdb`: the default user's (if admitted) and
    /// each `redis_acl` its `roles_permissions` grant.
    pub fn grants_of(&self, bdb: u32) -> Vec<Grant> {
        let Some(b) = self.inner.bdbs.get(&bdb).map(|b| Arc::clone(&*b)) else { return Vec::new() };
        let access = b.access.load();
        let mut out = Vec::new();
        if access.default_user {
            out.push(Grant::full_access());
        }
        for p in &access.permissions {
            if out.iter().any(|g| g.key == RuleKey::Acl(p.acl)) {
                continue;
            }
            if let Some(rule) = self.inner.acls.get(&p.acl) {
                out.push(Grant { key: RuleKey::Acl(p.acl), rule: Arc::clone(&*rule) });
            }
        }
        out
    }

    /// The users that may authenticate to `bdb` (`default` if admitted), sorted
    /// by name as Redis lists its users, with their grants.
    pub fn users_of(&self, bdb: u32) -> Vec<(Arc<str>, Grant)> {
        let Some(b) = self.inner.bdbs.get(&bdb).map(|b| Arc::clone(&*b)) else { return Vec::new() };
        let access = b.access.load();
        let mut out = Vec::new();
        if access.default_user {
            out.push((default_user_name(), Grant::full_access()));
        }
        for e in self.inner.users.iter() {
            let Some(acl) = access.rule_for(&e.value().roles.load()) else { continue };
            if let Some(rule) = self.inner.acls.get(&acl) {
                out.push((Arc::clone(e.key()), Grant { key: RuleKey::Acl(acl), rule: Arc::clone(&*rule) }));
            }
        }
        out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        out
    }

    fn slot(&self, id: &SetId) -> Option<Arc<dyn SetSlot>> {
        match id {
            SetId::BdbDefault(uid) => self.inner.bdbs.get(uid).map(|b| Arc::clone(&*b) as Arc<dyn SetSlot>),
            SetId::User(name) => self.inner.users.get(&**name).map(|u| Arc::clone(&*u) as Arc<dyn SetSlot>),
        }
    }

    /// The current set (for a store to write, or for tests).
    pub fn passwords(&self, id: &SetId) -> Option<Arc<PasswordSet>> {
        self.slot(id).map(|s| s.cell().load_full())
    }

    /// Installs a set read back from a store.
    pub fn restore(&self, id: &SetId, set: PasswordSet) -> Result<(), ChangeError> {
        let slot = self.slot(id).ok_or(ChangeError::NotFound)?;
        slot.cell().store(Arc::new(set));
        Ok(())
    }

    /// Applies a password change in memory only. See [`change_with`](Self::change_with).
    pub async fn change(&self, id: &SetId, change: SetChange, password: &[u8]) -> Result<(), ChangeError> {
        self.change_with(id, change, password, |_| Ok(())).await
    }

    /// Applies a password change: computes the new set, hands it to `persist`, and
    /// swaps it in only if `persist` succeeded. Changes are serialised, so concurrent
    /// calls never lose one another's updates.
    pub async fn change_with<F>(
        &self,
        id: &SetId,
        change: SetChange,
        password: &[u8],
        persist: F,
    ) -> Result<(), ChangeError>
    where
        F: FnOnce(&PasswordSet) -> Result<(), String>,
    {
        let _writer = self.inner.writes.lock().await;
        let next = self.prepare(id, change, password).await?;
        persist(&next).map_err(ChangeError::Persist)?;
        self.install(id, next, change != SetChange::Add)
    }

    /// Computes the set `change` would produce, without applying it. The caller must
    /// serialise prepare → persist → [`install`](Self::install) for a set itself (the
    /// admin control plane holds its state lock across them).
    pub async fn prepare(
        &self,
        id: &SetId,
        change: SetChange,
        password: &[u8],
    ) -> Result<PasswordSet, ChangeError> {
        if password.is_empty() {
            return Err(ChangeError::Empty);
        }
        let slot = self.slot(id).ok_or(ChangeError::NotFound)?;
        let current = slot.cell().load_full();
        let secret = Zeroizing::new(password.to_vec());
        Ok(match change {
            SetChange::Add | SetChange::Remove => {
                let d = self.inner.hasher.derive(current.params(), current.salt(), secret).await?;
                match (change, current.contains(&d)) {
                    (SetChange::Add, true) => return Err(ChangeError::AlreadyPresent),
                    (SetChange::Add, false) => current.with_added(d),
                    (_, false) => return Err(ChangeError::NotPresent),
                    (_, true) if current.len() == 1 => return Err(ChangeError::LastPassword),
                    (_, true) => current.with_removed(&d),
                }
            }
            SetChange::Replace => {
                // Same salt while the cost parameters are unchanged: a password that
                // stays (PUT of one already in the set) keeps its digest, so the
                // connections that used it are not mistaken for ones whose password
                // went away. New parameters mean a fresh set, salt and all.
                let base = if current.params() == self.inner.params {
                    PasswordSet::with_salt(current.params(), current.salt())
                } else {
                    PasswordSet::empty(self.inner.params)
                };
                let d = self.inner.hasher.derive(base.params(), base.salt(), secret).await?;
                match current.find(&d).filter(|_| base.salt() == current.salt()) {
                    // The password stays: so do its id and its usage.
                    Some(entry) => base.with_entry(d, Arc::clone(entry)),
                    None => base.with_added(d),
                }
            }
        })
    }

    /// The set without the entries whose public ids are `ids` (no argon2: the
    /// caller names entries, not passwords). Same serialisation rule as
    /// [`prepare`](Self::prepare).
    pub fn prepare_without(&self, id: &SetId, ids: &[&str]) -> Result<PasswordSet, ChangeError> {
        let slot = self.slot(id).ok_or(ChangeError::NotFound)?;
        let current = slot.cell().load_full();
        if ids.iter().any(|i| current.entry(i).is_none()) {
            return Err(ChangeError::NotPresent);
        }
        let next = current.without_ids(ids);
        if next.is_empty() {
            return Err(ChangeError::LastPassword);
        }
        Ok(next)
    }

    /// A new set holding just `password`, with a fresh salt and today's parameters.
    pub async fn fresh_set(&self, password: &[u8]) -> Result<PasswordSet, ChangeError> {
        if password.is_empty() {
            return Err(ChangeError::Empty);
        }
        let fresh = PasswordSet::empty(self.inner.params);
        let secret = Zeroizing::new(password.to_vec());
        let d = self.inner.hasher.derive(fresh.params(), fresh.salt(), secret).await?;
        Ok(fresh.with_added(d))
    }

    /// Swaps in a prepared set. With `shrinking` (a password left the set) the cache
    /// entries of the set are dropped too; hits are re-checked anyway.
    pub fn install(&self, id: &SetId, set: PasswordSet, shrinking: bool) -> Result<(), ChangeError> {
        let slot = self.slot(id).ok_or(ChangeError::NotFound)?;
        slot.cell().store(Arc::new(set));
        if shrinking {
            self.inner.cache.purge(id);
        }
        Ok(())
    }

    /// Checks a named user's password regardless of any database (admin API logins).
    /// Same cost rules as [`authenticate`](Self::authenticate).
    pub async fn verify_user(&self, name: &str, password: &[u8]) -> bool {
        let Some((key, u)) = self.inner.users.get(name).map(|e| (Arc::clone(e.key()), Arc::clone(e.value())))
        else {
            let _ = self
                .decoy_evaluation(Checked::Decoy { bdb: None, user: Some(name.as_bytes()) }, password, None)
                .await;
            return false;
        };
        // No address: never throttled (admin logins have RS's lockout policy).
        matches!(self.check(SetId::User(key), u, password, None).await, Ok(Some(_)))
    }

    /// Spends one argon2 evaluation on nothing, so that a refusal needing no check
    /// takes as long as one that does (an admin API login naming no user).
    pub async fn decoy(&self, login: &[u8], password: &[u8]) {
        let _ = self.decoy_evaluation(Checked::Decoy { bdb: None, user: Some(login) }, password, None).await;
    }

    /// Checks `AUTH [user] password` for database `bdb`. `user` of `None` or
    /// `default` means the database's default user. Costs at most one argon2
    /// evaluation, and none for a password verified recently.
    pub async fn authenticate(&self, bdb: u32, user: Option<&[u8]>, password: &[u8]) -> Option<Identity> {
        // No address is never throttled.
        self.authenticate_from(bdb, user, password, None).await.unwrap_or(None)
    }

    /// [`authenticate`](Self::authenticate) for an attempt from `from`, queued for
    /// argon2 in that address's turn; `Err` if the address got throttled while the
    /// attempt waited (then nothing was evaluated and nothing is counted here: the
    /// caller refuses it as it refuses a throttled attempt at entry).
    pub(super) async fn authenticate_from(
        &self,
        bdb: u32,
        user: Option<&[u8]>,
        password: &[u8],
        from: Option<IpAddr>,
    ) -> Result<Option<Identity>, Throttled> {
        let (target, named) = self.resolve(bdb, user);
        let result = match target {
            Some((id, slot)) => self.check(id, slot, password, from).await?,
            None => {
                self.decoy_evaluation(Checked::Decoy { bdb: Some(bdb), user }, password, from).await?;
                None
            }
        };
        match named {
            Named::Default => {}
            Named::User(u) if result.is_some() => crate::metrics::inc(&u.auth_success),
            Named::User(u) => crate::metrics::inc(&u.auth_failure),
            Named::Unknown => crate::metrics::inc(&self.inner.unknown_user_failures),
        }
        Ok(result)
    }

    /// What an attempt from `from` does once its turn to evaluate comes: refused if
    /// its address was throttled while it waited (the failures of the attempts
    /// ahead of it are counted by now), so a burst from one address costs at most
    /// the throttle's budget in evaluations; else the cache is asked again.
    fn at_turn(&self, from: Option<IpAddr>, key: &[u8; 32]) -> AtTurn {
        if let Some(ip) = from
            && !self.inner.throttle.allows(ip)
        {
            return AtTurn::Refuse;
        }
        self.inner.cache.get(key).map_or(AtTurn::Evaluate, AtTurn::Known)
    }

    async fn check(
        &self,
        id: SetId,
        slot: Arc<dyn SetSlot>,
        password: &[u8],
        from: Option<IpAddr>,
    ) -> Result<Option<Identity>, Throttled> {
        let current = slot.cell().load_full();
        if current.is_empty() {
            self.decoy_evaluation(Checked::Set(&id), password, from).await?;
            return Ok(None);
        }
        let cache = &self.inner.cache;
        let salt = current.salt();
        let key = cache.key(Checked::Set(&id), current.params(), &salt, password);
        let (d, turn) = match cache.get(&key) {
            Some(d) => (d, None),
            None => {
                let secret = Zeroizing::new(password.to_vec());
                let derived = self
                    .inner
                    .hasher
                    .derive_unless(from, current.params(), salt, secret, || self.at_turn(from, &key));
                match derived.await {
                    Ok(Derived::Computed(d, turn)) => (d, Some(turn)),
                    Ok(Derived::Known(d)) => (d, None),
                    Ok(Derived::Refused) => return Err(Throttled),
                    Err(_) => return Ok(None),
                }
            }
        };
        let computed = turn.is_some();
        // Decided on the set as it is now (it may have changed during the ~20 ms of
        // argon2, or since the digest was cached): a removed password misses, one
        // added since matches. Only under the salt the digest was made with.
        let now = slot.cell().load_full();
        let entry = now.find(&d).filter(|_| now.salt() == salt);
        if computed {
            cache.insert(key, Some(id.clone()), d, entry.is_some());
        }
        // Only now may the next attempt of the same password look for it.
        drop(turn);
        Ok(match entry {
            Some(entry) => {
                if !computed {
                    cache.record_hit();
                }
                Some(identity(id, d, Arc::clone(entry)))
            }
            None => {
                if !computed {
                    cache.record_known_miss();
                }
                None
            }
        })
    }

    /// Whether the password `identity` authenticated with is still in its set.
    pub fn is_current(&self, identity: &Identity) -> bool {
        self.slot(&identity.set).is_some_and(|s| s.cell().load().contains(&identity.digest))
    }

    /// The set `AUTH [user]` checks on database `bdb` (if any), and whom to count
    /// the outcome for.
    fn resolve(&self, bdb: u32, user: Option<&[u8]>) -> (Option<Target>, Named) {
        let named = match user {
            None => None,
            Some(name) if name == DEFAULT_USER.as_bytes() => None,
            Some(name) => {
                let found = std::str::from_utf8(name).ok().and_then(|n| {
                    self.inner.users.get(n).map(|e| (Arc::clone(e.key()), Arc::clone(e.value())))
                });
                match found {
                    Some(found) => Some(found),
                    None => return (None, Named::Unknown),
                }
            }
        };
        let Some(b) = self.inner.bdbs.get(&bdb).map(|b| Arc::clone(&*b)) else {
            let counted = named.map_or(Named::Default, |(_, u)| Named::User(u));
            return (None, counted);
        };
        let access = b.access.load();
        match named {
            None if access.default_user => (Some((SetId::BdbDefault(bdb), b)), Named::Default),
            None => (None, Named::Default),
            Some((key, u)) => {
                let admitted = access.rule_for(&u.roles.load()).is_some();
                let target = admitted.then(|| (SetId::User(key), Arc::clone(&u) as Arc<dyn SetSlot>));
                (target, Named::User(u))
            }
        }
    }

    /// An evaluation that can only fail, so that a failure costs the same whatever
    /// its reason; cached like a real one (a repeated attempt is fast for an unknown
    /// user exactly as for an existing one, or its speed would say which it is).
    async fn decoy_evaluation(
        &self,
        what: Checked<'_>,
        password: &[u8],
        from: Option<IpAddr>,
    ) -> Result<(), Throttled> {
        let d = &self.inner.decoy;
        let cache = &self.inner.cache;
        let key = cache.key(what, d.params(), &d.salt(), password);
        if cache.get(&key).is_some() {
            cache.record_known_miss();
            return Ok(());
        }
        let secret = Zeroizing::new(password.to_vec());
        match self
            .inner
            .hasher
            .derive_unless(from, d.params(), d.salt(), secret, || self.at_turn(from, &key))
            .await
        {
            // Remembered before the turn goes (dropped at the end of the arm).
            Ok(Derived::Computed(digest, _turn)) => cache.insert(key, None, digest, false),
            Ok(Derived::Known(_)) => cache.record_known_miss(),
            Ok(Derived::Refused) => return Err(Throttled),
            Err(_) => {}
        }
        Ok(())
    }
}

/// An attempt refused at its turn: its address was throttled while it waited.
#[derive(Debug)]
pub(super) struct Throttled;

fn identity(set: SetId, digest: Digest, usage: Arc<Usage>) -> Identity {
    Identity { set, digest, usage }
}

/// The set an AUTH is checked against.
type Target = (SetId, Arc<dyn SetSlot>);

/// Whose AUTH counters an attempt counts toward.
enum Named {
    /// The database's default user (counted per database only).
    Default,
    User(Arc<UserAuth>),
    /// A name no user has: counted without the name, which came from the network.
    Unknown,
}

/// Anything that holds a swappable password set.
trait SetSlot: Send + Sync {
    fn cell(&self) -> &ArcSwap<PasswordSet>;
}

impl SetSlot for BdbAuth {
    fn cell(&self) -> &ArcSwap<PasswordSet> {
        &self.passwords
    }
}

impl SetSlot for UserAuth {
    fn cell(&self) -> &ArcSwap<PasswordSet> {
        &self.passwords
    }
}
