//! The TOML configuration: its shape, its defaults, and validation that names the
//! offending key. Everything is checked before any port is bound.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::{HashParams, VerifyOptions};
use crate::proxy::Upstream;

/// A configuration problem: which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {why}")]
pub struct ConfigError {
    pub key: String,
    pub why: String,
}

fn err(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), why: why.into() }
}

/// The file as written. See the README for every key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub admin: AdminConfig,
    pub store: StoreConfig,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub bdbs: Vec<BdbConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: String,
    #[serde(default = "yes")]
    pub tls: bool,
    /// PEM certificate chain and key; without them a self-signed pair is made on
    /// first start and kept in the store directory.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Whether `GET /metrics` needs admin API credentials (off: Prometheus scrapers
    /// usually have none, and the metrics hold no secret).
    #[serde(default)]
    pub metrics_auth: bool,
    /// Events kept in each ring of the event log (`GET /v1/logs`).
    #[serde(default = "default_event_log_capacity")]
    pub event_log_capacity: usize,
    /// Admin connections open at once; more are closed as soon as they are accepted.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
    /// Admin connections from one source address at once (0 = no bound); more are
    /// closed as soon as they are accepted, before they take one of `max_connections`,
    /// so one address cannot hold every slot and shut the others out.
    #[serde(default = "default_admin_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// A request's head (request line and headers) must arrive within this; an
    /// HTTP/1.1 connection waiting for its next request is closed after it too.
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2
    /// included, whose clients answer keep-alive pings while idle).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// The TLS handshake must finish within this.
    #[serde(default = "default_tls_handshake_timeout_secs")]
    pub tls_handshake_timeout_secs: u64,
    /// A request's body must arrive within this once the handler reads it (408).
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// `[admin.credential_envs]`: the environment variables a database created
    /// through the API may name (`upstream_password_env`, `sentinel_password_env`),
    /// each with the only upstream addresses (`host:port`) its value may be sent
    /// to. Empty: such databases use no secret from the environment. Last, so
    /// that `check-config` prints it after the table's other keys.
    #[serde(default)]
    pub credential_envs: BTreeMap<String, Vec<String>>,
}

fn default_body_timeout_secs() -> u64 {
    crate::admin::extract::DEFAULT_BODY_TIMEOUT.as_secs()
}

fn default_admin_max_connections() -> usize {
    1024
}

fn default_admin_max_connections_per_address() -> usize {
    64
}

fn default_header_timeout_secs() -> u64 {
    10
}

fn default_idle_timeout_secs() -> u64 {
    60
}

fn default_tls_handshake_timeout_secs() -> u64 {
    10
}

fn default_event_log_capacity() -> usize {
    crate::store::events::DEFAULT_CAPACITY
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The file store; with `redis`, this node's cache of the last known state (it
    /// starts from it while the store is down), its certificate and its node uid.
    pub dir: PathBuf,
    /// `redis://[user@]host:port[/db]` or `rediss://…`: a store shared by a fleet
    /// of nodes. Never with a password (see `redis_password_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// Environment variable holding the store's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password_env: Option<String>,
    /// Prefix of every key turnstile uses in the store.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// With `rediss://`: the CA (PEM) that signed the store's certificate. Required:
    /// the system roots alone would let any publicly trusted certificate pose as
    /// the store that holds every credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// With `rediss://`: a client certificate (PEM) for a store that requires one
    /// (`tls-auth-clients yes`); goes with `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Replicas that must confirm a change (Redis `WAIT`) before its 200; else 503.
    #[serde(default)]
    pub min_replicas: u32,
    /// Bound on every store call, milliseconds: a store that does not answer in it
    /// is down (writes get 503, traffic carries on from the last known state).
    #[serde(default = "default_store_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a write waits for every other live node to apply it, milliseconds.
    #[serde(default = "default_confirm_timeout_ms")]
    pub confirm_timeout_ms: u64,
    /// A node without a heartbeat for this long (seconds) is removed from the
    /// registry (`GET /v1/nodes`) by any live node; until then it is shown `down`.
    #[serde(default = "default_node_forget_secs")]
    pub node_forget_secs: u64,
}

fn default_node_forget_secs() -> u64 {
    3600
}

fn default_key_prefix() -> String {
    "turnstile".into()
}

fn default_store_timeout_ms() -> u64 {
    500
}

fn default_confirm_timeout_ms() -> u64 {
    crate::control::fleet::DEFAULT_CONFIRM_TIMEOUT.as_millis() as u64
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    #[serde(default = "default_admin_name")]
    pub admin_name: String,
    #[serde(default = "default_admin_email")]
    pub admin_email: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self { admin_name: default_admin_name(), admin_email: default_admin_email() }
    }
}

/// Password hashing and verification (turnstile's own keys).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// argon2id memory cost, KiB.
    pub argon2_m_cost: u32,
    pub argon2_t_cost: u32,
    pub argon2_p_cost: u32,
    /// argon2 evaluations at once; 0 = half the cores (at least 1).
    pub verify_concurrency: usize,
    /// How long a verified password skips argon2, seconds; 0 disables the cache.
    pub cache_ttl_secs: u64,
    pub cache_capacity: usize,
    /// Failed AUTHs from one address within `throttle_window_secs` before its AUTHs
    /// are refused for `throttle_block_secs`; 0 turns throttling off.
    pub throttle_failures: u32,
    pub throttle_window_secs: u64,
    pub throttle_block_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let p = HashParams::default();
        let v = VerifyOptions::default();
        Self {
            argon2_m_cost: p.m_cost,
            argon2_t_cost: p.t_cost,
            argon2_p_cost: p.p_cost,
            verify_concurrency: 0,
            cache_ttl_secs: v.cache_ttl.as_secs(),
            cache_capacity: v.cache_capacity,
            throttle_failures: v.throttle.failures,
            throttle_window_secs: v.throttle.window.as_secs(),
            throttle_block_secs: v.throttle.block.as_secs(),
        }
    }
}

impl AuthConfig {
    pub fn hash_params(&self) -> HashParams {
        HashParams { m_cost: self.argon2_m_cost, t_cost: self.argon2_t_cost, p_cost: self.argon2_p_cost }
    }

    pub fn verify_options(&self) -> VerifyOptions {
        let mut v = VerifyOptions::default();
        if self.verify_concurrency > 0 {
            v.concurrency = self.verify_concurrency;
        }
        v.cache_ttl = Duration::from_secs(self.cache_ttl_secs);
        v.cache_capacity = self.cache_capacity;
        v.throttle = crate::auth::ThrottlePolicy {
            failures: self.throttle_failures,
            window: Duration::from_secs(self.throttle_window_secs),
            block: Duration::from_secs(self.throttle_block_secs),
        };
        v
    }
}

/// Data-path timeouts (turnstile's own keys).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub upstream_connect_timeout_ms: u64,
    /// A new connection must authenticate within this many seconds; 0 = no limit.
    pub auth_timeout_secs: u64,
    /// On SIGINT/SIGTERM, how long connections get to finish before exit.
    pub shutdown_grace_secs: u64,
    /// Idle upstream connections kept per database for the next clients (0 = none).
    pub upstream_pool_size: usize,
    /// How long an idle upstream connection is kept.
    pub upstream_pool_idle_secs: u64,
    /// Upstream connections per database that carry the stateless commands of all
    /// clients, multiplexed (0 = every client gets a connection of its own).
    pub upstream_shared_connections: usize,
    /// Threads that run connections and the admin API (0 = half the CPUs, at least
    /// one). argon2 runs on a pool of its own, whatever this is.
    pub worker_threads: usize,
    /// Connections not yet authenticated, over all databases; beyond it new ones get
    /// `-ERR max number of clients reached` and are closed. At most half the open
    /// file limit, whatever this says (0 = just that cap).
    pub max_unauthenticated_connections: usize,
    /// The same, per source address (0 = no bound).
    pub max_unauthenticated_per_address: usize,
    /// Redis's `client-output-buffer-limit` for clients of shared upstream
    /// connections, in MiB and seconds: replies queued beyond the hard limit, or
    /// beyond the soft one for longer than its seconds, disconnect the client
    /// (0 = no such limit).
    pub client_output_buffer_hard_mb: usize,
    pub client_output_buffer_soft_mb: usize,
    pub client_output_buffer_soft_secs: u64,
    /// All of a database's clients together (Redis's `maxmemory-clients`): beyond
    /// it, a client holding more than 256 KiB that gets more is disconnected.
    pub client_output_buffer_total_mb: usize,
    /// Sentinel-managed upstreams: how long a new request waits for a verified
    /// primary during a failover before `-ERR … primary is unknown`.
    pub sentinel_primary_wait_ms: u64,
    /// Sentinel-managed upstreams: how often the Sentinels are asked even without
    /// a `+switch-master` (the safety net), 50 to 1000 ms.
    pub sentinel_poll_ms: u64,
}

impl ProxyConfig {
    /// The worker threads to start: the configured number, or half the CPUs.
    ///
    /// Why half by default: a proxy in front of Redis moves small messages, and
    /// handing them between threads costs more than it saves. Measured on 2 cores
    /// (`benches/load/compare.sh`, GET -c 50 -P 1): 1 thread served ~70k rps, 2
    /// threads ~48k, because every request then woke a task on the other core. The
    /// rest of the machine is often Redis itself, or the application. One thread
    /// runs tokio's current-thread scheduler (see `main`).
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        }
    }
}

impl ProxyConfig {
    pub fn pool_limits(&self) -> crate::proxy::PoolLimits {
        crate::proxy::PoolLimits {
            size: self.upstream_pool_size,
            idle: Duration::from_secs(self.upstream_pool_idle_secs),
            shared: self.upstream_shared_connections,
            output: crate::proxy::OutputLimits {
                hard: self.client_output_buffer_hard_mb * MIB,
                soft: self.client_output_buffer_soft_mb * MIB,
                soft_for: Duration::from_secs(self.client_output_buffer_soft_secs),
                total: self.client_output_buffer_total_mb * MIB,
            },
            failover: crate::proxy::FailoverTiming {
                wait: Duration::from_millis(self.sentinel_primary_wait_ms),
                poll: Duration::from_millis(self.sentinel_poll_ms),
            },
        }
    }
}

const MIB: usize = 1024 * 1024;

impl Default for ProxyConfig {
    fn default() -> Self {
        let pool = crate::proxy::PoolLimits::default();
        Self {
            upstream_connect_timeout_ms: 3000,
            auth_timeout_secs: 30,
            shutdown_grace_secs: 10,
            upstream_pool_size: pool.size,
            upstream_pool_idle_secs: pool.idle.as_secs(),
            upstream_shared_connections: pool.shared,
            worker_threads: 0,
            max_unauthenticated_connections: 10_000,
            max_unauthenticated_per_address: 1_000,
            client_output_buffer_hard_mb: pool.output.hard / MIB,
            client_output_buffer_soft_mb: pool.output.soft / MIB,
            client_output_buffer_soft_secs: pool.output.soft_for.as_secs(),
            client_output_buffer_total_mb: pool.output.total / MIB,
            sentinel_primary_wait_ms: pool.failover.wait.as_millis() as u64,
            sentinel_poll_ms: pool.failover.poll.as_millis() as u64,
        }
    }
}

/// One database endpoint (`[[bdbs]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BdbConfig {
    pub uid: u32,
    pub name: String,
    pub listen: String,
    /// `redis://[user[:password]@]host:port`, or
    /// `redis+sentinel://[user[:password]@]host:port[,host:port…]/<master name>`
    /// (`rediss…` for TLS).
    pub upstream: String,
    /// Environment variable holding the upstream password (instead of the URL).
    pub upstream_password_env: Option<String>,
    /// For a Sentinel-managed upstream: the Sentinels' own user and the
    /// environment variable holding their password (not the data nodes').
    pub sentinel_username: Option<String>,
    pub sentinel_password_env: Option<String>,
    /// Whether `AUTH <password>` (the default user) is accepted.
    #[serde(default = "yes")]
    pub default_user: bool,
    /// Environment variable whose value seeds the default user's password set when
    /// the database has none. Without it the database accepts no `AUTH <password>`
    /// until a password is added.
    pub default_password_env: Option<String>,
    /// 0 = unlimited.
    #[serde(default)]
    pub max_connections: usize,
    /// RS's `tls_mode`: "disabled" (default) or "enabled" (the listener speaks TLS only).
    #[serde(default)]
    pub tls_mode: TlsMode,
    /// PEM certificate chain and key of the listener; without them the admin API's
    /// certificate is used (`admin.cert`/`admin.key`, or the generated one).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate it signed
    /// (RS's `enforce_client_authentication`).
    pub tls_client_ca: Option<PathBuf>,
    /// For a `rediss://` upstream: the PEM CA that verifies the upstream's certificate.
    pub upstream_tls_ca: Option<PathBuf>,
    /// turnstile's client certificate and key, for an upstream that requires one.
    pub upstream_tls_cert: Option<PathBuf>,
    pub upstream_tls_key: Option<PathBuf>,
}

/// RS's `tls_mode` values turnstile supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Disabled,
    Enabled,
}

impl TlsMode {
    /// RS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
        }
    }
}

/// A database listener's TLS settings, checked at load (files readable and usable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Certificate chain and key; None: the admin API's certificate.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Client certificates required, verified against this CA.
    pub client_ca: Option<PathBuf>,
}

/// The dotted key (`bdbs[0].upstream`) of the line holding `offset`, or of the
/// table it is in. Names the key without quoting the value, which may be secret.
fn key_at(text: &str, offset: usize) -> String {
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    for l in text[..line_start].lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            table = format!("{}[{}]", name.trim(), *n);
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().to_string();
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key = match line.split_once('=') {
        Some((k, _)) if !line.starts_with('[') => k.trim(),
        _ => "",
    };
    match (table.is_empty(), key.is_empty()) {
        (true, true) => "config".into(),
        (true, false) => key.into(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn yes() -> bool {
    true
}

fn default_admin_name() -> String {
    "admin".into()
}

fn default_admin_email() -> String {
    "admin@example.com".into()
}

/// A database endpoint after validation, secrets resolved.
#[derive(Debug, Clone)]
pub struct Bdb {
    pub uid: u32,
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    pub default_user: bool,
    pub default_password: Option<Zeroizing<String>>,
    pub max_connections: usize,
    /// Some: the listener speaks TLS.
    pub tls: Option<ListenerTls>,
}

/// A configuration that passed validation.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    /// The shared store's password (`store.redis_password_env`).
    pub store_password: Option<Zeroizing<String>>,
    pub admin_listen: SocketAddr,
    pub bdbs: Vec<Bdb>,
    /// `admin.credential_envs`, checked.
    pub credential_envs: crate::control::CredentialEnvs,
    pub hash_params: HashParams,
    pub verify: VerifyOptions,
    pub shutdown_grace: Duration,
}

impl Config {
    /// Checks `[store]`; returns the shared store's password, if it has one.
    fn validate_store(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Zeroizing<String>>, ConfigError> {
        let s = &self.store;
        if !(1..=60_000).contains(&s.timeout_ms) {
            return Err(err("store.timeout_ms", "must be between 1 and 60000"));
        }
        if s.confirm_timeout_ms > 60_000 {
            return Err(err("store.confirm_timeout_ms", "must be at most 60000"));
        }
        if !(5..=365 * 86_400).contains(&s.node_forget_secs) {
            return Err(err(
                "store.node_forget_secs",
                "must be between 5 (a node is down after 3 s without a heartbeat, and shown so) and 31536000",
            ));
        }
        if s.key_prefix.is_empty() || s.key_prefix.len() > 64 {
            return Err(err("store.key_prefix", "must be 1-64 characters"));
        }
        let Some(url) = &s.redis else {
            if s.redis_password_env.is_some() || s.min_replicas > 0 {
                return Err(err("store.redis", "redis_password_env and min_replicas need store.redis"));
            }
            Self::validate_store_tls(s, false)?;
            return Ok(None);
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(err("store.redis", "must look like redis://host:port or rediss://host:port"));
        };
        if scheme != "redis" && scheme != "rediss" {
            return Err(err("store.redis", "the scheme must be redis:// or rediss://"));
        }
        Self::validate_store_tls(s, scheme == "rediss")?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':')) {
            return Err(err(
                "store.redis",
                "give the password in an environment variable named by store.redis_password_env, not in the URL",
            ));
        }
        if redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
            return Err(err("store.redis", "is not a valid Redis URL"));
        }
        match &s.redis_password_env {
            None => Ok(None),
            Some(var) => env(var).map(|v| Some(Zeroizing::new(v))).ok_or_else(|| {
                err("store.redis_password_env", format!("environment variable {var} is not set"))
            }),
        }
    }

    /// `[admin.credential_envs]`. The variables turnstile reads for secrets that are
    /// not upstream credentials (the bootstrap admin's, the store's, the databases'
    /// client passwords) cannot be listed: no database may send them anywhere.
    fn validate_credential_envs(&self) -> Result<crate::control::CredentialEnvs, ConfigError> {
        use crate::control::credential_envs::Reserved;
        let mut reserved = Vec::new();
        if let Some(var) = &self.store.redis_password_env {
            reserved.push(Reserved { var, what: "the store's password (store.redis_password_env)".into() });
        }
        for (i, b) in self.bdbs.iter().enumerate() {
            if let Some(var) = &b.default_password_env {
                let what = format!("a database's client password (bdbs[{i}].default_password_env)");
                reserved.push(Reserved { var, what });
            }
        }
        crate::control::CredentialEnvs::new(&self.admin.credential_envs, &reserved)
            .map_err(|(var, why)| err(format!("admin.credential_envs.{var}"), why))
    }

    /// `[store] tls_ca`/`tls_cert`/`tls_key`: only with `rediss://`, where the CA is
    /// required; the files must load (errors name the file, never its contents).
    fn validate_store_tls(s: &StoreConfig, rediss: bool) -> Result<(), ConfigError> {
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(err("store.tls_cert", "tls_cert and tls_key go together: give both or neither"));
        }
        if !rediss {
            for (k, v) in [("store.tls_ca", &s.tls_ca), ("store.tls_cert", &s.tls_cert)] {
                if v.is_some() {
                    return Err(err(k, "set only with a rediss:// store"));
                }
            }
            return Ok(());
        }
        let ca = s.tls_ca.as_deref().ok_or_else(|| {
            err("store.tls_ca", "required with a rediss:// store (the CA that signed its certificate)")
        })?;
        crate::tls::load_certs(ca).map_err(|e| err("store.tls_ca", e.to_string()))?;
        let client = s.tls_cert.as_deref().zip(s.tls_key.as_deref());
        crate::tls::client_config(ca, client).map_err(|e| err("store.tls_cert", e.to_string()))?;
        Ok(())
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Validated, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), e.to_string()))?;
        Self::parse(&text)?.validate(&|k| std::env::var(k).ok())
    }

    /// Parses TOML; the error names the key and line.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        // Only the message and position: toml's full report quotes the offending
        // line, which could hold a password from an upstream URL.
        toml::from_str(text).map_err(|e| {
            let Some(span) = e.span() else {
                return err("config", e.message().trim_end());
            };
            let offset = span.start.min(text.len());
            let line = text[..offset].matches('\n').count() + 1;
            err(key_at(text, offset), format!("{} (line {line})", e.message().trim_end()))
        })
    }

    /// Checks everything and resolves secrets through `env`.
    pub fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Validated, ConfigError> {
        let admin_listen = self.admin.listen.parse().map_err(|_| {
            err("admin.listen", format!("{:?} is not an address like 127.0.0.1:9443", self.admin.listen))
        })?;
        if !(1..=100_000).contains(&self.admin.event_log_capacity) {
            return Err(err("admin.event_log_capacity", "must be between 1 and 100000"));
        }
        if self.admin.max_connections == 0 {
            return Err(err("admin.max_connections", "must be at least 1"));
        }
        for (k, v) in [
            ("admin.header_timeout_secs", self.admin.header_timeout_secs),
            ("admin.idle_timeout_secs", self.admin.idle_timeout_secs),
            ("admin.tls_handshake_timeout_secs", self.admin.tls_handshake_timeout_secs),
            ("admin.body_timeout_secs", self.admin.body_timeout_secs),
        ] {
            if !(1..=86_400).contains(&v) {
                return Err(err(k, "must be between 1 and 86400 seconds"));
            }
        }
        if self.admin.cert.is_some() != self.admin.key.is_some() {
            return Err(err("admin.cert", "admin.cert and admin.key go together: give both or neither"));
        }
        let hash_params = self.auth.hash_params();
        hash_params.validate().map_err(|why| err("auth.argon2_*", why))?;
        let mut verify = self.auth.verify_options();
        if self.auth.cache_capacity == 0 {
            verify.cache_ttl = Duration::ZERO;
        }
        let connect_timeout = Duration::from_millis(self.proxy.upstream_connect_timeout_ms);
        if connect_timeout.is_zero() {
            return Err(err("proxy.upstream_connect_timeout_ms", "must be greater than 0"));
        }
        if self.proxy.upstream_shared_connections > 64 {
            return Err(err("proxy.upstream_shared_connections", "must be at most 64 (0 turns sharing off)"));
        }
        // Bounded so the MiB count cannot overflow; 512 MiB is Redis's largest value.
        for (key, mb) in [
            ("proxy.client_output_buffer_hard_mb", self.proxy.client_output_buffer_hard_mb),
            ("proxy.client_output_buffer_soft_mb", self.proxy.client_output_buffer_soft_mb),
            ("proxy.client_output_buffer_total_mb", self.proxy.client_output_buffer_total_mb),
        ] {
            if mb > 1024 * 1024 {
                return Err(err(key, "must be at most 1048576 (1 TiB; 0 = no limit)"));
            }
        }
        if !(1..=600_000).contains(&self.proxy.sentinel_primary_wait_ms) {
            return Err(err("proxy.sentinel_primary_wait_ms", "must be between 1 and 600000"));
        }
        if !(50..=1000).contains(&self.proxy.sentinel_poll_ms) {
            return Err(err(
                "proxy.sentinel_poll_ms",
                "must be between 50 and 1000 (the poll is a safety net)",
            ));
        }
        if self.proxy.worker_threads > 1024 {
            return Err(err("proxy.worker_threads", "must be at most 1024 (0 = half the CPUs)"));
        }
        let store_password = self.validate_store(env)?;
        let mut uids = HashSet::new();
        let mut addrs = HashSet::from([admin_listen]);
        let mut bdbs = Vec::new();
        for (i, b) in self.bdbs.iter().enumerate() {
            let key = |k: &str| format!("bdbs[{i}].{k}");
            if !uids.insert(b.uid) {
                return Err(err(key("uid"), format!("uid {} is used by another database", b.uid)));
            }
            if b.name.trim().is_empty() {
                return Err(err(key("name"), "must not be empty"));
            }
            let listen: SocketAddr = b.listen.parse().map_err(|_| {
                err(key("listen"), format!("{:?} is not an address like 127.0.0.1:12000", b.listen))
            })?;
            if listen.port() != 0 && !addrs.insert(listen) {
                return Err(err(key("listen"), format!("{listen} is already used by another listener")));
            }
            let mut upstream = Upstream::parse(&b.upstream).map_err(|why| err(key("upstream"), why))?;
            upstream.connect_timeout = connect_timeout;
            upstream.pool = self.proxy.pool_limits();
            if let Some(var) = &b.upstream_password_env {
                if upstream.password.is_some() {
                    return Err(err(
                        key("upstream_password_env"),
                        "the upstream URL already has a password; give it in one place",
                    ));
                }
                let value = env(var).ok_or_else(|| {
                    err(key("upstream_password_env"), format!("environment variable {var} is not set"))
                })?;
                upstream.password = Some(Zeroizing::new(value));
            }
            sentinel_credentials(
                &mut upstream,
                b.sentinel_username.as_deref(),
                b.sentinel_password_env.as_deref(),
                env,
            )
            .map_err(|(k, why)| err(key(k), why))?;
            let default_password = match &b.default_password_env {
                None => None,
                Some(var) => {
                    let value = env(var).ok_or_else(|| {
                        err(key("default_password_env"), format!("environment variable {var} is not set"))
                    })?;
                    if value.is_empty() {
                        return Err(err(
                            key("default_password_env"),
                            format!("environment variable {var} is empty"),
                        ));
                    }
                    Some(Zeroizing::new(value))
                }
            };
            let tls = listener_tls(b, &key)?;
            upstream.tls_config = upstream_tls(b, upstream.tls, &key)?;
            bdbs.push(Bdb {
                uid: b.uid,
                name: b.name.clone(),
                listen,
                upstream,
                default_user: b.default_user,
                default_password,
                max_connections: b.max_connections,
                tls,
            });
        }
        let credential_envs = self.validate_credential_envs()?;
        let shutdown_grace = Duration::from_secs(self.proxy.shutdown_grace_secs);
        Ok(Validated {
            config: self,
            store_password,
            admin_listen,
            bdbs,
            credential_envs,
            hash_params,
            verify,
            shutdown_grace,
        })
    }
}

/// Sets a Sentinel-managed upstream's Sentinel credentials (`sentinel_username`,
/// the password from the variable `sentinel_password_env` names); refuses them
/// for a fixed upstream. The error names the key.
pub fn sentinel_credentials(
    upstream: &mut Upstream,
    username: Option<&str>,
    password_env: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (&'static str, String)> {
    let Some(spec) = upstream.sentinel.as_mut() else {
        for (k, v) in [("sentinel_username", username), ("sentinel_password_env", password_env)] {
            if v.is_some() {
                return Err((k, "set only with a redis+sentinel:// upstream".into()));
            }
        }
        return Ok(());
    };
    let spec = std::sync::Arc::make_mut(spec);
    spec.username = username.filter(|u| !u.is_empty()).map(str::to_string);
    if let Some(var) = password_env.filter(|v| !v.is_empty()) {
        let value = env(var)
            .ok_or_else(|| ("sentinel_password_env", format!("environment variable {var} is not set")))?;
        spec.password = Some(Zeroizing::new(value));
    }
    Ok(())
}

/// Checks a database's listener TLS keys; the files are loaded once here so that a
/// bad one stops start-up with the key's name.
fn listener_tls(b: &BdbConfig, key: &dyn Fn(&str) -> String) -> Result<Option<ListenerTls>, ConfigError> {
    if b.tls_cert.is_some() != b.tls_key.is_some() {
        return Err(err(key("tls_cert"), "tls_cert and tls_key go together: give both or neither"));
    }
    if b.tls_mode == TlsMode::Disabled {
        for (k, v) in [("tls_cert", &b.tls_cert), ("tls_client_ca", &b.tls_client_ca)] {
            if v.is_some() {
                return Err(err(key(k), "set only with tls_mode = \"enabled\""));
            }
        }
        return Ok(None);
    }
    let cert = b.tls_cert.clone().zip(b.tls_key.clone());
    if let Some((c, k)) = &cert {
        // Checked with the client CA left out, so an error names the right key.
        crate::tls::server_config(c, k, None).map_err(|e| err(key("tls_cert"), e.to_string()))?;
        if let Some(ca) = &b.tls_client_ca {
            crate::tls::server_config(c, k, Some(ca))
                .map_err(|e| err(key("tls_client_ca"), e.to_string()))?;
        }
    } else if let Some(ca) = &b.tls_client_ca {
        crate::tls::load_certs(ca).map_err(|e| err(key("tls_client_ca"), e.to_string()))?;
    }
    Ok(Some(ListenerTls { cert, client_ca: b.tls_client_ca.clone() }))
}

/// Builds the TLS client configuration of a `rediss://` upstream.
fn upstream_tls(
    b: &BdbConfig,
    rediss: bool,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, ConfigError> {
    if b.upstream_tls_cert.is_some() != b.upstream_tls_key.is_some() {
        return Err(err(
            key("upstream_tls_cert"),
            "upstream_tls_cert and upstream_tls_key go together: give both or neither",
        ));
    }
    if !rediss {
        for (k, v) in [("upstream_tls_ca", &b.upstream_tls_ca), ("upstream_tls_cert", &b.upstream_tls_cert)] {
            if v.is_some() {
                return Err(err(key(k), "set only with a rediss:// upstream"));
            }
        }
        return Ok(None);
    }
    let ca = b.upstream_tls_ca.as_deref().ok_or_else(|| {
        err(key("upstream_tls_ca"), "required with a rediss:// upstream (the CA that signed its certificate)")
    })?;
    crate::tls::load_certs(ca).map_err(|e| err(key("upstream_tls_ca"), e.to_string()))?;
    let client = b.upstream_tls_cert.as_deref().zip(b.upstream_tls_key.as_deref());
    crate::tls::client_config(ca, client).map(Some).map_err(|e| err(key("upstream_tls_cert"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[admin]
listen = "127.0.0.1:9443"
[store]
dir = "./data"
[[bdbs]]
uid = 1
name = "app"
listen = "127.0.0.1:12000"
upstream = "redis://127.0.0.1:6379"
upstream_password_env = "UP"
"#;

    fn env(k: &str) -> Option<String> {
        (k == "UP").then(|| "s3cret".to_string())
    }

    #[test]
    fn valid_config_resolves_secrets() {
        let v = Config::parse(BASE).unwrap().validate(&env).unwrap();
        assert!(v.config.admin.tls, "TLS is on by default");
        assert_eq!(v.bdbs[0].upstream.password.as_deref().map(String::as_str), Some("s3cret"));
        assert_eq!(v.hash_params, HashParams::default());
        assert!(!v.config.admin.metrics_auth, "/metrics is open by default");
        assert_eq!(v.config.admin.event_log_capacity, 1000);
        let a = &v.config.admin;
        assert_eq!(
            (a.max_connections, a.header_timeout_secs, a.idle_timeout_secs, a.tls_handshake_timeout_secs),
            (1024, 10, 60, 10)
        );
        assert_eq!(a.body_timeout_secs, 10);
        assert_eq!(a.max_connections_per_address, 64);
        let p = &v.config.proxy;
        assert_eq!((p.max_unauthenticated_connections, p.max_unauthenticated_per_address), (10_000, 1_000));
    }

    #[test]
    fn sentinel_upstreams_keep_their_credentials_apart() {
        let sentinel = BASE.replace(
            "upstream = \"redis://127.0.0.1:6379\"",
            "upstream = \"redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster\"\n\
             sentinel_username = \"sen\"\nsentinel_password_env = \"UP\"",
        );
        let v = Config::parse(&sentinel).unwrap().validate(&env).unwrap();
        let up = &v.bdbs[0].upstream;
        let spec = up.sentinel.as_ref().unwrap();
        assert_eq!((spec.master.as_str(), spec.sentinels.len()), ("mymaster", 2));
        assert_eq!(
            (spec.username.as_deref(), spec.password.as_deref().map(String::as_str)),
            (Some("sen"), Some("s3cret"))
        );
        assert_eq!(up.password.as_deref().map(String::as_str), Some("s3cret"), "the nodes' password");
        let unset = sentinel.replace("sentinel_password_env = \"UP\"", "sentinel_password_env = \"NOPE\"");
        let e = Config::parse(&unset).unwrap().validate(&env).unwrap_err();
        assert_eq!(e.key, "bdbs[0].sentinel_password_env");
        let fixed = BASE.replace("upstream_password_env", "sentinel_username = \"x\"\nupstream_password_env");
        let e = Config::parse(&fixed).unwrap().validate(&env).unwrap_err();
        assert_eq!(e.key, "bdbs[0].sentinel_username", "only with a Sentinel upstream");
        let poll = BASE.replacen("[admin]\n", "[proxy]\nsentinel_poll_ms = 5000\n[admin]\n", 1);
        assert_eq!(Config::parse(&poll).unwrap().validate(&env).unwrap_err().key, "proxy.sentinel_poll_ms");
    }

    #[test]
    fn admin_connection_limits_are_checked() {
        let with = |kv: &str| BASE.replacen("[admin]\n", &format!("[admin]\n{kv}\n"), 1);
        for (kv, key) in [
            ("max_connections = 0", "admin.max_connections"),
            ("header_timeout_secs = 0", "admin.header_timeout_secs"),
            ("idle_timeout_secs = 0", "admin.idle_timeout_secs"),
            ("tls_handshake_timeout_secs = 100000", "admin.tls_handshake_timeout_secs"),
        ] {
            let e = Config::parse(&with(kv)).unwrap().validate(&env).unwrap_err();
            assert_eq!(e.key, key);
        }
        let v = Config::parse(&with("header_timeout_secs = 2")).unwrap().validate(&env).unwrap();
        assert_eq!(v.config.admin.header_timeout_secs, 2);
    }

    #[test]
    fn event_log_capacity_is_bounded() {
        let with = |n: &str| BASE.replacen("[admin]\n", &format!("[admin]\nevent_log_capacity = {n}\n"), 1);
        for bad in ["0", "100001"] {
            let e = Config::parse(&with(bad)).unwrap().validate(&env).unwrap_err();
            assert_eq!(e.key, "admin.event_log_capacity");
        }
        assert_eq!(
            Config::parse(&with("5")).unwrap().validate(&env).unwrap().config.admin.event_log_capacity,
            5
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse(&BASE.replace("uid = 1\n", "")).unwrap_err();
        assert!(e.to_string().contains("uid"), "{e}");
        let e = Config::parse(&BASE.replace("name = \"app\"", "name = \"app\"\ncolour = 1")).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Config::parse(&BASE.replace("redis://127.0.0.1:6379", "http://x"))
            .unwrap()
            .validate(&env)
            .unwrap_err();
        assert_eq!(e.key, "bdbs[0].upstream");
        let e = Config::parse(BASE).unwrap().validate(&|_| None).unwrap_err();
        assert_eq!(e.key, "bdbs[0].upstream_password_env");
        assert!(e.why.contains("UP"));
        let e =
            Config::parse(&BASE.replace("127.0.0.1:12000", "nowhere")).unwrap().validate(&env).unwrap_err();
        assert_eq!(e.key, "bdbs[0].listen");
    }

    #[test]
    fn syntax_errors_do_not_quote_the_line() {
        let e =
            Config::parse(&BASE.replace("redis://127.0.0.1:6379\"", "redis://u:topsecret@h:1")).unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        assert!(e.to_string().contains("line 10"), "{e}");
        assert_eq!(e.key, "bdbs[0].upstream");
        let e = Config::parse(&BASE.replace("uid = 1", "uid = \"one\"")).unwrap_err();
        assert_eq!(e.key, "bdbs[0].uid", "{e}");
    }

    #[test]
    fn the_example_config_is_valid_and_plain_by_default() {
        let text = include_str!("../examples/turnstile.toml");
        let v = Config::parse(text).unwrap().validate(&|_| Some("pw".to_string())).unwrap();
        assert_eq!(v.bdbs[0].tls, None);
        assert!(!v.bdbs[0].upstream.tls);
        assert!(v.config.admin.credential_envs.is_empty(), "no environment secret for the API by default");
        let text = text.replace("tls_mode = \"disabled\"", "tls_mode = \"enabled\"");
        let v = Config::parse(&text).unwrap().validate(&|_| Some("pw".to_string())).unwrap();
        assert_eq!(v.bdbs[0].tls, Some(ListenerTls { cert: None, client_ca: None }), "the admin certificate");
    }

    #[test]
    fn store_tls_files_go_with_rediss_only_and_must_load() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let good = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, good.cert.pem()).unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, good.signing_key.serialize_pem()).unwrap();
        let (ca_s, key_s) = (ca.display().to_string(), key.display().to_string());
        let with = |store: &str| {
            let text = BASE.replace("dir = \"./data\"\n", &format!("dir = \"./data\"\n{store}\n"));
            Config::parse(&text).unwrap().validate(&env)
        };
        let e = |store: &str| with(store).unwrap_err().to_string();
        assert!(e(r#"redis = "rediss://h:6380""#).contains("store.tls_ca"), "a private CA is required");
        assert!(
            e(&format!("redis = \"redis://h:6379\"\ntls_ca = \"{ca_s}\"")).contains("only with a rediss://")
        );
        assert!(
            e(&format!("tls_ca = \"{ca_s}\"")).contains("only with a rediss://"),
            "no store.redis at all"
        );
        let missing = e(r#"redis = "rediss://h:6380"
tls_ca = "/nonexistent/ca.pem""#);
        assert!(missing.contains("store.tls_ca") && missing.contains("/nonexistent/ca.pem"), "{missing}");
        let lone = e(&format!("redis = \"rediss://h:6380\"\ntls_ca = \"{ca_s}\"\ntls_cert = \"{ca_s}\""));
        assert!(lone.contains("go together"), "{lone}");
        let v = with(&format!(
            "redis = \"rediss://h:6380\"\ntls_ca = \"{ca_s}\"\ntls_cert = \"{ca_s}\"\ntls_key = \"{key_s}\""
        ))
        .unwrap();
        assert_eq!(v.config.store.tls_ca.as_deref(), Some(ca.as_path()));
        assert_eq!(v.config.store.node_forget_secs, 3600);
        // A key that is not the certificate's: refused, and the error holds no key bytes.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
        let pair = e(&format!(
            "redis = \"rediss://h:6380\"\ntls_ca = \"{ca_s}\"\ntls_cert = \"{ca_s}\"\ntls_key = \"{key_s}\""
        ));
        assert!(pair.contains("store.tls_cert"), "{pair}");
        assert!(!pair.contains("PRIVATE KEY"), "{pair}");
        assert!(e("redis = \"redis://h:6379\"\nnode_forget_secs = 2").contains("store.node_forget_secs"));
    }

    #[test]
    fn credential_envs_refuse_turnstiles_own_secrets() {
        let with = |entries: &str, store: &str| {
            let text = BASE
                .replacen("[store]\n", &format!("[admin.credential_envs]\n{entries}\n[store]\n{store}\n"), 1)
                .replace(
                    "upstream_password_env = \"UP\"",
                    "upstream_password_env = \"UP\"\ndefault_password_env = \"APP\"",
                );
            Config::parse(&text).unwrap().validate(&|_| Some("pw".to_string()))
        };
        let v = with("UP = [\"127.0.0.1:6379\"]\nB = [\"10.0.0.7:6379\", \"h:1\"]", "").unwrap();
        assert_eq!(v.config.admin.credential_envs.len(), 2);
        assert_eq!(v.credential_envs.check("B", &["10.0.0.7:6379"]), Ok(()));
        assert!(v.credential_envs.check("UP", &["10.0.0.7:6379"]).is_err());
        for (entries, store, key, why) in [
            (
                "TURNSTILE_ADMIN_PASSWORD = [\"127.0.0.1:6379\"]",
                "",
                "admin.credential_envs.TURNSTILE_ADMIN_PASSWORD",
                "admin's password",
            ),
            (
                "STORE_PW = [\"127.0.0.1:6379\"]",
                "redis = \"redis://127.0.0.1:6390\"\nredis_password_env = \"STORE_PW\"",
                "admin.credential_envs.STORE_PW",
                "store.redis_password_env",
            ),
            ("APP = [\"127.0.0.1:6379\"]", "", "admin.credential_envs.APP", "bdbs[0].default_password_env"),
            ("B = [\"10.0.0.7\"]", "", "admin.credential_envs.B", "port"),
            ("B = []", "", "admin.credential_envs.B", "no address"),
        ] {
            let e = with(entries, store).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.why.contains(why), "{e}");
            assert!(!e.to_string().contains("pw\""), "no value in {e}");
        }
    }

    #[test]
    fn errors_never_echo_secrets() {
        let text = BASE
            .replace("redis://127.0.0.1:6379", "redis://u:topsecret@h")
            .replace("upstream_password_env = \"UP\"\n", "");
        let e = Config::parse(&text).unwrap().validate(&env).unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
