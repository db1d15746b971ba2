//! The invariants the fuzz targets check, shared with `tests/fuzz_regressions.rs`
//! (which includes this file) so a crash input replays the very same checks under a
//! plain `cargo test`.
//!
//! Input layout for both targets: byte 0 = flags (bit 0: authenticated), byte 1 =
//! seed of the chunking (and of when the request path switches to streaming), the
//! rest = the byte stream. Every check panics with a message on a violation.

use turnstile::resp::reply::{FrameInfo, MAX_ERROR, ReplyScanner};
use turnstile::resp::request::{self, HEAD, MAX_BULK, Parse, ProtoError, Request, Streamer};

/// A tiny deterministic PRNG (xorshift): the chunking must be reproducible from the
/// input alone, or a crash would not replay.
struct Rng(u32);

impl Rng {
    fn new(seed: u8) -> Self {
        Self((0x9E37_79B9 ^ u32::from(seed).wrapping_mul(0x0101_0101)) | 1)
    }

    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Mostly tiny chunks (where boundary bugs live), sometimes big ones.
    fn chunk_len(&mut self) -> usize {
        match self.next() % 8 {
            0..=3 => 1 + (self.next() % 4) as usize,
            4..=6 => 1 + (self.next() % 64) as usize,
            _ => 1 + (self.next() % 4096) as usize,
        }
    }
}

fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(rng.chunk_len().min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// What framing a stream yields: each request's end offset in the stream (and its
/// arguments, when they were parsed rather than streamed), then how it stopped.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame { end: usize, args: Option<Vec<Vec<u8>>> },
    Error(ProtoError),
}

fn encode_multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Checks everything that must hold of one complete request parsed from `buf`, and
/// returns its arguments.
fn check_complete(req: &Request, buf: &[u8]) -> Vec<Vec<u8>> {
    let len = req.len();
    assert!(len >= 1 && len <= buf.len(), "consumed {len} of {} bytes", buf.len());
    let args: Vec<Vec<u8>> = req.args(buf).into_iter().map(<[u8]>::to_vec).collect();
    assert_eq!(req.argc(), args.len(), "argc disagrees with args");
    for (i, a) in args.iter().enumerate().take(HEAD) {
        assert_eq!(req.arg(buf, i), Some(a.as_slice()), "arg({i}) disagrees with args");
    }
    if args.len() < HEAD {
        assert_eq!(req.arg(buf, args.len()), None, "arg past the last argument");
    }
    match req {
        Request::Empty { .. } => assert!(args.is_empty()),
        Request::Inline { .. } => {
            // An inline request is exactly one line.
            let nl = buf.iter().position(|&b| b == b'\n').expect("inline without a newline");
            assert_eq!(len, nl + 1, "inline request is not one line");
            assert!(!args.is_empty());
        }
        Request::Multibulk { .. } => {
            assert!(!args.is_empty());
            assert_eq!(buf[0], b'*');
        }
    }
    if !args.is_empty() {
        // The canonical multibulk encoding of the arguments parses back to them.
        let enc = encode_multibulk(&args);
        match request::parse(&enc, true) {
            Parse::Complete(back) => {
                assert_eq!(back.len(), enc.len(), "re-encoded frame length");
                let again: Vec<Vec<u8>> = back.args(&enc).into_iter().map(<[u8]>::to_vec).collect();
                assert_eq!(again, args, "re-encoded arguments");
            }
            other => panic!("re-encoded request did not parse: {other:?}"),
        }
    }
    args
}

fn check_partial(p: &request::Partial, buf: &[u8]) {
    assert!(p.complete < p.argc, "partial with every argument complete");
    assert!(p.resume_at <= buf.len(), "resume_at past the buffer");
    for i in 0..HEAD {
        if let Some(r) = p.head.get(i) {
            assert!(r.start <= r.end && r.end <= p.resume_at, "head range outside the parsed part");
        }
    }
    if let Some(n) = p.next_len {
        assert!(n <= MAX_BULK as u64, "next_len over the bulk limit");
    }
}

/// Frames `chunks` the way a connection does: a growing buffer, every complete
/// request taken off its front. With `stream`, an authenticated connection hands a
/// partial multibulk to a [`Streamer`] whenever `rng` says so (the proxy does it for
/// large requests), so both paths must agree on where each frame ends.
fn frame_stream(chunks: &[&[u8]], authenticated: bool, mut stream: Option<Rng>) -> Vec<Event> {
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0; // stream offset of buf[0]
    let mut streaming: Option<Streamer> = None;
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if let Some(s) = streaming.as_mut() {
                match s.advance(&buf) {
                    Ok((n, done)) => {
                        assert!(n <= buf.len(), "streamer consumed {n} of {} bytes", buf.len());
                        buf.drain(..n);
                        base += n;
                        if !done {
                            break;
                        }
                        streaming = None;
                        out.push(Event::Frame { end: base, args: None });
                        continue;
                    }
                    Err(e) => {
                        out.push(Event::Error(e));
                        return out;
                    }
                }
            }
            match request::parse(&buf, authenticated) {
                Parse::Complete(req) => {
                    let args = check_complete(&req, &buf);
                    let n = req.len();
                    buf.drain(..n);
                    base += n;
                    out.push(Event::Frame { end: base, args: Some(args) });
                }
                Parse::Incomplete(partial) => {
                    if let Some(p) = &partial {
                        check_partial(p, &buf);
                        assert_eq!(buf[0], b'*');
                    }
                    let go = authenticated && stream.as_mut().is_some_and(|r| r.next() % 3 == 0);
                    match partial {
                        Some(p) if go => {
                            buf.drain(..p.resume_at);
                            base += p.resume_at;
                            streaming = Some(Streamer::new(p.argc - p.complete));
                        }
                        _ => break,
                    }
                }
                Parse::Error(e) => {
                    // Every error has Redis's exact reply text.
                    let reply = e.reply();
                    assert!(reply.starts_with(b"-ERR Protocol error: ") && reply.ends_with(b"\r\n"));
                    out.push(Event::Error(e));
                    return out;
                }
            }
        }
    }
    out
}

fn without_args(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .map(|e| match e {
            Event::Frame { end, .. } => Event::Frame { end: *end, args: None },
            Event::Error(e) => Event::Error(*e),
        })
        .collect()
}

/// Fuzz target `request`: client request framing (multibulk and inline). Returns how
/// many requests the stream holds.
pub fn check_request(data: &[u8]) -> usize {
    let [flags, seed, stream @ ..] = data else { return 0 };
    let authenticated = flags & 1 == 1;
    let whole = frame_stream(&[stream], authenticated, None);
    let cut = chunks(stream, *seed);
    // Chunking never changes what is parsed.
    assert_eq!(frame_stream(&cut, authenticated, None), whole, "whole vs chunked");
    // Nor does streaming part of a frame instead of parsing it.
    let streamed = frame_stream(&cut, authenticated, Some(Rng::new(seed.wrapping_add(1))));
    assert_eq!(without_args(&streamed), without_args(&whole), "parsed vs streamed");
    whole.iter().filter(|e| matches!(e, Event::Frame { .. })).count()
}

/// Scans `chunks` with one scanner; returns every frame's end offset and info, and
/// whether the stream was rejected.
fn scan_stream(chunks: &[&[u8]]) -> (Vec<(usize, FrameInfo)>, bool) {
    let mut s = ReplyScanner::new();
    let mut frames = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let mut pos = 0;
        while pos < chunk.len() {
            match s.scan(&chunk[pos..]) {
                Ok((n, info)) => {
                    // Progress on every call, or the relay would spin forever.
                    assert!(n > 0, "scan consumed nothing of a non-empty buffer");
                    assert!(pos + n <= chunk.len(), "scan consumed past the buffer");
                    pos += n;
                    if let Some(info) = info {
                        assert!(s.at_boundary(), "frame ended but the scanner is mid-frame");
                        frames.push((offset + pos, info));
                    } else {
                        assert_eq!(pos, chunk.len(), "scan stopped early without a frame");
                    }
                }
                Err(_) => return (frames, true),
            }
        }
        offset += chunk.len();
    }
    (frames, false)
}

/// Scans `chunks` with `scan_errors` as the lane and the relay do: what a short
/// stop leaves is kept and scanned again with the next chunk. Returns the frames,
/// each error element's stream range, and whether the stream was rejected.
type Errors = (Vec<(usize, FrameInfo)>, Vec<(usize, usize)>, bool);

fn scan_errors_stream(chunks: &[&[u8]]) -> Errors {
    let mut s = ReplyScanner::new();
    let (mut frames, mut errors) = (Vec::new(), Vec::new());
    let (mut buf, mut base) = (Vec::new(), 0);
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        while pos < buf.len() {
            let at = pos;
            let Ok(step) = s.scan_errors(&buf[pos..]) else { return (frames, errors, true) };
            assert!(pos + step.used <= buf.len(), "scan consumed past the buffer");
            pos += step.used;
            if step.short {
                assert!(buf.len() - pos <= MAX_ERROR, "held back more than an error line");
                assert!(!step.frame && step.error.is_none());
                assert_eq!(buf[pos], b'-', "held back something other than an error line");
                break;
            }
            // Progress on every call, or the relay would spin forever.
            assert!(step.used > 0, "scan consumed nothing of a non-empty buffer");
            if let Some(e) = step.error {
                let line = &buf[at + e..pos];
                assert!(line.starts_with(b"-") && line.ends_with(b"\n"), "not an error line: {line:?}");
                assert!(!line[..line.len() - 1].contains(&b'\n'), "more than one line");
                errors.push((base + at + e, base + pos));
            }
            if step.frame {
                assert!(s.at_boundary(), "frame ended but the scanner is mid-frame");
                frames.push((base + pos, *s.last()));
            } else if step.error.is_none() {
                assert_eq!(pos, buf.len(), "scan stopped early for nothing");
            }
        }
        buf.drain(..pos);
        base += pos;
    }
    (frames, errors, false)
}

/// Fuzz target `reply`: the upstream reply scanner. Returns how many replies the
/// stream holds.
pub fn check_reply(data: &[u8]) -> usize {
    let [_flags, seed, stream @ ..] = data else { return 0 };
    let whole = scan_stream(&[stream]);
    assert_eq!(scan_stream(&chunks(stream, *seed)), whole, "whole vs chunked");
    // The error-stopping walk finds the same frames, and every error element of an
    // ACL error's size however the stream is cut (a longer one may pass unreported).
    let (frames, errors, rejected) = scan_errors_stream(&[stream]);
    assert_eq!((&frames, rejected), (&whole.0, whole.1), "scan_errors vs scan");
    let (c_frames, c_errors, c_rejected) = scan_errors_stream(&chunks(stream, *seed));
    assert_eq!((&c_frames, c_rejected), (&frames, rejected), "scan_errors whole vs chunked");
    assert!(c_errors.iter().all(|e| errors.contains(e)), "an error reported only when chunked");
    for e in errors.iter().filter(|(a, b)| b - a <= MAX_ERROR) {
        assert!(c_errors.contains(e), "error {e:?} missed when chunked");
    }
    // Frames are contiguous and each is at least 3 bytes (`_\r\n`)... except that the
    // scanner only needs the `\n`, so at least 2.
    let mut prev = 0;
    for (end, _) in &whole.0 {
        assert!(*end >= prev + 2, "frame of fewer than 2 bytes");
        prev = *end;
    }
    whole.0.len()
}
