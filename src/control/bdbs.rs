//! Databases (bdbs): created, changed and deleted live, listeners included.

use serde::Deserialize;
use utoipa::ToSchema;

use super::endpoints::bind;
use super::error::{Error, Kind, Result};
use super::{Caller, Control};
use crate::config::TlsMode;
use crate::proxy::Upstream;
use crate::store::State;
use crate::store::state::{BdbRecord, RolePermission};

/// `POST /v1/bdbs`. turnstile's own fields: `listen` (or RS's `port`), `upstream`
/// (`redis://[user@]host:port`) and `upstream_password_env`: the upstream password is
/// never sent or stored, only the name of the environment variable that holds it,
/// and only a variable the operator listed in `[admin.credential_envs]` for this
/// upstream's address (likewise `sentinel_password_env`, for every Sentinel).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"name": "cache", "port": 12001, "upstream": "redis://127.0.0.1:6379"}))]
#[serde(deny_unknown_fields)]
pub struct NewBdb {
    pub uid: Option<u32>,
    pub name: String,
    pub port: Option<u16>,
    pub listen: Option<String>,
    pub upstream: String,
    pub upstream_password_env: Option<String>,
    /// For a `redis+sentinel://` upstream: the Sentinels' user, and the variable
    /// holding their password.
    pub sentinel_username: Option<String>,
    pub sentinel_password_env: Option<String>,
    pub default_user: Option<bool>,
    pub roles_permissions: Option<Vec<PermissionInput>>,
    pub disconnect_clients_on_password_removal: Option<bool>,
    pub max_connections: Option<u32>,
    pub tls_mode: Option<String>,
}

/// `PUT /v1/bdbs/{uid}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]}))]
#[serde(deny_unknown_fields)]
pub struct BdbPatch {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub upstream_password_env: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password_env: Option<String>,
    pub default_user: Option<bool>,
    pub roles_permissions: Option<Vec<PermissionInput>>,
    pub disconnect_clients_on_password_removal: Option<bool>,
    pub max_connections: Option<u32>,
    pub tls_mode: Option<String>,
}

/// One `roles_permissions` entry as the API accepts it: strict about unknown fields
/// like every other request body, while the store's [`RolePermission`] stays lenient
/// so that a newer store file still loads.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionInput {
    pub role_uid: u32,
    pub redis_acl_uid: u32,
}

impl From<PermissionInput> for RolePermission {
    fn from(p: PermissionInput) -> Self {
        Self { role_uid: p.role_uid, redis_acl_uid: p.redis_acl_uid }
    }
}

fn strict(perms: Vec<PermissionInput>) -> Vec<RolePermission> {
    perms.into_iter().map(Into::into).collect()
}

fn check_upstream(url: &str) -> Result<()> {
    let u = Upstream::parse(url)
        .map_err(|why| Error::bad_request("invalid_parameter", format!("upstream: {why}")))?;
    if u.tls {
        return Err(Error::bad_request(
            "invalid_parameter",
            "upstream: a rediss:// (or rediss+sentinel://) upstream needs upstream_tls_ca, which is set in the config file; define this database there",
        ));
    }
    if u.password.is_some() {
        return Err(Error::bad_request(
            "invalid_parameter",
            "upstream: give the password in an environment variable named by upstream_password_env, not in the URL",
        ));
    }
    Ok(())
}

/// RS's `tls_mode`; `replica_ssl` (TLS between replicas) has no meaning here.
fn check_tls_mode(m: Option<&str>) -> Result<Option<TlsMode>> {
    match m {
        None => Ok(None),
        Some("disabled") => Ok(Some(TlsMode::Disabled)),
        Some("enabled") => Ok(Some(TlsMode::Enabled)),
        Some(_) => {
            Err(Error::bad_request("invalid_parameter", "tls_mode: must be \"enabled\" or \"disabled\""))
        }
    }
}

fn check_permissions(state: &State, perms: &[RolePermission]) -> Result<()> {
    for p in perms {
        if !state.roles.contains_key(&p.role_uid) {
            return Err(Error::bad_request("role_not_exist", format!("role {} does not exist", p.role_uid)));
        }
        if !state.redis_acls.contains_key(&p.redis_acl_uid) {
            return Err(Error::bad_request(
                "redis_acl_not_exist",
                format!("redis ACL {} does not exist", p.redis_acl_uid),
            ));
        }
    }
    Ok(())
}

impl Control {
    /// Hands a listener bound before the commit to `apply`.
    fn prebind(&self, uid: u32, l: tokio::net::TcpListener) {
        self.inner.prebound.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, l);
    }

    /// Drops a listener `apply` did not use (the commit failed).
    fn unprebind(&self, uid: u32) {
        self.inner.prebound.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
    }

    fn listen_of(&self, listen: Option<String>, port: Option<u16>) -> Option<String> {
        listen.or_else(|| port.map(|p| format!("{}:{p}", self.inner.default_bind_host)))
    }

    /// The address a database actually listens on (its port may have been 0).
    pub fn bdb_addr(&self, uid: u32) -> Option<std::net::SocketAddr> {
        self.inner.endpoints.addr(uid)
    }

    pub async fn create_bdb(&self, input: NewBdb) -> Result<BdbRecord> {
        self.create_bdb_by(None, input).await
    }

    /// Creates a database; the event log names `actor`.
    pub async fn create_bdb_by(&self, actor: Option<&Caller>, input: NewBdb) -> Result<BdbRecord> {
        self.retrying(|| self.create_bdb_once(actor, input.clone())).await
    }

    async fn create_bdb_once(&self, actor: Option<&Caller>, input: NewBdb) -> Result<BdbRecord> {
        if input.name.trim().is_empty() {
            return Err(Error::bad_request("invalid_parameter", "name must not be empty"));
        }
        check_upstream(&input.upstream)?;
        let tls_mode = check_tls_mode(input.tls_mode.as_deref())?.unwrap_or_default();
        let listen = self
            .listen_of(input.listen, input.port)
            .ok_or_else(|| Error::bad_request("missing_parameter", "port (or listen) is required"))?;
        let mut state = self.lock().await?;
        let uid = input.uid.unwrap_or_else(|| State::next_uid(&state.bdbs));
        if uid == 0 {
            return Err(Error::bad_request("invalid_parameter", "uid must be a positive integer"));
        }
        if state.bdbs.contains_key(&uid) {
            return Err(Error::new(Kind::Conflict, "bdb_already_exists", format!("database {uid} exists")));
        }
        if state.bdbs.values().any(|b| b.name == input.name) {
            return Err(Error::new(
                Kind::Conflict,
                "bdb_name_already_exists",
                format!("a database named {:?} exists", input.name),
            ));
        }
        let perms = strict(input.roles_permissions.unwrap_or_default());
        check_permissions(&state, &perms)?;
        let mut record = BdbRecord {
            uid,
            name: input.name,
            listen,
            upstream: input.upstream,
            upstream_password_env: input.upstream_password_env,
            sentinel_username: input.sentinel_username.filter(|v| !v.is_empty()),
            sentinel_password_env: input.sentinel_password_env.filter(|v| !v.is_empty()),
            default_user: input.default_user.unwrap_or(true),
            roles_permissions: perms,
            disconnect_clients_on_password_removal: input
                .disconnect_clients_on_password_removal
                .unwrap_or(false),
            max_connections: input.max_connections.unwrap_or(0),
            passwords: Vec::new(),
            password_meta: Vec::new(),
            password_expiry: None,
            tls_mode,
        };
        self.upstream_of(&record)?;
        // Checked before anything is bound or stored.
        self.listener_tls(&record)?;
        // Bind before committing: a port that is taken is refused with nothing stored.
        let listener = bind(&record.listen).await?;
        if let Ok(addr) = listener.local_addr() {
            record.listen = addr.to_string();
        }
        let mut next = state.clone();
        next.bdbs.insert(uid, record.clone());
        let mut event = Self::event_by("bdb_created", actor);
        event.bdb_uid = Some(uid);
        self.record(&mut next, event);
        // `apply` starts the endpoint on the listener bound here (and on every other
        // node, at the same port on its own host).
        self.prebind(uid, listener);
        let committed = self.commit(&mut state, next).await;
        self.unprebind(uid);
        committed?;
        if self.inner.endpoints.ctx(uid).is_none() {
            return Err(Error::new(
                Kind::NotAcceptable,
                "port_unavailable",
                "the database endpoint did not start",
            ));
        }
        Ok(record)
    }

    pub async fn update_bdb(&self, uid: u32, patch: BdbPatch) -> Result<BdbRecord> {
        self.retrying(|| self.update_bdb_once(uid, patch.clone())).await
    }

    async fn update_bdb_once(&self, uid: u32, patch: BdbPatch) -> Result<BdbRecord> {
        let mut state = self.lock().await?;
        let Some(mut record) = state.bdbs.get(&uid).cloned() else {
            return Err(Error::not_found("bdb_not_exist", format!("database {uid} does not exist")));
        };
        let from_config = self.inner.config_upstreams.contains_key(&uid);
        if let Some(n) = patch.name {
            if n.trim().is_empty() {
                return Err(Error::bad_request("invalid_parameter", "name must not be empty"));
            }
            if state.bdbs.values().any(|b| b.name == n && b.uid != uid) {
                return Err(Error::new(
                    Kind::Conflict,
                    "bdb_name_already_exists",
                    format!("a database named {n:?} exists"),
                ));
            }
            record.name = n;
        }
        if let Some(mode) = check_tls_mode(patch.tls_mode.as_deref())? {
            if from_config && mode != record.tls_mode {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    "this database's TLS comes from the config file; change it there",
                ));
            }
            record.tls_mode = mode;
        }
        let moving = patch.listen.is_some() || patch.port.is_some();
        let sentinel_patch = patch.sentinel_username.is_some() || patch.sentinel_password_env.is_some();
        if from_config
            && (moving || patch.upstream.is_some() || patch.upstream_password_env.is_some() || sentinel_patch)
        {
            return Err(Error::bad_request(
                "invalid_parameter",
                "this database's address and upstream come from the config file; change them there",
            ));
        }
        if let Some(u) = patch.upstream {
            check_upstream(&u)?;
            record.upstream = u;
        }
        if let Some(v) = patch.upstream_password_env {
            record.upstream_password_env = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = patch.sentinel_username {
            record.sentinel_username = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = patch.sentinel_password_env {
            record.sentinel_password_env = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = patch.default_user {
            record.default_user = v;
        }
        if let Some(p) = patch.roles_permissions.map(strict) {
            check_permissions(&state, &p)?;
            record.roles_permissions = p;
        }
        if let Some(v) = patch.disconnect_clients_on_password_removal {
            record.disconnect_clients_on_password_removal = v;
        }
        if let Some(v) = patch.max_connections {
            record.max_connections = v;
        }
        // Checked before anything is stored; `apply` uses them.
        self.upstream_of(&record)?;
        self.listener_tls(&record)?;
        let listener = match self.listen_of(patch.listen, patch.port) {
            Some(listen) if listen != record.listen => {
                let l = bind(&listen).await?;
                record.listen = l.local_addr().map_or(listen, |a| a.to_string());
                Some(l)
            }
            _ => None,
        };
        let mut next = state.clone();
        next.bdbs.insert(uid, record.clone());
        // `apply` updates the policy, the context and the listener, and brings the
        // upstream users and connected clients in step with the new rules.
        if let Some(l) = listener {
            self.prebind(uid, l);
        }
        let committed = self.commit(&mut state, next).await;
        self.unprebind(uid);
        committed?;
        Ok(record)
    }

    /// Deletes a database: its listener stops and its connections are closed.
    pub async fn delete_bdb(&self, uid: u32) -> Result<()> {
        self.delete_bdb_by(None, uid).await
    }

    /// Deletes a database; the event log names `actor`.
    pub async fn delete_bdb_by(&self, actor: Option<&Caller>, uid: u32) -> Result<()> {
        self.retrying(|| self.delete_bdb_once(actor, uid)).await
    }

    async fn delete_bdb_once(&self, actor: Option<&Caller>, uid: u32) -> Result<()> {
        let mut state = self.lock().await?;
        if !state.bdbs.contains_key(&uid) {
            return Err(Error::not_found("bdb_not_exist", format!("database {uid} does not exist")));
        }
        if self.inner.config_upstreams.contains_key(&uid) {
            return Err(Error::bad_request(
                "invalid_parameter",
                "this database is defined in the config file; remove it there",
            ));
        }
        let mut next = state.clone();
        next.bdbs.remove(&uid);
        let mut event = Self::event_by("bdb_deleted", actor);
        event.bdb_uid = Some(uid);
        self.record(&mut next, event);
        // `apply` stops the listener and closes the connections.
        self.commit(&mut state, next).await
    }
}
