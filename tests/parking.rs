//! Parking idle connections: a client that has read nothing for a sweep or two gives
//! up its running state and resumes on its next bytes with exactly the replies it
//! would have had; connections of their own (pub/sub, MULTI, blocking) never park;
//! a parked connection still closes on a kill, on shutdown and when the client goes.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

const PW: &str = "park-Pw-1";

fn parked(p: &Proxy) -> u64 {
    p.ctx.stats.parked.load(Ordering::Relaxed)
}

/// Polls `cond` until it holds (or fails the test after 15 s: a sweep is 1 s).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

#[tokio::test]
async fn idle_clients_park_and_resume_with_exact_replies() {
    let redis = Redis::start(&[]);
    let p = Proxy::start(&redis, &[PW]).await;
    let mut clients = Vec::new();
    for i in 0..40 {
        let mut c = p.authed(PW).await;
        if i % 4 == 0 {
            // RESP3 clients too: they resume on RESP3 lanes.
            let hello = c.cmd(&["HELLO", "3"]).await;
            assert!(hello.starts_with(b"%"), "{}", show(&hello));
        }
        assert_eq!(c.cmd(&["SET", &format!("park:{i}"), &format!("v{i}")]).await, b"+OK\r\n");
        clients.push(c);
    }
    until("all 40 park", || parked(&p) == 40).await;
    // Every client picks up where it left: its own value, a pipeline in order, and
    // a reply of turnstile's own (PING is forwarded; AUTH again is answered here).
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.cmd(&["GET", &format!("park:{i}")]).await, bulk(&format!("v{i}")), "client {i}");
        c.send(&cmd_bytes(&["INCR", &format!("n:{i}")])).await;
        c.send(&cmd_bytes(&["AUTH", PW])).await;
        c.send(&cmd_bytes(&["GET", &format!("park:{i}")])).await;
        let want = [b":1\r\n".to_vec(), b"+OK\r\n".to_vec(), bulk(&format!("v{i}"))].concat();
        assert_eq!(show(&c.replies(3).await), show(&want), "client {i}");
    }
    // And they park again once quiet.
    until("all 40 park again", || parked(&p) == 40).await;
    assert_eq!(clients[3].cmd(&["GET", "park:3"]).await, bulk("v3"));
}

#[tokio::test]
async fn connections_of_their_own_never_park() {
    let redis = Redis::start(&[]);
    let p = Proxy::start(&redis, &[PW]).await;
    let mut sub = p.authed(PW).await;
    sub.send(&cmd_bytes(&["SUBSCRIBE", "news"])).await;
    assert!(show(&sub.reply().await).contains("subscribe"));
    let mut multi = p.authed(PW).await;
    assert_eq!(multi.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(multi.cmd(&["INCR", "tx"]).await, b"+QUEUED\r\n");
    let mut blocked = p.authed(PW).await;
    blocked.send(&cmd_bytes(&["BLPOP", "queue", "0"])).await;
    // A plain client that went quiet after them: when it has parked, the others
    // have been idle for at least as many sweeps, and declined.
    let mut plain = p.authed(PW).await;
    assert_eq!(plain.cmd(&["PING"]).await, b"+PONG\r\n");
    until("the plain client parks", || parked(&p) >= 1).await;
    assert_eq!(parked(&p), 1, "only the client on lanes parks");
    // The others work as they did: a message, the transaction, the blocked pop.
    let mut other = p.authed(PW).await;
    assert_eq!(other.cmd(&["PUBLISH", "news", "hi"]).await, b":1\r\n");
    assert_eq!(show(&sub.reply().await), show(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"));
    assert_eq!(multi.cmd(&["EXEC"]).await, b"*1\r\n:1\r\n");
    assert_eq!(other.cmd(&["LPUSH", "queue", "job"]).await, b":1\r\n");
    assert_eq!(show(&blocked.reply().await), show(b"*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"));
    assert_eq!(plain.cmd(&["GET", "tx"]).await, b"$1\r\n1\r\n");
}

#[tokio::test]
async fn a_parked_connection_closes_on_a_kill_on_shutdown_and_when_its_client_goes() {
    let redis = Redis::start(&[]);
    let p = Proxy::start(&redis, &[PW]).await;
    let mut killed = p.authed(PW).await;
    let mut stays = p.authed(PW).await;
    let gone = p.authed(PW).await;
    until("three park", || parked(&p) == 3).await;
    // The client that leaves: its session ends while parked.
    drop(gone);
    until("the vanished client's session ends", || p.ctx.sessions.len() == 2 && parked(&p) == 2).await;
    // A kill (what a password removal with disconnect does) closes it at once.
    let n = p.ctx.sessions.close_where(|_| true);
    assert_eq!(n, 2);
    let t = Instant::now();
    assert_eq!(killed.read_to_close().await, b"", "closed without a reply");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(stays.read_to_close().await, b"");
    until("no session left", || p.ctx.sessions.is_empty() && parked(&p) == 0).await;
    // Shutdown: a parked client is closed and every task ends.
    let mut last = p.authed(PW).await;
    until("it parks", || parked(&p) == 1).await;
    p.shutdown();
    assert_eq!(last.read_to_close().await, b"");
    p.tracker.close();
    tokio::time::timeout(Duration::from_secs(10), p.tracker.wait())
        .await
        .expect("every connection task ended");
}
