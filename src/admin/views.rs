//! JSON shapes of the admin API's objects, with RS's field names. Password sets,
//! hashes and upstream secrets never appear.

use serde_json::{Value, json};

use crate::control::time::{iso8601, now};
use crate::control::{Control, user_status};
use crate::store::state::{AclRecord, BdbRecord, ClusterSettings, LockoutPolicy, RoleRecord, UserRecord};

pub fn user(control: &Control, u: &UserRecord) -> Value {
    let snap = control.snapshot();
    let last_login = control.last_login(u.uid).or(u.last_login);
    json!({
        "uid": u.uid,
        "name": u.name,
        "email": u.email,
        "role": u.role,
        "role_uids": u.role_uids,
        "auth_method": u.auth_method,
        "status": user_status(u, snap.cluster.password_expiration_duration, now()),
        "password_issue_date": iso8601(u.password_issue_date),
        "last_login": last_login.map(iso8601),
    })
}

pub fn bdb(control: &Control, b: &BdbRecord) -> Value {
    let addr = control.bdb_addr(b.uid);
    let listen = addr.map_or(b.listen.clone(), |a| a.to_string());
    let port = addr.map(|a| a.port()).or_else(|| b.listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()));
    json!({
        "uid": b.uid,
        "name": b.name,
        "port": port,
        "listen": listen,
        "upstream": b.upstream,
        "upstream_password_env": b.upstream_password_env,
        "default_user": b.default_user,
        "roles_permissions": b.roles_permissions,
        "disconnect_clients_on_password_removal": b.disconnect_clients_on_password_removal,
        "max_connections": b.max_connections,
        "tls_mode": b.tls_mode.as_str(),
        "enforce_client_authentication": if control.client_auth(b.uid) { "enabled" } else { "disabled" },
        "status": if addr.is_some() { "active" } else { "inactive" },
    })
}

pub fn role(r: &RoleRecord) -> Value {
    json!({ "uid": r.uid, "name": r.name, "management": r.management })
}

pub fn acl(a: &AclRecord) -> Value {
    json!({ "uid": a.uid, "name": a.name, "acl": a.acl })
}

pub fn cluster(c: &ClusterSettings) -> Value {
    json!({
        "name": c.name,
        "password_complexity": c.password_complexity,
        "password_min_length": c.password_min_length,
        "password_expiration_duration": c.password_expiration_duration,
    })
}

pub fn policy(p: &LockoutPolicy) -> Value {
    json!({
        "login_lockout_threshold": p.login_lockout_threshold,
        "login_lockout_counter_reset_after": p.login_lockout_counter_reset_after,
        "login_lockout_duration": p.login_lockout_duration,
    })
}
