//! No shared fate on a shared upstream connection (issue 12): bytes Redis would frame
//! differently never reach the lane (the NUL wedges), and a client that reads its
//! replies slowly or not at all never delays the others — against a real Redis, with
//! every client on one lane (`upstream_shared_connections = 1`).

#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::authz::eventually;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turnstile::proxy::{OutputLimits, PoolLimits};

const PW: &str = "fate-Pw-1";

async fn proxy(redis: &Redis) -> Proxy {
    proxy_with(redis, OutputLimits::default()).await
}

async fn proxy_with(redis: &Redis, output: OutputLimits) -> Proxy {
    let mut o = ProxyOptions::new(&format!("redis://{}", redis.addr()));
    o.pool = PoolLimits { shared: 1, output, ..PoolLimits::default() };
    let p = Proxy::with(o).await;
    p.add_default(PW).await;
    p
}

#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(show(got), show(want), "{what}");
}

/// B's GET is answered at once (well within a second), whatever A did.
async fn b_is_served(b: &mut Conn, what: &str) {
    for i in 0..10 {
        let got = tokio::time::timeout(Duration::from_secs(1), b.cmd(&["GET", "k"]))
            .await
            .unwrap_or_else(|_| panic!("{what}: B's GET {i} waited more than a second"));
        same(&got, b"$1\r\nv\r\n", what);
    }
}

/// What Redis holds unparsed for each of its clients (`qbuf=` of `CLIENT LIST`).
async fn query_buffers(redis: &Redis) -> Vec<String> {
    let mut c = redis.connect().await;
    let list = show(&c.cmd(&["CLIENT", "LIST"]).await);
    // Not the asking connection's: its buffer holds the CLIENT LIST being answered.
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .flat_map(|l| l.split(' ').filter(|f| f.starts_with("qbuf=")).map(str::to_string))
        .collect()
}

/// Every NUL wedge of issue 12, each from its own client on the lane, all left
/// waiting at once: Redis's lane connection holds no half request, B is answered at
/// once throughout, and each wedged client waits exactly as it would on Redis (its
/// request never completes; past 64 KiB it gets Redis's error and is closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_never_wedge_the_lane() {
    let redis = Redis::start(&[]);
    let proxy = proxy(&redis).await;
    let mut direct = redis.connect().await;
    same(&direct.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    let mut b = proxy.authed(PW).await;
    b_is_served(&mut b, "before").await;

    const INLINE: &[u8] = b"-ERR Protocol error: too big inline request\r\n";
    // (what, bytes sent, the reply they get, the error 70 KB more gets)
    type Variant = (&'static str, &'static [u8], &'static [u8], &'static [u8]);
    let variants: &[Variant] = &[
        ("inline PING\\0", b"PING\0\r\n", b"", INLINE),
        ("inline GET a\\0", b"GET a\0\r\n", b"", INLINE),
        ("a NUL-only line in a pipeline", b"GET k\r\n\0\r\nGET k\r\n", b"$1\r\nv\r\n", INLINE),
        ("a NUL line first", b"\0\r\nPING\r\n", b"", INLINE),
        ("a NUL inside quotes", b"ECHO \"a\0b\"\r\n", b"", INLINE),
        (
            "a NUL in a *N header",
            b"*1\0\r\n$4\r\nPING\r\n",
            b"",
            b"-ERR Protocol error: too big mbulk count string\r\n",
        ),
        (
            "a NUL in a $N header",
            b"*2\r\n$3\r\nGET\r\n$1\0\r\nk\r\n",
            b"",
            b"-ERR Protocol error: too big bulk count string\r\n",
        ),
    ];
    let mut wedged = Vec::new();
    for (what, bytes, first, _) in variants {
        let mut a = proxy.authed(PW).await;
        same(&a.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "A on the lane");
        a.send(bytes).await;
        if !first.is_empty() {
            same(&a.reply().await, first, what);
        }
        b_is_served(&mut b, what).await;
        wedged.push(a);
    }
    // Nothing is stuck in Redis: no connection (the lane included) holds a partial
    // request. (With the old framing, the lane's qbuf held the wedge.)
    let qbufs = query_buffers(&redis).await;
    assert!(!qbufs.is_empty(), "CLIENT LIST: {qbufs:?}");
    assert!(qbufs.iter().all(|q| q == "qbuf=0"), "Redis holds a partial request: {qbufs:?}");
    // Each wedged client was still waiting, as on Redis: 70 KB more gets Redis's error.
    for (a, (what, _, _, error)) in wedged.iter_mut().zip(variants) {
        a.send(&vec![b'f'; 70_000]).await;
        same(&a.read_to_close().await, error, what);
    }
    b_is_served(&mut b, "after").await;
}

/// A connection whose receive buffer is 4 KiB (set before connecting, so the window
/// Redis and turnstile see is small from the start), authenticated.
async fn small_window_client(proxy: &Proxy) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&proxy.addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut s = TcpStream::from_std(s.into()).unwrap();
    s.write_all(&cmd_bytes(&["AUTH", PW])).await.unwrap();
    let mut ok = [0u8; 5];
    s.read_exact(&mut ok).await.unwrap();
    same(&ok, b"+OK\r\n", "AUTH");
    s
}

/// 20 clients on the lane, each `GET small` `per_client` times in turn: every latency.
async fn latencies(proxy: &Proxy, per_client: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = proxy.authed(PW).await;
        same(&c.cmd(&["GET", "small"]).await, b"$1\r\ns\r\n", "on the lane");
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let got = c.cmd(&["GET", "small"]).await;
                out.push(t.elapsed());
                same(&got, b"$1\r\ns\r\n", "GET small");
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() * 99 / 100]
}

/// Reads what is left until the close; the total, or None if it is not closed.
async fn drain_to_close(s: &mut TcpStream) -> Option<usize> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()
}

/// A Redis holding `small` and a `big` value of `big` bytes, and a proxy whose soft
/// output limit lasts `soft_for`.
async fn with_big_value(big: usize, soft_for: Duration) -> (Redis, Proxy) {
    let redis = Redis::start(&[]);
    let proxy = proxy_with(&redis, OutputLimits { soft_for, ..OutputLimits::default() }).await;
    let mut direct = redis.connect().await;
    same(&direct.cmd(&["SET", "small", "s"]).await, b"+OK\r\n", "SET small");
    direct.send(&encode(&[b"SET", b"big", &vec![b'x'; big]])).await;
    same(&direct.reply().await, b"+OK\r\n", "SET big");
    (redis, proxy)
}

/// Issue 12's slow reader (a 64 MiB reply read 1 MiB per 3 s through a 4 KiB receive
/// buffer) and a non-reader, beside 20 clients on the same lane: none of the 20
/// clients waits for them, and their p99 latency stays within 2x (+5 ms) of the same
/// run without them. The two are dealt with as
/// Redis deals with clients over their output buffer limits: disconnected, here by
/// the default hard and soft limits with the soft one's 60 s shortened to 2 s, so
/// that the test sees it (what the kernel's socket buffers took keeps a 64 MiB reply
/// just under the 64 MiB hard limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_and_a_non_reader_do_not_slow_the_others() {
    const BIG: usize = 64 * 1024 * 1024;
    const PER_CLIENT: usize = 1000;
    let (_redis, proxy) = with_big_value(BIG, Duration::from_secs(2)).await;

    // Warm-up, then the run without slow clients.
    latencies(&proxy, 100).await;
    let calm = latencies(&proxy, PER_CLIENT).await;

    // The same run with a slow reader and a non-reader on the lane.
    let mut slow = small_window_client(&proxy).await;
    let mut idle = small_window_client(&proxy).await;
    slow.write_all(&cmd_bytes(&["GET", "big"])).await.unwrap();
    idle.write_all(&cmd_bytes(&["GET", "big"])).await.unwrap();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            // 1 MiB, then 3 s of nothing: the pace of issue 12's slow reader.
            let mut got = 0;
            while got < buf.len() {
                match slow.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => return (total + got, true),
                    Ok(n) => got += n,
                }
            }
            total += got;
            if started.elapsed() > Duration::from_secs(40) {
                return (total, false);
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
    let busy = latencies(&proxy, PER_CLIENT).await;

    let (calm_p99, busy_p99) = (p99(&calm), p99(&busy));
    let ratio = busy_p99.as_secs_f64() / calm_p99.as_secs_f64();
    eprintln!(
        "20 clients x {PER_CLIENT} GETs on one lane: p99 {calm_p99:?} without, {busy_p99:?} with a slow reader and a non-reader (ratio {ratio:.2}); max {:?} / {:?}",
        calm.last().unwrap(),
        busy.last().unwrap()
    );
    // A lane held up by the slow reader would make the others wait its 3 s pauses.
    let busy_max = *busy.last().unwrap();
    assert!(busy_max < Duration::from_secs(1), "a GET waited {busy_max:?} beside the slow clients");
    // Within 2x, give or take 5 ms: on a shared 2-core machine, where this test, the
    // proxy and Redis take turns on the cores, the two runs' p99 (~2 ms) moves by
    // that much with no slow client at all. The bare 2x failed in 1 of 4 runs of the
    // build before this tolerance and in 2 of 5 of the build after, both of them
    // measured side by side (ratios 0.5-3.1, p99 1.7-6.4 ms).
    assert!(
        busy_p99 <= calm_p99 * 2 + Duration::from_millis(5),
        "p99 {busy_p99:?} with the slow clients vs {calm_p99:?} without (ratio {ratio:.2})"
    );

    // A newcomer is served at once. (While no one else used the lane, the lane read
    // the rest of the non-reader's reply at its pace, i.e. not at all; the newcomer's
    // request ends that, and the rest goes to the non-reader's mailbox.)
    let mut c = proxy.authed(PW).await;
    let t = Instant::now();
    same(&c.cmd(&["GET", "small"]).await, b"$1\r\ns\r\n", "a newcomer");
    assert!(t.elapsed() < Duration::from_secs(2), "a newcomer waited {:?}", t.elapsed());
    // Both were disconnected, with the reply cut short, as Redis closes a client over
    // its output buffer limit (what they read is what the socket buffers held). Read
    // only once both are cut: a non-reader that starts reading within its soft
    // seconds is a reader, and gets its reply.
    let cut = || proxy.ctx.lane_replies.disconnections.load(std::sync::atomic::Ordering::Relaxed);
    eventually("both slow clients are cut", Duration::from_secs(20), || async { (cut() == 2).then_some(()) })
        .await;
    let got = drain_to_close(&mut idle).await.expect("the non-reader is disconnected");
    assert!(got < BIG, "the non-reader got the whole reply ({got} bytes)");
    let (read, closed) = reader.await.unwrap();
    assert!(closed, "the slow reader is disconnected ({read} bytes read)");
    assert!(read < BIG, "the slow reader got the whole reply ({read} bytes)");
    // And the lane serves on.
    same(&c.cmd(&["GET", "small"]).await, b"$1\r\ns\r\n", "after");
}

/// A client that reads nothing goes over its soft limit while its relay is in the
/// middle of writing a reply taken below it, and then no more replies come for it:
/// it is still disconnected once its soft seconds are up. (Checked only as replies
/// arrived, the limit was never enforced here: the test of the slow clients above
/// failed now and then on it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reader_over_its_soft_limit_is_disconnected_without_further_replies() {
    const BIG: usize = 24 * 1024 * 1024;
    let (_redis, proxy) = with_big_value(BIG, Duration::from_secs(1)).await;
    let backlog = &proxy.ctx.lane_replies;
    let cut = || backlog.disconnections.load(std::sync::atomic::Ordering::Relaxed);

    let mut idle = small_window_client(&proxy).await;
    idle.write_all(&cmd_bytes(&["GET", "big"])).await.unwrap();
    // Its reply is on the way (the lane reads it at the client's pace while no one
    // else is owed a reply: about 1 MiB is queued, far below the soft limit).
    eventually("the big reply reaches the mailbox", Duration::from_secs(10), || async {
        (backlog.queued.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    // Another client's request makes the lane read the rest for it: 23 MiB queued,
    // over the 16 MiB soft limit, and nothing more comes for the non-reader.
    let mut c = proxy.authed(PW).await;
    same(&c.cmd(&["GET", "small"]).await, b"$1\r\ns\r\n", "another client");
    assert_eq!(cut(), 0, "not cut at once: below the hard limit");
    eventually("the non-reader is cut after its soft seconds", Duration::from_secs(10), || async {
        (cut() == 1).then_some(())
    })
    .await;
    let got = drain_to_close(&mut idle).await.expect("the non-reader is disconnected");
    assert!(got < BIG, "the non-reader got the whole reply ({got} bytes)");
    same(&c.cmd(&["GET", "small"]).await, b"$1\r\ns\r\n", "the lane serves on");
}
