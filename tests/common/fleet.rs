//! Fleet harness: turnstile nodes in this process, each started from a config text
//! as the binary would be, sharing a real `redis-server` store, with their admin and
//! database listeners on their own loopback address (127.0.0.2, .3, .4).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use turnstile::control::Control;

use super::admin::{ADMIN, ADMIN_EMAIL, ADMIN_PW, call};
use super::{Conn, Redis};

pub const HOSTS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// What a node's config says beyond the store URL.
#[derive(Clone, Default)]
pub struct Setup {
    /// More `[store]` lines (TLS files, `min_replicas`, `redis_password_env`…).
    pub store: String,
    /// More `[auth]` lines; throttling is off unless they set it.
    pub auth: String,
    /// The environment the config is validated against (the store's password).
    pub env: Vec<(String, String)>,
}

impl Setup {
    pub fn auth(extra: &str) -> Self {
        Self { auth: extra.into(), ..Self::default() }
    }
}

/// One node, in this process, started from a config file as the binary would be.
pub struct Node {
    pub control: Control,
    pub admin_url: String,
    pub host: &'static str,
    pub dir: PathBuf,
    pub store_url: String,
    pub setup: Setup,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

impl Node {
    pub async fn start(host: &'static str, dir: &Path, store_url: &str, extra: &str) -> Self {
        Self::start_with(host, dir, store_url, &Setup::auth(extra)).await
    }

    pub async fn start_with(host: &'static str, dir: &Path, store_url: &str, setup: &Setup) -> Self {
        let node = Self::try_start(host, dir, store_url, setup).await.unwrap();
        node.registered().await;
        node
    }

    /// Starts a node; the error is what the binary would print.
    pub async fn try_start(
        host: &'static str,
        dir: &Path,
        store_url: &str,
        setup: &Setup,
    ) -> Result<Self, String> {
        let throttle = if setup.auth.contains("throttle_failures") { "" } else { "throttle_failures = 0\n" };
        // Tests assert that a change is live everywhere by its 200. The product's
        // 500 ms bound on waiting for the other nodes is for production; on a loaded
        // CI runner (debug build, four fleets at once) a node can take longer to
        // apply, and a 200 after the bound would fail those tests by timing alone.
        // A test of the bound itself sets its own.
        let confirm =
            if setup.store.contains("confirm_timeout_ms") { "" } else { "confirm_timeout_ms = 10000\n" };
        let text = format!(
            "[admin]\nlisten = \"{host}:0\"\ntls = false\n[store]\ndir = \"{}\"\nredis = \"{store_url}\"\n{confirm}{}\n\
             [auth]\nargon2_m_cost = 64\nargon2_t_cost = 1\n{throttle}{}\n\
             [bootstrap]\nadmin_name = \"{ADMIN}\"\nadmin_email = \"{ADMIN_EMAIL}\"\n",
            dir.display(),
            setup.store,
            setup.auth,
        );
        let env = setup.env.clone();
        let validated = turnstile::config::Config::parse(&text)
            .map_err(|e| e.to_string())?
            .validate(&|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())?;
        let shutdown = CancellationToken::new();
        let running = turnstile::server::start(
            &validated,
            Some(zeroize::Zeroizing::new(ADMIN_PW.into())),
            shutdown.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let control = running.control.clone();
        let admin_url = format!("http://{}", running.admin_addr);
        let served = tokio::spawn(running.run());
        Ok(Self {
            control,
            admin_url,
            host,
            dir: dir.to_path_buf(),
            store_url: store_url.into(),
            setup: setup.clone(),
            shutdown,
            served,
        })
    }

    /// Waits for the node's first heartbeat (it registers asynchronously).
    pub async fn registered(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.control.node_uid().is_none() && self.control.store_status().up {
            assert!(Instant::now() < deadline, "node on {} never registered", self.host);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(self) -> (PathBuf, &'static str, String, Setup) {
        self.shutdown.cancel();
        let _ = self.served.await;
        (self.dir, self.host, self.store_url, self.setup)
    }

    pub async fn restart(self) -> Self {
        let (dir, host, url, setup) = self.stop().await;
        Self::start_with(host, &dir, &url, &setup).await
    }

    pub async fn api(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = (!body.is_null()).then(|| body.to_string());
        let (s, v, _) = call(&self.control, method, path, Some((ADMIN, ADMIN_PW)), body.as_deref()).await;
        (s.as_u16(), v)
    }

    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.api(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path} on {}: {s} {v}", self.host);
        v
    }

    /// Where database `port` listens on this node.
    pub fn db(&self, port: u16) -> String {
        format!("{}:{port}", self.host)
    }
}

pub struct Fleet {
    pub store: Redis,
    pub upstream: Redis,
    pub nodes: Vec<Node>,
    pub _dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    pub async fn start(extra: &str) -> Self {
        let store = Redis::start(&[]);
        let url = format!("redis://{}", store.addr());
        Self::start_on(store, &url, &Setup::auth(extra), HOSTS.len()).await
    }

    /// `count` nodes on `store`, reached at `url`.
    pub async fn start_on(store: Redis, url: &str, setup: &Setup, count: usize) -> Self {
        let upstream = Redis::start(&[]);
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        // One after the other: the first bootstraps the store, the others load it.
        for host in &HOSTS[..count] {
            let d = tempfile::tempdir().unwrap();
            nodes.push(Node::start_with(host, d.path(), url, setup).await);
            dirs.push(d);
        }
        Self { store, upstream, nodes, _dirs: dirs }
    }

    /// A database created on node 1 (on a port free on every node),
    /// with `pw` as its default user's password. Returns its port.
    pub async fn database(&self, pw: &str) -> u16 {
        let port = port_free_everywhere();
        let v = self.nodes[0]
            .ok(
                "POST",
                "/v1/bdbs",
                json!({"name": "app", "port": port, "upstream": format!("redis://{}", self.upstream.addr())}),
            )
            .await;
        let port: u16 = v["port"].as_u64().expect("port") as u16;
        let uid = v["uid"].as_u64().unwrap();
        self.nodes[0].ok("PUT", &format!("/v1/bdbs/{uid}/passwords"), json!({"password": pw})).await;
        port
    }
}

/// Every address a test node may serve on: the fleet's hosts, then the nodes some
/// tests start beside a fleet (a third node, a separate process).
const ALL_HOSTS: [&str; 4] = [HOSTS[0], HOSTS[1], HOSTS[2], "127.0.0.5"];

/// A port free on every address a node may serve it on, right now. Port 0 would let
/// node 1 choose a port free on its own address only, which another test's node may
/// hold on another address (its admin listener took it as an ephemeral port): a
/// collision the tests would read as a change that did not arrive.
fn port_free_everywhere() -> u16 {
    loop {
        let first = std::net::TcpListener::bind((ALL_HOSTS[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if ALL_HOSTS[1..].iter().all(|h| std::net::TcpListener::bind((*h, port)).is_ok()) {
            return port;
        }
    }
}

pub async fn auth(c: &mut Conn, pw: &str) -> bool {
    let r = c.cmd(&["AUTH", pw]).await;
    r.starts_with(b"+OK")
}

pub async fn client_id(c: &mut Conn) -> Vec<u8> {
    c.cmd(&["CLIENT", "ID"]).await
}

/// Reads until the server closes the connection (or the deadline passes).
pub async fn closed(c: &mut Conn) -> bool {
    super::authz::closed_within(c, Duration::from_secs(5)).await.is_ok()
}

/// Polls `cond` every 10 ms until it holds, failing with `what` after `limit`.
pub async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
