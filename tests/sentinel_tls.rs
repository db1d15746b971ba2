//! `rediss+sentinel://` with real processes on loopback: a primary and a replica
//! that listen with TLS only (and replicate over TLS), one `redis-sentinel` that
//! listens with TLS only and talks TLS to them, the turnstile binary from a
//! config file with `upstream_tls_ca`. No plaintext port exists anywhere, so every
//! answer that arrives proves turnstile spoke TLS to the Sentinel and to the nodes.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::admin::*;
use common::sentinel::{MASTER, Sentinel};
use common::tls::Pki;
use common::*;
use serde_json::json;

const AS_ADMIN: (&str, &str) = (ADMIN, ADMIN_PW);
const PW: &str = "tls-sentinel-app-pw";
/// What a client may be told while the primary changes.
const CLEAN: [&str; 3] = [
    "-ERR upstream Redis closed the connection\r\n",
    "-ERR upstream Redis primary is unknown (Sentinel failover in progress)\r\n",
    "-ERR upstream Redis is unavailable\r\n",
];

/// redis-cli over TLS to 127.0.0.1:`port`, verifying with `ca`; (success, output).
async fn tls_cli(port: u16, ca: &Path, cmd: &[&str]) -> (bool, String) {
    let port = port.to_string();
    let mut args = vec!["--tls", "--cacert", ca.to_str().unwrap(), "-h", "127.0.0.1", "-p", &port];
    args.extend(cmd);
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new("redis-cli").args(&args).stdin(Stdio::null()).output(),
    )
    .await
    .expect("redis-cli hung")
    .expect("redis-cli is installed (scripts/ensure-redis.sh)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.trim().to_string())
}

/// Polls `cond` every 50 ms until it holds, failing with `what` after 20 s.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node that listens with TLS only on `tls_port` (`--port 0` turns the
/// plaintext listener off; the port itself was chosen free) and replicates over TLS.
fn tls_node(dir: &Path, tls_port: u16, tls: &[&str], replica_of: Option<u16>) -> Redis {
    std::fs::create_dir_all(dir).unwrap();
    let (tls_port, dir) = (tls_port.to_string(), dir.display().to_string());
    let mut args = vec!["--port", "0", "--tls-port", &tls_port, "--tls-auth-clients", "no"];
    args.extend(["--tls-replication", "yes", "--dir", &dir, "--repl-diskless-sync-delay", "0"]);
    args.extend(tls);
    let primary;
    if let Some(p) = replica_of {
        primary = p.to_string();
        args.extend(["--replicaof", "127.0.0.1", &primary]);
    }
    Redis::start(&args)
}

/// `primary_address` of database `uid` in the admin API.
async fn primary_address(p: &Process, uid: u32) -> Option<String> {
    let (_, v) = p.curl("GET", &format!("/v1/bdbs/{uid}"), AS_ADMIN, None).await;
    v["primary_address"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sentinel_follows_a_tls_primary_through_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "sentinel-tls");
    let leaf = pki.leaf("node", &["localhost", "127.0.0.1"]);
    let (cert, key, ca) = (leaf.cert.to_str().unwrap(), leaf.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let tls = ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca];
    let (p0, p1) = (free_port(), free_port());
    let _primary = tls_node(&dir.path().join("n0"), p0, &tls, None);
    let _replica = tls_node(&dir.path().join("n1"), p1, &tls, Some(p0));
    let sentinel = Sentinel::start_tls(
        dir.path(),
        p0,
        &format!("tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n"),
    );

    // The Sentinel (over TLS) sees the replica in sync: a failover can be forced.
    let s = sentinel.port;
    until("the TLS Sentinel sees the TLS replica in sync", || async {
        let (_, out) = tls_cli(s, &pki.ca, &["SENTINEL", "replicas", MASTER]).await;
        out.contains(&format!("127.0.0.1:{p1}")) && out.contains("master-link-status\nok")
    })
    .await;

    // Database 1: rediss+sentinel:// with the CA. Database 2: the same TLS-only
    // Sentinel reached without TLS, which must fail cleanly.
    let upstream = format!("rediss+sentinel://127.0.0.1:{s}/{MASTER}");
    let ca_toml = ca.replace('\\', "\\\\");
    let plain = format!(
        "[[bdbs]]\nuid = 2\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\n\
         upstream = \"redis+sentinel://127.0.0.1:{s}/{MASTER}\"\n"
    );
    let p = Process::start_with(
        dir.path(),
        &upstream,
        "[proxy]\nsentinel_primary_wait_ms = 1500\nupstream_connect_timeout_ms = 1000\n",
        &format!("upstream_tls_ca = \"{ca_toml}\"\n"),
        &plain,
    )
    .await;
    for uid in [1, 2] {
        let body = json!({"password": PW}).to_string();
        let (status, v) = p.curl("PUT", &format!("/v1/bdbs/{uid}/passwords"), AS_ADMIN, Some(&body)).await;
        assert_eq!(status, 200, "{v}");
    }

    // Resolved over TLS: the Sentinel has no plaintext port.
    let want0 = format!("127.0.0.1:{p0}");
    until("turnstile resolves the TLS primary", || async {
        primary_address(&p, 1).await.as_deref() == Some(want0.as_str())
    })
    .await;
    let mut c = Conn::connect(&p.bdb(1)).await;
    assert_eq!(show(&c.cmd(&["AUTH", PW]).await), "+OK\r\n");
    assert_eq!(show(&c.cmd(&["SET", "before", "tls-1"]).await), "+OK\r\n");
    assert_eq!(show(&c.cmd(&["GET", "before"]).await), "$5\r\ntls-1\r\n");
    assert_eq!(tls_cli(p0, &pki.ca, &["GET", "before"]).await, (true, "tls-1".into()));
    // On the replica too before the failover: a forced one does not wait for the
    // replica to catch up, and the write would be lost with it (Redis's own
    // behaviour, not what is tested here).
    until("the replica has the write", || async {
        tls_cli(p1, &pki.ca, &["GET", "before"]).await == (true, "tls-1".into())
    })
    .await;

    // A forced failover, asked of the Sentinel over TLS (retried while the
    // Sentinel is not ready to pick the replica yet).
    until("SENTINEL FAILOVER is accepted", || async {
        tls_cli(s, &pki.ca, &["SENTINEL", "FAILOVER", MASTER]).await == (true, "OK".into())
    })
    .await;
    let want1 = format!("127.0.0.1:{p1}");
    until("turnstile follows the primary to the old replica", || async {
        primary_address(&p, 1).await.as_deref() == Some(want1.as_str())
    })
    .await;
    assert!(tls_cli(p1, &pki.ca, &["ROLE"]).await.1.starts_with("master"));

    // TLS upstream connections are never shared (no lanes: see route.rs), so this
    // client has a connection of its own to the old primary: like Sentinel's own
    // CLIENT KILL, turnstile tells it and closes it.
    let told = c.read_to_close().await;
    assert_eq!(show(&told), CLEAN[0]);
    // A new connection reaches the new primary; a write lands there (one caught
    // by the switch may get a clean error, then the next succeeds).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        let mut c = Conn::connect(&p.bdb(1)).await;
        assert_eq!(show(&c.cmd(&["AUTH", PW]).await), "+OK\r\n");
        let got = show(&c.cmd(&["SET", "after", "tls-2"]).await);
        if got == "+OK\r\n" {
            break c;
        }
        assert!(CLEAN.contains(&got.as_str()), "unexpected reply during the switch: {got}");
        assert!(Instant::now() < deadline, "writes never reached the new primary");
    };
    assert_eq!(tls_cli(p1, &pki.ca, &["GET", "after"]).await, (true, "tls-2".into()));
    assert_eq!(tls_cli(p1, &pki.ca, &["GET", "before"]).await, (true, "tls-1".into()));
    assert_eq!(show(&c.cmd(&["GET", "after"]).await), "$5\r\ntls-2\r\n");

    // Without TLS the Sentinel cannot be asked: no primary is ever known, and a
    // client gets the clean error (after the bounded wait), not a hang.
    assert_eq!(primary_address(&p, 2).await, None);
    let mut plain = Conn::connect(&p.bdb(2)).await;

    assert_eq!(show(&plain.cmd(&["AUTH", PW]).await), "+OK\r\n");
    assert_eq!(show(&plain.cmd(&["SET", "k", "v"]).await), CLEAN[1]);
    assert_eq!(tls_cli(p1, &pki.ca, &["EXISTS", "k"]).await, (true, "0".into()));
}
