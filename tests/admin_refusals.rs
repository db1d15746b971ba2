//! Requests the admin API refuses before reading their body (wrong credentials, an
//! unknown path, a body over the limit, a locked user) reach curl as their status
//! and JSON error over HTTP/2 and HTTP/1.1 alike, never as a reset or a framing
//! error, with bodies of 10 MB, declared or chunked, and with or without
//! `Expect: 100-continue`.

mod common;

use std::path::Path;

use common::Redis;
use common::admin::{ADMIN, ADMIN_PW, Process};
use serde_json::json;

const ROUNDS: usize = 10;

/// (what, credentials, path, body, extra curl flags, status, error_code)
type Case<'a> = (&'a str, &'a str, &'a str, &'a Path, &'a [&'a str], &'a str, &'a str);

/// One curl run: its exit code, HTTP status and version, body and error output.
struct Outcome {
    exit: i32,
    status: String,
    version: String,
    body: String,
    stderr: String,
}

async fn curl(url: &str, version: &str, auth: &str, path: &str, body: &Path, extra: &[&str]) -> Outcome {
    let out = tokio::process::Command::new("curl")
        .args(["-k", "-s", "-S", version, "--max-time", "30", "-X", "POST", "-u", auth])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .args(extra)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("{url}{path}"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (status, version) = tail.split_once(' ').unwrap_or((tail, ""));
    Outcome {
        exit: out.status.code().unwrap_or(-1),
        status: status.to_string(),
        version: version.to_string(),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refusals_arrive_as_their_status_over_http2_and_http1() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    let admin = format!("{ADMIN}:{ADMIN_PW}");

    // A user locked out after two failed logins. (The bad-credential cases below use
    // a user that does not exist, which no lockout affects.)
    let policy = r#"{"login_lockout_threshold": 2, "login_lockout_duration": 3600}"#;
    assert_eq!(p.curl("PUT", "/v1/cluster/policy", (ADMIN, ADMIN_PW), Some(policy)).await.0, 200);
    let user =
        json!({"name": "ops", "email": "ops@example.com", "password": "Ops-pw-1!", "role": "db_viewer"});
    let (s, v) = p.curl("POST", "/v1/users", (ADMIN, ADMIN_PW), Some(&user.to_string())).await;
    assert_eq!(s, 200, "{v}");
    for _ in 0..2 {
        assert_eq!(p.curl("GET", "/v1/bdbs", ("ops", "wrong"), None).await.0, 401);
    }
    let (s, v) = p.curl("GET", "/v1/bdbs", ("ops", "Ops-pw-1!"), None).await;
    assert_eq!((s, v["error_code"].as_str()), (401, Some("user_locked")), "{v}");

    let small = dir.path().join("small.json");
    std::fs::write(&small, r#"{"password": "new-pw-1"}"#).unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b'a'; 10_000_000]).unwrap();

    let cases: [Case; 7] = [
        ("bad credentials", "nobody:wrong", "/v1/bdbs/1/passwords", &small, &[], "401", "unauthorized"),
        ("bad credentials, 10 MB", "nobody:wrong", "/v1/bdbs/1/passwords", &big, &[], "401", "unauthorized"),
        ("unknown path, 10 MB", &admin, "/v1/no-such-thing", &big, &[], "404", "not_found"),
        ("10 MB body", &admin, "/v1/bdbs/1/passwords", &big, &[], "413", "body_too_large"),
        (
            "10 MB body, no Expect",
            &admin,
            "/v1/bdbs/1/passwords",
            &big,
            &["-H", "Expect:"],
            "413",
            "body_too_large",
        ),
        (
            "10 MB body, chunked",
            &admin,
            "/v1/bdbs/1/passwords",
            &big,
            &["-H", "Transfer-Encoding: chunked"],
            "413",
            "body_too_large",
        ),
        ("locked user, 10 MB", "ops:Ops-pw-1!", "/v1/bdbs/1/passwords", &big, &[], "401", "user_locked"),
    ];
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        for (what, auth, path, body, extra, status, code) in &cases {
            // The chunked header means nothing to HTTP/2 (curl drops it): the body
            // then comes without a declared length, which is the case worth testing.
            for round in 0..ROUNDS {
                let o = curl(&p.admin_url, flag, auth, path, body, extra).await;
                let ctx = format!("{what} over {flag}, round {round}: exit {} stderr {:?}", o.exit, o.stderr);
                assert_eq!(o.exit, 0, "{ctx}");
                assert_eq!((o.status.as_str(), o.version.as_str()), (*status, version), "{ctx}");
                let v: serde_json::Value = serde_json::from_str(&o.body)
                    .unwrap_or_else(|_| panic!("{ctx}: non-JSON body {:?}", o.body));
                assert_eq!(v["error_code"], *code, "{ctx}: {v}");
                assert_eq!(v["message"], v["description"], "{ctx}: {v}");
            }
        }
    }
    // The store and the API are unharmed: the admin still gets in.
    assert_eq!(p.curl("GET", "/v1/bdbs", (ADMIN, ADMIN_PW), None).await.0, 200);
}
