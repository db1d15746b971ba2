//! Hostile input against every admin API endpoint, through the router (`oneshot`):
//! malformed JSON, a wrong type in each field, unknown fields, bodies over the limit,
//! wrong methods, bad uids, missing and wrong credentials. Each answer must be the
//! right 4xx with a JSON `error_code` (never a 5xx, never a panic), and afterwards
//! the store file and every GET view must be exactly as before.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64ct::{Base64, Encoding};
use common::admin::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use turnstile::control::Control;

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    /// A raw `Authorization` header value (bytes, to allow non-UTF-8).
    Raw(&'a [u8]),
}

const AS_ADMIN: Auth = Auth::Basic(ADMIN, ADMIN_PW);

async fn send(
    c: &Control,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value, HeaderMap) {
    let mut r = Request::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Basic(u, p) => {
            r = r.header(
                "authorization",
                format!("Basic {}", Base64::encode_string(format!("{u}:{p}").as_bytes())),
            )
        }
        Auth::Raw(v) => r = r.header("authorization", axum::http::HeaderValue::from_bytes(v).unwrap()),
    }
    if body.is_some() {
        r = r.header("content-type", "application/json");
    }
    let req = r.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
    let resp = turnstile::admin::app(c.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!("{method} {path}: {status} with a non-JSON body: {:?}", String::from_utf8_lossy(&bytes))
    });
    (status, value, headers)
}

/// The response is `status` with an RS error body whose code is one of `codes`.
#[track_caller]
fn expect(r: &(StatusCode, Value, HeaderMap), status: u16, codes: &[&str], what: &str) {
    assert!(!r.0.is_server_error(), "{what}: a 5xx: {:?}", r.1);
    assert_eq!(r.0.as_u16(), status, "{what}: {:?}", r.1);
    let code = r.1["error_code"].as_str().unwrap_or_else(|| panic!("{what}: no error_code: {:?}", r.1));
    assert!(codes.contains(&code), "{what}: error_code {code}, expected one of {codes:?}");
    assert!(r.1["description"].as_str().is_some_and(|d| !d.is_empty()), "{what}: no description: {:?}", r.1);
}

/// A field's JSON type, to pick values of every other type.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    U16,
    U32,
    U64,
    Bool,
    U32List,
    RolePerms,
}

fn wrong_values(kind: Kind) -> Vec<Value> {
    let numbers =
        |over: Value| vec![json!("7"), json!(-1), json!(1.5), json!(1e40), over, json!(true), json!([1])];
    match kind {
        Kind::Str => vec![json!(12345), json!(true), json!([]), json!({}), json!(["a"])],
        Kind::U16 => numbers(json!(65536)),
        Kind::U32 => numbers(json!(4_294_967_296u64)),
        Kind::U64 => numbers(json!(1e20)),
        Kind::Bool => vec![json!("true"), json!(1), json!([]), json!({})],
        Kind::U32List => {
            vec![json!("1"), json!(1), json!(["a"]), json!([-1]), json!([4_294_967_296u64]), json!({})]
        }
        Kind::RolePerms => vec![
            json!("x"),
            json!([1]),
            json!([{"role_uid": "a", "redis_acl_uid": 1}]),
            json!([{"role_uid": 1}]),
            json!([{"role_uid": 1, "redis_acl_uid": 1, "extra": 1}]),
        ],
    }
}

/// An endpoint that takes a JSON body: a valid body and the type of each field.
struct BodyEndpoint {
    method: &'static str,
    path: &'static str,
    body: Value,
    fields: &'static [(&'static str, Kind)],
}

const BDB_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("port", Kind::U16),
    ("listen", Kind::Str),
    ("upstream", Kind::Str),
    ("upstream_password_env", Kind::Str),
    ("default_user", Kind::Bool),
    ("roles_permissions", Kind::RolePerms),
    ("disconnect_clients_on_password_removal", Kind::Bool),
    ("max_connections", Kind::U32),
    ("tls_mode", Kind::Str),
];
const NEW_BDB_FIELDS: &[(&str, Kind)] = &[
    ("uid", Kind::U32),
    ("name", Kind::Str),
    ("port", Kind::U16),
    ("listen", Kind::Str),
    ("upstream", Kind::Str),
    ("upstream_password_env", Kind::Str),
    ("default_user", Kind::Bool),
    ("roles_permissions", Kind::RolePerms),
    ("disconnect_clients_on_password_removal", Kind::Bool),
    ("max_connections", Kind::U32),
    ("tls_mode", Kind::Str),
];
const USER_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("email", Kind::Str),
    ("password", Kind::Str),
    ("role", Kind::Str),
    ("role_uids", Kind::U32List),
    ("auth_method", Kind::Str),
];
const ROTATION_FIELDS: &[(&str, Kind)] =
    &[("username", Kind::Str), ("new_password", Kind::Str), ("old_password", Kind::Str)];

/// Every endpoint that reads a body, with a body that would be accepted.
fn body_endpoints() -> Vec<BodyEndpoint> {
    let pw = || json!({"password": "New-pw-77!"});
    let rot = || json!({"username": "app-user", "new_password": "App-pw-2!", "old_password": "App-pw-1!"});
    let mut v = Vec::new();
    for path in ["/v1/bdbs/1/passwords", "/bdbs/1/passwords"] {
        for method in ["PUT", "POST", "DELETE"] {
            v.push(BodyEndpoint { method, path, body: pw(), fields: &[("password", Kind::Str)] });
        }
    }
    for method in ["PUT", "POST", "DELETE"] {
        v.push(BodyEndpoint { method, path: "/v1/users/password", body: rot(), fields: ROTATION_FIELDS });
    }
    for method in ["POST", "DELETE"] {
        v.push(BodyEndpoint { method, path: "/v1/cluster", body: rot(), fields: ROTATION_FIELDS });
    }
    v.extend([
        BodyEndpoint {
            method: "POST",
            path: "/v1/users",
            body: json!({"name": "eve", "email": "eve@example.com", "password": "Eve-pw-1!", "role": "db_viewer"}),
            fields: USER_FIELDS,
        },
        BodyEndpoint { method: "PUT", path: "/v1/users/2", body: json!({"email": "new@example.com"}), fields: USER_FIELDS },
        BodyEndpoint {
            method: "POST",
            path: "/v1/bdbs",
            body: json!({"name": "b2", "port": 0, "upstream": "redis://127.0.0.1:1"}),
            fields: NEW_BDB_FIELDS,
        },
        BodyEndpoint { method: "PUT", path: "/v1/bdbs/1", body: json!({"name": "renamed"}), fields: BDB_FIELDS },
        BodyEndpoint {
            method: "POST",
            path: "/v1/roles",
            body: json!({"name": "r2", "management": "db_viewer"}),
            fields: &[("name", Kind::Str), ("management", Kind::Str)],
        },
        BodyEndpoint {
            method: "PUT",
            path: "/v1/roles/1",
            body: json!({"name": "r1b"}),
            fields: &[("name", Kind::Str), ("management", Kind::Str)],
        },
        BodyEndpoint {
            method: "POST",
            path: "/v1/redis_acls",
            body: json!({"name": "a2", "acl": "+get ~*"}),
            fields: &[("name", Kind::Str), ("acl", Kind::Str)],
        },
        BodyEndpoint {
            method: "PUT",
            path: "/v1/redis_acls/1",
            body: json!({"acl": "+set ~*"}),
            fields: &[("name", Kind::Str), ("acl", Kind::Str)],
        },
        BodyEndpoint {
            method: "PUT",
            path: "/v1/cluster",
            body: json!({"name": "c2"}),
            fields: &[
                ("name", Kind::Str),
                ("password_complexity", Kind::Bool),
                ("password_min_length", Kind::U32),
                ("password_expiration_duration", Kind::U32),
            ],
        },
        BodyEndpoint { method: "PUT", path: "/v1/cluster", body: rot(), fields: ROTATION_FIELDS },
        BodyEndpoint {
            method: "PUT",
            path: "/v1/cluster/policy",
            body: json!({"login_lockout_threshold": 3}),
            fields: &[
                ("login_lockout_threshold", Kind::U32),
                ("login_lockout_counter_reset_after", Kind::U64),
                ("login_lockout_duration", Kind::U64),
            ],
        },
    ]);
    v
}

/// Endpoints without a body (their state-changing ones would succeed if reached).
const BODYLESS: &[(&str, &str)] = &[
    ("GET", "/v1/bdbs"),
    ("GET", "/v1/bdbs/1"),
    ("DELETE", "/v1/bdbs/1"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/2"),
    ("DELETE", "/v1/users/2"),
    ("GET", "/v1/roles"),
    ("GET", "/v1/roles/1"),
    ("DELETE", "/v1/roles/1"),
    ("GET", "/v1/redis_acls"),
    ("GET", "/v1/redis_acls/1"),
    ("DELETE", "/v1/redis_acls/1"),
    ("GET", "/v1/cluster"),
    ("GET", "/v1/cluster/policy"),
];

/// Everything observable: the store file and every GET view (less `last_login`,
/// which the snapshot's own admin logins move).
async fn snapshot(admin: &Admin) -> (Vec<u8>, Vec<Value>) {
    let file = std::fs::read(admin.dir.path().join("state.json")).expect("store file");
    let mut views = Vec::new();
    for (m, p) in BODYLESS.iter().filter(|(m, _)| *m == "GET") {
        let (s, v, _) = send(&admin.control, m, p, AS_ADMIN, None).await;
        assert_eq!(s, StatusCode::OK, "{m} {p}: {v}");
        views.push(without_last_login(v));
    }
    (file, views)
}

fn without_last_login(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(without_last_login).collect()),
        Value::Object(mut m) => {
            m.remove("last_login");
            Value::Object(m)
        }
        other => other,
    }
}

/// A store with one of everything: role 1, ACL 1, user 2 (`app-user`), database 1
/// with a password; lockout off so wrong passwords for the admin change nothing.
async fn fixture() -> (Admin, (Vec<u8>, Vec<Value>)) {
    let admin = Admin::start().await;
    let c = &admin.control;
    let setup: &[(&str, &str, Value)] = &[
        ("PUT", "/v1/cluster/policy", json!({"login_lockout_threshold": 0})),
        ("POST", "/v1/roles", json!({"name": "app", "management": "db_viewer"})),
        ("POST", "/v1/redis_acls", json!({"name": "all", "acl": "+@all ~*"})),
        (
            "POST",
            "/v1/users",
            json!({"name": "app-user", "email": "app@example.com", "password": "App-pw-1!", "role_uids": [1]}),
        ),
        (
            "POST",
            "/v1/bdbs",
            json!({"uid": 1, "name": "app", "listen": "127.0.0.1:0", "upstream": "redis://127.0.0.1:1"}),
        ),
        ("POST", "/v1/bdbs/1/passwords", json!({"password": "Db-pw-1!"})),
    ];
    for (m, p, b) in setup {
        let (s, v, _) = send(c, m, p, AS_ADMIN, Some(b.to_string().into_bytes())).await;
        assert_eq!(s, StatusCode::OK, "setup {m} {p}: {v}");
    }
    let (s, v, _) = send(c, "GET", "/v1/users/2", AS_ADMIN, None).await;
    assert_eq!((s, &v["name"]), (StatusCode::OK, &json!("app-user")), "user 2 is app-user");
    let snap = snapshot(&admin).await;
    (admin, snap)
}

async fn assert_unchanged(admin: &Admin, before: &(Vec<u8>, Vec<Value>), what: &str) {
    let after = snapshot(admin).await;
    assert_eq!(after.1, before.1, "{what}: a GET view changed");
    assert!(after.0 == before.0, "{what}: the store file changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_for_every_body_endpoint() {
    let (admin, before) = fixture().await;
    let deep = format!("{{\"name\": {}1{}}}", "[".repeat(30_000), "]".repeat(30_000));
    let bodies: Vec<(&[u8], &[&str])> = vec![
        (b"", &["missing_body"]),
        (b"  \r\n ", &["missing_body"]),
        (b"{", &["invalid_json"]),
        (b"{\"password\":}", &["invalid_json"]),
        (b"not json", &["invalid_json"]),
        (b"[\"New-pw-77!\"]", &["invalid_json"]),
        (b"\"New-pw-77!\"", &["invalid_json"]),
        (b"null", &["invalid_json"]),
        (b"12", &["invalid_json"]),
        (b"{\"password\": \"x\",}", &["invalid_json"]),
        (b"{\"a\" \"b\"}", &["invalid_json"]),
        (b"{}{}", &["invalid_json"]),
        (b"{\"name\": \"x\"} trailing", &["invalid_json"]),
        (b"{\"password\": \"\xff\xfe\"}", &["invalid_json"]),
        (b"\xef\xbb\xbf{}", &["invalid_json"]),
        (b"{\"password\": \"a\0b\"}", &["invalid_json"]),
        (b"{\"name\": \"\\ud800\"}", &["invalid_json"]),
        (deep.as_bytes(), &["invalid_json"]),
    ];
    let mut n = 0;
    for e in body_endpoints() {
        for (body, codes) in &bodies {
            let r = send(&admin.control, e.method, e.path, AS_ADMIN, Some(body.to_vec())).await;
            expect(
                &r,
                400,
                codes,
                &format!(
                    "{} {} {:?}",
                    e.method,
                    e.path,
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ),
            );
            n += 1;
        }
    }
    assert!(n > 300, "{n} requests");
    assert_unchanged(&admin, &before, "malformed JSON").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_in_any_field_is_400_naming_the_field() {
    let (admin, before) = fixture().await;
    let mut n = 0;
    for e in body_endpoints() {
        for (field, kind) in e.fields {
            for wrong in wrong_values(*kind) {
                let mut body = e.body.clone();
                body[*field] = wrong.clone();
                let what = format!("{} {} {field}={wrong}", e.method, e.path);
                let r = send(&admin.control, e.method, e.path, AS_ADMIN, Some(body.to_string().into_bytes()))
                    .await;
                expect(&r, 400, &["invalid_json"], &what);
                let d = r.1["description"].as_str().unwrap();
                assert!(d.contains(field), "{what}: the description does not name the field: {d}");
                n += 1;
            }
        }
    }
    assert!(n > 250, "{n} requests");
    assert_unchanged(&admin, &before, "wrong types").await;
}

/// Unknown fields are refused (400), not ignored: on a password API a misspelt
/// field (`pasword`) silently ignored would apply a change the caller did not mean.
/// RS mostly ignores them; turnstile is stricter, on every endpoint alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_400_on_every_endpoint() {
    let (admin, before) = fixture().await;
    for e in body_endpoints() {
        for extra in ["colour", "pasword", "PASSWORD", ""] {
            let mut body = e.body.clone();
            body[extra] = json!(1);
            let what = format!("{} {} +{extra:?}", e.method, e.path);
            let r =
                send(&admin.control, e.method, e.path, AS_ADMIN, Some(body.to_string().into_bytes())).await;
            expect(&r, 400, &["invalid_json"], &what);
            let d = r.1["description"].as_str().unwrap();
            assert!(d.contains("unknown field"), "{what}: {d}");
        }
    }
    assert_unchanged(&admin, &before, "unknown fields").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let (admin, before) = fixture().await;
    // Valid JSON (trailing spaces), only too long: the limit, not the parser, refuses it.
    let huge = |e: &BodyEndpoint, len: usize| {
        let mut body = e.body.to_string().into_bytes();
        body.resize(len + 1, b' ');
        body
    };
    for e in body_endpoints() {
        for len in [64 * 1024, 1024 * 1024] {
            let r = send(&admin.control, e.method, e.path, AS_ADMIN, Some(huge(&e, len))).await;
            expect(&r, 413, &["body_too_large"], &format!("{} {} {len}", e.method, e.path));
        }
        // Streamed without a content-length: the limit still holds.
        let req = Request::builder()
            .method(e.method)
            .uri(e.path)
            .header(
                "authorization",
                format!("Basic {}", Base64::encode_string(format!("{ADMIN}:{ADMIN_PW}").as_bytes())),
            )
            .body(Body::from_stream(Body::from(huge(&e, 256 * 1024)).into_data_stream()))
            .unwrap();
        let resp = turnstile::admin::app(admin.control.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{} {} streamed", e.method, e.path);
    }
    // Just under the limit is read (and then judged on its content).
    let e = &body_endpoints()[0];
    let r = send(&admin.control, "POST", "/v1/bdbs/1/passwords", AS_ADMIN, Some(vec![b' '; 60 * 1024])).await;
    expect(&r, 400, &["missing_body"], &format!("{} {} 60 KiB of spaces", e.method, e.path));
    assert_unchanged(&admin, &before, "huge bodies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_everywhere() {
    let (admin, before) = fixture().await;
    let allowed: &[(&str, &[&str])] = &[
        ("/v1/bdbs", &["GET", "POST"]),
        ("/v1/bdbs/1", &["GET", "PUT", "DELETE"]),
        ("/v1/bdbs/1/passwords", &["GET", "PUT", "POST", "DELETE"]),
        ("/bdbs/1/passwords", &["GET", "PUT", "POST", "DELETE"]),
        ("/v1/users/2/passwords", &["GET"]),
        ("/v1/users/password", &["PUT", "POST", "DELETE"]),
        ("/v1/users", &["GET", "POST"]),
        ("/v1/users/2", &["GET", "PUT", "DELETE"]),
        ("/v1/roles", &["GET", "POST"]),
        ("/v1/roles/1", &["GET", "PUT", "DELETE"]),
        ("/v1/redis_acls", &["GET", "POST"]),
        ("/v1/redis_acls/1", &["GET", "PUT", "DELETE"]),
        ("/v1/cluster", &["GET", "PUT", "POST", "DELETE"]),
        ("/v1/cluster/policy", &["GET", "PUT"]),
    ];
    let mut n = 0;
    for (path, ok) in allowed {
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "FOO"] {
            if ok.contains(&m) {
                continue;
            }
            for auth in [Auth::None, AS_ADMIN] {
                let r = send(&admin.control, m, path, auth, Some(b"{}".to_vec())).await;
                expect(&r, 405, &["method_not_allowed"], &format!("{m} {path}"));
                n += 1;
            }
        }
    }
    assert!(n > 100, "{n} requests");
    assert_unchanged(&admin, &before, "wrong methods").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uids_are_404() {
    let (admin, before) = fixture().await;
    let endpoints = body_endpoints();
    let bad = [
        "abc",
        "-1",
        "0",
        "9999",
        "99999999999",
        "4294967296",
        "1.5",
        "0x1",
        "1e3",
        "%20",
        "1%20",
        "%FF",
        "%00",
        "%C3%A9",
    ];
    let mut n = 0;
    for template in [
        "/v1/bdbs/{}/passwords",
        "/bdbs/{}/passwords",
        "/v1/bdbs/{}",
        "/v1/users/{}",
        "/v1/roles/{}",
        "/v1/redis_acls/{}",
    ] {
        let concrete = template.replace("{}", if template.contains("users") { "2" } else { "1" });
        let mut calls: Vec<(&str, Option<Vec<u8>>)> = endpoints
            .iter()
            .filter(|e| e.path == concrete)
            .map(|e| (e.method, Some(e.body.to_string().into_bytes())))
            .collect();
        calls.extend(BODYLESS.iter().filter(|(_, p)| *p == concrete).map(|(m, _)| (*m, None)));
        assert!(!calls.is_empty(), "{template}");
        for uid in bad {
            let path = template.replace("{}", uid);
            for (m, body) in &calls {
                let r = send(&admin.control, m, &path, AS_ADMIN, body.clone()).await;
                assert_eq!(r.0, StatusCode::NOT_FOUND, "{m} {path}: {:?}", r.1);
                assert!(r.1["error_code"].as_str().is_some(), "{m} {path}: {:?}", r.1);
                n += 1;
            }
        }
    }
    assert!(n > 150, "{n} requests");
    assert_unchanged(&admin, &before, "bad uids").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_are_401_everywhere() {
    let (admin, before) = fixture().await;
    let b64 = |s: &[u8]| format!("Basic {}", Base64::encode_string(s)).into_bytes();
    let no_colon = b64(b"admin");
    let not_utf8 = b64(b"admin:\xff\xfe");
    let empty = b64(b":");
    let creds: Vec<Auth> = vec![
        Auth::None,
        Auth::Basic(ADMIN, "wrong-password"),
        Auth::Basic(ADMIN, ""),
        Auth::Basic("nobody", ADMIN_PW),
        Auth::Basic(ADMIN_EMAIL, "Admin-pw-1"),
        Auth::Raw(b"Basic !!!not-base64!!!"),
        Auth::Raw(b"Basic"),
        Auth::Raw(b"Basic "),
        Auth::Raw(b"Bearer abc"),
        Auth::Raw(b"basic YWRtaW46QWRtaW4tcHctMSE="),
        Auth::Raw(&no_colon),
        Auth::Raw(&not_utf8),
        Auth::Raw(&empty),
        Auth::Raw(b"Basic \xff\xfe"),
    ];
    let mut calls: Vec<(&str, &str, Option<Vec<u8>>)> = Vec::new();
    let endpoints = body_endpoints();
    for e in &endpoints {
        calls.push((e.method, e.path, Some(e.body.to_string().into_bytes())));
    }
    calls.extend(BODYLESS.iter().map(|(m, p)| (*m, *p, None)));
    let mut n = 0;
    for (m, p, body) in &calls {
        for auth in &creds {
            let what = format!("{m} {p} {auth:?}");
            let r = send(&admin.control, m, p, *auth, body.clone()).await;
            expect(&r, 401, &["unauthorized"], &what);
            assert!(
                r.2.get("www-authenticate").is_some_and(|v| v.as_bytes().starts_with(b"Basic")),
                "{what}"
            );
            n += 1;
        }
    }
    assert!(n > 400, "{n} requests");
    assert_unchanged(&admin, &before, "bad credentials").await;
}
