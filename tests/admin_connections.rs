//! The admin API's bound per source address, against the real binary: one address
//! (127.0.0.2) holding idle connections gets its share and no more — the rest are
//! closed at once and counted — while requests from another address (127.0.0.1)
//! are all answered; its share comes back when it closes its connections; and the
//! bound in all still refuses, with its own reason.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::Redis;
use common::admin::{ADMIN, ADMIN_PW, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const PER_ADDRESS: usize = 8;
const TOTAL: usize = 16;
/// Connections the flooding address opens beyond its share.
const EXTRA: usize = 40;
/// A refused connection is closed at once; this only bounds a slow machine.
const QUICK: Duration = Duration::from_secs(5);

/// A TCP connection to `addr` from `local` (127.0.0.0/8 offers many addresses).
async fn connect_from(local: &str, addr: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Whether the server closed `s` (EOF, or a reset) within [`QUICK`].
async fn closed_quickly(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(QUICK, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

/// Whether the server still holds `s` open: a non-blocking read finds nothing to
/// read and no EOF (a real `read(2)`, not a readiness flag that may lag).
fn still_open(s: &std::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!((&*s).read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn connector(p: &Process) -> TlsConnector {
    turnstile::admin::tls::install_crypto_provider();
    let cert = p.dir.join("data").join("tls").join("cert.pem");
    TlsConnector::from(turnstile::tls::client_config(&cert, None).unwrap())
}

/// A TLS connection from `local`, retried until the server admits one (a closed
/// connection's share is given back as soon as the server sees it close, which
/// the client cannot observe; hence polling). Panics after [`QUICK`].
async fn admitted_from(local: &str, addr: &str, tls: &TlsConnector) -> TlsStream<TcpStream> {
    let deadline = Instant::now() + QUICK;
    loop {
        let tcp = connect_from(local, addr).await;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        if let Ok(Ok(s)) = tokio::time::timeout(QUICK, tls.connect(name, tcp)).await {
            return s;
        }
        assert!(Instant::now() < deadline, "no connection from {local} was admitted");
        tokio::time::sleep(Duration::from_millis(20)).await; // retry pacing
    }
}

/// `turnstile_admin_connections_refused_total` for `reason`, from a scrape.
fn refused(metrics: &str, reason: &str) -> u64 {
    let series = format!("turnstile_admin_connections_refused_total{{reason=\"{reason}\"}} ");
    let line = metrics.lines().find_map(|l| l.strip_prefix(&series));
    line.unwrap_or_else(|| panic!("no {series}in the scrape")).trim().parse().unwrap()
}

async fn scrape(p: &Process) -> String {
    let (status, v) = p.curl("GET", "/metrics", (ADMIN, ADMIN_PW), None).await;
    assert_eq!(status, 200, "{v}");
    v.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_and_others_are_still_served() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Long timeouts: what frees the flood's slots here must be the bound, not them.
    let p = Process::start_configured(
        dir.path(),
        &format!("redis://{}", redis.addr()),
        &format!(
            "max_connections = {TOTAL}\nmax_connections_per_address = {PER_ADDRESS}\n\
             tls_handshake_timeout_secs = 300\nheader_timeout_secs = 300"
        ),
        "",
        "",
        "",
    )
    .await;
    let addr = p.admin_url.trim_start_matches("https://").to_string();

    // 127.0.0.2 holds its share, idle, before any handshake. The server accepts in
    // the order the connections were made, so these are the ones it admits.
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(connect_from("127.0.0.2", &addr).await.into_std().unwrap());
    }
    // Every one beyond it is closed at once.
    let mut extra = Vec::new();
    for _ in 0..EXTRA {
        extra.push(connect_from("127.0.0.2", &addr).await);
    }
    let t = Instant::now();
    for (i, s) in extra.iter_mut().enumerate() {
        assert!(closed_quickly(s).await, "connection {i} beyond the share was not closed");
    }
    eprintln!("{EXTRA} connections beyond the share closed within {:.0} ms", t.elapsed().as_secs_f64() * 1e3);

    // Another address is served throughout.
    for i in 0..20 {
        let (status, v) = p.curl("GET", "/v1/bdbs", (ADMIN, ADMIN_PW), None).await;
        assert_eq!(status, 200, "request {i} from 127.0.0.1: {v}");
    }
    for (i, s) in held.iter().enumerate() {
        assert!(still_open(s), "held connection {i} was closed");
    }
    let m = scrape(&p).await;
    assert_eq!((refused(&m, "per_address"), refused(&m, "total")), (EXTRA as u64, 0), "counted, by reason");

    // Closed, its share comes back: all of it, and no more.
    drop(held);
    let tls = connector(&p);
    let mut again = Vec::new();
    for _ in 0..PER_ADDRESS {
        again.push(admitted_from("127.0.0.2", &addr, &tls).await);
    }
    let mut over = connect_from("127.0.0.2", &addr).await;
    assert!(closed_quickly(&mut over).await, "the share was exceeded after coming back");
    // Those are served (kept alive: they go on holding the share).
    let s = &mut again[0];
    s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(QUICK, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));

    // The bound in all: 127.0.0.3 takes the other half, then 127.0.0.4 is refused.
    let mut third = Vec::new();
    for _ in 0..TOTAL - PER_ADDRESS {
        third.push(admitted_from("127.0.0.3", &addr, &tls).await);
    }
    let mut fourth = connect_from("127.0.0.4", &addr).await;
    assert!(closed_quickly(&mut fourth).await, "a connection over the bound in all was not closed");
    drop(third);
    let deadline = Instant::now() + QUICK;
    let m = loop {
        // A slot for the scrape comes back once the server has seen 127.0.0.3 close.
        let (status, v) = p.curl("GET", "/metrics", (ADMIN, ADMIN_PW), None).await;
        if status == 200 {
            break v.as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no slot came back for the scrape");
        tokio::time::sleep(Duration::from_millis(20)).await; // retry pacing
    };
    assert!(refused(&m, "total") >= 1, "refusals in all are counted apart");
    assert!(refused(&m, "per_address") > EXTRA as u64);
}
