//! Crash safety: the process is killed with SIGKILL at random moments during a stream
//! of admin writes, again and again; after every restart the store loads and every
//! change that was acknowledged with 200 is there (it authenticates on the database
//! port). A write cut off before its answer may or may not have landed — never half.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::admin::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_sigkill_at_random_moments() {
    // 20 in CI; a soak run sets TURNSTILE_CRASH_ROUNDS=1000.
    let rounds: usize =
        std::env::var("TURNSTILE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    let (status, _) =
        process.curl("PUT", "/v1/bdbs/1/passwords", (ADMIN, ADMIN_PW), Some(r#"{"password": "p-0"}"#)).await;
    assert_eq!(status, 200);
    let acked = Arc::new(Mutex::new(vec!["p-0".to_string()]));
    // A small deterministic generator: the kill moments vary, the test stays repeatable.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cut_off = 0;
    for round in 0..rounds {
        let url = process.admin_url.clone();
        let writes = Arc::clone(&acked);
        let writer = tokio::spawn(async move {
            for i in 0.. {
                let pw = format!("r{round}-{i}");
                let body = format!(r#"{{"password": "{pw}"}}"#);
                let (status, _) =
                    curl(&url, "POST", "/v1/bdbs/1/passwords", (ADMIN, ADMIN_PW), Some(&body)).await;
                if status != 200 {
                    return;
                }
                writes.lock().unwrap().push(pw);
            }
        });
        // Randomness, not synchronisation: where in the stream of writes the kill lands.
        tokio::time::sleep(Duration::from_millis(20 + next() % 200)).await;
        process = process.kill9_and_restart().await;
        let _ = writer.await;
        let acknowledged = acked.lock().unwrap().clone();
        let mut c = Conn::connect(&process.bdb(1)).await;
        for pw in &acknowledged {
            assert_eq!(
                show(&c.cmd(&["AUTH", pw]).await),
                "+OK\r\n",
                "round {round}: acknowledged {pw} was lost"
            );
        }
        // The write in flight at the kill either landed whole or not at all.
        let in_flight = format!(
            "r{round}-{}",
            acknowledged.iter().filter(|p| p.starts_with(&format!("r{round}-"))).count()
        );
        let reply = c.cmd(&["AUTH", &in_flight]).await;
        assert!(reply == b"+OK\r\n" || reply.starts_with(b"-WRONGPASS"), "{}", show(&reply));
        cut_off += usize::from(reply == b"+OK\r\n");
    }
    let total = acked.lock().unwrap().len();
    eprintln!(
        "{rounds} kill -9 / restart cycles, {total} acknowledged changes, none lost; {cut_off} unacknowledged writes had landed"
    );
    assert!(total > rounds, "the writers did write between kills ({total})");
}
