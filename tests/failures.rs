//! Failures are clear and bounded: upstream down or restarting, clients vanishing
//! mid-frame, connection limits, graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;

const UNAVAILABLE: &[u8] = b"-ERR upstream Redis is unavailable\r\n";
const LOST: &[u8] = b"-ERR upstream Redis closed the connection\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// Polls `probe` until it is true; fails the test after 20 s instead of hanging.
async fn eventually(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
    }
}

async fn redis_clients(redis: &Redis) -> usize {
    let mut c = redis.connect().await;
    let info = show(&c.cmd(&["INFO", "clients"]).await);
    let line = info.lines().find(|l| l.starts_with("connected_clients:")).unwrap();
    // Minus the connection asking.
    line["connected_clients:".len()..].trim().parse::<usize>().unwrap() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_gets_a_clear_error_and_a_close() {
    let mut redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["pw"]).await;
    redis.kill();
    let mut c = proxy.authed("pw").await;
    c.send(&cmd_bytes(&["GET", "k"])).await;
    assert_eq!(c.read_to_close().await, UNAVAILABLE);
    // Once Redis is back, new connections work again.
    redis.restart();
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restart_ends_connections_cleanly_and_new_ones_work() {
    let mut redis = Redis::start(&[]);
    // Every client on a connection of its own (see `shared.rs` for shared ones).
    let mut o = ProxyOptions::new(&format!("redis://{}", redis.addr()));
    o.pool.shared = 0;
    let proxy = Proxy::with(o).await;
    proxy.add_default("pw").await;
    // An idle connection is closed without an unsolicited reply.
    let mut idle = proxy.authed("pw").await;
    assert_eq!(idle.cmd(&["PING"]).await, b"+PONG\r\n");
    // A connection waiting for a reply is told why it will not come.
    let mut waiting = proxy.authed("pw").await;
    assert_eq!(waiting.cmd(&["PING"]).await, b"+PONG\r\n");
    waiting.send(&cmd_bytes(&["BLPOP", "q", "0"])).await;
    let mut watcher = redis.connect().await;
    eventually("BLPOP blocked upstream", async || {
        show(&watcher.cmd(&["INFO", "clients"]).await).contains("blocked_clients:1")
    })
    .await;
    drop(watcher);
    redis.restart();
    assert_eq!(idle.read_to_close().await, b"");
    assert_eq!(waiting.read_to_close().await, LOST);
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
}

/// On a shared upstream connection, a restart costs an idle client nothing: it
/// holds no upstream connection, and its next command opens a new lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restart_leaves_idle_shared_clients_connected() {
    let mut redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["pw"]).await;
    let mut idle = proxy.authed("pw").await;
    assert_eq!(idle.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    assert_eq!(proxy.ctx.lanes.open(), 1);
    redis.restart();
    let ctx = proxy.ctx.clone();
    eventually("the lane noticed the restart", async || ctx.lanes.open() == 0).await;
    assert_eq!(idle.cmd(&["GET", "k"]).await, b"$-1\r\n", "a fresh Redis, reached on a new lane");
    assert_eq!(proxy.ctx.lanes.open(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_disconnecting_mid_frame_cost_nothing() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["pw"]).await;
    // Before authentication: half a frame, then gone.
    for partial in [&b"*2\r\n$4\r\nAUTH\r\n$2\r\np"[..], b"*3\r\n", b"AUTH p"] {
        let mut c = proxy.connect().await;
        c.send(partial).await;
        drop(c);
    }
    // After authentication, mid-way through streaming a large value upstream.
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
    let mut half = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$10000000\r\n".to_vec();
    half.extend(std::iter::repeat_n(b'x', 1_000_000));
    c.send(&half).await;
    drop(c);
    let ctx = proxy.ctx.clone();
    eventually("every proxied connection closed", async || {
        ctx.connections.load(std::sync::atomic::Ordering::Acquire) == 0
    })
    .await;
    // The client's own connection (it streamed) is closed; the shared one stays.
    let lanes = proxy.ctx.lanes.open();
    assert!(lanes <= 1, "{lanes} lanes");
    eventually("the upstream connections closed", async || redis_clients(&redis).await == lanes).await;
    // Nothing was half-applied, and the proxy still serves.
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["EXISTS", "big"]).await, b":0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_service_credentials_are_used_and_never_shown() {
    let redis = Redis::start(&["--requirepass", "service-secret"]);
    let mut o = ProxyOptions::new(&format!("redis://:service-secret@{}", redis.addr()));
    o.uid = 1;
    let proxy = Proxy::with(o).await;
    proxy.add_default("app-pw").await;
    let mut c = proxy.authed("app-pw").await;
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    // RESET logs the upstream connection out; turnstile logs it back in, silently.
    assert_eq!(c.cmd(&["RESET"]).await, b"+RESET\r\n");
    assert_eq!(c.cmd(&["AUTH", "app-pw"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n");
    // Wrong service credentials: a clear error, not the upstream's WRONGPASS.
    let bad = Proxy::with(ProxyOptions::new(&format!("redis://:nope@{}", redis.addr()))).await;
    bad.add_default("app-pw").await;
    let mut c = bad.authed("app-pw").await;
    c.send(&cmd_bytes(&["GET", "k"])).await;
    assert_eq!(
        show(&c.read_to_close().await),
        "-ERR upstream Redis rejected the proxy's service credentials\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_redis_error() {
    let redis = Redis::start(&[]);
    let mut o = ProxyOptions::new(&format!("redis://{}", redis.addr()));
    o.max_connections = 2;
    let proxy = Proxy::with(o).await;
    proxy.add_default("pw").await;
    let mut a = proxy.authed("pw").await;
    let _b = proxy.authed("pw").await;
    let mut c = proxy.connect().await;
    assert_eq!(c.read_to_close().await, b"-ERR max number of clients reached\r\n");
    assert_eq!(a.cmd(&["PING"]).await, b"+PONG\r\n");
    drop(a);
    let ctx = proxy.ctx.clone();
    eventually("a slot freed", async || ctx.connections.load(std::sync::atomic::Ordering::Acquire) < 2).await;
    let mut d = proxy.authed("pw").await;
    assert_eq!(d.cmd(&["PING"]).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_what_is_in_flight() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["pw"]).await;
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
    c.send(&cmd_bytes(&["BLPOP", "q", "0"])).await;
    let mut direct = redis.connect().await;
    eventually("BLPOP blocked upstream", async || {
        show(&direct.cmd(&["INFO", "clients"]).await).contains("blocked_clients:1")
    })
    .await;
    proxy.shutdown();
    // New connections are no longer accepted...
    eventually("the listener closed", async || tokio::net::TcpStream::connect(proxy.addr).await.is_err())
        .await;
    // ...but the request in flight still gets its reply, then the connection closes.
    assert_eq!(direct.cmd(&["RPUSH", "q", "x"]).await, b":1\r\n");
    assert_eq!(c.read_to_close().await, b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
    proxy.tracker.close();
    tokio::time::timeout(Duration::from_secs(10), proxy.tracker.wait()).await.expect("connections finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_throttle_that_address_only() {
    use turnstile::auth::{BdbAccess, Directory, SetChange, SetId, ThrottlePolicy, VerifyOptions};
    let redis = Redis::start(&[]);
    let throttle =
        ThrottlePolicy { failures: 3, window: Duration::from_secs(60), block: Duration::from_secs(60) };
    let directory =
        Directory::new(FAST, VerifyOptions { concurrency: 2, throttle, ..VerifyOptions::default() });
    directory.set_bdb(1, BdbAccess::default());
    directory.change(&SetId::BdbDefault(1), SetChange::Add, b"right").await.unwrap();
    let proxy = Proxy::serve(directory.clone(), 1, &format!("redis://{}", redis.addr()), 0).await;
    let addr = proxy.addr.to_string();
    // Already in before the attack: stays in.
    let mut inside = Conn::connect_from("127.0.0.1:0", &addr).await;
    assert_eq!(inside.cmd(&["AUTH", "right"]).await, b"+OK\r\n");
    let mut attacker = Conn::connect_from("127.0.0.1:0", &addr).await;
    for _ in 0..3 {
        assert_eq!(show(&attacker.cmd(&["AUTH", "guess"]).await), show(WRONGPASS));
    }
    // Throttled: even the right password is refused, and no argon2 is spent on it.
    let evaluations = directory.evaluations();
    // ...and held back (a tarpit), so an attacker cannot turn into a request flood.
    let asked = std::time::Instant::now();
    assert_eq!(show(&attacker.cmd(&["AUTH", "right"]).await), show(WRONGPASS));
    assert!(asked.elapsed() >= Duration::from_millis(900), "refused after {:?}", asked.elapsed());
    let mut again = Conn::connect_from("127.0.0.1:0", &addr).await;
    assert_eq!(show(&again.cmd(&["AUTH", "right"]).await), show(WRONGPASS));
    assert_eq!(directory.evaluations(), evaluations, "throttled attempts cost no argon2");
    assert_eq!(directory.throttle().refused(), 2);
    // Another address is not affected, nor is the connection that was already in.
    let mut neighbour = Conn::connect_from("127.0.0.2:0", &addr).await;
    assert_eq!(neighbour.cmd(&["AUTH", "right"]).await, b"+OK\r\n");
    assert_eq!(inside.cmd(&["PING"]).await, b"+PONG\r\n");
}

/// A burst of wrong passwords from one address, larger than the throttle's budget:
/// its attempts waiting for argon2 are checked again at their turn (so the burst
/// costs about the budget in evaluations, not one per attempt), and turns go round
/// the addresses (so a login from another address is answered while the burst still
/// waits, instead of after it). Order and counts only; no time is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_address_stops_at_its_budget_and_waits_behind_itself() {
    use std::sync::atomic::Ordering::Relaxed;
    use turnstile::auth::{
        BdbAccess, Directory, HashParams, SetChange, SetId, ThrottlePolicy, VerifyOptions,
    };
    const BUDGET: u32 = 100;
    const BURST: usize = 200;
    const CONCURRENCY: usize = 1;
    let redis = Redis::start(&[]);
    let throttle =
        ThrottlePolicy { failures: BUDGET, window: Duration::from_secs(60), block: Duration::from_secs(60) };
    // Costlier than FAST (2 MiB: about a millisecond each), so that the burst is
    // still queued when the login comes; the test takes about a budget of them.
    let params = HashParams { m_cost: 2048, t_cost: 1, p_cost: 1 };
    let directory = Directory::new(
        params,
        VerifyOptions { concurrency: CONCURRENCY, throttle, ..VerifyOptions::default() },
    );
    directory.set_bdb(1, BdbAccess::default());
    // Added, never used: not in the verification cache.
    directory.change(&SetId::BdbDefault(1), SetChange::Add, b"right").await.unwrap();
    let proxy = Proxy::serve(directory.clone(), 1, &format!("redis://{}", redis.addr()), 0).await;
    let addr = proxy.addr.to_string();
    let mut burst = Vec::new();
    for _ in 0..BURST {
        burst.push(Conn::connect_from("127.0.0.2:0", &addr).await);
    }
    let evaluations = directory.evaluations();
    let refused = directory.throttle().refused();
    for (i, c) in burst.iter_mut().enumerate() {
        c.send(&cmd_bytes(&["AUTH", &format!("guess-{i}")])).await;
    }
    // Every attempt of the burst is in: waiting, evaluated, or refused.
    eventually("the burst to be queued", async || {
        let done = directory.evaluations() - evaluations + directory.throttle().refused() - refused;
        directory.argon2_waiting() as u64 + done >= BURST as u64
    })
    .await;
    let mut login = Conn::connect_from("127.0.0.1:0", &addr).await;
    assert_eq!(login.cmd(&["AUTH", "right"]).await, b"+OK\r\n");
    // Answered in its address's turn: most of the burst has not had one yet (first
    // come, first served, it would have waited for all of them).
    let behind = directory.argon2_waiting();
    assert!(behind > 0, "the burst was over before the login from another address was answered");
    for c in &mut burst {
        assert_eq!(show(&c.reply().await), show(WRONGPASS));
    }
    // The budget, plus the evaluations already running when the last failure of it
    // was counted, plus the login; the rest were refused at their turn, unevaluated.
    let spent = directory.evaluations() - evaluations;
    let most = u64::from(BUDGET) + CONCURRENCY as u64 + 1;
    assert!(spent <= most, "{spent} evaluations for a burst of {BURST} with a budget of {BUDGET}");
    assert!(directory.throttle().refused() - refused >= BURST as u64 - most);
    assert_eq!(directory.argon2_waiting(), 0, "no waiter left behind");
    let stats = &proxy.ctx.stats;
    let (throttled, failed) = (stats.auth_throttled.load(Relaxed), stats.auth_failure.load(Relaxed));
    assert_eq!(throttled + failed, BURST as u64, "each attempt answered once, as a failure or as throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_client_is_bounded_in_time() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["pw"]).await;
    proxy.ctx.set_auth_timeout(Duration::from_millis(200));
    let mut authed = proxy.authed("pw").await;
    let mut idle = proxy.connect().await;
    let mut chatty = proxy.connect().await;
    assert_eq!(show(&chatty.cmd(&["PING"]).await), "-NOAUTH Authentication required.\r\n");
    // Both unauthenticated connections are closed at the deadline...
    assert_eq!(idle.read_to_close().await, b"");
    assert_eq!(chatty.read_to_close().await, b"");
    // ...which has now passed, and the authenticated one is untouched.
    assert_eq!(authed.cmd(&["PING"]).await, b"+PONG\r\n");
}
