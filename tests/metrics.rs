//! `GET /metrics`, `/live`, `/ready`: after real AUTHs on a database port, rotations
//! through the API, a throttled address and an unreachable upstream, the scrape shows
//! the exact counts; user labels are bounded; `/ready` flips.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::admin::{ADMIN, ADMIN_PW, admin, call, call_text, ok, settings, start_control_with};
use common::{Conn, Redis, show};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use turnstile::auth::ThrottlePolicy;
use turnstile::control::Control;

const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

async fn scrape(c: &Control) -> String {
    let (status, headers, body) = call_text(c, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    body
}

/// The value of the sample `series` (name and labels, exactly as exposed).
#[track_caller]
fn value(scrape: &str, series: &str) -> f64 {
    let line = scrape
        .lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
        .unwrap_or_else(|| panic!("no sample {series} in\n{scrape}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_counts_auths_rotations_throttling_and_upstream_errors() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.verify.throttle =
        ThrottlePolicy { failures: 3, window: Duration::from_secs(60), block: Duration::from_secs(60) };
    let c = start_control_with(dir.path(), s, CancellationToken::new()).await;
    let up = format!("redis://{}", redis.addr());
    ok(admin(&c, "POST", "/v1/bdbs", json!({"name": "app", "listen": "127.0.0.1:0", "upstream": up})).await);
    // Rotations through all three endpoints.
    ok(admin(&c, "PUT", "/v1/bdbs/1/passwords", json!({"password": "first-secret"})).await);
    ok(admin(&c, "POST", "/v1/bdbs/1/passwords", json!({"password": "second-secret"})).await);
    ok(admin(&c, "DELETE", "/v1/bdbs/1/passwords", json!({"password": "first-secret"})).await);
    ok(admin(&c, "POST", "/v1/roles", json!({"name": "app", "management": "db_viewer"})).await);
    ok(admin(&c, "POST", "/v1/redis_acls", json!({"name": "all", "acl": "+@all ~*"})).await);
    let user =
        json!({"name": "app-user", "email": "app@example.com", "password": "user-pw-1", "role_uids": [1]});
    ok(admin(&c, "POST", "/v1/users", user).await);
    let perms = json!({"roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]});
    ok(admin(&c, "PUT", "/v1/bdbs/1", perms).await);
    ok(admin(&c, "POST", "/v1/users/password", json!({"username": "app-user", "new_password": "user-pw-2"}))
        .await);
    let legacy = json!({"username": "app-user", "old_password": "user-pw-2", "new_password": "user-pw-3"});
    ok(admin(&c, "POST", "/v1/cluster", legacy).await);
    // A refused rotation is not counted.
    assert_eq!(admin(&c, "POST", "/v1/bdbs/1/passwords", json!({"password": "second-secret"})).await.0, 406);
    // A database whose upstream is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = json!({"name": "down", "listen": "127.0.0.1:0", "upstream": format!("redis://{dead}")});
    ok(admin(&c, "POST", "/v1/bdbs", down).await);
    ok(admin(&c, "PUT", "/v1/bdbs/2/passwords", json!({"password": "down-secret"})).await);

    let before = scrape(&c).await;
    let evaluations = value(&before, "turnstile_argon2_evaluations_total");
    let hits = value(&before, "turnstile_auth_cache_hits_total");
    let db = c.bdb_addr(1).unwrap().to_string();
    let mut good = Conn::connect_from("127.0.0.1:0", &db).await;
    assert_eq!(good.cmd(&["AUTH", "second-secret"]).await, b"+OK\r\n");
    assert_eq!(good.cmd(&["AUTH", "app-user", "user-pw-3"]).await, b"+OK\r\n");
    assert_eq!(good.cmd(&["AUTH", "second-secret"]).await, b"+OK\r\n", "from the cache");
    assert_eq!(good.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "on a shared upstream connection");
    // Refused by Redis for lack of rights: once on a lane, once on the client's own
    // connection (a fixed denial), once inside a transaction.
    let noperm = "-NOPERM this user has no permissions to run the";
    ok(admin(&c, "PUT", "/v1/redis_acls/1", json!({"acl": "+get +multi +exec ~*"})).await);
    assert!(show(&good.cmd(&["AUTH", "app-user", "user-pw-3"]).await).starts_with("+OK"));
    assert!(show(&good.cmd(&["SET", "k", "v"]).await).starts_with(noperm));
    assert_eq!(good.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert!(show(&good.cmd(&["CONFIG", "SET", "dir", "/tmp"]).await).starts_with(noperm));
    assert!(show(&good.cmd(&["EXEC"]).await).starts_with("-EXECABORT"));
    assert!(show(&good.cmd(&["SWAPDB", "0", "1"]).await).starts_with(noperm));
    assert_eq!(good.cmd(&["AUTH", "second-secret"]).await, b"+OK\r\n");
    let mut bad = Conn::connect_from("127.0.0.2:0", &db).await;
    assert_eq!(show(&bad.cmd(&["AUTH", "wrong"]).await), WRONGPASS);
    assert_eq!(show(&bad.cmd(&["AUTH", "app-user", "wrong"]).await), WRONGPASS);
    assert_eq!(show(&bad.cmd(&["AUTH", "nosuchuser", "wrong"]).await), WRONGPASS);
    assert_eq!(show(&bad.cmd(&["AUTH", "second-secret"]).await), WRONGPASS, "throttled now");
    let mut stranded = Conn::connect(&c.bdb_addr(2).unwrap().to_string()).await;
    assert_eq!(stranded.cmd(&["AUTH", "down-secret"]).await, b"+OK\r\n");
    assert_eq!(show(&stranded.cmd(&["PING"]).await), "-ERR upstream Redis is unavailable\r\n");

    let m = scrape(&c).await;
    let expect = [
        ("turnstile_bdb_connections{bdb=\"1\"}", 2.0),
        ("turnstile_bdb_connections_accepted_total{bdb=\"1\"}", 2.0),
        // The default user's lane, and app-user's rule's.
        ("turnstile_bdb_upstream_shared_connections{bdb=\"1\"}", 2.0),
        ("turnstile_bdb_noperm_total{bdb=\"1\"}", 3.0),
        ("turnstile_bdb_noperm_total{bdb=\"2\"}", 0.0),
        ("turnstile_bdb_upstream_shared_connections{bdb=\"2\"}", 0.0),
        ("turnstile_bdb_auth_total{bdb=\"1\",result=\"success\"}", 5.0),
        ("turnstile_bdb_auth_total{bdb=\"1\",result=\"failure\"}", 3.0),
        ("turnstile_bdb_auth_total{bdb=\"1\",result=\"throttled\"}", 1.0),
        ("turnstile_bdb_auth_total{bdb=\"2\",result=\"success\"}", 1.0),
        ("turnstile_bdb_upstream_errors_total{bdb=\"1\",kind=\"connect\"}", 0.0),
        ("turnstile_bdb_upstream_errors_total{bdb=\"2\",kind=\"connect\"}", 1.0),
        ("turnstile_user_auth_total{user=\"app-user\",result=\"success\"}", 2.0),
        ("turnstile_user_auth_total{user=\"app-user\",result=\"failure\"}", 1.0),
        // Admin logins are not database AUTHs.
        ("turnstile_user_auth_total{user=\"admin\",result=\"success\"}", 0.0),
        ("turnstile_user_auth_total{user=\"other\",result=\"failure\"}", 1.0),
        ("turnstile_throttle_blocks_total", 1.0),
        ("turnstile_throttled_addresses", 1.0),
        ("turnstile_throttle_refused_total", 1.0),
        ("turnstile_password_rotations_total{endpoint=\"bdb_passwords\",op=\"replace\"}", 2.0),
        ("turnstile_password_rotations_total{endpoint=\"bdb_passwords\",op=\"add\"}", 1.0),
        ("turnstile_password_rotations_total{endpoint=\"bdb_passwords\",op=\"remove\"}", 1.0),
        ("turnstile_password_rotations_total{endpoint=\"users_password\",op=\"add\"}", 1.0),
        ("turnstile_password_rotations_total{endpoint=\"cluster\",op=\"add\"}", 1.0),
        ("turnstile_password_rotations_total{endpoint=\"cluster\",op=\"replace\"}", 0.0),
        // Per route template, never per raw path; the refused POST is a 4xx.
        (
            "turnstile_admin_request_duration_seconds_count{route=\"/v1/bdbs/{uid}/passwords\",method=\"PUT\",status=\"2xx\"}",
            2.0,
        ),
        (
            "turnstile_admin_request_duration_seconds_count{route=\"/v1/bdbs/{uid}/passwords\",method=\"POST\",status=\"4xx\"}",
            1.0,
        ),
        (
            "turnstile_admin_request_duration_seconds_bucket{route=\"/v1/bdbs\",method=\"POST\",status=\"2xx\",le=\"+Inf\"}",
            2.0,
        ),
        (
            "turnstile_admin_request_duration_seconds_count{route=\"/metrics\",method=\"GET\",status=\"2xx\"}",
            1.0,
        ),
    ];
    for (series, v) in expect {
        assert_eq!(value(&m, series), v, "{series}");
    }
    // Two successes and three failures cost argon2 (the bdb 2 AUTH too); the
    // repeated success came from the cache; the throttled attempt cost nothing.
    assert_eq!(value(&m, "turnstile_argon2_evaluations_total") - evaluations, 6.0);
    // Plus the two repeated AUTHs around the rule change, and the admin login of
    // that PUT (admin logins check through the same cache).
    assert_eq!(value(&m, "turnstile_auth_cache_hits_total") - hits, 4.0);
    // The event log has the block, once, with the address.
    let events = ok(admin(&c, "GET", "/v1/logs", Value::Null).await);
    let blocks: Vec<&Value> =
        events.as_array().unwrap().iter().filter(|e| e["type"] == "address_throttled").collect();
    assert_eq!(blocks.len(), 1, "{events}");
    assert_eq!((&blocks[0]["address"], &blocks[0]["bdb_uid"]), (&json!("127.0.0.2"), &json!(1)));
    // A name from the network that is no user's never becomes a label; no secret shows.
    for absent in
        ["nosuchuser", "first-secret", "second-secret", "user-pw", "wrong", "argon2id$", "/v1/bdbs/1/"]
    {
        assert!(!m.contains(absent), "{absent} in the scrape");
    }
}

#[tokio::test]
async fn user_labels_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_control_with(dir.path(), settings(), CancellationToken::new()).await;
    // With the bootstrap admin: 106 users; the first 100 by name get labels.
    for i in 0..105 {
        c.directory().set_user(&format!("u{i:03}"), vec![]).unwrap();
    }
    assert!(c.directory().authenticate(9, Some(b"u104"), b"x").await.is_none());
    assert!(c.directory().authenticate(9, Some(b"u000"), b"x").await.is_none());
    assert!(c.directory().authenticate(9, Some(b"ghost"), b"x").await.is_none());
    let m = scrape(&c).await;
    let series = m.lines().filter(|l| l.starts_with("turnstile_user_auth_total{")).count();
    assert_eq!(series, 2 * 101, "100 users and other, success and failure");
    assert_eq!(value(&m, "turnstile_user_auth_total{user=\"u000\",result=\"failure\"}"), 1.0);
    assert!(m.contains("user=\"u098\"") && !m.contains("user=\"u099\"") && !m.contains("ghost"));
    assert_eq!(value(&m, "turnstile_user_auth_total{user=\"other\",result=\"failure\"}"), 2.0);
}

#[tokio::test]
async fn metrics_auth_requires_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.metrics_auth = true;
    let c = start_control_with(dir.path(), s, CancellationToken::new()).await;
    let (status, headers, _) = call_text(&c, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"turnstile\"");
    assert_eq!(call_text(&c, "GET", "/metrics", Some((ADMIN, "wrong"))).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, body) = call_text(&c, "GET", "/metrics", Some((ADMIN, ADMIN_PW))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("# TYPE turnstile_argon2_evaluations_total counter\n"));
    // Health endpoints never need credentials.
    assert_eq!(call_text(&c, "GET", "/live", None).await.0, StatusCode::OK);
    assert_eq!(call_text(&c, "GET", "/ready", None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_flips_with_unbound_databases_and_shutdown() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let a = start_control_with(dir.path(), settings(), stop.clone()).await;
    let get = |c: Control, path: &'static str| async move {
        let (s, v, _) = call(&c, "GET", path, None, None).await;
        (s, v)
    };
    assert_eq!(get(a.clone(), "/ready").await, (StatusCode::OK, json!({"status": "ready"})));
    assert_eq!(get(a.clone(), "/live").await, (StatusCode::OK, json!({"status": "live"})));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let up = format!("redis://{}", redis.addr());
    let listen = format!("127.0.0.1:{port}");
    ok(admin(&a, "POST", "/v1/bdbs", json!({"name": "app", "listen": listen, "upstream": up})).await);
    assert_eq!(get(a.clone(), "/ready").await.0, StatusCode::OK);
    // A second node on a copy of the store: its database's port is taken.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("state.json"), copy.path().join("state.json")).unwrap();
    let b = start_control_with(copy.path(), settings(), CancellationToken::new()).await;
    let expected = json!({"status": "not_ready", "reason": "database endpoints not listening: [1]"});
    assert_eq!(get(b.clone(), "/ready").await, (StatusCode::SERVICE_UNAVAILABLE, expected));
    assert_eq!(get(b.clone(), "/live").await.0, StatusCode::OK);
    ok(admin(&b, "DELETE", "/v1/bdbs/1", Value::Null).await);
    assert_eq!(get(b.clone(), "/ready").await.0, StatusCode::OK);
    // Shutting down: not ready any more, still live.
    stop.cancel();
    let expected = json!({"status": "not_ready", "reason": "shutting down"});
    assert_eq!(get(a.clone(), "/ready").await, (StatusCode::SERVICE_UNAVAILABLE, expected));
    assert_eq!(get(a.clone(), "/live").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_lost_mid_request_is_counted() {
    let mut redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let c = start_control_with(dir.path(), settings(), CancellationToken::new()).await;
    let up = format!("redis://{}", redis.addr());
    ok(admin(&c, "POST", "/v1/bdbs", json!({"name": "app", "listen": "127.0.0.1:0", "upstream": up})).await);
    ok(admin(&c, "PUT", "/v1/bdbs/1/passwords", json!({"password": "pw"})).await);
    let mut conn = Conn::connect(&c.bdb_addr(1).unwrap().to_string()).await;
    assert_eq!(conn.cmd(&["AUTH", "pw"]).await, b"+OK\r\n");
    assert_eq!(conn.cmd(&["PING"]).await, b"+PONG\r\n");
    // Owed a reply when Redis dies.
    conn.send(&common::cmd_bytes(&["BLPOP", "nothing", "0"])).await;
    let series = "turnstile_bdb_upstream_errors_total{bdb=\"1\",kind=\"lost\"}";
    assert_eq!(value(&scrape(&c).await, series), 0.0);
    // BLPOP is in Redis before it dies: wait until Redis reports the blocked client.
    let mut direct = redis.connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !show(&direct.cmd(&["INFO", "clients"]).await).contains("blocked_clients:1") {
        assert!(tokio::time::Instant::now() < deadline, "BLPOP never reached Redis");
        tokio::task::yield_now().await;
    }
    redis.kill();
    assert_eq!(show(&conn.read_to_close().await), "-ERR upstream Redis closed the connection\r\n");
    assert_eq!(value(&scrape(&c).await, series), 1.0);
}
