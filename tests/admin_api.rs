//! Admin REST API at the router level (`oneshot`): every endpoint and method of
//! admin-api.md, RS field names, error bodies and codes, the permission table,
//! password complexity, lockout, expiration, malformed bodies, concurrency and live
//! listeners. Every response is checked for leaked passwords and hashes.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64ct::{Base64, Encoding};
use common::admin::*;
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use turnstile::auth::SetId;
use turnstile::control::Control;

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const ADMIN_CREDS: (&str, &str) = (ADMIN, ADMIN_PW);

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Values of the request body that are secrets: strings under a key that mentions
/// "password" (but not the name of an environment variable).
fn secrets_in(body: &Value, out: &mut Vec<String>) {
    match body {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if k.contains("password") && !k.ends_with("_env") => out.push(s.clone()),
                    _ => secrets_in(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| secrets_in(v, out)),
        _ => {}
    }
}

/// No response may contain a hash or a password that the request carried.
fn assert_no_secrets(resp: &Value, auth: Option<(&str, &str)>, body: Option<&str>, what: &str) {
    let text = resp.to_string();
    assert!(!text.contains("$argon2"), "{what}: a hash leaked: {text}");
    let mut secrets: Vec<String> = auth.map(|(_, pw)| pw.to_string()).into_iter().collect();
    if let Some(v) = body.and_then(|b| serde_json::from_str::<Value>(b).ok()) {
        secrets_in(&v, &mut secrets);
    }
    for s in secrets.iter().filter(|s| s.len() >= 6) {
        assert!(!text.contains(s.as_str()), "{what}: password {s:?} leaked: {text}");
    }
}

/// One request through the router, checked for leaks.
async fn req(
    c: &Control,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&str>,
) -> (StatusCode, Value, HeaderMap) {
    let (s, v, h) = call(c, method, path, auth, body).await;
    assert_no_secrets(&v, auth, body, &format!("{method} {path}"));
    (s, v, h)
}

/// A request with a JSON body (`Value::Null` = no body) as `creds`.
async fn as_user(
    c: &Control,
    creds: (&str, &str),
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let text = (!body.is_null()).then(|| body.to_string());
    let (s, v, _) = req(c, method, path, Some(creds), text.as_deref()).await;
    (s, v)
}

/// A request as the bootstrap admin.
async fn adm(c: &Control, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    as_user(c, ADMIN_CREDS, method, path, body).await
}

/// A request with a raw (possibly malformed) body as the bootstrap admin.
async fn adm_raw(c: &Control, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let (s, v, _) = req(c, method, path, Some(ADMIN_CREDS), Some(body)).await;
    (s, v)
}

/// A request with arbitrary headers (for malformed `Authorization` values).
async fn raw_request(
    c: &Control,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, HeaderMap) {
    let mut r = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = turnstile::admin::app(c.clone()).oneshot(r.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("non-JSON body: {:?}", String::from_utf8_lossy(&bytes)));
    (status, value, headers)
}

/// 200 with a JSON body; returns the body.
#[track_caller]
fn ok(r: (StatusCode, Value)) -> Value {
    assert_eq!(r.0, StatusCode::OK, "expected 200, got {r:?}");
    r.1
}

/// An RS error body with this status and error_code; returns the description.
#[track_caller]
fn err(r: (StatusCode, Value), status: u16, code: &str) -> String {
    assert_eq!(r.0.as_u16(), status, "expected {status} {code}, got {r:?}");
    assert_eq!(r.1["error_code"], code, "{r:?}");
    let d = r.1["description"].as_str().unwrap_or_else(|| panic!("no description: {r:?}")).to_string();
    assert!(!d.is_empty(), "{r:?}");
    assert_eq!(r.1["message"], r.1["description"], "message and description differ: {r:?}");
    d
}

#[track_caller]
fn forbidden(r: (StatusCode, Value)) {
    err(r, 403, "unauthorized_action");
}

async fn create_user(c: &Control, name: &str, email: &str, pw: &str, role: &str) -> u32 {
    let u =
        ok(adm(c, "POST", "/v1/users", json!({"name": name, "email": email, "password": pw, "role": role}))
            .await);
    assert_eq!(u["name"], name);
    u["uid"].as_u64().unwrap() as u32
}

async fn create_bdb(c: &Control, name: &str, redis: &Redis) -> Value {
    ok(adm(
        c,
        "POST",
        "/v1/bdbs",
        json!({"name": name, "listen": "127.0.0.1:0", "upstream": format!("redis://{}", redis.addr())}),
    )
    .await)
}

fn uid_of(v: &Value) -> u32 {
    v["uid"].as_u64().unwrap_or_else(|| panic!("no uid in {v}")) as u32
}

/// Can `creds` log in (any endpoint every role may use)?
async fn login_status(c: &Control, creds: (&str, &str)) -> StatusCode {
    as_user(c, creds, "GET", "/v1/cluster", Value::Null).await.0
}

fn bdb_passwords(c: &Control, uid: u32) -> usize {
    c.directory().passwords(&SetId::BdbDefault(uid)).unwrap().len()
}

fn user_passwords(c: &Control, name: &str) -> usize {
    c.directory().passwords(&SetId::User(name.into())).unwrap().len()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> =
        v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

fn sorted(k: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

// ---------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdbs_create_list_get_partial_update_delete() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let up = format!("redis://{}", redis.addr());
    assert_eq!(ok(adm(c, "GET", "/v1/bdbs", Value::Null).await), json!([]));

    let b = create_bdb(c, "app", &redis).await;
    assert_eq!(
        keys(&b),
        sorted(&[
            "uid",
            "name",
            "port",
            "listen",
            "upstream",
            "upstream_password_env",
            "sentinel_username",
            "sentinel_password_env",
            "primary_address",
            "default_user",
            "roles_permissions",
            "disconnect_clients_on_password_removal",
            "max_connections",
            "tls_mode",
            "enforce_client_authentication",
            "status"
        ])
    );
    // A fixed upstream: no Sentinel, no primary to show.
    assert_eq!(b["primary_address"], Value::Null);
    assert_eq!(b["uid"], 1);
    assert_eq!(b["name"], "app");
    let port = b["port"].as_u64().unwrap();
    assert_ne!(port, 0, "the real port is reported, not 0");
    assert_eq!(b["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(b["upstream"], up);
    assert_eq!(b["default_user"], true);
    assert_eq!(b["roles_permissions"], json!([]));
    assert_eq!(b["disconnect_clients_on_password_removal"], false);
    assert_eq!(b["max_connections"], 0);
    assert_eq!(b["tls_mode"], "disabled");
    assert_eq!(b["enforce_client_authentication"], "disabled");
    assert_eq!(b["status"], "active");

    // RS style: `port` instead of `listen`, explicit uid; the next free uid follows it.
    let b7 =
        ok(adm(c, "POST", "/v1/bdbs", json!({"uid": 7, "name": "rs-style", "port": 0, "upstream": up}))
            .await);
    assert_eq!(b7["uid"], 7);
    assert!(b7["listen"].as_str().unwrap().starts_with("127.0.0.1:"), "{b7}");
    assert_ne!(b7["port"], 0);
    let b8 = create_bdb(c, "third", &redis).await;
    assert_eq!(b8["uid"], 8);

    let list = ok(adm(c, "GET", "/v1/bdbs", Value::Null).await);
    let uids: Vec<u64> = list.as_array().unwrap().iter().map(|b| b["uid"].as_u64().unwrap()).collect();
    assert_eq!(uids, vec![1, 7, 8]);
    assert_eq!(ok(adm(c, "GET", "/v1/bdbs/7", Value::Null).await), b7);

    // PUT changes only the fields it is given.
    let u = ok(adm(c, "PUT", "/v1/bdbs/7", json!({"max_connections": 5})).await);
    assert_eq!(u["max_connections"], 5);
    assert_eq!(u["name"], "rs-style");
    assert_eq!(u["port"], b7["port"]);
    assert_eq!(u["default_user"], true);
    let u = ok(adm(
        c,
        "PUT",
        "/v1/bdbs/7",
        json!({"name": "renamed", "default_user": false, "disconnect_clients_on_password_removal": true}),
    )
    .await);
    assert_eq!(u["name"], "renamed");
    assert_eq!(u["max_connections"], 5, "an earlier partial update is kept");
    assert_eq!(u["default_user"], false);
    assert_eq!(u["disconnect_clients_on_password_removal"], true);
    assert_eq!(u["listen"], b7["listen"]);
    assert_eq!(ok(adm(c, "GET", "/v1/bdbs/7", Value::Null).await), u);

    // Conflicts.
    err(adm(c, "PUT", "/v1/bdbs/7", json!({"name": "app"})).await, 409, "bdb_name_already_exists");
    err(
        adm(c, "POST", "/v1/bdbs", json!({"name": "app", "listen": "127.0.0.1:0", "upstream": up})).await,
        409,
        "bdb_name_already_exists",
    );
    err(
        adm(c, "POST", "/v1/bdbs", json!({"uid": 7, "name": "dup", "listen": "127.0.0.1:0", "upstream": up}))
            .await,
        409,
        "bdb_already_exists",
    );
    // Invalid parameters.
    err(adm(c, "POST", "/v1/bdbs", json!({"name": "np", "upstream": up})).await, 400, "missing_parameter");
    err(
        adm(c, "POST", "/v1/bdbs", json!({"name": "tls", "port": 0, "upstream": up, "tls_mode": "enabled"}))
            .await,
        400,
        "invalid_parameter",
    );
    err(
        adm(c, "POST", "/v1/bdbs", json!({"name": "", "port": 0, "upstream": up})).await,
        400,
        "invalid_parameter",
    );
    err(
        adm(c, "POST", "/v1/bdbs", json!({"uid": 0, "name": "zero", "port": 0, "upstream": up})).await,
        400,
        "invalid_parameter",
    );
    err(
        adm(c, "POST", "/v1/bdbs", json!({"name": "bad-up", "port": 0, "upstream": "http://nope"})).await,
        400,
        "invalid_parameter",
    );
    // Upstream credentials are write-only: a password in the URL is refused, unechoed.
    let d = err(
        adm(
            c,
            "POST",
            "/v1/bdbs",
            json!({"name": "secret-up", "port": 0, "upstream": format!("redis://u:S3cretUpstream@{}", redis.addr())}),
        )
        .await,
        400,
        "invalid_parameter",
    );
    assert!(!d.contains("S3cretUpstream"), "{d}");
    let withuser = ok(adm(
        c,
        "POST",
        "/v1/bdbs",
        json!({"name": "with-user", "port": 0, "upstream": format!("redis://alice@{}", redis.addr())}),
    )
    .await);
    assert_eq!(withuser["upstream"], format!("redis://alice@{}", redis.addr()));
    // roles_permissions must name existing objects (a 400 here: it is a body reference).
    err(
        adm(
            c,
            "POST",
            "/v1/bdbs",
            json!({"name": "rp", "port": 0, "upstream": up, "roles_permissions": [{"role_uid": 9, "redis_acl_uid": 9}]}),
        )
        .await,
        400,
        "role_not_exist",
    );
    let count = ok(adm(c, "GET", "/v1/bdbs", Value::Null).await).as_array().unwrap().len();
    assert_eq!(count, 4, "refused creates store nothing");

    // Delete.
    assert_eq!(ok(adm(c, "DELETE", "/v1/bdbs/8", Value::Null).await), json!({}));
    err(adm(c, "GET", "/v1/bdbs/8", Value::Null).await, 404, "bdb_not_exist");
    err(adm(c, "DELETE", "/v1/bdbs/8", Value::Null).await, 404, "bdb_not_exist");
    err(adm(c, "PUT", "/v1/bdbs/8", json!({"max_connections": 1})).await, 404, "bdb_not_exist");
    assert!(c.directory().passwords(&SetId::BdbDefault(8)).is_none(), "deleted from the directory too");

    // Durable: a restart on the same store sees the same objects.
    let c2 = admin.restart().await;
    let (s, v, _) = req(&c2, "GET", "/v1/bdbs/7", Some(ADMIN_CREDS), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["max_connections"], 5);
    let (s, _, _) = req(&c2, "GET", "/v1/bdbs/8", Some(ADMIN_CREDS), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdb_passwords_put_post_delete_and_the_alias_without_v1() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let b = create_bdb(c, "app", &redis).await;
    let uid = uid_of(&b);
    let path = format!("/v1/bdbs/{uid}/passwords");
    let listen = b["listen"].as_str().unwrap().to_string();
    assert_eq!(bdb_passwords(c, uid), 0);

    // POST adds.
    assert_eq!(ok(adm(c, "POST", &path, json!({"password": "first-Pw-1"})).await), json!({}));
    assert_eq!(bdb_passwords(c, uid), 1);
    err(adm(c, "POST", &path, json!({"password": "first-Pw-1"})).await, 406, "new_password_same_as_current");
    ok(adm(c, "POST", &path, json!({"password": "second-Pw-2"})).await);
    assert_eq!(bdb_passwords(c, uid), 2);
    let mut conn = Conn::connect(&listen).await;
    assert_eq!(conn.cmd(&["AUTH", "first-Pw-1"]).await, b"+OK\r\n");
    assert_eq!(conn.cmd(&["AUTH", "default", "second-Pw-2"]).await, b"+OK\r\n");

    // DELETE removes one; not present and the last one are refused.
    err(adm(c, "DELETE", &path, json!({"password": "never-added"})).await, 406, "password_not_found");
    ok(adm(c, "DELETE", &path, json!({"password": "first-Pw-1"})).await);
    assert_eq!(bdb_passwords(c, uid), 1);
    assert_eq!(Conn::connect(&listen).await.cmd(&["AUTH", "first-Pw-1"]).await, WRONGPASS);
    err(
        adm(c, "DELETE", &path, json!({"password": "second-Pw-2"})).await,
        406,
        "cannot_delete_last_password",
    );
    assert_eq!(bdb_passwords(c, uid), 1);

    // PUT replaces the whole set.
    ok(adm(c, "POST", &path, json!({"password": "third-Pw-3"})).await);
    ok(adm(c, "PUT", &path, json!({"password": "fourth-Pw-4"})).await);
    assert_eq!(bdb_passwords(c, uid), 1);
    let mut conn = Conn::connect(&listen).await;
    assert_eq!(conn.cmd(&["AUTH", "second-Pw-2"]).await, WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "third-Pw-3"]).await, WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "fourth-Pw-4"]).await, b"+OK\r\n");

    // Empty passwords: 406 invalid_password for every method.
    for m in ["PUT", "POST", "DELETE"] {
        err(adm(c, m, &path, json!({"password": ""})).await, 406, "invalid_password");
    }
    assert_eq!(bdb_passwords(c, uid), 1);

    // The seed's own example: `PUT /bdbs/1/passwords`, no /v1.
    let alias = format!("/bdbs/{uid}/passwords");
    ok(adm(c, "PUT", &alias, json!({"password": "new password"})).await);
    ok(adm(c, "POST", &alias, json!({"password": "password to add"})).await);
    assert_eq!(bdb_passwords(c, uid), 2);
    err(adm(c, "DELETE", &alias, json!({"password": "password to delete"})).await, 406, "password_not_found");
    ok(adm(c, "DELETE", &alias, json!({"password": "new password"})).await);
    err(
        adm(c, "POST", &alias, json!({"password": "password to add"})).await,
        406,
        "new_password_same_as_current",
    );
    let mut conn = Conn::connect(&listen).await;
    assert_eq!(conn.cmd(&["AUTH", "fourth-Pw-4"]).await, WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "new password"]).await, WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "password to add"]).await, b"+OK\r\n");

    // No such database: 404 on both paths, for every method, integer or not.
    for p in
        ["/v1/bdbs/999/passwords", "/bdbs/999/passwords", "/v1/bdbs/abc/passwords", "/bdbs/abc/passwords"]
    {
        for m in ["PUT", "POST", "DELETE"] {
            err(adm(c, m, p, json!({"password": "Whatever-1!"})).await, 404, "bdb_not_exist");
        }
    }

    // Durable.
    let c2 = admin.restart().await;
    assert_eq!(bdb_passwords(&c2, uid), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bdb_created_through_the_api_serves_at_once_and_delete_stops_it() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let up = format!("redis://{}", redis.addr());
    let b = create_bdb(c, "live", &redis).await;
    let uid = uid_of(&b);
    let listen = b["listen"].as_str().unwrap().to_string();

    // Answers immediately: AUTH is required, then forwarded to the upstream.
    let mut conn = Conn::connect(&listen).await;
    assert_eq!(conn.cmd(&["PING"]).await, b"-NOAUTH Authentication required.\r\n");
    ok(adm(c, "POST", &format!("/v1/bdbs/{uid}/passwords"), json!({"password": "Live-pw-1!"})).await);
    assert_eq!(conn.cmd(&["AUTH", "wrong-one"]).await, WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "Live-pw-1!"]).await, b"+OK\r\n");
    assert_eq!(conn.cmd(&["SET", "via-api", "yes"]).await, b"+OK\r\n");
    assert_eq!(redis.connect().await.cmd(&["GET", "via-api"]).await, b"$3\r\nyes\r\n");

    // 409 duplicate uid; 406 when the port is taken (by anyone, or by another bdb).
    err(
        adm(
            c,
            "POST",
            "/v1/bdbs",
            json!({"uid": uid, "name": "other", "listen": "127.0.0.1:0", "upstream": up}),
        )
        .await,
        409,
        "bdb_already_exists",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    err(
        adm(c, "POST", "/v1/bdbs", json!({"name": "busy", "listen": taken_addr, "upstream": up})).await,
        406,
        "port_unavailable",
    );
    err(
        adm(c, "POST", "/v1/bdbs", json!({"name": "busy2", "listen": listen, "upstream": up})).await,
        406,
        "port_unavailable",
    );
    err(
        adm(c, "PUT", &format!("/v1/bdbs/{uid}"), json!({"listen": taken_addr})).await,
        406,
        "port_unavailable",
    );
    drop(taken);
    assert_eq!(ok(adm(c, "GET", "/v1/bdbs", Value::Null).await).as_array().unwrap().len(), 1);
    assert_eq!(ok(adm(c, "GET", &format!("/v1/bdbs/{uid}"), Value::Null).await)["listen"], listen.as_str());

    // DELETE: the open connection is closed, the database is gone.
    assert_eq!(ok(adm(c, "DELETE", &format!("/v1/bdbs/{uid}"), Value::Null).await), json!({}));
    conn.read_to_close().await;
    err(adm(c, "GET", &format!("/v1/bdbs/{uid}"), Value::Null).await, 404, "bdb_not_exist");
    // (That the port refuses connections is checked in the next test.)
}

/// When DELETE /v1/bdbs/{uid} answers 200 the listener is stopped: a new connection is
/// refused and the address can be taken again at once. Repeated, because a listener
/// closed asynchronously after the answer only shows up now and then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bdb_has_released_its_port_when_it_answers() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let up = format!("redis://{}", redis.addr());
    let (mut accepted, mut not_rebindable) = (0, 0);
    const ROUNDS: usize = 60;
    for i in 0..ROUNDS {
        // A port below the ephemeral range (32768–60999 on Linux): other tests'
        // `bind(:0)` and outgoing connections can then not take it between the
        // DELETE and the rebind, which would look like a listener left behind.
        let port = 20000 + (std::process::id() as u16 % 1000) * 10 + (i % 10) as u16;
        let listen = format!("127.0.0.1:{port}");
        assert!(std::net::TcpListener::bind(&listen).is_ok(), "port {port} is busy; rerun");
        let b = ok(adm(
            c,
            "POST",
            "/v1/bdbs",
            json!({"name": format!("round-{i}"), "listen": listen, "upstream": up}),
        )
        .await);
        let listen = b["listen"].as_str().unwrap().to_string();
        ok(adm(c, "DELETE", &format!("/v1/bdbs/{}", uid_of(&b)), Value::Null).await);
        if i % 2 == 0 {
            if std::net::TcpStream::connect(&listen).is_ok() {
                accepted += 1;
            }
        } else {
            let r = adm(
                c,
                "POST",
                "/v1/bdbs",
                json!({"name": format!("again-{i}"), "listen": listen, "upstream": up}),
            )
            .await;
            match r.0 {
                StatusCode::OK => {
                    ok(adm(c, "DELETE", &format!("/v1/bdbs/{}", uid_of(&r.1)), Value::Null).await);
                }
                _ => {
                    err(r, 406, "port_unavailable");
                    not_rebindable += 1;
                }
            }
        }
    }
    assert_eq!(
        (accepted, not_rebindable),
        (0, 0),
        "after DELETE answered 200: connections accepted in {accepted} of {} rounds, address not \
         reusable (406 port_unavailable) in {not_rebindable} of {} rounds",
        ROUNDS / 2,
        ROUNDS / 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_bdb_to_another_port_serves_there_at_once() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let b = create_bdb(c, "mover", &redis).await;
    let uid = uid_of(&b);
    ok(adm(c, "POST", &format!("/v1/bdbs/{uid}/passwords"), json!({"password": "Mover-pw-1"})).await);
    let moved = ok(adm(c, "PUT", &format!("/v1/bdbs/{uid}"), json!({"listen": "127.0.0.1:0"})).await);
    assert_ne!(moved["listen"], b["listen"]);
    assert_eq!(moved["name"], "mover");
    let mut conn = Conn::connect(moved["listen"].as_str().unwrap()).await;
    assert_eq!(conn.cmd(&["AUTH", "Mover-pw-1"]).await, b"+OK\r\n");
    assert_eq!(conn.cmd(&["PING"]).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_concurrent_bdb_password_adds_all_land_and_survive_a_restart() {
    let admin = Admin::start().await;
    let redis = Redis::start(&[]);
    let b = create_bdb(&admin.control, "busy", &redis).await;
    let uid = uid_of(&b);
    let path = format!("/v1/bdbs/{uid}/passwords");
    ok(adm(&admin.control, "POST", &path, json!({"password": "initial-pw-0"})).await);

    let mut tasks = Vec::new();
    for i in 0..100 {
        let control = admin.control.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"password": format!("concurrent-pw-{i}")}).to_string();
            let (s, v, _) = req(&control, "POST", &path, Some(ADMIN_CREDS), Some(&body)).await;
            (i, s, v)
        }));
    }
    for t in tasks {
        let (i, s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "request {i}: {v}");
    }
    assert_eq!(bdb_passwords(&admin.control, uid), 101);
    let stored = std::fs::read(admin.dir.path().join("state.json")).unwrap();
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["bdbs"][uid.to_string()]["passwords"].as_array().unwrap().len(), 101);

    let c2 = admin.restart().await;
    assert_eq!(bdb_passwords(&c2, uid), 101, "all 101 passwords are in the store after a restart");
    // And they are the right ones: the old listener still runs on the first control.
    let mut conn = Conn::connect(b["listen"].as_str().unwrap()).await;
    for pw in ["initial-pw-0", "concurrent-pw-0", "concurrent-pw-57", "concurrent-pw-99"] {
        assert_eq!(conn.cmd(&["AUTH", pw]).await, b"+OK\r\n", "{pw}");
    }
}

// ---------------------------------------------------------------------------------
// Users and their passwords
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_create_list_get_partial_update_delete() {
    let admin = Admin::start().await;
    let c = &admin.control;

    let list = ok(adm(c, "GET", "/v1/users", Value::Null).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let boot = &list[0];
    assert_eq!(
        keys(boot),
        sorted(&[
            "uid",
            "name",
            "email",
            "role",
            "role_uids",
            "auth_method",
            "status",
            "password_issue_date",
            "last_login"
        ])
    );
    assert_eq!(boot["uid"], 1);
    assert_eq!(boot["name"], ADMIN);
    assert_eq!(boot["email"], ADMIN_EMAIL);
    assert_eq!(boot["role"], "admin");
    assert_eq!(boot["auth_method"], "regular");
    assert_eq!(boot["status"], "active");
    let date = boot["password_issue_date"].as_str().unwrap();
    assert!(date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T', "ISO 8601: {date}");
    assert!(boot["last_login"].is_string(), "the admin just logged in: {boot}");

    // Create: 200 with the object; role defaults to db_viewer.
    let alice = ok(adm(
        c,
        "POST",
        "/v1/users",
        json!({"name": "alice", "email": "alice@example.com", "password": "Alice-pw-1!"}),
    )
    .await);
    assert_eq!(alice["uid"], 2);
    assert_eq!(alice["role"], "db_viewer");
    assert_eq!(alice["role_uids"], json!([]));
    assert_eq!(alice["auth_method"], "regular");
    assert_eq!(alice["status"], "active");
    assert_eq!(alice["last_login"], Value::Null);
    assert_eq!(ok(adm(c, "GET", "/v1/users/2", Value::Null).await), alice);
    let bob = ok(adm(
        c,
        "POST",
        "/v1/users",
        json!({"name": "bob", "email": "bob@example.com", "password": "Bob-pw-1!", "role": "cluster_viewer", "auth_method": "regular"}),
    )
    .await);
    assert_eq!(bob["uid"], 3);
    assert_eq!(bob["role"], "cluster_viewer");
    assert_eq!(ok(adm(c, "GET", "/v1/users", Value::Null).await).as_array().unwrap().len(), 3);

    // Refusals.
    err(
        adm(
            c,
            "POST",
            "/v1/users",
            json!({"name": "alice", "email": "x@example.com", "password": "Pw-12345!"}),
        )
        .await,
        409,
        "user_already_exists",
    );
    err(
        adm(
            c,
            "POST",
            "/v1/users",
            json!({"name": "alice2", "email": "alice@example.com", "password": "Pw-12345!"}),
        )
        .await,
        409,
        "email_already_exists",
    );
    err(
        adm(c, "POST", "/v1/users", json!({"name": "eve", "password": "Pw-12345!", "role": "superuser"}))
            .await,
        400,
        "invalid_role",
    );
    err(
        adm(c, "POST", "/v1/users", json!({"name": "eve", "password": "Pw-12345!", "role_uids": [99]})).await,
        400,
        "role_not_exist",
    );
    err(
        adm(c, "POST", "/v1/users", json!({"name": "eve", "password": "Pw-12345!", "auth_method": "ldap"}))
            .await,
        400,
        "invalid_parameter",
    );
    err(
        adm(c, "POST", "/v1/users", json!({"name": "default", "password": "Pw-12345!"})).await,
        400,
        "invalid_parameter",
    );
    err(
        adm(c, "POST", "/v1/users", json!({"name": "", "password": "Pw-12345!"})).await,
        400,
        "invalid_parameter",
    );
    err(adm(c, "POST", "/v1/users", json!({"name": "eve", "password": ""})).await, 400, "invalid_password");
    let d = err(adm(c, "POST", "/v1/users", json!({"name": "eve"})).await, 400, "invalid_json");
    assert!(d.contains("password"), "names the missing field: {d}");
    assert_eq!(ok(adm(c, "GET", "/v1/users", Value::Null).await).as_array().unwrap().len(), 3);

    // PUT changes only the fields it is given.
    let u = ok(adm(c, "PUT", "/v1/users/2", json!({"email": "alice2@example.com"})).await);
    assert_eq!(u["email"], "alice2@example.com");
    assert_eq!(u["name"], "alice");
    assert_eq!(u["role"], "db_viewer");
    assert_eq!(login_status(c, ("alice2@example.com", "Alice-pw-1!")).await, StatusCode::OK);
    assert_eq!(login_status(c, ("alice@example.com", "Alice-pw-1!")).await, StatusCode::UNAUTHORIZED);
    let u = ok(adm(c, "PUT", "/v1/users/2", json!({"role": "db_member"})).await);
    assert_eq!(u["role"], "db_member");
    assert_eq!(u["email"], "alice2@example.com");
    err(adm(c, "PUT", "/v1/users/2", json!({"email": ADMIN_EMAIL})).await, 409, "email_already_exists");
    err(adm(c, "PUT", "/v1/users/2", json!({"name": "bob"})).await, 409, "user_already_exists");
    err(adm(c, "PUT", "/v1/users/2", json!({"role": "root"})).await, 400, "invalid_role");
    err(adm(c, "PUT", "/v1/users/2", json!({"role_uids": [42]})).await, 400, "role_not_exist");
    err(adm(c, "PUT", "/v1/users/2", json!({"password": ""})).await, 400, "invalid_password");
    assert_eq!(ok(adm(c, "GET", "/v1/users/2", Value::Null).await)["role"], "db_member");

    // A password in PUT replaces all of the user's passwords.
    ok(adm(c, "POST", "/v1/users/password", json!({"username": "alice", "new_password": "Alice-pw-2!"}))
        .await);
    assert_eq!(user_passwords(c, "alice"), 2);
    let before = ok(adm(c, "GET", "/v1/users/2", Value::Null).await);
    let u = ok(adm(c, "PUT", "/v1/users/2", json!({"password": "Alice-reset-3!"})).await);
    assert_eq!(u["role"], "db_member", "a password reset changes nothing else");
    assert_eq!(u["email"], before["email"]);
    assert_eq!(user_passwords(c, "alice"), 1);
    assert_eq!(login_status(c, ("alice", "Alice-pw-1!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(c, ("alice", "Alice-pw-2!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(c, ("alice", "Alice-reset-3!")).await, StatusCode::OK);

    // Renaming keeps the passwords; the old name no longer logs in.
    let u = ok(adm(c, "PUT", "/v1/users/2", json!({"name": "alice-renamed"})).await);
    assert_eq!(u["name"], "alice-renamed");
    assert_eq!(login_status(c, ("alice-renamed", "Alice-reset-3!")).await, StatusCode::OK);
    assert_eq!(login_status(c, ("alice", "Alice-reset-3!")).await, StatusCode::UNAUTHORIZED);
    assert!(ok(adm(c, "GET", "/v1/users/2", Value::Null).await)["last_login"].is_string());

    // Delete.
    assert_eq!(ok(adm(c, "DELETE", "/v1/users/2", Value::Null).await), json!({}));
    err(adm(c, "GET", "/v1/users/2", Value::Null).await, 404, "user_not_exist");
    err(adm(c, "DELETE", "/v1/users/2", Value::Null).await, 404, "user_not_exist");
    err(adm(c, "PUT", "/v1/users/2", json!({"role": "db_viewer"})).await, 404, "user_not_exist");
    assert_eq!(login_status(c, ("alice-renamed", "Alice-reset-3!")).await, StatusCode::UNAUTHORIZED);

    // The last admin cannot be deleted; with a second admin, one can go.
    err(adm(c, "DELETE", "/v1/users/1", Value::Null).await, 406, "cannot_delete_last_admin");
    let a2 = create_user(c, "admin2", "admin2@example.com", "Admin2-pw-1!", "admin").await;
    ok(as_user(c, ("admin2", "Admin2-pw-1!"), "DELETE", "/v1/users/1", Value::Null).await);
    err(
        as_user(c, ("admin2", "Admin2-pw-1!"), "DELETE", &format!("/v1/users/{a2}"), Value::Null).await,
        406,
        "cannot_delete_last_admin",
    );
    assert_eq!(login_status(c, ADMIN_CREDS).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_password_endpoint_add_replace_delete() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let bob_uid = create_user(c, "bob", "bob@example.com", "Bob-pw-1!", "db_viewer").await;
    let p = "/v1/users/password";

    // Admin adds for bob (seed 001 body): both passwords log in, by name and by email.
    assert_eq!(
        ok(adm(c, "POST", p, json!({"username": "bob", "new_password": "Bob-pw-2!"})).await),
        json!({})
    );
    for login in ["bob", "bob@example.com"] {
        for pw in ["Bob-pw-1!", "Bob-pw-2!"] {
            assert_eq!(login_status(c, (login, pw)).await, StatusCode::OK, "{login} {pw}");
        }
    }
    err(
        adm(c, "POST", p, json!({"username": "bob", "new_password": "Bob-pw-2!"})).await,
        400,
        "new_password_same_as_current",
    );
    // old_password in a POST is accepted and ignored (even when wrong).
    ok(adm(
        c,
        "POST",
        p,
        json!({"username": "bob", "old_password": "not-his-password", "new_password": "Bob-pw-3!"}),
    )
    .await);
    assert_eq!(user_passwords(c, "bob"), 3);

    // DELETE removes one password.
    ok(adm(c, "DELETE", p, json!({"username": "bob", "old_password": "Bob-pw-1!"})).await);
    assert_eq!(login_status(c, ("bob", "Bob-pw-1!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(c, ("bob", "Bob-pw-3!")).await, StatusCode::OK);
    err(
        adm(c, "DELETE", p, json!({"username": "bob", "old_password": "Bob-pw-1!"})).await,
        400,
        "password_not_found",
    );

    // Username absent = the caller; old_password in PUT is ignored; PUT replaces all.
    let bob = ("bob", "Bob-pw-3!");
    ok(as_user(c, bob, "PUT", p, json!({"new_password": "Bob-pw-4!", "old_password": "wrong-and-ignored"}))
        .await);
    assert_eq!(user_passwords(c, "bob"), 1);
    assert_eq!(login_status(c, ("bob", "Bob-pw-2!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(c, ("bob", "Bob-pw-3!")).await, StatusCode::UNAUTHORIZED);
    let bob = ("bob@example.com", "Bob-pw-4!");
    ok(as_user(c, bob, "POST", p, json!({"new_password": "Bob-pw-5!"})).await);
    ok(as_user(c, bob, "DELETE", p, json!({"old_password": "Bob-pw-5!"})).await);
    err(
        as_user(c, bob, "DELETE", p, json!({"old_password": "Bob-pw-4!"})).await,
        400,
        "cannot_delete_last_password",
    );
    // The admin's own set, username absent.
    ok(adm(c, "POST", p, json!({"new_password": "Admin-pw-2!"})).await);
    assert_eq!(login_status(c, (ADMIN_EMAIL, "Admin-pw-2!")).await, StatusCode::OK);
    assert_eq!(login_status(c, (ADMIN, ADMIN_PW)).await, StatusCode::OK);

    // Parameter errors.
    err(adm(c, "POST", p, json!({"username": "bob"})).await, 400, "missing_parameter");
    err(
        adm(c, "PUT", p, json!({"username": "bob", "old_password": "Bob-pw-4!"})).await,
        400,
        "missing_parameter",
    );
    err(
        adm(c, "DELETE", p, json!({"username": "bob", "new_password": "Bob-pw-6!"})).await,
        400,
        "missing_parameter",
    );
    err(adm(c, "POST", p, json!({"username": "bob", "new_password": ""})).await, 400, "invalid_password");
    err(
        adm(c, "POST", p, json!({"username": "ghost", "new_password": "Ghost-pw-1!"})).await,
        404,
        "user_not_exist",
    );
    err(
        adm(c, "DELETE", p, json!({"username": "ghost", "old_password": "Ghost-pw-1!"})).await,
        404,
        "user_not_exist",
    );
    // The database default user is not a user here.
    err(
        adm(c, "POST", p, json!({"username": "default", "new_password": "Def-pw-1!"})).await,
        404,
        "user_not_exist",
    );
    // (turnstile) `username` is the user's name, not its email.
    err(
        adm(c, "POST", p, json!({"username": "bob@example.com", "new_password": "Bob-pw-7!"})).await,
        404,
        "user_not_exist",
    );
    assert_eq!(user_passwords(c, "bob"), 1);
    assert_eq!(ok(adm(c, "GET", &format!("/v1/users/{bob_uid}"), Value::Null).await)["status"], "active");

    // Durable.
    let c2 = admin.restart().await;
    assert_eq!(login_status(&c2, ("bob", "Bob-pw-4!")).await, StatusCode::OK);
    assert_eq!(login_status(&c2, ("bob", "Bob-pw-3!")).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_rotation_on_v1_cluster_as_in_seed_000() {
    let admin = Admin::start().await;
    let c = &admin.control;
    ok(adm(c, "PUT", "/v1/cluster/policy", json!({"login_lockout_threshold": 0})).await);
    create_user(c, "carol", "carol@example.com", "Carol-pw-1!", "db_viewer").await;
    let p = "/v1/cluster";

    // POST adds new_password; old_password must be current.
    ok(adm(
        c,
        "POST",
        p,
        json!({"username": "carol", "old_password": "Carol-pw-1!", "new_password": "Carol-pw-2!"}),
    )
    .await);
    assert_eq!(user_passwords(c, "carol"), 2);
    assert_eq!(login_status(c, ("carol", "Carol-pw-2!")).await, StatusCode::OK);
    err(
        adm(
            c,
            "POST",
            p,
            json!({"username": "carol", "old_password": "Not-current-1!", "new_password": "Carol-pw-3!"}),
        )
        .await,
        400,
        "invalid_old_password",
    );
    err(
        adm(c, "POST", p, json!({"username": "carol", "new_password": "Carol-pw-3!"})).await,
        400,
        "missing_parameter",
    );
    err(
        adm(c, "POST", p, json!({"username": "carol", "old_password": "Carol-pw-1!"})).await,
        400,
        "missing_parameter",
    );
    assert_eq!(user_passwords(c, "carol"), 2);
    assert_eq!(login_status(c, ("carol", "Carol-pw-3!")).await, StatusCode::UNAUTHORIZED);

    // The seed's literal POST body (missing comma, trailing comma) is a clear 400.
    let seed = "{\n    \"username\": \"carol\"\n    \"old_password\": \"Carol-pw-1!\",\n    \"new_password\": \"Carol-pw-9!\",\n    }";
    for m in ["POST", "PUT"] {
        let d = err(adm_raw(c, m, p, seed).await, 400, "invalid_json");
        assert!(d.contains("line 3 column 5"), "{m}: names the position: {d}");
    }
    // With the comma fixed, the trailing comma alone is still refused.
    let trailing = "{\n    \"username\": \"carol\",\n    \"old_password\": \"Carol-pw-1!\",\n    \"new_password\": \"Carol-pw-9!\",\n    }";
    for m in ["POST", "PUT"] {
        let d = err(adm_raw(c, m, p, trailing).await, 400, "invalid_json");
        assert!(d.contains("trailing comma") && d.contains("line 5 column 5"), "{m}: {d}");
    }
    assert_eq!(user_passwords(c, "carol"), 2);
    assert_eq!(login_status(c, ("carol", "Carol-pw-9!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ok(adm(c, "GET", p, Value::Null).await)["name"], "turnstile", "settings untouched");

    // DELETE removes old_password (the seed's DELETE body is well-formed).
    let seed_delete = "{\n    \"username\": \"carol\",\n    \"old_password\": \"Carol-pw-1!\"\n    }";
    ok(adm_raw(c, "DELETE", p, seed_delete).await);
    assert_eq!(login_status(c, ("carol", "Carol-pw-1!")).await, StatusCode::UNAUTHORIZED);
    err(
        adm(c, "DELETE", p, json!({"username": "carol", "old_password": "Carol-pw-2!"})).await,
        400,
        "cannot_delete_last_password",
    );
    err(
        adm(c, "DELETE", p, json!({"username": "carol", "old_password": "Carol-pw-1!"})).await,
        400,
        "password_not_found",
    );
    err(adm(c, "DELETE", p, json!({"username": "carol"})).await, 400, "missing_parameter");

    // PUT with a username replaces all with new_password.
    ok(adm(
        c,
        "POST",
        p,
        json!({"username": "carol", "old_password": "Carol-pw-2!", "new_password": "Carol-pw-3!"}),
    )
    .await);
    err(
        adm(
            c,
            "PUT",
            p,
            json!({"username": "carol", "old_password": "Wrong-pw-1!", "new_password": "Carol-pw-4!"}),
        )
        .await,
        400,
        "invalid_old_password",
    );
    assert_eq!(user_passwords(c, "carol"), 2);
    ok(adm(
        c,
        "PUT",
        p,
        json!({"username": "carol", "old_password": "Carol-pw-3!", "new_password": "Carol-pw-4!"}),
    )
    .await);
    assert_eq!(user_passwords(c, "carol"), 1);
    assert_eq!(login_status(c, ("carol", "Carol-pw-2!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(c, ("carol", "Carol-pw-3!")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(c, ("carol", "Carol-pw-4!")).await, StatusCode::OK);

    // Unknown user; username missing on POST/DELETE.
    err(
        adm(
            c,
            "POST",
            p,
            json!({"username": "ghost", "old_password": "Ghost-pw-1!", "new_password": "Ghost-pw-2!"}),
        )
        .await,
        404,
        "user_not_exist",
    );
    let d = err(
        adm(c, "POST", p, json!({"old_password": "Carol-pw-4!", "new_password": "Carol-pw-5!"})).await,
        400,
        "invalid_json",
    );
    assert!(d.contains("username"), "{d}");

    // Admin-only, even for one's own passwords.
    let carol = ("carol", "Carol-pw-4!");
    for m in ["POST", "PUT"] {
        forbidden(
            as_user(
                c,
                carol,
                m,
                p,
                json!({"username": "carol", "old_password": "Carol-pw-4!", "new_password": "Carol-pw-5!"}),
            )
            .await,
        );
    }
    forbidden(
        as_user(c, carol, "DELETE", p, json!({"username": "carol", "old_password": "Carol-pw-4!"})).await,
    );
    assert_eq!(user_passwords(c, "carol"), 1);
}

// ---------------------------------------------------------------------------------
// Roles, Redis ACLs, database access through roles
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_redis_acls_crud_in_use_and_database_access() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);

    // Roles.
    assert_eq!(ok(adm(c, "GET", "/v1/roles", Value::Null).await), json!([]));
    let ops = ok(adm(c, "POST", "/v1/roles", json!({"name": "ops", "management": "db_member"})).await);
    assert_eq!(ops, json!({"uid": 1, "name": "ops", "management": "db_member"}));
    let spare = ok(adm(c, "POST", "/v1/roles", json!({"name": "spare", "management": "none"})).await);
    assert_eq!(spare["uid"], 2);
    err(
        adm(c, "POST", "/v1/roles", json!({"name": "ops", "management": "admin"})).await,
        409,
        "role_already_exists",
    );
    err(adm(c, "POST", "/v1/roles", json!({"name": "x", "management": "bogus"})).await, 400, "invalid_role");
    err(adm(c, "POST", "/v1/roles", json!({"management": "admin"})).await, 400, "missing_parameter");
    err(adm(c, "POST", "/v1/roles", json!({"name": "x"})).await, 400, "missing_parameter");
    assert_eq!(ok(adm(c, "GET", "/v1/roles", Value::Null).await).as_array().unwrap().len(), 2);
    assert_eq!(ok(adm(c, "GET", "/v1/roles/1", Value::Null).await), ops);
    let r = ok(adm(c, "PUT", "/v1/roles/2", json!({"management": "db_viewer"})).await);
    assert_eq!(r, json!({"uid": 2, "name": "spare", "management": "db_viewer"}));
    err(adm(c, "PUT", "/v1/roles/2", json!({"name": "ops"})).await, 409, "role_already_exists");
    err(adm(c, "PUT", "/v1/roles/2", json!({"management": "king"})).await, 400, "invalid_role");
    for m in ["GET", "DELETE"] {
        err(adm(c, m, "/v1/roles/999", Value::Null).await, 404, "role_not_exist");
    }
    err(adm(c, "PUT", "/v1/roles/999", json!({"name": "n"})).await, 404, "role_not_exist");

    // Redis ACLs.
    assert_eq!(ok(adm(c, "GET", "/v1/redis_acls", Value::Null).await), json!([]));
    let ro =
        ok(adm(c, "POST", "/v1/redis_acls", json!({"name": "read-only", "acl": "+@read ~cache:*"})).await);
    assert_eq!(ro, json!({"uid": 1, "name": "read-only", "acl": "+@read ~cache:*"}));
    let all = ok(adm(c, "POST", "/v1/redis_acls", json!({"name": "all", "acl": "+@all ~*"})).await);
    err(
        adm(c, "POST", "/v1/redis_acls", json!({"name": "all", "acl": "+@all"})).await,
        409,
        "redis_acl_already_exists",
    );
    err(adm(c, "POST", "/v1/redis_acls", json!({"name": "noacl"})).await, 400, "missing_parameter");
    err(adm(c, "POST", "/v1/redis_acls", json!({"acl": "+@all"})).await, 400, "missing_parameter");
    assert_eq!(ok(adm(c, "GET", "/v1/redis_acls/1", Value::Null).await), ro);
    let a = ok(adm(c, "PUT", &format!("/v1/redis_acls/{}", all["uid"]), json!({"acl": "+@all"})).await);
    assert_eq!(a["name"], "all");
    assert_eq!(a["acl"], "+@all");
    err(adm(c, "PUT", "/v1/redis_acls/1", json!({"name": "all"})).await, 409, "redis_acl_already_exists");
    for m in ["GET", "DELETE"] {
        err(adm(c, m, "/v1/redis_acls/999", Value::Null).await, 404, "redis_acl_not_exist");
    }
    err(adm(c, "PUT", "/v1/redis_acls/999", json!({"acl": "+@all"})).await, 404, "redis_acl_not_exist");
    err(
        adm(
            c,
            "POST",
            "/v1/bdbs",
            json!({"name": "x", "port": 0, "upstream": format!("redis://{}", redis.addr()), "roles_permissions": [{"role_uid": 1, "redis_acl_uid": 99}]}),
        )
        .await,
        400,
        "redis_acl_not_exist",
    );

    // A user whose role is listed in a bdb's roles_permissions may AUTH there.
    let b = ok(adm(
        c,
        "POST",
        "/v1/bdbs",
        json!({"name": "shared", "listen": "127.0.0.1:0", "upstream": format!("redis://{}", redis.addr()),
               "roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]}),
    )
    .await);
    assert_eq!(b["roles_permissions"], json!([{"role_uid": 1, "redis_acl_uid": 1}]));
    let buid = uid_of(&b);
    let dan = ok(adm(
        c,
        "POST",
        "/v1/users",
        json!({"name": "dan", "email": "dan@example.com", "password": "Dan-pw-1!", "role": "db_viewer", "role_uids": [1]}),
    )
    .await);
    assert_eq!(dan["role_uids"], json!([1]));
    create_user(c, "outsider", "out@example.com", "Out-pw-1!", "db_viewer").await;
    let mut conn = Conn::connect(b["listen"].as_str().unwrap()).await;
    assert_eq!(conn.cmd(&["AUTH", "outsider", "Out-pw-1!"]).await, WRONGPASS);
    assert_eq!(conn.cmd(&["AUTH", "dan", "Dan-pw-1!"]).await, b"+OK\r\n");
    // dan acts under read-only's rule (`+@read ~cache:*`), enforced by Redis.
    assert_eq!(conn.cmd(&["GET", "cache:a"]).await, b"$-1\r\n");
    assert_eq!(
        conn.cmd(&["GET", "other"]).await,
        &b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"[..]
    );
    assert_eq!(
        conn.cmd(&["PING"]).await,
        &b"-NOPERM this user has no permissions to run the 'ping' command\r\n"[..]
    );
    // A `none` user has database access only; deleting a user closes its connections.
    let data_only =
        uid_of(&ok(adm(c, "POST", "/v1/roles", json!({"name": "data-only", "management": "none"})).await));
    let perms = json!([{"role_uid": 1, "redis_acl_uid": 1}, {"role_uid": data_only, "redis_acl_uid": 1}]);
    let b2 = ok(adm(c, "PUT", &format!("/v1/bdbs/{buid}"), json!({"roles_permissions": perms})).await);
    assert_eq!(b2["roles_permissions"], perms);
    let eve = ok(adm(
        c,
        "POST",
        "/v1/users",
        json!({"name": "eve", "password": "Eve-pw-1!", "role": "none", "role_uids": [data_only]}),
    )
    .await);
    forbidden(as_user(c, ("eve", "Eve-pw-1!"), "GET", "/v1/bdbs", Value::Null).await);
    let mut eve_conn = Conn::connect(b["listen"].as_str().unwrap()).await;
    assert_eq!(eve_conn.cmd(&["AUTH", "eve", "Eve-pw-1!"]).await, b"+OK\r\n");
    assert_eq!(eve_conn.cmd(&["GET", "cache:a"]).await, b"$-1\r\n");
    ok(adm(c, "DELETE", &format!("/v1/users/{}", eve["uid"]), Value::Null).await);
    eve_conn.read_to_close().await;
    assert_eq!(conn.cmd(&["GET", "cache:a"]).await, b"$-1\r\n", "other users' connections stay");

    // role_uids add management roles: dan (db_viewer + ops=db_member) may update bdbs.
    let dan_creds = ("dan", "Dan-pw-1!");
    ok(as_user(c, dan_creds, "PUT", &format!("/v1/bdbs/{buid}"), json!({"max_connections": 3})).await);
    forbidden(as_user(c, dan_creds, "GET", "/v1/users", Value::Null).await);

    // In use: refused, then allowed once released.
    err(adm(c, "DELETE", "/v1/roles/1", Value::Null).await, 409, "role_in_use");
    err(adm(c, "DELETE", "/v1/redis_acls/1", Value::Null).await, 409, "redis_acl_in_use");
    ok(adm(c, "PUT", &format!("/v1/users/{}", dan["uid"]), json!({"role_uids": []})).await);
    err(adm(c, "DELETE", "/v1/roles/1", Value::Null).await, 409, "role_in_use");
    ok(adm(c, "PUT", &format!("/v1/bdbs/{buid}"), json!({"roles_permissions": []})).await);
    assert_eq!(
        Conn::connect(b["listen"].as_str().unwrap()).await.cmd(&["AUTH", "dan", "Dan-pw-1!"]).await,
        WRONGPASS
    );
    assert_eq!(ok(adm(c, "DELETE", "/v1/roles/1", Value::Null).await), json!({}));
    assert_eq!(ok(adm(c, "DELETE", "/v1/redis_acls/1", Value::Null).await), json!({}));
    err(adm(c, "GET", "/v1/roles/1", Value::Null).await, 404, "role_not_exist");
    err(adm(c, "GET", "/v1/redis_acls/1", Value::Null).await, 404, "redis_acl_not_exist");
    // Without the role, dan is a plain db_viewer again.
    forbidden(as_user(c, dan_creds, "PUT", &format!("/v1/bdbs/{buid}"), json!({"max_connections": 4})).await);
}

// ---------------------------------------------------------------------------------
// Cluster settings and policy
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_settings_and_policy_get_put() {
    let admin = Admin::start().await;
    let c = &admin.control;
    assert_eq!(
        ok(adm(c, "GET", "/v1/cluster", Value::Null).await),
        json!({"name": "turnstile", "password_complexity": false, "password_min_length": 8, "password_expiration_duration": 0})
    );
    let s = ok(adm(c, "PUT", "/v1/cluster", json!({"name": "prod"})).await);
    assert_eq!(
        s,
        json!({"name": "prod", "password_complexity": false, "password_min_length": 8, "password_expiration_duration": 0})
    );
    for bad in [0, 7, 257, 1000] {
        err(
            adm(c, "PUT", "/v1/cluster", json!({"password_min_length": bad})).await,
            400,
            "invalid_parameter",
        );
    }
    // A refused update changes nothing, not even its valid fields.
    err(
        adm(c, "PUT", "/v1/cluster", json!({"name": "half", "password_min_length": 7})).await,
        400,
        "invalid_parameter",
    );
    assert_eq!(ok(adm(c, "GET", "/v1/cluster", Value::Null).await)["name"], "prod");
    for good in [8, 256, 12] {
        assert_eq!(
            ok(adm(c, "PUT", "/v1/cluster", json!({"password_min_length": good})).await)["password_min_length"],
            good
        );
    }
    let s = ok(adm(
        c,
        "PUT",
        "/v1/cluster",
        json!({"password_expiration_duration": 90, "password_complexity": true}),
    )
    .await);
    assert_eq!(
        s,
        json!({"name": "prod", "password_complexity": true, "password_min_length": 12, "password_expiration_duration": 90})
    );
    assert_eq!(ok(adm(c, "PUT", "/v1/cluster", json!({})).await), s);
    err(adm(c, "PUT", "/v1/cluster", json!({"colour": "blue"})).await, 400, "invalid_json");

    assert_eq!(
        ok(adm(c, "GET", "/v1/cluster/policy", Value::Null).await),
        json!({"login_lockout_threshold": 5, "login_lockout_counter_reset_after": 900, "login_lockout_duration": 1800})
    );
    let p = ok(adm(c, "PUT", "/v1/cluster/policy", json!({"login_lockout_threshold": 3})).await);
    assert_eq!(
        p,
        json!({"login_lockout_threshold": 3, "login_lockout_counter_reset_after": 900, "login_lockout_duration": 1800})
    );
    let p = ok(adm(
        c,
        "PUT",
        "/v1/cluster/policy",
        json!({"login_lockout_counter_reset_after": 60, "login_lockout_duration": 0}),
    )
    .await);
    assert_eq!(
        p,
        json!({"login_lockout_threshold": 3, "login_lockout_counter_reset_after": 60, "login_lockout_duration": 0})
    );
    err(
        adm(c, "PUT", "/v1/cluster/policy", json!({"login_lockout_threshold": -1})).await,
        400,
        "invalid_json",
    );
    err(adm(c, "PUT", "/v1/cluster/policy", json!({"lockout": 1})).await, 400, "invalid_json");

    // Durable.
    let c2 = admin.restart().await;
    let (_, v, _) = req(&c2, "GET", "/v1/cluster", Some(ADMIN_CREDS), None).await;
    assert_eq!(v, s);
    let (_, v, _) = req(&c2, "GET", "/v1/cluster/policy", Some(ADMIN_CREDS), None).await;
    assert_eq!(v, p);
}

// ---------------------------------------------------------------------------------
// Authentication, routing, status codes
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_401_with_www_authenticate_and_login_by_name_or_email() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let check_401 = |(s, v, h): (StatusCode, Value, HeaderMap), code: &str| {
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(v["error_code"], code, "{v}");
        assert_eq!(h.get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Basic realm=\"turnstile\""));
    };
    check_401(req(c, "GET", "/v1/bdbs", None, None).await, "unauthorized");
    check_401(req(c, "GET", "/v1/bdbs", Some((ADMIN, "wrong-password")), None).await, "unauthorized");
    check_401(req(c, "GET", "/v1/bdbs", Some((ADMIN_EMAIL, "wrong-password")), None).await, "unauthorized");
    check_401(req(c, "GET", "/v1/bdbs", Some(("nobody", ADMIN_PW)), None).await, "unauthorized");
    check_401(req(c, "GET", "/v1/bdbs", Some(("", "")), None).await, "unauthorized");
    // Credentials are checked before anything else: body, uid, existence.
    check_401(req(c, "GET", "/v1/bdbs/999", None, None).await, "unauthorized");
    check_401(req(c, "POST", "/v1/bdbs/1/passwords", None, Some("{not json")).await, "unauthorized");
    check_401(
        req(c, "PUT", "/v1/cluster", Some((ADMIN, "nope")), Some("{\"name\": \"x\"}")).await,
        "unauthorized",
    );
    check_401(
        req(c, "POST", "/v1/users/password", None, Some("{\"new_password\": \"Xx-12345!\"}")).await,
        "unauthorized",
    );
    // Malformed Authorization headers.
    let colonless = format!("Basic {}", Base64::encode_string(b"admin"));
    for h in ["Bearer abc", "Basic !!!not-base64!!!", colonless.as_str(), "Basic"] {
        check_401(raw_request(c, "GET", "/v1/bdbs", &[("authorization", h)]).await, "unauthorized");
    }
    let good = format!("Basic {}", Base64::encode_string(format!("{ADMIN}:{ADMIN_PW}").as_bytes()));
    assert_eq!(raw_request(c, "GET", "/v1/bdbs", &[("authorization", &good)]).await.0, StatusCode::OK);

    // Name or email, with any one of the user's passwords.
    create_user(c, "erin", "erin@example.com", "Erin-pw-1!", "db_viewer").await;
    ok(adm(c, "POST", "/v1/users/password", json!({"username": "erin", "new_password": "Erin-pw-2!"})).await);
    for login in ["erin", "erin@example.com"] {
        for pw in ["Erin-pw-1!", "Erin-pw-2!"] {
            assert_eq!(ok(as_user(c, (login, pw), "GET", "/v1/bdbs", Value::Null).await), json!([]));
        }
        check_401(req(c, "GET", "/v1/bdbs", Some((login, "Erin-pw-3!")), None).await, "unauthorized");
    }
    // The password belongs to its user only.
    check_401(req(c, "GET", "/v1/bdbs", Some(("erin", ADMIN_PW)), None).await, "unauthorized");
    assert_eq!(ok(adm(c, "GET", "/v1/bdbs", Value::Null).await), json!([]));
    assert_eq!(ok(as_user(c, (ADMIN_EMAIL, ADMIN_PW), "GET", "/v1/bdbs", Value::Null).await), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_non_integer_uids_and_wrong_methods() {
    let admin = Admin::start().await;
    let c = &admin.control;
    for p in
        ["/v1/nope", "/nope", "/v2/bdbs", "/v1/bdbs/1/passwords/extra", "/v1", "/", "/v1/users/password/x"]
    {
        err(adm(c, "GET", p, Value::Null).await, 404, "not_found");
    }
    // uids that are not integers (or do not fit) name no object: 404, never 500.
    let cases = [
        ("bdbs", "bdb_not_exist"),
        ("users", "user_not_exist"),
        ("roles", "role_not_exist"),
        ("redis_acls", "redis_acl_not_exist"),
    ];
    for (coll, code) in cases {
        for uid in ["abc", "-1", "1.5", "4294967296", "0x1", "999"] {
            let p = format!("/v1/{coll}/{uid}");
            err(adm(c, "GET", &p, Value::Null).await, 404, code);
            err(adm(c, "PUT", &p, json!({})).await, 404, code);
            err(adm(c, "DELETE", &p, Value::Null).await, 404, code);
        }
    }
    // Wrong methods: 405 method_not_allowed.
    let wrong = [
        ("PATCH", "/v1/bdbs"),
        ("DELETE", "/v1/bdbs"),
        ("PUT", "/v1/bdbs"),
        ("POST", "/v1/bdbs/1"),
        ("PATCH", "/v1/bdbs/1"),
        // (GET on a database's passwords lists them: issue 13.)
        ("PATCH", "/v1/bdbs/1/passwords"),
        ("PATCH", "/bdbs/1/passwords"),
        ("POST", "/v1/users/1/passwords"),
        ("GET", "/v1/users/password"),
        ("PATCH", "/v1/users/password"),
        ("DELETE", "/v1/users"),
        ("POST", "/v1/users/1"),
        ("POST", "/v1/roles/1"),
        ("PUT", "/v1/roles"),
        ("POST", "/v1/redis_acls/1"),
        ("DELETE", "/v1/redis_acls"),
        ("PATCH", "/v1/cluster"),
        ("POST", "/v1/cluster/policy"),
        ("DELETE", "/v1/cluster/policy"),
    ];
    for (m, p) in wrong {
        let r = adm(c, m, p, Value::Null).await;
        assert_eq!(r.0, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}: {r:?}");
        err(r, 405, "method_not_allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_is_503_and_changes_nothing() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let b = create_bdb(c, "app", &redis).await;
    let uid = uid_of(&b);
    ok(adm(c, "POST", &format!("/v1/bdbs/{uid}/passwords"), json!({"password": "Store-pw-1"})).await);
    // A directory where the store writes its temporary file makes every commit fail.
    let blocker = admin.dir.path().join("state.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    err(
        adm(c, "POST", "/v1/users", json!({"name": "frank", "password": "Frank-pw-1!"})).await,
        503,
        "store_error",
    );
    err(
        adm(c, "POST", &format!("/v1/bdbs/{uid}/passwords"), json!({"password": "Store-pw-2"})).await,
        503,
        "store_error",
    );
    err(adm(c, "PUT", "/v1/cluster", json!({"name": "never"})).await, 503, "store_error");
    err(
        adm(
            c,
            "POST",
            "/v1/bdbs",
            json!({"name": "never", "port": 0, "upstream": format!("redis://{}", redis.addr())}),
        )
        .await,
        503,
        "store_error",
    );
    assert_eq!(ok(adm(c, "GET", "/v1/users", Value::Null).await).as_array().unwrap().len(), 1);
    assert_eq!(bdb_passwords(c, uid), 1);
    assert_eq!(
        Conn::connect(b["listen"].as_str().unwrap()).await.cmd(&["AUTH", "Store-pw-2"]).await,
        WRONGPASS
    );
    assert_eq!(ok(adm(c, "GET", "/v1/cluster", Value::Null).await)["name"], "turnstile");
    assert_eq!(ok(adm(c, "GET", "/v1/bdbs", Value::Null).await).as_array().unwrap().len(), 1);
    std::fs::remove_dir(&blocker).unwrap();
    ok(adm(c, "POST", &format!("/v1/bdbs/{uid}/passwords"), json!({"password": "Store-pw-2"})).await);
    assert_eq!(bdb_passwords(c, uid), 2);
}

// ---------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------

const ROLES: [&str; 7] =
    ["admin", "cluster_member", "cluster_viewer", "db_member", "db_viewer", "user_manager", "none"];

fn role_pw(role: &str) -> String {
    format!("Pw-{role}-1!")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permission_table_role_by_role() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let up = format!("redis://{}", redis.addr());
    // Many deliberate failed logins below: no lockout here.
    ok(adm(c, "PUT", "/v1/cluster/policy", json!({"login_lockout_threshold": 0})).await);
    for role in ROLES {
        create_user(c, &format!("u-{role}"), &format!("u-{role}@example.com"), &role_pw(role), role).await;
    }
    // Shared objects the forbidden roles try to change.
    let base = create_bdb(c, "base", &redis).await;
    let base_uid = uid_of(&base);
    let bp = format!("/v1/bdbs/{base_uid}/passwords");
    ok(adm(c, "POST", &bp, json!({"password": "base-bdb-pw"})).await);
    let victim = create_user(c, "victim", "victim@example.com", "Victim-pw-1!", "db_viewer").await;
    let base_role =
        uid_of(&ok(
            adm(c, "POST", "/v1/roles", json!({"name": "base-role", "management": "db_viewer"})).await
        ));
    let base_acl =
        uid_of(&ok(adm(c, "POST", "/v1/redis_acls", json!({"name": "base-acl", "acl": "+@read"})).await));

    for role in ROLES {
        let name = format!("u-{role}");
        let pw = role_pw(role);
        let me = (name.as_str(), pw.as_str());
        let none = role == "none";
        let check = |r: (StatusCode, Value), allowed: bool, what: &str| {
            if allowed {
                assert_eq!(r.0, StatusCode::OK, "{role} should be allowed to {what}: {r:?}");
                r.1
            } else {
                assert_eq!(
                    (r.0, &r.1["error_code"]),
                    (StatusCode::FORBIDDEN, &json!("unauthorized_action")),
                    "{role} {what}"
                );
                Value::Null
            }
        };

        // view_all_bdbs_info, view_bdb_info, view_cluster_info: everyone but none.
        let view = !none;
        for p in [
            "/v1/bdbs",
            &format!("/v1/bdbs/{base_uid}"),
            "/v1/cluster",
            "/v1/cluster/policy",
            "/v1/roles",
            "/v1/redis_acls",
        ] {
            check(as_user(c, me, "GET", p, Value::Null).await, view, &format!("GET {p}"));
        }
        check(
            as_user(c, me, "GET", &format!("/v1/roles/{base_role}"), Value::Null).await,
            view,
            "view a role",
        );
        check(
            as_user(c, me, "GET", &format!("/v1/redis_acls/{base_acl}"), Value::Null).await,
            view,
            "view an acl",
        );

        // create_bdb, update_bdb, delete_bdb (bdb passwords included).
        let bdb = matches!(role, "admin" | "cluster_member" | "db_member");
        let made = check(
            as_user(
                c,
                me,
                "POST",
                "/v1/bdbs",
                json!({"name": format!("db-{role}"), "listen": "127.0.0.1:0", "upstream": up}),
            )
            .await,
            bdb,
            "create a bdb",
        );
        check(
            as_user(c, me, "PUT", &format!("/v1/bdbs/{base_uid}"), json!({"max_connections": 9})).await,
            bdb,
            "update a bdb",
        );
        let extra = format!("extra-{role}-pw");
        check(as_user(c, me, "POST", &bp, json!({"password": extra})).await, bdb, "add a bdb password");
        check(as_user(c, me, "DELETE", &bp, json!({"password": extra})).await, bdb, "delete a bdb password");
        check(
            as_user(c, me, "PUT", &bp, json!({"password": "base-bdb-pw"})).await,
            bdb,
            "replace bdb passwords",
        );
        check(
            as_user(c, me, "PUT", &format!("/bdbs/{base_uid}/passwords"), json!({"password": "base-bdb-pw"}))
                .await,
            bdb,
            "alias",
        );
        let target = if bdb { uid_of(&made) } else { base_uid };
        check(
            as_user(c, me, "DELETE", &format!("/v1/bdbs/{target}"), Value::Null).await,
            bdb,
            "delete a bdb",
        );

        // User management.
        let users = matches!(role, "admin" | "user_manager");
        check(as_user(c, me, "GET", "/v1/users", Value::Null).await, users, "list users");
        check(as_user(c, me, "GET", &format!("/v1/users/{victim}"), Value::Null).await, users, "view a user");
        let made = check(
            as_user(
                c,
                me,
                "POST",
                "/v1/users",
                json!({"name": format!("made-by-{role}"), "password": "Made-pw-1!"}),
            )
            .await,
            users,
            "create a user",
        );
        check(
            as_user(
                c,
                me,
                "PUT",
                &format!("/v1/users/{victim}"),
                json!({"email": format!("v-{role}@example.com")}),
            )
            .await,
            users,
            "update a user",
        );
        let target = if users { uid_of(&made) } else { victim };
        check(
            as_user(c, me, "DELETE", &format!("/v1/users/{target}"), Value::Null).await,
            users,
            "delete a user",
        );

        // Roles and Redis ACLs.
        let rbac = users;
        let made = check(
            as_user(
                c,
                me,
                "POST",
                "/v1/roles",
                json!({"name": format!("role-{role}"), "management": "db_viewer"}),
            )
            .await,
            rbac,
            "create a role",
        );
        check(
            as_user(c, me, "PUT", &format!("/v1/roles/{base_role}"), json!({"management": "db_viewer"}))
                .await,
            rbac,
            "update a role",
        );
        let target = if rbac { uid_of(&made) } else { base_role };
        check(
            as_user(c, me, "DELETE", &format!("/v1/roles/{target}"), Value::Null).await,
            rbac,
            "delete a role",
        );
        let made = check(
            as_user(c, me, "POST", "/v1/redis_acls", json!({"name": format!("acl-{role}"), "acl": "+@all"}))
                .await,
            rbac,
            "create an acl",
        );
        check(
            as_user(c, me, "PUT", &format!("/v1/redis_acls/{base_acl}"), json!({"acl": "+@read"})).await,
            rbac,
            "update an acl",
        );
        let target = if rbac { uid_of(&made) } else { base_acl };
        check(
            as_user(c, me, "DELETE", &format!("/v1/redis_acls/{target}"), Value::Null).await,
            rbac,
            "delete an acl",
        );

        // update_cluster: admin only.
        let cluster = role == "admin";
        check(
            as_user(c, me, "PUT", "/v1/cluster", json!({"name": format!("by-{role}")})).await,
            cluster,
            "update the cluster",
        );
        check(
            as_user(c, me, "PUT", "/v1/cluster/policy", json!({"login_lockout_counter_reset_after": 900}))
                .await,
            cluster,
            "update the policy",
        );

        // Own passwords: anyone with API access; someone else's: admins only.
        let p = "/v1/users/password";
        let mine = format!("Mine-{role}-2!");
        check(as_user(c, me, "POST", p, json!({"new_password": mine})).await, view, "add an own password");
        check(
            as_user(c, me, "POST", p, json!({"username": name, "new_password": format!("{mine}x")})).await,
            view,
            "add own, named",
        );
        if view {
            assert_eq!(login_status(c, (name.as_str(), mine.as_str())).await, StatusCode::OK, "{role}");
            ok(as_user(c, me, "DELETE", p, json!({"old_password": mine})).await);
            ok(as_user(c, me, "DELETE", p, json!({"old_password": format!("{mine}x")})).await);
        }
        let admin_only = role == "admin";
        let foreign = format!("Foreign-{role}-1!");
        check(
            as_user(c, me, "POST", p, json!({"username": "victim", "new_password": foreign})).await,
            admin_only,
            "add a foreign password",
        );
        check(
            as_user(c, me, "DELETE", p, json!({"username": "victim", "old_password": foreign})).await,
            admin_only,
            "delete a foreign password",
        );
        check(
            as_user(c, me, "PUT", p, json!({"username": "victim", "new_password": "Victim-pw-1!"})).await,
            admin_only,
            "replace foreign passwords",
        );
        // Legacy /v1/cluster rotation: admin only, even for oneself.
        check(
            as_user(
                c,
                me,
                "POST",
                "/v1/cluster",
                json!({"username": name, "old_password": pw, "new_password": mine}),
            )
            .await,
            admin_only,
            "legacy rotation",
        );
        if admin_only {
            ok(as_user(c, me, "DELETE", "/v1/cluster", json!({"username": name, "old_password": mine}))
                .await);
        } else {
            check(
                as_user(c, me, "DELETE", "/v1/cluster", json!({"username": name, "old_password": pw})).await,
                false,
                "legacy delete",
            );
            check(
                as_user(
                    c,
                    me,
                    "PUT",
                    "/v1/cluster",
                    json!({"username": name, "old_password": pw, "new_password": mine}),
                )
                .await,
                false,
                "legacy replace",
            );
            assert_eq!(
                login_status(c, (name.as_str(), mine.as_str())).await,
                StatusCode::UNAUTHORIZED,
                "{role}"
            );
        }
        // none: refused even with the right password, on every endpoint (401 would be wrong).
        if none {
            assert_eq!(login_status(c, me).await, StatusCode::FORBIDDEN);
        }
    }

    // What the forbidden roles tried did not happen.
    let b = ok(adm(c, "GET", &format!("/v1/bdbs/{base_uid}"), Value::Null).await);
    assert_eq!(b["max_connections"], 9, "changed by the allowed roles only");
    assert_eq!(bdb_passwords(c, base_uid), 1);
    assert_eq!(
        ok(adm(c, "GET", "/v1/bdbs", Value::Null).await).as_array().unwrap().len(),
        1,
        "{}",
        "own bdbs deleted"
    );
    let v = ok(adm(c, "GET", &format!("/v1/users/{victim}"), Value::Null).await);
    assert_eq!(
        v["email"], "v-user_manager@example.com",
        "last changed by user_manager, the last allowed role"
    );
    assert_eq!(user_passwords(c, "victim"), 1);
    assert_eq!(login_status(c, ("victim", "Victim-pw-1!")).await, StatusCode::OK);
    for role in ["cluster_member", "cluster_viewer", "db_member", "db_viewer", "none"] {
        assert_eq!(
            login_status(c, ("victim", &format!("Foreign-{role}-1!"))).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let users = ok(adm(c, "GET", "/v1/users", Value::Null).await);
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert!(!names.iter().any(|n| n.starts_with("made-by-")), "{names:?}");
    assert_eq!(
        ok(adm(c, "GET", "/v1/roles", Value::Null).await),
        json!([{"uid": base_role, "name": "base-role", "management": "db_viewer"}])
    );
    assert_eq!(
        ok(adm(c, "GET", "/v1/redis_acls", Value::Null).await),
        json!([{"uid": base_acl, "name": "base-acl", "acl": "+@read"}])
    );
    assert_eq!(ok(adm(c, "GET", "/v1/cluster", Value::Null).await)["name"], "by-admin");
}

// ---------------------------------------------------------------------------------
// Password complexity, lockout, expiration
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_complexity_rules_for_users_400_and_bdbs_406() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let uid = uid_of(&create_bdb(c, "app", &redis).await);
    let bp = format!("/v1/bdbs/{uid}/passwords");
    let uid_gus = create_user(c, "gus", "gus@example.com", "Gus-pw-1!", "db_viewer").await;
    let up = "/v1/users/password";

    // Off by default: weak passwords are fine.
    ok(adm(c, "POST", &bp, json!({"password": "weak"})).await);
    ok(adm(c, "POST", up, json!({"username": "gus", "new_password": "weak"})).await);

    assert_eq!(
        ok(adm(c, "PUT", "/v1/cluster", json!({"password_complexity": true})).await)["password_complexity"],
        true
    );
    let weak = [
        ("length", "Sh0rt!x"),
        ("upper", "nouppercase1!"),
        ("lower", "NOLOWERCASE1!"),
        ("digit", "NoDigits!!x"),
        ("special", "NoSpecial123"),
        ("repeat", "Abbbb1!xyz"),
    ];
    for (rule, pw) in weak {
        for m in ["POST", "PUT"] {
            let d = err(adm(c, m, &bp, json!({"password": pw})).await, 406, "password_not_complex");
            assert!(!d.contains(pw), "{rule}: {d}");
            let d = err(
                adm(c, m, up, json!({"username": "gus", "new_password": pw})).await,
                400,
                "password_not_complex",
            );
            assert!(!d.contains(pw), "{rule}: {d}");
        }
        err(
            adm(c, "POST", "/v1/users", json!({"name": format!("w-{rule}"), "password": pw})).await,
            400,
            "password_not_complex",
        );
        err(
            adm(c, "PUT", &format!("/v1/users/{uid_gus}"), json!({"password": pw})).await,
            400,
            "password_not_complex",
        );
        err(
            adm(
                c,
                "PUT",
                "/v1/cluster",
                json!({"username": "gus", "old_password": "Gus-pw-1!", "new_password": pw}),
            )
            .await,
            400,
            "password_not_complex",
        );
    }
    // The user's email, forwards or backwards, any case.
    for pw in ["X1!gus@example.com", "X1!moc.elpmaxe@sug", "X1!GUS@Example.com"] {
        err(
            adm(c, "POST", up, json!({"username": "gus", "new_password": pw})).await,
            400,
            "password_not_complex",
        );
        err(
            adm(c, "PUT", &format!("/v1/users/{uid_gus}"), json!({"password": pw})).await,
            400,
            "password_not_complex",
        );
    }
    for pw in ["X1!hal@example.com", "X1!moc.elpmaxe@lah"] {
        err(
            adm(c, "POST", "/v1/users", json!({"name": "hal", "email": "hal@example.com", "password": pw}))
                .await,
            400,
            "password_not_complex",
        );
    }
    // Empty is still its own error.
    err(adm(c, "POST", &bp, json!({"password": ""})).await, 406, "invalid_password");
    err(adm(c, "POST", up, json!({"username": "gus", "new_password": ""})).await, 400, "invalid_password");
    assert_eq!(bdb_passwords(c, uid), 1);
    assert_eq!(user_passwords(c, "gus"), 2);

    // Passing passwords: three repeats are allowed; 8 characters is the minimum.
    ok(adm(c, "POST", &bp, json!({"password": "Str0ng!pass"})).await);
    ok(adm(c, "POST", &bp, json!({"password": "Aaa1!aaB"})).await);
    ok(adm(c, "POST", up, json!({"username": "gus", "new_password": "Str0ng!pass"})).await);
    ok(adm(
        c,
        "POST",
        "/v1/users",
        json!({"name": "ivy", "email": "ivy@example.com", "password": "Ivy-str0ng!"}),
    )
    .await);
    // Removing does not check complexity (the weak ones can still be deleted).
    ok(adm(c, "DELETE", &bp, json!({"password": "weak"})).await);
    ok(adm(c, "DELETE", up, json!({"username": "gus", "old_password": "weak"})).await);

    // password_min_length.
    ok(adm(c, "PUT", "/v1/cluster", json!({"password_min_length": 12})).await);
    err(adm(c, "POST", &bp, json!({"password": "Elev3n!char"})).await, 406, "password_not_complex");
    err(
        adm(c, "POST", up, json!({"username": "gus", "new_password": "Elev3n!char"})).await,
        400,
        "password_not_complex",
    );
    ok(adm(c, "POST", &bp, json!({"password": "Twelv3!chars"})).await);
    ok(adm(c, "POST", up, json!({"username": "gus", "new_password": "Twelv3!chars"})).await);

    // Off again: weak passwords are accepted again.
    ok(adm(c, "PUT", "/v1/cluster", json!({"password_complexity": false})).await);
    ok(adm(c, "POST", &bp, json!({"password": "weak2"})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_after_threshold_and_unlock_by_admin_password_reset() {
    let admin = Admin::start().await;
    let c = &admin.control;
    ok(adm(
        c,
        "PUT",
        "/v1/cluster/policy",
        json!({"login_lockout_threshold": 3, "login_lockout_counter_reset_after": 900, "login_lockout_duration": 0}),
    )
    .await);
    let uid = create_user(c, "ida", "ida@example.com", "Ida-pw-1!", "db_viewer").await;
    let ida = ("ida", "Ida-pw-1!");
    let get = format!("/v1/users/{uid}");

    // Two failures, then a success: the count starts over.
    for _ in 0..2 {
        assert_eq!(login_status(c, ("ida", "wrong-pw")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(c, ida).await, StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(login_status(c, ("ida@example.com", "wrong-pw")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(c, ida).await, StatusCode::OK);
    assert_eq!(ok(adm(c, "GET", &get, Value::Null).await)["status"], "active");

    // Three in a row: locked, even with the right password, by name or email.
    for _ in 0..3 {
        let (_, v, _) = req(c, "GET", "/v1/cluster", Some(("ida", "wrong-pw")), None).await;
        assert_eq!(v["error_code"], "unauthorized");
    }
    for login in ["ida", "ida@example.com"] {
        let (s, v, h) = req(c, "GET", "/v1/cluster", Some((login, "Ida-pw-1!")), None).await;
        assert_eq!((s, &v["error_code"]), (StatusCode::UNAUTHORIZED, &json!("user_locked")), "{v}");
        assert!(h.contains_key("www-authenticate"));
    }
    let (s, v, _) =
        req(c, "POST", "/v1/users/password", Some(ida), Some("{\"new_password\": \"Ida-pw-2!\"}")).await;
    assert_eq!(
        (s, &v["error_code"]),
        (StatusCode::UNAUTHORIZED, &json!("user_locked")),
        "a locked user cannot rotate"
    );
    assert_eq!(ok(adm(c, "GET", &get, Value::Null).await)["status"], "locked");
    // Others are not affected.
    assert_eq!(login_status(c, ADMIN_CREDS).await, StatusCode::OK);

    // An admin setting a new password unlocks.
    let u = ok(adm(c, "PUT", &get, json!({"password": "Ida-pw-3!"})).await);
    assert_eq!(u["status"], "active");
    assert_eq!(login_status(c, ("ida", "Ida-pw-3!")).await, StatusCode::OK);
    assert_eq!(login_status(c, ida).await, StatusCode::UNAUTHORIZED, "the reset replaced the old password");

    // Locked again; the lock survives a restart; an admin's /v1/users/password also unlocks.
    for _ in 0..3 {
        assert_eq!(login_status(c, ("ida", "wrong-pw")).await, StatusCode::UNAUTHORIZED);
    }
    let c2 = admin.restart().await;
    let (s, v, _) = req(&c2, "GET", "/v1/cluster", Some(("ida", "Ida-pw-3!")), None).await;
    assert_eq!((s, &v["error_code"]), (StatusCode::UNAUTHORIZED, &json!("user_locked")));
    let (s, _, _) = req(
        &c2,
        "PUT",
        "/v1/users/password",
        Some(ADMIN_CREDS),
        Some("{\"username\": \"ida\", \"new_password\": \"Ida-pw-4!\"}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(login_status(&c2, ("ida", "Ida-pw-4!")).await, StatusCode::OK);

    // Threshold 0: never lock.
    let (s, _, _) =
        req(&c2, "PUT", "/v1/cluster/policy", Some(ADMIN_CREDS), Some("{\"login_lockout_threshold\": 0}"))
            .await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..8 {
        assert_eq!(login_status(&c2, ("ida", "wrong-pw")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(&c2, ("ida", "Ida-pw-4!")).await, StatusCode::OK);
    let (_, v, _) = req(&c2, "GET", &get, Some(ADMIN_CREDS), None).await;
    assert_eq!(v["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_with_a_duration_is_also_a_lock() {
    let admin = Admin::start().await;
    let c = &admin.control;
    // Defaults: 5 failures, locked for 1800 s.
    create_user(c, "jay", "jay@example.com", "Jay-pw-1!", "db_viewer").await;
    for _ in 0..4 {
        assert_eq!(login_status(c, ("jay", "wrong-pw")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_status(c, ("jay", "Jay-pw-1!")).await,
        StatusCode::OK,
        "4 failures < default threshold 5"
    );
    for _ in 0..5 {
        assert_eq!(login_status(c, ("jay", "wrong-pw")).await, StatusCode::UNAUTHORIZED);
    }
    let (s, v, _) = req(c, "GET", "/v1/bdbs", Some(("jay", "Jay-pw-1!")), None).await;
    assert_eq!((s, &v["error_code"]), (StatusCode::UNAUTHORIZED, &json!("user_locked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_passwords_401_everywhere_but_users_password() {
    let admin = Admin::start().await;
    let kim = create_user(&admin.control, "kim", "kim@example.com", "Kim-pw-1!", "db_member").await;
    let kim_creds = ("kim", "Kim-pw-1!");
    ok(adm(&admin.control, "PUT", "/v1/cluster", json!({"password_expiration_duration": 30})).await);
    assert_eq!(
        login_status(&admin.control, kim_creds).await,
        StatusCode::OK,
        "a fresh password has not expired"
    );

    // Make kim's password old: edit the store, then start a control plane on it.
    let file = admin.dir.path().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    state["users"][kim.to_string()]["password_issue_date"] = json!(0);
    std::fs::write(&file, serde_json::to_vec(&state).unwrap()).unwrap();
    let c = &admin.restart().await;

    let u = ok(adm(c, "GET", &format!("/v1/users/{kim}"), Value::Null).await);
    assert_eq!(u["status"], "password_expired");
    assert_eq!(u["password_issue_date"], "1970-01-01T00:00:00Z");
    let expired = [
        ("GET", "/v1/bdbs", Value::Null),
        ("GET", "/v1/cluster", Value::Null),
        ("GET", "/v1/cluster/policy", Value::Null),
        ("GET", "/v1/roles", Value::Null),
        ("GET", "/v1/bdbs/1", Value::Null),
        ("POST", "/v1/bdbs/1/passwords", json!({"password": "Some-pw-1!"})),
        (
            "PUT",
            "/v1/cluster",
            json!({"username": "kim", "old_password": "Kim-pw-1!", "new_password": "Kim-pw-9!"}),
        ),
    ];
    for (m, p, body) in expired {
        let text = (!body.is_null()).then(|| body.to_string());
        let (s, v, h) = req(c, m, p, Some(kim_creds), text.as_deref()).await;
        assert_eq!(
            (s, &v["error_code"]),
            (StatusCode::UNAUTHORIZED, &json!("password_expired")),
            "{m} {p}: {v}"
        );
        assert!(h.contains_key("www-authenticate"));
    }
    // A wrong password is still just unauthorized.
    let (_, v, _) = req(c, "GET", "/v1/bdbs", Some(("kim", "wrong-pw")), None).await;
    assert_eq!(v["error_code"], "unauthorized");
    // Expiration 0 = off; back on, expired again.
    ok(adm(c, "PUT", "/v1/cluster", json!({"password_expiration_duration": 0})).await);
    assert_eq!(login_status(c, kim_creds).await, StatusCode::OK);
    assert_eq!(ok(adm(c, "GET", &format!("/v1/users/{kim}"), Value::Null).await)["status"], "active");
    ok(adm(c, "PUT", "/v1/cluster", json!({"password_expiration_duration": 30})).await);
    assert_eq!(login_status(c, kim_creds).await, StatusCode::UNAUTHORIZED);

    // /v1/users/password is open to an expired user; rotating makes it work again.
    ok(as_user(c, kim_creds, "POST", "/v1/users/password", json!({"new_password": "Kim-pw-2!"})).await);
    assert_eq!(ok(as_user(c, kim_creds, "GET", "/v1/bdbs", Value::Null).await), json!([]));
    assert_eq!(login_status(c, ("kim", "Kim-pw-2!")).await, StatusCode::OK);
    let u = ok(adm(c, "GET", &format!("/v1/users/{kim}"), Value::Null).await);
    assert_eq!(u["status"], "active");
    assert_ne!(u["password_issue_date"], "1970-01-01T00:00:00Z");
}

// ---------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mistyped_unknown_missing_and_oversized_bodies() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let redis = Redis::start(&[]);
    let uid = uid_of(&create_bdb(c, "app", &redis).await);
    let bp = format!("/v1/bdbs/{uid}/passwords");
    create_user(c, "lee", "lee@example.com", "Lee-pw-1!", "db_viewer").await;

    // Syntax errors name the line and column.
    let d =
        err(adm_raw(c, "POST", &bp, "{\n\"password\": \"Abc-12345\"\n\"x\": 1}").await, 400, "invalid_json");
    assert!(d.contains("line 3 column 1"), "{d}");
    let d = err(adm_raw(c, "POST", &bp, "{\"password\": \"Abc-12345\",}").await, 400, "invalid_json");
    assert!(d.contains("trailing comma") && d.contains("line 1 column 26"), "{d}");
    let d = err(adm_raw(c, "POST", &bp, "{\"password\": \"Abc-12345\"").await, 400, "invalid_json");
    assert!(d.contains("line 1"), "{d}");
    err(adm_raw(c, "POST", &bp, "{\"password\": \"Abc-12345\"} trailing").await, 400, "invalid_json");
    err(adm_raw(c, "POST", &bp, "\"Abc-12345\"").await, 400, "invalid_json");
    err(adm_raw(c, "PUT", "/v1/cluster", "{\"name\": ").await, 400, "invalid_json");

    // Wrong types name the field and never echo the value: (method, path, body,
    // what the description must name, what it must not contain).
    let users2 = "/v1/users/2".to_string();
    let cases: &[(&str, &str, String, &str, &str)] = &[
        ("POST", &bp, r#"{"password": 123456789}"#.into(), "password", "123456789"),
        ("POST", "/v1/users/password", r#"{"new_password": 987654321}"#.into(), "new_password", "987654321"),
        ("POST", "/v1/users/password", r#"{"new_password": ["Hunter2-array"]}"#.into(), "new_password", "Hunter2"),
        ("PUT", "/v1/cluster", r#"{"password_complexity": "Hunter2-secret"}"#.into(), "password_complexity", "Hunter2"),
        ("PUT", "/v1/cluster", r#"{"password_min_length": "Hunter2-secret"}"#.into(), "password_min_length", "Hunter2"),
        ("PUT", &users2, r#"{"password": {"nested": "Hunter2-object"}}"#.into(), "password", "Hunter2"),
        (
            "POST",
            "/v1/bdbs",
            json!({"name": "x", "port": 0, "upstream": "redis://h:1", "roles_permissions": [{"role_uid": "one", "redis_acl_uid": 1}]})
                .to_string(),
            "roles_permissions[0].role_uid",
            "one\"",
        ),
        ("POST", "/v1/bdbs", json!({"name": "x", "port": 70000, "upstream": "redis://h:1"}).to_string(), "port", "70000"),
        (
            "PUT",
            "/v1/users/password",
            json!({"username": 42, "new_password": "Hunter2-typed"}).to_string(),
            "username",
            "Hunter2",
        ),
    ];
    for (method, path, body, field, secret) in cases {
        let d = err(adm_raw(c, method, path, body).await, 400, "invalid_json");
        assert!(d.contains(field) && !d.contains(secret), "{method} {path} {body}: {d}");
    }

    // Unknown fields are refused, by name.
    let d =
        err(adm(c, "POST", &bp, json!({"password": "Abc-12345", "colour": 1})).await, 400, "invalid_json");
    assert!(d.contains("colour"), "{d}");
    err(
        adm(c, "POST", "/v1/users", json!({"name": "m", "password": "Abc-12345", "passwords": ["x"]})).await,
        400,
        "invalid_json",
    );
    err(adm(c, "PUT", &format!("/v1/bdbs/{uid}"), json!({"passwords": ["x"]})).await, 400, "invalid_json");
    err(
        adm(c, "POST", "/v1/users/password", json!({"user": "lee", "new_password": "Abc-12345"})).await,
        400,
        "invalid_json",
    );
    err(adm(c, "PUT", "/v1/cluster/policy", json!({"threshold": 1})).await, 400, "invalid_json");
    err(
        adm(c, "POST", "/v1/roles", json!({"name": "r", "management": "admin", "x": 1})).await,
        400,
        "invalid_json",
    );
    err(
        adm(c, "POST", "/v1/redis_acls", json!({"name": "a", "acl": "+@all", "x": 1})).await,
        400,
        "invalid_json",
    );

    // Missing fields, by name.
    // (`password` is optional in the body since a DELETE may name an `id`.)
    let d = err(adm(c, "POST", &bp, json!({})).await, 400, "missing_parameter");
    assert!(d.contains("password is required"), "{d}");
    let d = err(adm(c, "POST", "/v1/bdbs", json!({"name": "x", "port": 0})).await, 400, "invalid_json");
    assert!(d.contains("upstream"), "{d}");

    // No body at all, an empty one, or only whitespace.
    let empty_cases: [(&str, &str, Option<&str>); 8] = [
        ("POST", bp.as_str(), None),
        ("PUT", bp.as_str(), Some("")),
        ("DELETE", bp.as_str(), Some("  \n ")),
        ("POST", "/v1/users/password", None),
        ("POST", "/v1/users", Some("")),
        ("PUT", "/v1/cluster", None),
        ("POST", "/v1/cluster", Some("")),
        ("PUT", "/v1/cluster/policy", Some("\n")),
    ];
    for (m, p, body) in empty_cases {
        let (s, v, _) = req(c, m, p, Some(ADMIN_CREDS), body).await;
        err((s, v), 400, "missing_body");
    }

    // Over 64 KiB: 413.
    let big = format!("{{\"password\": \"{}\"}}", "A".repeat(100 * 1024));
    for (m, p) in [
        ("POST", bp.as_str()),
        ("POST", "/v1/users"),
        ("PUT", "/v1/cluster"),
        ("POST", "/v1/users/password"),
        ("POST", "/v1/bdbs"),
    ] {
        err(adm_raw(c, m, p, &big).await, 413, "body_too_large");
    }
    // Just under the limit is read (and then judged on its content).
    let under = format!("{{\"password\": \"{}\"}}", "A".repeat(60 * 1024));
    ok(adm_raw(c, "POST", &bp, &under).await);
    assert_eq!(bdb_passwords(c, uid), 1);

    // A JSON array is not an object: a wrong type, hence 400 (serde would otherwise
    // read it positionally, as if it were {"password": ...}).
    let as_password = adm_raw(c, "POST", &bp, "[\"Array-pw-1\"]").await;
    let as_settings = adm_raw(c, "PUT", "/v1/cluster", "[\"from-an-array\", true, 8, 0]").await;
    let as_user_pw = adm_raw(c, "POST", "/v1/users/password", "[\"lee\", \"Array-pw-2!\", null]").await;
    let passwords = bdb_passwords(c, uid);
    let cluster_name = ok(adm(c, "GET", "/v1/cluster", Value::Null).await)["name"].clone();
    let lee_passwords = user_passwords(c, "lee");
    err(as_password, 400, "invalid_json");
    err(as_settings, 400, "invalid_json");
    err(as_user_pw, 400, "invalid_json");
    assert_eq!(passwords, 1, "an array body added a bdb password");
    assert_eq!(cluster_name, "turnstile", "an array body renamed the cluster");
    assert_eq!(lee_passwords, 1, "an array body added a user password");
}

/// A user manager manages users, but admin rights stay with admins: it cannot
/// promote itself or others, mint an admin-level role, or take over an admin by
/// resetting or deleting it. Every refused call leaves the state as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_managers_cannot_grant_or_take_over_admin_rights() {
    let admin = Admin::start().await;
    let c = &admin.control;
    let (s, um) = adm(
        c,
        "POST",
        "/v1/users",
        json!({"name": "um", "email": "um@example.com", "password": "Um-pw-1!", "role": "user_manager"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let um_uid = um["uid"].as_u64().unwrap();
    let (s, admin_role) = adm(c, "POST", "/v1/roles", json!({"name": "boss", "management": "admin"})).await;
    assert_eq!(s, StatusCode::OK);
    let boss = admin_role["uid"].as_u64().unwrap();
    let before = c.snapshot();
    let um_creds = ("um", "Um-pw-1!");
    let refused = [
        ("PUT", format!("/v1/users/{um_uid}"), json!({"role": "admin"})),
        ("PUT", format!("/v1/users/{um_uid}"), json!({"role_uids": [boss]})),
        ("POST", "/v1/users".to_string(), json!({"name": "a2", "password": "A2-pw-1!", "role": "admin"})),
        ("POST", "/v1/users".to_string(), json!({"name": "a3", "password": "A3-pw-1!", "role_uids": [boss]})),
        ("PUT", "/v1/users/1".to_string(), json!({"password": "Taken-over-1!"})),
        ("DELETE", "/v1/users/1".to_string(), Value::Null),
        ("POST", "/v1/roles".to_string(), json!({"name": "boss2", "management": "admin"})),
        ("PUT", format!("/v1/roles/{boss}"), json!({"management": "db_viewer"})),
        ("DELETE", format!("/v1/roles/{boss}"), Value::Null),
    ];
    for (method, path, body) in refused {
        let (s, v) = as_user(c, um_creds, method, &path, body.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} {body}");
        assert_eq!(v["error_code"], "unauthorized_action", "{method} {path}");
    }
    assert_eq!(*c.snapshot(), *before, "refused calls changed nothing");
    // What a user manager may do still works.
    let (s, _) = as_user(
        c,
        um_creds,
        "POST",
        "/v1/users",
        json!({"name": "dev", "password": "Dev-pw-1!", "role": "db_viewer"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        as_user(c, um_creds, "POST", "/v1/roles", json!({"name": "devs", "management": "db_member"})).await;
    assert_eq!(s, StatusCode::OK);
    // And an admin may do all of it.
    let (s, _) = adm(c, "PUT", &format!("/v1/users/{um_uid}"), json!({"role": "admin"})).await;
    assert_eq!(s, StatusCode::OK);
}
