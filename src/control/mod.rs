//! The control plane: the one writer of turnstile's state.
//!
//! Every admin change follows the same path under one lock: catch up with the
//! store → validate → compute the next state (argon2 happens here, off the async
//! workers) → compare-and-set it into the store → [`apply`](Control::apply) the
//! difference to the in-memory directory, listeners and connections → answer. So an
//! acknowledged change survives a crash, a failed write changes nothing, and
//! concurrent calls — on this node or on another node of the fleet — never lose one
//! another's updates (a write that lost the race is built again on the new state).
//! Changes other nodes make reach memory through the same `apply`. The data path
//! never takes this lock: it reads the directory, which is only swapped.

mod apply;
pub mod bdbs;
pub mod complexity;
pub mod credential_envs;
mod endpoints;
pub mod error;
pub mod fleet;
mod login;
pub mod objects;
mod passwords;
mod rights;
pub mod roles;
pub mod rotation;
mod schedule;
mod telemetry;
mod usage;
pub use crate::time;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::auth::{BdbAccess, Directory, HashParams, PasswordSet, SetId, VerifyOptions};
use crate::config::TlsMode;
use crate::proxy::Upstream;
use crate::store::state::{BdbRecord, UserRecord};
use crate::store::{Revision, State, Store, StoreError};
pub use credential_envs::CredentialEnvs;
pub use error::{Error, Kind, Result};
pub use login::{Caller, status as user_status};
pub use passwords::PasswordOp;
pub use usage::PasswordsView;

/// What the control plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hash_params: HashParams,
    pub verify: VerifyOptions,
    /// `[bootstrap]`: the first admin, created when the store is empty.
    pub admin_name: String,
    pub admin_email: String,
    /// `TURNSTILE_ADMIN_PASSWORD`, needed only when the store is empty.
    pub admin_password: Option<Zeroizing<String>>,
    /// Databases from the config file. Their connection details (listen address,
    /// upstream and its secret) come from the file on every start; everything else
    /// lives in the store once they are there.
    pub bdbs: Vec<crate::config::Bdb>,
    /// `[admin.credential_envs]`: the environment variables databases created
    /// through the API may take secrets from, and where each may be sent.
    pub credential_envs: CredentialEnvs,
    /// Host that databases created with only a `port` listen on.
    pub default_bind_host: String,
    pub connect_timeout: Duration,
    /// Deadline for a new database connection's first AUTH (zero: none).
    pub auth_timeout: Duration,
    /// Idle upstream connections kept for reuse.
    pub pool: crate::proxy::PoolLimits,
    /// Where database listeners with TLS and no certificate of their own get one.
    /// None: such listeners are refused.
    pub default_cert: Option<DefaultCert>,
    /// Events kept in each ring of the event log.
    pub event_log_capacity: usize,
    /// Whether `GET /metrics` requires admin API credentials.
    pub metrics_auth: bool,
    /// The bound on unauthenticated connections, shared by every database.
    pub admission: Arc<crate::proxy::admission::Admission>,
    /// This node's admin API address, as the fleet's registry shows it.
    pub node_addr: String,
    /// How long a writer waits for the other live nodes to apply its change.
    pub confirm_timeout: Duration,
    /// A node without a heartbeat for this long leaves the registry.
    pub node_forget: Duration,
}

/// The admin API's certificate, shared with database listeners that have TLS and no
/// certificate of their own: the operator's PEM files, or the self-signed pair in
/// `dir/tls`, generated on first use (so nothing is made while no one needs it).
#[derive(Debug, Clone)]
pub struct DefaultCert {
    pub dir: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Cheap-to-clone handle. See the module documentation.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// The store revision `state` is at (changed only under the `state` lock).
    revision: std::sync::Mutex<Revision>,
    snapshot: ArcSwap<State>,
    /// The store's health and this node's place in the fleet.
    fleet: fleet::FleetState,
    /// Listeners bound by an operation before its commit (so a taken port refuses
    /// the change), handed to `apply`.
    prebound: std::sync::Mutex<HashMap<u32, tokio::net::TcpListener>>,
    /// Listen addresses of config-defined databases (each node's own).
    config_listen: HashMap<u32, String>,
    hash_params: HashParams,
    store: Arc<dyn Store>,
    directory: Directory,
    endpoints: endpoints::Endpoints,
    /// Upstreams of config-defined databases, secrets included (never stored).
    config_upstreams: HashMap<u32, Upstream>,
    /// Which environment secrets the other databases may use, and where they go.
    credential_envs: CredentialEnvs,
    /// Listener TLS of config-defined databases that have it.
    config_tls: HashMap<u32, crate::config::ListenerTls>,
    default_cert: Option<DefaultCert>,
    default_bind_host: String,
    connect_timeout: Duration,
    auth_timeout: Duration,
    pool: crate::proxy::PoolLimits,
    /// Failed admin logins per user uid: (count, first failure time).
    failures: DashMap<u32, (u32, u64)>,
    /// Last successful admin login per user uid, written to the store with the next
    /// change rather than on every request.
    last_login: DashMap<u32, u64>,
    /// Rotation counters and admin request latency.
    metrics: crate::metrics::AdminMetrics,
    event_log_capacity: usize,
    metrics_auth: bool,
    /// turnstile's secret for its upstream users (from the store).
    secret: crate::authz::Secret,
    admission: Arc<crate::proxy::admission::Admission>,
    /// Wakes the `expire_old_after` scheduler when a schedule changes.
    expiry: Arc<tokio::sync::Notify>,
    /// Store writes made (a metric: usage must not turn into a write per AUTH).
    store_writes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

/// Start-up failed: the store, the bootstrap, or a listener.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the store is empty: set TURNSTILE_ADMIN_PASSWORD to create the first admin ({0})")]
    NoAdminPassword(String),
    #[error("{0}")]
    Invalid(String),
    /// A config-file database's upstream refuses to let turnstile manage its users.
    #[error("{0}")]
    Unmanageable(String),
}

impl Control {
    /// Loads (or bootstraps) the state, fills the directory, and starts a listener
    /// for every database. Connections run on `tracker` until `shutdown`.
    pub async fn start(
        settings: Settings,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> std::result::Result<Self, StartError> {
        let directory = Directory::new(settings.hash_params, settings.verify.clone());
        let (loaded, from_cache) = fleet::load_at_start(&store).await?;
        let fresh = loaded.is_none();
        let revision = loaded.as_ref().map_or(Revision::EMPTY, |l| l.revision);
        let mut state = loaded.map(|l| l.state).unwrap_or_default();
        // A node started from its cache has no store to write to: it serves what it
        // knows and lets the store be written when it is back.
        let mut dirty = fresh && !from_cache;
        if fresh {
            let password = settings
                .admin_password
                .as_ref()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| StartError::NoAdminPassword(settings.admin_email.clone()))?;
            let set = directory
                .fresh_set(password.as_bytes())
                .await
                .map_err(|e| StartError::Invalid(e.to_string()))?;
            state.users.insert(
                1,
                UserRecord {
                    uid: 1,
                    name: settings.admin_name.clone(),
                    email: settings.admin_email.clone(),
                    role: "admin".into(),
                    role_uids: Vec::new(),
                    auth_method: "regular".into(),
                    passwords: set.to_phc(),
                    password_meta: Vec::new(),
                    password_expiry: None,
                    password_issue_date: time::now(),
                    last_login: None,
                    locked_until: None,
                },
            );
        }
        let mut config_upstreams = HashMap::new();
        let mut config_tls = HashMap::new();
        let mut config_listen = HashMap::new();
        for b in &settings.bdbs {
            config_upstreams.insert(b.uid, b.upstream.clone());
            config_listen.insert(b.uid, b.listen.to_string());
            if let Some(t) = &b.tls {
                config_tls.insert(b.uid, t.clone());
            }
            let record = state.bdbs.entry(b.uid).or_insert_with(|| {
                dirty = true;
                BdbRecord {
                    uid: b.uid,
                    name: b.name.clone(),
                    listen: b.listen.to_string(),
                    upstream: String::new(),
                    upstream_password_env: None,
                    sentinel_username: None,
                    sentinel_password_env: None,
                    default_user: b.default_user,
                    roles_permissions: Vec::new(),
                    disconnect_clients_on_password_removal: false,
                    max_connections: b.max_connections as u32,
                    passwords: Vec::new(),
                    password_meta: Vec::new(),
                    password_expiry: None,
                    tls_mode: TlsMode::Disabled,
                }
            });
            let shown = display_upstream(&b.upstream);
            let tls_mode = if b.tls.is_some() { TlsMode::Enabled } else { TlsMode::Disabled };
            // In a fleet every node has its own listen address for a config-defined
            // database; the stored one is the first node's, and the nodes do not
            // rewrite it in turn on every start.
            let listen_differs = store.fleet().is_none() && record.listen != b.listen.to_string();
            if record.upstream != shown || listen_differs || record.tls_mode != tls_mode {
                record.upstream = shown;
                record.listen = b.listen.to_string();
                record.tls_mode = tls_mode;
                dirty = true;
            }
            if record.passwords.is_empty()
                && let Some(pw) = &b.default_password
            {
                let set = directory
                    .fresh_set(pw.as_bytes())
                    .await
                    .map_err(|e| StartError::Invalid(e.to_string()))?;
                record.passwords = set.to_phc();
                dirty = true;
            }
        }
        let secret = match state
            .upstream_users
            .as_ref()
            .and_then(|r| crate::authz::Secret::from_parts(&r.instance, &r.secret))
        {
            Some(s) => s,
            None => {
                let s = crate::authz::Secret::random();
                state.upstream_users = Some(crate::store::state::UpstreamUsersRecord {
                    instance: s.instance().to_string(),
                    secret: s.key_hex().to_string(),
                });
                dirty = true;
                s
            }
        };
        let shared = store.fleet().is_some();
        let control = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                revision: std::sync::Mutex::new(revision),
                snapshot: ArcSwap::from_pointee(State::default()),
                fleet: fleet::FleetState::new(
                    shared,
                    settings.node_addr.clone(),
                    settings.confirm_timeout,
                    settings.node_forget,
                    !from_cache,
                ),
                prebound: std::sync::Mutex::new(HashMap::new()),
                config_listen,
                hash_params: settings.hash_params,
                store,
                directory,
                endpoints: endpoints::Endpoints::new(shutdown, tracker),
                config_upstreams,
                credential_envs: settings.credential_envs.clone(),
                config_tls,
                default_cert: settings.default_cert.clone(),
                default_bind_host: settings.default_bind_host.clone(),
                connect_timeout: settings.connect_timeout,
                auth_timeout: settings.auth_timeout,
                pool: settings.pool,
                failures: DashMap::new(),
                last_login: DashMap::new(),
                metrics: crate::metrics::AdminMetrics::default(),
                event_log_capacity: settings.event_log_capacity,
                metrics_auth: settings.metrics_auth,
                secret,
                admission: Arc::clone(&settings.admission),
                expiry: Arc::new(tokio::sync::Notify::new()),
                store_writes: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        // Passwords stored before they had ids get theirs (and the state is written).
        dirty |= control.load_directory(&mut state, settings.hash_params)?;
        // Start-up is one more difference to apply: from nothing to the state.
        {
            let mut guard = control.inner.state.lock().await;
            *guard = state.clone();
            control.inner.snapshot.store(Arc::new(state.clone()));
            let failed = control.apply(&State::default(), &state).await;
            if !from_cache {
                control.inner.fleet.keep(&state, revision);
            }
            // A config database that cannot bind is fatal; a database created through
            // the API whose port was taken meanwhile is reported and left stopped.
            if let Some((uid, e)) =
                failed.into_iter().find(|(uid, _)| control.inner.config_upstreams.contains_key(uid))
            {
                return Err(StartError::Invalid(format!("bdb {uid}: {}", e.description)));
            }
            if dirty {
                let next = state.clone();
                match control.commit(&mut guard, next).await {
                    // Another node of the fleet, starting at the same moment, wrote
                    // first (the bootstrap, its config databases): take its state.
                    Err(e) if e.code == CONFLICT => control.catch_up(&mut guard).await?,
                    r => r.map_err(|e| StartError::Invalid(e.description))?,
                }
            }
        }
        // Schedules that fell due while turnstile was down fire before anyone can
        // log in with the passwords they remove.
        control.expire_due().await;
        for uid in state.bdbs.keys() {
            control.check_manageable(*uid).await?;
        }
        control.spawn_event_flusher();
        control.spawn_expiry_scheduler();
        control.spawn_reconciler();
        control.spawn_fleet();
        Ok(control)
    }

    /// Makes a database's upstream users for the first time. A config-defined
    /// database whose upstream refuses to manage users (the service credential
    /// lacks `ACL SETUSER`…) stops the start: its clients could not act with their
    /// own rights, and turnstile never lets them act with the service's. One whose
    /// upstream is down gets its users when it is back. API-created databases
    /// report it at `/ready`.
    async fn check_manageable(&self, uid: u32) -> std::result::Result<(), StartError> {
        let Some(ctx) = self.inner.endpoints.ctx(uid) else { return Ok(()) };
        let grants = self.inner.directory.grants_of(uid);
        match ctx.users.reconcile(&ctx.upstream_full(), &grants).await {
            Err(crate::proxy::users::ManageError::Upstream(
                e @ (crate::proxy::UpstreamError::CannotManage | crate::proxy::UpstreamError::ServiceRefused),
            )) if self.inner.config_upstreams.contains_key(&uid) => Err(StartError::Unmanageable(format!(
                "bdb {uid}: {e}. Give the service user at least: ACL SETUSER <user> on >… {}",
                crate::authz::denials::CONTROL_ACL
            ))),
            Err(crate::proxy::users::ManageError::RuleRefused(why))
                if self.inner.config_upstreams.contains_key(&uid) =>
            {
                Err(StartError::Unmanageable(format!(
                    "bdb {uid}: the upstream refused a redis_acl rule: {why}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Fills the directory from `state`, with the passwords' public ids. Returns
    /// whether `state` changed (passwords without ids got theirs) and must be written.
    fn load_directory(&self, state: &mut State, params: HashParams) -> std::result::Result<bool, StartError> {
        let d = &self.inner.directory;
        let invalid = |e: &dyn std::fmt::Display| StartError::Invalid(e.to_string());
        let mut changed = false;
        for a in state.redis_acls.values() {
            d.set_acl(a.uid, &a.acl);
        }
        for b in state.bdbs.values_mut() {
            d.set_bdb(b.uid, access_of(b));
            let set = PasswordSet::from_phc(&b.passwords, params).map_err(|e| invalid(&e))?;
            let (set, made) = rotation::restore_ids(set, &b.password_meta);
            if let Some(m) = made {
                b.password_meta = m;
                changed = true;
            }
            d.restore(&SetId::BdbDefault(b.uid), set).map_err(|e| invalid(&e))?;
        }
        for u in state.users.values_mut() {
            d.set_user(&u.name, u.role_uids.clone()).map_err(|e| invalid(&e))?;
            let set = PasswordSet::from_phc(&u.passwords, params).map_err(|e| invalid(&e))?;
            let (set, made) = rotation::restore_ids(set, &u.password_meta);
            if let Some(m) = made {
                u.password_meta = m;
                changed = true;
            }
            d.restore(&SetId::User(u.name.as_str().into()), set).map_err(|e| invalid(&e))?;
        }
        Ok(changed)
    }

    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// The state as of the last committed change (lock-free).
    pub fn snapshot(&self) -> Arc<State> {
        self.inner.snapshot.load_full()
    }

    /// Addresses the databases listen on, by uid.
    pub fn endpoint_addrs(&self) -> Vec<(u32, SocketAddr)> {
        self.inner.endpoints.addrs()
    }

    /// Store writes attempted since start.
    pub fn store_writes(&self) -> u64 {
        self.inner.store_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When the user last logged in to the admin API (not yet stored).
    pub fn last_login(&self, uid: u32) -> Option<u64> {
        self.inner.last_login.get(&uid).map(|v| *v)
    }

    /// The running context of a database (for tests and metrics).
    pub fn endpoint(&self, uid: u32) -> Option<Arc<crate::proxy::BdbContext>> {
        self.inner.endpoints.ctx(uid)
    }

    /// Takes the writers' lock, caught up with the store: a change is validated
    /// against the newest state, whichever node wrote it. A store that cannot be
    /// reached refuses the change at once (503 `store_error`).
    async fn lock(&self) -> Result<MutexGuard<'_, State>> {
        let mut guard = self.inner.state.lock().await;
        if self.inner.store.fleet().is_some() {
            self.catch_up(&mut guard).await?;
        }
        Ok(guard)
    }

    /// Makes `next` durable, then current, and applies the difference to memory.
    /// On failure nothing changes; a lost compare-and-set is `store_conflict`, which
    /// [`retrying`](Self::retrying) turns into a fresh attempt.
    async fn commit(&self, current: &mut MutexGuard<'_, State>, mut next: State) -> Result<()> {
        for e in self.inner.last_login.iter() {
            if let Some(u) = next.users.get_mut(e.key()) {
                u.last_login = Some(*e.value());
            }
        }
        // So do the passwords' last-use times.
        self.fold_usage(&mut next);
        // Failed AUTHs waiting in memory ride along with this write.
        let drained = self.inner.directory.failures().take();
        self.append_failures(&mut next, &drained);
        let unconfirmed =
            std::mem::take(&mut *self.inner.fleet.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()));
        for e in &unconfirmed {
            next.events.push_admin(e.clone(), self.inner.event_log_capacity);
        }
        // So do changes of primary of Sentinel-managed databases.
        let switches = self.take_switches();
        self.append_switches(&mut next, &switches);
        let store = Arc::clone(&self.inner.store);
        let base = *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner());
        let to_write = if store.fleet().is_some() {
            // A shared store keeps the event log apart: it is sent only the events
            // this write adds, and a write of events alone is an append that moves
            // no revision (no compare-and-set, no reload on every node).
            let (to_write, events_only) = split_events(current, &mut next);
            if events_only && base != Revision::EMPTY {
                let written = tokio::task::spawn_blocking(move || {
                    store.fleet().map(|f| f.append_events(&to_write.events)).unwrap_or(Ok(()))
                })
                .await;
                self.inner.store_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(Ok(())) = written {
                    self.inner.fleet.store_ok(base);
                    **current = next;
                    self.inner.snapshot.store(Arc::new(current.clone()));
                    return Ok(());
                }
                self.inner.directory.failures().restore(drained);
                self.inner.fleet.requeue(unconfirmed);
                self.restore_switches(switches);
                self.inner.fleet.store_failed();
                return Err(match written {
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "event log write failed");
                        store_error_because(&e.to_string())
                    }
                    _ => store_error(),
                });
            }
            to_write
        } else {
            next.clone()
        };
        let written = tokio::task::spawn_blocking(move || store.commit(&base, &to_write)).await;
        self.inner.store_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let committed = match written {
            Ok(Ok(c)) => c,
            Ok(Err(StoreError::Conflict(now))) => {
                self.inner.directory.failures().restore(drained);
                self.inner.fleet.requeue(unconfirmed);
                self.restore_switches(switches);
                tracing::debug!(
                    base = base.number,
                    now,
                    "another node wrote first; building the change again"
                );
                return Err(Error::new(Kind::Unavailable, CONFLICT, "the store changed meanwhile"));
            }
            failed => {
                // The store's own error is told to the admin; a failed task's
                // (a panic) only to the log.
                let (e, told) = match failed {
                    Ok(Err(e)) => (e.to_string(), true),
                    Err(e) => (e.to_string(), false),
                    Ok(Ok(_)) => unreachable!(),
                };
                self.inner.directory.failures().restore(drained);
                self.inner.fleet.requeue(unconfirmed);
                self.restore_switches(switches);
                self.inner.fleet.store_failed();
                tracing::error!(error = %e, "store write failed; change not applied");
                return Err(if told { store_error_because(&e) } else { store_error() });
            }
        };
        self.inner.fleet.store_ok(committed.revision);
        *self.inner.revision.lock().unwrap_or_else(|p| p.into_inner()) = committed.revision;
        self.inner.snapshot.store(Arc::new(next.clone()));
        let before = std::mem::replace(&mut **current, next);
        let after = current.clone();
        self.apply(&before, &after).await;
        self.report_applied();
        self.inner.fleet.keep(&after, committed.revision);
        if committed.unreplicated {
            return Err(Error::new(
                Kind::Unavailable,
                "store_not_replicated",
                "the change is stored and applied, but fewer replicas than store.min_replicas confirmed it in time",
            ));
        }
        Ok(())
    }

    /// Commits the current state unchanged, which carries what is pending beside it
    /// (usage times, failed AUTHs, events); `what` names it in the warning if the
    /// store refuses (the next flush retries).
    pub(super) async fn commit_pending(&self, what: &str) {
        let r = self
            .retrying(|| async {
                let mut state = self.lock().await?;
                let next = state.clone();
                self.commit(&mut state, next).await
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not write {what}; will retry");
        }
    }

    /// Runs `op` until it is not refused for a lost compare-and-set (bounded), then
    /// waits (bounded) for every other live node to apply what it committed.
    pub(super) async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            match op().await {
                Err(e) if e.code == CONFLICT => continue,
                r => {
                    // A change stored on the primary but not on enough replicas
                    // is applied all the same: the other nodes get it too, and
                    // its 503 comes when they apply it, as a 200 would.
                    let applied = match &r {
                        Ok(_) => true,
                        Err(e) => e.code == "store_not_replicated",
                    };
                    if applied {
                        let stale = self.confirm().await;
                        if !stale.is_empty() {
                            // Named in the log (written with the next change) and
                            // shown `stale` by GET /v1/nodes meanwhile.
                            let mut e =
                                crate::store::events::Event::new("change_unconfirmed", time::now_ms());
                            e.node = self.node_uid();
                            e.nodes = Some(stale);
                            self.inner.fleet.requeue(vec![e]);
                        }
                    }
                    return r;
                }
            }
        }
        Err(Error::new(
            Kind::Unavailable,
            "store_busy",
            "the store kept changing under this write; nothing was changed, try again",
        ))
    }

    /// The upstream of a database: the config file's (with its secret) for
    /// config-defined databases, else the stored URL plus its secret's variable.
    fn upstream_of(&self, record: &BdbRecord) -> Result<Upstream> {
        if let Some(u) = self.inner.config_upstreams.get(&record.uid) {
            return Ok(u.clone());
        }
        let mut u = Upstream::parse(&record.upstream)
            .map_err(|why| Error::bad_request("invalid_parameter", format!("upstream: {why}")))?;
        u.connect_timeout = self.inner.connect_timeout;
        u.pool = self.inner.pool;
        self.check_credential_envs(record, &u)?;
        if let Some(var) = &record.upstream_password_env {
            let value = std::env::var(var).map_err(|_| {
                Error::bad_request(
                    "invalid_parameter",
                    format!("upstream_password_env: environment variable {var} is not set"),
                )
            })?;
            u.password = Some(Zeroizing::new(value));
        }
        crate::config::sentinel_credentials(
            &mut u,
            record.sentinel_username.as_deref(),
            record.sentinel_password_env.as_deref(),
            &|k| std::env::var(k).ok(),
        )
        .map_err(|(k, why)| Error::bad_request("invalid_parameter", format!("{k}: {why}")))?;
        Ok(u)
    }

    /// Refuses a record that names a variable the operator did not allow for its
    /// upstream's addresses (`admin.credential_envs`). Every path to a record's
    /// secret (create, change, a record loaded from the store or written by another
    /// node) goes through [`upstream_of`](Self::upstream_of), and this runs there
    /// before any variable is read and before anything connects.
    fn check_credential_envs(&self, record: &BdbRecord, u: &Upstream) -> Result<()> {
        // A Sentinel URL's nodes are whichever its Sentinels name: listing the
        // Sentinels is the operator vouching for them and the nodes they name, so
        // both secrets are checked against the Sentinels' addresses.
        let addresses: Vec<&str> = match &u.sentinel {
            Some(s) => s.sentinels.iter().map(String::as_str).collect(),
            None => vec![u.address.as_str()],
        };
        for (key, var) in [
            ("upstream_password_env", &record.upstream_password_env),
            ("sentinel_password_env", &record.sentinel_password_env),
        ] {
            if let Some(var) = var {
                self.inner.credential_envs.check(var, &addresses).map_err(|why| {
                    tracing::warn!(bdb = record.uid, key, %why, "upstream secret refused");
                    Error::bad_request("invalid_parameter", format!("{key}: {why}"))
                })?;
            }
        }
        Ok(())
    }

    /// The TLS a database's listener serves, built from its PEM files (None: plain
    /// TCP). Config-defined databases use the file's settings; the others, the
    /// default certificate.
    fn listener_tls(&self, record: &BdbRecord) -> Result<Option<Arc<rustls::ServerConfig>>> {
        if record.tls_mode == TlsMode::Disabled {
            return Ok(None);
        }
        let unusable = |e: String| {
            tracing::error!(bdb = record.uid, error = %e, "database TLS certificate not usable");
            Error::new(Kind::NotAcceptable, "tls_certificate_error", format!("tls_mode: {e}"))
        };
        let own = self.inner.config_tls.get(&record.uid);
        let (cert, key) = match (own.and_then(|t| t.cert.clone()), &self.inner.default_cert) {
            (Some(pair), _) => pair,
            (None, Some(d)) => crate::admin::tls::cert_paths(&d.dir, d.cert.as_deref(), d.key.as_deref())
                .map_err(|e| unusable(e.to_string()))?,
            (None, None) => {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    "tls_mode: \"enabled\" needs a certificate, and none is configured",
                ));
            }
        };
        let client_ca = own.and_then(|t| t.client_ca.as_deref());
        let config =
            crate::tls::server_config(&cert, &key, client_ca).map_err(|e| unusable(e.to_string()))?;
        Ok(Some(config))
    }

    /// Whether a database requires client certificates (RS's
    /// `enforce_client_authentication`).
    pub fn client_auth(&self, uid: u32) -> bool {
        self.inner.config_tls.get(&uid).is_some_and(|t| t.client_ca.is_some())
    }

    /// Closes, on every database, the connections `matches` selects, where the
    /// database's setting allows (`only_if_flagged`) or always.
    fn close_sessions(&self, only_if_flagged: bool, matches: impl Fn(&crate::auth::Identity) -> bool) {
        let snap = self.snapshot();
        for (uid, ctx) in self.inner.endpoints.all() {
            let flagged = snap.bdbs.get(&uid).is_some_and(|b| b.disconnect_clients_on_password_removal);
            if !only_if_flagged || flagged {
                let n = ctx.sessions.close_where(&matches);
                if n > 0 {
                    tracing::info!(bdb = uid, closed = n, "closed connections after a credential change");
                }
            }
        }
    }
}

/// The code of a lost compare-and-set (never seen by a client: the write is retried).
const CONFLICT: &str = "store_conflict";

/// Attempts at a write that keeps losing the compare-and-set to other nodes.
const MAX_ATTEMPTS: usize = 50;

/// The store cannot be reached: a write is refused, nothing changes.
/// What a shared store is sent for `next`: the state with only the events added
/// since `current` (the log only grows at its end; numbers are `next_seq`), and
/// whether that is all that changed.
fn split_events(current: &mut State, next: &mut State) -> (State, bool) {
    let since = current.events.next_seq;
    let events = std::mem::take(&mut next.events);
    let mine = std::mem::take(&mut current.events);
    let events_only = *current == *next;
    current.events = mine;
    let mut to_write = next.clone();
    next.events = events;
    let added = |ring: &std::collections::VecDeque<crate::store::events::Event>| {
        ring.iter().filter(|e| e.seq >= since).cloned().collect()
    };
    to_write.events = crate::store::events::EventLog {
        admin: added(&next.events.admin),
        security: added(&next.events.security),
        next_seq: next.events.next_seq,
    };
    (to_write, events_only)
}

fn store_error() -> Error {
    Error::new(
        Kind::Unavailable,
        "store_error",
        "the change could not be stored durably; nothing was changed",
    )
}

/// `store_error` saying why (a refused certificate, a timeout, a refused AUTH), so
/// an operator need not dig in the logs. The reason is the store client's own text:
/// it never holds the password (which is not in the URL) or a key.
fn store_error_because(why: &str) -> Error {
    Error::new(
        Kind::Unavailable,
        "store_error",
        format!("the change could not be stored durably; nothing was changed ({why})"),
    )
}

/// A database's access policy as the directory wants it.
fn access_of(b: &BdbRecord) -> BdbAccess {
    BdbAccess {
        default_user: b.default_user,
        permissions: b
            .roles_permissions
            .iter()
            .map(|r| crate::auth::Permission { role: r.role_uid, acl: r.redis_acl_uid })
            .collect(),
    }
}

/// `redis[s]://[user@]host:port`: the upstream without its password.
fn display_upstream(u: &Upstream) -> String {
    u.display()
}
