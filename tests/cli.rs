//! The command line: `check-config` (valid → the effective config, no secret;
//! invalid → exit 64 with the same message as a start), `run`, `--help`, and the
//! logs: one span per connection and per admin request, JSON with `--log-json`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const UP_SECRET: &str = "upstream-secret-in-url";
const APP_SECRET: &str = "app-secret-from-env";

fn write_config(dir: &Path, upstream: &str, extra: &str) -> PathBuf {
    let path = dir.join("turnstile.toml");
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n[store]\ndir = \"{}\"\n[auth]\nargon2_m_cost = 64\n\
         argon2_t_cost = 1\n[[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\
         default_password_env = \"CLI_APP_PASSWORD\"\n{extra}\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn turnstile(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnstile"));
    c.args(args)
        .env_remove("TURNSTILE_CONFIG")
        .env_remove("TURNSTILE_LOG")
        .env("TURNSTILE_ADMIN_PASSWORD", "Admin-pw-1!")
        .env("CLI_APP_PASSWORD", APP_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn check_config_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("redis://svc:{UP_SECRET}@127.0.0.1:1"), "");
    let out = turnstile(&["check-config", "--config", cfg.to_str().unwrap()]).output().await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // The effective values: the file's, and every default it left out.
    for line in [
        "upstream = \"redis://svc:REDACTED@127.0.0.1:1\"",
        "argon2_m_cost = 64",
        "argon2_p_cost = 1",
        "auth_timeout_secs = 30",
        "throttle_failures = 100",
        "default_user = true",
        "admin_email = \"admin@example.com\"",
        "#   CLI_APP_PASSWORD (bdbs[0].default_password_env): set",
        "#   TURNSTILE_ADMIN_PASSWORD (the bootstrap admin's password, needed while the store is empty): set",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(UP_SECRET) && !stdout.contains(APP_SECRET) && !stdout.contains("Admin-pw-1!"));
    // It is TOML turnstile reads back.
    let back = turnstile::config::Config::parse(&stdout).unwrap();
    assert_eq!(back.auth.argon2_m_cost, 64);
    // A check, not a start: the store was not created.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn check_config_reports_a_bad_file_like_a_start_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "http://127.0.0.1:1", "");
    let cfg = cfg.to_str().unwrap();
    let check = turnstile(&["check-config", "--config", cfg]).output().await.unwrap();
    let start = turnstile(&["--config", cfg]).output().await.unwrap();
    assert_eq!(check.status.code(), Some(64));
    assert_eq!(start.status.code(), Some(64));
    let message = format!(
        "turnstile: invalid configuration {cfg}: bdbs[0].upstream: must look like redis://[user[:password]@]host:port (or rediss:// for TLS, or redis+sentinel://host:port[,host:port…]/<master name>)\n"
    );
    assert_eq!(String::from_utf8_lossy(&check.stderr), message);
    assert_eq!(String::from_utf8_lossy(&start.stderr), message);
    assert!(check.stdout.is_empty(), "nothing printed for an invalid file");
    // A variable the file names but the environment lacks is an error too.
    let cfg = write_config(dir.path(), "redis://127.0.0.1:1", "");
    let out = turnstile(&["check-config", "-c", cfg.to_str().unwrap()])
        .env_remove("CLI_APP_PASSWORD")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .ends_with("bdbs[0].default_password_env: environment variable CLI_APP_PASSWORD is not set\n")
    );
    // TURNSTILE_CONFIG stands in for --config.
    let out = turnstile(&["check-config"]).env("TURNSTILE_CONFIG", &cfg).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Without any config: a usage error.
    let out = turnstile(&["check-config"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config <FILE> is required"));
}

#[tokio::test]
async fn help_names_the_commands_environment_and_exit_codes() {
    let out = turnstile(&["--help"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Usage: turnstile [OPTIONS] [COMMAND]",
        "check-config",
        "--config <FILE>",
        "--log-json",
        "TURNSTILE_ADMIN_PASSWORD",
        "TURNSTILE_CONFIG",
        "64  invalid configuration file",
    ] {
        assert!(help.contains(needle), "no {needle:?} in --help:\n{help}");
    }
    assert!(!help.contains(APP_SECRET) && !help.contains("Admin-pw-1!"));
    let out = turnstile(&["check-config", "--help"]).output().await.unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("secrets never printed") && help.contains("exit 0"), "{help}");
}

/// Reads stdout lines until the admin API's; returns (bdb 1 address, admin URL).
async fn listening(child: &mut Child) -> (String, String) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut bdb = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("turnstile did not report its listeners")
            .unwrap()
            .expect("turnstile exited during start-up");
        let last = line.rsplit(' ').next().unwrap().to_string();
        if line.contains("admin API listening on") {
            return (bdb, last);
        }
        bdb = last;
    }
}

/// `run` is the explicit form of the default; with `--log-json` every log line is a
/// JSON object, connections and admin requests each get a span, and an admin
/// request's span holds its route template, never its credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_with_a_span_per_connection_and_per_admin_request() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("redis://{}", redis.addr()), "");
    let mut child = turnstile(&["run", "--config", cfg.to_str().unwrap(), "--log-json", "--log", "debug"])
        .spawn()
        .unwrap();
    let (bdb, admin) = listening(&mut child).await;
    let mut err = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut s = String::new();
        err.read_to_string(&mut s).await.unwrap();
        s
    });
    let mut c = Conn::connect(&bdb).await;
    assert_eq!(c.cmd(&["AUTH", APP_SECRET]).await, b"+OK\r\n");
    drop(c);
    let (status, _) = common::admin::curl(&admin, "GET", "/v1/bdbs/1", ("admin", "Admin-pw-1!"), None).await;
    assert_eq!(status, 200);
    let (status, _) =
        common::admin::curl(&admin, "GET", "/v1/nowhere?x=1", ("admin", "Admin-pw-1!"), None).await;
    assert_eq!(status, 404);
    std::process::Command::new("kill").args(["-TERM", &child.id().unwrap().to_string()]).status().unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert!(exit.success());
    let logs = logs.await.unwrap();

    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let conn = events
        .iter()
        .find(|e| e["fields"]["message"] == "connected")
        .unwrap_or_else(|| panic!("no connection event in {logs}"));
    assert_eq!(conn["span"]["name"], "conn");
    assert_eq!(conn["span"]["bdb"], 1);
    let requests: Vec<_> = events.iter().filter(|e| e["fields"]["message"] == "admin request").collect();
    assert_eq!(requests.len(), 2, "{logs}");
    assert_eq!(requests[0]["span"]["name"], "admin_request");
    assert_eq!(requests[0]["span"]["method"], "GET");
    assert_eq!(requests[0]["span"]["route"], "/v1/bdbs/{uid}");
    assert_eq!(requests[0]["fields"]["status"], 200);
    assert!(requests[0]["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(requests[1]["span"]["route"], "<unmatched>");
    assert_eq!(requests[1]["fields"]["status"], 404);
    assert!(!logs.contains("nowhere"), "a raw path was logged");
    assert!(!logs.contains("Admin-pw-1!") && !logs.contains("Basic "), "credentials were logged");
    assert!(!logs.contains(APP_SECRET));
}
