//! `[admin.credential_envs]`: a database created through the API sends a secret from
//! turnstile's environment only to an upstream address the operator listed for it.
//! The real binary, real Redis servers, and a listening socket standing in for the
//! server of an API user who would collect the secrets: every refusal is a 400 that
//! names the variable (and the address), changes nothing, and that socket is never
//! connected to — not on create, not on change, not for a record planted in the
//! store as another node (or an older version) could have written it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::admin::*;
use common::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Redis B's password: in `TS_B_PW`, which the config allows for B's address only.
const B_PW: &str = "b-upstream-secret-4Hq";
/// Set in turnstile's environment, never listed.
const OTHER_PW: &str = "other-secret-9Zt";
const DBM: (&str, &str) = ("dbm", "Dbm-pw-123!");
const AS_ADMIN: (&str, &str) = (ADMIN, ADMIN_PW);

/// turnstile with database 1 in front of `a`, `TS_B_PW` allowed towards `b`.
async fn start(dir: &Path, a: &Redis, b: &Redis) -> Process {
    let allowed = format!("[admin.credential_envs]\nTS_B_PW = [\"{}\"]", b.addr());
    let envs = [("TS_B_PW", B_PW), ("TS_OTHER_PW", OTHER_PW)];
    let upstream = format!("redis://{}", a.addr());
    Process::start_configured_env(dir, &upstream, &allowed, "", "", "", &envs).await
}

/// What the store holds of every database's connection details (the rest, such as
/// password use times, may change meanwhile without anyone's request).
fn stored_bdbs(p: &Process) -> Value {
    let text = std::fs::read_to_string(p.dir.join("data/state.json")).unwrap();
    let state: Value = serde_json::from_str(&text).unwrap();
    let keys = ["uid", "name", "listen", "upstream", "upstream_password_env", "sentinel_password_env"];
    let bdbs = state["bdbs"].as_object().unwrap();
    bdbs.values()
        .map(|b| keys.iter().map(|k| (k.to_string(), b[k].clone())).collect::<serde_json::Map<_, _>>())
        .collect()
}

/// The databases as the API shows them, and as the store holds them.
async fn everything(p: &Process) -> (Value, Value) {
    let (code, listed) = p.curl("GET", "/v1/bdbs", AS_ADMIN, None).await;
    assert_eq!(code, 200, "{listed}");
    (listed, stored_bdbs(p))
}

/// `who`'s call must be a 400 `invalid_parameter` whose message holds every one of
/// `names` and no secret, and must leave every database as it was.
async fn refused(p: &Process, who: (&str, &str), method: &str, path: &str, body: Value, names: &[&str]) {
    let before = everything(p).await;
    let (code, v) = p.curl(method, path, who, Some(&body.to_string())).await;
    assert_eq!(code, 400, "{} {method} {path} {body}: {v}", who.0);
    assert_eq!(v["error_code"], "invalid_parameter", "{v}");
    let message = v["description"].as_str().unwrap();
    for n in names {
        assert!(message.contains(n), "{body}: {n} not named in {message:?}");
    }
    for secret in [B_PW, OTHER_PW, ADMIN_PW] {
        assert!(!v.to_string().contains(secret), "a secret in {v}");
    }
    assert_eq!(everything(p).await, before, "{body} changed something");
}

/// Nothing connected to `attacker` (given time to: a connection attempted during
/// the refused calls would be waiting in its backlog already).
async fn untouched(attacker: &TcpListener) {
    let got = tokio::time::timeout(Duration::from_millis(500), attacker.accept()).await;
    assert!(got.is_err(), "the attacker's server got a connection from {:?}", got.unwrap().map(|c| c.1));
}

/// A client authenticates on `listen` with `pw` and writes and reads through it.
async fn works(listen: &str, pw: &str, key: &str) {
    let mut c = Conn::connect(listen).await;
    assert_eq!(show(&c.cmd(&["AUTH", pw]).await), "+OK\r\n");
    assert_eq!(show(&c.cmd(&["SET", key, "through-turnstile"]).await), "+OK\r\n");
    assert_eq!(show(&c.cmd(&["GET", key]).await), "$17\r\nthrough-turnstile\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_secrets_go_only_where_the_operator_said() {
    let a = Redis::start(&[]);
    let b = Redis::start(&["--requirepass", B_PW]);
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &a, &b).await;
    let attacker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil = attacker.local_addr().unwrap().to_string();
    let (code, v) = p
        .curl(
            "POST",
            "/v1/users",
            AS_ADMIN,
            Some(
                &json!({"name": DBM.0, "email": "dbm@example.com", "password": DBM.1, "role": "db_member"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(code, 200, "{v}");

    // A listed variable towards its listed address: works end to end (the SET needs
    // turnstile's users on B, which only B's password can make).
    let (code, good) = p
        .curl(
            "POST",
            "/v1/bdbs",
            DBM,
            Some(
                &json!({"name": "good", "listen": "127.0.0.1:0", "upstream": format!("redis://{}", b.addr()),
                    "upstream_password_env": "TS_B_PW"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(code, 200, "{good}");
    let good_uid = good["uid"].as_u64().unwrap();
    let good_listen = good["listen"].as_str().unwrap().to_string();
    let (code, v) = p
        .curl(
            "PUT",
            &format!("/v1/bdbs/{good_uid}/passwords"),
            AS_ADMIN,
            Some(&json!({"password": "client-pw-1"}).to_string()),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    works(&good_listen, "client-pw-1", "k1").await;
    let mut direct = b.connect().await;
    assert_eq!(show(&direct.cmd(&["AUTH", B_PW]).await), "+OK\r\n");
    assert_eq!(show(&direct.cmd(&["GET", "k1"]).await), "$17\r\nthrough-turnstile\r\n");

    let sentinel_at = |hosts: &str| format!("redis+sentinel://{hosts}/mymaster");
    for who in [DBM, AS_ADMIN] {
        let new = |extra: Value| {
            let mut body =
                json!({"name": "evil", "listen": "127.0.0.1:0", "upstream": format!("redis://{evil}")});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        let creates = [
            // Not listed: refused the same whether it is set or not.
            (
                new(json!({"upstream_password_env": "TS_OTHER_PW"})),
                vec!["TS_OTHER_PW", "admin.credential_envs"],
            ),
            (new(json!({"upstream_password_env": "TS_UNSET"})), vec!["TS_UNSET", "admin.credential_envs"]),
            (
                new(json!({"upstream_password_env": "TURNSTILE_ADMIN_PASSWORD"})),
                vec!["TURNSTILE_ADMIN_PASSWORD"],
            ),
            // Listed, but not for this address.
            (new(json!({"upstream_password_env": "TS_B_PW"})), vec!["TS_B_PW", evil.as_str()]),
            // A fake Sentinel: neither secret goes to it.
            (
                new(json!({"upstream": sentinel_at(&evil), "sentinel_password_env": "TS_B_PW"})),
                vec!["sentinel_password_env", "TS_B_PW", evil.as_str()],
            ),
            (
                new(json!({"upstream": sentinel_at(&evil), "upstream_password_env": "TS_B_PW"})),
                vec!["upstream_password_env", "TS_B_PW", evil.as_str()],
            ),
            (
                new(
                    json!({"upstream": sentinel_at(&evil), "sentinel_password_env": "TURNSTILE_ADMIN_PASSWORD"}),
                ),
                vec!["sentinel_password_env", "TURNSTILE_ADMIN_PASSWORD"],
            ),
            // Every Sentinel must be listed, not just one of them.
            (
                new(
                    json!({"upstream": sentinel_at(&format!("{},{evil}", b.addr())), "upstream_password_env": "TS_B_PW"}),
                ),
                vec!["TS_B_PW", evil.as_str()],
            ),
        ];
        for (body, names) in creates {
            refused(&p, who, "POST", "/v1/bdbs", body, &names).await;
        }
        // Changing the good database: its upstream, or the variable it names.
        let path = format!("/v1/bdbs/{good_uid}");
        let patches = [
            (json!({"upstream": format!("redis://{evil}")}), vec!["TS_B_PW", evil.as_str()]),
            (json!({"upstream": sentinel_at(&evil)}), vec!["TS_B_PW", evil.as_str()]),
            (json!({"upstream_password_env": "TS_OTHER_PW"}), vec!["TS_OTHER_PW"]),
            (
                json!({"upstream": format!("redis://{evil}"), "upstream_password_env": "TURNSTILE_ADMIN_PASSWORD"}),
                vec!["TURNSTILE_ADMIN_PASSWORD"],
            ),
        ];
        for (body, names) in patches {
            refused(&p, who, "PUT", &path, body, &names).await;
        }
    }
    untouched(&attacker).await;
    // Nothing was half-applied in memory either: the good database still serves B.
    works(&good_listen, "client-pw-1", "k2").await;

    // A record naming a variable the operator did not allow, as an older node could
    // have stored it: on start it is refused like a request, and not served.
    let p = p
        .stop_edit_and_restart(|store| {
            let path = store.join("state.json");
            let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut planted = state["bdbs"][good_uid.to_string()].clone();
            planted["uid"] = json!(99);
            planted["name"] = json!("planted");
            planted["listen"] = json!("127.0.0.1:0");
            planted["upstream"] = json!(format!("redis://{evil}"));
            planted["upstream_password_env"] = json!("TS_OTHER_PW");
            state["bdbs"]["99"] = planted;
            std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
        })
        .await;
    assert!(p.bdbs.iter().all(|(uid, _)| *uid != 99), "the planted database was started: {:?}", p.bdbs);
    let good_listen = p.bdb(good_uid as u32);
    works(&good_listen, "client-pw-1", "k3").await;
    untouched(&attacker).await;
}

#[tokio::test]
async fn a_config_listing_turnstiles_own_secret_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("turnstile.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[admin.credential_envs]\nTURNSTILE_ADMIN_PASSWORD = [\"127.0.0.1:1\"]\n\
             [store]\ndir = \"{}\"\n[[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\n\
             upstream = \"redis://127.0.0.1:1\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .arg("--config")
        .arg(&config)
        .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(20), run).await.expect("turnstile did not exit").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(
            "admin.credential_envs.TURNSTILE_ADMIN_PASSWORD: holds the bootstrap admin's password, which is never sent to an upstream"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(ADMIN_PW), "{stderr}");
    assert!(!dir.path().join("data").exists(), "refused before the store was touched");
}
