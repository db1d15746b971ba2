//! No plaintext password anywhere turnstile writes: after a session of rotations,
//! successful and failed AUTHs (database port and admin API), a restart and
//! refused admin calls, the trace-level logs of every crate, every file of the store
//! directory and every admin API response are searched for every password used.

mod common;

use common::admin::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_appears_in_logs_store_or_responses() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start_tracing(dir.path(), &format!("redis://{}", redis.addr())).await;
    let admin = (ADMIN, ADMIN_PW);
    let mut secrets: Vec<String> = vec![ADMIN_PW.into()];
    let mut responses = Vec::new();
    let mut call = async |p: &Process, method: &str, path: &str, auth: (&str, &str), body: String| {
        let (status, v) = p.curl(method, path, auth, Some(&body)).await;
        responses.push(v.to_string());
        status
    };

    // Rotations on the default user, with a refused duplicate and a refused last delete.
    for i in 0..4 {
        let pw = format!("Db-secret-{i}-xyzzy");
        let method = if i == 0 { "PUT" } else { "POST" };
        assert_eq!(
            call(&p, method, "/v1/bdbs/1/passwords", admin, format!(r#"{{"password": "{pw}"}}"#)).await,
            200
        );
        secrets.push(pw);
    }
    assert_eq!(
        call(&p, "POST", "/v1/bdbs/1/passwords", admin, r#"{"password": "Db-secret-1-xyzzy"}"#.into()).await,
        406
    );
    for i in 0..3 {
        let body = format!(r#"{{"password": "Db-secret-{i}-xyzzy"}}"#);
        assert_eq!(call(&p, "DELETE", "/v1/bdbs/1/passwords", admin, body).await, 200);
    }
    assert_eq!(
        call(&p, "DELETE", "/v1/bdbs/1/passwords", admin, r#"{"password": "Db-secret-3-xyzzy"}"#.into())
            .await,
        406
    );
    // A user, its rotation, a wrong old password, malformed and mistyped bodies.
    secrets.push("User-secret-a-plugh".into());
    secrets.push("User-secret-b-plugh".into());
    let body = r#"{"name": "carol", "email": "carol@example.com", "password": "User-secret-a-plugh"}"#;
    assert_eq!(call(&p, "POST", "/v1/users", admin, body.into()).await, 200);
    let body =
        r#"{"username": "carol", "old_password": "Wrong-old-plugh", "new_password": "User-secret-b-plugh"}"#;
    assert_eq!(call(&p, "POST", "/v1/cluster", admin, body.into()).await, 400);
    secrets.push("Wrong-old-plugh".into());
    let body = r#"{"username": "carol", "new_password": "User-secret-b-plugh"}"#;
    assert_eq!(call(&p, "POST", "/v1/users/password", admin, body.into()).await, 200);
    assert_eq!(
        call(&p, "POST", "/v1/users/password", admin, r#"{"new_password": 13371337}"#.into()).await,
        400
    );
    secrets.push("13371337".into());
    assert_eq!(
        call(&p, "POST", "/v1/bdbs/1/passwords", admin, r#"{"password": "Broken-json-fnord",}"#.into()).await,
        400
    );
    secrets.push("Broken-json-fnord".into());
    // Admin logins: a wrong password, then the user's own (any one of its passwords).
    assert_eq!(call(&p, "GET", "/v1/cluster", (ADMIN, "Admin-wrong-quux"), String::new()).await, 401);
    secrets.push("Admin-wrong-quux".into());
    assert_eq!(
        call(
            &p,
            "POST",
            "/v1/users/password",
            ("carol", "User-secret-a-plugh"),
            r#"{"new_password": "User-secret-c-plugh"}"#.into()
        )
        .await,
        200
    );
    secrets.push("User-secret-c-plugh".into());

    // The database port: good and bad AUTHs, HELLO AUTH, inline AUTH.
    let mut c = Conn::connect(&p.bdb(1)).await;
    assert_eq!(c.cmd(&["AUTH", "Db-secret-3-xyzzy"]).await, b"+OK\r\n");
    assert!(c.cmd(&["AUTH", "Db-wrong-guess-xyzzy"]).await.starts_with(b"-WRONGPASS"));
    secrets.push("Db-wrong-guess-xyzzy".into());
    assert!(c.cmd(&["HELLO", "3", "AUTH", "carol", "Hello-wrong-zork"]).await.starts_with(b"-WRONGPASS"));
    secrets.push("Hello-wrong-zork".into());
    c.send(b"AUTH Inline-wrong-zork\r\n").await;
    assert!(c.reply().await.starts_with(b"-WRONGPASS"));
    secrets.push("Inline-wrong-zork".into());
    drop(c);

    // A restart in between, so start-up and loading are in the logs too.
    p = p.stop_and_restart().await;
    let mut c = Conn::connect(&p.bdb(1)).await;
    assert_eq!(c.cmd(&["AUTH", "Db-secret-3-xyzzy"]).await, b"+OK\r\n");
    drop(c);
    p = p.stop_and_restart().await;
    drop(p);

    let log = std::fs::read_to_string(dir.path().join("turnstile.log")).unwrap();
    assert!(
        log.len() > 10_000 && log.contains("TRACE"),
        "trace-level logs were captured ({} bytes)",
        log.len()
    );
    let mut store = String::new();
    for entry in walk(&dir.path().join("data")) {
        store.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    assert!(store.contains("$argon2id$"), "the store was read");
    // Basic credentials travel base64-encoded: a logged Authorization header would
    // not show the plaintext, so look for the encoded forms too.
    use base64ct::{Base64, Encoding};
    for creds in [
        format!("{ADMIN}:{ADMIN_PW}"),
        format!("{ADMIN}:Admin-wrong-quux"),
        "carol:User-secret-a-plugh".into(),
    ] {
        secrets.push(Base64::encode_string(creds.as_bytes()));
    }
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "{s} appears in the logs");
        assert!(!store.contains(s.as_str()), "{s} appears in the store");
        for r in &responses {
            assert!(!r.contains(s.as_str()), "{s} appears in a response: {r}");
        }
    }
    eprintln!(
        "searched {} bytes of trace logs, {} bytes of store, {} responses for {} secrets",
        log.len(),
        store.len(),
        responses.len(),
        secrets.len()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}
