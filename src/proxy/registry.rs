//! The connections of one database and who each is authenticated as, so that the
//! admin side can close exactly the ones a password removal or user deletion affects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;

/// One registered connection.
#[derive(Debug)]
pub struct SessionSlot {
    identity: Mutex<Option<Identity>>,
    kill: CancellationToken,
}

impl SessionSlot {
    /// Records who the connection is now authenticated as (`None` after RESET).
    pub fn set_identity(&self, identity: Option<Identity>) {
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = identity;
    }

    /// Closes the connection (both halves), as the admin side does.
    pub fn kill_switch(&self) -> CancellationToken {
        self.kill.clone()
    }

    fn identity(&self) -> Option<Identity> {
        self.identity.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    next: AtomicU64,
    map: DashMap<u64, Arc<SessionSlot>>,
}

/// Removes its connection from the registry when dropped.
pub struct Registration<'a> {
    sessions: &'a Sessions,
    id: u64,
    pub slot: Arc<SessionSlot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sessions.map.remove(&self.id);
    }
}

impl Sessions {
    /// Registers a connection; `kill` ends it.
    pub fn register(&self, kill: CancellationToken) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(SessionSlot { identity: Mutex::new(None), kill });
        self.map.insert(id, Arc::clone(&slot));
        Registration { sessions: self, id, slot }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Closes every authenticated connection whose identity matches; returns how many.
    pub fn close_where(&self, mut matches: impl FnMut(&Identity) -> bool) -> usize {
        let mut closed = 0;
        for e in self.map.iter() {
            if e.identity().as_ref().is_some_and(&mut matches) {
                e.kill.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        for e in self.map.iter() {
            e.kill.cancel();
        }
    }
}
