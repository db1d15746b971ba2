//! The fleet's store as operators run it: TLS-only with a private CA, a password and
//! client certificates; a primary with a replica and `min_replicas`; nodes stopped
//! for good leaving the registry. Real `redis-server`s, nodes in this process.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{Fleet, HOSTS, Node, Setup, auth, until};
use common::tls::Pki;
use common::{Conn, Redis, free_port, show};
use serde_json::{Value, json};

const STORE_PW: &str = "store-secret-Pw-7f3a";

/// redis-cli over TLS to the store (with its password), for what the store holds.
fn tls_cli(port: u16, pki: &Pki, leaf: &common::tls::Leaf, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", pki.ca.to_str().unwrap()])
        .args(["--cert", leaf.cert.to_str().unwrap(), "--key", leaf.key.to_str().unwrap()])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--no-auth-warning", "-a", STORE_PW])
        .args(args)
        .output()
        .expect("redis-cli is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_store_with_a_private_ca_carries_changes_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "store");
    let server = pki.leaf("store-server", &["localhost", "127.0.0.1"]);
    let client = pki.leaf("store-client", &["turnstile-node"]);
    let tls_port = free_port();
    let tp = tls_port.to_string();
    // TLS only (`--port 0` turns the plaintext listener off), client certificates
    // required, a password: every answer proves all three.
    let (cert, key, ca) =
        (server.cert.to_str().unwrap(), server.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let store = Redis::start(&[
        "--port",
        "0",
        "--tls-port",
        &tp,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        ca,
        "--tls-auth-clients",
        "yes",
        "--requirepass",
        STORE_PW,
    ]);
    let files = |ca: &std::path::Path| {
        format!(
            "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nredis_password_env = \"STORE_PW\"",
            ca.display(),
            client.cert.display(),
            client.key.display()
        )
    };
    let setup =
        Setup { store: files(&pki.ca), env: vec![("STORE_PW".into(), STORE_PW.into())], ..Setup::default() };
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let f = Fleet::start_on(store, &url, &setup, 2).await;
    let port = f.database("tls-first").await;
    let mut c2 = Conn::connect(&f.nodes[1].db(port)).await;
    assert!(auth(&mut c2, "tls-first").await, "node 2 serves the database node 1 made");
    // A password change on node 1 is live on node 2 by its 200.
    f.nodes[0].ok("PUT", "/v1/bdbs/1/passwords", json!({"password": "tls-second"})).await;
    assert!(auth(&mut c2, "tls-second").await, "the change is live on node 2 by its 200");
    assert!(!auth(&mut c2, "tls-first").await, "the replaced password is gone on node 2");
    let rev = f.nodes[0].control.store_status().revision;
    assert_eq!(f.nodes[1].control.store_status().revision, rev);
    assert_eq!(tls_cli(tls_port, &pki, &client, &["HGET", "turnstile:state", "rev"]), rev.to_string());

    // Node 3 trusts another CA. With no cache it cannot start, and says why.
    let other = Pki::new(dir.path(), "other");
    let wrong = Setup { store: files(&other.ca), ..setup.clone() };
    let d3 = tempfile::tempdir().unwrap();
    let e = match Node::try_start(HOSTS[2], d3.path(), &url, &wrong).await {
        Ok(_) => panic!("a node that does not trust the store's certificate started without a cache"),
        Err(e) => e,
    };
    eprintln!("start-up refused: {e}");
    assert!(e.to_lowercase().contains("certificate"), "the reason is the certificate: {e}");
    assert!(!e.contains(STORE_PW), "{e}");
    // With a cache (node 2's), it serves from it, and refuses writes saying why.
    // (The cache is written off the change's path: wait until it holds `rev`.)
    let cache = f.nodes[1].dir.join("fleet-cache.json");
    until("node 2's cache holds the change", Duration::from_secs(5), || async {
        let c: Option<Value> = std::fs::read(&cache).ok().and_then(|b| serde_json::from_slice(&b).ok());
        c.is_some_and(|c| c["rev"] == json!(rev))
    })
    .await;
    std::fs::copy(&cache, d3.path().join("fleet-cache.json")).unwrap();
    let n3 = Node::start_with(HOSTS[2], d3.path(), &url, &wrong).await;
    assert!(!n3.control.store_status().up);
    let mut c3 = Conn::connect(&n3.db(port)).await;
    assert!(auth(&mut c3, "tls-second").await, "served from the cache");
    let (s, v) = n3.api("POST", "/v1/bdbs/1/passwords", json!({"password": "never-stored"})).await;
    assert_eq!((s, v["error_code"].as_str()), (503, Some("store_error")), "{v}");
    let why = v["description"].as_str().unwrap().to_string();
    eprintln!("write refused: {why}");
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    assert!(!v.to_string().contains(STORE_PW), "{v}");
    let ready = common::admin::curl(&n3.admin_url, "GET", "/ready", ("", ""), None).await.1;
    assert!(!ready.to_string().contains(STORE_PW), "{ready}");
    assert_eq!(tls_cli(tls_port, &pki, &client, &["HGET", "turnstile:state", "rev"]), rev.to_string());
    assert!(!auth(&mut c2, "never-stored").await);

    // The store stopped: TLS and AUTH on a new connection are bounded like any
    // call (timeout_ms), so a write is refused within the 1 s here too.
    let pid = f.store.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let t = Instant::now();
    let (s, v) = f.nodes[0].api("POST", "/v1/bdbs/1/passwords", json!({"password": "while-stopped"})).await;
    let took = t.elapsed();
    eprintln!("write refused by a node of a stopped TLS store after {took:?}: {v}");
    assert_eq!((s, v["error_code"].as_str()), (503, Some("store_error")), "{v}");
    assert!(v["description"].as_str().unwrap().contains("no answer within store.timeout_ms"), "{v}");
    assert!(took <= Duration::from_secs(1), "{took:?}");
    assert!(auth(&mut c2, "tls-second").await, "AUTH goes on with the store stopped");
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
}

/// `INFO replication`'s `master_link_status` on a replica is `up`.
async fn in_sync(replica: &Redis) -> bool {
    let info = replica.connect().await.cmd(&["INFO", "replication"]).await;
    String::from_utf8_lossy(&info).contains("master_link_status:up")
}

async fn hget_rev(r: &Redis) -> String {
    show(&r.connect().await.cmd(&["HGET", "turnstile:state", "rev"]).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn min_replicas_answers_503_when_the_replica_does_not_confirm_and_200_again_after() {
    let store = Redis::start(&[]);
    let sp = store.port.to_string();
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &sp, "--repl-diskless-sync-delay", "0"]);
    until("the replica is in sync", Duration::from_secs(20), || in_sync(&replica)).await;
    let url = format!("redis://{}", store.addr());
    // The product's confirm bound, not the harness's wide one: the 503 below is timed.
    let setup = Setup {
        store: "min_replicas = 1\ntimeout_ms = 500\nconfirm_timeout_ms = 500".into(),
        ..Setup::default()
    };
    let f = Fleet::start_on(store, &url, &setup, 2).await;
    let port = f.database("rep-first").await;
    f.nodes[1].ok("POST", "/v1/bdbs/1/passwords", json!({"password": "rep-second"})).await;
    // A 200 means the replica has it (WAIT returned 1 before the answer).
    let primary_rev = hget_rev(&f.store).await;
    assert_eq!(hget_rev(&replica).await, primary_rev, "the replica has the change by its 200");
    let mut conns = Vec::new();
    for n in &f.nodes {
        let mut c = Conn::connect(&n.db(port)).await;
        assert!(auth(&mut c, "rep-second").await);
        assert_eq!(c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
        conns.push(c);
    }

    let pid = replica.pid().to_string();
    let signal =
        |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP");
    let t = Instant::now();
    let (s, v) = f.nodes[0].api("POST", "/v1/bdbs/1/passwords", json!({"password": "rep-third"})).await;
    let took = t.elapsed();
    eprintln!("store_not_replicated after {took:?}: {v}");
    assert_eq!((s, v["error_code"].as_str()), (503, Some("store_not_replicated")), "{v}");
    assert!(v["description"].as_str().unwrap().contains("is stored and applied"), "{v}");
    // About the WAIT's bound (timeout_ms = 500) plus the wait for node 2.
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    // Stored and applied, as the 503 says: on the primary and live on both nodes.
    assert_ne!(hget_rev(&f.store).await, primary_rev);
    for (c, n) in conns.iter_mut().zip(&f.nodes) {
        assert!(auth(c, "rep-third").await, "the unreplicated change is applied on {}", n.host);
        assert!(auth(c, "rep-second").await);
        assert_eq!(c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "traffic on {}", n.host);
        let mut fresh = Conn::connect(&n.db(port)).await;
        assert!(auth(&mut fresh, "rep-second").await, "AUTH keeps working on {}", n.host);
    }
    signal("-CONT");
    until("the replica is in sync again", Duration::from_secs(20), || in_sync(&replica)).await;
    f.nodes[1].ok("POST", "/v1/bdbs/1/passwords", json!({"password": "rep-fourth"})).await;
    assert_eq!(hget_rev(&replica).await, hget_rev(&f.store).await);
    for (c, n) in conns.iter_mut().zip(&f.nodes) {
        assert!(auth(c, "rep-fourth").await, "{}", n.host);
    }
}

/// The registry as node `n` shows it: uid → status.
async fn statuses(n: &Node) -> Vec<(u64, String)> {
    let v = n.ok("GET", "/v1/nodes", Value::Null).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| (n["uid"].as_u64().unwrap(), n["status"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_is_shown_down_then_leaves_the_registry() {
    let store = Redis::start(&[]);
    let url = format!("redis://{}", store.addr());
    let setup = Setup { store: "node_forget_secs = 5".into(), ..Setup::default() };
    let mut f = Fleet::start_on(store, &url, &setup, 2).await;
    let gone_uid = u64::from(f.nodes[1].control.node_uid().unwrap());
    until("both nodes are active", Duration::from_secs(5), || async {
        statuses(&f.nodes[0]).await.iter().all(|(_, s)| s == "active")
            && statuses(&f.nodes[0]).await.len() == 2
    })
    .await;
    let stopped = Instant::now();
    f.nodes.pop().unwrap().stop().await;
    until("the stopped node is shown down", Duration::from_secs(5), || async {
        statuses(&f.nodes[0]).await.contains(&(gone_uid, "down".into()))
    })
    .await;
    let down_after = stopped.elapsed();
    until("the stopped node leaves the registry", Duration::from_secs(10), || async {
        !statuses(&f.nodes[0]).await.iter().any(|(u, _)| *u == gone_uid)
    })
    .await;
    let gone_after = stopped.elapsed();
    eprintln!("down after {down_after:?}, removed after {gone_after:?}");
    // Removed by the live node's sweep, not earlier than the configured period.
    assert!(gone_after >= Duration::from_millis(4500), "{gone_after:?}");
    assert_eq!(statuses(&f.nodes[0]).await.len(), 1);
    // The store holds no record of it either.
    let rec = f.store.connect().await.cmd(&["HEXISTS", "turnstile:nodes", &gone_uid.to_string()]).await;
    assert_eq!(rec, b":0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_is_appended_to_the_fleet_log_without_a_new_revision() {
    let mut f = Fleet::start("").await;
    let port = f.database("ev-password").await;
    let store_addr = f.store.addr();
    let rev = || {
        let addr = store_addr.clone();
        async move { show(&Conn::connect(&addr).await.cmd(&["HGET", "turnstile:state", "rev"]).await) }
    };
    // An admin change: its event is pushed by the same script as the change.
    let before = rev().await;
    f.nodes[0].ok("POST", "/v1/bdbs/1/passwords", json!({"password": "ev-second"})).await;
    assert_ne!(rev().await, before, "a change moves the revision");
    let mut store = f.store.connect().await;
    let head = String::from_utf8_lossy(&store.cmd(&["LINDEX", "turnstile:events", "0"]).await).to_string();
    let uid1 = f.nodes[0].control.node_uid().unwrap();
    assert!(head.contains("\"password_added\"") && head.contains(&format!("\"node\":{uid1}")), "{head}");
    let doc = String::from_utf8_lossy(&store.cmd(&["HGET", "turnstile:state", "doc"]).await).to_string();
    assert!(!doc.contains("password_added"), "the state document holds no events");

    // Failed AUTHs on node 3 become events with its next write (here: at its
    // shutdown), which only appends: the revision does not move. Node 3 must first
    // hold the admin's last login the state holds (a later one would be a change).
    let n3 = f.nodes.last().unwrap();
    let admin = n3.control.snapshot().users.values().find(|u| u.name == common::admin::ADMIN).unwrap().uid;
    until("node 3 holds the stored last login", Duration::from_secs(5), || async {
        let stored = n3.control.snapshot().users[&admin].last_login;
        n3.control.last_login(admin).is_none_or(|t| Some(t) == stored)
    })
    .await;
    let mut c = Conn::connect(&n3.db(port)).await;
    for _ in 0..3 {
        assert!(!auth(&mut c, "ev-wrong").await);
    }
    let uid3 = n3.control.node_uid().unwrap();
    let before = rev().await;
    f.nodes.pop().unwrap().stop().await;
    assert_eq!(rev().await, before, "events alone moved the revision");
    // One log for the fleet: node 1 shows node 3's failures.
    let logs = f.nodes[0].ok("GET", "/v1/logs", Value::Null).await;
    let failed: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "auth_failed" && e["node_uid"] == json!(uid3))
        .collect();
    assert_eq!(failed.len(), 1, "{logs}");
    assert_eq!(failed[0]["count"], json!(3), "{logs}");
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "password_added" && e["node_uid"] == json!(uid1)),
        "{logs}"
    );
    let n = show(&store.cmd(&["LLEN", "turnstile:events:security"]).await);
    assert_eq!(n, ":1\r\n", "failed AUTHs go to their own capped list");
}
