//! Real clients, side by side: redis-py, the `redis` crate, node-redis, redis-cli
//! and redis-benchmark drive the real binary, each as the default user and as a named
//! user, in RESP2 and RESP3. Every run connects with the current password, the admin
//! API (over HTTPS, with curl) adds a new password and deletes the old one while the
//! client stays connected, and the client checks that the same connection (same
//! `CLIENT ID`) still works, that the new password gets in and that the old one gets
//! WRONGPASS. Client versions are printed and written to
//! `target/tmp/compat-versions.txt`.
//!
//! The scripts live in tests/clients/; scripts/compat-clients.sh installs redis-py
//! (into target/compat-venv) and node-redis (when npm is present).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::admin::*;
use common::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const USER: &str = "app-user";
/// A client step (start, a command, an exit) must finish within this.
const STEP: Duration = Duration::from_secs(60);

/// Redis, the binary in front of it, a named user, and the current passwords.
struct Fixture {
    _redis: Redis,
    _dir: tempfile::TempDir,
    p: Process,
    port: String,
    current: HashMap<Option<String>, String>,
    rotations: u32,
}

impl Fixture {
    async fn start() -> Self {
        let redis = Redis::start(&[]);
        let dir = tempfile::tempdir().unwrap();
        let p = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
        let setup = [
            ("PUT", "/v1/bdbs/1/passwords", json!({"password": "db-pw-0"})),
            ("POST", "/v1/roles", json!({"name": "app", "management": "db_viewer"})),
            ("POST", "/v1/redis_acls", json!({"name": "all", "acl": "+@all ~*"})),
            ("POST", "/v1/users", json!({"name": USER, "password": "user-pw-0", "role_uids": [1]})),
            ("PUT", "/v1/bdbs/1", json!({"roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]})),
        ];
        for (method, path, body) in setup {
            let (status, v) = p.curl(method, path, (ADMIN, ADMIN_PW), Some(&body.to_string())).await;
            assert_eq!(status, 200, "{method} {path}: {v}");
        }
        let port = p.bdb(1).rsplit(':').next().unwrap().to_string();
        let current =
            HashMap::from([(None, "db-pw-0".to_string()), (Some(USER.to_string()), "user-pw-0".to_string())]);
        Self { _redis: redis, _dir: dir, p, port, current, rotations: 0 }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn password(&self, user: Option<&str>) -> String {
        self.current[&user.map(str::to_string)].clone()
    }

    /// Adds a new password for `user` (None: the default user), then deletes the
    /// current one, through the admin API. Returns (old, new).
    async fn rotate(&mut self, user: Option<&str>) -> (String, String) {
        self.rotations += 1;
        let old = self.password(user);
        let new = format!("{}-pw-{}", if user.is_some() { "user" } else { "db" }, self.rotations);
        let (path, add, delete) = match user {
            None => ("/v1/bdbs/1/passwords", json!({"password": new}), json!({"password": old})),
            Some(u) => (
                "/v1/users/password",
                json!({"username": u, "new_password": new}),
                json!({"username": u, "old_password": old}),
            ),
        };
        for (method, body) in [("POST", add), ("DELETE", delete)] {
            let (status, v) = self.p.curl(method, path, (ADMIN, ADMIN_PW), Some(&body.to_string())).await;
            assert_eq!(status, 200, "{method} {path}: {v}");
        }
        self.current.insert(user.map(str::to_string), new.clone());
        (old, new)
    }
}

/// Appends `line` to the versions file and prints it.
fn record_version(line: &str) {
    use std::io::Write;
    eprintln!("client version: {line}");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compat-versions.txt");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}

fn combinations() -> [(Option<&'static str>, u8); 4] {
    [(None, 2), (None, 3), (Some(USER), 2), (Some(USER), 3)]
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Option<String> {
    tokio::time::timeout(STEP, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap()
}

/// The stderr of a failed child, for the assertion message.
async fn stderr_of(child: &mut Child) -> String {
    let _ = child.start_kill();
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(STEP, e.read_to_string(&mut s)).await;
    }
    s
}

/// Runs one client script through the READY / ROTATED / OK exchange for every
/// combination of user and protocol; returns the version line it reported.
async fn drive_script(fx: &mut Fixture, program: &str, script: PathBuf, name: &str) -> String {
    let mut version = String::new();
    for (user, proto) in combinations() {
        let what = format!("{name} as {} in RESP{proto}", user.unwrap_or("default"));
        let mut child = Command::new(program)
            .arg(&script)
            .env("TS_HOST", "127.0.0.1")
            .env("TS_PORT", &fx.port)
            .env("TS_USER", user.unwrap_or(""))
            .env("TS_PROTO", proto.to_string())
            .env("TS_KEY", format!("compat:{name}:{}:{proto}", user.unwrap_or("default")))
            .env("TS_OLD", fx.password(user))
            .env("TS_NEW", format!("{}-pw-{}", if user.is_some() { "user" } else { "db" }, fx.rotations + 1))
            .piped()
            .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = next_line(&mut lines, &what).await;
        let Some(v) = ready.as_deref().and_then(|l| l.strip_prefix("READY ")) else {
            panic!("{what}: expected READY, got {ready:?}; stderr:\n{}", stderr_of(&mut child).await);
        };
        version = v.to_string();
        fx.rotate(user).await;
        child.stdin.as_mut().unwrap().write_all(b"ROTATED\n").await.unwrap();
        let done = next_line(&mut lines, &what).await;
        if done.as_deref() != Some("OK") {
            panic!("{what}: expected OK, got {done:?}; stderr:\n{}", stderr_of(&mut child).await);
        }
        let status = tokio::time::timeout(STEP, child.wait()).await.expect("client did not exit").unwrap();
        assert!(status.success(), "{what}: exit {status:?}");
    }
    version
}

/// Runs a client with its three standard streams piped, killed if the test ends first.
trait Piped {
    fn piped(&mut self) -> std::io::Result<Child>;
}

impl Piped for Command {
    fn piped(&mut self) -> std::io::Result<Child> {
        self.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn()
    }
}

/// The target directory (where scripts/compat-clients.sh puts the venv).
fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf()
}

/// The Python with redis-py (scripts/compat-clients.sh makes it), or
/// `TURNSTILE_COMPAT_PYTHON`.
fn python() -> PathBuf {
    let python = std::env::var("TURNSTILE_COMPAT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("compat-venv/bin/python"));
    assert!(python.exists(), "{} is missing: run scripts/compat-clients.sh", python.display());
    python
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py() {
    let python = python();
    let mut fx = Fixture::start().await;
    let version =
        drive_script(&mut fx, python.to_str().unwrap(), clients_dir().join("redis_py.py"), "redis-py").await;
    assert!(version.starts_with("redis-py "), "{version}");
    record_version(&version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis() {
    let dir = clients_dir();
    let installed = dir.join("node_modules/redis/package.json").exists();
    let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !(installed && node) {
        // Installed by scripts/compat-clients.sh only where npm is present.
        eprintln!(
            "node-redis SKIPPED: node or tests/clients/node_modules missing (scripts/compat-clients.sh)"
        );
        record_version("node-redis SKIPPED (not installed)");
        return;
    }
    let mut fx = Fixture::start().await;
    let version = drive_script(&mut fx, "node", dir.join("node_redis.js"), "node-redis").await;
    assert!(version.starts_with("node-redis "), "{version}");
    record_version(&version);
}

/// The version of the `redis` crate this test is built with, from Cargo.lock.
fn redis_crate_version() -> String {
    let lock = include_str!("../Cargo.lock");
    let at = lock.find("\nname = \"redis\"\nversion = \"").expect("redis in Cargo.lock");
    let rest = &lock[at + "\nname = \"redis\"\nversion = \"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn crate_connect(
    addr: &str,
    user: Option<&str>,
    pw: &str,
    proto: u8,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let proto = if proto == 3 { "?protocol=resp3" } else { "" };
    let url = format!("redis://{}:{pw}@{addr}/{proto}", user.unwrap_or(""));
    redis::Client::open(url)?.get_multiplexed_async_connection().await
}

async fn crate_check(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
    value: &str,
    user: Option<&str>,
    proto: u8,
) {
    let () = redis::cmd("SET").arg(key).arg(value).query_async(c).await.unwrap();
    let got: String = redis::cmd("GET").arg(key).query_async(c).await.unwrap();
    assert_eq!(got, value);
    let whoami: String = redis::cmd("ACL").arg("WHOAMI").query_async(c).await.unwrap();
    assert_eq!(whoami, user.unwrap_or("default"));
    let info: String = redis::cmd("CLIENT").arg("INFO").query_async(c).await.unwrap();
    assert!(info.contains(&format!("resp={proto}")), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate() {
    let mut fx = Fixture::start().await;
    let addr = fx.addr();
    for (user, proto) in combinations() {
        let key = format!("compat:crate:{}:{proto}", user.unwrap_or("default"));
        let mut c = crate_connect(&addr, user, &fx.password(user), proto).await.unwrap();
        crate_check(&mut c, &key, "before", user, proto).await;
        let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut c).await.unwrap();
        let (old, new) = fx.rotate(user).await;
        crate_check(&mut c, &key, "after", user, proto).await;
        let same: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut c).await.unwrap();
        assert_eq!(same, id, "the connection was re-established");
        let mut fresh = crate_connect(&addr, user, &new, proto).await.unwrap();
        crate_check(&mut fresh, &key, "new", user, proto).await;
        let Err(err) = crate_connect(&addr, user, &old, proto).await else {
            panic!("the removed password still works");
        };
        if proto == 2 {
            // The crate turns WRONGPASS to AUTH into this kind, dropping the text.
            assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
        } else {
            // WRONGPASS to HELLO … AUTH comes through as the server's error.
            assert_eq!(err.code(), Some("WRONGPASS"), "{err}");
            assert!(err.to_string().contains("invalid username-password pair"), "{err}");
        }
    }
    record_version(&format!("redis crate {}", redis_crate_version()));
}

/// Arguments common to redis-cli and redis-benchmark: address, user, password, protocol.
fn tool_args(fx: &Fixture, user: Option<&str>, pw: &str, proto: u8) -> Vec<String> {
    let mut a = vec!["-h".into(), "127.0.0.1".into(), "-p".into(), fx.port.clone(), "-a".into(), pw.into()];
    if let Some(u) = user {
        a.extend(["--user".into(), u.into()]);
    }
    if proto == 3 {
        a.push("-3".into());
    }
    a
}

async fn tool_version(tool: &str) -> String {
    let out = Command::new(tool).arg("--version").output().await.unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// redis-cli: one long-lived session fed through stdin (redis-cli answers each line
/// as it comes), plus one-shot runs with the new and the old password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli() {
    let mut fx = Fixture::start().await;
    for (user, proto) in combinations() {
        let what = format!("redis-cli as {} in RESP{proto}", user.unwrap_or("default"));
        let key = format!("compat:cli:{}:{proto}", user.unwrap_or("default"));
        let mut child = Command::new("redis-cli")
            .args(tool_args(&fx, user, &fx.password(user), proto))
            .arg("--no-auth-warning")
            .piped()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ask = async |cmd: &str| {
            stdin.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
            next_line(&mut lines, &what).await.unwrap_or_else(|| panic!("{what}: redis-cli exited at {cmd}"))
        };
        assert_eq!(ask(&format!("SET {key} before")).await, "OK", "{what}");
        assert_eq!(ask("ACL WHOAMI").await, user.unwrap_or("default"), "{what}");
        let info = ask("CLIENT INFO").await;
        assert!(info.contains(&format!("resp={proto}")), "{what}: {info}");
        let id = ask("CLIENT ID").await;
        assert!(id.parse::<u64>().is_ok(), "{what}: {id}");
        let (old, new) = fx.rotate(user).await;
        assert_eq!(ask("CLIENT ID").await, id, "{what}: the session reconnected");
        assert_eq!(ask(&format!("GET {key}")).await, "before", "{what}");
        drop(stdin);
        let status = tokio::time::timeout(STEP, child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{what}: {status:?}");

        let run = |pw: String| {
            let args = tool_args(&fx, user, &pw, proto);
            async move {
                Command::new("redis-cli")
                    .args(args)
                    .args(["--no-auth-warning", "ACL", "WHOAMI"])
                    .output()
                    .await
                    .unwrap()
            }
        };
        let out = run(new).await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}\n", user.unwrap_or("default")),
            "{what}"
        );
        let out = run(old).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("AUTH failed: WRONGPASS invalid username-password pair"), "{what}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(user.unwrap_or("default")), "{what}");
    }
    record_version(&tool_version("redis-cli").await);
}

/// The requests per second redis-benchmark -q reports for each test.
fn rps(output: &str) -> Vec<(String, f64)> {
    output
        .split(['\r', '\n'])
        .filter_map(|seg| {
            let (test, rest) = seg.trim().split_once(": ")?;
            // "SET: 12422.36 requests per second, p50=…"; progress lines ("SET: rps=…") do not match.
            let (n, _) = rest.split_once(" requests per second")?;
            Some((test.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

async fn benchmark(fx: &Fixture, user: Option<&str>, pw: &str, proto: u8) -> std::process::Output {
    let run = Command::new("redis-benchmark")
        .args(tool_args(fx, user, pw, proto))
        .args(["-t", "set,get", "-n", "2000", "-c", "4", "-q"])
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(STEP, run).await.expect("redis-benchmark hung").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark() {
    let mut fx = Fixture::start().await;
    for (user, proto) in combinations() {
        let what = format!("redis-benchmark as {} in RESP{proto}", user.unwrap_or("default"));
        for round in ["before", "after"] {
            let out = benchmark(&fx, user, &fx.password(user), proto).await;
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{what} {round}: {text}{}", String::from_utf8_lossy(&out.stderr));
            let results = rps(&text);
            let tests: Vec<&str> = results.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(tests, ["SET", "GET"], "{what} {round}: {text}");
            assert!(results.iter().all(|(_, r)| *r > 0.0), "{what} {round}: {results:?}");
            eprintln!("{what} {round} the rotation: {results:?}");
            if round == "before" {
                let (old, _) = fx.rotate(user).await;
                let out = benchmark(&fx, user, &old, proto).await;
                assert!(!out.status.success(), "{what}: the removed password still works");
                let all = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(all.contains("WRONGPASS invalid username-password pair"), "{what}: {all}");
            }
        }
    }
    record_version(&tool_version("redis-benchmark").await);
}

/// redis-py with its defaults (RESP3 via `HELLO 3`, then `CLIENT MAINT_NOTIFICATIONS`
/// and `CLIENT SETINFO` on connect) stays on turnstile's shared upstream connections:
/// 20 clients doing GET/SET hold at most a couple of connections to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_clients_share_upstream_connections() {
    let python = python();
    let fx = Fixture::start().await;
    let script = r#"
import os, sys, redis
clients = [redis.Redis(host="127.0.0.1", port=int(os.environ["TS_PORT"]), password=os.environ["TS_PW"],
                       single_connection_client=True, socket_timeout=10) for _ in range(20)]
for i, c in enumerate(clients):
    assert c.set(f"share:{i}", i) is True
    assert c.get(f"share:{i}") == str(i).encode()
    assert c.hset("share:h", f"f{i}", i) in (0, 1)
assert clients[0].hgetall("share:h")[b"f3"] == b"3"
print("READY", flush=True)
sys.stdin.readline()
"#;
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(script)
        .env("TS_PORT", &fx.port)
        .env("TS_PW", fx.password(None))
        .piped()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = next_line(&mut lines, "redis-py clients").await;
    if ready.as_deref() != Some("READY") {
        panic!("expected READY, got {ready:?}; stderr:\n{}", stderr_of(&mut child).await);
    }
    let mut inspector = fx._redis.connect().await;
    let info = show(&inspector.cmd(&["INFO", "clients"]).await);
    let line = info.lines().find(|l| l.starts_with("connected_clients:")).unwrap();
    let n: usize = line["connected_clients:".len()..].trim().parse().unwrap();
    // A RESP3 lane, perhaps a RESP2 one (the admin setup), and this inspector.
    assert!(n <= 3, "20 redis-py clients hold {n} connections to Redis (inspector included)");
    child.stdin.as_mut().unwrap().write_all(b"\n").await.unwrap();
    let status = tokio::time::timeout(STEP, child.wait()).await.expect("client did not exit").unwrap();
    assert!(status.success(), "exit {status:?}");
}
