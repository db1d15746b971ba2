//! TLS end to end with the real binary: database listeners with TLS (and client
//! certificates required) driven by real clients (redis-cli `--tls`, redis-py
//! `ssl=True`), a `rediss://` upstream that is a real TLS redis-server, the admin
//! API's `tls_mode`, and config errors that name the key.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::admin::*;
use common::tls::{Leaf, Pki};
use common::*;
use serde_json::json;

const AS_ADMIN: (&str, &str) = (ADMIN, ADMIN_PW);
const PW: &str = "tls-app-pw";
const UNAVAILABLE: &[u8] = b"-ERR upstream Redis is unavailable\r\n";
const LOST: &[u8] = b"-ERR upstream Redis closed the connection\r\n";

/// Runs redis-cli with `args`; returns (success, stdout + stderr).
async fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("redis-cli").args(args).stdin(Stdio::null()).output(),
    )
    .await
    .expect("redis-cli hung")
    .expect("redis-cli is installed (scripts/ensure-redis.sh)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.trim().to_string())
}

/// redis-cli over TLS to `addr` (`host:port`), verifying with `ca`, presenting
/// `client` if given, authenticating with `pw`, running `cmd`.
async fn tls_cli(addr: &str, ca: &Path, client: Option<&Leaf>, pw: &str, cmd: &[&str]) -> (bool, String) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let ca = ca.to_str().unwrap();
    let mut args = vec!["--tls", "--cacert", ca, "-h", host, "-p", port, "--no-auth-warning", "-a", pw];
    let (cert, key);
    if let Some(c) = client {
        cert = c.cert.to_str().unwrap().to_string();
        key = c.key.to_str().unwrap().to_string();
        args.extend(["--cert", &cert, "--key", &key]);
    }
    args.extend(cmd);
    redis_cli(&args).await
}

/// Gives database `uid` the default-user password [`PW`] through the admin API.
async fn set_password(p: &Process, uid: u32) {
    let (status, v) = p
        .curl(
            "PUT",
            &format!("/v1/bdbs/{uid}/passwords"),
            AS_ADMIN,
            Some(&json!({"password": PW}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

/// A plaintext RESP client on a TLS port gets no RESP reply: the connection is
/// closed, at most after a TLS alert record (content type 21).
async fn assert_plaintext_refused(addr: &str) {
    let mut c = Conn::connect(addr).await;
    c.send(&cmd_bytes(&["PING"])).await;
    let got = c.read_to_close().await;
    assert!(got.is_empty() || got[0] == 21, "a plaintext client got {}", show(&got));
}

/// A CA named `name` under `dir`, and the database keys for a TLS listener with a
/// server certificate it signed (for localhost and 127.0.0.1).
fn tls_listener(dir: &Path, name: &str) -> (Pki, String) {
    let pki = Pki::new(dir, name);
    let server = pki.leaf("server", &["localhost", "127.0.0.1"]);
    let bdb = format!(
        "tls_mode = \"enabled\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        toml_path(&server.cert),
        toml_path(&server.key)
    );
    (pki, bdb)
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_through_a_tls_listener() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (pki, bdb) = tls_listener(dir.path(), "listener");
    let p = Process::start_with(
        dir.path(),
        &format!("redis://{}", redis.addr()),
        "[proxy]\nauth_timeout_secs = 2\n",
        &bdb,
        "",
    )
    .await;
    set_password(&p, 1).await;
    let addr = p.bdb(1);

    assert_eq!(tls_cli(&addr, &pki.ca, None, PW, &["SET", "tls-key", "over tls"]).await, (true, "OK".into()));
    assert_eq!(tls_cli(&addr, &pki.ca, None, PW, &["GET", "tls-key"]).await, (true, "over tls".into()));
    // The value really went to the upstream.
    assert_eq!(redis.connect().await.cmd(&["GET", "tls-key"]).await, b"$8\r\nover tls\r\n");
    let (_, out) = tls_cli(&addr, &pki.ca, None, "not-the-pw", &["PING"]).await;
    assert!(out.contains("WRONGPASS invalid username-password pair"), "{out}");
    assert!(!out.contains("PONG"), "{out}");

    // Plaintext clients are refused cleanly: no RESP reply, the connection closed.
    assert_plaintext_refused(&addr).await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (_, out) = redis_cli(&["-h", host, "-p", port, "--no-auth-warning", "-a", PW, "PING"]).await;
    assert!(!out.contains("PONG"), "plaintext redis-cli got through: {out}");
    // A client that does not trust the certificate's CA gets nowhere either.
    let other = Pki::new(dir.path(), "other");
    let (ok, out) = tls_cli(&addr, &other.ca, None, PW, &["PING"]).await;
    assert!(!ok || !out.contains("PONG"), "{out}");

    // The handshake is bounded: a client that connects and says nothing is closed
    // by the auth timeout (2 s here), not left holding the slot.
    let started = Instant::now();
    let mut silent = Conn::connect(&addr).await;
    let got = silent.read_to_close().await;
    let waited = started.elapsed();
    assert!(got.is_empty(), "{}", show(&got));
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    // ...and the listener still serves.
    assert_eq!(tls_cli(&addr, &pki.ca, None, PW, &["PING"]).await, (true, "PONG".into()));
}

/// Connections that never finish their TLS handshake count toward the bound on
/// unauthenticated connections and give way like any other: with the bound full of
/// them from one address, a client from another address still gets in, and the
/// oldest silent one is closed at once (not at the handshake's 10 s timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_handshakes_give_way_to_another_address() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (pki, bdb) = tls_listener(dir.path(), "listener");
    let proxy = "[proxy]\nmax_unauthenticated_connections = 4\nmax_unauthenticated_per_address = 0\n";
    let p = Process::start_with(dir.path(), &format!("redis://{}", redis.addr()), proxy, &bdb, "").await;
    set_password(&p, 1).await;
    let addr = p.bdb(1);
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(Conn::connect_from("127.0.0.2:0", &addr).await);
    }
    // The bound is full of them: a fifth from the same address is closed at once.
    let mut fifth = Conn::connect_from("127.0.0.2:0", &addr).await;
    let started = Instant::now();
    assert!(fifth.read_to_close().await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "the fifth was not refused at accept");
    // A client from 127.0.0.1 gets in all the same...
    assert_eq!(tls_cli(&addr, &pki.ca, None, PW, &["PING"]).await, (true, "PONG".into()));
    // ...in place of the oldest silent handshake, cut short.
    let started = Instant::now();
    assert!(silent[0].read_to_close().await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "closed only by the handshake timeout");
}

/// A database requiring client certificates: without one, or with one from another
/// CA, the handshake fails; with a good one, everything works (redis-cli and redis-py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_required() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mtls");
    let server = pki.leaf("server", &["localhost", "127.0.0.1"]);
    let client = pki.leaf("client", &["app.example"]);
    let stranger = Pki::new(dir.path(), "stranger").leaf("stranger", &["app.example"]);
    let bdb = format!(
        "tls_mode = \"enabled\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
        toml_path(&server.cert),
        toml_path(&server.key),
        toml_path(&pki.ca)
    );
    // Trace-level logs of every crate (rustls's included), checked for key material below.
    std::fs::File::create(dir.path().join("turnstile.log")).unwrap();
    let p = Process::start_with(dir.path(), &format!("redis://{}", redis.addr()), "", &bdb, "").await;
    set_password(&p, 1).await;
    let addr = p.bdb(1);

    let (_, out) = tls_cli(&addr, &pki.ca, None, PW, &["PING"]).await;
    assert!(!out.contains("PONG"), "no client certificate, yet: {out}");
    let (_, out) = tls_cli(&addr, &pki.ca, Some(&stranger), PW, &["PING"]).await;
    assert!(!out.contains("PONG"), "a certificate from another CA, yet: {out}");
    assert_eq!(tls_cli(&addr, &pki.ca, Some(&client), PW, &["PING"]).await, (true, "PONG".into()));
    assert_eq!(tls_cli(&addr, &pki.ca, Some(&client), PW, &["SET", "m", "tls"]).await, (true, "OK".into()));
    // Password checks still apply behind the certificate.
    let (_, out) = tls_cli(&addr, &pki.ca, Some(&client), "nope", &["GET", "m"]).await;
    assert!(out.contains("WRONGPASS"), "{out}");

    // redis-py, ssl=True, with its client certificate.
    let port = addr.rsplit_once(':').unwrap().1;
    let out = redis_py(&[
        port,
        PW,
        pki.ca.to_str().unwrap(),
        client.cert.to_str().unwrap(),
        client.key.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out, "ok: ping set get multi\nok: wrong password refused");

    let (status, v) = p.curl("GET", "/v1/bdbs/1", AS_ADMIN, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["tls_mode"].as_str(), v["enforce_client_authentication"].as_str()),
        (Some("enabled"), Some("enabled"))
    );

    let logs = std::fs::read_to_string(dir.path().join("turnstile.log")).unwrap();
    assert!(logs.contains("TLS handshake failed"), "refused handshakes are logged (at debug)");
    for key in [&server.key, &client.key, &stranger.key] {
        let pem = std::fs::read_to_string(key).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!logs.contains(line), "key material from {} in the logs", key.display());
        }
    }
    assert!(!logs.contains(PW), "the password in the logs");
}

/// Runs tests/clients/redis_py_tls.py; returns its stdout, failing on a non-zero exit.
async fn redis_py(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/redis_py_tls.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3").arg(script).args(args).stdin(Stdio::null()).output(),
    )
    .await
    .expect("redis-py hung")
    .expect("python3 is installed (scripts/ensure-python-redis.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-py failed (scripts/ensure-python-redis.sh installs it): {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_through_a_tls_listener() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (pki, bdb) = tls_listener(dir.path(), "py");
    let p = Process::start_with(dir.path(), &format!("redis://{}", redis.addr()), "", &bdb, "").await;
    set_password(&p, 1).await;
    let addr = p.bdb(1);
    let out = redis_py(&[addr.rsplit_once(':').unwrap().1, PW, pki.ca.to_str().unwrap()]).await;
    assert_eq!(out, "ok: ping set get multi\nok: wrong password refused");
    assert_eq!(redis.connect().await.cmd(&["GET", "py-key"]).await, b"$8\r\npy-value\r\n");
}

/// `rediss://` to a real redis-server that speaks TLS only on its TLS port and
/// requires client certificates there: turnstile gets in only with its own
/// certificate, verifies the server against the configured CA, and a plain
/// connection to that port is impossible, so the data flowing proves TLS is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rediss_to_a_tls_redis() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "upstream");
    let redis_leaf = pki.leaf("redis", &["localhost", "127.0.0.1"]);
    let turnstile_leaf = pki.leaf("turnstile", &["turnstile.example"]);
    let tls_port = free_port().to_string();
    let redis = Redis::start(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        redis_leaf.cert.to_str().unwrap(),
        "--tls-key-file",
        redis_leaf.key.to_str().unwrap(),
        "--tls-ca-cert-file",
        pki.ca.to_str().unwrap(),
        "--tls-auth-clients",
        "yes",
    ]);
    assert_ne!(tls_port, redis.port.to_string());
    let upstream = format!("rediss://127.0.0.1:{tls_port}");
    let ca = toml_path(&pki.ca);
    let bdb1 = format!(
        "upstream_tls_ca = \"{ca}\"\nupstream_tls_cert = \"{}\"\nupstream_tls_key = \"{}\"\n",
        toml_path(&turnstile_leaf.cert),
        toml_path(&turnstile_leaf.key)
    );
    // Database 2: the same upstream, but no client certificate to present.
    // Database 3: a CA that did not sign the upstream's certificate.
    let wrong_ca = toml_path(&Pki::new(dir.path(), "wrong").ca);
    let more = format!(
        "[[bdbs]]\nuid = 2\nname = \"no-cert\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nupstream_tls_ca = \"{ca}\"\n\
         [[bdbs]]\nuid = 3\nname = \"wrong-ca\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nupstream_tls_ca = \"{wrong_ca}\"\n"
    );
    let p = Process::start_with(dir.path(), &upstream, "", &bdb1, &more).await;
    for uid in [1, 2, 3] {
        set_password(&p, uid).await;
    }

    let mut c = Conn::connect(&p.bdb(1)).await;
    assert_eq!(c.cmd(&["AUTH", PW]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "via", "rediss"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "via"]).await, b"$6\r\nrediss\r\n");
    // A 1 MB value crosses both directions of the TLS upstream intact.
    let big = "x".repeat(1 << 20);
    assert_eq!(c.cmd(&["SET", "big", &big]).await, b"+OK\r\n");
    let got = c.cmd(&["GET", "big"]).await;
    assert!(got == format!("${}\r\n{big}\r\n", big.len()).as_bytes(), "the 1 MB value came back altered");
    // The same data seen on Redis's plain port: the write reached the real Redis.
    assert_eq!(redis.connect().await.cmd(&["GET", "via"]).await, b"$6\r\nrediss\r\n");
    // turnstile's connection is a TLS one: the TLS port counts it as a client whose
    // connection carries a certificate (Redis lists connections by local port).
    let list = redis.connect().await.cmd(&["CLIENT", "LIST"]).await;
    let list = String::from_utf8_lossy(&list);
    assert!(list.contains(&format!("laddr=127.0.0.1:{tls_port}")), "no client on the TLS port: {list}");

    // Without a client certificate Redis drops turnstile after the handshake (TLS 1.3
    // reports it at the first read; TLS 1.2 during the handshake).
    let mut c = Conn::connect(&p.bdb(2)).await;
    assert_eq!(c.cmd(&["AUTH", PW]).await, b"+OK\r\n");
    let got = c.cmd(&["PING"]).await;
    assert!(got == LOST || got == UNAVAILABLE, "{}", show(&got));
    // An upstream certificate the CA did not sign is refused by turnstile.
    let mut c = Conn::connect(&p.bdb(3)).await;
    assert_eq!(c.cmd(&["AUTH", PW]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["PING"]).await, UNAVAILABLE);
}

/// The admin API: `tls_mode` in GET, and PUT turning TLS on and off live on a
/// database created through the API (with the admin API's certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_tls_mode() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let up = format!("redis://{}", redis.addr());
    let p = Process::start(dir.path(), &up).await;
    let call = |m: &'static str, path: String, body: serde_json::Value| {
        let p = &p;
        async move { p.curl(m, &path, AS_ADMIN, Some(&body.to_string())).await }
    };
    let (s, b) = call("POST", "/v1/bdbs".into(), json!({"name": "api", "port": 0, "upstream": up})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["tls_mode"].as_str(), b["enforce_client_authentication"].as_str()),
        (Some("disabled"), Some("disabled"))
    );
    let uid = b["uid"].as_u64().unwrap();
    let addr = b["listen"].as_str().unwrap().to_string();
    let (s, _) = call("PUT", format!("/v1/bdbs/{uid}/passwords"), json!({"password": PW})).await;
    assert_eq!(s, 200);
    let mut plain = Conn::connect(&addr).await;
    assert_eq!(plain.cmd(&["AUTH", PW]).await, b"+OK\r\n");

    let (s, b) = call("PUT", format!("/v1/bdbs/{uid}"), json!({"tls_mode": "enabled"})).await;
    assert_eq!((s, b["tls_mode"].as_str()), (200, Some("enabled")), "{b}");
    let (s, b) = p.curl("GET", &format!("/v1/bdbs/{uid}"), AS_ADMIN, None).await;
    assert_eq!((s, b["tls_mode"].as_str()), (200, Some("enabled")));
    // New connections need TLS, verified with the admin API's generated certificate;
    // the connection opened before keeps working.
    let cert = dir.path().join("data/tls/cert.pem");
    assert_eq!(tls_cli(&addr, &cert, None, PW, &["PING"]).await, (true, "PONG".into()));
    assert_plaintext_refused(&addr).await;
    assert_eq!(plain.cmd(&["PING"]).await, b"+PONG\r\n");

    let (s, b) = call("PUT", format!("/v1/bdbs/{uid}"), json!({"tls_mode": "disabled"})).await;
    assert_eq!((s, b["tls_mode"].as_str()), (200, Some("disabled")));
    let mut c = Conn::connect(&addr).await;
    assert_eq!(c.cmd(&["AUTH", PW]).await, b"+OK\r\n");

    // Refused, with nothing changed: an unknown mode, TLS of a config-file database
    // (it comes from the file), a rediss:// upstream (its CA is set in the file).
    let (s, b) = call("PUT", format!("/v1/bdbs/{uid}"), json!({"tls_mode": "replica_ssl"})).await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("invalid_parameter")), "{b}");
    let (s, b) = call("PUT", "/v1/bdbs/1".into(), json!({"tls_mode": "enabled"})).await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("invalid_parameter")), "{b}");
    assert!(b["description"].as_str().unwrap().contains("config file"), "{b}");
    let (s, b) = call("PUT", "/v1/bdbs/1".into(), json!({"tls_mode": "disabled"})).await;
    assert_eq!(s, 200, "the current value is accepted: {b}");
    let (s, b) =
        call("POST", "/v1/bdbs".into(), json!({"name": "s", "port": 0, "upstream": "rediss://127.0.0.1:1"}))
            .await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("invalid_parameter")), "{b}");
    assert!(b["description"].as_str().unwrap().contains("upstream_tls_ca"), "{b}");
    let (_, b) = p.curl("GET", &format!("/v1/bdbs/{uid}"), AS_ADMIN, None).await;
    assert_eq!(b["tls_mode"], "disabled");
    let mut c = Conn::connect(&addr).await;
    assert_eq!(c.cmd(&["AUTH", PW]).await, b"+OK\r\n");
}

/// Bad TLS keys stop start-up with status 64 and the key's name; a key file's
/// contents never appear in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_configs_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cfg");
    let leaf = pki.leaf("server", &["127.0.0.1"]);
    let key_pem = std::fs::read_to_string(&leaf.key).unwrap();
    let secret_line = key_pem.lines().nth(1).unwrap().to_string();
    let (cert, key, ca) = (toml_path(&leaf.cert), toml_path(&leaf.key), toml_path(&pki.ca));
    let missing = toml_path(&dir.path().join("missing.pem"));
    let cases = [
        (
            "redis://127.0.0.1:1",
            format!("tls_mode = \"enabled\"\ntls_cert = \"{missing}\"\ntls_key = \"{key}\""),
            "bdbs[0].tls_cert",
            "missing.pem",
        ),
        // The key file given as the certificate: named, never quoted.
        (
            "redis://127.0.0.1:1",
            format!("tls_mode = \"enabled\"\ntls_cert = \"{key}\"\ntls_key = \"{key}\""),
            "bdbs[0].tls_cert",
            "server-key.pem",
        ),
        (
            "redis://127.0.0.1:1",
            format!("tls_mode = \"enabled\"\ntls_cert = \"{cert}\""),
            "bdbs[0].tls_cert",
            "go together",
        ),
        (
            "redis://127.0.0.1:1",
            format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\""),
            "bdbs[0].tls_cert",
            "tls_mode",
        ),
        ("redis://127.0.0.1:1", "tls_mode = \"sometimes\"".to_string(), "tls_mode", "unknown variant"),
        (
            "redis://127.0.0.1:1",
            format!("tls_mode = \"enabled\"\ntls_client_ca = \"{key}\""),
            "bdbs[0].tls_client_ca",
            "server-key.pem",
        ),
        ("rediss://127.0.0.1:1", String::new(), "bdbs[0].upstream_tls_ca", "rediss://"),
        (
            "redis://127.0.0.1:1",
            format!("upstream_tls_ca = \"{ca}\""),
            "bdbs[0].upstream_tls_ca",
            "rediss://",
        ),
        (
            "rediss://127.0.0.1:1",
            format!(
                "upstream_tls_ca = \"{ca}\"\nupstream_tls_cert = \"{cert}\"\nupstream_tls_key = \"{missing}\""
            ),
            "bdbs[0].upstream_tls_cert",
            "missing.pem",
        ),
    ];
    for (i, (upstream, extra, key_name, why)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("case{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n[store]\ndir = \"{}\"\n\
                 [[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{extra}\n",
                toml_path(&dir.path().join("data"))
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
            .arg("--config")
            .arg(&config)
            .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "case {i}: {err}");
        assert!(
            err.contains(key_name) && err.contains(why),
            "case {i} should name {key_name} ({why}): {err}"
        );
        assert!(!err.contains(&secret_line), "case {i} quoted the key file: {err}");
    }
}
