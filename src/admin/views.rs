//! JSON shapes of the admin API's objects, with RS's field names. Password sets,
//! hashes and upstream secrets never appear. Handlers answer with these types, so the
//! OpenAPI schemas derived from them are the responses' real shapes.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::control::roles::ROLES;
use crate::control::{Control, user_status};
use crate::store::state::{
    AclRecord, BdbRecord, ClusterSettings, LockoutPolicy, RolePermission, RoleRecord, UserRecord,
};
use crate::time::{iso8601, now};

/// A user. Its passwords are write-only and never shown.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    pub uid: u32,
    pub name: String,
    pub email: String,
    #[schema(schema_with = management_role)]
    pub role: String,
    pub role_uids: Vec<u32>,
    #[schema(schema_with = auth_method)]
    pub auth_method: String,
    #[schema(schema_with = user_status_values)]
    pub status: &'static str,
    /// When the newest password was set (ISO 8601, UTC).
    pub password_issue_date: String,
    /// The last admin API login (ISO 8601, UTC), null if never.
    #[schema(required = true)]
    pub last_login: Option<String>,
}

/// A database: where applications connect and which Redis it forwards to.
#[derive(Serialize, ToSchema)]
#[schema(as = Bdb)]
pub struct BdbView {
    pub uid: u32,
    pub name: String,
    /// The port it listens on (null if it is not listening and its address has none).
    #[schema(required = true)]
    pub port: Option<u16>,
    /// `host:port` it listens on.
    pub listen: String,
    /// `redis://[user@]host:port` of the upstream Redis (never with a password).
    pub upstream: String,
    /// The environment variable holding the upstream password, if any.
    #[schema(required = true)]
    pub upstream_password_env: Option<String>,
    /// For a `redis+sentinel://` upstream: the Sentinels' user and the variable
    /// holding their password.
    #[schema(required = true)]
    pub sentinel_username: Option<String>,
    #[schema(required = true)]
    pub sentinel_password_env: Option<String>,
    /// For a `redis+sentinel://` upstream: `host:port` of the primary turnstile
    /// verified and sends to now; null while none is (a failover under way), and
    /// for a fixed upstream.
    #[schema(required = true)]
    pub primary_address: Option<String>,
    /// Whether `AUTH <password>` (the default user) is accepted.
    pub default_user: bool,
    pub roles_permissions: Vec<RolePermission>,
    pub disconnect_clients_on_password_removal: bool,
    /// 0 = unlimited.
    pub max_connections: u32,
    #[schema(schema_with = tls_mode)]
    pub tls_mode: &'static str,
    /// Whether clients must present a certificate (set in the config file).
    #[schema(schema_with = client_auth)]
    pub enforce_client_authentication: &'static str,
    #[schema(schema_with = bdb_status)]
    pub status: &'static str,
}

/// An RBAC role: a name and a management role.
#[derive(Serialize, ToSchema)]
#[schema(as = Role)]
pub struct RoleView {
    pub uid: u32,
    pub name: String,
    #[schema(schema_with = management_role)]
    pub management: String,
}

/// A named Redis ACL rule string.
#[derive(Serialize, ToSchema)]
#[schema(as = RedisAcl)]
pub struct AclView {
    pub uid: u32,
    pub name: String,
    pub acl: String,
}

/// The cluster settings: password complexity and expiration.
#[derive(Serialize, ToSchema)]
#[schema(as = Cluster)]
pub struct ClusterView {
    pub name: String,
    pub password_complexity: bool,
    pub password_min_length: u32,
    /// Days; 0 = passwords never expire.
    pub password_expiration_duration: u32,
}

/// The admin API login lockout policy.
#[derive(Serialize, ToSchema)]
#[schema(as = Policy)]
pub struct PolicyView {
    /// Failed logins before a lock; 0 = never lock.
    pub login_lockout_threshold: u32,
    /// Seconds after which the failure count starts over.
    pub login_lockout_counter_reset_after: u64,
    /// Seconds a lock lasts; 0 = until an admin sets a new password.
    pub login_lockout_duration: u64,
}

/// A string field the code fills from a fixed set of values.
fn one_of(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

fn management_role() -> Object {
    one_of(&ROLES, "Management role (what the admin API allows; `none`: database access only)")
}

fn auth_method() -> Object {
    one_of(&["regular"], "Always `regular`")
}

/// `crate::control::user_status`'s values.
fn user_status_values() -> Object {
    one_of(&["active", "locked", "password_expired"], "Whether the user can log in to the admin API")
}

fn tls_mode() -> Object {
    one_of(&["disabled", "enabled"], "`enabled`: the port speaks TLS only (RS's `tls_mode`)")
}

fn client_auth() -> Object {
    one_of(&["disabled", "enabled"], "`enabled`: clients must present a certificate the configured CA signed")
}

fn bdb_status() -> Object {
    one_of(&["active", "inactive"], "`active` when its listener is up")
}

/// The empty object `{}` that changes without a resulting object answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

pub fn user(control: &Control, u: &UserRecord) -> UserView {
    let snap = control.snapshot();
    let last_login = control.last_login(u.uid).or(u.last_login);
    UserView {
        uid: u.uid,
        name: u.name.clone(),
        email: u.email.clone(),
        role: u.role.clone(),
        role_uids: u.role_uids.clone(),
        auth_method: u.auth_method.clone(),
        status: user_status(u, snap.cluster.password_expiration_duration, now()),
        password_issue_date: iso8601(u.password_issue_date),
        last_login: last_login.map(iso8601),
    }
}

pub fn bdb(control: &Control, b: &BdbRecord) -> BdbView {
    let addr = control.bdb_addr(b.uid);
    let listen = addr.map_or(b.listen.clone(), |a| a.to_string());
    let port = addr.map(|a| a.port()).or_else(|| b.listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()));
    BdbView {
        uid: b.uid,
        name: b.name.clone(),
        port,
        listen,
        upstream: b.upstream.clone(),
        upstream_password_env: b.upstream_password_env.clone(),
        sentinel_username: b.sentinel_username.clone(),
        sentinel_password_env: b.sentinel_password_env.clone(),
        primary_address: control.endpoint(b.uid).and_then(|ctx| {
            let u = ctx.upstream_full();
            (u.sentinel.is_some() && u.is_current()).then(|| u.address.clone())
        }),
        default_user: b.default_user,
        roles_permissions: b.roles_permissions.clone(),
        disconnect_clients_on_password_removal: b.disconnect_clients_on_password_removal,
        max_connections: b.max_connections,
        tls_mode: b.tls_mode.as_str(),
        enforce_client_authentication: if control.client_auth(b.uid) { "enabled" } else { "disabled" },
        status: if addr.is_some() { "active" } else { "inactive" },
    }
}

pub fn role(r: &RoleRecord) -> RoleView {
    RoleView { uid: r.uid, name: r.name.clone(), management: r.management.clone() }
}

pub fn acl(a: &AclRecord) -> AclView {
    AclView { uid: a.uid, name: a.name.clone(), acl: a.acl.clone() }
}

pub fn cluster(c: &ClusterSettings) -> ClusterView {
    ClusterView {
        name: c.name.clone(),
        password_complexity: c.password_complexity,
        password_min_length: c.password_min_length,
        password_expiration_duration: c.password_expiration_duration,
    }
}

pub fn policy(p: &LockoutPolicy) -> PolicyView {
    PolicyView {
        login_lockout_threshold: p.login_lockout_threshold,
        login_lockout_counter_reset_after: p.login_lockout_counter_reset_after,
        login_lockout_duration: p.login_lockout_duration,
    }
}
