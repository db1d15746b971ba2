//! The `turnstile` binary end to end: config file in, a working proxy out, clear
//! config errors, SIGTERM handled gracefully, and no secret in its output.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

fn config(dir: &std::path::Path, upstream: &str, extra_bdb: &str) -> std::path::PathBuf {
    let path = dir.join("turnstile.toml");
    let text = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
tls = false

[store]
dir = "{store}"

[auth]
argon2_m_cost = 64
argon2_t_cost = 1

[[bdbs]]
uid = 1
name = "app"
listen = "127.0.0.1:0"
upstream = "{upstream}"
default_password_env = "TEST_APP_PASSWORD"
{extra_bdb}
"#,
        store = dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn turnstile(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnstile"));
    c.arg("--config")
        .arg(config)
        .env("TURNSTILE_ADMIN_PASSWORD", "Admin-pw-1!")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Waits for the "listening" line the binary prints once every port is bound.
async fn listening_addr(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("turnstile did not report its listener")
        .unwrap()
        .expect("turnstile exited before listening");
    line.rsplit(' ').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_a_config_file_and_stops_on_sigterm() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &format!("redis://{}", redis.addr()), "");
    let mut child =
        turnstile(&cfg).env("TEST_APP_PASSWORD", "seeded-pw").env("TURNSTILE_LOG", "trace").spawn().unwrap();
    let addr = listening_addr(&mut child).await;
    // Drained as it comes: trace-level logs would fill the pipe and block the process.
    let mut err = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut logs = String::new();
        err.read_to_string(&mut logs).await.unwrap();
        logs
    });
    let mut c = Conn::connect(&addr).await;
    assert_eq!(c.cmd(&["GET", "k"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.cmd(&["AUTH", "not-the-pw"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd(&["AUTH", "seeded-pw"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    drop(c);

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exited after SIGTERM")
        .unwrap();
    let logs = stderr.await.unwrap();
    assert!(
        exit.success(),
        "exit status {exit:?}; stderr ends: {}",
        &logs[logs.len().saturating_sub(3000)..]
    );
    assert!(logs.contains("AUTH failed"), "failed AUTHs are logged: {logs}");
    // Trace-level logs of a session with good and bad passwords contain neither.
    assert!(!logs.contains("seeded-pw") && !logs.contains("not-the-pw"), "a password leaked into the logs");
}

/// One worker runs tokio's current-thread scheduler, more run the multi-thread one
/// (`main`): both serve clients, answer the admin API and stop on SIGTERM, whatever
/// the machine's CPU count makes the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_and_stops_on_either_scheduler() {
    let redis = Redis::start(&[]);
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &format!("redis://{}", redis.addr()), "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("[proxy]\nworker_threads = {workers}\n{text}")).unwrap();
        let mut child = turnstile(&cfg).env("TEST_APP_PASSWORD", "seeded-pw").spawn().unwrap();
        // Two lines: the database's port, then the admin API's.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = async || {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
            let line = line.expect("turnstile did not report its listeners").unwrap().expect("exited");
            line.rsplit(' ').next().unwrap().to_string()
        };
        let addr = next().await;
        let admin = next().await.trim_start_matches("http://").to_string();
        let mut http = tokio::net::TcpStream::connect(&admin).await.unwrap();
        http.write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut ready = String::new();
        http.read_to_string(&mut ready).await.unwrap();
        assert!(ready.starts_with("HTTP/1.1 200"), "{workers} workers: /ready said {ready}");
        let mut clients = Vec::new();
        for i in 0..4 {
            let mut c = Conn::connect(&addr).await;
            assert_eq!(c.cmd(&["AUTH", "seeded-pw"]).await, b"+OK\r\n", "{workers} workers");
            let key = format!("k{workers}-{i}");
            assert_eq!(c.cmd(&["SET", &key, "v"]).await, b"+OK\r\n");
            clients.push((c, key));
        }
        // Interleaved: every client's replies come back to it, in order.
        for (c, key) in &mut clients {
            assert_eq!(c.cmd(&["GET", key]).await, b"$1\r\nv\r\n", "{workers} workers");
        }
        let pid = child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("exited after SIGTERM")
            .unwrap();
        assert!(exit.success(), "{workers} workers: exit status {exit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("http://127.0.0.1:1", "", "bdbs[0].upstream"),
        ("redis://127.0.0.1:1", "max_connections = \"many\"", "max_connections"),
        ("redis://127.0.0.1:1", "colour = \"blue\"", "colour"),
    ];
    for (upstream, extra, key) in cases {
        let cfg = config(dir.path(), upstream, extra);
        let out = turnstile(&cfg).env("TEST_APP_PASSWORD", "x").output().await.unwrap();
        assert_eq!(out.status.code(), Some(64), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "message should name {key}: {err}");
    }
    // A secret named by the config but missing from the environment.
    let cfg = config(dir.path(), "redis://127.0.0.1:1", "");
    let out = turnstile(&cfg).env_remove("TEST_APP_PASSWORD").output().await.unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TEST_APP_PASSWORD"));
    // A missing file.
    let out = turnstile(&dir.path().join("nope.toml")).output().await.unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_explains_itself_and_prints_no_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .arg("--help")
        .env("TEST_APP_PASSWORD", "do-not-print-me")
        .env("TURNSTILE_ADMIN_PASSWORD", "do-not-print-me")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--config"), "{help}");
    assert!(!help.contains("do-not-print-me"));
}

/// `[admin] tls = false` serves the admin API over plain HTTP (and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_plain_http_when_tls_is_off() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &format!("redis://{}", redis.addr()), "");
    let mut child = turnstile(&cfg).env("TEST_APP_PASSWORD", "seeded-pw").spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("turnstile did not report its listeners")
            .unwrap()
            .expect("turnstile exited during start-up");
        if let Some(url) = line.strip_prefix("turnstile: admin API listening on ") {
            break url.to_string();
        }
    };
    assert!(admin.starts_with("http://"), "{admin}");
    let (status, body) =
        common::admin::curl(&admin, "GET", "/v1/cluster", ("admin", "Admin-pw-1!"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["password_min_length"], 8);
    let (status, body) = common::admin::curl(&admin, "GET", "/v1/cluster", ("admin", "wrong"), None).await;
    assert_eq!((status, body["error_code"].as_str()), (401, Some("unauthorized")));
    // No certificate was made: TLS is off.
    assert!(!dir.path().join("data/tls/cert.pem").exists());
}
