//! `GET /v1/logs`: password changes (who, which database or user, when), failed
//! AUTHs (address, user name) and lockouts, in order, with RS's query parameters;
//! bounded; persisted with the store and across `kill -9`; never a password.

mod common;

use axum::http::StatusCode;
use common::admin::{ADMIN, ADMIN_PW, Process, admin, call, ok, settings, start_control_with};
use common::{Conn, Redis, show};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use turnstile::control::Control;

const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

async fn logs(c: &Control, query: &str) -> Vec<Value> {
    ok(admin(c, "GET", &format!("/v1/logs{query}"), Value::Null).await).as_array().unwrap().clone()
}

/// An event without its `time` (checked separately), for exact comparison.
fn timeless(e: &Value) -> Value {
    let mut e = e.clone();
    let t = e.as_object_mut().unwrap().remove("time").unwrap();
    let t = turnstile::control::time::parse_iso8601(t.as_str().unwrap()).expect("ISO 8601 time");
    let now = turnstile::control::time::now();
    assert!(t <= now && now - t < 120, "time {t} is not recent");
    e.as_object_mut().unwrap().remove("last_time");
    // Password ids are random: how many an event names is what can be expected.
    if let Some(ids) = e.as_object_mut().unwrap().remove("password_ids") {
        e["password_ids"] = json!(ids.as_array().unwrap().len());
    }
    e
}

const SECRETS: [&str; 8] =
    ["pw-one", "pw-two", "user-pw-1", "user-pw-2", "guess-1", "guess-2", "bad-login", "Admin-pw-1!"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_failures_and_lockouts_are_logged_in_order() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let c = start_control_with(dir.path(), settings(), CancellationToken::new()).await;
    let up = format!("redis://{}", redis.addr());
    ok(admin(&c, "POST", "/v1/bdbs", json!({"name": "app", "listen": "127.0.0.1:0", "upstream": up})).await);
    ok(admin(&c, "PUT", "/v1/bdbs/1/passwords", json!({"password": "pw-one"})).await);
    ok(admin(&c, "POST", "/v1/bdbs/1/passwords", json!({"password": "pw-two"})).await);
    ok(admin(&c, "DELETE", "/v1/bdbs/1/passwords", json!({"password": "pw-one"})).await);
    let user =
        json!({"name": "viewer", "email": "v@example.com", "password": "user-pw-1", "role": "db_viewer"});
    ok(admin(&c, "POST", "/v1/users", user).await);
    ok(admin(&c, "POST", "/v1/users/password", json!({"username": "viewer", "new_password": "user-pw-2"}))
        .await);
    // A refused change is not an event.
    assert_eq!(admin(&c, "DELETE", "/v1/bdbs/1/passwords", json!({"password": "pw-two"})).await.0, 406);
    // Failed AUTHs on the database port: aggregated per address and user name.
    let mut conn = Conn::connect(&c.bdb_addr(1).unwrap().to_string()).await;
    assert_eq!(show(&conn.cmd(&["AUTH", "guess-1"]).await), WRONGPASS);
    assert_eq!(show(&conn.cmd(&["AUTH", "guess-2"]).await), WRONGPASS);
    assert_eq!(show(&conn.cmd(&["AUTH", "mallory", "guess-1"]).await), WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "pw-two"]).await, b"+OK\r\n");
    // Failed AUTHs wait in memory: no store write per failure.
    let stored = || -> Value {
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap()
    };
    assert_eq!(stored()["events"]["security"], json!([]));
    // Five failed admin logins lock the user (the default policy).
    for _ in 0..5 {
        let (s, _, _) = call(&c, "GET", "/v1/cluster", Some(("viewer", "bad-login")), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }

    let all = logs(&c, "").await;
    let expected = [
        json!({"type": "bdb_created", "severity": "INFO", "actor": "admin", "actor_uid": 1, "bdb_uid": 1}),
        json!({"type": "passwords_replaced", "severity": "INFO", "actor": "admin", "actor_uid": 1, "bdb_uid": 1, "password_ids": 1}),
        json!({"type": "password_added", "severity": "INFO", "actor": "admin", "actor_uid": 1, "bdb_uid": 1, "password_ids": 1}),
        json!({"type": "password_removed", "severity": "INFO", "actor": "admin", "actor_uid": 1, "bdb_uid": 1, "password_ids": 1}),
        json!({"type": "user_created", "severity": "INFO", "actor": "admin", "actor_uid": 1, "user": "viewer", "user_uid": 2}),
        json!({"type": "password_added", "severity": "INFO", "actor": "admin", "actor_uid": 1, "user": "viewer", "user_uid": 2, "password_ids": 1}),
        json!({"type": "auth_failed", "severity": "WARNING", "bdb_uid": 1, "user": "default", "address": "127.0.0.1", "count": 2}),
        json!({"type": "auth_failed", "severity": "WARNING", "bdb_uid": 1, "user": "mallory", "address": "127.0.0.1", "count": 1}),
        json!({"type": "user_locked", "severity": "WARNING", "user": "viewer", "user_uid": 2}),
    ];
    // The first AUTH with pw-two (written with the lockout) is an event of its own,
    // timed at the AUTH: it may share a millisecond with a failed AUTH, so it is
    // checked apart from the order of the others.
    let (first, got): (Vec<Value>, Vec<Value>) =
        all.iter().map(timeless).partition(|e| e["type"] == "password_first_used");
    assert_eq!(got, expected, "{all:#?}");
    assert_eq!(
        first,
        [
            json!({"type": "password_first_used", "severity": "INFO", "bdb_uid": 1, "address": "127.0.0.1", "password_ids": 1})
        ]
    );
    // RS's query parameters.
    let everything: Vec<Value> = all.iter().map(timeless).collect();
    let desc = logs(&c, "?order=desc&limit=2").await;
    assert_eq!(desc.iter().map(timeless).collect::<Vec<_>>(), [everything[9].clone(), everything[8].clone()]);
    assert_eq!(desc[0]["type"], "user_locked");
    let page = logs(&c, "?order=asc&offset=1&limit=1").await;
    assert_eq!(page.iter().map(timeless).collect::<Vec<_>>(), [expected[1].clone()]);
    assert_eq!(logs(&c, "?stime=2999-01-01T00:00:00Z").await, Vec::<Value>::new());
    assert_eq!(logs(&c, "?etime=2000-01-01T00:00:00Z").await, Vec::<Value>::new());
    assert_eq!(logs(&c, "?stime=2000-01-01T00:00:00Z&etime=2999-01-01").await.len(), 10);
    for (query, field) in [
        ("?order=up", "order"),
        ("?stime=yesterday", "stime"),
        ("?limit=-1", "limit"),
        ("?offset=x", "offset"),
    ] {
        let (s, v) = admin(&c, "GET", &format!("/v1/logs{query}"), Value::Null).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(v["error_code"], "invalid_parameter");
        assert!(v["description"].as_str().unwrap().starts_with(&format!("{field}: ")), "{v}");
    }
    // A misspelt filter is refused rather than ignored (found by schemathesis).
    let (s, v) = admin(&c, "GET", "/v1/logs?limt=1", Value::Null).await;
    assert_eq!((s, &v["error_code"]), (StatusCode::BAD_REQUEST, &Value::from("invalid_parameter")), "{v}");
    // Everyone with API access may read it; no credentials, no log.
    let (s, _, _) = call(&c, "GET", "/v1/logs", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The next store write (here: the lockout) carried the failed AUTHs with it.
    let security = stored()["events"]["security"].as_array().unwrap().clone();
    assert_eq!(security.len(), 2);
    assert_eq!((&security[0]["type"], &security[0]["count"]), (&json!("auth_failed"), &json!(2)));
    assert_eq!(logs(&c, "").await.len(), 10, "written, not duplicated");
    // A restart reads the same log back.
    let again = common::admin::start_control(dir.path()).await;
    assert_eq!(logs(&again, "").await, all);
    ok(admin(&c, "DELETE", "/v1/users/2", Value::Null).await);
    let last = logs(&c, "?order=desc&limit=1").await;
    let deleted = json!({"type": "user_deleted", "severity": "INFO", "actor": "admin", "actor_uid": 1, "user": "viewer", "user_uid": 2});
    assert_eq!(timeless(&last[0]), deleted);

    // No password or hash anywhere in the log, as served or as stored.
    let served = serde_json::to_string(&logs(&c, "").await).unwrap();
    let events = stored()["events"].to_string();
    for text in [&served, &events] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in the event log");
        }
        assert!(!text.contains("argon2"), "a hash in the event log");
    }
    let store = String::from_utf8(std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    for secret in SECRETS {
        assert!(!store.contains(secret), "{secret} in the store");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_bounded_and_failures_cannot_evict_changes() {
    const N: usize = 5;
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.event_log_capacity = N;
    let c = start_control_with(dir.path(), s, CancellationToken::new()).await;
    let up = format!("redis://{}", redis.addr());
    ok(admin(&c, "POST", "/v1/bdbs", json!({"name": "app", "listen": "127.0.0.1:0", "upstream": up})).await);
    for i in 0..N + 10 {
        ok(admin(&c, "POST", "/v1/bdbs/1/passwords", json!({"password": format!("pw-{i}")})).await);
    }
    let all = logs(&c, "").await;
    assert_eq!(all.len(), N);
    assert!(all.iter().all(|e| e["type"] == "password_added"));
    // A storm of failures under 50 names: its own ring keeps N of them, and the
    // password changes are all still there.
    let mut conn = Conn::connect(&c.bdb_addr(1).unwrap().to_string()).await;
    for i in 0..50 {
        assert_eq!(show(&conn.cmd(&["AUTH", &format!("name-{i}"), "guess"]).await), WRONGPASS);
    }
    ok(admin(&c, "PUT", "/v1/bdbs/1/passwords", json!({"password": "final"})).await);
    let all = logs(&c, "").await;
    let count = |t: &str| all.iter().filter(|e| e["type"] == t).count();
    assert_eq!((count("auth_failed"), count("password_added") + count("passwords_replaced")), (N, N));
    assert_eq!(all.last().unwrap()["type"], "passwords_replaced");
    let names: Vec<&str> = all.iter().filter_map(|e| e["user"].as_str()).collect();
    assert_eq!(names, ["name-45", "name-46", "name-47", "name-48", "name-49"], "the newest failures stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_survives_kill_9() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start_tracing(dir.path(), &format!("redis://{}", redis.addr())).await;
    let creds = (ADMIN, ADMIN_PW);
    assert_eq!(p.curl("PUT", "/v1/bdbs/1/passwords", creds, Some(r#"{"password": "pw-one"}"#)).await.0, 200);
    let mut conn = Conn::connect(&p.bdb(1)).await;
    assert_eq!(show(&conn.cmd(&["AUTH", "guess-1"]).await), WRONGPASS);
    assert_eq!(p.curl("POST", "/v1/bdbs/1/passwords", creds, Some(r#"{"password": "pw-two"}"#)).await.0, 200);
    // Killed right after the 200: the change and the failure written with it stay.
    let p = p.kill9_and_restart().await;
    let (status, body) = p.curl("GET", "/v1/logs", creds, None).await;
    assert_eq!(status, 200);
    let types: Vec<&str> = body.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["passwords_replaced", "auth_failed", "password_added"], "{body}");
    assert_eq!(body[1]["address"], "127.0.0.1");
    assert_eq!(body[2]["actor"], "admin");
    let (status, ready) = p.curl("GET", "/ready", creds, None).await;
    assert_eq!((status, ready), (200, json!({"status": "ready"})));
    // A failure with no change after it is written at a graceful shutdown.
    let mut conn = Conn::connect(&p.bdb(1)).await;
    assert_eq!(show(&conn.cmd(&["AUTH", "intruder", "guess-2"]).await), WRONGPASS);
    drop(conn);
    let p = p.stop_and_restart().await;
    let (_, body) = p.curl("GET", "/v1/logs?order=desc&limit=1", creds, None).await;
    assert_eq!((&body[0]["type"], &body[0]["user"]), (&json!("auth_failed"), &json!("intruder")), "{body}");
    // Neither the trace-level log nor the store holds a password.
    let log = std::fs::read_to_string(dir.path().join("turnstile.log")).unwrap();
    let store = std::fs::read_to_string(dir.path().join("data/state.json")).unwrap();
    for secret in ["pw-one", "pw-two", "guess-1", "guess-2", ADMIN_PW] {
        assert!(!log.contains(secret) && !store.contains(secret), "{secret} leaked");
    }
}
