//! Authorization harness: an upstream Redis with its own password behind the real
//! binary, the admin calls that give users rules, oracle Redis users made with
//! `ACL SETUSER`, and a case runner that collects a connection's exact output.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::admin::{ADMIN, ADMIN_PW, Process};
use super::{Conn, REPLY_TIMEOUT, Redis, cmd_bytes, frame_len, show};

/// The upstream's own password (`requirepass`): turnstile's control credential.
pub const SVC: &str = "Upstream-svc-pw-7d1c9e";
/// The password of every named database user in these tests (also the oracle's).
pub const USER_PW: &str = "User-pw-41f0";
/// The database's default-user password.
pub const DEFAULT_PW: &str = "Default-pw-93ab";

/// An upstream Redis that requires `SVC`, and the turnstile binary in front of it
/// (database 1) on a fresh store. Dropped in reverse order: turnstile, then Redis.
pub struct Stack {
    pub process: Process,
    pub dir: tempfile::TempDir,
    pub upstream: Redis,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with("", "").await
    }

    /// `tables` (whole TOML tables) before the database, `bdb_extra` inside it.
    pub async fn start_with(tables: &str, bdb_extra: &str) -> Self {
        Self::over(Redis::start(&["--requirepass", SVC, "--dir", &scratch_dir()]), tables, bdb_extra).await
    }

    /// In front of `upstream`, which must require `SVC`.
    pub async fn over(upstream: Redis, tables: &str, bdb_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("redis://:{SVC}@{}", upstream.addr());
        let process = Process::start_with(dir.path(), &url, tables, bdb_extra, "").await;
        Self { process, dir, upstream }
    }

    /// Database 1's client address.
    pub fn db(&self) -> String {
        self.process.bdb(1)
    }

    /// A direct connection to the upstream, logged in with the control credential.
    pub async fn service(&self) -> Conn {
        service_conn(&self.upstream).await
    }

    /// The store document (`state.json`) as JSON.
    pub fn state(&self) -> Value {
        let bytes = std::fs::read(self.dir.path().join("data").join("state.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// An admin call that must succeed; returns its JSON body.
    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        api_ok(&self.process, method, path, body).await
    }

    /// An admin call; (status, body).
    pub async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = (!body.is_null()).then(|| body.to_string());
        self.process.curl(method, path, (ADMIN, ADMIN_PW), body.as_deref()).await
    }

    /// Sets database 1's default-user password set to `DEFAULT_PW` alone.
    pub async fn default_password(&self) {
        self.ok("PUT", "/v1/bdbs/1/passwords", json!({ "password": DEFAULT_PW })).await;
    }

    /// A role and a Redis ACL with `rule`; returns (role uid, acl uid). Not yet granted.
    pub async fn role_with_rule(&self, name: &str, rule: &str) -> (u64, u64) {
        role_with_rule(&self.process, name, rule).await
    }

    /// A database user with password `USER_PW` and these roles; returns its uid.
    pub async fn user(&self, name: &str, role_uids: &[u64]) -> u64 {
        user(&self.process, name, role_uids).await
    }

    /// Database 1's `roles_permissions`, in this order: (role uid, acl uid).
    pub async fn grant(&self, pairs: &[(u64, u64)]) {
        grant(&self.process, pairs).await
    }

    /// A connection to database 1 after `AUTH <user> USER_PW` (or `AUTH DEFAULT_PW`
    /// for "default").
    pub async fn authed(&self, user: &str) -> Conn {
        authed(&self.db(), user).await
    }
}

/// Where these tests' Redis servers keep files (`--dir`): were a denial missing,
/// `SAVE` or `BGREWRITEAOF` would write there, not into the work tree.
pub fn scratch_dir() -> String {
    let dir = std::env::temp_dir().join("turnstile-authz-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

pub async fn api_ok(p: &Process, method: &str, path: &str, body: Value) -> Value {
    let text = (!body.is_null()).then(|| body.to_string());
    let (status, v) = p.curl(method, path, (ADMIN, ADMIN_PW), text.as_deref()).await;
    assert_eq!(status, 200, "{method} {path} with {body}: {status} {v}");
    v
}

/// `Stack::role_with_rule` on any turnstile process.
pub async fn role_with_rule(p: &Process, name: &str, rule: &str) -> (u64, u64) {
    let role =
        api_ok(p, "POST", "/v1/roles", json!({"name": format!("role-{name}"), "management": "db_member"}));
    let role = role.await;
    let acl = api_ok(p, "POST", "/v1/redis_acls", json!({"name": format!("acl-{name}"), "acl": rule})).await;
    (role["uid"].as_u64().unwrap(), acl["uid"].as_u64().unwrap())
}

/// `Stack::user` on any turnstile process.
pub async fn user(p: &Process, name: &str, role_uids: &[u64]) -> u64 {
    let body = json!({
        "name": name,
        "email": format!("{name}@example.com"),
        "password": USER_PW,
        "role": "db_viewer",
        "role_uids": role_uids,
    });
    api_ok(p, "POST", "/v1/users", body).await["uid"].as_u64().unwrap()
}

/// `Stack::grant` on any turnstile process.
pub async fn grant(p: &Process, pairs: &[(u64, u64)]) {
    grant_on(p, 1, pairs).await
}

/// Database `bdb`'s `roles_permissions`, in this order: (role uid, acl uid).
pub async fn grant_on(p: &Process, bdb: u32, pairs: &[(u64, u64)]) {
    let perms: Vec<Value> = pairs.iter().map(|(r, a)| json!({"role_uid": r, "redis_acl_uid": a})).collect();
    let v = api_ok(p, "PUT", &format!("/v1/bdbs/{bdb}"), json!({ "roles_permissions": perms })).await;
    assert_eq!(v["roles_permissions"], json!(perms), "{v}");
}

/// `AUTH <user> USER_PW` (`AUTH DEFAULT_PW` for "default") on a new connection to `addr`.
pub async fn authed(addr: &str, user: &str) -> Conn {
    let mut c = Conn::connect(addr).await;
    let got = if user == "default" {
        c.cmd(&["AUTH", DEFAULT_PW]).await
    } else {
        c.cmd(&["AUTH", user, USER_PW]).await
    };
    assert_eq!(show(&got), "+OK\r\n", "AUTH as {user} on {addr}");
    c
}

/// A direct connection to `redis` as its default user (password `SVC`).
pub async fn service_conn(redis: &Redis) -> Conn {
    let mut c = redis.connect().await;
    assert_eq!(show(&c.cmd(&["AUTH", SVC]).await), "+OK\r\n", "service AUTH on {}", redis.addr());
    c
}

/// Splits a rule string into ACL SETUSER arguments: whitespace separates them,
/// except inside a selector `( … )`.
pub fn rule_args(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for ch in rule.chars() {
        match ch {
            '(' => {
                depth += 1;
                cur.push(ch);
            }
            ')' => {
                depth -= 1;
                cur.push(ch);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `rule`'s arguments with `denials` appended at the root and inside every selector:
/// the rule turnstile's upstream user gets, as the oracle needs it.
pub fn with_denials(rule: &str, denials: &[&str]) -> Vec<String> {
    let extra = denials.join(" ");
    let mut args: Vec<String> = rule_args(rule)
        .into_iter()
        .map(|a| match a.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
            Some(inner) if !extra.is_empty() => format!("({inner} {extra})"),
            _ => a,
        })
        .collect();
    args.extend(denials.iter().map(|d| d.to_string()));
    args
}

/// Creates oracle user `name` (password `USER_PW`) on `redis` through `admin`:
/// `ACL SETUSER <name> on >USER_PW <rule> <denials>` (denials in selectors too).
pub async fn oracle_user(admin: &mut Conn, name: &str, rule: &str, denials: &[&str]) {
    let pw = format!(">{USER_PW}");
    let rest = with_denials(rule, denials);
    let mut args = vec!["ACL", "SETUSER", name, "on", pw.as_str()];
    args.extend(rest.iter().map(String::as_str));
    let got = admin.cmd(&args).await;
    assert_eq!(show(&got), "+OK\r\n", "oracle ACL SETUSER {name} {rule}");
}

/// Writes `input` on a fresh connection to `addr`, reads `n` complete replies, then
/// sends QUIT and reads until the server closes (so an extra reply shows). A close,
/// hang or unparsable bytes end the output with a `<…>` marker instead of a panic.
pub async fn run(addr: &str, input: &[u8], n: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(REPLY_TIMEOUT, collect(&mut stream, input, n, &mut out)).await {
        Ok(Ok(())) => {}
        Ok(Err(marker)) => out.extend_from_slice(marker.as_bytes()),
        Err(_) => out.extend_from_slice(b"<timed out>"),
    }
    out
}

/// Reads until `n` more whole replies follow `*framed` in `out`; on a close, says
/// how many of them came.
async fn read_replies(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    framed: &mut usize,
    n: usize,
) -> Result<(), String> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < n {
        match frame_len(&out[*framed..]) {
            Ok(Some(len)) => {
                *framed += len;
                got += 1;
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(format!("<invalid RESP: {e}>")),
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(format!("after {got} of {n} replies>")),
            Ok(k) => out.extend_from_slice(&chunk[..k]),
        }
    }
    Ok(())
}

async fn collect(stream: &mut TcpStream, input: &[u8], n: usize, out: &mut Vec<u8>) -> Result<(), String> {
    stream.write_all(input).await.map_err(|e| format!("<write failed: {e}>"))?;
    read_replies(stream, out, &mut 0, n)
        .await
        .map_err(|e| if e.starts_with('<') { e } else { format!("<closed {e}") })?;
    let mut chunk = vec![0u8; 64 * 1024];
    stream.write_all(&cmd_bytes(&["QUIT"])).await.map_err(|e| format!("<QUIT not sent: {e}>"))?;
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(k) => out.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Like `run`, in steps: each step's bytes are written once the replies of the step
/// before have all come (a step of several commands is a pipeline).
pub async fn run_steps(addr: &str, steps: &[(Vec<u8>, usize)]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut out = Vec::new();
    let all = async {
        let mut framed = 0;
        let last = steps.len().saturating_sub(1);
        for (i, (input, n)) in steps.iter().enumerate() {
            if i < last {
                stream.write_all(input).await.map_err(|e| format!("<write failed: {e}>"))?;
                read_replies(&mut stream, &mut out, &mut framed, *n)
                    .await
                    .map_err(|e| if e.starts_with('<') { e } else { format!("<closed in step {i} {e}") })?;
            } else {
                let mut rest = out.split_off(framed);
                collect(&mut stream, input, *n, &mut rest).await?;
                out.extend(rest);
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(REPLY_TIMEOUT, all).await {
        Ok(Ok(())) => {}
        Ok(Err(marker)) => out.extend_from_slice(marker.as_bytes()),
        Err(_) => out.extend_from_slice(b"<timed out>"),
    }
    out
}

/// A HELLO reply's `id` (each server's own client id) becomes `ID`; nothing else changes.
pub fn normalise_ids(b: &[u8]) -> Vec<u8> {
    const FIELD: &[u8] = b"$2\r\nid\r\n:";
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(FIELD) {
            out.extend_from_slice(FIELD);
            i += FIELD.len();
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && b[i + digits..].starts_with(b"\r\n") {
                out.extend_from_slice(b"ID");
                i += digits;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Polls `check` until it returns `Some`, or fails the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the server has closed `c` (EOF or reset) within `limit`; bytes that came
/// before the close are returned with it.
pub async fn closed_within(c: &mut Conn, limit: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let r = tokio::time::timeout(limit, async {
        loop {
            match c.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => got.extend_from_slice(&chunk[..k]),
            }
        }
    })
    .await;
    if r.is_ok() { Ok(got) } else { Err(got) }
}

/// Sends one command and reads one reply, or `None` if the connection closed first.
pub async fn try_cmd(c: &mut Conn, args: &[&str]) -> Option<Vec<u8>> {
    if c.stream.write_all(&cmd_bytes(args)).await.is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    tokio::time::timeout(REPLY_TIMEOUT, async {
        loop {
            if let Ok(Some(len)) = frame_len(&buf) {
                buf.truncate(len);
                return Some(buf);
            }
            match c.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    })
    .await
    .expect("no reply in time")
}

/// Names and password hashes of the upstream's users, from `ACL LIST` over the
/// control credential: (name, every `#<sha256>` of its line).
pub async fn upstream_users(service: &mut Conn) -> Vec<(String, Vec<String>)> {
    let reply = service.cmd(&["ACL", "LIST"]).await;
    bulk_strings(&reply)
        .into_iter()
        .map(|line| {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("user"), "{line}");
            let name = words.next().unwrap().to_string();
            let hashes = words.filter_map(|w| w.strip_prefix('#')).map(str::to_string).collect();
            (name, hashes)
        })
        .collect()
}

/// The bulk strings of a flat array reply (RESP2 or RESP3), in order.
pub fn bulk_strings(reply: &[u8]) -> Vec<String> {
    let text = show(reply);
    let mut lines = text.split("\r\n");
    let head = lines.next().unwrap_or_default();
    assert!(head.starts_with('*') || head.starts_with('~'), "not an array: {text:?}");
    let mut out = Vec::new();
    while let Some(l) = lines.next() {
        if l.starts_with('$') {
            out.push(lines.next().unwrap_or_default().to_string());
        }
    }
    out
}
