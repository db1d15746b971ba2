//! turnstile's own secret for its upstream users: one random key (kept in memory
//! and in the store only) from which each upstream user's password is derived, and
//! a random instance id that keeps the names of several installations apart.

use zeroize::Zeroizing;

/// See the module documentation. Never printed: `Debug` shows the instance only.
#[derive(Clone)]
pub struct Secret {
    instance: String,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Secret {
    /// A fresh instance id and key from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; 4];
        // A machine without entropy cannot run turnstile safely at all.
        getrandom::fill(&mut key[..]).expect("the OS random number generator failed");
        getrandom::fill(&mut id).expect("the OS random number generator failed");
        Self { instance: hex(&id), key }
    }

    /// Reads back what [`Self::instance`] and [`Self::key_hex`] gave.
    pub fn from_parts(instance: &str, key_hex: &str) -> Option<Self> {
        let valid_id =
            !instance.is_empty() && instance.len() <= 16 && instance.bytes().all(|b| b.is_ascii_hexdigit());
        let key = unhex32(key_hex)?;
        valid_id.then(|| Self { instance: instance.to_string(), key: Zeroizing::new(key) })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The key, for the store only.
    pub fn key_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex(&self.key[..]))
    }

    /// The prefix of every upstream user name of database `bdb`.
    pub fn prefix(&self, bdb: u32) -> String {
        format!("{}{}:{bdb}:", super::USER_PREFIX, self.instance)
    }

    /// The upstream password of the user `name`: a keyed hash, so it needs no
    /// storage of its own and is the same on every start.
    pub fn password(&self, name: &str) -> Zeroizing<String> {
        let h = blake3::keyed_hash(&self.key, name.as_bytes());
        Zeroizing::new(hex(h.as_bytes()))
    }
}

/// The upstream password of internal user `name`, from the store's hex key (for
/// tests that search replies for every secret turnstile holds).
pub fn derive_password(key_hex: &str, name: &str) -> Option<String> {
    let key = unhex32(key_hex)?;
    let s = Secret { instance: String::new(), key: Zeroizing::new(key) };
    Some(s.password(name).to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_derives() {
        let s = Secret::random();
        let back = Secret::from_parts(s.instance(), &s.key_hex()).unwrap();
        assert_eq!(*s.password("a"), *back.password("a"));
        assert_ne!(*s.password("a"), *s.password("b"));
        assert_eq!(derive_password(&s.key_hex(), "a").unwrap(), *s.password("a"));
        assert!(!format!("{s:?}").contains(&*s.key_hex()));
        assert!(Secret::from_parts("zz", &s.key_hex()).is_none());
        assert!(Secret::from_parts(s.instance(), "00").is_none());
        assert!(s.prefix(3).starts_with("__turnstile:") && s.prefix(3).ends_with(":3:"));
    }
}
