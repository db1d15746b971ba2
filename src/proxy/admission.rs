//! The bound on unauthenticated database connections, in all and per source
//! address, shared by every database listener of the process. A connection holds a
//! [`Permit`] from accept until its first successful AUTH (or until it closes);
//! after that it counts only toward its database's `max_connections`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// Who may still connect without having authenticated. Cheap to share.
#[derive(Debug)]
pub struct Admission {
    /// 0 = no bound.
    max_total: usize,
    /// 0 = no bound.
    max_per_address: usize,
    total: AtomicUsize,
    /// Unauthenticated connections per source address; an address leaves the map
    /// when its last one authenticates or closes, so the map is bounded by `total`.
    per_address: DashMap<IpAddr, usize>,
}

/// Counts one unauthenticated connection until dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

/// Which bound a new connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_address, total: AtomicUsize::new(0), per_address: DashMap::new() })
    }

    /// No bound at all (tests, and contexts made before the control plane sets one).
    pub fn unlimited() -> Arc<Self> {
        Self::new(0, 0)
    }

    /// Unauthenticated connections open now.
    pub fn unauthenticated(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A permit for a new connection from `ip`, unless a bound is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let before = self.total.fetch_add(1, Ordering::AcqRel);
        if self.max_total > 0 && before >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        if self.max_per_address > 0 {
            let mut n = self.per_address.entry(ip).or_insert(0);
            if *n >= self.max_per_address {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        Ok(Permit { admission: Arc::clone(self), ip })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        if a.max_per_address > 0 {
            if let Some(mut n) = a.per_address.get_mut(&self.ip) {
                *n -= 1;
            }
            a.per_address.remove_if(&self.ip, |_, n| *n == 0);
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn bounds_per_address_then_in_all() {
        let adm = Admission::new(3, 2);
        let a1 = adm.admit(A).unwrap();
        let _a2 = adm.admit(A).unwrap();
        assert_eq!(adm.admit(A).unwrap_err(), Refused::PerAddress);
        let _b1 = adm.admit(B).unwrap();
        assert_eq!(adm.admit(B).unwrap_err(), Refused::Total, "3 in all");
        assert_eq!(adm.unauthenticated(), 3);
        drop(a1);
        let _a3 = adm.admit(A).unwrap();
        assert_eq!(adm.unauthenticated(), 3);
    }

    #[test]
    fn addresses_leave_the_map_when_their_last_permit_goes() {
        let adm = Admission::new(0, 5);
        let permits: Vec<_> = (0..5).map(|_| adm.admit(A).unwrap()).collect();
        assert_eq!(adm.per_address.len(), 1);
        drop(permits);
        assert!(adm.per_address.is_empty());
        assert_eq!(adm.unauthenticated(), 0);
    }

    #[test]
    fn unlimited_admits_everyone_and_keeps_no_map() {
        let adm = Admission::unlimited();
        let _p: Vec<_> = (0..1000).map(|_| adm.admit(A).unwrap()).collect();
        assert!(adm.per_address.is_empty());
    }
}
