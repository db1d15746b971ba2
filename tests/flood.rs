//! Connection floods against the real binary: thousands of half-open admin TLS
//! connections and unauthenticated database connections leave both ports
//! answering, and are closed within their limits; the connection bounds refuse at
//! once; a process out of descriptors sheds new connections instead of hanging them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Redis;
use common::admin::{ADMIN, ADMIN_PW, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connections per port in the flood (fewer if the descriptor limit cannot be
/// raised far enough, see [`flood_size`]).
const FLOOD: usize = 5_000;
/// The header and auth timeouts the flood runs with: long enough for every flood
/// connection to be open at once, short enough to keep the test quick.
const LIMIT_SECS: u64 = 20;
/// What "closed by then" allows beyond the limit: the watchdog's 1 s close grace
/// and scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(4);
/// Every probe must be answered within this while the flood holds.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
const PASSWORD: &str = "flood-pw-1";

/// The tests here measure time and CPU: one at a time, or they skew each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Raises this process's descriptor limit (the children inherit it): the soft
/// limit to the hard one, and as root the hard one too. Returns the soft limit.
fn raise_fd_limit(want: u64) -> u64 {
    use rlimit::Resource;
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    if hard < want {
        // Allowed to root (CAP_SYS_RESOURCE); otherwise the flood is sized down.
        let _ = rlimit::setrlimit(Resource::NOFILE, want, want);
    }
    rlimit::increase_nofile_limit(want).unwrap()
}

/// Flood connections per port that fit under a descriptor limit of `limit` (the
/// test's and, inherited, turnstile's): each side holds one descriptor per
/// connection on two ports, and turnstile caps admin connections at a quarter of
/// its limit, which must leave room for the probes.
fn flood_size(limit: u64) -> usize {
    let fit = (limit.saturating_sub(1_000) / 2) as usize;
    let admin_room = turnstile::descriptors::cap(12_000, limit, 4).saturating_sub(100);
    let n = FLOOD.min(fit).min(admin_room);
    if n < FLOOD {
        eprintln!("descriptor limit {limit}: flooding with {n} connections per port instead of {FLOOD}");
    }
    n
}

fn connector(p: &Process) -> TlsConnector {
    turnstile::admin::tls::install_crypto_provider();
    let cert = p.dir.join("data").join("tls").join("cert.pem");
    TlsConnector::from(turnstile::tls::client_config(&cert, None).unwrap())
}

fn host(url: &str) -> String {
    url.trim_start_matches("https://").to_string()
}

/// Descriptors turnstile has open now.
fn open_fds(p: &Process) -> usize {
    let pid = p.child.id().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// What happened to one flood connection: how long it lived after its last byte
/// was sent, or what went wrong.
type Lived = Result<Duration, String>;

/// A TLS connection that sends half a request and waits for the server to close.
async fn half_open_admin(addr: String, tls: TlsConnector, gate: Arc<tokio::sync::Semaphore>) -> Lived {
    let permit = gate.acquire_owned().await.unwrap();
    let tcp = TcpStream::connect(&addr).await.map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tls.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    s.write_all(b"GET /v1/bdbs HTTP/1.1\r\nHost: x\r\n").await.map_err(|e| format!("write: {e}"))?;
    let sent = Instant::now();
    drop(permit);
    let mut buf = [0u8; 512];
    match s.read(&mut buf).await {
        Ok(0) | Err(_) => Ok(sent.elapsed()),
        Ok(n) => Err(format!("answered a half-sent request: {:?}", String::from_utf8_lossy(&buf[..n]))),
    }
}

/// A database connection that sends half an AUTH and waits for the server to close.
async fn half_open_db(addr: String, gate: Arc<tokio::sync::Semaphore>) -> Lived {
    let permit = gate.acquire_owned().await.unwrap();
    let mut s = TcpStream::connect(&addr).await.map_err(|e| format!("connect: {e}"))?;
    s.write_all(b"*2\r\n$4\r\nAUTH\r\n").await.map_err(|e| format!("write: {e}"))?;
    let sent = Instant::now();
    drop(permit);
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    match got.as_slice() {
        b"" => Ok(sent.elapsed()),
        other => Err(format!("unexpected reply {:?}", String::from_utf8_lossy(other))),
    }
}

/// `AUTH` + `PING` on a new database connection: the time to both replies.
async fn probe_db(addr: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let run = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        s.write_all(format!("AUTH {PASSWORD}\r\nPING\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < b"+OK\r\n+PONG\r\n".len() {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
        if got != b"+OK\r\n+PONG\r\n" {
            return Err(format!("got {:?}", String::from_utf8_lossy(&got)));
        }
        Ok(t.elapsed())
    };
    tokio::time::timeout(PROBE_LIMIT * 2, run).await.unwrap_or_else(|_| Err("no answer".into()))
}

/// `GET /v1/bdbs` with curl: the time to a 200.
async fn probe_admin(url: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let out = tokio::process::Command::new("curl")
        .args(["-k", "-s", "-S", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .args(["-u", &format!("{ADMIN}:{ADMIN_PW}"), &format!("{url}/v1/bdbs")])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    if code != "200" {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!("status {code:?} after {:?}: {why}", t.elapsed()));
    }
    Ok(t.elapsed())
}

fn summary(name: &str, lived: &[Duration]) -> (Duration, Duration) {
    let mut v = lived.to_vec();
    v.sort();
    let (min, max) = (v[0], v[v.len() - 1]);
    eprintln!(
        "{name}: {} connections lived {:.2}..{:.2} s after their last byte (median {:.2} s)",
        v.len(),
        min.as_secs_f64(),
        max.as_secs_f64(),
        v[v.len() / 2].as_secs_f64()
    );
    (min, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_floods_leave_both_ports_answering_and_are_closed_in_time() {
    let _serial = SERIAL.lock().await;
    let n = flood_size(raise_fd_limit(65_536));
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(LIMIT_SECS);
    let p = Process::start_configured(
        dir.path(),
        &format!("redis://{}", redis.addr()),
        // The flood and the probes share 127.0.0.1: no bound per address here.
        &format!(
            "max_connections = 12000\nmax_connections_per_address = 0\nheader_timeout_secs = {LIMIT_SECS}\n\
             idle_timeout_secs = 60"
        ),
        &format!(
            "[proxy]\nauth_timeout_secs = {LIMIT_SECS}\nmax_unauthenticated_connections = 12000\n\
             max_unauthenticated_per_address = 0"
        ),
        "",
        "",
    )
    .await;
    let (status, v) = p
        .curl(
            "PUT",
            "/v1/bdbs/1/passwords",
            (ADMIN, ADMIN_PW),
            Some(&format!("{{\"password\": \"{PASSWORD}\"}}")),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let db = p.bdb(1);
    let admin = host(&p.admin_url);
    let baseline_fds = open_fds(&p);

    // Probes run from the first flood connection until the last one is closed.
    let done = Arc::new(AtomicBool::new(false));
    // On a thread and runtime of their own: the flood keeps this test's runtime
    // busy, and a probe must measure turnstile, not the test's own scheduling.
    let probes = std::thread::spawn({
        let (done, db, url) = (Arc::clone(&done), db.clone(), p.admin_url.clone());
        move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut results = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    results.push(("db", probe_db(&db).await));
                    results.push(("admin", probe_admin(&url).await));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                results
            })
        }
    });
    let started = Instant::now();
    // Handshakes in flight at once: the test's own CPU is the bottleneck, not turnstile.
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let tls = connector(&p);
    let mut floods = Vec::new();
    for _ in 0..n {
        floods.push(tokio::spawn(half_open_admin(admin.clone(), tls.clone(), Arc::clone(&gate))));
        floods.push(tokio::spawn(half_open_db(db.clone(), Arc::clone(&gate))));
    }
    // All of them open at once: poll turnstile's descriptors until they are there.
    let mut peak = 0;
    let opened = loop {
        peak = peak.max(open_fds(&p));
        if peak >= baseline_fds + 2 * n || started.elapsed() > limit - Duration::from_secs(2) {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "{} flood connections opened in {:.1} s; turnstile's descriptors: {baseline_fds} before, {peak} at the peak",
        2 * n,
        opened.as_secs_f64()
    );
    assert!(peak >= baseline_fds + 2 * n, "the flood was never all open at once (peak {peak} descriptors)");

    let (mut admin_lived, mut db_lived) = (Vec::new(), Vec::new());
    for (i, f) in floods.into_iter().enumerate() {
        let lived = tokio::time::timeout(limit + SLACK * 2, f)
            .await
            .expect("a flood connection was never closed")
            .unwrap();
        let lived = lived.unwrap_or_else(|e| panic!("flood connection {i}: {e}"));
        if i % 2 == 0 { admin_lived.push(lived) } else { db_lived.push(lived) }
    }
    let all_closed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let results = probes.join().unwrap();

    let (_, admin_max) = summary("half-open admin TLS", &admin_lived);
    let (_, db_max) = summary("unauthenticated database", &db_lived);
    assert!(admin_max <= limit + SLACK, "a half-open admin connection lived {admin_max:?} (limit {limit:?})");
    assert!(
        db_max <= limit + SLACK,
        "an unauthenticated database connection lived {db_max:?} (limit {limit:?})"
    );

    for kind in ["db", "admin"] {
        let mine: Vec<_> = results.iter().filter(|(k, _)| *k == kind).map(|(_, r)| r.clone()).collect();
        let failed: Vec<_> = mine.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "{kind} probes failed during the flood: {failed:?}");
        let mut lat: Vec<Duration> = mine.iter().map(|r| *r.as_ref().unwrap()).collect();
        lat.sort();
        assert!(lat.len() >= 5, "only {} {kind} probes ran", lat.len());
        let max = lat[lat.len() - 1];
        eprintln!(
            "{kind} probes during the flood: {} answered, median {:.0} ms, max {:.0} ms",
            lat.len(),
            lat[lat.len() / 2].as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
        assert!(max <= PROBE_LIMIT, "a {kind} probe took {max:?}");
    }
    // The descriptors are given back.
    let deadline = Instant::now() + SLACK;
    while open_fds(&p) > baseline_fds + 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open_fds(&p) <= baseline_fds + 50, "descriptors still open: {}", open_fds(&p));
    eprintln!("everything closed {:.1} s after the flood began", all_closed.as_secs_f64());
}

/// Reads until the server closes; what came, or None if it did not close in time.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_bounds_refuse_at_once_and_count_only_until_auth() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start_configured(
        dir.path(),
        &format!("redis://{}", redis.addr()),
        "max_connections = 4",
        "[proxy]\nmax_unauthenticated_connections = 5\nmax_unauthenticated_per_address = 3",
        "",
        "",
    )
    .await;
    let body = format!("{{\"password\": \"{PASSWORD}\"}}");
    assert_eq!(p.curl("PUT", "/v1/bdbs/1/passwords", (ADMIN, ADMIN_PW), Some(&body)).await.0, 200);
    let admin = host(&p.admin_url);
    let db = p.bdb(1);
    let quick = Duration::from_secs(2);

    // Admin: four connections held (idle, TLS done); the fifth is closed before
    // any handshake, at once.
    let tls = connector(&p);
    let name = || rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        let tcp = TcpStream::connect(&admin).await.unwrap();
        held.push(tls.connect(name(), tcp).await.unwrap());
    }
    let t = Instant::now();
    let mut fifth = TcpStream::connect(&admin).await.unwrap();
    assert_eq!(
        until_closed(&mut fifth, quick).await.as_deref(),
        Some(&b""[..]),
        "the fifth admin connection"
    );
    eprintln!("admin connection over the bound closed after {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    // A slot given back is taken by the next connection.
    drop(held.pop());
    let deadline = Instant::now() + quick;
    let served = loop {
        let tcp = TcpStream::connect(&admin).await.unwrap();
        if let Ok(mut s) = tls.connect(name(), tcp).await {
            s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let got = until_closed(&mut s, quick).await.unwrap_or_default();
            if got.starts_with(b"HTTP/1.1 200") {
                break true;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(served, "the slot given back was not reused");
    drop(held);

    // Database: three unauthenticated connections from 127.0.0.1; the fourth is
    // refused as Redis refuses clients over maxclients.
    let mut from_a = Vec::new();
    for _ in 0..3 {
        let mut c = common::Conn::connect(&db).await;
        assert_eq!(c.cmd(&["PING"]).await, b"-NOAUTH Authentication required.\r\n");
        from_a.push(c);
    }
    let mut fourth = TcpStream::connect(&db).await.unwrap();
    assert_eq!(
        until_closed(&mut fourth, quick).await.as_deref(),
        Some(&b"-ERR max number of clients reached\r\n"[..]),
        "the fourth from one address"
    );
    // One authenticates: it no longer counts, so another from the address gets in.
    assert_eq!(from_a[0].cmd(&["AUTH", PASSWORD]).await, b"+OK\r\n");
    let mut c = common::Conn::connect(&db).await;
    assert_eq!(c.cmd(&["PING"]).await, b"-NOAUTH Authentication required.\r\n");
    from_a.push(c);
    // Five unauthenticated in all: two more from 127.0.0.2, then the bound in all.
    let mut from_b = Vec::new();
    for _ in 0..2 {
        let mut c = common::Conn::connect_from("127.0.0.2:0", &db).await;
        assert_eq!(c.cmd(&["PING"]).await, b"-NOAUTH Authentication required.\r\n");
        from_b.push(c);
    }
    // The bound in all is reached: a newcomer from an address holding fewer takes
    // the place of the oldest unauthenticated connection of the address holding the
    // most (127.0.0.1, three), which is closed without a word...
    let mut sixth = common::Conn::connect_from("127.0.0.3:0", &db).await;
    assert_eq!(sixth.cmd(&["PING"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(from_a[1].read_to_close().await, b"", "127.0.0.1's oldest unauthenticated one");
    assert_eq!(from_a[2].cmd(&["PING"]).await, b"-NOAUTH Authentication required.\r\n");
    // ...and an address holding the most cannot do the same to others: 127.0.0.1
    // and 127.0.0.2 hold two each now, 127.0.0.3 one.
    let mut seventh = common::Conn::connect_from("127.0.0.2:0", &db).await;
    assert_eq!(seventh.read_to_close().await, b"-ERR max number of clients reached\r\n", "the bound in all");
    // The authenticated one works throughout, and so does the newcomer.
    assert_eq!(from_a[0].cmd(&["PING"]).await, b"+PONG\r\n");
    assert_eq!(sixth.cmd(&["AUTH", PASSWORD]).await, b"+OK\r\n");
    let (_, metrics) = p.curl("GET", "/metrics", (ADMIN, ADMIN_PW), None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("turnstile_bdb_connections_refused_unauthenticated_total{bdb=\"1\"} 2"),
        "refusals counted: {text}"
    );
}

/// CPU time (user + system) turnstile has used, from /proc.
fn cpu_time(p: &Process) -> Duration {
    let pid = p.child.id().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_new_connections_are_refused_not_left_waiting() {
    let _serial = SERIAL.lock().await;
    raise_fd_limit(4096);
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &format!("redis://{}", redis.addr())).await;
    let body = format!("{{\"password\": \"{PASSWORD}\"}}");
    assert_eq!(p.curl("PUT", "/v1/bdbs/1/passwords", (ADMIN, ADMIN_PW), Some(&body)).await.0, 200);
    let db = p.bdb(1);
    // Lower turnstile's limit under what its bounds were fitted to at start, as if
    // something else (authenticated clients, upstream connections) had used it up.
    let pid = p.child.id().unwrap().to_string();
    let st =
        std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile=200:200"]).status().unwrap();
    assert!(st.success(), "prlimit failed");

    // Fill the table with authenticated clients, then keep connecting.
    let mut held = Vec::new();
    let mut refused = 0;
    let t = Instant::now();
    while refused < 50 {
        assert!(t.elapsed() < Duration::from_secs(30), "never ran out: {} held", held.len());
        let mut s = TcpStream::connect(&db).await.unwrap();
        s.write_all(format!("AUTH {PASSWORD}\r\n").as_bytes()).await.unwrap();
        let mut got = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut got))
            .await
            .expect("a connection was left waiting instead of being refused")
            .unwrap_or(0);
        match &got[..n] {
            b"+OK\r\n" => held.push(s),
            b"-ERR max number of clients reached\r\n" | b"" => refused += 1,
            other => panic!("unexpected {:?}", String::from_utf8_lossy(other)),
        }
    }
    eprintln!("{} authenticated connections held, then {refused} refused at once", held.len());
    // Out of descriptors with a connection waiting is no reason to spin.
    let mut waiting = TcpStream::connect(&db).await.unwrap();
    let before = cpu_time(&p);
    tokio::time::sleep(Duration::from_secs(2)).await; // a measurement window, not synchronisation
    let used = cpu_time(&p) - before;
    eprintln!("CPU while out of descriptors: {} ms in 2 s", used.as_millis());
    assert!(used < Duration::from_millis(500), "the accept loop spun: {used:?} of CPU in 2 s");
    assert!(until_closed(&mut waiting, Duration::from_secs(3)).await.is_some(), "the waiting one was shed");
    // Descriptors back: the port serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if probe_db(&db).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the database port did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(probe_admin(&p.admin_url).await.is_ok(), "the admin port did not recover");
}
