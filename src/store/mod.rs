//! Durable state behind a small interface: the embedded file store for one node,
//! or a Redis store shared by a fleet of turnstile nodes.

pub mod events;
pub mod file;
pub mod fleet;
pub mod redis;
pub mod state;

pub use file::FileStore;
pub use fleet::{Fleet, NodeRecord};
pub use redis::RedisStore;
pub use state::State;

/// Which state a store holds: a counter moved by every commit, and the content's
/// hash. Both are compared, since a store that failed over can reuse a number for
/// different content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revision {
    pub number: u64,
    pub hash: [u8; 32],
}

impl Revision {
    /// The revision of a store never written.
    pub const EMPTY: Self = Self { number: 0, hash: [0; 32] };

    /// The hash as hex (how the Redis store keeps it).
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

/// The state's canonical bytes (compact JSON: maps are ordered, so equal states give
/// equal bytes) and their hash. Generic over the whole `State`: new fields need no
/// store change.
pub fn encode(state: &State) -> Result<(Vec<u8>, [u8; 32]), StoreError> {
    let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let hash = *blake3::hash(&bytes).as_bytes();
    Ok((bytes, hash))
}

/// A state with the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub state: State,
    pub revision: Revision,
}

/// How a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub revision: Revision,
    /// `[store] min_replicas` was set and fewer replicas confirmed the write in time:
    /// the primary has it, its durability is not what was asked for.
    pub unreplicated: bool,
}

/// Persistence of the whole state. `commit` returns only once the state is durable.
/// Implementations are called from a blocking thread, never from the data path.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The last committed state, or `None` for a store that was never written.
    fn load(&self) -> Result<Option<Loaded>, StoreError>;
    /// Makes `state` durable, atomically replacing the previous one, if the store
    /// still holds `base` (compare-and-set); else [`StoreError::Conflict`] and
    /// nothing is written.
    fn commit(&self, base: &Revision, state: &State) -> Result<Committed, StoreError>;
    /// The fleet operations of a store that nodes share; `None` for a store of one.
    fn fleet(&self) -> Option<&dyn Fleet> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// Another writer committed since `base` was read.
    #[error("the store changed since it was read (now at revision {0})")]
    Conflict(u64),
    /// The shared store cannot be reached, or did not answer in time.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}
