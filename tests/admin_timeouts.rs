//! The admin API's time limits, one connection at a time, over TLS: a TLS handshake
//! that never finishes, a connection that never sends its first request (HTTP/1.1
//! and HTTP/2), an HTTP/1.1 keep-alive connection after its request, and an HTTP/2
//! connection idle after its request are each closed within their limit, and not
//! long before it.

mod common;

use std::time::{Duration, Instant};

use common::Redis;
use common::admin::Process;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(4);
const HANDSHAKE: Duration = Duration::from_secs(2);
const BODY: Duration = Duration::from_secs(3);
/// The watchdog's close grace (1 s) and scheduling.
const SLACK: Duration = Duration::from_millis(2500);

/// Reads (and ignores) until the server closes; how long that took from `since`.
async fn closed_after<S: AsyncRead + Unpin>(s: &mut S, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server never closed the connection");
    since.elapsed()
}

#[track_caller]
fn within(what: &str, took: Duration, limit: Duration) {
    eprintln!("{what}: after {:.2} s (limit {:.0} s)", took.as_secs_f64(), limit.as_secs_f64());
    assert!(took + Duration::from_millis(500) >= limit, "{what}: closed early, after {took:?}");
    assert!(took <= limit + SLACK, "{what}: closed late, after {took:?}");
}

fn connector(p: &Process, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    turnstile::admin::tls::install_crypto_provider();
    let cert = p.dir.join("data").join("tls").join("cert.pem");
    let mut config = (*turnstile::tls::client_config(&cert, None).unwrap()).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// One HTTP/2 frame header: length, type, flags, stream.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The client preface, empty SETTINGS, and `GET /live` as one HEADERS frame (HPACK:
/// static-table `:method GET`, `:scheme https`, literal `:path` and `:authority`).
fn h2_get_live() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    let mut block = vec![0x82, 0x87, 0x44, 5];
    block.extend_from_slice(b"/live");
    block.extend_from_slice(&[0x41, 1, b'x']);
    out.extend(frame(0x1, 0x5, 1, &block)); // END_STREAM | END_HEADERS
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_admin_time_limit_closes_its_connection() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start_configured(
        dir.path(),
        &format!("redis://{}", redis.addr()),
        &format!(
            "header_timeout_secs = {}\nidle_timeout_secs = {}\ntls_handshake_timeout_secs = {}\nbody_timeout_secs = {}",
            HEADER.as_secs(),
            IDLE.as_secs(),
            HANDSHAKE.as_secs(),
            BODY.as_secs()
        ),
        "",
        "",
        "",
    )
    .await;
    let addr = p.admin_url.trim_start_matches("https://").to_string();
    let name = || rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();

    // TCP only, no ClientHello.
    let t = Instant::now();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    within("TLS handshake never started", closed_after(&mut tcp, t).await, HANDSHAKE);

    // TLS done, nothing sent: HTTP/1.1 and HTTP/2.
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let t = Instant::now();
        let mut s =
            connector(&p, alpn).connect(name(), TcpStream::connect(&addr).await.unwrap()).await.unwrap();
        let what = format!("no request ({})", String::from_utf8_lossy(alpn));
        within(&what, closed_after(&mut s, t).await, HEADER);
    }

    // HTTP/1.1: one request answered, then the connection waits for the next.
    let mut s =
        connector(&p, b"http/1.1").connect(name(), TcpStream::connect(&addr).await.unwrap()).await.unwrap();
    s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    let t = Instant::now();
    within("HTTP/1.1 keep-alive after a request", closed_after(&mut s, t).await, HEADER);

    // HTTP/2: one request answered (a HEADERS frame with :status 200 comes back),
    // then idle.
    let mut s = connector(&p, b"h2").connect(name(), TcpStream::connect(&addr).await.unwrap()).await.unwrap();
    s.write_all(&h2_get_live()).await.unwrap();
    let mut frames = H2Frames::default();
    let answered = loop {
        match frames.next(&mut s).await {
            None => break false,
            Some((0x3, _, 1, _)) => panic!("the request was reset"),
            Some((kind, flags, 1, _)) if kind <= 0x1 && flags & 0x1 != 0 => break true,
            Some(_) => {}
        }
    };
    assert!(answered, "no answer on stream 1");
    // Idle from here; pings are answered, as a live client would, so what closes
    // the connection is the idle limit and not hyper's dead-peer detection.
    let t = Instant::now();
    while let Some((kind, flags, _, payload)) = frames.next(&mut s).await {
        if kind == 0x6 && flags & 0x1 == 0 {
            s.write_all(&frame(0x6, 0x1, 0, &payload)).await.unwrap();
        }
    }
    within("HTTP/2 idle after a request", t.elapsed(), IDLE);

    // A body that stops half-way: 408 with the API's JSON error at the body limit.
    use base64ct::{Base64, Encoding};
    let basic =
        Base64::encode_string(format!("{}:{}", common::admin::ADMIN, common::admin::ADMIN_PW).as_bytes());
    let mut s =
        connector(&p, b"http/1.1").connect(name(), TcpStream::connect(&addr).await.unwrap()).await.unwrap();
    let head = format!(
        "POST /v1/bdbs/1/passwords HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"passw"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error_code\":\"request_timeout\""), "{text}");
    within("a body that stopped half-way (408)", t.elapsed(), BODY);
}

/// HTTP/2 frames read off a stream: (type, flags, stream, payload).
#[derive(Default)]
struct H2Frames {
    buf: Vec<u8>,
}

impl H2Frames {
    /// The next whole frame, or None once the server has closed (30 s at most).
    async fn next<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let b = &self.buf;
                let len = ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize;
                if b.len() >= 9 + len {
                    let head = (b[3], b[4], u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff);
                    let payload = b[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    return Some((head.0, head.1, head.2, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk));
            match read.await.expect("the server never closed the connection") {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
