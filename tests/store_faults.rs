//! Store faults under the running binary: its store directory is a tiny tmpfs that
//! the test fills up, then remounts read-only. Every admin change must then answer
//! 503 `store_error` (JSON) and change nothing — not the database ports' AUTH, not
//! the GET views, not the store file — and once space or write access is back the
//! next change must work and survive a restart. Needs root (mount); CI runs as root.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::admin::*;
use common::*;
use serde_json::Value;

const OK: &[u8] = b"+OK\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const AS_ADMIN: (&str, &str) = (ADMIN, ADMIN_PW);

/// A 1 MiB tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"]).arg(at).output();
        match out {
            Ok(o) if o.status.success() => Self(at.to_path_buf()),
            Ok(o) => panic!(
                "store_faults must mount a tmpfs (run as root, with mount(8) permitted): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("store_faults must mount a tmpfs: cannot run mount(8): {e}"),
        }
    }

    fn remount(&self, mode: &str) {
        let o = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.0).output().unwrap();
        assert!(o.status.success(), "remount {mode}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` until it refuses a byte more.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    // Whatever fit of the last block is on disk now: the disk is full.
    let _ = f.sync_all();
    path
}

async fn auth(addr: &str, args: &[&str]) -> Vec<u8> {
    let mut c = Conn::connect(addr).await;
    let mut cmd = vec!["AUTH"];
    cmd.extend_from_slice(args);
    c.cmd(&cmd).await
}

/// Which AUTHs get in on database 1: the current passwords must, the refused ones must not.
async fn assert_auths(p: &Process, good: &[&[&str]], bad: &[&[&str]], when: &str) {
    let addr = p.bdb(1);
    for args in good {
        assert_eq!(show(&auth(&addr, args).await), show(OK), "{when}: AUTH {args:?} should get in");
    }
    for args in bad {
        assert_eq!(
            show(&auth(&addr, args).await),
            show(WRONGPASS),
            "{when}: AUTH {args:?} should be refused"
        );
    }
}

async fn ok(p: &Process, method: &str, path: &str, body: &str) -> Value {
    let (status, v) = p.curl(method, path, AS_ADMIN, Some(body)).await;
    assert_eq!(status, 200, "{method} {path} with {body}: {v}");
    v
}

/// The GET views an operator would check (less `last_login`, moved by our own logins).
async fn views(p: &Process) -> Vec<Value> {
    let mut out = Vec::new();
    for path in ["/v1/users", "/v1/bdbs", "/v1/roles", "/v1/cluster"] {
        let (status, mut v) = p.curl("GET", path, AS_ADMIN, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        if let Some(users) = v.as_array_mut() {
            users.iter_mut().filter_map(Value::as_object_mut).for_each(|u| drop(u.remove("last_login")));
        }
        out.push(v);
    }
    out
}

/// Every kind of change, each of which must now fail with 503 and change nothing.
const CHANGES: &[(&str, &str, &str)] = &[
    ("POST", "/v1/bdbs/1/passwords", r#"{"password": "db-pw-new"}"#),
    ("PUT", "/v1/bdbs/1/passwords", r#"{"password": "db-pw-new"}"#),
    ("DELETE", "/v1/bdbs/1/passwords", r#"{"password": "db-pw-a"}"#),
    ("POST", "/v1/users/password", r#"{"username": "app-user", "new_password": "user-pw-new"}"#),
    ("PUT", "/v1/users/password", r#"{"username": "app-user", "new_password": "user-pw-new"}"#),
    ("DELETE", "/v1/users/password", r#"{"username": "app-user", "old_password": "user-pw-a"}"#),
    (
        "POST",
        "/v1/users",
        r#"{"name": "eve", "email": "eve@example.com", "password": "eve-pw-1x", "role": "db_viewer"}"#,
    ),
    ("PUT", "/v1/users/2", r#"{"password": "user-pw-new"}"#),
    ("DELETE", "/v1/users/2", ""),
    ("POST", "/v1/roles", r#"{"name": "other", "management": "db_viewer"}"#),
    ("PUT", "/v1/cluster", r#"{"name": "never"}"#),
];

const GOOD: &[&[&str]] =
    &[&["db-pw-a"], &["db-pw-b"], &["app-user", "user-pw-a"], &["app-user", "user-pw-b"]];
const REFUSED: &[&[&str]] = &[&["db-pw-new"], &["app-user", "user-pw-new"], &["eve", "eve-pw-1x"]];

/// Runs every change against a broken store: each is a JSON 503 `store_error`, and
/// nothing observable moved.
async fn every_change_fails_cleanly(p: &Process, store: &Path, fault: &str) {
    let file = std::fs::read(store.join("state.json")).unwrap();
    let before = views(p).await;
    for (m, path, body) in CHANGES {
        let (status, v) = p.curl(m, path, AS_ADMIN, (!body.is_empty()).then_some(*body)).await;
        assert_eq!(status, 503, "{fault}: {m} {path}: {v}");
        assert_eq!(v["error_code"], "store_error", "{fault}: {m} {path}: {v}");
        assert!(v["description"].as_str().is_some_and(|d| !d.is_empty()), "{fault}: {v}");
    }
    assert_auths(p, GOOD, REFUSED, fault).await;
    assert_eq!(views(p).await, before, "{fault}: a GET view changed");
    assert!(std::fs::read(store.join("state.json")).unwrap() == file, "{fault}: the store file changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_store_refuses_changes_cleanly_and_recovers() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let fs = Tmpfs::mount(&store);
    let mut p = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;

    // Database 1 with two passwords; a user with two, admitted to database 1.
    ok(&p, "POST", "/v1/bdbs/1/passwords", r#"{"password": "db-pw-a"}"#).await;
    ok(&p, "POST", "/v1/bdbs/1/passwords", r#"{"password": "db-pw-b"}"#).await;
    ok(&p, "POST", "/v1/roles", r#"{"name": "app", "management": "db_viewer"}"#).await;
    ok(&p, "POST", "/v1/redis_acls", r#"{"name": "all", "acl": "+@all ~*"}"#).await;
    let user =
        ok(&p, "POST", "/v1/users", r#"{"name": "app-user", "password": "user-pw-a", "role_uids": [1]}"#)
            .await;
    assert_eq!(user["uid"], 2);
    ok(&p, "POST", "/v1/users/password", r#"{"username": "app-user", "new_password": "user-pw-b"}"#).await;
    ok(&p, "PUT", "/v1/bdbs/1", r#"{"roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]}"#).await;
    assert_auths(&p, GOOD, REFUSED, "before any fault").await;

    // 1. The disk is full.
    let filler = fill(&store);
    every_change_fails_cleanly(&p, &store, "disk full").await;
    std::fs::remove_file(&filler).unwrap();
    ok(&p, "POST", "/v1/bdbs/1/passwords", r#"{"password": "db-pw-c"}"#).await;
    assert_auths(&p, &[&["db-pw-c"], &["db-pw-a"]], REFUSED, "space is back").await;

    // 2. The store directory is read-only (root ignores modes: remount the tmpfs).
    fs.remount("ro");
    every_change_fails_cleanly(&p, &store, "read-only").await;
    fs.remount("rw");
    ok(&p, "POST", "/v1/users/password", r#"{"username": "app-user", "new_password": "user-pw-c"}"#).await;
    assert_auths(&p, &[&["app-user", "user-pw-c"]], REFUSED, "write access is back").await;

    // 3. Both changes made after recovery survive a restart; the refused ones never appear.
    p = p.stop_and_restart().await;
    let mut good = GOOD.to_vec();
    good.extend_from_slice(&[&["db-pw-c"], &["app-user", "user-pw-c"]]);
    assert_auths(&p, &good, REFUSED, "after a restart").await;
    let (status, users) = p.curl("GET", "/v1/users", AS_ADMIN, None).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().unwrap().len(), 2, "only admin and app-user: {users}");
    drop(p);
    drop(fs);
}
