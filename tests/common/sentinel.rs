//! A Sentinel-managed Redis on loopback for failover tests: a primary, one
//! replica and three `redis-sentinel` processes (Debian's `redis-sentinel`) with a
//! small `down-after-milliseconds`, all real processes on free ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Redis, free_port};

/// The data nodes' password (the service credential turnstile manages users with).
pub const NODE_PW: &str = "node-secret";
/// The Sentinels' own password (`requirepass` on each Sentinel), kept apart.
pub const SENTINEL_PW: &str = "sentinel-secret";
pub const MASTER: &str = "mymaster";

/// One `redis-sentinel`, killed on drop; can be stopped and started again on its
/// port with the config file it rewrote.
pub struct Sentinel {
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Sentinel {
    fn start(dir: &Path, i: usize, primary: u16) -> Self {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                 requirepass {SENTINEL_PW}\nsentinel sentinel-pass {SENTINEL_PW}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                 sentinel auth-pass {MASTER} {NODE_PW}\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 4000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut s = Self { port, conf, child: None };
        s.resume();
        s
    }

    /// A Sentinel that listens with TLS only (`port 0` disables its plaintext
    /// listener; the TLS port is a free one) and talks TLS to the nodes
    /// (`tls-replication yes`), monitoring `primary`'s TLS port with quorum 1; no
    /// passwords. `tls` holds the `tls-cert-file`/`tls-key-file`/`tls-ca-cert-file`
    /// lines.
    pub fn start_tls(dir: &Path, primary: u16, tls: &str) -> Self {
        let port = free_port();
        let conf = dir.join("sentinel-tls.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                 {tls}tls-auth-clients no\ntls-replication yes\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 4000\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut s = Self { port, conf, child: None };
        s.resume();
        s
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL): it is unreachable until [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on its port, with the state its config file holds.
    pub fn resume(&mut self) {
        let child = Command::new("redis-sentinel")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel (Debian package redis-sentinel) is needed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "redis-sentinel did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        connect(&format!("redis://:{SENTINEL_PW}@{}", self.addr())).await
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A direct connection (redis crate), with a response timeout long enough for
/// a failover.
pub async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    try_connect(url).await.unwrap_or_else(|e| panic!("cannot connect: {e}"))
}

/// [`connect`], or why not (a node loading its data refuses the login).
pub async fn try_connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&cfg).await
}

/// The nodes and their Sentinels.
pub struct Cluster {
    pub nodes: Vec<Redis>,
    pub sentinels: Vec<Sentinel>,
    pub dir: tempfile::TempDir,
}

fn node_args(dir: &Path, replica_of: Option<u16>) -> Vec<String> {
    let mut a = vec!["--requirepass".into(), NODE_PW.into(), "--masterauth".into(), NODE_PW.into()];
    // A replica writes the RDB it receives to its directory: never the crate's,
    // where every other test's Redis would load it at start.
    a.extend(["--dir".into(), dir.display().to_string()]);
    // A replica in sync within milliseconds, not after the default 5 s wait for
    // more replicas to share a diskless transfer.
    a.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
    // Sentinel rewrites the nodes' configuration at a failover: give them a file.
    if let Some(p) = replica_of {
        a.extend(["--replicaof".into(), "127.0.0.1".into(), p.to_string()]);
    }
    a
}

impl Cluster {
    /// Starts everything and waits until the Sentinels know the replica and each
    /// other (needed for an election after a crash).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (d0, d1) = (dir.path().join("n0"), dir.path().join("n1"));
        std::fs::create_dir_all(&d0).unwrap();
        std::fs::create_dir_all(&d1).unwrap();
        let primary = Redis::start(&node_args(&d0, None).iter().map(String::as_str).collect::<Vec<_>>());
        let replica =
            Redis::start(&node_args(&d1, Some(primary.port)).iter().map(String::as_str).collect::<Vec<_>>());
        let sentinels = (0..3).map(|i| Sentinel::start(dir.path(), i, primary.port)).collect();
        let c = Self { nodes: vec![primary, replica], sentinels, dir };
        c.settled(c.nodes[0].port).await;
        c
    }

    /// The primary the first reachable Sentinel names.
    pub async fn primary_port(&self) -> u16 {
        for s in &self.sentinels {
            if std::net::TcpStream::connect(s.addr()).is_err() {
                continue;
            }
            let mut c = s.client().await;
            let addr: Vec<String> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER)
                .query_async(&mut c)
                .await
                .unwrap();
            return addr[1].parse().unwrap();
        }
        panic!("no Sentinel is reachable");
    }

    pub fn node(&self, port: u16) -> &Redis {
        self.nodes.iter().find(|n| n.port == port).expect("a node of the cluster")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut Redis {
        self.nodes.iter_mut().find(|n| n.port == port).expect("a node of the cluster")
    }

    pub async fn direct(&self, port: u16) -> redis::aio::MultiplexedConnection {
        connect(&format!("redis://:{NODE_PW}@127.0.0.1:{port}")).await
    }

    /// `ROLE`'s first field on a node, or None if it is down.
    pub async fn role(&self, port: u16) -> Option<String> {
        let url = format!("redis://:{NODE_PW}@127.0.0.1:{port}");
        let client = redis::Client::open(url).unwrap();
        let cfg =
            redis::AsyncConnectionConfig::new().set_connection_timeout(Some(Duration::from_millis(500)));
        let mut c = client.get_multiplexed_async_connection_with_config(&cfg).await.ok()?;
        let role: redis::Value = redis::cmd("ROLE").query_async(&mut c).await.ok()?;
        match role {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Waits until every reachable Sentinel names `primary`, sees the other node
    /// as a replica in sync with it, and knows the other Sentinels: a failover can
    /// then be forced (or elected) again.
    pub async fn settled(&self, primary: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        'again: loop {
            assert!(Instant::now() < deadline, "the Sentinel setup did not settle on primary {primary}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            for s in &self.sentinels {
                if s.child.is_none() {
                    continue;
                }
                let mut c = s.client().await;
                let addr: Vec<String> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(MASTER)
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                if addr.get(1).map(String::as_str) != Some(&primary.to_string()) {
                    continue 'again;
                }
                let replicas: Vec<std::collections::HashMap<String, String>> =
                    redis::cmd("SENTINEL").arg("replicas").arg(MASTER).query_async(&mut c).await.unwrap();
                let good = replicas.iter().any(|r| {
                    r.get("flags").is_some_and(|f| f == "slave")
                        && r.get("master-link-status").is_some_and(|l| l == "ok")
                        && r.get("master-port").is_some_and(|p| p == &primary.to_string())
                });
                let others: Vec<redis::Value> =
                    redis::cmd("SENTINEL").arg("sentinels").arg(MASTER).query_async(&mut c).await.unwrap();
                let running = self.sentinels.iter().filter(|s| s.child.is_some()).count();
                if !good || others.len() + 1 < running {
                    continue 'again;
                }
            }
            return;
        }
    }

    /// Makes the old primary a replica of the new one at once, as Sentinel does
    /// once it sees the old one again (which takes it up to ~20 s: its INFO period
    /// plus the time a wrong role must persist); a test need not wait for that.
    pub async fn demote(&self, port: u16, primary: u16) {
        let url = format!("redis://:{NODE_PW}@127.0.0.1:{port}");
        if let Ok(mut c) = try_connect(&url).await {
            let _: redis::RedisResult<()> =
                redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary).query_async(&mut c).await;
        }
    }

    /// Waits until node `port` replicates from `primary` with its link up (the next
    /// forced failover then has a replica in sync to promote).
    pub async fn replicating(&self, port: u16, primary: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("redis://:{NODE_PW}@127.0.0.1:{port}");
            if let Ok(mut c) = try_connect(&url).await {
                let info: String =
                    redis::cmd("INFO").arg("replication").query_async(&mut c).await.unwrap_or_default();
                if info.contains("role:slave")
                    && info.contains(&format!("master_port:{primary}"))
                    && info.contains("master_link_status:up")
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{port} never replicated from {primary}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `SENTINEL FAILOVER` (forced, no agreement needed) on the first running
    /// Sentinel, retried while one is still in progress; returns the old primary.
    pub async fn force_failover(&self) -> u16 {
        let old = self.primary_port().await;
        let s = self.sentinels.iter().find(|s| s.child.is_some()).expect("a running Sentinel");
        let mut c = s.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r: redis::RedisResult<()> =
                redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER).query_async(&mut c).await;
            match r {
                Ok(()) => return old,
                Err(e) => {
                    assert!(Instant::now() < deadline, "SENTINEL FAILOVER kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits until the Sentinels name a primary other than `old`; returns it.
    pub async fn switched_from(&self, old: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.primary_port().await;
            if now != old && self.role(now).await.as_deref() == Some("master") {
                return now;
            }
            assert!(Instant::now() < deadline, "the Sentinels never moved off {old}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The comma-separated Sentinel addresses, in the order given.
    pub fn sentinel_list(&self) -> String {
        self.sentinels.iter().map(Sentinel::addr).collect::<Vec<_>>().join(",")
    }
}
