//! The connections of one database and who each is authenticated as, so that the
//! admin side can close exactly the ones a password removal or user deletion affects.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::admission::Permit;
use super::kill::Kill;
use crate::auth::Identity;
use crate::authz::RuleKey;
use dashmap::DashMap;

/// One registered connection.
#[derive(Debug)]
pub struct SessionSlot {
    identity: Mutex<Option<Identity>>,
    /// The rule whose upstream user the connection's own upstream connection is
    /// logged in as, if it has one: a change of the identity's rule closes it.
    own_rule: Mutex<Option<RuleKey>>,
    kill: Kill,
    /// Counts the connection as unauthenticated until its first successful AUTH.
    unauthenticated: Mutex<Option<Permit>>,
    /// The client's address, for the rotation GET's sample of who uses a password.
    peer: Option<SocketAddr>,
    /// What the client said about itself (`CLIENT SETNAME`, `HELLO … SETNAME`,
    /// `CLIENT SETINFO LIB-NAME`). Written only by those rare commands; boxed, so a
    /// connection that never names itself pays 8 bytes, not 48 (the slot then fits
    /// the allocator's 256-byte class instead of 320).
    names: Mutex<Option<Box<ClientNames>>>,
    /// Whether the connection read anything lately; asks it to park when not.
    park: super::park::ParkSignal,
}

/// Longest client name or library name kept (Redis bounds neither; a sample
/// shown to operators needs no more).
const MAX_NAME: usize = 128;

/// What a client said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientNames {
    pub name: Option<String>,
    pub lib_name: Option<String>,
}

/// One open connection, as the rotation GET shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSample {
    pub address: Option<SocketAddr>,
    pub names: ClientNames,
}

fn bounded(v: &[u8]) -> Option<String> {
    (!v.is_empty()).then(|| String::from_utf8_lossy(&v[..v.len().min(MAX_NAME)]).into_owned())
}

impl SessionSlot {
    /// A connection's slot: `kill` ends it; `permit` (if any) is released when it
    /// authenticates.
    pub fn new(kill: Kill, permit: Option<Permit>, peer: Option<SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            identity: Mutex::new(None),
            own_rule: Mutex::new(None),
            kill,
            unauthenticated: Mutex::new(permit),
            peer,
            names: Mutex::new(None),
            park: super::park::ParkSignal::default(),
        })
    }

    /// Records who the connection is now authenticated as (`None` after RESET).
    pub fn set_identity(&self, identity: Option<Identity>) {
        if identity.is_some() {
            // Authenticated: from now on only `max_connections` bounds it. (A RESET
            // later does not count it again: it has shown it holds a password.)
            self.unauthenticated.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = identity;
    }

    /// Closes the connection (both halves), as the admin side does.
    pub fn kill_switch(&self) -> Kill {
        self.kill.clone()
    }

    fn identity(&self) -> Option<Identity> {
        self.identity.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records whom the connection's own upstream connection is logged in as.
    pub fn set_own_rule(&self, rule: Option<RuleKey>) {
        *self.own_rule.lock().unwrap_or_else(|p| p.into_inner()) = rule;
    }

    fn own_rule(&self) -> Option<RuleKey> {
        *self.own_rule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `CLIENT SETNAME name` (an empty name clears it, as in Redis).
    pub fn set_name(&self, name: &[u8]) {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_default().name = bounded(name);
    }

    /// `CLIENT SETINFO LIB-NAME name`.
    pub fn set_lib_name(&self, name: &[u8]) {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_default().lib_name = bounded(name);
    }

    /// Ends the connection: both halves, or the parked wait.
    pub fn close(&self) {
        self.kill.kill();
    }

    /// The connection's activity mark and park request.
    pub fn park(&self) -> &super::park::ParkSignal {
        &self.park
    }

    /// The client's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn sample(&self) -> ClientSample {
        ClientSample {
            address: self.peer,
            names: self
                .names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_deref()
                .cloned()
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    next: AtomicU64,
    map: DashMap<u64, Arc<SessionSlot>>,
    /// Set by [`Self::close_all`] (the database is stopped): a connection that
    /// registers later (accepted just before the listener stopped) is closed at once.
    closed: std::sync::atomic::AtomicBool,
    /// Set by [`Self::stop_all`] (shutdown): a connection that registers later is
    /// asked to stop at once.
    stopping: std::sync::atomic::AtomicBool,
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
    /// Registers a connection; `kill` ends it; `permit` (if any) is released when it
    /// authenticates.
    pub fn register(&self, kill: Kill, permit: Option<Permit>, peer: Option<SocketAddr>) -> Registration<'_> {
        self.insert(SessionSlot::new(kill, permit, peer))
    }

    /// Registers a connection whose slot is made already.
    pub fn insert(&self, slot: Arc<SessionSlot>) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.insert(id, Arc::clone(&slot));
        // SeqCst on both sides: either `close_all` sees this entry, or this sees
        // its flag.
        if self.closed.load(Ordering::SeqCst) {
            slot.close();
        }
        if self.stopping.load(Ordering::SeqCst) {
            slot.kill.stop();
        }
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
                e.close();
                closed += 1;
            }
        }
        closed
    }

    /// Closes every authenticated connection `revoked` selects, given its
    /// identity and the rule its own upstream connection is logged in as (if it
    /// has one); returns how many.
    pub fn close_revoked(&self, mut revoked: impl FnMut(&Identity, Option<RuleKey>) -> bool) -> usize {
        let mut closed = 0;
        for e in self.map.iter() {
            if let Some(id) = e.identity()
                && revoked(&id, e.own_rule())
            {
                e.close();
                closed += 1;
            }
        }
        closed
    }

    /// Calls `each` with the password entry id and the sample of every
    /// authenticated connection (admin side: the rotation GET).
    pub fn for_each_client(&self, mut each: impl FnMut(&str, ClientSample)) {
        for e in self.map.iter() {
            if let Some(id) = e.identity() {
                each(id.usage.id(), e.sample());
            }
        }
    }

    /// One parking sweep (see [`super::park`]): connections that read nothing since
    /// the last sweep are asked to park.
    pub fn sweep_idle(&self) {
        for e in self.map.iter() {
            e.park.sweep();
        }
    }

    /// Closes every connection, and every one that registers from now on (the
    /// database is stopped).
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for e in self.map.iter() {
            e.close();
        }
    }

    /// Asks every connection, and every one that registers from now on, to finish
    /// what it owes and close (the listener, at shutdown: see [`Kill::stopping`]).
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for e in self.map.iter() {
            e.kill.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_database_closes_connections_that_register_after_it_stopped() {
        let sessions = Sessions::default();
        let (before, after) = (Kill::new(), Kill::new());
        let first = sessions.register(before.clone(), None, None);
        sessions.close_all();
        assert!(before.is_killed(), "a registered connection is closed");
        // Accepted just before the listener stopped, registered just after.
        let late = sessions.register(after.clone(), None, None);
        assert!(after.is_killed(), "a late one is closed at once");
        drop((first, late));
        assert!(sessions.is_empty());
    }

    #[test]
    fn shutdown_asks_connections_that_register_after_it_to_stop_too() {
        let asked = |k: &Kill| {
            let mut f = std::pin::pin!(k.stopping());
            f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_ready()
        };
        let sessions = Sessions::default();
        let (before, after) = (Kill::new(), Kill::new());
        let first = sessions.register(before.clone(), None, None);
        assert!(!asked(&before), "not before shutdown");
        sessions.stop_all();
        assert!(asked(&before), "a registered connection is asked to stop");
        assert!(!before.is_killed(), "asked to stop, not killed: it delivers what it owes");
        let late = sessions.register(after.clone(), None, None);
        assert!(asked(&after), "a late one is asked at once");
        drop((first, late));
    }
}
