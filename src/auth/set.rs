//! An immutable password set: argon2id digests sharing one salt and one cost.
//!
//! Why one salt per set rather than per password: with per-password salts, checking
//! a wrong password against a set of N would cost N argon2 evaluations, so a failed
//! `AUTH` would get slower (and cheaper to abuse) as operators add passwords during a
//! rotation. With a shared salt it is always exactly one evaluation, followed by
//! constant-time comparisons. Salts still differ between sets (a set gets a new one
//! when the cost parameters change), so equal passwords in two sets do not have equal
//! hashes.

use base64ct::{Base64Unpadded, Encoding};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use std::sync::Arc;

use super::hasher::{Digest, HashParams, SALT_LEN, random_salt};
use super::usage::Usage;

/// A set of password digests. Never mutated: writers build a new one and swap it in.
/// Each digest has its entry (public id, usage) at the same index; entries move
/// with their digests into the sets built from this one.
#[derive(Clone)]
pub struct PasswordSet {
    params: HashParams,
    salt: [u8; SALT_LEN],
    digests: Vec<Digest>,
    entries: Vec<Arc<Usage>>,
}

/// Equal when they accept the same passwords the same way (ids aside).
impl PartialEq for PasswordSet {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params && self.salt == other.salt && self.digests == other.digests
    }
}

impl Eq for PasswordSet {}

impl std::fmt::Debug for PasswordSet {
    // Never print digests: they are password hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordSet").field("len", &self.digests.len()).finish_non_exhaustive()
    }
}

/// A stored hash could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed password hash: {0}")]
pub struct PhcError(&'static str);

impl PasswordSet {
    /// An empty set with a fresh salt.
    pub fn empty(params: HashParams) -> Self {
        Self { params, salt: random_salt(), digests: Vec::new(), entries: Vec::new() }
    }

    /// An empty set with a given salt and parameters.
    pub fn with_salt(params: HashParams, salt: [u8; SALT_LEN]) -> Self {
        Self { params, salt, digests: Vec::new(), entries: Vec::new() }
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    pub fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `digest` is in the set. Compares against every entry without an
    /// early exit, so the time taken says nothing about which entry matched.
    pub fn contains(&self, digest: &Digest) -> bool {
        let mut found = subtle::Choice::from(0);
        for d in &self.digests {
            found |= d.ct_eq(digest);
        }
        found.into()
    }

    /// The entry of `digest`, if it is in the set. Like [`contains`](Self::contains),
    /// looks at every entry without an early exit; the index is selected in
    /// constant time too.
    pub fn find(&self, digest: &Digest) -> Option<&Arc<Usage>> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, d) in self.digests.iter().enumerate() {
            let hit = d.ct_eq(digest);
            index.conditional_assign(&(i as u64), hit);
            found |= hit;
        }
        bool::from(found).then(|| &self.entries[index as usize])
    }

    /// The entries (public ids and usage), in the order passwords were added.
    pub fn entries(&self) -> &[Arc<Usage>] {
        &self.entries
    }

    /// The entry with public id `id`.
    pub fn entry(&self, id: &str) -> Option<&Arc<Usage>> {
        self.entries.iter().find(|e| e.id() == id)
    }

    /// This set plus `digest`, with a new entry.
    pub fn with_added(&self, digest: Digest) -> Self {
        self.with_entry(digest, Usage::fresh())
    }

    /// This set plus `digest`, with the given entry (one that stays through a PUT).
    pub fn with_entry(&self, digest: Digest, entry: Arc<Usage>) -> Self {
        let mut next = self.clone();
        next.digests.push(digest);
        next.entries.push(entry);
        next
    }

    /// This set without `digest`.
    pub fn with_removed(&self, digest: &Digest) -> Self {
        self.retain(|d, _| !bool::from(d.ct_eq(digest)))
    }

    /// This set without the entries whose ids are in `ids`.
    pub fn without_ids(&self, ids: &[&str]) -> Self {
        self.retain(|_, e| !ids.contains(&e.id()))
    }

    fn retain(&self, keep: impl Fn(&Digest, &Arc<Usage>) -> bool) -> Self {
        let mut next = Self::with_salt(self.params, self.salt);
        for (d, e) in self.digests.iter().zip(&self.entries) {
            if keep(d, e) {
                next.digests.push(*d);
                next.entries.push(Arc::clone(e));
            }
        }
        next
    }

    /// The same set with the entries' ids (and last use) read back from the store,
    /// by position; positions without one keep their fresh id.
    pub fn with_ids(mut self, ids: &[(&str, Option<u64>)]) -> Self {
        for (e, (id, last_used)) in self.entries.iter_mut().zip(ids) {
            *e = Usage::with_id(id, *last_used);
        }
        self
    }

    /// One PHC string per password (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), the
    /// standard form a store or another argon2 tool can read.
    pub fn to_phc(&self) -> Vec<String> {
        let p = self.params;
        let salt = Base64Unpadded::encode_string(&self.salt);
        self.digests
            .iter()
            .map(|d| {
                format!(
                    "$argon2id$v=19$m={},t={},p={}${salt}${}",
                    p.m_cost,
                    p.t_cost,
                    p.p_cost,
                    Base64Unpadded::encode_string(d)
                )
            })
            .collect()
    }

    /// Reads back what [`to_phc`](Self::to_phc) wrote. All entries must share salt
    /// and parameters; an empty list gives an empty set with `default_params`.
    pub fn from_phc(entries: &[String], default_params: HashParams) -> Result<Self, PhcError> {
        let mut set: Option<Self> = None;
        for e in entries {
            let (params, salt, digest) = parse_phc(e)?;
            match &mut set {
                None => {
                    set = Some(Self { params, salt, digests: vec![digest], entries: vec![Usage::fresh()] })
                }
                Some(s) if s.params == params && s.salt == salt => {
                    s.digests.push(digest);
                    s.entries.push(Usage::fresh());
                }
                Some(_) => {
                    return Err(PhcError("entries of one set must share salt and parameters"));
                }
            }
        }
        Ok(set.unwrap_or_else(|| Self::empty(default_params)))
    }
}

fn parse_phc(s: &str) -> Result<(HashParams, [u8; SALT_LEN], Digest), PhcError> {
    let parts: Vec<&str> = s.split('$').collect();
    let ["", "argon2id", "v=19", params, salt, hash] = parts.as_slice() else {
        return Err(PhcError("expected $argon2id$v=19$m=..,t=..,p=..$salt$hash"));
    };
    let mut p = HashParams::default();
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=').ok_or(PhcError("bad parameter"))?;
        let v: u32 = v.parse().map_err(|_| PhcError("bad parameter value"))?;
        match k {
            "m" => p.m_cost = v,
            "t" => p.t_cost = v,
            "p" => p.p_cost = v,
            _ => return Err(PhcError("unknown parameter")),
        }
    }
    let mut salt_buf = [0u8; SALT_LEN];
    let salt_len = Base64Unpadded::decode(salt, &mut salt_buf).map_err(|_| PhcError("bad salt"))?.len();
    let mut digest = [0u8; 32];
    let digest_len = Base64Unpadded::decode(hash, &mut digest).map_err(|_| PhcError("bad hash"))?.len();
    if salt_len != SALT_LEN || digest_len != 32 {
        return Err(PhcError("unexpected salt or hash length"));
    }
    Ok((p, salt_buf, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_contains() {
        let s = PasswordSet::empty(HashParams::default()).with_added([1; 32]).with_added([2; 32]);
        assert!(s.contains(&[1; 32]) && s.contains(&[2; 32]) && !s.contains(&[3; 32]));
        let s = s.with_removed(&[1; 32]);
        assert!(!s.contains(&[1; 32]) && s.len() == 1);
    }

    #[test]
    fn entries_follow_their_digests() {
        let s = PasswordSet::empty(HashParams::default()).with_added([1; 32]).with_added([2; 32]);
        let (a, b) = (s.entries()[0].id().to_string(), s.entries()[1].id().to_string());
        assert_eq!(s.find(&[2; 32]).unwrap().id(), b);
        assert!(s.find(&[3; 32]).is_none());
        let s = s.with_removed(&[1; 32]).with_added([3; 32]);
        assert_eq!(s.entries()[0].id(), b, "the remaining entry keeps its id");
        assert_eq!(s.find(&[2; 32]).unwrap().id(), b);
        assert_ne!(s.find(&[3; 32]).unwrap().id(), a);
        let s = s.without_ids(&[&b]);
        assert_eq!(s.len(), 1);
        assert!(!s.contains(&[2; 32]) && s.contains(&[3; 32]));
    }

    #[test]
    fn phc_round_trip() {
        let s = PasswordSet::empty(HashParams { m_cost: 64, t_cost: 1, p_cost: 1 })
            .with_added([7; 32])
            .with_added([9; 32]);
        let phc = s.to_phc();
        assert!(phc[0].starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(PasswordSet::from_phc(&phc, HashParams::default()).unwrap(), s);
        assert!(PasswordSet::from_phc(&["$argon2i$x".into()], HashParams::default()).is_err());
    }

    #[test]
    fn debug_never_shows_digests() {
        let s = PasswordSet::empty(HashParams::default()).with_added([0xab; 32]);
        assert!(!format!("{s:?}").contains("171"));
    }
}
