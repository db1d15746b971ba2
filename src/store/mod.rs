//! Durable state behind a small interface, so a shared backend for a fleet of
//! turnstile nodes can replace the embedded file store.

pub mod events;
pub mod file;
pub mod state;

pub use file::FileStore;
pub use state::State;

/// Persistence of the whole state. `commit` returns only once the state is durable.
/// Implementations are called from a blocking thread, never from the data path.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The last committed state, or `None` for a store that was never written.
    fn load(&self) -> Result<Option<State>, StoreError>;
    /// Makes `state` durable, atomically replacing the previous one.
    fn commit(&self, state: &State) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}
