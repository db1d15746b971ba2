//! The shared store: the state as one document in a Redis hash, replaced by a Lua
//! compare-and-set that also publishes the change, so nodes learn of it at once.
//!
//! Keys (under `key_prefix`, default `turnstile`):
//! - `P:state` — hash of `rev` (a counter), `hash` (blake3 of `doc`, hex), `doc`
//!   (the state as compact JSON). One key: one atomic read, one atomic write.
//! - `P:events`, `P:events:security` — the fleet's event log (admin changes; failed
//!   AUTHs and throttling), capped lists of JSON events, newest first. Apart from
//!   `doc`, so an event is an LPUSH, not a compare-and-set of the whole state and a
//!   reload on every node; an admin change's events are pushed by the same script
//!   that writes the change.
//! - `P:changes` — the channel every commit publishes `rev:hash` on.
//! - `P:nodes` — hash of node uid → its registry record (JSON); `P:node_seq` hands
//!   out uids.
//! - `P:login:UID` — a user's failed admin logins, expiring with the policy's window.
//! - `P:last_login` — hash of user uid → last admin login (Unix seconds).
//! - `P:authfail:WINDOW` — failed AUTHs per client address in that time window.
//!
//! Every call is bounded by `timeout` (connect, read and write), so a store that is
//! stopped or unreachable fails a write within it instead of hanging it. The control
//! plane keeps the last state it applied in `dir/fleet-cache.json` ([`Fleet::cache`]),
//! from which a node starts when the store is down.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use redis::{Connection, RedisResult};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::events::{Event, EventLog};
use super::fleet::{Fleet, NodeRecord};
use super::state::SCHEMA_VERSION;
use super::{Committed, Loaded, Revision, State, Store, StoreError};

const CACHE: &str = "fleet-cache.json";
const NODE_UID: &str = "node-uid";

/// Connections kept open for reuse (the poll, heartbeats and writes run at once).
const IDLE_CONNECTIONS: usize = 4;

/// How much longer than `WAIT`'s own timeout its reply may take to arrive.
const WAIT_SLACK: Duration = Duration::from_millis(500);

/// Removes the registry records whose last heartbeat (`last_seen_ms`) is older than
/// ARGV[1]; atomic, so a node that reported again meanwhile is kept.
const FORGET: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i + 1])
  if not ok or type(rec) ~= 'table' or tonumber(rec.last_seen_ms or 0) < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
    table.insert(gone, all[i])
  end
end
return gone
";

/// Compare-and-set: writes the new document only if the store still holds the
/// revision (number and hash) the change was built on, and publishes it.
const COMMIT: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'rev', 'hash')
local rev = tonumber(cur[1] or '0')
local hash = cur[2] or ''
if rev ~= tonumber(ARGV[1]) or hash ~= ARGV[2] then
  return {0, rev}
end
local n = rev + 1
redis.call('HSET', KEYS[1], 'rev', n, 'hash', ARGV[3], 'doc', ARGV[4])
local cap = tonumber(ARGV[5])
local admin = tonumber(ARGV[6])
for i = 7, #ARGV do
  local key = KEYS[3]
  if i - 6 > admin then key = KEYS[4] end
  redis.call('LPUSH', key, ARGV[i])
end
redis.call('LTRIM', KEYS[3], 0, cap - 1)
redis.call('LTRIM', KEYS[4], 0, cap - 1)
redis.call('PUBLISH', KEYS[2], n .. ':' .. ARGV[3])
return {1, n}
";

/// How to reach the store.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[user@]host:port` or `rediss://…`, never with a password.
    pub url: String,
    pub password: Option<Zeroizing<String>>,
    pub key_prefix: String,
    /// Bound on every call to the store.
    pub timeout: Duration,
    /// Replicas that must confirm a commit (`WAIT`), 0 for none.
    pub min_replicas: u32,
    /// Where the local cache is kept (`[store] dir`).
    pub cache_dir: PathBuf,
    /// With `rediss://`: whom to trust and what to present.
    pub tls: Option<StoreTls>,
    /// Events kept in each of the two event lists (`admin.event_log_capacity`).
    pub event_capacity: usize,
}

/// `[store] tls_ca` and, optionally, a client certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct StoreTls {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

impl StoreTls {
    /// The files' contents as the redis crate takes them. Only the CA is trusted:
    /// with `root_cert` given, the crate uses it instead of the system roots.
    fn certificates(&self) -> Result<redis::TlsCertificates, StoreError> {
        let read = |p: &PathBuf, what: &'static str| {
            std::fs::read(p).map_err(|e| StoreError::Io { what, source: e })
        };
        let client_tls = match &self.client {
            None => None,
            Some((cert, key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert, "read store.tls_cert")?,
                client_key: read(key, "read store.tls_key")?,
            }),
        };
        Ok(redis::TlsCertificates { client_tls, root_cert: Some(read(&self.ca, "read store.tls_ca")?) })
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.url)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

pub struct RedisStore {
    client: redis::Client,
    options: RedisOptions,
    idle: Mutex<Vec<Connection>>,
    state_key: String,
    changes_key: String,
    nodes_key: String,
    events_key: String,
    security_key: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("options", &self.options).finish_non_exhaustive()
    }
}

/// The local cache's layout.
#[derive(Serialize, Deserialize)]
struct Cached {
    rev: u64,
    hash: String,
    state: State,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    // The error names the operation and the reason; it never holds the password
    // (it is not in the URL, and AUTH errors are Redis's own text).
    if e.is_timeout() {
        // Not the OS's "Resource temporarily unavailable" (a socket timeout).
        return StoreError::Unavailable("no answer within store.timeout_ms".into());
    }
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Checks the URL; connects only when first used (a node may start while the
    /// store is down).
    pub fn open(options: RedisOptions) -> Result<Self, StoreError> {
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(options.url.as_str())
                .map_err(|e| StoreError::Corrupt(format!("store.redis: {e}")))?;
        // No CLIENT SETINFO after connecting: each is a round trip bounded by the
        // timeout, so against a stopped store a write would wait that much longer.
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(pw) = &options.password {
            settings = settings.set_password(pw.as_str());
        }
        info = info.set_redis_settings(settings);
        let client = match &options.tls {
            // A rediss:// URL without a CA would trust the system roots; config
            // validation refuses that, and so does this.
            None if options.url.starts_with("rediss://") => {
                return Err(StoreError::Corrupt("store.tls_ca is required with rediss://".into()));
            }
            None => redis::Client::open(info),
            Some(tls) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                // The key's bytes live only as long as this call; the crate keeps
                // the parsed form.
                let certs = tls.certificates()?;
                redis::Client::build_with_tls(info, certs)
            }
        }
        .map_err(|e| StoreError::Corrupt(format!("store.redis: {e}")))?;
        std::fs::create_dir_all(&options.cache_dir)
            .map_err(|e| StoreError::Io { what: "create the store directory", source: e })?;
        let p = &options.key_prefix;
        Ok(Self {
            client,
            state_key: format!("{p}:state"),
            changes_key: format!("{p}:changes"),
            nodes_key: format!("{p}:nodes"),
            events_key: format!("{p}:events"),
            security_key: format!("{p}:events:security"),
            options,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn connect(&self) -> RedisResult<Connection> {
        let t = self.options.timeout;
        let c = self.client.get_connection_with_timeout(t)?;
        c.set_read_timeout(Some(t))?;
        c.set_write_timeout(Some(t))?;
        Ok(c)
    }

    /// Runs `f` on a pooled connection. A connection that failed is dropped, never
    /// reused: its reply stream may be out of step.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut c = match pooled {
            Some(c) => c,
            None => self.connect().map_err(unavailable)?,
        };
        let out = f(&mut c).map_err(unavailable)?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(c);
        }
        Ok(out)
    }

    fn parse_head(rev: Option<u64>, hash: Option<String>) -> Result<Revision, StoreError> {
        match rev {
            None | Some(0) => Ok(Revision::EMPTY),
            Some(number) => {
                let hash = hash
                    .as_deref()
                    .and_then(Revision::parse_hash)
                    .ok_or_else(|| StoreError::Corrupt("the state's hash is missing or malformed".into()))?;
                Ok(Revision { number, hash })
            }
        }
    }

    fn base_hash(base: &Revision) -> String {
        if *base == Revision::EMPTY { String::new() } else { base.hash_hex() }
    }

    /// The events as JSON, admin ring first, and how many are admin events.
    fn event_args(log: &EventLog) -> Result<(Vec<String>, usize), StoreError> {
        let json = |e: &Event| serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()));
        let mut out = Vec::with_capacity(log.admin.len() + log.security.len());
        for e in &log.admin {
            out.push(json(e)?);
        }
        let admin = out.len();
        for e in &log.security {
            out.push(json(e)?);
        }
        Ok((out, admin))
    }

    /// Whether the store holds no state (what `turnstile store import` requires).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.head()? == Revision::EMPTY)
    }
}

impl Store for RedisStore {
    fn load(&self) -> Result<Option<Loaded>, StoreError> {
        let (rev, hash, doc): (Option<u64>, Option<String>, Option<Vec<u8>>) = self
            .with(|c| redis::cmd("HMGET").arg(&self.state_key).arg("rev").arg("hash").arg("doc").query(c))?;
        let revision = Self::parse_head(rev, hash)?;
        let Some(doc) = doc.filter(|_| revision != Revision::EMPTY) else { return Ok(None) };
        if *blake3::hash(&doc).as_bytes() != revision.hash {
            return Err(StoreError::Corrupt("the state does not match its hash".into()));
        }
        let state: State = serde_json::from_slice(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if state.version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!("unknown schema version {}", state.version)));
        }
        // The caller keeps the local cache (off the path of applying the change).
        Ok(Some(Loaded { state, revision }))
    }

    /// `state.events` are the events to *add* to the fleet's log (the caller sends
    /// only the new ones); the document is stored without events.
    fn commit(&self, base: &Revision, state: &State) -> Result<Committed, StoreError> {
        let (doc, hash) = encode_shared(state)?;
        let (events, admin) = Self::event_args(&state.events)?;
        let revision_hash = Revision { number: 0, hash }.hash_hex();
        let script = redis::Script::new(COMMIT);
        let min = self.options.min_replicas;
        let timeout_ms = self.options.timeout.as_millis() as u64;
        let (done, number, replicas): (i64, u64, i64) = self.with(|c| {
            let (done, number): (i64, u64) = script
                .key(&self.state_key)
                .key(&self.changes_key)
                .key(&self.events_key)
                .key(&self.security_key)
                .arg(base.number)
                .arg(Self::base_hash(base))
                .arg(&revision_hash)
                .arg(&doc)
                .arg(self.options.event_capacity.max(1))
                .arg(admin)
                .arg(&events)
                .invoke(c)?;
            let replicas = if done == 1 && min > 0 {
                // WAIT blocks up to its timeout by design: the read must outlast it,
                // or a slow replica would look like a dead store (store_error
                // instead of store_not_replicated).
                c.set_read_timeout(Some(self.options.timeout + WAIT_SLACK))?;
                let n = redis::cmd("WAIT").arg(min).arg(timeout_ms).query(c);
                c.set_read_timeout(Some(self.options.timeout))?;
                n?
            } else {
                0
            };
            Ok((done, number, replicas))
        })?;
        if done != 1 {
            return Err(StoreError::Conflict(number));
        }
        let revision = Revision { number, hash };
        Ok(Committed { revision, unreplicated: min > 0 && replicas < i64::from(min) })
    }

    fn fleet(&self) -> Option<&dyn Fleet> {
        Some(self)
    }
}

impl Fleet for RedisStore {
    fn head(&self) -> Result<Revision, StoreError> {
        let (rev, hash): (Option<u64>, Option<String>) =
            self.with(|c| redis::cmd("HMGET").arg(&self.state_key).arg("rev").arg("hash").query(c))?;
        Self::parse_head(rev, hash)
    }

    fn cached(&self) -> Result<Option<Loaded>, StoreError> {
        let bytes = match std::fs::read(self.options.cache_dir.join(CACHE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { what: "read the local cache", source: e }),
        };
        let c: Cached = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (_, hash) = encode_shared(&c.state)?;
        // A cache whose hash does not match (written by another version) still
        // serves, at revision 0, so the first contact with the store replaces it.
        let revision = match Revision::parse_hash(&c.hash) {
            Some(h) if h == hash => Revision { number: c.rev, hash },
            _ => Revision { number: 0, hash },
        };
        Ok(Some(Loaded { state: c.state, revision }))
    }

    fn cache(&self, loaded: &Loaded) -> Result<(), StoreError> {
        let c = Cached {
            rev: loaded.revision.number,
            hash: loaded.revision.hash_hex(),
            state: loaded.state.clone(),
        };
        let bytes = serde_json::to_vec(&c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        super::file::write_atomic(&self.options.cache_dir, CACHE, &bytes)
    }

    fn register(&self) -> Result<u32, StoreError> {
        // A node keeps its uid across restarts (in its own directory), so the
        // registry does not fill with the ghosts of its earlier runs.
        let file = self.options.cache_dir.join(NODE_UID);
        if let Some(uid) = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()) {
            return Ok(uid);
        }
        let key = format!("{}:node_seq", self.options.key_prefix);
        let uid: u32 = self.with(|c| redis::cmd("INCR").arg(&key).query(c))?;
        super::file::write_atomic(&self.options.cache_dir, NODE_UID, uid.to_string().as_bytes())?;
        Ok(uid)
    }

    fn report(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(node).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|c| redis::cmd("HSET").arg(&self.nodes_key).arg(node.uid).arg(json).query::<()>(c))
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let all: Vec<(String, String)> =
            self.with(|c| redis::cmd("HGETALL").arg(&self.nodes_key).query(c))?;
        let mut out: Vec<NodeRecord> =
            all.into_iter().filter_map(|(_, v)| serde_json::from_str(&v).ok()).collect();
        out.sort_by_key(|n| n.uid);
        Ok(out)
    }

    fn append_events(&self, log: &EventLog) -> Result<(), StoreError> {
        let (events, admin) = Self::event_args(log)?;
        if events.is_empty() {
            return Ok(());
        }
        let cap = self.options.event_capacity.max(1) as isize;
        self.with(|c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            if admin > 0 {
                pipe.cmd("LPUSH").arg(&self.events_key).arg(&events[..admin]).ignore();
                pipe.cmd("LTRIM").arg(&self.events_key).arg(0).arg(cap - 1).ignore();
            }
            if events.len() > admin {
                pipe.cmd("LPUSH").arg(&self.security_key).arg(&events[admin..]).ignore();
                pipe.cmd("LTRIM").arg(&self.security_key).arg(0).arg(cap - 1).ignore();
            }
            pipe.query::<()>(c)
        })
    }

    fn events(&self) -> Result<EventLog, StoreError> {
        let cap = self.options.event_capacity.max(1) as isize;
        let (admin, security): (Vec<Vec<u8>>, Vec<Vec<u8>>) = self.with(|c| {
            redis::pipe()
                .cmd("LRANGE")
                .arg(&self.events_key)
                .arg(0)
                .arg(cap - 1)
                .cmd("LRANGE")
                .arg(&self.security_key)
                .arg(0)
                .arg(cap - 1)
                .query(c)
        })?;
        // Oldest first, numbered in list order (which orders events of one
        // millisecond); an entry that does not parse (another version's) is skipped.
        let mut log = EventLog::default();
        let parse = |raw: Vec<Vec<u8>>| -> Vec<Event> {
            raw.iter().rev().filter_map(|b| serde_json::from_slice(b).ok()).collect()
        };
        for e in parse(admin) {
            log.push_admin(e, usize::MAX);
        }
        for e in parse(security) {
            log.push_security(e, usize::MAX);
        }
        Ok(log)
    }

    fn forget(&self, seen_before_ms: u64) -> Result<Vec<u32>, StoreError> {
        let gone: Vec<String> =
            self.with(|c| redis::Script::new(FORGET).key(&self.nodes_key).arg(seen_before_ms).invoke(c))?;
        Ok(gone.iter().filter_map(|u| u.parse().ok()).collect())
    }

    fn watch(&self, stop: &dyn Fn() -> bool, changed: &dyn Fn()) -> Result<(), StoreError> {
        let mut c = self.connect().map_err(unavailable)?;
        let mut ps = c.as_pubsub();
        ps.subscribe(&self.changes_key).map_err(unavailable)?;
        // Woken at least every second to see `stop`; a timeout is not a failure.
        ps.set_read_timeout(Some(Duration::from_secs(1))).map_err(unavailable)?;
        // A change made while this node was not subscribed is found by the caller's
        // check right after subscribing.
        changed();
        while !stop() {
            match ps.get_message() {
                Ok(_) => changed(),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    fn login_failed(&self, uid: u32, window_secs: u64) -> Result<u64, StoreError> {
        let key = format!("{}:login:{uid}", self.options.key_prefix);
        self.with(|c| {
            let n: u64 = redis::cmd("INCR").arg(&key).query(c)?;
            if n == 1 {
                redis::cmd("EXPIRE").arg(&key).arg(window_secs.max(1)).query::<()>(c)?;
            }
            Ok(n)
        })
    }

    fn login_reset(&self, uid: u32) -> Result<(), StoreError> {
        let key = format!("{}:login:{uid}", self.options.key_prefix);
        self.with(|c| redis::cmd("DEL").arg(&key).query::<()>(c))
    }

    fn record_login(&self, uid: u32, at: u64) -> Result<(), StoreError> {
        let key = format!("{}:last_login", self.options.key_prefix);
        // Never moves back: a node with a slower clock or a late write keeps the newest.
        self.with(|c| {
            redis::Script::new(
                "local v = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') \
                 if tonumber(ARGV[2]) > v then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 1",
            )
            .key(&key)
            .arg(uid)
            .arg(at)
            .invoke::<i64>(c)
            .map(|_| ())
        })
    }

    fn last_logins(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let key = format!("{}:last_login", self.options.key_prefix);
        self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))
    }

    fn auth_failures(&self, counts: &[(IpAddr, u64)], window_secs: u64) -> Result<Vec<u64>, StoreError> {
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let window = window_secs.max(1);
        let slot = crate::time::now() / window;
        let key = format!("{}:authfail:{slot}", self.options.key_prefix);
        self.with(|c| {
            let mut pipe = redis::pipe();
            for (ip, n) in counts {
                pipe.cmd("HINCRBY").arg(&key).arg(ip.to_string()).arg(*n);
            }
            pipe.cmd("EXPIRE").arg(&key).arg(window * 2).ignore();
            pipe.query(c)
        })
    }
}

/// The shared document and its hash: the state without its event log, which the
/// store keeps in lists of its own.
fn encode_shared(state: &State) -> Result<(Vec<u8>, [u8; 32]), StoreError> {
    if state.events == EventLog::default() {
        return super::encode(state);
    }
    let mut s = state.clone();
    s.events = EventLog::default();
    super::encode(&s)
}
