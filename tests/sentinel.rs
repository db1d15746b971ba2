//! A database behind Redis Sentinel, through turnstile, with real processes on
//! loopback: a primary, one replica, three `redis-sentinel`s (small
//! `down-after-milliseconds`), the turnstile binary from a config file.
//!
//! One run, to keep CI short: turnstile starts with one Sentinel down; traffic goes
//! on with every Sentinel down; 20 clients (10 redis-py, 10 of the `redis` crate)
//! run INCR/SET/GET non-stop through five forced failovers back and forth and a
//! `kill -9` of the primary; a BLPOP and a SUBSCRIBE client are told and closed,
//! then reconnect and work; a database made through the API follows too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::sentinel::{Cluster, NODE_PW, SENTINEL_PW};
use common::{Conn, show};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const APP_PW: &str = "app-password";
const ADMIN_PW: &str = "Admin-pw-1!";
const UNBLOCKED: &str =
    "-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n";
const LOST: &str = "-ERR upstream Redis closed the connection\r\n";
/// What a client may be told while the primary changes (besides the close of a
/// client with a connection of its own).
const CLEAN: [&str; 3] = [
    "ERR upstream Redis closed the connection",
    "ERR upstream Redis primary is unknown (Sentinel failover in progress)",
    "ERR upstream Redis is unavailable",
];

struct Turnstile {
    _child: tokio::process::Child,
    admin: String,
    bdb: String,
}

/// Starts the binary with database 1 behind `upstream` (a Sentinel URL), letting
/// databases made through the API use the nodes' and the Sentinels' passwords
/// towards `sentinels` (`admin.credential_envs`).
async fn turnstile(dir: &Path, upstream: &str, sentinels: &[String]) -> Turnstile {
    let config = dir.join("turnstile.toml");
    let allowed = serde_json::to_string(sentinels).unwrap();
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n\
             [admin.credential_envs]\nTS_NODE_PW = {allowed}\nTS_SENTINEL_PW = {allowed}\n\
             [store]\ndir = \"{}\"\n\
             [auth]\nargon2_m_cost = 64\nargon2_t_cost = 1\n\
             [bootstrap]\nadmin_name = \"admin\"\nadmin_email = \"admin@example.com\"\n\
             [proxy]\nupstream_connect_timeout_ms = 1000\nsentinel_primary_wait_ms = 5000\n\
             [[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\
             sentinel_password_env = \"TS_SENTINEL_PW\"\ndefault_password_env = \"TS_APP_PW\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("turnstile.log")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .arg("--config")
        .arg(&config)
        .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
        .env("TURNSTILE_LOG", "info")
        .env("TS_SENTINEL_PW", SENTINEL_PW)
        .env("TS_APP_PW", APP_PW)
        .env("TS_NODE_PW", NODE_PW)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut bdb = String::new();
    let admin = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("turnstile did not start in time")
            .unwrap()
            .expect("turnstile exited during start-up (see turnstile.log)");
        let last = line.rsplit(' ').next().unwrap().to_string();
        if line.contains("admin API listening on") {
            break last;
        }
        bdb = last;
    };
    Turnstile { _child: child, admin, bdb }
}

impl Turnstile {
    async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-s", "-m", "10", "-w", "\n%{http_code}", "-u", &format!("admin:{ADMIN_PW}"), "-X", method]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
        }
        let out = c.arg(format!("{}{path}", self.admin)).output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    /// `primary_address` of a database, as the admin API shows it.
    async fn primary(&self, uid: u32) -> Option<String> {
        let (_, v) = self.http("GET", &format!("/v1/bdbs/{uid}"), None).await;
        v["primary_address"].as_str().map(str::to_string)
    }

    /// Waits until database `uid` sends to `port`.
    async fn follows(&self, uid: u32, port: u16) -> Duration {
        let started = Instant::now();
        let want = format!("127.0.0.1:{port}");
        while self.primary(uid).await.as_deref() != Some(&want) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "bdb {uid} never followed the primary to {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    async fn metrics(&self) -> String {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-m", "10", &format!("{}/metrics", self.admin)])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn authed(&self) -> Conn {
        let mut c = Conn::connect(&self.bdb).await;
        assert_eq!(show(&c.cmd(&["AUTH", APP_PW]).await), "+OK\r\n");
        c
    }
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

fn python() -> PathBuf {
    std::env::var("TURNSTILE_COMPAT_PYTHON").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("compat-venv/bin/python")
    })
}

/// What the `redis` crate clients saw.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    disconnects: AtomicU64,
    hangs: AtomicU64,
}

/// One `redis` crate client: INCR/SET/GET until `stop`, one connection, no retry.
async fn rust_client(addr: String, i: usize, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let url = format!("redis://:{APP_PW}@{addr}");
    let mut c = common::sentinel::connect(&url).await;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("rs:{i}");
        for op in 0..3 {
            let cmd = match op {
                0 => redis::cmd("INCR").arg(format!("{key}:n")).clone(),
                1 => redis::cmd("SET").arg(&key).arg(n).clone(),
                _ => redis::cmd("GET").arg(&key).clone(),
            };
            let r =
                tokio::time::timeout(Duration::from_secs(15), cmd.query_async::<redis::Value>(&mut c)).await;
            match r {
                Err(_) => {
                    seen.hangs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok(_)) => {
                    seen.ok.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                    seen.disconnects.fetch_add(1, Ordering::Relaxed);
                    *seen.errors.lock().unwrap().entry(format!("disconnect: {e}")).or_default() += 1;
                }
                Ok(Err(e)) => {
                    let text = format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""));
                    *seen.errors.lock().unwrap().entry(text).or_default() += 1;
                    continue;
                }
            }
            c = common::sentinel::connect(&url).await;
            break;
        }
    }
}

/// A write through turnstile lands on the primary `port`.
async fn lands_on(ts: &Turnstile, cluster: &Cluster, port: u16, key: &str) {
    let mut c = ts.authed().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = show(&c.cmd(&["SET", key, "here"]).await);
        if r == "+OK\r\n" {
            break;
        }
        assert!(CLEAN.iter().any(|e| r == format!("-{e}\r\n")), "SET after the switch: {r}");
        assert!(Instant::now() < deadline, "no write went through after the switch");
    }
    let mut d = cluster.direct(port).await;
    let got: Option<String> = redis::cmd("GET").arg(key).query_async(&mut d).await.unwrap();
    assert_eq!(got.as_deref(), Some("here"), "the write after the switch is on the new primary {port}");
}

/// A BLPOP client and a SUBSCRIBE client, each with a connection of its own.
async fn blocked_and_subscribed(ts: &Turnstile) -> (Conn, Conn) {
    let mut blocked = ts.authed().await;
    blocked.send(&common::cmd_bytes(&["BLPOP", "failover:list", "0"])).await;
    let mut sub = ts.authed().await;
    assert!(show(&sub.cmd(&["SUBSCRIBE", "failover:chan"]).await).contains("subscribe"));
    (blocked, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_the_primary_through_failovers() {
    let mut cluster = Cluster::start().await;
    let first = cluster.primary_port().await;
    // Starts with one of three Sentinels down, the first one it is given.
    cluster.sentinels[2].stop();
    let down = cluster.sentinels[2].addr();
    let up = format!("{},{}", cluster.sentinels[0].addr(), cluster.sentinels[1].addr());
    let dir = tempfile::tempdir().unwrap();
    let sentinels: Vec<String> = cluster.sentinels.iter().map(|s| s.addr()).collect();
    let ts =
        turnstile(dir.path(), &format!("redis+sentinel://:{NODE_PW}@{down},{up}/mymaster"), &sentinels).await;
    ts.follows(1, first).await;

    // Every Sentinel unreachable: the known primary goes on serving (over several
    // polls), and stays the one shown.
    cluster.sentinels[0].stop();
    cluster.sentinels[1].stop();
    let mut c = ts.authed().await;
    let until = Instant::now() + Duration::from_millis(1500);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        assert_eq!(show(&c.cmd(&["SET", "no-sentinels", &n.to_string()]).await), "+OK\r\n");
        assert_eq!(
            show(&c.cmd(&["GET", "no-sentinels"]).await),
            format!("${}\r\n{n}\r\n", n.to_string().len())
        );
    }
    assert_eq!(ts.primary(1).await, Some(format!("127.0.0.1:{first}")));
    for s in &mut cluster.sentinels {
        s.resume();
    }
    cluster.settled(first).await;

    // The same upstream form through the API, with the variables' names only.
    let (code, body) = ts
        .http(
            "POST",
            "/v1/bdbs",
            Some(serde_json::json!({"name": "api", "listen": "127.0.0.1:0",
                "upstream": format!("redis+sentinel://{}/mymaster", cluster.sentinel_list()),
                "upstream_password_env": "TS_NODE_PW", "sentinel_password_env": "TS_SENTINEL_PW"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["sentinel_password_env"], "TS_SENTINEL_PW");
    let api_uid = body["uid"].as_u64().unwrap() as u32;
    ts.follows(api_uid, first).await;
    for bad in [
        format!("redis+sentinel://:pw@{}/mymaster", cluster.sentinel_list()),
        format!("rediss+sentinel://{}/mymaster", cluster.sentinel_list()),
        format!("redis+sentinel://{}", cluster.sentinel_list()),
    ] {
        let (code, body) = ts
            .http("POST", "/v1/bdbs", Some(serde_json::json!({"name": "bad", "port": 0, "upstream": bad})))
            .await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(!body.to_string().contains(":pw@"), "a password in the URL is never echoed");
    }

    // 20 clients non-stop.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/failover_clients.py");
    let (host, port) = ts.bdb.rsplit_once(':').unwrap();
    let mut py = tokio::process::Command::new(python())
        .arg(&script)
        .args([host, port, APP_PW, "10", "py"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the compat venv's python (scripts/compat-clients.sh)");
    let mut py_out = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(py_out.next_line().await.unwrap().as_deref(), Some("running"));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let rust: Vec<_> = (0..10)
        .map(|i| tokio::spawn(rust_client(ts.bdb.clone(), i, Arc::clone(&stop), Arc::clone(&seen))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.ok.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the clients never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (mut blocked, mut sub) = blocked_and_subscribed(&ts).await;
    let t0 = Instant::now();
    let mut primary = first;
    for round in 0..5 {
        let t = Instant::now();
        let old = cluster.force_failover().await;
        primary = cluster.switched_from(old).await;
        eprintln!("  the Sentinels switched after {:?}", t.elapsed());
        let took = ts.follows(1, primary).await;
        eprintln!(
            "failover {round}: {old} -> {primary}, turnstile followed within {took:?} of the Sentinels"
        );
        if round == 0 {
            // Told as Redis tells them, then closed.
            assert_eq!(show(&blocked.read_to_close().await), UNBLOCKED);
            assert_eq!(show(&sub.read_to_close().await), LOST);
            // Back through turnstile, on the new primary.
            (blocked, sub) = blocked_and_subscribed(&ts).await;
            let mut d = cluster.direct(primary).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got: i64 =
                    redis::cmd("PUBLISH").arg("failover:chan").arg("hi").query_async(&mut d).await.unwrap();
                if got == 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "the new subscriber is not on the new primary");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                show(&sub.reply().await),
                "*3\r\n$7\r\nmessage\r\n$13\r\nfailover:chan\r\n$2\r\nhi\r\n"
            );
            let () = redis::cmd("RPUSH").arg("failover:list").arg("x").query_async(&mut d).await.unwrap();
            assert_eq!(show(&blocked.reply().await), "*2\r\n$13\r\nfailover:list\r\n$1\r\nx\r\n");
        }
        lands_on(&ts, &cluster, primary, &format!("after-failover-{round}")).await;
        ts.follows(api_uid, primary).await;
        let t = Instant::now();
        cluster.demote(old, primary).await;
        cluster.replicating(old, primary).await;
        eprintln!("  {old} replicating from {primary} after {:?}", t.elapsed());
    }

    eprintln!("five failovers took {:?}", t0.elapsed());
    // A crash: the primary is killed; the Sentinels elect the replica.
    let old = primary;
    cluster.node_mut(old).kill();
    primary = cluster.switched_from(old).await;
    ts.follows(1, primary).await;
    lands_on(&ts, &cluster, primary, "after-crash").await;
    eprintln!("the crash took {:?}", t0.elapsed());

    stop.store(true, Ordering::Relaxed);
    for r in rust {
        tokio::time::timeout(Duration::from_secs(30), r).await.expect("a redis crate client hung").unwrap();
    }
    py.stdin.take().unwrap().shutdown().await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(40), py_out.next_line())
        .await
        .expect("the redis-py clients hung")
        .unwrap()
        .expect("the redis-py clients' summary");
    let py_seen: serde_json::Value = serde_json::from_str(&summary).unwrap();
    eprintln!("redis-py clients: {py_seen}");
    eprintln!(
        "redis crate clients: {} ok, {} disconnects, {} hangs, errors {:?}",
        seen.ok.load(Ordering::Relaxed),
        seen.disconnects.load(Ordering::Relaxed),
        seen.hangs.load(Ordering::Relaxed),
        seen.errors.lock().unwrap()
    );
    // Every operation ended in a reply or a clean error: no hang, no disconnect of
    // a lane client, never a -READONLY.
    assert_eq!(py_seen["hangs"], 0);
    assert_eq!(py_seen["stuck_threads"], 0);
    assert_eq!(py_seen["disconnects"], 0, "a redis-py lane client was disconnected");
    assert_eq!(py_seen["readonly"], 0);
    for (e, _) in py_seen["errors"].as_object().unwrap() {
        // redis-py drops the `ERR ` prefix.
        assert!(CLEAN.contains(&format!("ERR {e}").as_str()), "redis-py client got {e:?}");
    }
    assert!(py_seen["ok"].as_u64().unwrap() > 100);
    assert_eq!(seen.hangs.load(Ordering::Relaxed), 0);
    assert_eq!(seen.disconnects.load(Ordering::Relaxed), 0, "a redis crate lane client was disconnected");
    for e in seen.errors.lock().unwrap().keys() {
        assert!(CLEAN.contains(&e.as_str()), "redis crate client got {e:?}");
    }

    // Counted and logged.
    let m = ts.metrics().await;
    assert_eq!(value(&m, "turnstile_bdb_failovers_total{bdb=\"1\"}"), 6.0);
    assert_eq!(value(&m, "turnstile_bdb_primary_known{bdb=\"1\"}"), 1.0);
    assert!(value(&m, "turnstile_bdb_primary_unknown_seconds_total{bdb=\"1\"}") > 0.0);
    let (_, logs) = ts.http("GET", "/v1/logs", None).await;
    let switches: Vec<_> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == "primary_switched" && e["bdb_uid"] == 1 && e.get("previous_address").is_some()
        })
        .collect();
    assert_eq!(switches.len(), 6, "{logs}");
    assert_eq!(switches.last().unwrap()["address"], format!("127.0.0.1:{primary}"));
    let log = std::fs::read_to_string(dir.path().join("turnstile.log")).unwrap();
    assert!(!log.contains(NODE_PW) && !log.contains(SENTINEL_PW), "a secret in the log");
}
