//! Reuse of upstream connections: a connection a client left clean serves the next
//! client, reset as if new; one left owing replies is never reused; dead, changed or
//! surplus connections are dropped.

mod common;

use std::time::{Duration, Instant};

use common::*;
use turnstile::proxy::{PoolLimits, Upstream};

const PW: &str = "pool-Pw-1";

async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
    }
}

/// Upstream connections Redis has right now, minus the one asking.
async fn redis_clients(redis: &Redis) -> i64 {
    let mut c = redis.connect().await;
    let info = show(&c.cmd(&["INFO", "clients"]).await);
    let line = info.lines().find(|l| l.starts_with("connected_clients:")).unwrap();
    line["connected_clients:".len()..].trim().parse::<i64>().unwrap() - 1
}

/// turnstile with no shared upstream connections: every client gets its own (the
/// connections this file is about), password `PW`.
async fn dedicated(upstream: &str) -> Proxy {
    let mut o = ProxyOptions::new(upstream);
    o.pool.shared = 0;
    let proxy = Proxy::with(o).await;
    proxy.add_default(PW).await;
    proxy
}

fn set_limits(proxy: &Proxy, redis: &Redis, size: usize) {
    let mut up = Upstream::parse(&format!("redis://{}", redis.addr())).unwrap();
    // Dedicated connections only: this file tests their reuse.
    up.pool = PoolLimits { size, idle: Duration::from_secs(30), shared: 0, ..PoolLimits::default() };
    proxy.ctx.set_upstream(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_connection_is_reused_and_reset_as_new() {
    let redis = Redis::start(&["--requirepass", "svc-secret"]);
    let proxy = dedicated(&format!("redis://:svc-secret@{}", redis.addr())).await;

    // The first client leaves state behind: another database, a name, an open
    // transaction with a queued command.
    let mut a = proxy.authed(PW).await;
    let id = integer(&a.cmd(&["CLIENT", "ID"]).await);
    assert_eq!(a.cmd(&["SELECT", "1"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "in-db-1"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "first"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "queued", "1"]).await, b"+QUEUED\r\n");
    assert_eq!(a.cmd(&["QUIT"]).await, b"+OK\r\n");
    drop(a);
    eventually("the connection is back in the pool", || proxy.ctx.pool.len() == 1).await;

    // The next client gets that very connection, reset and logged in again.
    let mut b = proxy.authed(PW).await;
    assert_eq!(integer(&b.cmd(&["CLIENT", "ID"]).await), id, "reused");
    assert_eq!(proxy.ctx.pool.len(), 0);
    assert_eq!(b.cmd(&["CLIENT", "GETNAME"]).await, b"$-1\r\n", "name reset");
    assert_eq!(b.cmd(&["GET", "k"]).await, b"$-1\r\n", "back in database 0");
    assert_eq!(b.cmd(&["EXEC"]).await, b"-ERR EXEC without MULTI\r\n", "transaction discarded");
    assert_eq!(b.cmd(&["GET", "queued"]).await, b"$-1\r\n", "the queued SET never ran");
    assert_eq!(b.cmd(&["ACL", "WHOAMI"]).await, b"$7\r\ndefault\r\n");
    // Still one upstream connection in all.
    let mut c = redis.connect().await;
    assert_eq!(c.cmd(&["AUTH", "svc-secret"]).await, b"+OK\r\n");
    assert!(show(&c.cmd(&["INFO", "clients"]).await).contains("connected_clients:2\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_connection_comes_back_without_its_messages() {
    let redis = Redis::start(&[]);
    let proxy = dedicated(&format!("redis://{}", redis.addr())).await;
    let mut a = proxy.authed(PW).await;
    let id = integer(&a.cmd(&["CLIENT", "ID"]).await);
    a.send(&cmd_bytes(&["HELLO", "3"])).await;
    let _ = a.reply().await;
    assert!(show(&a.cmd(&["SUBSCRIBE", "news"]).await).starts_with(">3\r\n"));
    let mut publisher = redis.connect().await;
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "for-a"]).await, b":1\r\n");
    assert!(show(&a.reply().await).contains("for-a"));
    drop(a);
    eventually("the connection is back in the pool", || proxy.ctx.pool.len() == 1).await;
    // RESET unsubscribed it: nobody listens any more, and the next client sees
    // none of the old channel's traffic, in RESP2.
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "for-nobody"]).await, b":0\r\n");
    let mut b = proxy.authed(PW).await;
    assert_eq!(integer(&b.cmd(&["CLIENT", "ID"]).await), id, "reused");
    assert_eq!(b.cmd(&["PING"]).await, b"+PONG\r\n", "RESP2 again, nothing stale");
    assert_eq!(b.cmd(&["ECHO", "x"]).await, b"$1\r\nx\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_left_owing_replies_is_closed_not_reused() {
    let redis = Redis::start(&[]);
    let proxy = dedicated(&format!("redis://{}", redis.addr())).await;
    let mut a = proxy.authed(PW).await;
    assert_eq!(a.cmd(&["PING"]).await, b"+PONG\r\n");
    a.send(&cmd_bytes(&["BLPOP", "q", "0"])).await;
    let mut watcher = redis.connect().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !show(&watcher.cmd(&["INFO", "clients"]).await).contains("blocked_clients:1") {
        assert!(Instant::now() < deadline, "BLPOP never blocked");
        tokio::task::yield_now().await;
    }
    drop(a);
    // Its upstream connection goes away with it (after the drain period for
    // owed replies): never into the pool, where it would answer the next client
    // with the previous client's BLPOP.
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_clients(&redis).await != 1 {
        assert!(Instant::now() < deadline, "the blocked upstream connection stayed open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.ctx.pool.len(), 0);
    let mut b = proxy.authed(PW).await;
    assert_eq!(b.cmd(&["RPUSH", "q", "v"]).await, b":1\r\n", "no BLPOP took it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_to_a_restarted_redis_are_not_used() {
    let mut redis = Redis::start(&[]);
    let proxy = dedicated(&format!("redis://{}", redis.addr())).await;
    let mut a = proxy.authed(PW).await;
    assert_eq!(a.cmd(&["PING"]).await, b"+PONG\r\n");
    drop(a);
    eventually("the connection is back in the pool", || proxy.ctx.pool.len() == 1).await;
    redis.restart();
    // The dead one is noticed when taken; the client gets a fresh connection.
    let mut b = proxy.authed(PW).await;
    assert_eq!(b.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    assert_eq!(b.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_bounded_and_can_be_turned_off() {
    let redis = Redis::start(&[]);
    let proxy = dedicated(&format!("redis://{}", redis.addr())).await;
    set_limits(&proxy, &redis, 2);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = proxy.authed(PW).await;
        assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
        clients.push(c);
    }
    assert_eq!(redis_clients(&redis).await, 4);
    clients.clear();
    eventually("two kept", || proxy.ctx.pool.len() == 2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_clients(&redis).await != 2 {
        assert!(Instant::now() < deadline, "the surplus connections stayed open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Size 0: every client has its own connection, closed when it leaves. Changing
    // the upstream also drops what the pool held.
    set_limits(&proxy, &redis, 0);
    assert_eq!(proxy.ctx.pool.len(), 0);
    let mut a = proxy.authed(PW).await;
    let id_a = integer(&a.cmd(&["CLIENT", "ID"]).await);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_clients(&redis).await != 0 {
        assert!(Instant::now() < deadline, "connections stayed open with the pool off");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut b = proxy.authed(PW).await;
    assert_ne!(integer(&b.cmd(&["CLIENT", "ID"]).await), id_a);
}

/// Calls of `cmd` Redis has executed, from `INFO commandstats`.
async fn calls(redis: &Redis, cmd: &str) -> u64 {
    let mut c = redis.connect().await;
    let info = show(&c.cmd(&["INFO", "commandstats"]).await);
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_connection_that_may_hold_state_is_reset() {
    let redis = Redis::start(&[]);
    let proxy = dedicated(&format!("redis://{}", redis.addr())).await;
    // Stateless commands only: back into the pool as it is, no RESET sent.
    let mut a = proxy.authed(PW).await;
    let id = integer(&a.cmd(&["CLIENT", "ID"]).await);
    drop(a);
    eventually("back in the pool", || proxy.ctx.pool.len() == 1).await;
    assert_eq!(calls(&redis, "reset").await, 1, "CLIENT ID is not on the stateless list");
    let mut b = proxy.authed(PW).await;
    assert_eq!(b.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    assert_eq!(b.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n");
    assert_eq!(b.cmd(&["HSET", "h", "f", "1"]).await, b":1\r\n");
    drop(b);
    eventually("back in the pool", || proxy.ctx.pool.len() == 1).await;
    assert_eq!(calls(&redis, "reset").await, 1, "no RESET after stateless commands");
    // SELECT leaves state: the next client must not inherit database 2.
    let mut c = proxy.authed(PW).await;
    assert_eq!(integer(&c.cmd(&["CLIENT", "ID"]).await), id, "still the same connection");
    assert_eq!(c.cmd(&["SELECT", "2"]).await, b"+OK\r\n");
    drop(c);
    eventually("reset and back in the pool", || proxy.ctx.pool.len() == 1).await;
    assert_eq!(calls(&redis, "reset").await, 2);
    let mut d = proxy.authed(PW).await;
    assert_eq!(d.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "database 0 again");
}
