//! Differential framing against a real `redis-server`: the same bytes are framed by
//! turnstile's `resp::request::parse` and written to Redis, and what Redis did with
//! them (its replies, whether it closed, what it left unparsed in its query buffer)
//! must be what turnstile's framing predicts. Shared by `tests/framing.rs` (stable,
//! CI) and the `framing` cargo-fuzz target (nightly), which include this file.
//!
//! Why this shape: the hazard is a request turnstile frames one way and Redis another
//! (a NUL that hides a line's end from Redis's `strchr`, say). On a shared upstream
//! connection the difference wedges or desynchronises everyone, so every boundary and
//! every argument turnstile sees must be what Redis sees. Redis shows its framing
//! through three things that need no cooperation from the input:
//! - each complete request gets exactly one reply, and for an unknown command the
//!   reply spells out its name and first arguments (`unknown command 'x', with args
//!   beginning with: 'a' 'b' `), which turnstile can predict byte for byte from its
//!   own parse;
//! - a protocol error is its `-ERR Protocol error: …` and a close;
//! - an incomplete request stays in the query buffer, whose length `CLIENT LIST`
//!   reports as `qbuf=` (minus what Redis already moved into `argv`).
//!
//! Synchronisation without sleeping: the input is written to connection A, then a
//! `PING` and a `CLIENT LIST ID <A>` go on connection B, one after the other. Redis
//! handles A's bytes (written first, under 16 KiB: one read) no later than the event
//! loop pass that answers the `PING`, and writes A's replies before the next pass, so
//! once `CLIENT LIST` has answered, A's replies are in A's socket and the query
//! buffer is as A's input left it.

#![allow(dead_code)] // each includer uses part of it

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use turnstile::resp::command::is_cross_protocol;
use turnstile::resp::request::{self, Parse, Request};

/// Inputs longer than this are cut: Redis must take all of one in a single read
/// (`PROTO_IOBUF_LEN`, 16 KiB) for the synchronisation above to hold.
pub const MAX_INPUT: usize = 15 * 1024;

/// What turnstile's framing makes of an input.
#[derive(Debug, PartialEq, Eq)]
pub struct Framed {
    /// Arguments of each complete request with at least one argument, in order.
    pub requests: Vec<Vec<Vec<u8>>>,
    pub end: End,
}

#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Redis answers this and closes.
    Error(bytes::Bytes),
    /// A `POST` / `Host:` request: Redis closes at once, writing nothing at all.
    CrossProtocol,
    /// Waiting for more: this many bytes stay in Redis's query buffer.
    Waiting { qbuf: usize },
}

/// Frames `input` as turnstile does for an authenticated client.
pub fn frame(input: &[u8]) -> Framed {
    let mut requests = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        match request::parse(rest, true) {
            Parse::Complete(req) => {
                pos += req.len();
                if let Request::Empty { .. } = req {
                    continue;
                }
                let args: Vec<Vec<u8>> = req.args(rest).into_iter().map(<[u8]>::to_vec).collect();
                if is_cross_protocol(&args[0]) {
                    return Framed { requests, end: End::CrossProtocol };
                }
                requests.push(args);
            }
            Parse::Error(e) => return Framed { requests, end: End::Error(e.reply()) },
            Parse::Incomplete(None) => return Framed { requests, end: End::Waiting { qbuf: rest.len() } },
            Parse::Incomplete(Some(p)) => {
                // Redis has moved the complete arguments (and the header of the one
                // arriving) out of its query buffer.
                let mut consumed = p.resume_at;
                if p.next_len.is_some() {
                    let cr = rest[consumed..].iter().position(|&b| b == b'\r').expect("a parsed header");
                    consumed += cr + 2;
                }
                return Framed { requests, end: End::Waiting { qbuf: rest.len() - consumed } };
            }
        }
    }
}

/// C's `%.*s`: at most `max` bytes, and none from the first NUL on.
fn c_str(s: &[u8], max: usize) -> &[u8] {
    let s = &s[..s.len().min(max)];
    s.iter().position(|&b| b == 0).map_or(s, |i| &s[..i])
}

/// Redis 7.0's reply to an unknown command (`commandCheckExistence`).
pub fn unknown_command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut rest = Vec::new();
    for a in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        rest.push(b'\'');
        let room = 128 - rest.len() + 1;
        rest.extend_from_slice(c_str(a, room));
        rest.extend_from_slice(b"' ");
    }
    let mut msg = b"unknown command '".to_vec();
    msg.extend_from_slice(c_str(&args[0], 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    msg.extend_from_slice(&rest);
    for b in &mut msg {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    [&b"-ERR "[..], &msg, b"\r\n"].concat()
}

/// What the oracle concluded about one input.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redis framed it exactly as turnstile did.
    Agrees,
    /// It names a real command, whose reply cannot be predicted: not compared.
    Skipped,
}

/// A real Redis, asked how it frames inputs.
pub struct Oracle {
    addr: String,
    b: TcpStream,
    /// Lower-cased names of Redis's commands.
    known: HashSet<Vec<u8>>,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to redis at {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply from `s` (enough RESP2 for what the oracle asks).
fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    loop {
        if let Some(n) = reply_len(&buf) {
            assert_eq!(n, buf.len(), "more than one reply");
            return buf;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = s.read(&mut chunk).expect("a reply from redis");
        assert!(n > 0, "redis closed the oracle's connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let i = buf[from..].windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[from + 1..from + i], from + i + 2))
}

/// Length of the first complete RESP2 reply in `buf`.
fn reply_len(buf: &[u8]) -> Option<usize> {
    fn at(buf: &[u8], pos: usize) -> Option<usize> {
        let (head, next) = line(buf, pos)?;
        let n: i64 = || -> Option<i64> { std::str::from_utf8(head).ok()?.parse().ok() }().unwrap_or(0);
        match buf[pos] {
            b'$' if n >= 0 => (buf.len() >= next + n as usize + 2).then_some(next + n as usize + 2),
            b'*' => {
                let mut p = next;
                for _ in 0..n.max(0) {
                    p = at(buf, p)?;
                }
                Some(p)
            }
            _ => Some(next),
        }
    }
    if buf.is_empty() { None } else { at(buf, 0) }
}

impl Oracle {
    /// Connects to the Redis at `addr` (it must not require a password).
    pub fn new(addr: &str) -> Self {
        let mut b = connect(addr);
        b.write_all(&command(&[b"COMMAND", b"LIST"])).unwrap();
        let list = read_reply(&mut b);
        let mut known = HashSet::new();
        let mut pos = line(&list, 0).expect("COMMAND LIST").1;
        while pos < list.len() {
            let (head, next) = line(&list, pos).expect("a bulk header");
            let n: usize = std::str::from_utf8(head).unwrap().parse().unwrap();
            known.insert(list[next..next + n].to_ascii_lowercase());
            pos = next + n + 2;
        }
        assert!(known.contains(&b"get"[..]) && known.len() > 100, "COMMAND LIST: {} names", known.len());
        Self { addr: addr.to_string(), b, known }
    }

    fn ask(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.b.write_all(&command(args)).unwrap();
        read_reply(&mut self.b)
    }

    /// Sends `input` to Redis and panics, showing both sides, if Redis did not frame
    /// it as turnstile does.
    pub fn check(&mut self, input: &[u8]) -> Verdict {
        let input = &input[..input.len().min(MAX_INPUT)];
        self.check_framed(input, frame(input))
    }

    /// [`Self::check`] against a given framing (to show the oracle catches a wrong one).
    pub fn check_framed(&mut self, input: &[u8], framed: Framed) -> Verdict {
        // Names are looked up as binary strings, case-insensitively.
        if framed.requests.iter().any(|r| self.known.contains(&r[0].to_ascii_lowercase())) {
            return Verdict::Skipped;
        }
        let mut want: Vec<u8> = match framed.end {
            End::CrossProtocol => Vec::new(),
            _ => framed.requests.iter().flat_map(|r| unknown_command(r)).collect(),
        };
        if let End::Error(e) = &framed.end {
            want.extend_from_slice(e);
        }

        let mut a = connect(&self.addr);
        a.write_all(&command(&[b"CLIENT", b"ID"])).unwrap();
        let id = read_reply(&mut a);
        let id = std::str::from_utf8(&id[1..id.len() - 2]).unwrap().to_string();
        a.write_all(input).unwrap();
        assert_eq!(self.ask(&[b"PING"]), b"+PONG\r\n");
        let info = self.ask(&[b"CLIENT", b"LIST", b"ID", id.as_bytes()]);
        let info = String::from_utf8_lossy(&info).into_owned();

        let mut got = Vec::new();
        let closed = match framed.end {
            // Redis may close a moment after its last write: read to the close.
            End::Error(_) | End::CrossProtocol => {
                read_to_close(&mut a, &mut got);
                true
            }
            End::Waiting { .. } => read_available(&mut a, &mut got),
        };
        let shown = |b: &[u8]| String::from_utf8_lossy(b).escape_debug().to_string();
        let disagree = |what: &str| -> ! {
            panic!(
                "Redis frames this input differently from turnstile ({what})\n  input:     {}\n  turnstile: {:?}\n  want:      {}\n  redis:     {}\n  client:    {}",
                shown(input),
                framed,
                shown(&want),
                shown(&got),
                info.trim()
            )
        };
        if got != want {
            disagree("replies");
        }
        if let End::Waiting { qbuf } = framed.end {
            if closed {
                disagree("Redis closed the connection");
            }
            let field = info.split(' ').find_map(|f| f.strip_prefix("qbuf=")).unwrap_or("none");
            if field != qbuf.to_string() {
                disagree(&format!("query buffer: turnstile leaves {qbuf} bytes unparsed"));
            }
        }
        Verdict::Agrees
    }
}

/// Reads whatever has arrived; true if the peer closed.
fn read_available(s: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut chunk = [0u8; 64 * 1024];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

fn read_to_close(s: &mut TcpStream, out: &mut Vec<u8>) {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("Redis did not close the connection within {IO_TIMEOUT:?}")
            }
            Err(_) => return,
        }
    }
}

/// A tiny deterministic PRNG (xorshift64), so a failing input can be regenerated.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that random inputs are made of: the bytes framing turns on (line ends,
/// NUL, quotes, escapes, length headers, spaces) and words no Redis command has.
const PIECES: &[&[u8]] = &[
    b"*1\r\n", b"*2\r\n", b"*3\r\n", b"*0\r\n", b"*-1\r\n", b"$0\r\n", b"$1\r\n", b"$2\r\n", b"$3\r\n",
    b"$-1\r\n", b"\r\n", b"\n", b"\r", b"\0", b" ", b"\t", b"\x0b", b"\"", b"'", b"\\", b"\\x", b"\\x4",
    b"af", b"\\n", b"*", b"$", b"-", b"+", b":", b"0", b"1", b"9", b"01", b" 1", b"xq", b"zz", b"qux",
    b"\xff", b"\x80", b"post", b"host:", b"Host: x", b"ab\0c",
];

/// A random input of up to `max` bytes, mostly built from [`PIECES`].
pub fn random_input(rng: &mut Rng, max: usize) -> Vec<u8> {
    let target = 1 + rng.below(max);
    let mut out = Vec::with_capacity(target + 16);
    while out.len() < target {
        if rng.below(8) == 0 {
            out.push(rng.next() as u8);
        } else {
            out.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
    }
    out
}
