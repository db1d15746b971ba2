//! Upstream faults under load, against the real binary: 32 clients run commands
//! non-stop while the upstream Redis is SIGKILLed and restarted on the same port.
//! Every operation ends in a reply, a clean `-ERR upstream Redis …` and a close, or
//! a close — never a hang; turnstile stays up; every client gets back in once Redis
//! is back, without restarting turnstile. Also: a client blocked in BLPOP when Redis
//! dies is told so, and BLPOP works again after the restart; a request Redis died
//! without reading (a reset, not a close) still gets the clean error.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 32;
const PASSWORD: &str = "load-pw-1";
const UNAVAILABLE: &[u8] = b"-ERR upstream Redis is unavailable\r\n";
const LOST: &[u8] = b"-ERR upstream Redis closed the connection\r\n";
/// No single operation (connect, AUTH, command, close) may take longer than this.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    replies: u64,
    unavailable: u64,
    lost: u64,
    /// Closed without an error reply (an idle moment, or between command and reply).
    closes: u64,
    connects: u64,
}

/// Live progress, read by the test to move between phases.
struct Shared {
    ok: Vec<AtomicU64>,
    faults: Vec<AtomicU64>,
    stop: AtomicBool,
    /// Set when Redis is back; each client then notes its first good reply.
    restarted: Mutex<Option<Instant>>,
    recovered: Mutex<Vec<Option<Instant>>>,
}

/// How one command ended.
enum Outcome {
    Reply(Vec<u8>),
    Closed,
}

/// Reads one complete reply (or the close) within `OP_TIMEOUT`.
async fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Outcome, String> {
    tokio::time::timeout(OP_TIMEOUT, async {
        loop {
            match frame_len(buf) {
                Ok(Some(n)) => return Ok(Outcome::Reply(buf.drain(..n).collect())),
                Ok(None) => {}
                Err(e) => return Err(format!("invalid RESP: {e}")),
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) if buf.is_empty() => return Ok(Outcome::Closed),
                Ok(0) | Err(_) => return Err(format!("closed mid-reply: {:?}", show(buf))),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    })
    .await
    .map_err(|_| "an operation hung".to_string())?
}

/// Connects and authenticates (AUTH is answered by turnstile, Redis up or not).
async fn connect(addr: &str) -> Result<TcpStream, String> {
    let mut s = tokio::time::timeout(OP_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect hung".to_string())?
        .map_err(|e| format!("turnstile refused a connection: {e}"))?;
    s.write_all(&cmd_bytes(&["AUTH", PASSWORD])).await.map_err(|e| e.to_string())?;
    match read_reply(&mut s, &mut Vec::new()).await? {
        Outcome::Reply(r) if r == b"+OK\r\n" => Ok(s),
        Outcome::Reply(r) => Err(format!("AUTH: {:?}", show(&r))),
        Outcome::Closed => Err("AUTH: closed".into()),
    }
}

/// One client: SET/GET/INCR non-stop, reconnecting after every error or close.
async fn client(id: usize, addr: String, shared: Arc<Shared>) -> Result<Tally, String> {
    let mut t = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
    let key = format!("k{id}");
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => {
                t.connects += 1;
                buf.clear();
                conn.insert(connect(&addr).await?)
            }
        };
        n += 1;
        let cmd = match n % 3 {
            0 => cmd_bytes(&["SET", &key, "v"]),
            1 => cmd_bytes(&["GET", &key]),
            _ => cmd_bytes(&["INCR", &format!("{key}:n")]),
        };
        let outcome = match s.write_all(&cmd).await {
            Ok(()) => read_reply(s, &mut buf).await?,
            Err(_) => Outcome::Closed,
        };
        match outcome {
            Outcome::Reply(r) if r.starts_with(b"-") => {
                match r.as_slice() {
                    UNAVAILABLE => t.unavailable += 1,
                    LOST => t.lost += 1,
                    other => return Err(format!("unexpected error reply {:?}", show(other))),
                }
                // The error is followed by a close, promptly.
                match read_reply(s, &mut buf).await? {
                    Outcome::Closed => {}
                    Outcome::Reply(r) => return Err(format!("after the error, not a close: {:?}", show(&r))),
                }
                conn = None;
                shared.faults[id].fetch_add(1, Ordering::Relaxed);
                // Pacing, not synchronisation: no need to spin while Redis is down.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Outcome::Reply(_) => {
                t.replies += 1;
                shared.ok[id].fetch_add(1, Ordering::Relaxed);
                if let Some(up) = *shared.restarted.lock().unwrap() {
                    let mut rec = shared.recovered.lock().unwrap();
                    rec[id].get_or_insert_with(|| up.max(Instant::now()));
                }
            }
            Outcome::Closed => {
                t.closes += 1;
                conn = None;
                shared.faults[id].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(t)
}

/// Polls `probe` until it holds; fails after 30 s instead of hanging.
async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn counts(v: &[AtomicU64]) -> Vec<u64> {
    v.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load() {
    let mut redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    let (status, v) = p
        .curl(
            "POST",
            "/v1/bdbs/1/passwords",
            (ADMIN, ADMIN_PW),
            Some(&format!("{{\"password\": \"{PASSWORD}\"}}")),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let addr = p.bdb(1);

    let shared = Arc::new(Shared {
        ok: (0..CLIENTS).map(|_| AtomicU64::new(0)).collect(),
        faults: (0..CLIENTS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        restarted: Mutex::new(None),
        recovered: Mutex::new(vec![None; CLIENTS]),
    });
    let tasks: Vec<_> =
        (0..CLIENTS).map(|id| tokio::spawn(client(id, addr.clone(), shared.clone()))).collect();

    // A client blocked in BLPOP when Redis dies.
    let mut blocked = Conn::connect(&addr).await;
    assert_eq!(blocked.cmd(&["AUTH", PASSWORD]).await, b"+OK\r\n");
    blocked.send(&cmd_bytes(&["BLPOP", "queue", "0"])).await;
    let mut watcher = redis.connect().await;
    let mut blocked_upstream = false;
    for _ in 0..2000 {
        if show(&watcher.cmd(&["INFO", "clients"]).await).contains("blocked_clients:1\r") {
            blocked_upstream = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(blocked_upstream, "BLPOP never blocked upstream");
    drop(watcher);

    eventually("every client running", || counts(&shared.ok).iter().all(|&n| n >= 50)).await;
    let killed = Instant::now();
    redis.kill();
    // The blocked client is told its reply will not come, then closed.
    assert_eq!(show(&blocked.read_to_close().await), show(LOST), "BLPOP across a Redis crash");
    // Twice: the connection Redis's death ended, then a reconnect while it is down.
    eventually("every client saw the outage", || counts(&shared.faults).iter().all(|&n| n >= 2)).await;
    let outage_seen = killed.elapsed();

    redis.restart();
    let up = Instant::now();
    *shared.restarted.lock().unwrap() = Some(up);
    let ok_at_restart = counts(&shared.ok);
    eventually("every client back", || {
        counts(&shared.ok).iter().zip(&ok_at_restart).all(|(now, then)| *now >= then + 50)
    })
    .await;
    let recovery = shared
        .recovered
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.expect("recovered").duration_since(up))
        .max()
        .unwrap();

    shared.stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for (id, task) in tasks.into_iter().enumerate() {
        let t = task.await.unwrap().unwrap_or_else(|e| panic!("client {id}: {e}"));
        total.replies += t.replies;
        total.unavailable += t.unavailable;
        total.lost += t.lost;
        total.closes += t.closes;
        total.connects += t.connects;
    }
    eprintln!(
        "upstream_faults: {CLIENTS} clients, {} replies, {} `unavailable`, {} `closed the connection`, \
         {} silent closes, {} connections; every client saw the outage {outage_seen:?} after the kill, \
         all were back {recovery:?} after the restart",
        total.replies, total.unavailable, total.lost, total.closes, total.connects
    );
    // Every client lost its connection, reconnected during the outage and was told
    // Redis is unavailable, and reconnected again once it was back.
    assert!(total.unavailable + total.lost + total.closes >= 2 * CLIENTS as u64, "{total:?}");
    assert!(total.unavailable >= CLIENTS as u64, "{total:?}");
    assert!(total.connects >= 3 * CLIENTS as u64, "{total:?}");
    assert!(recovery < Duration::from_secs(10), "recovery took {recovery:?}");

    // turnstile stayed up throughout, and serves new connections and BLPOP again.
    assert!(p.child.try_wait().unwrap().is_none(), "turnstile exited");
    let mut popper = Conn::connect(&addr).await;
    assert_eq!(popper.cmd(&["AUTH", PASSWORD]).await, b"+OK\r\n");
    popper.send(&cmd_bytes(&["BLPOP", "queue", "0"])).await;
    let mut pusher = Conn::connect(&addr).await;
    assert_eq!(pusher.cmd(&["AUTH", PASSWORD]).await, b"+OK\r\n");
    // Whichever of BLPOP and LPUSH reaches Redis first, the popper gets the job.
    assert_eq!(pusher.cmd(&["LPUSH", "queue", "job"]).await, b":1\r\n");
    assert_eq!(show(&popper.reply().await), show(b"*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"));
    assert_eq!(pusher.cmd(&["PING"]).await, b"+PONG\r\n");
    p.child.start_kill().unwrap();
    let _ = p.child.wait().await;
}

/// Redis killed while our request sits unread in its socket resets the connection
/// (RST, not FIN). The client is owed a reply all the same: it must get the clean
/// error, not a silent close (it did get a silent close before this was fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_upstream_connection_still_gets_the_clean_error() {
    let mut redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["pw"]).await;
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
    let info = show(&redis.connect().await.cmd(&["INFO", "server"]).await);
    let pid =
        info.lines().find_map(|l| l.strip_prefix("process_id:")).expect("process_id").trim().to_string();
    // Stopped, Redis cannot read what turnstile forwards; killed, it resets.
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    c.send(&cmd_bytes(&["SET", "k", "v"])).await;
    let mut forwarded = false;
    for _ in 0..200 {
        // The request has left turnstile once Redis's socket holds it: poll its
        // receive queue through /proc (Recv-Q of the connection to Redis's port).
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let port = format!(":{:04X}", redis.port);
        forwarded = tcp.lines().any(|l| {
            // sl local rem st tx_queue:rx_queue …
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 4 && f[1].ends_with(&port) && f[3] == "01" && !f[4].ends_with(":00000000")
        });
        if forwarded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(forwarded, "the SET never reached Redis's socket");
    redis.kill();
    assert_eq!(show(&c.read_to_close().await), show(LOST));
    // And the process recovers when Redis does.
    redis.restart();
    let mut c = proxy.authed("pw").await;
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
}
