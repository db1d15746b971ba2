//! Shared upstream connections ("lanes"): many clients' stateless commands ride a few
//! upstream connections, each client still gets exactly its own replies in order, its
//! first stateful command moves it to a connection of its own without losing a write,
//! and a client that is slow, greedy or gone, or a lane whose Redis dies, harms no one
//! else — on exact bytes against a real Redis.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;
use turnstile::proxy::PoolLimits;

const PW: &str = "shared-Pw-1";
const LOST: &[u8] = b"-ERR upstream Redis closed the connection\r\n";
const UNAVAILABLE: &[u8] = b"-ERR upstream Redis is unavailable\r\n";
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// turnstile in front of `redis` with `shared` lanes, default-user password `PW`.
async fn proxy(redis: &Redis, shared: usize) -> Proxy {
    let mut o = ProxyOptions::new(&format!("redis://{}", redis.addr()));
    o.pool = PoolLimits { shared, ..PoolLimits::default() };
    let p = Proxy::with(o).await;
    p.add_default(PW).await;
    p
}

/// Asserts exact bytes, showing both sides as text on failure.
#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(show(got), show(want), "{what}");
}

/// A RESP bulk string.
fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

/// Concatenated `cmd_bytes` of several commands: one pipeline, one write.
fn pipeline(cmds: &[&[&str]]) -> Vec<u8> {
    cmds.iter().flat_map(|c| cmd_bytes(c)).collect()
}

/// A number from `INFO clients`, asked of Redis directly; `connected_clients`
/// counts the asking connection too.
async fn info_clients(c: &mut Conn, field: &str) -> i64 {
    let info = show(&c.cmd(&["INFO", "clients"]).await);
    let prefix = format!("{field}:");
    let line =
        info.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {field} in {info}"));
    line[prefix.len()..].trim().parse().unwrap()
}

/// Watches Redis's `connected_clients` (its own connection included) until stopped;
/// yields the highest count seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Sampler {
    async fn start(redis: &Redis) -> Self {
        let mut c = redis.connect().await;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut max = 0;
            loop {
                max = max.max(info_clients(&mut c, "connected_clients").await);
                if flag.load(Ordering::Relaxed) {
                    return max;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Self { stop, task }
    }

    async fn max(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Polls `probe` until it is true, failing after 20 s.
async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits at `gate`, failing instead of hanging if a party never arrives (it failed).
async fn meet(gate: &Barrier) {
    tokio::time::timeout(Duration::from_secs(20), gate.wait())
        .await
        .expect("a client never reached the gate");
}

const CLIENTS: usize = 40;

/// `CLIENTS` authenticated clients, 25 SET + 25 GET each on their own keys, all
/// connected and served once before any goes on. Returns Redis's
/// `connected_clients` at that moment (the inspecting connection included).
async fn forty_clients(proxy: &Proxy, inspector: &mut Conn) -> i64 {
    let gate = Arc::new(Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let addr = proxy.addr.to_string();
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(&addr).await;
            same(&c.cmd(&["AUTH", PW]).await, b"+OK\r\n", "AUTH");
            for i in 0..25 {
                let (k, v) = (format!("c{id}:k{i}"), format!("v{id}.{i}"));
                same(&c.cmd(&["SET", &k, &v]).await, b"+OK\r\n", "SET");
                same(&c.cmd(&["GET", &k]).await, &bulk(v.as_bytes()), "GET of its own key");
                if i == 0 {
                    // Everyone is connected and has been served: the test counts.
                    meet(&gate).await;
                    meet(&gate).await;
                }
            }
        }));
    }
    meet(&gate).await;
    let at_peak = info_clients(inspector, "connected_clients").await;
    meet(&gate).await;
    for t in tasks {
        t.await.unwrap();
    }
    at_peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_clients_share_one_upstream_connection() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let sampler = Sampler::start(&redis).await;
    let mut inspector = redis.connect().await;
    let at_peak = forty_clients(&proxy, &mut inspector).await;
    // The lane, the sampler, this inspector, and one to spare.
    assert!(at_peak <= 4, "{at_peak} connections to Redis with all {CLIENTS} clients connected");
    let during = sampler.max().await;
    assert!(during <= 4, "Redis saw {during} connections at once during the run");
    let after = info_clients(&mut inspector, "connected_clients").await;
    assert!(after <= 4, "{after} connections to Redis after the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_shared_connections_every_client_has_its_own() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 0).await;
    let mut inspector = redis.connect().await;
    let at_peak = forty_clients(&proxy, &mut inspector).await;
    assert!(at_peak > CLIENTS as i64, "only {at_peak} connections to Redis for {CLIENTS} clients");
}

/// 500 commands for client `id` (SET, GET, INCR, PING, ECHO x 100) and their replies.
fn mixed(id: usize, round: usize) -> (Vec<u8>, Vec<u8>) {
    let (mut req, mut want) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let (k, v, e) = (format!("p{id}:k{i}"), format!("v{id}.{round}.{i}"), format!("x{id}.{i}"));
        req.extend(pipeline(&[
            &["SET", &k, &v],
            &["GET", &k],
            &["INCR", &format!("p{id}:counter")],
            &["PING"],
            &["ECHO", &e],
        ]));
        want.extend_from_slice(b"+OK\r\n");
        want.extend(bulk(v.as_bytes()));
        want.extend(format!(":{}\r\n", round * 100 + i + 1).into_bytes());
        want.extend_from_slice(b"+PONG\r\n");
        want.extend(bulk(e.as_bytes()));
    }
    (req, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_own_pipelined_replies_in_order() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let gate = Arc::new(Barrier::new(11));
    let mut tasks = Vec::new();
    for id in 0..11 {
        let addr = proxy.addr.to_string();
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(&addr).await;
            same(&c.cmd(&["AUTH", PW]).await, b"+OK\r\n", "AUTH");
            meet(&gate).await;
            for round in 0..3 {
                let (req, want) = mixed(id, round);
                c.send(&req).await;
                let got = c.replies(500).await;
                assert!(got == want, "client {id} round {round}: {:?}", first_difference(&got, &want));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Where two byte strings part, with some context, for assertion messages.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(40);
    format!(
        "differ at byte {at} (lengths {} / {}): got {:?}, want {:?}",
        got.len(),
        want.len(),
        show(&got[from..(at + 40).min(got.len())]),
        show(&want[from..(at + 40).min(want.len())])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_the_lane_are_seen_after_pinning() {
    let redis = Redis::start(&[]);
    let proxy = Arc::new(proxy(&redis, 1).await);
    // Other clients keep the lane busy meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let mut noise = Vec::new();
    for id in 0..2 {
        let mut c = proxy.authed(PW).await;
        let stop = Arc::clone(&stop);
        noise.push(tokio::spawn(async move {
            let k = format!("noise{id}");
            while !stop.load(Ordering::Relaxed) {
                c.send(&pipeline(&[&["SET", &k, "n"], &["GET", &k], &["PING"]])).await;
                same(&c.replies(3).await, b"+OK\r\n$1\r\nn\r\n+PONG\r\n", "noise");
            }
        }));
    }
    let mut tasks = Vec::new();
    for t in 0..5 {
        let proxy = Arc::clone(&proxy);
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let a = format!("a{t}.{n}");
                let mut c = proxy.authed(PW).await;
                c.send(&pipeline(&[
                    &["SET", &a, "1"],
                    &["INCR", &a],
                    &["MULTI"],
                    &["GET", &a],
                    &["INCR", &a],
                    &["EXEC"],
                    &["GET", &a],
                ]))
                .await;
                same(
                    &c.replies(7).await,
                    b"+OK\r\n:2\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$1\r\n2\r\n:3\r\n$1\r\n3\r\n",
                    &format!("transaction after lane writes, {t}.{n}"),
                );

                let x = format!("x{t}.{n}");
                let mut c = proxy.authed(PW).await;
                c.send(&pipeline(&[
                    &["SET", &x, "1"],
                    &["SELECT", "1"],
                    &["GET", &x],
                    &["SELECT", "0"],
                    &["GET", &x],
                ]))
                .await;
                same(
                    &c.replies(5).await,
                    b"+OK\r\n+OK\r\n$-1\r\n+OK\r\n$1\r\n1\r\n",
                    &format!("SELECT after a lane write, {t}.{n}"),
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        t.await.unwrap();
    }
    // No SELECT leaked onto the lane: its clients are still in database 0.
    let mut c = proxy.authed(PW).await;
    same(&c.cmd(&["GET", "x4.9"]).await, b"$1\r\n1\r\n", "database 0 on the lane");
    same(&c.cmd(&["DBSIZE"]).await, b":102\r\n", "100 keys + 2 noise keys in database 0");
    let mut direct = redis.connect().await;
    same(&direct.cmd(&["SELECT", "1"]).await, b"+OK\r\n", "SELECT");
    same(&direct.cmd(&["DBSIZE"]).await, b":0\r\n", "nothing was written in database 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_keep_their_place_among_lane_replies() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    proxy.add_user("alice", &["alice-pw"]).await;
    let mut setup = proxy.authed(PW).await;
    same(&setup.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");

    let mut c = proxy.authed(PW).await;
    c.send(&pipeline(&[
        &["GET", "k"],
        &["ACL", "WHOAMI"],
        &["GET", "k"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "k"],
        &["GET", "k"],
        &["PING"],
    ]))
    .await;
    same(
        &c.replies(5).await,
        b"$1\r\nv\r\n$7\r\ndefault\r\n$1\r\nv\r\n$1\r\nv\r\n+PONG\r\n",
        "skipped GET absent",
    );
    same(&c.cmd(&["ECHO", "next"]).await, b"$4\r\nnext\r\n", "nothing stray after");

    let mut c = proxy.authed(PW).await;
    c.send(&pipeline(&[
        &["GET", "k"],
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "k2", "w"],
        &["GET", "k2"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "k2"],
    ]))
    .await;
    same(&c.replies(3).await, b"$1\r\nv\r\n+OK\r\n$1\r\nw\r\n", "nothing while OFF");
    same(&c.cmd(&["PING"]).await, b"+PONG\r\n", "nothing stray after");

    let mut c = proxy.connect().await;
    c.send(&pipeline(&[
        &["AUTH", "alice", "alice-pw"],
        &["GET", "k"],
        &["AUTH", "wrong"],
        &["GET", "k"],
        &["ACL", "WHOAMI"],
        &["AUTH", "alice", "wrong"],
        &["GET", "k"],
    ]))
    .await;
    let mut want = b"+OK\r\n$1\r\nv\r\n".to_vec();
    want.extend_from_slice(WRONGPASS);
    want.extend_from_slice(b"$1\r\nv\r\n$5\r\nalice\r\n");
    want.extend_from_slice(WRONGPASS);
    want.extend_from_slice(b"$1\r\nv\r\n");
    same(&c.replies(7).await, &want, "a wrong AUTH in the middle keeps the identity");

    let mut c = proxy.authed(PW).await;
    c.send(&pipeline(&[&["GET", "k"], &["QUIT"], &["GET", "k"]])).await;
    same(&c.read_to_close().await, b"$1\r\nv\r\n+OK\r\n", "QUIT after a lane GET, nothing after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_commands_work_after_lane_commands() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut direct = redis.connect().await;
    let mut setup = proxy.authed(PW).await;
    same(&setup.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");

    // A name, set in the middle of a pipeline of lane commands.
    let mut named = proxy.authed(PW).await;
    named
        .send(&pipeline(&[
            &["GET", "k"],
            &["GET", "k"],
            &["CLIENT", "SETNAME", "svc-a"],
            &["CLIENT", "GETNAME"],
            &["GET", "k"],
        ]))
        .await;
    same(
        &named.replies(5).await,
        b"$1\r\nv\r\n$1\r\nv\r\n+OK\r\n$5\r\nsvc-a\r\n$1\r\nv\r\n",
        "SETNAME in a pipeline",
    );
    let named_id = integer(&named.cmd(&["CLIENT", "ID"]).await);
    let list = show(&direct.cmd(&["CLIENT", "LIST"]).await);
    assert!(list.contains(&format!("id={named_id} ")) && list.contains("name=svc-a "), "{list}");
    // Another client never sees that name: it has a connection of its own.
    let mut other = proxy.authed(PW).await;
    same(&other.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");
    same(&other.cmd(&["CLIENT", "GETNAME"]).await, b"$-1\r\n", "no inherited name");
    assert_ne!(integer(&other.cmd(&["CLIENT", "ID"]).await), named_id);
    same(&named.cmd(&["CLIENT", "GETNAME"]).await, b"$5\r\nsvc-a\r\n", "the name stays");

    // SUBSCRIBE after lane commands; the message comes from another proxied client.
    let mut sub = proxy.authed(PW).await;
    same(&sub.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");
    same(&sub.cmd(&["PING"]).await, b"+PONG\r\n", "PING");
    same(
        &sub.cmd(&["SUBSCRIBE", "news"]).await,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
        "SUBSCRIBE",
    );
    let mut publisher = proxy.authed(PW).await;
    same(&publisher.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");
    same(&publisher.cmd(&["PUBLISH", "news", "hi"]).await, b":1\r\n", "one subscriber");
    same(&sub.reply().await, b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n", "the message");

    // BLPOP after lane commands, released by a lane client's LPUSH.
    let mut waiter = proxy.authed(PW).await;
    same(&waiter.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");
    same(&waiter.cmd(&["LLEN", "q"]).await, b":0\r\n", "LLEN");
    waiter.send(&cmd_bytes(&["BLPOP", "q", "0"])).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while info_clients(&mut direct, "blocked_clients").await != 1 {
        assert!(Instant::now() < deadline, "BLPOP never blocked in Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut pusher = proxy.authed(PW).await;
    same(&pusher.cmd(&["LPUSH", "q", "v"]).await, b":1\r\n", "LPUSH");
    same(&waiter.reply().await, b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n", "BLPOP released");
    same(&pusher.cmd(&["LLEN", "q"]).await, b":0\r\n", "the waiter took it");
    same(&waiter.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET after BLPOP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_after_lane_commands_sees_lane_writes() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut writer = proxy.authed(PW).await;
    same(&writer.cmd(&["SET", "w", "1"]).await, b"+OK\r\n", "SET");
    let mut watcher = proxy.authed(PW).await;
    watcher.send(&pipeline(&[&["GET", "w"], &["WATCH", "w"], &["GET", "w"]])).await;
    same(&watcher.replies(3).await, b"$1\r\n1\r\n+OK\r\n$1\r\n1\r\n", "WATCH after a lane GET");
    same(&writer.cmd(&["SET", "w", "2"]).await, b"+OK\r\n", "a lane client's write");
    watcher.send(&pipeline(&[&["MULTI"], &["SET", "w", "3"], &["EXEC"], &["GET", "w"]])).await;
    same(&watcher.replies(4).await, b"+OK\r\n+QUEUED\r\n*-1\r\n$1\r\n2\r\n", "the write aborted EXEC");
    watcher
        .send(&pipeline(&[&["WATCH", "w"], &["MULTI"], &["SET", "w", "3"], &["EXEC"], &["GET", "w"]]))
        .await;
    same(
        &watcher.replies(5).await,
        b"+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n$1\r\n3\r\n",
        "undisturbed, EXEC runs",
    );
    same(&writer.cmd(&["GET", "w"]).await, b"$1\r\n3\r\n", "the lane sees it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_3_switches_only_that_client_to_resp3() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut other = proxy.authed(PW).await;
    same(&other.cmd(&["HSET", "h", "f", "v"]).await, b":1\r\n", "HSET");

    let mut c = proxy.authed(PW).await;
    c.send(&pipeline(&[&["GET", "missing"], &["HELLO", "3"], &["GET", "missing"], &["HGETALL", "h"]])).await;
    same(&c.reply().await, b"$-1\r\n", "RESP2 before HELLO");
    let hello = c.reply().await;
    assert!(hello.starts_with(b"%7\r\n"), "HELLO 3: {:?}", show(&hello));
    same(&c.reply().await, b"_\r\n", "a RESP3 null after HELLO");
    same(&c.reply().await, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", "a RESP3 map after HELLO");

    // The lane still speaks RESP2, to old and new clients.
    other.send(&pipeline(&[&["GET", "missing"], &["HGETALL", "h"]])).await;
    same(&other.replies(2).await, b"$-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n", "RESP2 on the lane");
    let mut new = proxy.authed(PW).await;
    new.send(&pipeline(&[&["GET", "missing"], &["HGETALL", "h"]])).await;
    same(&new.replies(2).await, b"$-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n", "RESP2 for a new client");
    same(&c.cmd(&["GET", "missing"]).await, b"_\r\n", "still RESP3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_after_lane_commands_keeps_its_order() {
    let redis = Redis::start(&[]);
    let proxy = Arc::new(proxy(&redis, 1).await);
    let value: Arc<Vec<u8>> = Arc::new((0..200 * 1024).map(|i| (i % 253) as u8).collect());
    let mut tasks = Vec::new();
    for id in 0..4 {
        let (proxy, value) = (Arc::clone(&proxy), Arc::clone(&value));
        tasks.push(tokio::spawn(async move {
            let (small, big) = (format!("s{id}"), format!("big{id}"));
            let mut c = proxy.authed(PW).await;
            let mut req = pipeline(&[&["SET", &small, "small"], &["GET", &small]]);
            req.extend(encode(&[b"SET", big.as_bytes(), &value]));
            req.extend(pipeline(&[&["GET", &big], &["GET", &small], &["STRLEN", &big]]));
            c.send(&req).await;
            let mut want = b"+OK\r\n$5\r\nsmall\r\n+OK\r\n".to_vec();
            want.extend(bulk(&value));
            want.extend_from_slice(format!("$5\r\nsmall\r\n:{}\r\n", value.len()).as_bytes());
            let got = c.replies(6).await;
            assert!(got == want, "client {id}: {}", first_difference(&got, &want));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_reply_on_the_lane_arrives_whole() {
    const SIZE: usize = 20 * 1024 * 1024;
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let value: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut direct = redis.connect().await;
    direct.send(&encode(&[b"SET", b"big", &value])).await;
    same(&direct.reply().await, b"+OK\r\n", "SET big");

    let mut pinger = proxy.authed(PW).await;
    same(&pinger.cmd(&["PING"]).await, b"+PONG\r\n", "PING before");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let pings = tokio::spawn(async move {
        let mut n = 0;
        while !flag.load(Ordering::Relaxed) {
            same(&pinger.cmd(&["PING"]).await, b"+PONG\r\n", "PING during");
            n += 1;
        }
        for _ in 0..10 {
            same(&pinger.cmd(&["PING"]).await, b"+PONG\r\n", "PING after");
        }
        n
    });

    let mut c = proxy.authed(PW).await;
    c.send(&cmd_bytes(&["GET", "big"])).await;
    let got = c.reply().await;
    stop.store(true, Ordering::Relaxed);
    let want = bulk(&value);
    assert!(got == want, "GET big: {}", first_difference(&got, &want));
    let n = pings.await.unwrap();
    assert!(n >= 1, "no PING answered while the big reply passed");
    same(&c.cmd(&["ECHO", "after"]).await, b"$5\r\nafter\r\n", "the reader goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_20000_gets_before_reading_gets_them_all() {
    const N: usize = 20_000;
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let value: Vec<u8> = (0..1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut setup = proxy.authed(PW).await;
    setup.send(&encode(&[b"SET", b"v1k", &value])).await;
    same(&setup.reply().await, b"+OK\r\n", "SET");

    let mut c = proxy.authed(PW).await;
    same(&c.cmd(&["GET", "v1k"]).await, &bulk(&value), "one GET first");
    let request = cmd_bytes(&["GET", "v1k"]).repeat(N);
    // Everything is written before anything is read, as redis-py's pipeline does.
    let writer = tokio::spawn(async move {
        c.send(&request).await;
        c
    });
    let mut c = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("turnstile stopped reading a client that writes before it reads")
        .unwrap();
    let got = c.replies(N).await;
    let want = bulk(&value).repeat(N);
    assert!(got == want, "{}", first_difference(&got, &want));
    same(&c.cmd(&["PING"]).await, b"+PONG\r\n", "still connected");
    let mut other = proxy.authed(PW).await;
    same(&other.cmd(&["GET", "v1k"]).await, &bulk(&value), "others unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_stall_the_others_for_long() {
    const SIZE: usize = 5 * 1024 * 1024;
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let value = vec![b'z'; SIZE];
    let mut direct = redis.connect().await;
    direct.send(&encode(&[b"SET", b"big", &value])).await;
    same(&direct.reply().await, b"+OK\r\n", "SET big");
    same(&direct.cmd(&["SET", "small", "s"]).await, b"+OK\r\n", "SET small");

    let mut b = proxy.authed(PW).await;
    same(&b.cmd(&["PING"]).await, b"+PONG\r\n", "B on the lane");
    // A asks for 60 MB and reads none of it.
    let mut a = proxy.authed(PW).await;
    same(&a.cmd(&["PING"]).await, b"+PONG\r\n", "A on the lane");
    a.send(&cmd_bytes(&["GET", "big"]).repeat(12)).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..20 {
        let started = Instant::now();
        let (args, want): (&[&str], &[u8]) =
            if i % 2 == 0 { (&["PING"], b"+PONG\r\n") } else { (&["GET", "small"], b"$1\r\ns\r\n") };
        let got = tokio::time::timeout(Duration::from_secs(15), b.cmd(args))
            .await
            .unwrap_or_else(|_| panic!("B's command {i} took more than 15 s"));
        same(&got, want, &format!("B's command {i} after {:?}", started.elapsed()));
    }
    assert!(Instant::now() < deadline, "B's 20 commands took more than 30 s");

    let mut c = proxy.authed(PW).await;
    same(&c.cmd(&["GET", "small"]).await, b"$1\r\ns\r\n", "a new client is served");
    drop(a);
}

/// What a client pipelining `GET k` (value `v`) without end saw until its
/// connection closed: correct replies, then at most one error (`LOST` or `UNAVAILABLE`), then the close.
async fn read_until_close(mut rd: tokio::net::tcp::OwnedReadHalf, served: Arc<AtomicBool>) -> usize {
    let mut buf = Vec::new();
    let mut replies = 0;
    let mut lost = false;
    let mut chunk = vec![0u8; 64 * 1024];
    // No deadline here: the flood before the kill can take long on a loaded machine;
    // the caller bounds the time from the kill to the close.
    loop {
        // Frames are checked in place and the consumed prefix dropped once per
        // read: draining frame by frame moved the whole buffer for each 7-byte
        // reply, and under load the reader fell seconds behind the close.
        let mut pos = 0;
        while let Some(n) = frame_len(&buf[pos..])
            .unwrap_or_else(|e| panic!("invalid RESP ({e}): {:?}", show(&buf[pos..buf.len().min(pos + 200)])))
        {
            let frame = &buf[pos..pos + n];
            pos += n;
            assert!(!lost, "a reply after the upstream-lost error: {:?}", show(frame));
            // The lane died under requests in flight (LOST), or just before
            // the next request, which then found Redis gone (UNAVAILABLE).
            if frame == LOST || frame == UNAVAILABLE {
                lost = true;
            } else {
                same(frame, b"$1\r\nv\r\n", "reply before the upstream died");
                replies += 1;
                if replies == 100 {
                    served.store(true, Ordering::Relaxed);
                }
            }
        }
        buf.drain(..pos);
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    // A close can cut a reply short; what is left must be the start of one.
    assert!(
        b"$1\r\nv\r\n".starts_with(&buf) || LOST.starts_with(&buf) || UNAVAILABLE.starts_with(&buf),
        "garbage before the close: {:?}",
        show(&buf)
    );
    replies
}

/// Four clients pipeline `GET k` (value `v`) without end, reading as they go; Redis
/// is killed under them. Each sees correct replies, then at most one error, then the
/// close — never a reply cut short, nor anything after the error.
async fn flood_then_kill(proxy: &Proxy, redis: &mut Redis) {
    let mut busy = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..4 {
        let mut c = proxy.authed(PW).await;
        same(&c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");
        let (rd, mut wr) = c.stream.into_split();
        let served = Arc::new(AtomicBool::new(false));
        ready.push(Arc::clone(&served));
        let chunk = cmd_bytes(&["GET", "k"]).repeat(1000);
        let writer = tokio::spawn(async move { while wr.write_all(&chunk).await.is_ok() {} });
        busy.push((tokio::spawn(read_until_close(rd, served)), writer));
    }
    eventually("every busy client is being served", || ready.iter().all(|r| r.load(Ordering::Relaxed))).await;

    redis.kill();
    let killed = Instant::now();
    for (reader, writer) in busy {
        let left = Duration::from_secs(20).saturating_sub(killed.elapsed());
        let replies = tokio::time::timeout(left, reader)
            .await
            .expect("a client was not closed within 20 s of its upstream's death")
            .unwrap();
        assert!(replies >= 100);
        // Closed is what counts; the writer may not have hit the close yet.
        writer.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lane_fails_only_the_requests_in_flight() {
    let mut redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut idle = proxy.authed(PW).await;
    same(&idle.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    same(&idle.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");

    flood_then_kill(&proxy, &mut redis).await;
    redis.restart();

    // The idle client had nothing in flight: it carries on, on a new lane. At most
    // one reply may still report the old lane's death.
    let first = idle.cmd(&["SET", "k", "w"]).await;
    if first == LOST {
        same(&idle.cmd(&["SET", "k", "w"]).await, b"+OK\r\n", "the idle client's second try");
    } else {
        same(&first, b"+OK\r\n", "the idle client's first request after the restart");
    }
    same(&idle.cmd(&["GET", "k"]).await, b"$1\r\nw\r\n", "the idle client reads its write");

    // New clients get in as well (perhaps after a moment: the lane is reopened).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = proxy.authed(PW).await;
        let r = c.cmd(&["GET", "k"]).await;
        if r == b"$1\r\nw\r\n" {
            break;
        }
        assert!(r == LOST || r == UNAVAILABLE, "unexpected reply {:?}", show(&r));
        assert!(Instant::now() < deadline, "new clients never got through after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let mut c = proxy.authed(PW).await;
        same(&c.cmd(&["GET", "k"]).await, b"$1\r\nw\r\n", "a new client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_dedicated_connection_never_cuts_a_reply_in_two() {
    let mut redis = Redis::start(&[]);
    let proxy = proxy(&redis, 0).await;
    let mut setup = proxy.authed(PW).await;
    same(&setup.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    flood_then_kill(&proxy, &mut redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_mid_pipeline_cost_nothing() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut setup = proxy.authed(PW).await;
    same(&setup.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    let sampler = Sampler::start(&redis).await;
    let request = cmd_bytes(&["GET", "k"]).repeat(1000);
    for _ in 0..20 {
        let mut c = proxy.authed(PW).await;
        c.send(&request).await;
        c.stream.shutdown().await.unwrap();
        drop(c);
    }
    for _ in 0..5 {
        let mut c = proxy.authed(PW).await;
        c.send(&pipeline(&[&["GET", "k"], &["INCR", "n"], &["PING"]])).await;
        let r = c.replies(3).await;
        assert!(r.starts_with(b"$1\r\nv\r\n:") && r.ends_with(b"\r\n+PONG\r\n"), "{:?}", show(&r));
    }
    same(&setup.cmd(&["GET", "n"]).await, b"$1\r\n5\r\n", "five INCRs, each once");
    let during = sampler.max().await;
    assert!(during <= 3, "Redis saw {during} connections at once");
    let mut inspector = redis.connect().await;
    let after = info_clients(&mut inspector, "connected_clients").await;
    assert!(after <= 3, "{after} connections to Redis afterwards");
}

/// A fixed upstream that is a replica on purpose: `-READONLY` is Redis's answer to
/// the write that got it, passed on as it is; the lane and its other clients carry
/// on (only a Sentinel-managed database takes it as a sign of a failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_reply_on_a_fixed_upstream_is_just_a_reply() {
    // A replica of nothing (port 1 is never listened on): it refuses writes.
    let redis = Redis::start(&["--replicaof", "127.0.0.1", "1"]);
    let proxy = proxy(&redis, 1).await;
    let mut reader = proxy.authed(PW).await;
    let mut writer = proxy.authed(PW).await;
    same(&reader.cmd(&["GET", "k"]).await, b"$-1\r\n", "GET on the replica");
    for _ in 0..3 {
        same(
            &writer.cmd(&["SET", "k", "v"]).await,
            b"-READONLY You can't write against a read only replica.\r\n",
            "the replica's own refusal",
        );
        same(&reader.cmd(&["GET", "k"]).await, b"$-1\r\n", "the other client is not cut off");
    }
    same(&writer.cmd(&["PING"]).await, b"+PONG\r\n", "the writer carries on too");
    assert_eq!(proxy.ctx.lanes.open(), 1, "one lane served both, throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_logs_a_lane_client_out() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut c = proxy.authed(PW).await;
    same(&c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    same(&c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET");
    same(&c.cmd(&["RESET"]).await, b"+RESET\r\n", "RESET");
    same(&c.cmd(&["GET", "k"]).await, NOAUTH, "logged out");
    same(&c.cmd(&["AUTH", PW]).await, b"+OK\r\n", "AUTH again");
    same(&c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET again");

    // The same in one pipeline.
    let mut c = proxy.authed(PW).await;
    c.send(&pipeline(&[
        &["GET", "k"],
        &["GET", "k"],
        &["RESET"],
        &["GET", "k"],
        &["AUTH", PW],
        &["GET", "k"],
    ]))
    .await;
    let mut want = b"$1\r\nv\r\n$1\r\nv\r\n+RESET\r\n".to_vec();
    want.extend_from_slice(NOAUTH);
    want.extend_from_slice(b"+OK\r\n$1\r\nv\r\n");
    same(&c.replies(6).await, &want, "RESET inside a pipeline");
}

/// RESP3 clients (redis-py 8 says `HELLO 3` first) share a RESP3 lane: replies in
/// their protocol, a handful of upstream connections for any number of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_clients_share_a_resp3_lane() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut inspector = redis.connect().await;
    let mut resp2 = proxy.authed(PW).await;
    same(&resp2.cmd(&["HSET", "h", "f", "v"]).await, b":1\r\n", "HSET");
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = proxy.authed(PW).await;
        let hello = c.cmd(&["HELLO", "3"]).await;
        assert!(hello.starts_with(b"%7\r\n") && show(&hello).contains("proto\r\n:3"), "{:?}", show(&hello));
        same(&c.cmd(&["HGETALL", "h"]).await, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", "a RESP3 map");
        clients.push(c);
    }
    same(&resp2.cmd(&["HGETALL", "h"]).await, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", "RESP2 still");
    // One RESP2 lane, one RESP3 lane, this inspector.
    let n = info_clients(&mut inspector, "connected_clients").await;
    assert!(n <= 3, "{n} connections to Redis for 11 clients");
    assert_eq!(proxy.ctx.lanes.open(), 2);

    // Back to RESP2 with HELLO 2, then RESET: each lands on the right lane, in order.
    let c = &mut clients[0];
    c.send(&pipeline(&[&["GET", "missing"], &["HELLO", "2"], &["GET", "missing"], &["RESET"]])).await;
    same(&c.reply().await, b"_\r\n", "RESP3 null");
    assert!(c.reply().await.starts_with(b"*14\r\n"), "HELLO 2 answers in RESP2");
    same(&c.replies(2).await, b"$-1\r\n+RESET\r\n", "RESP2 null, then RESET");
    let c = &mut clients[1];
    same(&c.cmd(&["RESET"]).await, b"+RESET\r\n", "RESET");
    same(&c.cmd(&["AUTH", PW]).await, b"+OK\r\n", "AUTH");
    same(&c.cmd(&["HGETALL", "h"]).await, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", "RESP2 after RESET");
}

/// A RESP3 client that leaves the lane for a connection of its own stays RESP3
/// there, and its writes on the lane are seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resp3_client_stays_resp3_when_it_pins() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut c = proxy.authed(PW).await;
    c.send(&pipeline(&[
        &["HELLO", "3"],
        &["HSET", "p", "f", "v"],
        &["CLIENT", "SETNAME", "pinned"],
        &["HGETALL", "p"],
        &["GET", "missing"],
        &["CLIENT", "GETNAME"],
    ]))
    .await;
    assert!(c.reply().await.starts_with(b"%7\r\n"));
    same(
        &c.replies(5).await,
        b":1\r\n+OK\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n_\r\n$6\r\npinned\r\n",
        "RESP3 on the client's own connection",
    );
    // Its own connection is in RESP3 too: pushes arrive as pushes.
    let mut sub = proxy.authed(PW).await;
    assert!(sub.cmd(&["HELLO", "3"]).await.starts_with(b"%7\r\n"));
    same(&sub.cmd(&["SUBSCRIBE", "ch"]).await, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", "a push");
}

/// What Redis clients send on connect: CLIENT SETINFO (node-redis, redis-py,
/// go-redis) keeps the client on the lane; CLIENT MAINT_NOTIFICATIONS (redis-py 8)
/// is declined by turnstile, as by a server without the feature, because the
/// endpoints Redis would announce are not the ones the client should use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_time_client_commands_keep_the_lane() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut inspector = redis.connect().await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = proxy.authed(PW).await;
        let setinfo = c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "node-redis"]).await;
        // Redis 7.2+ says +OK; 7.0 does not know SETINFO. Either way it is Redis's answer.
        assert!(
            setinfo == b"+OK\r\n" || setinfo.starts_with(b"-ERR unknown subcommand 'SETINFO'"),
            "{:?}",
            show(&setinfo)
        );
        same(
            &c.cmd(&["CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type", "internal-fqdn"]).await,
            b"-ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.\r\n",
            "declined",
        );
        same(&c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
        clients.push(c);
    }
    let n = info_clients(&mut inspector, "connected_clients").await;
    assert!(n <= 2, "{n} connections to Redis for 10 clients");
    // Before AUTH, it is NOAUTH like everything else.
    let mut anon = proxy.connect().await;
    same(&anon.cmd(&["CLIENT", "MAINT_NOTIFICATIONS", "ON"]).await, NOAUTH, "NOAUTH");
}

/// A changed upstream (PUT /v1/bdbs/<uid>) serves new clients on a new lane; a client
/// already on the old lane stays there, as a client with its own connection does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_upstream_serves_new_clients_on_a_new_lane() {
    let (a, b) = (Redis::start(&[]), Redis::start(&[]));
    let proxy = proxy(&a, 1).await;
    let mut old = proxy.authed(PW).await;
    same(&old.cmd(&["SET", "where", "a"]).await, b"+OK\r\n", "SET on a");
    let mut up = turnstile::proxy::Upstream::parse(&format!("redis://{}", b.addr())).unwrap();
    up.pool = PoolLimits { shared: 1, ..PoolLimits::default() };
    proxy.ctx.set_upstream(up);
    let mut new = proxy.authed(PW).await;
    same(&new.cmd(&["GET", "where"]).await, b"$-1\r\n", "a new client reaches b");
    same(&new.cmd(&["SET", "where", "b"]).await, b"+OK\r\n", "SET on b");
    same(&old.cmd(&["GET", "where"]).await, b"$1\r\na\r\n", "the old client stays on a");
    let mut on_b = b.connect().await;
    same(&on_b.cmd(&["GET", "where"]).await, b"$1\r\nb\r\n", "b has the new client's write");
}

/// Lanes are per rule: clients of two rules never share an upstream connection
/// (Redis checks rights per connection), each rule gets its lanes (at most
/// `upstream_shared_connections` per protocol), and a lane left idle for the pool's
/// idle time closes; its clients carry on, on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_are_per_rule_bounded_and_close_when_idle() {
    let redis = Redis::start(&[]);
    let mut o = ProxyOptions::new(&format!("redis://{}", redis.addr()));
    o.pool = PoolLimits { shared: 1, idle: Duration::from_millis(300), ..PoolLimits::default() };
    let proxy = Proxy::with(o).await;
    proxy.add_default(PW).await;
    proxy.add_user("alice", &["alice-pw"]).await;
    // bob's role 2 gets a rule of its own (the same text: still another rule).
    proxy.directory.set_acl(2, "~* &* +@all");
    proxy.directory.set_user("bob", vec![2]).unwrap();
    let perms = vec![
        turnstile::auth::Permission { role: 1, acl: 1 },
        turnstile::auth::Permission { role: 2, acl: 2 },
    ];
    proxy.directory.set_bdb(1, turnstile::auth::BdbAccess { default_user: true, permissions: perms });
    proxy
        .directory
        .change(&turnstile::auth::SetId::User("bob".into()), turnstile::auth::SetChange::Add, b"bob-pw")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut c = proxy.connect().await;
        let auth: &[&str] = match i % 3 {
            0 => &["AUTH", PW],
            1 => &["AUTH", "alice", "alice-pw"],
            _ => &["AUTH", "bob", "bob-pw"],
        };
        same(&c.cmd(auth).await, b"+OK\r\n", "AUTH");
        same(&c.cmd(&["SET", &format!("k{i}"), "v"]).await, b"+OK\r\n", "SET");
        clients.push(c);
    }
    let lanes = &proxy.ctx.lanes;
    use turnstile::authz::RuleKey;
    for key in [RuleKey::Default, RuleKey::Acl(1), RuleKey::Acl(2)] {
        assert_eq!(lanes.open_for(key, false), 1, "lanes of {key:?}");
    }
    assert_eq!(lanes.open(), 3, "one lane per rule");
    // Upstream, each lane is logged in as its rule's user: three turnstile users.
    let mut inspector = redis.connect().await;
    let list = show(&inspector.cmd(&["CLIENT", "LIST"]).await);
    let mut users: Vec<&str> = list
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("user="))
        .filter(|u| u.starts_with("__turnstile:"))
        .collect();
    users.sort_unstable();
    users.dedup();
    assert_eq!(users.len(), 3, "{list}");
    eventually("idle lanes close", || lanes.open() == 0).await;
    for (i, c) in clients.iter_mut().enumerate() {
        same(&c.cmd(&["GET", &format!("k{i}")]).await, b"$1\r\nv\r\n", "GET after the lanes closed");
    }
    assert_eq!(lanes.open(), 3, "reopened on demand");
}

/// A client cannot aim Redis's tracking invalidations at a shared RESP3 connection
/// (`CLIENT TRACKING on REDIRECT <id>`, with the id a HELLO on the lane shows): the
/// pushes are dropped, the lane's clients never see them and keep their connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_invalidations_cannot_break_a_lane() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut lane_client = proxy.authed(PW).await;
    let hello = show(&lane_client.cmd(&["HELLO", "3"]).await);
    let id = hello.split("$2\r\nid\r\n:").nth(1).and_then(|r| r.split("\r\n").next()).unwrap().to_string();
    same(&lane_client.cmd(&["SET", "k", "1"]).await, b"+OK\r\n", "SET on the RESP3 lane");
    let mut attacker = proxy.authed(PW).await;
    same(&attacker.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]).await, b"+OK\r\n", "TRACKING");
    same(&attacker.cmd(&["GET", "k"]).await, b"$1\r\n1\r\n", "GET tracked");
    for i in 0..20 {
        // Each write invalidates k: Redis pushes to the lane's connection.
        same(&attacker.cmd(&["SET", "k", &i.to_string()]).await, b"+OK\r\n", "SET invalidates");
        same(
            &attacker.cmd(&["GET", "k"]).await,
            format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
            "GET",
        );
        same(
            &lane_client.cmd(&["GET", "k"]).await,
            format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
            "the lane client's GET, with nothing pushed ahead of it",
        );
    }
    // The same upstream connection still carries the lane: it was never ended.
    let again = show(&lane_client.cmd(&["HELLO", "3"]).await);
    assert!(again.contains(&format!("$2\r\nid\r\n:{id}\r\n")), "the lane was replaced: {again:?}");
    assert_eq!(proxy.ctx.lanes.open(), 1, "the RESP3 lane survived");
}

/// A client that sends its AUTH and its first command together (as redis-benchmark
/// and most pools do on every new connection) gets both replies in one write, as
/// Redis answers the commands of one read: one system call, and one wake-up of the
/// client, fewer per connection. One read on the client sees both, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_the_first_lane_reply_go_out_in_one_write() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis, 1).await;
    let mut setup = proxy.authed(PW).await;
    same(&setup.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    for round in 0..20 {
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&pipeline(&[&["AUTH", PW], &["GET", "k"]])).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        same(&buf[..n], b"+OK\r\n$1\r\nv\r\n", &format!("round {round}: one read holds both replies"));
    }
}
