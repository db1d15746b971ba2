//! No plaintext password anywhere turnstile writes: after a session of rotations,
//! successful and failed AUTHs (database port and admin API), a restart and
//! refused admin calls, the trace-level logs of every crate, every file of the store
//! directory and every admin API response are searched for every password used.

mod common;

use common::admin::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_appears_in_logs_store_or_responses() {
    // Redis has a password of its own: the service credential, which only manages
    // turnstile's upstream users.
    let redis = Redis::start(&["--requirepass", "Svc-secret-frobozz"]);
    let dir = tempfile::tempdir().unwrap();
    let mut p =
        Process::start_tracing(dir.path(), &format!("redis://:Svc-secret-frobozz@{}", redis.addr())).await;
    let admin = (ADMIN, ADMIN_PW);
    let mut secrets: Vec<String> = vec![ADMIN_PW.into()];
    // Never in a log or a response; never in the store either (it is in the config).
    let mut never_stored = vec!["Svc-secret-frobozz".to_string()];
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

    // Rotation you can see: a labelled password with a scheduled expiry, a
    // connection holding it (named), the guard refusing, deletion by id, and every
    // surface that shows usage: the GETs, the 409, /metrics, the event log.
    secrets.push("Db-secret-4-xyzzy".into());
    let body = r#"{"password": "Db-secret-4-xyzzy", "label": "rotation-4", "expire_old_after": 86400}"#;
    assert_eq!(call(&p, "POST", "/v1/bdbs/1/passwords", admin, body.into()).await, 200);
    let mut holder = Conn::connect(&p.bdb(1)).await;
    assert_eq!(holder.cmd(&["AUTH", "Db-secret-4-xyzzy"]).await, b"+OK\r\n");
    holder.cmd(&["CLIENT", "SETNAME", "secret-scan"]).await;
    let (_, listed) = p.curl("GET", "/v1/bdbs/1/passwords", admin, None).await;
    let new_id = listed["passwords"][1]["id"].as_str().expect("the new password has an id").to_string();
    let body = format!(r#"{{"id": "{new_id}", "unless_used_within": 3600}}"#);
    assert_eq!(call(&p, "DELETE", "/v1/bdbs/1/passwords", admin, body).await, 409);
    let body = r#"{"password": "Db-secret-4-xyzzy", "unless_used_within": 3600}"#.to_string();
    assert_eq!(call(&p, "DELETE", "/v1/bdbs/1/passwords", admin, body).await, 409);
    assert_eq!(
        call(&p, "DELETE", "/v1/bdbs/1/passwords", admin, r#"{"cancel_expiry": true}"#.into()).await,
        200
    );
    drop(holder);
    let body = format!(r#"{{"id": "{new_id}"}}"#);
    assert_eq!(call(&p, "DELETE", "/v1/bdbs/1/passwords", admin, body).await, 200);
    let (_, users) = p.curl("GET", "/v1/users", admin, None).await;
    let carol = users.as_array().unwrap().iter().find(|u| u["name"] == "carol").unwrap()["uid"].clone();
    for path in [
        format!("/v1/users/{carol}/passwords"),
        "/v1/bdbs/1/passwords".into(),
        "/metrics".into(),
        "/v1/logs".into(),
    ] {
        assert_eq!(call(&p, "GET", &path, admin, String::new()).await, 200, "{path}");
    }
    // Operator command output too (it prints the generated password once, by
    // design; the list must not).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["passwords", "--url", &p.admin_url, "--cacert"])
        .arg(dir.path().join("data/tls/cert.pem"))
        .args(["bdb", "1", "list"])
        .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    responses.push(String::from_utf8_lossy(&out.stdout).into_owned());

    // What a client can ask about users, configuration and its connection, on a lane
    // and on a connection of its own, in RESP2 and RESP3: replies to search too.
    let mut client_replies = Vec::new();
    for resp3 in [false, true] {
        let mut c = Conn::connect(&p.bdb(1)).await;
        assert_eq!(c.cmd(&["AUTH", "Db-secret-3-xyzzy"]).await, b"+OK\r\n");
        if resp3 {
            c.cmd(&["HELLO", "3"]).await;
        }
        for cmd in [
            &["PING"][..],
            &["ACL", "LIST"],
            &["ACL", "USERS"],
            &["ACL", "GETUSER", "default"],
            &["ACL", "WHOAMI"],
            &["CONFIG", "GET", "*"],
            &["CLIENT", "INFO"],
            &["ACL", "DRYRUN", "default", "GET", "k"],
            &["ACL", "LOG"],
            &["SLOWLOG", "GET"],
            &["CONFIG", "SET", "slowlog-log-slower-than", "0"],
        ] {
            client_replies.push(String::from_utf8_lossy(&c.cmd(cmd).await).into_owned());
        }
    }

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
    // turnstile's own upstream users: their names, their derived passwords and the
    // hashes Redis keeps of them, and the key they derive from (which only the
    // store may hold).
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            walk(&dir.path().join("data"))
                .into_iter()
                .find(|f| f.extension().is_some_and(|e| e == "json"))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let key = state["upstream_users"]["secret"].as_str().expect("the store holds the upstream users' key");
    let mut direct = redis.connect().await;
    direct.cmd(&["AUTH", "Svc-secret-frobozz"]).await;
    let upstream_list = String::from_utf8_lossy(&direct.cmd(&["ACL", "LIST"]).await).into_owned();
    let mut internal = Vec::new();
    for line in upstream_list.split("\r\n").filter(|l| l.starts_with("user __turnstile:")) {
        let name = line.split(' ').nth(1).unwrap().to_string();
        internal.push(turnstile::authz::derive_password(key, &name).unwrap());
        internal.extend(line.split(' ').filter(|w| w.starts_with('#')).map(|w| w[1..].to_string()));
        for r in &client_replies {
            assert!(!r.contains(&name), "turnstile's upstream user {name} appears in a client reply: {r}");
        }
        internal.push(name);
    }
    assert!(internal.len() >= 3, "turnstile's upstream users were found: {upstream_list}");
    never_stored.push(key.to_string());
    for s in &secrets {
        assert!(!store.contains(s.as_str()), "{s} appears in the store");
    }
    for s in never_stored.iter().filter(|s| !s.contains("frobozz")).chain(&internal) {
        // The key itself is in the store by design; its derived passwords are not.
        if s.as_str() != key {
            assert!(!store.contains(s.as_str()), "{s} appears in the store");
        }
    }
    assert!(!store.contains("Svc-secret-frobozz"), "the service password appears in the store");
    // The stored hashes (salt and digest of every PHC string) appear nowhere else.
    let mut hashes = Vec::new();
    let phc = |v: &serde_json::Value| -> Vec<String> {
        v["passwords"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    for record in
        state["bdbs"].as_object().unwrap().values().chain(state["users"].as_object().unwrap().values())
    {
        for s in phc(record) {
            let parts: Vec<&str> = s.split('$').collect();
            hashes.extend(parts[4..].iter().map(|p| p.to_string()));
        }
    }
    assert!(hashes.len() >= 4, "hashes were found in the store");
    for h in &hashes {
        assert!(!log.contains(h.as_str()), "a stored hash appears in the logs");
        for r in &responses {
            assert!(!r.contains(h.as_str()), "a stored hash appears in a response: {r}");
        }
    }
    for s in secrets.iter().chain(&never_stored).chain(&internal) {
        let name_only = s.starts_with("__turnstile:");
        if !name_only {
            assert!(!log.contains(s.as_str()), "{s} appears in the logs");
        }
        for r in responses.iter().chain(&client_replies) {
            assert!(!r.contains(s.as_str()), "{s} appears in a response: {r}");
        }
    }
    for needle in ["Svc-secret-frobozz", "requirepass", "masterauth"] {
        for r in &client_replies {
            assert!(!r.contains(needle), "{needle} appears in a client reply: {r}");
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
