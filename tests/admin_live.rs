//! The admin API as an operator uses it: the real binary, HTTPS with curl, the seeds' own request bodies, and every change checked by real `AUTH`s on the database ports.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OK: &[u8] = b"+OK\r\n";
const PONG: &[u8] = b"+PONG\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const AS_ADMIN: (&str, &str) = (ADMIN, ADMIN_PW);
/// "Promptly": a closed connection must see EOF well within this.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A Redis and the real turnstile binary in front of it (database uid 1), on a
/// fresh store. Dropped in reverse order: the process, its directory, then Redis.
async fn start() -> (Redis, tempfile::TempDir, Process) {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let process = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    (redis, dir, process)
}

/// An admin call that must answer 200; returns its JSON body.
async fn ok(p: &Process, method: &str, path: &str, body: &str) -> Value {
    let (status, v) = p.curl(method, path, AS_ADMIN, Some(body)).await;
    assert_eq!(status, 200, "{method} {path} with {body}: {v}");
    v
}

/// A GET as the admin that must answer 200.
async fn get(p: &Process, path: &str) -> Value {
    let (status, v) = p.curl("GET", path, AS_ADMIN, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// An admin call that must be refused with `status`; returns the RS error body
/// after checking its shape (`error_code`, and `description` = `message`).
async fn refused(p: &Process, method: &str, path: &str, body: &str, status: u16) -> Value {
    let (got, v) = p.curl(method, path, AS_ADMIN, Some(body)).await;
    assert_eq!(got, status, "{method} {path} with {body}: {v}");
    assert!(v["error_code"].as_str().is_some_and(|c| !c.is_empty()), "no error_code: {v}");
    assert!(v["description"].as_str().is_some_and(|d| !d.is_empty()), "no description: {v}");
    assert_eq!(v["message"], v["description"], "{v}");
    v
}

/// `AUTH <args…>` on a fresh connection to `addr`: the exact reply.
async fn auth(addr: &str, args: &[&str]) -> Vec<u8> {
    let mut c = Conn::connect(addr).await;
    let mut cmd = vec!["AUTH"];
    cmd.extend_from_slice(args);
    c.cmd(&cmd).await
}

async fn assert_auth(addr: &str, args: &[&str], expected: &[u8]) {
    let got = auth(addr, args).await;
    assert_eq!(got, expected, "AUTH {args:?} on {addr}: got {:?}, want {:?}", show(&got), show(expected));
}

/// A connection that has authenticated with `AUTH <args…>`.
async fn authed(addr: &str, args: &[&str]) -> Conn {
    let mut c = Conn::connect(addr).await;
    let mut cmd = vec!["AUTH"];
    cmd.extend_from_slice(args);
    let got = c.cmd(&cmd).await;
    assert_eq!(got, OK, "AUTH {args:?} on {addr}: {}", show(&got));
    c
}

/// `c` answers a PING with `+PONG`. A close is reported as such (not as a panic
/// inside the client). Only for connections with no reply left unread.
async fn assert_alive(c: &mut Conn, what: &str) {
    let _ = c.stream.write_all(&cmd_bytes(&["PING"])).await;
    let mut got = Vec::new();
    let open = tokio::time::timeout(REPLY_TIMEOUT, async {
        while got.len() < PONG.len() {
            let mut chunk = [0u8; 256];
            match c.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => got.extend_from_slice(&chunk[..k]),
            }
        }
        true
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no reply to PING"));
    assert!(open, "{what} should still be connected and working, but was closed (got {:?})", show(&got));
    assert_eq!(got, PONG, "{what} should still be connected and working: {}", show(&got));
}

/// The server closes `c` promptly. A PING sent now may still be answered before the
/// close; after that the connection must end (EOF), not keep serving.
async fn assert_closed(c: &mut Conn, what: &str) {
    let started = Instant::now();
    let _ = c.stream.write_all(&cmd_bytes(&["PING"])).await;
    let rest = c.read_to_close().await;
    assert!(rest.is_empty() || rest == PONG, "{what}: unexpected bytes before the close: {:?}", show(&rest));
    assert!(started.elapsed() < PROMPTLY, "{what} took {:?} to close", started.elapsed());
}

/// A role admitted to database `bdb` (through a redis ACL); returns the role's uid.
async fn admit_role(p: &Process, bdb: u32) -> u64 {
    let role =
        ok(p, "POST", "/v1/roles", &json!({"name": "app", "management": "db_member"}).to_string()).await;
    let acl = ok(p, "POST", "/v1/redis_acls", &json!({"name": "all", "acl": "+@all ~*"}).to_string()).await;
    let (role_uid, acl_uid) = (role["uid"].as_u64().unwrap(), acl["uid"].as_u64().unwrap());
    let perms = json!([{"role_uid": role_uid, "redis_acl_uid": acl_uid}]);
    let v = ok(p, "PUT", &format!("/v1/bdbs/{bdb}"), &json!({"roles_permissions": perms}).to_string()).await;
    assert_eq!(v["roles_permissions"], perms);
    role_uid
}

/// Creates a database user with role `role_uid`; returns its uid.
async fn create_user(p: &Process, name: &str, password: &str, role_uid: u64) -> u64 {
    let body = json!({
        "name": name,
        "email": format!("{name}@example.com"),
        "password": password,
        "role": "db_viewer",
        "role_uids": [role_uid],
    });
    let u = ok(p, "POST", "/v1/users", &body.to_string()).await;
    assert_eq!(u["name"], name);
    assert!(u.get("password").is_none(), "the password must not be echoed: {u}");
    u["uid"].as_u64().unwrap()
}

fn pw_body(pw: &str) -> String {
    json!({ "password": pw }).to_string()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// 1. The seed procedures, end to end.
// ---------------------------------------------------------------------------------

/// Seed 003: `PUT`/`POST`/`DELETE /v1/bdbs/{uid}/passwords`, the default user's set
/// (`AUTH <pw>` and `AUTH default <pw>`), with the seed's own example bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_database_default_user_rotation() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    // A database without any password admits nobody.
    assert_auth(&db, &["new password"], WRONGPASS).await;

    // "The above request resets the password of the bdb to 'new password'."
    ok(&p, "PUT", "/v1/bdbs/1/passwords", "{\n    \"password\": \"new password\"\n}").await;
    assert_auth(&db, &["new password"], OK).await;
    assert_auth(&db, &["default", "new password"], OK).await;
    assert_auth(&db, &["password to add"], WRONGPASS).await;

    // Add: both the old and the new one authenticate.
    ok(&p, "POST", "/v1/bdbs/1/passwords", "{\n    \"password\": \"password to add\"\n}").await;
    assert_auth(&db, &["new password"], OK).await;
    assert_auth(&db, &["password to add"], OK).await;
    assert_auth(&db, &["default", "password to add"], OK).await;
    // Adding one that is already there: 406, nothing changes.
    refused(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("password to add"), 406).await;
    assert_auth(&db, &["new password"], OK).await;

    // Delete the old one: only the new one works.
    ok(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body("new password")).await;
    assert_auth(&db, &["new password"], WRONGPASS).await;
    assert_auth(&db, &["default", "new password"], WRONGPASS).await;
    assert_auth(&db, &["password to add"], OK).await;
    // Deleting one that is not in the set: 406.
    refused(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body("new password"), 406).await;
    // Deleting the last password is refused, and it keeps working.
    let e = refused(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body("password to add"), 406).await;
    assert_eq!(e["error_code"], "cannot_delete_last_password", "{e}");
    assert_auth(&db, &["password to add"], OK).await;

    // Replace all (PUT), through the seed's example line without /v1.
    ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("rotation-b")).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("rotation-c")).await;
    assert_auth(&db, &["rotation-b"], OK).await;
    assert_auth(&db, &["rotation-c"], OK).await;
    ok(&p, "PUT", "/bdbs/1/passwords", &pw_body("rotation-final")).await;
    for old in ["password to add", "rotation-b", "rotation-c", "new password"] {
        assert_auth(&db, &[old], WRONGPASS).await;
    }
    assert_auth(&db, &["rotation-final"], OK).await;
    assert_auth(&db, &["default", "rotation-final"], OK).await;

    // A database that does not exist.
    refused(&p, "POST", "/v1/bdbs/99/passwords", &pw_body("x-password"), 404).await;
}

/// Seed 001: `POST`/`DELETE`/`PUT /v1/users/password` for a named user, checked by
/// `AUTH <user> <pw>` on the database (and by the user's own admin API login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_user_rotation() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    let role = admit_role(&p, 1).await;
    create_user(&p, "app-user", "user-pw-1", role).await;
    assert_auth(&db, &["app-user", "user-pw-1"], OK).await;
    // A user's password is not the default user's.
    assert_auth(&db, &["user-pw-1"], WRONGPASS).await;

    // 1. Add an additional password.
    ok(&p, "POST", "/v1/users/password", r#"{ "username": "app-user", "new_password": "user-pw-2" }"#).await;
    assert_auth(&db, &["app-user", "user-pw-1"], OK).await;
    assert_auth(&db, &["app-user", "user-pw-2"], OK).await;
    let e = refused(
        &p,
        "POST",
        "/v1/users/password",
        r#"{ "username": "app-user", "new_password": "user-pw-2" }"#,
        400,
    )
    .await;
    assert_eq!(e["error_code"], "new_password_same_as_current", "{e}");

    // 3. Delete the original password.
    ok(&p, "DELETE", "/v1/users/password", r#"{ "username": "app-user", "old_password": "user-pw-1" }"#)
        .await;
    assert_auth(&db, &["app-user", "user-pw-1"], WRONGPASS).await;
    assert_auth(&db, &["app-user", "user-pw-2"], OK).await;
    // "If there is only one valid password for a user account, you cannot delete that password."
    let e = refused(
        &p,
        "DELETE",
        "/v1/users/password",
        r#"{ "username": "app-user", "old_password": "user-pw-2" }"#,
        400,
    )
    .await;
    assert_eq!(e["error_code"], "cannot_delete_last_password", "{e}");
    assert_auth(&db, &["app-user", "user-pw-2"], OK).await;

    // The same set is the user's admin API login.
    let (status, _) = p.curl("GET", "/v1/bdbs", ("app-user", "user-pw-2"), None).await;
    assert_eq!(status, 200);
    let (status, _) = p.curl("GET", "/v1/bdbs", ("app-user", "user-pw-1"), None).await;
    assert_eq!(status, 401);
    // Without `username`, the caller rotates its own passwords.
    let (status, v) = p
        .curl(
            "POST",
            "/v1/users/password",
            ("app-user", "user-pw-2"),
            Some(r#"{"new_password": "user-pw-3"}"#),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    ok(&p, "POST", "/v1/users/password", r#"{ "username": "app-user", "new_password": "user-pw-4" }"#).await;
    for pw in ["user-pw-2", "user-pw-3", "user-pw-4"] {
        assert_auth(&db, &["app-user", pw], OK).await;
    }

    // Replace all passwords: only the new one is valid.
    ok(&p, "PUT", "/v1/users/password", r#"{ "username": "app-user", "new_password": "user-pw-final" }"#)
        .await;
    for pw in ["user-pw-1", "user-pw-2", "user-pw-3", "user-pw-4"] {
        assert_auth(&db, &["app-user", pw], WRONGPASS).await;
    }
    assert_auth(&db, &["app-user", "user-pw-final"], OK).await;

    let e = refused(
        &p,
        "POST",
        "/v1/users/password",
        r#"{ "username": "nobody", "new_password": "whatever-1" }"#,
        404,
    )
    .await;
    assert_eq!(e["error_code"], "user_not_exist", "{e}");
}

/// Seed 000's body template for `POST`/`PUT /v1/cluster`, exactly as written (a
/// missing comma after `username`, a trailing comma), placeholders filled in.
fn seed_000_verbatim(user: &str, old: &str, new: &str) -> String {
    format!(
        "{{\n    \"username\": \"{user}\"\n    \"old_password\": \"{old}\",\n    \"new_password\": \"{new}\",\n    }}"
    )
}

/// The same body with the two syntax errors fixed.
fn seed_000_fixed(user: &str, old: &str, new: &str) -> String {
    format!(
        "{{\n    \"username\": \"{user}\",\n    \"old_password\": \"{old}\",\n    \"new_password\": \"{new}\"\n    }}"
    )
}

/// Seed 000's `DELETE /v1/cluster` body (valid JSON as written).
fn seed_000_delete(user: &str, old: &str) -> String {
    format!("{{\n    \"username\": \"{user}\",\n    \"old_password\": \"{old}\"\n    }}")
}

/// Seed 000: the legacy rotation calls on `/v1/cluster`, with the seed's bodies fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_legacy_cluster_rotation() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    let role = admit_role(&p, 1).await;
    create_user(&p, "legacy-user", "legacy-pw-1", role).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-1"], OK).await;

    // 1. Add an additional password (POST): both work.
    ok(&p, "POST", "/v1/cluster", &seed_000_fixed("legacy-user", "legacy-pw-1", "legacy-pw-2")).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-1"], OK).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-2"], OK).await;
    // old_password must be one of the current passwords: 400, nothing added.
    refused(&p, "POST", "/v1/cluster", &seed_000_fixed("legacy-user", "not-current-pw", "legacy-pw-x"), 400)
        .await;
    assert_auth(&db, &["legacy-user", "legacy-pw-x"], WRONGPASS).await;

    // 3. Delete the original password: only the new one works.
    ok(&p, "DELETE", "/v1/cluster", &seed_000_delete("legacy-user", "legacy-pw-1")).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-1"], WRONGPASS).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-2"], OK).await;
    // "If there is only one valid password for a user account, you cannot delete that password."
    let e = refused(&p, "DELETE", "/v1/cluster", &seed_000_delete("legacy-user", "legacy-pw-2"), 400).await;
    assert_eq!(e["error_code"], "cannot_delete_last_password", "{e}");
    assert_auth(&db, &["legacy-user", "legacy-pw-2"], OK).await;

    // Replace all existing passwords with a single new one (PUT).
    ok(&p, "POST", "/v1/cluster", &seed_000_fixed("legacy-user", "legacy-pw-2", "legacy-pw-2b")).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-2b"], OK).await;
    ok(&p, "PUT", "/v1/cluster", &seed_000_fixed("legacy-user", "legacy-pw-2", "legacy-pw-3")).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-2"], WRONGPASS).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-2b"], WRONGPASS).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-3"], OK).await;
    // The PUT was a rotation, not a cluster-settings update.
    assert_eq!(get(&p, "/v1/cluster").await["password_complexity"], false);
}

/// Seed 000's bodies sent verbatim (missing comma, trailing comma) get a clear 400
/// naming the position, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_verbatim_bodies_are_refused_with_400() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    let role = admit_role(&p, 1).await;
    create_user(&p, "legacy-user", "legacy-pw-1", role).await;
    let cluster_before = get(&p, "/v1/cluster").await;

    for method in ["POST", "PUT"] {
        let body = seed_000_verbatim("legacy-user", "legacy-pw-1", "legacy-pw-2");
        let e = refused(&p, method, "/v1/cluster", &body, 400).await;
        assert_eq!(e["error_code"], "invalid_json", "{method}: {e}");
        assert!(e["description"].as_str().unwrap().contains("line"), "{method}: no position in {e}");
        assert!(!e.to_string().contains("legacy-pw"), "{method}: the error echoes a password: {e}");
        // The placeholders as printed in the seed: still a 400.
        let raw = seed_000_verbatim("<username>", "<existing_password>", "<new_password>");
        let e = refused(&p, method, "/v1/cluster", &raw, 400).await;
        assert_eq!(e["error_code"], "invalid_json", "{method}: {e}");
    }
    // Each of the two faults alone is a 400 too.
    let missing_comma = seed_000_fixed("legacy-user", "legacy-pw-1", "legacy-pw-2")
        .replace("\"legacy-user\",", "\"legacy-user\"");
    let trailing_comma = seed_000_fixed("legacy-user", "legacy-pw-1", "legacy-pw-2")
        .replace("\"legacy-pw-2\"", "\"legacy-pw-2\",");
    for body in [&missing_comma, &trailing_comma] {
        let e = refused(&p, "POST", "/v1/cluster", body, 400).await;
        assert_eq!(e["error_code"], "invalid_json", "{body}: {e}");
    }

    // Nothing changed: the old password works, the new one does not, the settings are untouched.
    assert_auth(&db, &["legacy-user", "legacy-pw-1"], OK).await;
    assert_auth(&db, &["legacy-user", "legacy-pw-2"], WRONGPASS).await;
    assert_eq!(get(&p, "/v1/cluster").await, cluster_before);
}

// ---------------------------------------------------------------------------------
// 2. Connected clients ride through rotations.
// ---------------------------------------------------------------------------------

/// 50 rotations of the default user's set (add new / delete old / replace all)
/// while two clients authenticated before them keep running commands: one between
/// every rotation, one continuously. Same upstream connection before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_clients_keep_working_through_50_rotations() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("rot-0")).await;

    let mut stepwise = authed(&db, &["rot-0"]).await;
    let stepwise_id = stepwise.cmd(&["CLIENT", "ID"]).await;
    let mut busy = authed(&db, &["rot-0"]).await;
    let busy_id = busy.cmd(&["CLIENT", "ID"]).await;
    assert_ne!(stepwise_id, busy_id);

    // The busy client INCRs without pause until told to stop; every reply must be
    // the next integer (no error, no lost or repeated command).
    let stop = Arc::new(AtomicBool::new(false));
    let busy_task = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut n = 0u64;
            loop {
                let last = stop.load(Ordering::SeqCst);
                n += 1;
                let got = busy.cmd(&["INCR", "busy"]).await;
                assert_eq!(got, format!(":{n}\r\n").into_bytes(), "busy INCR #{n}: {}", show(&got));
                if last {
                    return (busy, n);
                }
            }
        }
    });

    let mut current: Vec<String> = vec!["rot-0".into()];
    let mut used: Vec<String> = vec!["rot-0".into()];
    for i in 0..50u64 {
        match i % 3 {
            0 => {
                let new = format!("rot-{}", used.len());
                ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body(&new)).await;
                current.push(new.clone());
                used.push(new);
            }
            1 => {
                let old = current.remove(0);
                ok(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body(&old)).await;
            }
            _ => {
                let new = format!("rot-{}", used.len());
                ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body(&new)).await;
                current = vec![new.clone()];
                used.push(new);
            }
        }
        let got = stepwise.cmd(&["INCR", "stepwise"]).await;
        assert_eq!(got, format!(":{}\r\n", i + 1).into_bytes(), "after rotation {i}: {}", show(&got));
    }
    stop.store(true, Ordering::SeqCst);
    let (mut busy, n) = busy_task.await.unwrap();
    assert!(n > 1, "the busy client ran only {n} commands");

    // The same upstream connections, never re-established.
    assert_eq!(stepwise.cmd(&["CLIENT", "ID"]).await, stepwise_id);
    assert_eq!(busy.cmd(&["CLIENT", "ID"]).await, busy_id);
    assert_eq!(busy.cmd(&["GET", "busy"]).await, format!("${}\r\n{n}\r\n", n.to_string().len()).into_bytes());

    // A new connection gets in only with the current password(s).
    assert_eq!(current.len(), 1, "the 50th rotation is a delete, leaving one password");
    for pw in &used {
        let want = if current.contains(pw) { OK } else { WRONGPASS };
        assert_auth(&db, &[pw], want).await;
    }
    let mut fresh = authed(&db, &[&current[0]]).await;
    assert_eq!(fresh.cmd(&["GET", "stepwise"]).await, b"$2\r\n50\r\n");
}

// ---------------------------------------------------------------------------------
// 3. disconnect_clients_on_password_removal, and deleting users.
// ---------------------------------------------------------------------------------

/// Default (flag false): removing or replacing the password a connection used
/// leaves that connection working, for the default user and for named users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_removed_passwords_leave_connections_working() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    let role = admit_role(&p, 1).await;
    create_user(&p, "alice", "alice-pw-1", role).await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("bdb-pw-1")).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("bdb-pw-2")).await;
    ok(&p, "POST", "/v1/users/password", r#"{"username": "alice", "new_password": "alice-pw-2"}"#).await;
    assert_eq!(get(&p, "/v1/bdbs/1").await["disconnect_clients_on_password_removal"], false);

    let mut a = authed(&db, &["bdb-pw-1"]).await;
    let mut b = authed(&db, &["bdb-pw-2"]).await;
    let mut c = authed(&db, &["alice", "alice-pw-1"]).await;

    ok(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body("bdb-pw-1")).await;
    ok(&p, "DELETE", "/v1/users/password", r#"{"username": "alice", "old_password": "alice-pw-1"}"#).await;
    assert_auth(&db, &["bdb-pw-1"], WRONGPASS).await;
    assert_auth(&db, &["alice", "alice-pw-1"], WRONGPASS).await;
    assert_eq!(a.cmd(&["SET", "k", "v"]).await, OK);
    assert_eq!(c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n");

    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("bdb-pw-3")).await;
    ok(&p, "PUT", "/v1/users/password", r#"{"username": "alice", "new_password": "alice-pw-3"}"#).await;
    assert_auth(&db, &["bdb-pw-2"], WRONGPASS).await;
    for (conn, what) in [(&mut a, "A"), (&mut b, "B"), (&mut c, "C")] {
        assert_alive(conn, what).await;
    }
}

/// With the flag on, exactly the connections whose password was removed or replaced
/// are closed, promptly: default-user ones and named users' ones; the others (other
/// passwords, other users, unauthenticated, switched identity) carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_flag_only_connections_using_a_removed_password_close() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    let role = admit_role(&p, 1).await;
    create_user(&p, "alice", "alice-pw-1", role).await;
    create_user(&p, "bob", "bob-pw-1", role).await;
    ok(&p, "POST", "/v1/users/password", r#"{"username": "alice", "new_password": "alice-pw-2"}"#).await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("P1-password")).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("P2-password")).await;
    let v = ok(&p, "PUT", "/v1/bdbs/1", r#"{"disconnect_clients_on_password_removal": true}"#).await;
    assert_eq!(v["disconnect_clients_on_password_removal"], true);
    assert_eq!(get(&p, "/v1/bdbs/1").await["disconnect_clients_on_password_removal"], true);

    let mut a = authed(&db, &["P1-password"]).await;
    let mut b = authed(&db, &["P2-password"]).await;
    let mut c = authed(&db, &["alice", "alice-pw-1"]).await;
    let mut d = authed(&db, &["alice", "alice-pw-2"]).await;
    let mut e = authed(&db, &["bob", "bob-pw-1"]).await;
    // Authenticated with P2, then switched to bob: it is bob now.
    let mut switched = authed(&db, &["P2-password"]).await;
    assert_eq!(switched.cmd(&["AUTH", "bob", "bob-pw-1"]).await, OK);
    let mut unauthenticated = Conn::connect(&db).await;
    assert_eq!(unauthenticated.cmd(&["PING"]).await, NOAUTH);

    // DELETE P1: A closes; everything else carries on.
    ok(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body("P1-password")).await;
    assert_closed(&mut a, "A (P1, deleted)").await;
    assert_alive(&mut b, "B (P2)").await;
    assert_alive(&mut c, "C (alice)").await;
    assert_alive(&mut d, "D (alice)").await;
    assert_alive(&mut e, "E (bob)").await;
    assert_alive(&mut switched, "switched (bob now)").await;
    assert_eq!(unauthenticated.cmd(&["PING"]).await, NOAUTH);
    assert_auth(&db, &["P1-password"], WRONGPASS).await;
    assert_auth(&db, &["P2-password"], OK).await;

    // A user's password: only that user's connections that used it close.
    ok(&p, "DELETE", "/v1/users/password", r#"{"username": "alice", "old_password": "alice-pw-1"}"#).await;
    assert_closed(&mut c, "C (alice-pw-1, deleted)").await;
    assert_alive(&mut d, "D (alice-pw-2)").await;
    assert_alive(&mut e, "E (bob)").await;
    assert_alive(&mut b, "B (P2)").await;
    assert_alive(&mut switched, "switched (bob now)").await;

    // Replacing all (PUT) removes the others: their connections close.
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("P3-password")).await;
    assert_closed(&mut b, "B (P2, replaced)").await;
    assert_alive(&mut d, "D (alice-pw-2)").await;
    assert_alive(&mut e, "E (bob)").await;
    assert_alive(&mut switched, "switched (bob now)").await;
    ok(&p, "PUT", "/v1/users/password", r#"{"username": "alice", "new_password": "alice-pw-3"}"#).await;
    assert_closed(&mut d, "D (alice-pw-2, replaced)").await;
    assert_alive(&mut e, "E (bob)").await;
    assert_alive(&mut switched, "switched (bob now)").await;
    assert_eq!(unauthenticated.cmd(&["PING"]).await, NOAUTH);

    // And new connections get in with the current passwords.
    assert_auth(&db, &["P3-password"], OK).await;
    assert_auth(&db, &["alice", "alice-pw-3"], OK).await;
}

/// Flag on, a database with P1 and P2, and `PUT` of P1: P2 is removed, P1 is not.
async fn flagged_db_with_alice() -> (Redis, tempfile::TempDir, Process) {
    let (redis, dir, p) = start().await;
    let role = admit_role(&p, 1).await;
    create_user(&p, "alice", "alice-pw-1", role).await;
    ok(&p, "POST", "/v1/users/password", r#"{"username": "alice", "new_password": "alice-pw-2"}"#).await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("P1-password")).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("P2-password")).await;
    ok(&p, "PUT", "/v1/bdbs/1", r#"{"disconnect_clients_on_password_removal": true}"#).await;
    (redis, dir, p)
}

/// With the flag on, `PUT /v1/bdbs/1/passwords` of a password already in the set
/// removes the others but not that one: a connection that authenticated with it
/// lost nothing (a new `AUTH` with it succeeds) and must not be closed; the
/// connections whose password did go are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_flag_put_of_a_kept_bdb_password_keeps_its_connections() {
    let (_redis, _dir, p) = flagged_db_with_alice().await;
    let db = p.bdb(1);
    let mut kept = authed(&db, &["P1-password"]).await;
    let mut gone = authed(&db, &["P2-password"]).await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("P1-password")).await;
    assert_auth(&db, &["P1-password"], OK).await;
    assert_auth(&db, &["P2-password"], WRONGPASS).await;
    assert_closed(&mut gone, "P2 (replaced)").await;
    assert_alive(&mut kept, "P1 (still a valid password)").await;
}

/// The same for a named user through `PUT /v1/users/password`. Seed 001 says the
/// replacement "does not match any existing passwords", so refusing it (400
/// `new_password_same_as_current`) is a fine answer too; what must not happen is a
/// 200 that closes the connection whose password stays valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_flag_put_of_a_kept_user_password_keeps_its_connections() {
    let (_redis, _dir, p) = flagged_db_with_alice().await;
    let db = p.bdb(1);
    let mut kept = authed(&db, &["alice", "alice-pw-1"]).await;
    let mut other = authed(&db, &["alice", "alice-pw-2"]).await;
    let body = r#"{"username": "alice", "new_password": "alice-pw-1"}"#;
    let (status, v) = p.curl("PUT", "/v1/users/password", AS_ADMIN, Some(body)).await;
    match status {
        400 => {
            assert_eq!(v["error_code"], "new_password_same_as_current", "{v}");
            assert_auth(&db, &["alice", "alice-pw-2"], OK).await;
            assert_alive(&mut other, "alice-pw-2 (PUT refused)").await;
        }
        200 => {
            assert_auth(&db, &["alice", "alice-pw-2"], WRONGPASS).await;
            assert_closed(&mut other, "alice-pw-2 (replaced)").await;
        }
        _ => panic!("PUT /v1/users/password with a current password: {status} {v}"),
    }
    assert_auth(&db, &["alice", "alice-pw-1"], OK).await;
    assert_alive(&mut kept, "alice-pw-1 (still a valid password)").await;
}

/// Deleting a user closes its connections (as `ACL DELUSER` does), flag or not,
/// and only its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_connections_even_without_the_flag() {
    let (_redis, _dir, p) = start().await;
    let db = p.bdb(1);
    let role = admit_role(&p, 1).await;
    let alice = create_user(&p, "alice", "alice-pw-1", role).await;
    create_user(&p, "bob", "bob-pw-1", role).await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("bdb-pw-1")).await;
    assert_eq!(get(&p, "/v1/bdbs/1").await["disconnect_clients_on_password_removal"], false);

    let mut a1 = authed(&db, &["alice", "alice-pw-1"]).await;
    let mut a2 = authed(&db, &["alice", "alice-pw-1"]).await;
    let mut b = authed(&db, &["bob", "bob-pw-1"]).await;
    let mut d = authed(&db, &["bdb-pw-1"]).await;

    let (status, v) = p.curl("DELETE", &format!("/v1/users/{alice}"), AS_ADMIN, None).await;
    assert_eq!(status, 200, "{v}");
    assert_closed(&mut a1, "alice's first connection").await;
    assert_closed(&mut a2, "alice's second connection").await;
    assert_alive(&mut b, "bob").await;
    assert_alive(&mut d, "default user").await;
    assert_auth(&db, &["alice", "alice-pw-1"], WRONGPASS).await;
    let (status, _) = p.curl("GET", &format!("/v1/users/{alice}"), AS_ADMIN, None).await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------
// 4. Durability.
// ---------------------------------------------------------------------------------

/// Acknowledged changes survive `kill -9` and SIGTERM restarts; the store holds no
/// plaintext password; the self-signed certificate is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_kill9_and_sigterm() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    let cert_path = dir.path().join("data/tls/cert.pem");
    let cert = std::fs::read(&cert_path).expect("the self-signed certificate is in the store");

    let role = admit_role(&p, 1).await;
    ok(&p, "PUT", "/v1/bdbs/1/passwords", &pw_body("Durable-bdb-pw-1")).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", &pw_body("Durable-bdb-pw-2")).await;
    let uid = create_user(&p, "durable-user", "Durable-user-pw-1", role).await;
    ok(
        &p,
        "POST",
        "/v1/users/password",
        r#"{"username": "durable-user", "new_password": "Durable-user-pw-2"}"#,
    )
    .await;
    let cluster = ok(
        &p,
        "PUT",
        "/v1/cluster",
        r#"{"name": "durable-cluster", "password_min_length": 12, "password_expiration_duration": 90}"#,
    )
    .await;
    let policy = ok(&p, "PUT", "/v1/cluster/policy", r#"{"login_lockout_threshold": 7}"#).await;
    // The last acknowledged change, immediately before the kill.
    let bdb = ok(&p, "PUT", "/v1/bdbs/1", r#"{"disconnect_clients_on_password_removal": true}"#).await;

    let check = |p: &Process, bdb_pws: &'static [(&'static str, bool)]| {
        let db = p.bdb(1);
        async move {
            for (pw, valid) in bdb_pws {
                assert_auth(&db, &[pw], if *valid { OK } else { WRONGPASS }).await;
            }
            assert_auth(&db, &["durable-user", "Durable-user-pw-1"], OK).await;
            assert_auth(&db, &["durable-user", "Durable-user-pw-2"], OK).await;
        }
    };
    let check_objects = async |p: &Process| {
        let users = get(p, "/v1/users").await;
        let u = users.as_array().unwrap().iter().find(|u| u["uid"] == uid).expect("the user is kept");
        assert_eq!(u["name"], "durable-user");
        assert_eq!(u["email"], "durable-user@example.com");
        assert_eq!(u["role_uids"], json!([role]));
        assert_eq!(get(p, "/v1/cluster").await, cluster);
        assert_eq!(get(p, "/v1/cluster/policy").await, policy);
        let now = get(p, "/v1/bdbs/1").await;
        assert_eq!(now["disconnect_clients_on_password_removal"], true);
        assert_eq!(now["roles_permissions"], bdb["roles_permissions"]);
    };

    p = p.kill9_and_restart().await;
    check(&p, &[("Durable-bdb-pw-1", true), ("Durable-bdb-pw-2", true)]).await;
    check_objects(&p).await;
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert, "the certificate changed over kill -9");

    // Another acknowledged change, then a graceful restart.
    ok(&p, "DELETE", "/v1/bdbs/1/passwords", &pw_body("Durable-bdb-pw-1")).await;
    p = p.stop_and_restart().await;
    check(&p, &[("Durable-bdb-pw-1", false), ("Durable-bdb-pw-2", true)]).await;
    check_objects(&p).await;
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert, "the certificate changed over SIGTERM");
    // The admin logs in with the bootstrap password, and curl -k still works.
    let (status, _) = p.curl("GET", "/v1/users", AS_ADMIN, None).await;
    assert_eq!(status, 200);

    // No plaintext password anywhere in the store.
    let files = files_under(&dir.path().join("data"));
    let mut saw_state = false;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        saw_state |= bytes.windows(b"durable-user".len()).any(|w| w == b"durable-user");
        for pw in ["Durable-bdb-pw-1", "Durable-bdb-pw-2", "Durable-user-pw-1", "Durable-user-pw-2", ADMIN_PW]
        {
            assert!(
                !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
                "{} contains the plaintext password {pw:?}",
                f.display()
            );
        }
    }
    assert!(saw_state, "the scan did not see the stored state in {files:?}");
}

// ---------------------------------------------------------------------------------
// 5. A database created live.
// ---------------------------------------------------------------------------------

/// `POST /v1/bdbs` serves at once on its `listen` address, in front of its own
/// upstream; it survives `kill -9` with the same uid and address; `DELETE` closes
/// its connections and its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_created_live_serves_survives_and_is_deleted() {
    let (_redis, _dir, p) = start().await;
    let other = Redis::start(&[]);
    let body =
        json!({"name": "live", "listen": "127.0.0.1:0", "upstream": format!("redis://{}", other.addr())});
    let created = ok(&p, "POST", "/v1/bdbs", &body.to_string()).await;
    let uid = created["uid"].as_u64().unwrap() as u32;
    assert_ne!(uid, 1);
    let addr = created["listen"].as_str().unwrap().to_string();
    assert!(!addr.ends_with(":0"), "listen should be the bound address: {created}");
    assert_eq!(created["port"].as_u64().unwrap().to_string(), addr.rsplit_once(':').unwrap().1);

    // Listening at once; nobody gets in before a password exists.
    let mut c = Conn::connect(&addr).await;
    assert_eq!(c.cmd(&["PING"]).await, NOAUTH);
    assert_eq!(c.cmd(&["AUTH", "live-pw-1"]).await, WRONGPASS);
    ok(&p, "POST", &format!("/v1/bdbs/{uid}/passwords"), &pw_body("live-pw-1")).await;
    assert_eq!(c.cmd(&["AUTH", "live-pw-1"]).await, OK);
    assert_eq!(c.cmd(&["SET", "live:k", "v"]).await, OK);
    // It forwards to its own upstream, not database 1's.
    assert_eq!(other.connect().await.cmd(&["GET", "live:k"]).await, b"$1\r\nv\r\n");
    // Database 1's passwords do not open it, and vice versa.
    assert_auth(&p.bdb(1), &["live-pw-1"], WRONGPASS).await;
    // A port that is taken: 406, nothing created.
    let taken = json!({"name": "clash", "listen": addr, "upstream": format!("redis://{}", other.addr())});
    refused(&p, "POST", "/v1/bdbs", &taken.to_string(), 406).await;
    assert_eq!(get(&p, "/v1/bdbs").await.as_array().unwrap().len(), 2);

    let p = p.kill9_and_restart().await;
    assert_eq!(c.read_to_close().await, b"", "the old process's connection ends with it");
    assert!(p.bdbs.contains(&(uid, addr.clone())), "{:?} lacks ({uid}, {addr})", p.bdbs);
    let after = get(&p, &format!("/v1/bdbs/{uid}")).await;
    assert_eq!(after["name"], "live");
    assert_eq!(after["listen"], addr.as_str());
    let mut authed_conn = authed(&addr, &["live-pw-1"]).await;
    assert_eq!(authed_conn.cmd(&["GET", "live:k"]).await, b"$1\r\nv\r\n");
    let mut unauthenticated = Conn::connect(&addr).await;
    assert_eq!(unauthenticated.cmd(&["PING"]).await, NOAUTH);
    let mut bdb1 = Conn::connect(&p.bdb(1)).await;
    assert_eq!(bdb1.cmd(&["PING"]).await, NOAUTH);

    // DELETE: its connections close, its port closes, database 1 is untouched.
    let (status, v) = p.curl("DELETE", &format!("/v1/bdbs/{uid}"), AS_ADMIN, None).await;
    assert_eq!(status, 200, "{v}");
    assert_closed(&mut authed_conn, "authenticated connection to the deleted database").await;
    assert_closed(&mut unauthenticated, "unauthenticated connection to the deleted database").await;
    assert_eq!(bdb1.cmd(&["PING"]).await, NOAUTH);
    let deadline = Instant::now() + PROMPTLY;
    loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                break;
            }
            // Poll (with a deadline): the accept loop ends just after the answer.
            Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(_) => panic!("{addr} still accepts connections after DELETE"),
        }
    }
    let (status, _) = p.curl("GET", &format!("/v1/bdbs/{uid}"), AS_ADMIN, None).await;
    assert_eq!(status, 404);

    // The deletion is durable too.
    let p = p.kill9_and_restart().await;
    assert!(p.bdbs.iter().all(|(u, _)| *u != uid), "deleted database came back: {:?}", p.bdbs);
    let (status, _) = p.curl("GET", &format!("/v1/bdbs/{uid}"), AS_ADMIN, None).await;
    assert_eq!(status, 404);
}
