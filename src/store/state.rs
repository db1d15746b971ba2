//! The durable state: every object of the admin API, password sets as argon2id PHC
//! strings only. Field names are Redis Enterprise's where RS has the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the on-disk layout, checked when loading.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub cluster: ClusterSettings,
    pub policy: LockoutPolicy,
    pub users: BTreeMap<u32, UserRecord>,
    pub roles: BTreeMap<u32, RoleRecord>,
    pub redis_acls: BTreeMap<u32, AclRecord>,
    pub bdbs: BTreeMap<u32, BdbRecord>,
    /// The event log (`GET /v1/logs`); absent in stores written before it existed.
    #[serde(default)]
    pub events: super::events::EventLog,
    /// turnstile's secret for its upstream ACL users (absent before authorization
    /// existed: made on the next start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_users: Option<UpstreamUsersRecord>,
}

/// The instance id and key from which turnstile's upstream user names and
/// passwords are derived (see `authz::Secret`). Secret: the store only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamUsersRecord {
    pub instance: String,
    pub secret: String,
}

impl std::fmt::Debug for UpstreamUsersRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamUsersRecord").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: SCHEMA_VERSION,
            cluster: ClusterSettings::default(),
            policy: LockoutPolicy::default(),
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            redis_acls: BTreeMap::new(),
            bdbs: BTreeMap::new(),
            events: super::events::EventLog::default(),
            upstream_users: None,
        }
    }
}

/// `GET/PUT /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    pub name: String,
    pub password_complexity: bool,
    pub password_min_length: u32,
    /// Days; 0 = passwords never expire.
    pub password_expiration_duration: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            name: "turnstile".into(),
            password_complexity: false,
            password_min_length: 8,
            password_expiration_duration: 0,
        }
    }
}

/// `GET/PUT /v1/cluster/policy`: admin API login lockout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    /// Failed logins before a lock; 0 = never lock.
    pub login_lockout_threshold: u32,
    /// Seconds after which the failure count starts over.
    pub login_lockout_counter_reset_after: u64,
    /// Seconds a lock lasts; 0 = until an admin sets a new password.
    pub login_lockout_duration: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            login_lockout_threshold: 5,
            login_lockout_counter_reset_after: 900,
            login_lockout_duration: 1800,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub uid: u32,
    pub name: String,
    pub email: String,
    /// Management role: admin, cluster_member, cluster_viewer, db_member, db_viewer,
    /// user_manager or none.
    pub role: String,
    pub role_uids: Vec<u32>,
    pub auth_method: String,
    /// argon2id PHC strings (one salt per set).
    pub passwords: Vec<String>,
    /// The public side of each password, by position in `passwords` (absent in
    /// stores written before passwords had ids: made on the next start).
    #[serde(default)]
    pub password_meta: Vec<PasswordMeta>,
    /// Passwords due to be removed by themselves (`expire_old_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_expiry: Option<PasswordExpiry>,
    /// Unix seconds when the newest password was set.
    pub password_issue_date: u64,
    /// Unix seconds of the last admin API login, if any.
    pub last_login: Option<u64>,
    /// Unix seconds until which admin API logins are refused; `u64::MAX` = until an
    /// admin sets a new password.
    pub locked_until: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub uid: u32,
    pub name: String,
    pub management: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRecord {
    pub uid: u32,
    pub name: String,
    pub acl: String,
}

/// Grants a role access to a database, under a Redis ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolePermission {
    pub role_uid: u32,
    pub redis_acl_uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BdbRecord {
    pub uid: u32,
    pub name: String,
    /// Where applications connect (`host:port`).
    pub listen: String,
    /// `redis://[user@]host:port` — never with a password.
    pub upstream: String,
    /// Environment variable holding the upstream password, if it needs one.
    pub upstream_password_env: Option<String>,
    /// A Sentinel-managed upstream's Sentinel user, and the environment variable
    /// holding the Sentinels' password (absent in stores written before Sentinel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_password_env: Option<String>,
    pub default_user: bool,
    pub roles_permissions: Vec<RolePermission>,
    pub disconnect_clients_on_password_removal: bool,
    /// 0 = unlimited.
    pub max_connections: u32,
    /// Whether the listener speaks TLS (absent in stores written before TLS).
    #[serde(default)]
    pub tls_mode: crate::config::TlsMode,
    /// The default user's password set, argon2id PHC strings.
    pub passwords: Vec<String>,
    /// The public side of each password, by position in `passwords`.
    #[serde(default)]
    pub password_meta: Vec<PasswordMeta>,
    /// Passwords due to be removed by themselves (`expire_old_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_expiry: Option<PasswordExpiry>,
}

/// A password's public identity and its durable usage. Never the password or a
/// hash: the id is random.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordMeta {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Unix seconds when it was added (for passwords older than ids: when the
    /// id was made).
    #[serde(default)]
    pub created: u64,
    /// The admin API user who added it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// Unix milliseconds of its last successful AUTH, as of the last usage flush.
    /// (Open connections and the clients behind them are runtime only.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_ms: Option<u64>,
}

/// `expire_old_after`: at `at_ms`, the passwords `remove` leave the set by
/// themselves; `keep` is the password whose addition scheduled it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordExpiry {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub keep: String,
    pub remove: Vec<String>,
    /// Who scheduled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What a record with a password set has, for code shared by databases and users.
pub trait Passwords {
    fn parts(&mut self) -> (&mut Vec<String>, &mut Vec<PasswordMeta>, &mut Option<PasswordExpiry>);
    fn meta(&self) -> &[PasswordMeta];
    fn expiry(&self) -> Option<&PasswordExpiry>;
}

impl Passwords for BdbRecord {
    fn parts(&mut self) -> (&mut Vec<String>, &mut Vec<PasswordMeta>, &mut Option<PasswordExpiry>) {
        (&mut self.passwords, &mut self.password_meta, &mut self.password_expiry)
    }
    fn meta(&self) -> &[PasswordMeta] {
        &self.password_meta
    }
    fn expiry(&self) -> Option<&PasswordExpiry> {
        self.password_expiry.as_ref()
    }
}

impl Passwords for UserRecord {
    fn parts(&mut self) -> (&mut Vec<String>, &mut Vec<PasswordMeta>, &mut Option<PasswordExpiry>) {
        (&mut self.passwords, &mut self.password_meta, &mut self.password_expiry)
    }
    fn meta(&self) -> &[PasswordMeta] {
        &self.password_meta
    }
    fn expiry(&self) -> Option<&PasswordExpiry> {
        self.password_expiry.as_ref()
    }
}

impl State {
    /// The smallest uid above every uid in `map` (uids start at 1).
    pub fn next_uid<T>(map: &BTreeMap<u32, T>) -> u32 {
        map.keys().next_back().map_or(1, |k| k.saturating_add(1))
    }
}
