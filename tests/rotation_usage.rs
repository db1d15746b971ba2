//! Rotation you can see (issue 13), against real Redis and the real binary: which
//! password each connection uses (redis-py, redis-cli, raw RESP), the guard on
//! deletion, deletion by id, `expire_old_after` across a restart and a `kill -9`,
//! the per-password metrics and events, and the `turnstile passwords` command.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::admin::*;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const AS_ADMIN: (&str, &str) = (ADMIN, ADMIN_PW);
const OK: &[u8] = b"+OK\r\n";
/// Longest any polled condition may take.
const DEADLINE: Duration = Duration::from_secs(15);

async fn start() -> (Redis, tempfile::TempDir, Process) {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let process = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    (redis, dir, process)
}

async fn call(p: &Process, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then(|| body.to_string());
    p.curl(method, path, AS_ADMIN, body.as_deref()).await
}

async fn ok(p: &Process, method: &str, path: &str, body: Value) -> Value {
    let (status, v) = call(p, method, path, body.clone()).await;
    assert_eq!(status, 200, "{method} {path} {body}: {v}");
    v
}

async fn passwords(p: &Process) -> Vec<Value> {
    ok(p, "GET", "/v1/bdbs/1/passwords", Value::Null).await["passwords"].as_array().unwrap().clone()
}

/// The entry with `id` in the GET.
async fn entry(p: &Process, id: &str) -> Value {
    passwords(p).await.into_iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("no entry {id}"))
}

/// Polls `check` on the GET of database 1 until it holds, or fails after DEADLINE.
async fn until(p: &Process, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let v = passwords(p).await;
        if check(&v) {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "{what}: never happened; last GET: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_id<'a>(entries: &'a [Value], id: &str) -> &'a Value {
    entries.iter().find(|e| e["id"] == id).unwrap()
}

async fn authed(addr: &str, pw: &str) -> Conn {
    let mut c = Conn::connect(addr).await;
    assert_eq!(c.cmd(&["AUTH", pw]).await, OK, "AUTH {pw}");
    c
}

async fn auth_reply(addr: &str, pw: &str) -> Vec<u8> {
    Conn::connect(addr).await.cmd(&["AUTH", pw]).await
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn python() -> PathBuf {
    let python = std::env::var("TURNSTILE_COMPAT_PYTHON")
        .map(PathBuf::from)
        // Where scripts/compat-clients.sh makes it (the target directory), as in tests/compat.rs.
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("compat-venv/bin/python")
        });
    assert!(python.exists(), "{} is missing: run scripts/compat-clients.sh", python.display());
    python
}

/// A redis-py client that connects with `password` and name `name`, then holds its
/// connection until its stdin closes.
async fn redis_py(addr: &str, password: &str, name: &str) -> tokio::process::Child {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "import sys, redis\n\
         r = redis.Redis(host='{host}', port={port}, password=sys.argv[1], client_name='{name}', single_connection_client=True)\n\
         assert r.ping()\n\
         print('ready', flush=True)\n\
         sys.stdin.read()\n"
    );
    let mut child = tokio::process::Command::new(python())
        .args(["-c", &script, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line()).await.expect("redis-py did not connect");
    assert_eq!(line.unwrap().as_deref(), Some("ready"));
    child
}

/// redis-cli with `password`, repeating `CLIENT SETNAME name` on one connection.
fn redis_cli(addr: &str, password: &str, name: &str) -> tokio::process::Child {
    let (host, port) = addr.rsplit_once(':').unwrap();
    tokio::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port, "-a", password, "--no-auth-warning", "-r", "-1", "-i", "0.2"])
        .args(["CLIENT", "SETNAME", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_shows_who_uses_which_password() {
    let (_redis, _dir, mut p) = start().await;
    let addr = p.bdb(1);
    ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({"password": "Old-rotation-pw-1"})).await;
    ok(
        &p,
        "POST",
        "/v1/bdbs/1/passwords",
        json!({"password": "New-rotation-pw-2", "label": "deploy-2026-12"}),
    )
    .await;
    let v = passwords(&p).await;
    assert_eq!(v.len(), 2, "{v:?}");
    let (old, new) = (v[0]["id"].as_str().unwrap().to_string(), v[1]["id"].as_str().unwrap().to_string());
    assert_ne!(old, new);
    assert_eq!(v[1]["label"], "deploy-2026-12");
    assert_eq!(v[1]["creator"], ADMIN);
    assert!(v[1]["created"].as_str().unwrap().ends_with('Z'));
    for e in &v {
        assert_eq!((e["connections"].as_u64(), e["last_used"].is_null()), (Some(0), true), "{e}");
    }

    // redis-py on the old password, redis-cli on the new one.
    let mut py = redis_py(&addr, "Old-rotation-pw-1", "billing-old").await;
    let mut cli = redis_cli(&addr, "New-rotation-pw-2", "cli-new");
    let v = until(&p, "each client counted on its own password, with its names", |v| {
        let (o, n) = (by_id(v, &old), by_id(v, &new));
        o["connections"] == 1
            && n["connections"] == 1
            && o["clients"][0]["name"] == "billing-old"
            && n["clients"][0]["name"] == "cli-new"
    })
    .await;
    let (o, n) = (by_id(&v, &old), by_id(&v, &new));
    // (redis-py sends CLIENT SETINFO only to Redis 7.2 and later: see the guard test.)
    assert!(o["clients"][0]["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{o}");
    assert!(n["clients"][0]["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{n}");
    assert_eq!(o["clients"].as_array().unwrap().len(), 1);
    assert!(!o["last_used"].is_null() && !n["last_used"].is_null());

    // AUTHs with the new password move its last_used, not the old one's.
    let old_last = o["last_used"].clone();
    let new_last = n["last_used"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        drop(authed(&addr, "New-rotation-pw-2").await);
        let e = entry(&p, &new).await;
        if e["last_used"].as_str().unwrap() > new_last.as_str() {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "last_used of the new password never moved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entry(&p, &old).await["last_used"], old_last, "the old password's last_used moved");

    // The metrics say the same, with bounded labels (database and id).
    let (_, metrics) = p.curl("GET", "/metrics", AS_ADMIN, None).await;
    let text = metrics.as_str().map(str::to_string).unwrap_or_else(|| metrics.to_string());
    assert!(text.contains(&format!("turnstile_password_connections{{bdb=\"1\",id=\"{old}\"}} 1")), "{text}");
    assert!(text.contains(&format!("turnstile_password_connections{{bdb=\"1\",id=\"{new}\"}} 1")), "{text}");
    assert!(
        text.contains(&format!("turnstile_password_last_used_timestamp_seconds{{bdb=\"1\",id=\"{new}\"}} "))
    );

    // The old password's clients leave: its count drops to zero, the new one's stays.
    py.stdin.take().unwrap().shutdown().await.unwrap();
    let _ = py.wait().await;
    let v =
        until(&p, "the old password's connections drop to 0", |v| by_id(v, &old)["connections"] == 0).await;
    assert_eq!(by_id(&v, &old)["clients"], json!([]));
    assert_eq!(by_id(&v, &new)["connections"], 1);
    cli.kill().await.unwrap();
    until(&p, "the new password's connections drop to 0", |v| by_id(v, &new)["connections"] == 0).await;

    // The first AUTH with each password is in the event log (once the usage is
    // flushed, within a few seconds), with the client's address.
    let started = Instant::now();
    let firsts = loop {
        let logs = ok(&p, "GET", "/v1/logs", Value::Null).await;
        let firsts: Vec<Value> =
            logs.as_array().unwrap().iter().filter(|e| e["type"] == "password_first_used").cloned().collect();
        if firsts.len() >= 2 {
            break firsts;
        }
        assert!(started.elapsed() < DEADLINE, "no password_first_used events: {logs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(firsts.len(), 2, "{firsts:?}");
    assert!(firsts.iter().any(|e| e["password_ids"] == json!([old]) && e["address"] == "127.0.0.1"));
    assert!(firsts.iter().any(|e| e["password_ids"] == json!([new]) && e["bdb_uid"] == 1));

    // last_used is durable: a restart keeps it (and the ids and labels).
    let before = passwords(&p).await;
    p = p.stop_and_restart().await;
    let after = passwords(&p).await;
    for (b, a) in before.iter().zip(&after) {
        for k in ["id", "label", "created", "creator", "last_used"] {
            assert_eq!(b[k], a[k], "{k} changed across a restart");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_while_in_use_and_ids_delete() {
    let (_redis, _dir, p) = start().await;
    let addr = p.bdb(1);
    ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({"password": "Guarded-old-pw"})).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", json!({"password": "Guarded-new-pw"})).await;
    let v = passwords(&p).await;
    let old = v[0]["id"].as_str().unwrap().to_string();
    let mut holder = authed(&addr, "Guarded-old-pw").await;
    // Redis 7.0 refuses SETINFO (7.2 has it); turnstile shows what the client said.
    holder.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "guard-lib"]).await;

    // In use: refused with the usage, by id and by password alike.
    for target in [json!({"id": old}), json!({"password": "Guarded-old-pw"})] {
        let mut body = target.clone();
        body["unless_used_within"] = json!(3600);
        let (status, v) = call(&p, "DELETE", "/v1/bdbs/1/passwords", body).await;
        assert_eq!(status, 409, "{v}");
        assert_eq!(v["error_code"], "password_in_use");
        assert_eq!(v["usage"][0]["id"], old.as_str(), "{v}");
        assert_eq!(v["usage"][0]["connections"], 1, "{v}");
        assert!(v["usage"][0]["clients"][0]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(v["usage"][0]["clients"][0]["lib_name"], "guard-lib", "{v}");
        assert!(!v["usage"][0]["last_used"].is_null());
    }
    assert_eq!(passwords(&p).await.len(), 2, "a refused delete deleted");

    // Disconnected but used within the window: still refused.
    holder.send(&cmd_bytes(&["QUIT"])).await;
    holder.read_to_close().await;
    until(&p, "the holder is uncounted", |v| by_id(v, &old)["connections"] == 0).await;
    let (status, v) =
        call(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"id": old, "unless_used_within": 3600})).await;
    assert_eq!((status, v["usage"][0]["connections"].as_u64()), (409, Some(0)), "{v}");

    // Unused for a 1 s window: deleted (retried until the window has passed).
    let started = Instant::now();
    loop {
        let (status, v) =
            call(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"id": old, "unless_used_within": 1})).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 409, "{v}");
        assert!(started.elapsed() < DEADLINE, "never deleted: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(auth_reply(&addr, "Guarded-old-pw").await.starts_with(b"-WRONGPASS"));
    assert_eq!(auth_reply(&addr, "Guarded-new-pw").await, OK);

    // Delete by id, without the old secret; unknown ids and bad bodies refused.
    ok(&p, "POST", "/v1/bdbs/1/passwords", json!({"password": "Guarded-third-pw"})).await;
    let third = passwords(&p).await[1]["id"].as_str().unwrap().to_string();
    ok(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"id": third})).await;
    assert!(auth_reply(&addr, "Guarded-third-pw").await.starts_with(b"-WRONGPASS"));
    let (status, v) = call(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"id": "pw-0000000000000000"})).await;
    assert_eq!((status, v["error_code"].as_str()), (406, Some("password_not_found")), "{v}");
    let last = passwords(&p).await[0]["id"].as_str().unwrap().to_string();
    let (status, v) = call(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"id": last})).await;
    assert_eq!((status, v["error_code"].as_str()), (406, Some("cannot_delete_last_password")), "{v}");
    for bad in [
        json!({"id": last, "password": "Guarded-new-pw"}),
        json!({"password": "x-Guarded-4", "unless_used_within": 5}),
        json!({"id": last, "expire_old_after": 5}),
    ] {
        let method = if bad.get("unless_used_within").is_some() { "POST" } else { "DELETE" };
        let (status, v) = call(&p, method, "/v1/bdbs/1/passwords", bad.clone()).await;
        assert_eq!(status, 400, "{method} {bad}: {v}");
    }

    // Users: the same GET and delete by id.
    let user = ok(
        &p,
        "POST",
        "/v1/users",
        json!({"name": "dana", "email": "dana@example.com", "password": "Dana-pw-1"}),
    )
    .await;
    let uid = user["uid"].as_u64().unwrap();
    ok(
        &p,
        "POST",
        "/v1/users/password",
        json!({"username": "dana", "new_password": "Dana-pw-2", "label": "q1"}),
    )
    .await;
    let v = ok(&p, "GET", &format!("/v1/users/{uid}/passwords"), Value::Null).await;
    let entries = v["passwords"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{v}");
    assert_eq!((entries[1]["label"].as_str(), entries[1]["creator"].as_str()), (Some("q1"), Some(ADMIN)));
    let first = entries[0]["id"].as_str().unwrap();
    ok(&p, "DELETE", "/v1/users/password", json!({"username": "dana", "id": first})).await;
    let v = ok(&p, "GET", &format!("/v1/users/{uid}/passwords"), Value::Null).await;
    assert_eq!(v["passwords"].as_array().unwrap().len(), 1, "{v}");
    let (status, _) = call(&p, "GET", "/v1/users/999/passwords", Value::Null).await;
    assert_eq!(status, 404);
}

/// Polls AUTH with `old` until it is refused; returns when (Unix ms).
async fn refused_at(addr: &str, old: &str, due_ms: u64) -> u64 {
    loop {
        let reply = auth_reply(addr, old).await;
        let t = now_ms();
        if reply.starts_with(b"-WRONGPASS") {
            return t;
        }
        assert_eq!(reply, OK);
        assert!(t <= due_ms + 1000, "{old} still worked {} ms after it was due", t - due_ms);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn due_of(v: &Value) -> u64 {
    // The GET shows the due time rounded up to the second.
    let at = v["expiry"]["at"].as_str().unwrap();
    turnstile::time::parse_iso8601(at).unwrap() * 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_old_after_fires_on_time_across_restarts_and_kill_9() {
    let (_redis, _dir, mut p) = start().await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({"password": "Expiring-pw-0"})).await;

    // A kill -9, then a graceful restart, between the POST and the due time.
    for (i, kill) in [(1, true), (2, false)] {
        let old = format!("Expiring-pw-{}", i - 1);
        let new = format!("Expiring-pw-{i}");
        let before = passwords(&p).await;
        let posted = now_ms();
        ok(&p, "POST", "/v1/bdbs/1/passwords", json!({"password": new, "expire_old_after": 4})).await;
        let v = ok(&p, "GET", "/v1/bdbs/1/passwords", Value::Null).await;
        let due = due_of(&v);
        assert!(due >= posted + 4000 && due <= now_ms() + 5000, "due {due}, posted {posted}");
        let old_id = before[0]["id"].as_str().unwrap();
        assert_eq!(v["expiry"]["remove"], json!([old_id]), "{v}");
        assert_eq!(v["passwords"][0]["expires"], v["expiry"]["at"]);
        assert!(v["passwords"][1]["expires"].is_null());
        p = if kill { p.kill9_and_restart().await } else { p.stop_and_restart().await };
        let addr = p.bdb(1);
        let v = ok(&p, "GET", "/v1/bdbs/1/passwords", Value::Null).await;
        assert_eq!(due_of(&v), due, "the schedule survived the restart");
        let t = refused_at(&addr, &old, due).await;
        // Due is rounded up to the second: the removal may come up to 1 s before it.
        assert!(t + 2000 >= due, "{old} was refused {} ms before it was due", due - t);
        assert_eq!(auth_reply(&addr, &new).await, OK);
        let v = ok(&p, "GET", "/v1/bdbs/1/passwords", Value::Null).await;
        assert!(v["expiry"].is_null(), "{v}");
        assert_eq!(v["passwords"].as_array().unwrap().len(), 1);
    }
    let logs = ok(&p, "GET", "/v1/logs", Value::Null).await;
    let kinds: Vec<&str> = logs.as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "passwords_expired").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "password_expiry_scheduled").count(), 2, "{kinds:?}");

    // With disconnect_clients_on_password_removal, exactly the old password's
    // connections close when it fires.
    ok(&p, "PUT", "/v1/bdbs/1", json!({"disconnect_clients_on_password_removal": true})).await;
    let addr = p.bdb(1);
    let mut on_old = [authed(&addr, "Expiring-pw-2").await, authed(&addr, "Expiring-pw-2").await];
    ok(&p, "POST", "/v1/bdbs/1/passwords", json!({"password": "Expiring-pw-3", "expire_old_after": 2})).await;
    let mut on_new = authed(&addr, "Expiring-pw-3").await;
    let due = due_of(&ok(&p, "GET", "/v1/bdbs/1/passwords", Value::Null).await);
    for c in &mut on_old {
        let rest = c.read_to_close().await;
        assert!(rest.is_empty(), "{:?}", show(&rest));
        assert!(now_ms() <= due + 1000, "closed {} ms late", now_ms().saturating_sub(due));
    }
    assert_eq!(on_new.cmd(&["PING"]).await, b"+PONG\r\n", "the new password's connection stays");

    // Cancelled (DELETE cancel_expiry; PUT replaces the set): nothing fires.
    ok(&p, "POST", "/v1/bdbs/1/passwords", json!({"password": "Expiring-pw-4", "expire_old_after": 1})).await;
    let due = due_of(&ok(&p, "GET", "/v1/bdbs/1/passwords", Value::Null).await);
    ok(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"cancel_expiry": true})).await;
    let (status, v) = call(&p, "DELETE", "/v1/bdbs/1/passwords", json!({"cancel_expiry": true})).await;
    assert_eq!((status, v["error_code"].as_str()), (406, Some("no_scheduled_expiry")), "{v}");
    // Absence can only be seen by waiting past the due time.
    while now_ms() < due + 1500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(auth_reply(&addr, "Expiring-pw-3").await, OK, "a cancelled expiry fired");
    assert_eq!(on_new.cmd(&["PING"]).await, b"+PONG\r\n");
    ok(&p, "POST", "/v1/bdbs/1/passwords", json!({"password": "Expiring-pw-5", "expire_old_after": 3600}))
        .await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({"password": "Expiring-pw-6"})).await;
    let v = ok(&p, "GET", "/v1/bdbs/1/passwords", Value::Null).await;
    assert!(v["expiry"].is_null() && v["passwords"].as_array().unwrap().len() == 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reaches_the_store_once_per_interval_under_auth_churn() {
    let (_redis, _dir, p) = start().await;
    let addr = p.bdb(1);
    ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({"password": "Churn-pw-1"})).await;
    let writes = async |p: &Process| -> u64 {
        let (_, m) = p.curl("GET", "/metrics", AS_ADMIN, None).await;
        let text = m.as_str().unwrap().to_string();
        let line = text.lines().find(|l| l.starts_with("turnstile_store_writes_total ")).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let before = writes(&p).await;
    // Pipelined AUTHs on 8 connections, as fast as they go, for 11 s (~10k/s in a
    // debug build on a loaded 2-core machine; the rate is printed, not asserted).
    let stop = now_ms() + 11_000;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(&addr).await;
            let batch: Vec<u8> = cmd_bytes(&["AUTH", "Churn-pw-1"]).repeat(200);
            let mut n = 0u64;
            while now_ms() < stop {
                c.send(&batch).await;
                let replies = c.replies(200).await;
                assert_eq!(replies, OK.repeat(200));
                n += 200;
            }
            n
        }));
    }
    let mut auths = 0;
    for t in tasks {
        auths += t.await.unwrap();
    }
    let written = writes(&p).await - before;
    let rate = auths / 11;
    eprintln!("{auths} AUTHs in 11 s ({rate}/s); {written} store writes");
    // A flush every 5 s: at most 3 in 11 s (one more if a boundary falls just so),
    // and at least one, since the usage changed.
    assert!((1..=3).contains(&written), "{written} store writes for {auths} AUTHs");
    assert!(!passwords(&p).await[0]["last_used"].is_null());
}

/// `turnstile passwords …` with the admin API's own certificate.
fn cli(p: &Process, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"));
    c.arg("passwords")
        .args(["--url", &p.admin_url, "--cacert"])
        .arg(p.dir.join("data/tls/cert.pem"))
        .args(args)
        .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
        .env_remove("TURNSTILE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

async fn run(p: &Process, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(DEADLINE, cli(p, args).output()).await.expect("the command hung").unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passwords_command_lists_adds_and_deletes_with_the_guard() {
    let (_redis, _dir, p) = start().await;
    let addr = p.bdb(1);
    ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({"password": "Cli-old-pw-1"})).await;
    let (ok1, out, err) = run(&p, &["bdb", "1", "add", "--label", "from-cli"]).await;
    assert!(ok1, "{out}\n{err}");
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    let (id, password) = (field("id:"), field("password:"));
    assert!(id.starts_with("pw-") && password.len() >= 32, "{out}");
    assert_eq!(entry(&p, &id).await["label"], "from-cli");
    let mut c = authed(&addr, &password).await;
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "cli-test"]).await, OK);

    let (ok2, listed, err) = run(&p, &["bdb", "1", "list"]).await;
    assert!(ok2, "{err}");
    assert!(
        listed.contains(&id) && listed.contains("from-cli") && listed.contains("name=cli-test"),
        "{listed}"
    );
    assert!(!listed.contains(&password) && !listed.contains("$argon2"), "{listed}");
    let (_, json_out, _) = run(&p, &["bdb", "1", "list", "--json"]).await;
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["passwords"].as_array().unwrap().len(), 2);

    // The guard: refused while the generated password holds a connection.
    let (ok3, out, err) = run(&p, &["bdb", "1", "delete", "--id", &id, "--unless-used-within", "60"]).await;
    assert!(!ok3, "{out}");
    assert!(err.contains("password_in_use") && err.contains(&id), "{err}");
    assert_eq!(passwords(&p).await.len(), 2);
    // Deleting the old one by id works.
    let old = passwords(&p).await[0]["id"].as_str().unwrap().to_string();
    let (ok4, out, err) = run(&p, &["bdb", "1", "delete", "--id", &old, "--unless-used-within", "60"]).await;
    assert!(ok4, "{out}\n{err}");
    assert!(auth_reply(&addr, "Cli-old-pw-1").await.starts_with(b"-WRONGPASS"));
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");

    // A user's set, by uid; a wrong admin password is refused.
    let user = ok(
        &p,
        "POST",
        "/v1/users",
        json!({"name": "erin", "email": "erin@example.com", "password": "Erin-pw-1"}),
    )
    .await;
    let uid = user["uid"].to_string();
    let (ok5, out, err) = run(&p, &["user", &uid, "add", "--expire-old-after", "3600"]).await;
    assert!(ok5, "{out}\n{err}");
    let v = ok(&p, "GET", &format!("/v1/users/{uid}/passwords"), Value::Null).await;
    assert_eq!(v["passwords"].as_array().unwrap().len(), 2);
    assert!(!v["expiry"].is_null(), "{v}");
    let out = cli(&p, &["bdb", "1", "list"]).env("TURNSTILE_ADMIN_PASSWORD", "wrong").output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
