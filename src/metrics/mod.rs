//! Prometheus metrics: the counters the data path bumps (relaxed atomics only, no
//! locks, no allocation), the admin side's rotation counters and latency
//! histograms, and the text exposition that `GET /metrics` serves.

pub mod histogram;
pub mod render;
pub mod text;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use histogram::Histogram;

/// Per-database counters, kept in the database's `BdbContext` so the data path
/// reaches them without a lookup.
#[derive(Debug, Default)]
pub struct BdbStats {
    /// Connections accepted (refused ones over `max_connections` included).
    pub accepted: AtomicU64,
    /// Of those, refused at once: the bound on unauthenticated connections (in all
    /// or from the address) was reached.
    pub refused_unauthenticated: AtomicU64,
    pub auth_success: AtomicU64,
    /// AUTHs refused after checking the password (wrong password, unknown user, …).
    pub auth_failure: AtomicU64,
    /// AUTHs refused unchecked because the client's address is throttled.
    pub auth_throttled: AtomicU64,
    /// The upstream could not be reached.
    pub upstream_connect_errors: AtomicU64,
    /// The upstream closed a connection that was owed replies, or refused the
    /// service credentials.
    pub upstream_lost: AtomicU64,
    /// `-NOPERM` replies Redis gave clients on their own connections (those on
    /// lanes are counted by the lanes, see `Lanes::noperm`).
    pub noperm: AtomicU64,
    /// Idle connections parked now (holding no task-sized state), see
    /// `proxy::park`.
    pub parked: AtomicU64,
}

/// Whether a reply is Redis's ACL refusal: its type and first bytes.
pub fn is_noperm(kind: u8, head: &[u8]) -> bool {
    kind == b'-' && head.starts_with(b"NOPERM")
}

/// Bumps a counter. Relaxed: counters are only read by scrapes, which need no
/// ordering with anything else.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The admin endpoints that rotate passwords, for `turnstile_password_rotations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationEndpoint {
    /// `/v1/bdbs/{uid}/passwords` (and `/bdbs/{uid}/passwords`).
    BdbPasswords,
    /// `/v1/users/password`.
    UsersPassword,
    /// The legacy calls on `/v1/cluster`.
    Cluster,
}

impl RotationEndpoint {
    const ALL: [Self; 3] = [Self::BdbPasswords, Self::UsersPassword, Self::Cluster];

    fn label(self) -> &'static str {
        match self {
            Self::BdbPasswords => "bdb_passwords",
            Self::UsersPassword => "users_password",
            Self::Cluster => "cluster",
        }
    }
}

/// Operation labels, in `SetChange` order: add (POST), remove (DELETE), replace (PUT).
const OPS: [&str; 3] = ["add", "remove", "replace"];

fn op_index(op: crate::auth::SetChange) -> usize {
    match op {
        crate::auth::SetChange::Add => 0,
        crate::auth::SetChange::Remove => 1,
        crate::auth::SetChange::Replace => 2,
    }
}

/// Why the admin API closed a connection as soon as it was accepted, for
/// `turnstile_admin_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// Its address already held `admin.max_connections_per_address`.
    PerAddress,
    /// `admin.max_connections` were open.
    Total,
}

impl AdminRefusal {
    const ALL: [Self; 2] = [Self::PerAddress, Self::Total];

    fn label(self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::Total => "total",
        }
    }
}

/// A latency series' labels: route template (never the raw path), method, status class.
type RouteKey = (String, &'static str, u16);

/// Metrics owned by the admin side (the control plane holds one).
#[derive(Debug, Default)]
pub struct AdminMetrics {
    /// Successful rotations, `[endpoint][op]`.
    rotations: [[AtomicU64; 3]; 3],
    /// Admin connections closed at accept, by [`AdminRefusal`].
    refused: [AtomicU64; 2],
    /// Admin request latency. A mutex is fine here: admin requests are rare and the
    /// data path never touches it. Keys are route templates, so the map is bounded
    /// by the router's size.
    latency: Mutex<std::collections::BTreeMap<RouteKey, Arc<Histogram>>>,
}

impl AdminMetrics {
    /// Counts a successful password change through `endpoint`.
    pub fn rotation(&self, endpoint: RotationEndpoint, op: crate::auth::SetChange) {
        inc(&self.rotations[endpoint as usize][op_index(op)]);
    }

    pub fn rotations(&self, endpoint: RotationEndpoint, op: crate::auth::SetChange) -> u64 {
        get(&self.rotations[endpoint as usize][op_index(op)])
    }

    /// Counts an admin connection closed at accept.
    pub fn refused(&self, why: AdminRefusal) {
        inc(&self.refused[why as usize]);
    }

    pub fn refusals(&self, why: AdminRefusal) -> u64 {
        get(&self.refused[why as usize])
    }

    /// Records one admin request. `route` is the matched route template.
    pub fn observe(&self, route: &str, method: &axum::http::Method, status: u16, took: Duration) {
        let key = (route.to_string(), method_label(method), status / 100);
        let h = {
            let mut map = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(map.entry(key).or_default())
        };
        h.observe(took);
    }

    fn latency_snapshot(&self) -> Vec<(RouteKey, Arc<Histogram>)> {
        let map = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
    }
}

/// Methods as labels; anything unusual is `other` (a client picks the method).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
