//! What `GET /metrics` says: every family, read from the counters where they live
//! (databases' contexts, the directory, the throttle, the admin metrics, the
//! store's status), handed in as [`Inputs`] rather than fetched from the control
//! plane, so the metrics depend on what they show and nothing above it.

use super::text::Exposition;
use super::{AdminRefusal, OPS, RotationEndpoint, get, histogram};
use std::sync::Arc;

use super::AdminMetrics;
use crate::auth::{Directory, SetChange, SetId};
use crate::control::fleet::StoreStatus;
use crate::proxy::BdbContext;
use crate::store::State;

/// Everything the exposition reads.
pub struct Inputs<'a> {
    pub directory: &'a Directory,
    /// Running databases, by uid.
    pub bdbs: Vec<Arc<BdbContext>>,
    pub admin: &'a AdminMetrics,
    pub store: StoreStatus,
    /// The state as of the last change (passwords' ages and schedules).
    pub state: Arc<State>,
    /// Writes of the durable state so far.
    pub store_writes: u64,
}

/// Users that get a label of their own; the others (and names that are no user's)
/// share `user="other"`, so the number of series stays bounded.
pub const MAX_USER_LABELS: usize = 100;

pub fn render(inputs: &Inputs<'_>) -> String {
    let mut e = Exposition::default();
    bdbs(&inputs.bdbs, &mut e);
    users(inputs.directory, &mut e);
    let d = inputs.directory;
    e.family(
        "turnstile_argon2_evaluations_total",
        "counter",
        "argon2id evaluations (AUTHs, admin logins, password changes).",
    );
    e.sample("turnstile_argon2_evaluations_total", &[], d.evaluations());
    e.family(
        "turnstile_argon2_waiting",
        "gauge",
        "Attempts waiting for their turn to evaluate argon2 (handed out round-robin across addresses).",
    );
    e.sample("turnstile_argon2_waiting", &[], d.argon2_waiting());
    e.family(
        "turnstile_auth_cache_hits_total",
        "counter",
        "Successful AUTHs answered from the verification cache.",
    );
    e.sample("turnstile_auth_cache_hits_total", &[], d.cache_hits());
    let t = d.throttle();
    e.family(
        "turnstile_throttle_refused_total",
        "counter",
        "AUTHs refused unchecked because the address was throttled.",
    );
    e.sample("turnstile_throttle_refused_total", &[], t.refused());
    e.family(
        "turnstile_throttle_blocks_total",
        "counter",
        "Times an address was throttled after repeated failed AUTHs.",
    );
    e.sample("turnstile_throttle_blocks_total", &[], t.blocks());
    e.family("turnstile_throttled_addresses", "gauge", "Addresses throttled right now.");
    e.sample("turnstile_throttled_addresses", &[], t.blocked_now());
    rotations(inputs.admin, &mut e);
    passwords(&inputs.state, inputs.directory, &mut e);
    e.family(
        "turnstile_store_writes_total",
        "counter",
        "Writes of the durable state (admin changes, event and usage flushes).",
    );
    e.sample("turnstile_store_writes_total", &[], inputs.store_writes);
    latency(inputs.admin, &mut e);
    admin_refusals(inputs.admin, &mut e);
    store(&inputs.store, &mut e);
    e.finish()
}

fn store(s: &StoreStatus, e: &mut Exposition) {
    e.family("turnstile_store_up", "gauge", "1 while the store answers, 0 while it cannot be reached.");
    e.sample("turnstile_store_up", &[], u64::from(s.up));
    e.family("turnstile_store_version", "gauge", "The version of the state this node applies.");
    e.sample("turnstile_store_version", &[], s.revision);
    e.family(
        "turnstile_store_seconds_since_sync",
        "gauge",
        "Seconds since the store last answered this node (its state may be this old).",
    );
    match s.since_sync_secs {
        Some(v) => e.sample("turnstile_store_seconds_since_sync", &[], format!("{v:.3}")),
        None => e.sample("turnstile_store_seconds_since_sync", &[], "+Inf"),
    }
}

fn bdbs(ctxs: &[Arc<BdbContext>], e: &mut Exposition) {
    let uids: Vec<String> = ctxs.iter().map(|c| c.uid.to_string()).collect();
    e.family("turnstile_bdb_connections", "gauge", "Client connections open now, per database.");
    for (c, uid) in ctxs.iter().zip(&uids) {
        e.sample(
            "turnstile_bdb_connections",
            &[("bdb", uid)],
            c.connections.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    e.family(
        "turnstile_bdb_upstream_shared_connections",
        "gauge",
        "Shared upstream connections (lanes) open now, per database.",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        e.sample("turnstile_bdb_upstream_shared_connections", &[("bdb", uid)], c.lanes.open() as u64);
    }
    e.family(
        "turnstile_bdb_connections_parked",
        "gauge",
        "Idle client connections parked now (no request in flight, no task-sized state held), per database.",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        e.sample("turnstile_bdb_connections_parked", &[("bdb", uid)], get(&c.stats.parked));
    }
    e.family(
        "turnstile_bdb_connections_accepted_total",
        "counter",
        "Client connections accepted, per database.",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        e.sample("turnstile_bdb_connections_accepted_total", &[("bdb", uid)], get(&c.stats.accepted));
    }
    e.family(
        "turnstile_bdb_connections_refused_unauthenticated_total",
        "counter",
        "Client connections refused at accept: too many unauthenticated connections, in all or from the address.",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        let n = get(&c.stats.refused_unauthenticated);
        e.sample("turnstile_bdb_connections_refused_unauthenticated_total", &[("bdb", uid)], n);
    }
    e.family("turnstile_bdb_auth_total", "counter", "AUTH and HELLO AUTH outcomes, per database.");
    for (c, uid) in ctxs.iter().zip(&uids) {
        let s = &c.stats;
        for (result, v) in
            [("success", &s.auth_success), ("failure", &s.auth_failure), ("throttled", &s.auth_throttled)]
        {
            e.sample("turnstile_bdb_auth_total", &[("bdb", uid), ("result", result)], get(v));
        }
    }
    e.family(
        "turnstile_bdb_noperm_total",
        "counter",
        "Commands Redis refused for lack of rights (-NOPERM), per database.",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        e.sample("turnstile_bdb_noperm_total", &[("bdb", uid)], get(&c.stats.noperm) + c.lanes.noperm());
    }
    e.family(
        "turnstile_bdb_upstream_errors_total",
        "counter",
        "Upstream failures seen by clients, per database.",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        let s = &c.stats;
        for (kind, v) in [("connect", &s.upstream_connect_errors), ("lost", &s.upstream_lost)] {
            e.sample("turnstile_bdb_upstream_errors_total", &[("bdb", uid), ("kind", kind)], get(v));
        }
    }
    e.family(
        "turnstile_bdb_output_limit_disconnections_total",
        "counter",
        "Clients disconnected for their output buffer limits on a shared upstream connection, per database (Redis's client_output_buffer_limit_disconnections).",
    );
    for (c, uid) in ctxs.iter().zip(&uids) {
        let n = c.lane_replies.disconnections.load(std::sync::atomic::Ordering::Relaxed);
        e.sample("turnstile_bdb_output_limit_disconnections_total", &[("bdb", uid)], n);
    }
    failover(ctxs, &uids, e);
}

/// The Sentinel-managed databases' failovers (the others have none to show).
fn failover(ctxs: &[std::sync::Arc<crate::proxy::BdbContext>], uids: &[String], e: &mut Exposition) {
    let managed: Vec<_> = ctxs.iter().zip(uids).filter(|(c, _)| c.upstream().sentinel.is_some()).collect();
    e.family(
        "turnstile_bdb_failovers_total",
        "counter",
        "Changes of primary seen on a Sentinel-managed upstream, per database.",
    );
    for (c, uid) in &managed {
        e.sample("turnstile_bdb_failovers_total", &[("bdb", uid)], c.failover.failovers());
    }
    e.family(
        "turnstile_bdb_primary_unknown_seconds_total",
        "counter",
        "Seconds a Sentinel-managed database had no verified primary (new requests waited), per database.",
    );
    for (c, uid) in &managed {
        let secs = format!("{:.3}", c.failover.seconds_without_primary());
        e.sample("turnstile_bdb_primary_unknown_seconds_total", &[("bdb", uid)], secs);
    }
    e.family(
        "turnstile_bdb_primary_known",
        "gauge",
        "1 while a Sentinel-managed database has a verified primary, else 0.",
    );
    for (c, uid) in &managed {
        e.sample("turnstile_bdb_primary_known", &[("bdb", uid)], u8::from(!c.failover.without_primary()));
    }
}

fn users(d: &Directory, e: &mut Exposition) {
    let (users, unknown) = d.user_auth_counts();
    e.family("turnstile_user_auth_total", "counter", "AUTH outcomes per named user (the first 100 users by name; the rest, and names of no user, as \"other\").");
    let (mut other_ok, mut other_failed) = (0, unknown);
    for (i, (name, ok, failed)) in users.iter().enumerate() {
        if i < MAX_USER_LABELS {
            e.sample("turnstile_user_auth_total", &[("user", name), ("result", "success")], ok);
            e.sample("turnstile_user_auth_total", &[("user", name), ("result", "failure")], failed);
        } else {
            other_ok += ok;
            other_failed += failed;
        }
    }
    e.sample("turnstile_user_auth_total", &[("user", "other"), ("result", "success")], other_ok);
    e.sample("turnstile_user_auth_total", &[("user", "other"), ("result", "failure")], other_failed);
}

/// Password series shown at most: a set's entries are few in practice, but the
/// labels come from admin input, so their number is capped whatever it holds.
pub const MAX_PASSWORD_SERIES: usize = 1000;

/// Per password: open connections and last use, labelled by database or user
/// (the first [`MAX_USER_LABELS`] users by name) and the password's public id.
fn passwords(snap: &State, d: &Directory, e: &mut Exposition) {
    let mut sets: Vec<(&str, String, SetId)> =
        snap.bdbs.keys().map(|uid| ("bdb", uid.to_string(), SetId::BdbDefault(*uid))).collect();
    let mut names: Vec<&str> = snap.users.values().map(|u| u.name.as_str()).collect();
    names.sort_unstable();
    sets.extend(
        names.into_iter().take(MAX_USER_LABELS).map(|n| ("user", n.to_string(), SetId::User(n.into()))),
    );
    let entries: Vec<_> = sets
        .iter()
        .filter_map(|(k, v, id)| d.passwords(id).map(|s| (*k, v.as_str(), s)))
        .flat_map(|(k, v, s)| s.entries().to_vec().into_iter().map(move |u| (k, v, u)))
        .take(MAX_PASSWORD_SERIES)
        .collect();
    e.family(
        "turnstile_password_connections",
        "gauge",
        "Connections authenticated with each password and open now, by database or user and password id.",
    );
    for (k, v, u) in &entries {
        e.sample("turnstile_password_connections", &[(k, v), ("id", u.id())], u.connections());
    }
    e.family(
        "turnstile_password_last_used_timestamp_seconds",
        "gauge",
        "Unix time of each password's last successful AUTH (0: none seen).",
    );
    let stored = |k: &str, v: &str, id: &str| -> Option<u64> {
        let meta = match k {
            "bdb" => v.parse().ok().and_then(|uid: u32| snap.bdbs.get(&uid)).map(|b| &b.password_meta),
            _ => snap.users.values().find(|u| u.name == v).map(|u| &u.password_meta),
        };
        meta?.iter().find(|m| m.id == id)?.last_used_ms
    };
    for (k, v, u) in &entries {
        let last = u.last_used_ms().max(stored(k, v, u.id())).unwrap_or(0) / 1000;
        e.sample("turnstile_password_last_used_timestamp_seconds", &[(k, v), ("id", u.id())], last);
    }
}

fn rotations(m: &AdminMetrics, e: &mut Exposition) {
    e.family(
        "turnstile_password_rotations_total",
        "counter",
        "Successful password changes, per admin endpoint and operation.",
    );
    for endpoint in RotationEndpoint::ALL {
        for (op, label) in [SetChange::Add, SetChange::Remove, SetChange::Replace].into_iter().zip(OPS) {
            let labels = [("endpoint", endpoint.label()), ("op", label)];
            e.sample("turnstile_password_rotations_total", &labels, m.rotations(endpoint, op));
        }
    }
}

fn admin_refusals(m: &AdminMetrics, e: &mut Exposition) {
    const NAME: &str = "turnstile_admin_connections_refused_total";
    e.family(
        NAME,
        "counter",
        "Admin API connections closed at accept: too many from the address, or in all.",
    );
    for why in AdminRefusal::ALL {
        e.sample(NAME, &[("reason", why.label())], m.refusals(why));
    }
}

fn latency(m: &AdminMetrics, e: &mut Exposition) {
    const NAME: &str = "turnstile_admin_request_duration_seconds";
    e.family(NAME, "histogram", "Admin API request latency, per route template, method and status class.");
    for ((route, method, class), h) in m.latency_snapshot() {
        let status = format!("{class}xx");
        let (buckets, sum, count) = h.snapshot();
        let base = [("route", route.as_str()), ("method", method), ("status", status.as_str())];
        for (i, n) in buckets.iter().enumerate() {
            let le = histogram::BOUNDS.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let labels = [base[0], base[1], base[2], ("le", le.as_str())];
            e.sample(&format!("{NAME}_bucket"), &labels, n);
        }
        e.sample(&format!("{NAME}_sum"), &base, sum);
        e.sample(&format!("{NAME}_count"), &base, count);
    }
}
