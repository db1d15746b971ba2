//! The bound on unauthenticated database connections, in all and per source
//! address, shared by every database listener of the process. A connection holds a
//! [`Permit`] from accept until its first successful AUTH (or until it closes);
//! after that it counts only toward its database's `max_connections`.
//!
//! When the bound in all is reached, a newcomer from an address that holds fewer
//! unauthenticated connections than the address holding the most still gets in, and
//! that address's oldest unauthenticated connection is closed to make room. Why: a
//! flood spread over many addresses, each under its own bound, would otherwise fill
//! the bound in all and keep every other address out of the port for as long as it
//! lasts. An address only ever loses connections to one that holds fewer than it, so
//! clients that authenticate (and leave the count) are not the ones closed while a
//! flooding address holds more, and a flooding address cannot take room from others
//! by reconnecting: it is the one holding most.
//!
//! The admin API keeps an [`Admission`] of its own, per address only, for the whole
//! life of each of its connections (`admin::serve`): with no bound in all and no
//! kill switch bound to its permits, nothing of it is ever closed to make room.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::kill::Kill;

/// Who may still connect without having authenticated. Cheap to share.
#[derive(Debug)]
pub struct Admission {
    /// 0 = no bound.
    max_total: usize,
    /// 0 = no bound.
    max_per_address: usize,
    total: AtomicUsize,
    /// Kept only when there is a bound (admission is once per connection, and per
    /// connection again at its first AUTH or close: one lock each is nothing there).
    held: Mutex<Held>,
}

/// The unauthenticated connections, by address.
#[derive(Debug, Default)]
struct Held {
    /// Each address's connections, oldest first (by admission number). An address
    /// leaves the map when its last one authenticates or closes, so the map is
    /// bounded by `total`.
    by_address: HashMap<IpAddr, BTreeMap<u64, Arc<Closer>>>,
    /// (how many, address) of every address in `by_address`: the last holds the most.
    by_count: BTreeSet<(usize, IpAddr)>,
    next: u64,
}

/// How to close an unauthenticated connection to make room: its kill switch (see
/// [`Permit::bind`]; a TLS connection has one for its handshake, then its session's).
#[derive(Debug, Default)]
struct Closer {
    kill: Mutex<Option<Kill>>,
}

impl Closer {
    fn kill(&self) -> Option<Kill> {
        self.kill.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts one unauthenticated connection until dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
    /// Its admission number; `None` when no bound is kept.
    id: Option<u64>,
    closer: Arc<Closer>,
}

/// Which bound a new connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Held {
    fn count(&self, ip: &IpAddr) -> usize {
        self.by_address.get(ip).map_or(0, BTreeMap::len)
    }

    /// Moves `ip` from `before` connections to `after` in `by_count`.
    fn recount(&mut self, ip: IpAddr, before: usize, after: usize) {
        if before > 0 {
            self.by_count.remove(&(before, ip));
        }
        if after > 0 {
            self.by_count.insert((after, ip));
        }
    }

    fn insert(&mut self, ip: IpAddr, closer: Arc<Closer>) -> u64 {
        let id = self.next;
        self.next += 1;
        let conns = self.by_address.entry(ip).or_default();
        conns.insert(id, closer);
        let after = conns.len();
        self.recount(ip, after - 1, after);
        id
    }

    /// Takes connection `id` of `ip` out of the count; false if it was not in it
    /// (closed to make room already).
    fn remove(&mut self, ip: IpAddr, id: u64) -> bool {
        let Some(conns) = self.by_address.get_mut(&ip) else { return false };
        if conns.remove(&id).is_none() {
            return false;
        }
        let after = conns.len();
        if after == 0 {
            self.by_address.remove(&ip);
        }
        self.recount(ip, after + 1, after);
        true
    }

    /// Picks the oldest connection of the address holding the most (or, if none of
    /// its connections can be closed yet, of the next one down) among those that
    /// hold more than `ip` will once admitted, and takes it out of the count now
    /// (its permit finds itself gone when it drops). The caller throws the returned
    /// switch once the lock is released.
    fn make_room_for(&mut self, ip: IpAddr) -> Option<Kill> {
        let newcomer = self.count(&ip) + 1;
        let (victim, from) =
            self.by_count.iter().rev().take_while(|(n, _)| *n > newcomer).find_map(|(_, addr)| {
                // One admitted a moment ago may not have its kill switch yet.
                let conns = self.by_address.get(addr)?;
                conns.iter().find_map(|(id, c)| c.kill().map(|k| ((*id, k), *addr)))
            })?;
        self.remove(from, victim.0);
        tracing::debug!(%from, "closing its oldest unauthenticated connection to make room for another address");
        Some(victim.1)
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_address, total: AtomicUsize::new(0), held: Mutex::default() })
    }

    /// No bound at all (tests, and contexts made before the control plane sets one).
    pub fn unlimited() -> Arc<Self> {
        Self::new(0, 0)
    }

    /// Unauthenticated connections open now.
    pub fn unauthenticated(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn bounded(&self) -> bool {
        self.max_total > 0 || self.max_per_address > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit for a new connection from `ip`, unless a bound is reached (the
    /// bound in all only when no other address holds more than `ip` would: see
    /// the module documentation).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let closer = Arc::new(Closer::default());
        if !self.bounded() {
            self.total.fetch_add(1, Ordering::AcqRel);
            return Ok(Permit { admission: Arc::clone(self), ip, id: None, closer });
        }
        let mut held = self.lock();
        if self.max_per_address > 0 && held.count(&ip) >= self.max_per_address {
            return Err(Refused::PerAddress);
        }
        // `total` changes only under the lock when a bound is kept, so "full" read
        // here is never a connection already on its way out.
        let mut evicted = None;
        if self.max_total > 0 && self.total.load(Ordering::Acquire) >= self.max_total {
            evicted = Some(held.make_room_for(ip).ok_or(Refused::Total)?);
            self.total.fetch_sub(1, Ordering::AcqRel);
        }
        let id = held.insert(ip, Arc::clone(&closer));
        self.total.fetch_add(1, Ordering::AcqRel);
        drop(held);
        // Thrown outside the lock: waking its task is none of the admission's work.
        if let Some(kill) = evicted {
            kill.kill();
        }
        Ok(Permit { admission: Arc::clone(self), ip, id: Some(id), closer })
    }
}

impl Permit {
    /// The connection's kill switch: from now on it can be closed to make room.
    pub fn bind(&self, kill: &Kill) {
        let mut slot = self.closer.kill.lock().unwrap_or_else(|p| p.into_inner());
        // A switch bound later replaces an earlier one (a TLS handshake's, then the
        // session's); if the earlier one was thrown already, so is the later one.
        if slot.as_ref().is_some_and(Kill::is_killed) {
            kill.kill();
        }
        *slot = Some(kill.clone());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        match self.id {
            None => {
                a.total.fetch_sub(1, Ordering::AcqRel);
            }
            Some(id) => {
                // Under the lock, with the entry: see `admit`.
                let held = a.lock().remove(self.ip, id);
                if held {
                    a.total.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));
    const D: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 4));
    const E: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5));

    fn bound(adm: &Arc<Admission>, ip: IpAddr) -> (Permit, Kill) {
        let p = adm.admit(ip).unwrap();
        let k = Kill::new();
        p.bind(&k);
        (p, k)
    }

    #[test]
    fn bounds_per_address_then_in_all() {
        let adm = Admission::new(3, 2);
        let a1 = adm.admit(A).unwrap();
        let _a2 = adm.admit(A).unwrap();
        assert_eq!(adm.admit(A).unwrap_err(), Refused::PerAddress);
        let _b1 = adm.admit(B).unwrap();
        // Full; A holds the most, but its connections have no kill switch yet.
        assert_eq!(adm.admit(C).unwrap_err(), Refused::Total, "3 in all");
        assert_eq!(adm.admit(B).unwrap_err(), Refused::Total, "B would hold as many as A");
        assert_eq!(adm.unauthenticated(), 3);
        drop(a1);
        let _a3 = adm.admit(A).unwrap();
        assert_eq!(adm.unauthenticated(), 3);
    }

    /// Full: a newcomer from an address holding fewer takes the place of the
    /// oldest connection of the address holding the most, which is closed; the
    /// address holding the most cannot do the same to others.
    #[test]
    fn the_bound_in_all_makes_room_from_the_address_holding_most() {
        let adm = Admission::new(4, 3);
        let (a1, ka1) = bound(&adm, A);
        let (_a2, ka2) = bound(&adm, A);
        let (_a3, _) = bound(&adm, A);
        let (_b1, kb1) = bound(&adm, B);
        let (_c1, _) = bound(&adm, C);
        assert!(ka1.is_killed() && !ka2.is_killed() && !kb1.is_killed(), "A's oldest went");
        assert_eq!(adm.unauthenticated(), 4);
        // A (2 now), B (1), C (1): B would hold as many as A, so it waits; an
        // address holding none takes A's next oldest; then all hold one each.
        assert_eq!(adm.admit(B).unwrap_err(), Refused::Total, "B would hold as many as A");
        let (_d1, _) = bound(&adm, D);
        assert!(ka2.is_killed());
        assert_eq!(adm.admit(E).unwrap_err(), Refused::Total, "every address holds one");
        assert_eq!(adm.admit(A).unwrap_err(), Refused::Total);
        // The closed connection's permit going later counts nothing twice.
        drop(a1);
        assert_eq!(adm.unauthenticated(), 4);
        let held = adm.lock();
        assert_eq!(held.by_count.iter().map(|(n, _)| n).sum::<usize>(), 4);
        assert_eq!([A, B, C, D].map(|ip| held.count(&ip)), [1; 4]);
    }

    /// The address holding the most has nothing that can be closed yet: the next
    /// one down that still holds more than the newcomer gives way instead.
    #[test]
    fn room_comes_from_the_next_address_down_when_the_first_cannot_give_it() {
        let adm = Admission::new(6, 0);
        let _unbound: Vec<_> = (0..3).map(|_| adm.admit(A).unwrap()).collect();
        let (_b1, kb1) = bound(&adm, B);
        let (_b2, kb2) = bound(&adm, B);
        let (_c1, _) = bound(&adm, C);
        let (_d1, _) = bound(&adm, D);
        assert!(kb1.is_killed() && !kb2.is_killed(), "B's oldest, since A's cannot be closed");
        assert_eq!(adm.admit(E).unwrap_err(), Refused::Total, "B holds 1 now, as E would");
    }

    /// A switch bound later replaces the earlier (a TLS handshake's, then the
    /// session's) and is thrown at once if the earlier one was.
    #[test]
    fn a_later_switch_replaces_the_earlier() {
        let adm = Admission::new(2, 0);
        let (a, early) = bound(&adm, A);
        let late = Kill::new();
        a.bind(&late);
        let (_a2, _) = bound(&adm, A);
        let _b = adm.admit(B).unwrap();
        assert!(late.is_killed() && !early.is_killed(), "the session's switch is the one thrown");
        let p = Admission::new(0, 1).admit(A).unwrap();
        let thrown = Kill::new();
        thrown.kill();
        p.bind(&thrown);
        let next = Kill::new();
        p.bind(&next);
        assert!(next.is_killed(), "a thrown switch carries over");
    }

    #[test]
    fn addresses_leave_the_map_when_their_last_permit_goes() {
        let adm = Admission::new(0, 5);
        let permits: Vec<_> = (0..5).map(|_| adm.admit(A).unwrap()).collect();
        assert_eq!(adm.lock().by_address.len(), 1);
        drop(permits);
        let held = adm.lock();
        assert!(held.by_address.is_empty() && held.by_count.is_empty());
        assert_eq!(adm.unauthenticated(), 0);
    }

    #[test]
    fn per_address_only_bounds_each_address_and_gives_back_on_drop() {
        // The admin API's use: no bound in all, one per address.
        let adm = Admission::new(0, 2);
        let a: Vec<_> = (0..2).map(|_| adm.admit(A).unwrap()).collect();
        assert_eq!(adm.admit(A).unwrap_err(), Refused::PerAddress);
        let b: Vec<_> = (0..2).map(|_| adm.admit(B).unwrap()).collect();
        assert_eq!(adm.unauthenticated(), 4, "a refusal holds nothing");
        drop(a);
        let _a = adm.admit(A).unwrap();
        drop(b);
        assert_eq!((adm.unauthenticated(), adm.lock().by_address.len()), (1, 1));
    }

    #[test]
    fn unlimited_admits_everyone_and_keeps_no_map() {
        let adm = Admission::unlimited();
        let p: Vec<_> = (0..1000).map(|_| adm.admit(A).unwrap()).collect();
        assert!(adm.lock().by_address.is_empty());
        assert_eq!(adm.unauthenticated(), 1000);
        drop(p);
        assert_eq!(adm.unauthenticated(), 0);
    }
}
