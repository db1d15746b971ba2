//! Rotation under load, the promise of the product: 50 clients of a real client
//! library (the `redis` crate) run SET/GET non-stop while the admin API performs
//! hundreds of rotations (add new, delete old, replace all) on a database's default
//! user and on a named user. Zero command errors, zero dropped connections (each
//! client keeps its upstream `CLIENT ID`); a client reconnecting with the current
//! password always gets in, one with a removed password never does.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::http::StatusCode;
use common::admin::*;
use common::*;
use serde_json::json;

const CLIENTS: usize = 50;
const ROTATIONS: usize = 200;

async fn connect(
    addr: &str,
    user: Option<&str>,
    pw: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let url = match user {
        Some(u) => format!("redis://{u}:{pw}@{addr}/"),
        None => format!("redis://:{pw}@{addr}/"),
    };
    redis::Client::open(url)?.get_multiplexed_async_connection().await
}

async fn client_id(c: &mut redis::aio::MultiplexedConnection) -> i64 {
    redis::cmd("CLIENT").arg("ID").query_async(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_rotations_under_load_with_a_real_client() {
    let redis_server = Redis::start(&[]);
    let admin = Admin::start().await;
    let (s, bdb) = admin
        .admin(
            "POST",
            "/v1/bdbs",
            Some(&json!({"name": "load", "listen": "127.0.0.1:0", "upstream": format!("redis://{}", redis_server.addr())}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{bdb}");
    let addr = bdb["listen"].as_str().unwrap().to_string();
    let uid = bdb["uid"].as_u64().unwrap();
    let setup = [
        ("POST", "/v1/roles".to_string(), json!({"name": "app", "management": "db_viewer"})),
        ("POST", "/v1/redis_acls".to_string(), json!({"name": "all", "acl": "+@all ~*"})),
        ("POST", "/v1/users".to_string(), json!({"name": "app", "password": "user-0", "role_uids": [1]})),
        (
            "PUT",
            format!("/v1/bdbs/{uid}"),
            json!({"roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]}),
        ),
        ("PUT", format!("/v1/bdbs/{uid}/passwords"), json!({"password": "db-0"})),
    ];
    for (method, path, body) in setup {
        let (s, v) = admin.admin(method, &path, Some(&body.to_string())).await;
        assert_eq!(s, StatusCode::OK, "{method} {path}: {v}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    // Rotations start once every client is connected with the first passwords.
    let connected = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (addr, stop, ops, connected) =
            (addr.clone(), Arc::clone(&stop), Arc::clone(&ops), Arc::clone(&connected));
        clients.push(tokio::spawn(async move {
            // Four in five as the default user, the rest as the named user.
            let mut c = if n % 5 == 4 {
                connect(&addr, Some("app"), "user-0").await.unwrap()
            } else {
                connect(&addr, None, "db-0").await.unwrap()
            };
            let id = client_id(&mut c).await;
            connected.wait().await;
            let key = format!("k{n}");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("v{i}");
                let set: redis::RedisResult<()> =
                    redis::cmd("SET").arg(&key).arg(&v).query_async(&mut c).await;
                set.map_err(|e| format!("client {n} SET #{i}: {e}"))?;
                let got: redis::RedisResult<String> = redis::cmd("GET").arg(&key).query_async(&mut c).await;
                let got = got.map_err(|e| format!("client {n} GET #{i}: {e}"))?;
                if got != v {
                    return Err(format!("client {n}: GET returned {got}, expected {v}"));
                }
                ops.fetch_add(2, Ordering::Relaxed);
                i += 1;
            }
            if client_id(&mut c).await != id {
                return Err(format!("client {n} was moved to another upstream connection"));
            }
            Ok::<u64, String>(i)
        }));
    }

    connected.wait().await;
    let mut reconnects = 0;
    for r in 1..=ROTATIONS {
        let (db_old, db_new) = (format!("db-{}", r - 1), format!("db-{r}"));
        let (user_old, user_new) = (format!("user-{}", r - 1), format!("user-{r}"));
        if r % 10 == 0 {
            // Replace all, at once.
            let (s, v) = admin
                .admin(
                    "PUT",
                    &format!("/v1/bdbs/{uid}/passwords"),
                    Some(&json!({"password": db_new}).to_string()),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let body = json!({"username": "app", "new_password": user_new}).to_string();
            assert_eq!(admin.admin("PUT", "/v1/users/password", Some(&body)).await.0, StatusCode::OK);
        } else {
            // Add the new one, then delete the old one.
            let path = format!("/v1/bdbs/{uid}/passwords");
            assert_eq!(
                admin.admin("POST", &path, Some(&json!({"password": db_new}).to_string())).await.0,
                StatusCode::OK
            );
            assert_eq!(
                admin.admin("DELETE", &path, Some(&json!({"password": db_old}).to_string())).await.0,
                StatusCode::OK
            );
            let add = json!({"username": "app", "new_password": user_new}).to_string();
            assert_eq!(admin.admin("POST", "/v1/users/password", Some(&add)).await.0, StatusCode::OK);
            let del = json!({"username": "app", "old_password": user_old}).to_string();
            assert_eq!(admin.admin("DELETE", "/v1/users/password", Some(&del)).await.0, StatusCode::OK);
        }
        if r % 5 == 0 {
            // Reconnecting: the current password always gets in, a removed one never.
            assert!(
                connect(&addr, None, &db_new).await.is_ok(),
                "rotation {r}: current default password refused"
            );
            assert!(
                connect(&addr, Some("app"), &user_new).await.is_ok(),
                "rotation {r}: current user password refused"
            );
            assert!(
                connect(&addr, None, &db_old).await.is_err(),
                "rotation {r}: removed default password accepted"
            );
            assert!(
                connect(&addr, Some("app"), &user_old).await.is_err(),
                "rotation {r}: removed user password accepted"
            );
            reconnects += 4;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut per_client = Vec::new();
    for c in clients {
        per_client.push(c.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    let total = ops.load(Ordering::Relaxed);
    eprintln!(
        "{ROTATIONS} rotations x 2 sets, {CLIENTS} clients, {total} commands, 0 errors, 0 dropped connections, {reconnects} reconnect checks"
    );
    assert!(per_client.iter().all(|&n| n > 0), "every client made progress: {per_client:?}");
}
