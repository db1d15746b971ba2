//! Framing of client requests (multibulk and inline), with Redis 7's limits and errors.
//!
//! Pure functions over a byte buffer, no I/O. The rules are those of Redis's
//! `processMultibulkBuffer` / `processInlineBuffer`, including their quirks, so that a
//! client sees the same protocol errors from turnstile as from Redis.
//!
//! One quirk matters beyond error messages: Redis looks for the end of a line (an
//! inline request, a `*N` or `$N` header) with `strchr`, which stops at a NUL byte.
//! A NUL before the line's end therefore hides it: Redis waits for more input
//! (until the buffer passes 64 KiB, then "too big …"), and so must turnstile. If
//! turnstile ended the line at the NUL instead, it would pass on bytes Redis never
//! executes, and on a shared upstream connection every other client would wait
//! behind them. Multibulk requests go upstream as the client sent them, so their
//! framing here must be Redis's byte for byte (checked against a real Redis by
//! `tests/framing.rs` and the `framing` fuzz target); inline requests are re-encoded
//! as multibulk before they go upstream (see `Request::encoded`).

use std::ops::Range;

use bytes::Bytes;

use super::inline::split_args;
use super::number::parse_ll;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline line, and the longest length
/// header we wait for before calling it a protocol error.
pub const INLINE_MAX: usize = 64 * 1024;
/// Before authentication Redis 7 refuses multibulks of more than 10 elements...
pub const UNAUTH_MAX_MULTIBULK: i64 = 10;
/// ...and bulks longer than 16 KiB.
pub const UNAUTH_MAX_BULK: i64 = 16 * 1024;
/// Redis's default `proto-max-bulk-len` (512 MB).
pub const MAX_BULK: i64 = 512 * 1024 * 1024;
/// Redis rejects multibulk counts above `INT_MAX`.
const MAX_MULTIBULK: i64 = i32::MAX as i64;

/// A protocol error: Redis answers it with `-ERR Protocol error: …` and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    InvalidMultibulkLength,
    UnauthMultibulkLength,
    InvalidBulkLength,
    UnauthBulkLength,
    ExpectedDollar(u8),
    TooBigMultibulkCount,
    TooBigBulkCount,
    TooBigInline,
    UnbalancedQuotes,
}

impl ProtoError {
    /// The exact reply Redis sends before closing the connection.
    pub fn reply(self) -> Bytes {
        let text: &'static [u8] = match self {
            Self::InvalidMultibulkLength => b"-ERR Protocol error: invalid multibulk length\r\n",
            Self::UnauthMultibulkLength => b"-ERR Protocol error: unauthenticated multibulk length\r\n",
            Self::InvalidBulkLength => b"-ERR Protocol error: invalid bulk length\r\n",
            Self::UnauthBulkLength => b"-ERR Protocol error: unauthenticated bulk length\r\n",
            Self::TooBigMultibulkCount => b"-ERR Protocol error: too big mbulk count string\r\n",
            Self::TooBigBulkCount => b"-ERR Protocol error: too big bulk count string\r\n",
            Self::TooBigInline => b"-ERR Protocol error: too big inline request\r\n",
            Self::UnbalancedQuotes => b"-ERR Protocol error: unbalanced quotes in request\r\n",
            Self::ExpectedDollar(c) => {
                let mut v = b"-ERR Protocol error: expected '$', got '".to_vec();
                // addReplyErrorFormat turns line ends into spaces, so that the
                // reply stays one line.
                v.push(if c == b'\r' || c == b'\n' { b' ' } else { c });
                v.extend_from_slice(b"'\r\n");
                return Bytes::from(v);
            }
        };
        Bytes::from_static(text)
    }
}

/// How many leading arguments a parse keeps at hand: enough to classify any request
/// (`CLIENT REPLY OFF` needs three) without allocating for each one.
pub const HEAD: usize = 3;

/// The positions of a request's first [`HEAD`] arguments, inline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    ranges: [Range<usize>; HEAD],
    kept: usize,
}

impl Head {
    fn push(&mut self, r: Range<usize>) {
        if self.kept < HEAD {
            self.ranges[self.kept] = r;
            self.kept += 1;
        }
    }

    /// Argument `i` (< [`HEAD`]), if it is complete.
    pub fn get(&self, i: usize) -> Option<&Range<usize>> {
        self.ranges[..self.kept].get(i)
    }
}

/// One complete request at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `len` bytes that hold no command: `*0`, `*-1`, a blank inline line. Redis
    /// consumes them silently.
    Empty { len: usize },
    /// A multibulk frame of `len` bytes with `argc` arguments; `head` locates the
    /// first ones in the parsed buffer.
    Multibulk { len: usize, argc: usize, head: Head },
    /// An inline command line of `len` bytes (line ending included).
    Inline { len: usize, args: Vec<Vec<u8>> },
}

impl Request {
    /// Bytes of the buffer this request occupies.
    pub fn len(&self) -> usize {
        match self {
            Self::Empty { len } | Self::Multibulk { len, .. } | Self::Inline { len, .. } => *len,
        }
    }

    /// Always false: a request occupies at least one byte. (Clippy wants the pair.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of arguments.
    pub fn argc(&self) -> usize {
        match self {
            Self::Empty { .. } => 0,
            Self::Multibulk { argc, .. } => *argc,
            Self::Inline { args, .. } => args.len(),
        }
    }

    /// Argument `i` for `i <` [`HEAD`], borrowed from `buf` (the buffer the request
    /// was parsed from). Costs no allocation: this is what the hot path uses.
    pub fn arg<'a>(&'a self, buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
        match self {
            Self::Empty { .. } => None,
            Self::Multibulk { head, .. } => head.get(i).map(|r| &buf[r.clone()]),
            Self::Inline { args, .. } => args.get(i).map(Vec::as_slice),
        }
    }

    /// An inline request as the multibulk frame that goes upstream in its place:
    /// Redis then executes exactly the arguments turnstile split and classified,
    /// whatever the line held (quotes, escapes, a bare `\r`, a line near 64 KiB,
    /// which Redis accepts or refuses depending on how its reads fall). Inline
    /// requests are rare (clients and benchmarks send multibulk), so the allocation
    /// is off the hot path. `None` for other requests: they go as they came.
    pub fn encoded(&self) -> Option<Bytes> {
        match self {
            Self::Inline { args, .. } => {
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                Some(super::encode::command(&args))
            }
            _ => None,
        }
    }

    /// Every argument, borrowed from `buf`. Walks the frame again: for the requests
    /// turnstile answers itself, not for the ones it forwards.
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Vec<&'a [u8]> {
        match self {
            Self::Empty { .. } => Vec::new(),
            Self::Multibulk { len, .. } => bulk_ranges(&buf[..*len]).into_iter().map(|r| &buf[r]).collect(),
            Self::Inline { args, .. } => args.iter().map(Vec::as_slice).collect(),
        }
    }
}

/// The payload ranges of a complete, already validated multibulk frame.
fn bulk_ranges(frame: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let Some(mut pos) = header_end(frame, 1).map(|cr| cr + 2) else { return out };
    while let Some(cr) = header_end(frame, pos) {
        let Some(len) = parse_ll(&frame[pos + 1..cr]) else { break };
        let start = cr + 2;
        let end = start + len.max(0) as usize;
        if end > frame.len() {
            break;
        }
        out.push(start..end);
        pos = end + 2;
    }
    out
}

/// What is known about a multibulk frame that has not fully arrived yet, so the
/// caller can decide to stream it instead of buffering it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// Declared number of arguments.
    pub argc: u64,
    /// How many arguments are complete in the buffer...
    pub complete: u64,
    /// ...and where the first of them are.
    pub head: Head,
    /// Offset just past the last complete argument (or past the `*N` header).
    pub resume_at: usize,
    /// Declared length of the next, incomplete argument, when its header arrived.
    pub next_len: Option<u64>,
}

/// The outcome of looking at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    Complete(Request),
    /// More bytes are needed. `Some` for a multibulk whose header has arrived.
    Incomplete(Option<Partial>),
    Error(ProtoError),
}

/// Finds the `\r` that ends a header line starting at `from`, as Redis does: the
/// byte after it is skipped without being checked, but it must have arrived.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let cr = from + strchr(b'\r', &buf[from..])?;
    (cr + 1 < buf.len()).then_some(cr)
}

/// C's `strchr` on a NUL-terminated buffer (Redis's query buffer is an sds string,
/// always followed by a NUL): the first `needle`, unless a NUL comes first.
fn strchr(needle: u8, hay: &[u8]) -> Option<usize> {
    let i = hay.iter().position(|&b| b == needle || b == 0)?;
    (hay[i] == needle).then_some(i)
}

/// Parses the request at the start of `buf`. `authenticated` selects Redis's limits
/// for unauthenticated clients.
pub fn parse(buf: &[u8], authenticated: bool) -> Parse {
    match buf.first() {
        None => Parse::Incomplete(None),
        Some(b'*') => match authenticated.then(|| whole_multibulk(buf)).flatten() {
            Some(req) => Parse::Complete(req),
            None => parse_multibulk(buf, authenticated),
        },
        Some(_) => parse_inline(buf),
    }
}

/// The common case, in one pass: a whole multibulk frame from an authenticated
/// client whose headers are plain numbers (`*3`, `$16`: no sign, no leading zero, at
/// most 18 digits, then `\r`). Anything else (a partial frame, an odd header, an
/// error) is `None`, and [`parse_multibulk`] decides it from the start.
///
/// Its answers are [`parse_multibulk`]'s: digits hold no `\r` and no NUL, so the
/// `\r` after them is the one `strchr` finds, and such a number is what `parse_ll`
/// reads (`the_one_pass_parse_agrees_with_the_full_one` checks it on every prefix of
/// varied frames). It saves the generic header search and number checks: a
/// pipelined `SET` went from 1,502 to 1,287 instructions.
fn whole_multibulk(buf: &[u8]) -> Option<Request> {
    let (count, cr) = plain_number(buf, 1)?;
    if count == 0 || count > MAX_MULTIBULK as u64 {
        return None;
    }
    let mut pos = cr + 2;
    let mut head = Head::default();
    for _ in 0..count {
        if *buf.get(pos)? != b'$' {
            return None;
        }
        let (len, cr) = plain_number(buf, pos + 1)?;
        if len > MAX_BULK as u64 {
            return None;
        }
        let start = cr + 2;
        let end = start + len as usize;
        if end + 2 > buf.len() {
            return None;
        }
        head.push(start..end);
        pos = end + 2;
    }
    Some(Request::Multibulk { len: pos, argc: count as usize, head })
}

/// A header's number at `buf[at..]` written plainly (`0`, or 1 to 18 digits without
/// a leading zero) and the offset of the `\r` right after it, once the byte after
/// that has arrived too (Redis skips it unchecked). `None` for anything else.
fn plain_number(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = buf.get(at)?.wrapping_sub(b'0');
    if first > 9 {
        return None;
    }
    let mut v = u64::from(first);
    let mut i = at + 1;
    loop {
        let c = *buf.get(i)?;
        if c == b'\r' {
            break;
        }
        let d = c.wrapping_sub(b'0');
        // No leading zero, and 18 digits cannot overflow.
        if d > 9 || v == 0 || i - at >= 18 {
            return None;
        }
        v = v * 10 + u64::from(d);
        i += 1;
    }
    (i + 1 < buf.len()).then_some((v, i))
}

fn parse_inline(buf: &[u8]) -> Parse {
    let Some(nl) = strchr(b'\n', buf) else {
        return if buf.len() > INLINE_MAX {
            Parse::Error(ProtoError::TooBigInline)
        } else {
            Parse::Incomplete(None)
        };
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let len = nl + 1;
    match split_args(&buf[..line_end]) {
        Err(_) => Parse::Error(ProtoError::UnbalancedQuotes),
        Ok(args) if args.is_empty() => Parse::Complete(Request::Empty { len }),
        Ok(args) => Parse::Complete(Request::Inline { len, args }),
    }
}

fn parse_multibulk(buf: &[u8], authenticated: bool) -> Parse {
    let Some(cr) = header_end(buf, 1) else {
        return if buf.len() > INLINE_MAX {
            Parse::Error(ProtoError::TooBigMultibulkCount)
        } else {
            Parse::Incomplete(None)
        };
    };
    let count = match parse_ll(&buf[1..cr]) {
        Some(n) if n <= MAX_MULTIBULK => n,
        _ => return Parse::Error(ProtoError::InvalidMultibulkLength),
    };
    if count > UNAUTH_MAX_MULTIBULK && !authenticated {
        return Parse::Error(ProtoError::UnauthMultibulkLength);
    }
    let mut pos = cr + 2;
    if count <= 0 {
        return Parse::Complete(Request::Empty { len: pos });
    }
    let argc = count as u64;
    let mut head = Head::default();
    let mut complete = 0u64;
    while complete < argc {
        let partial = |head: Head, next_len| {
            Parse::Incomplete(Some(Partial { argc, complete, head, resume_at: pos, next_len }))
        };
        if pos >= buf.len() {
            return partial(head, None);
        }
        let Some(cr) = header_end(buf, pos) else {
            return if buf.len() - pos > INLINE_MAX {
                Parse::Error(ProtoError::TooBigBulkCount)
            } else {
                partial(head, None)
            };
        };
        if buf[pos] != b'$' {
            return Parse::Error(ProtoError::ExpectedDollar(buf[pos]));
        }
        let len = match parse_ll(&buf[pos + 1..cr]) {
            Some(n) if (0..=MAX_BULK).contains(&n) => n,
            _ => return Parse::Error(ProtoError::InvalidBulkLength),
        };
        if len > UNAUTH_MAX_BULK && !authenticated {
            return Parse::Error(ProtoError::UnauthBulkLength);
        }
        let start = cr + 2;
        // Redis skips the two bytes after the payload without checking them.
        let end = start + len as usize;
        if end + 2 > buf.len() {
            return partial(head, Some(len as u64));
        }
        head.push(start..end);
        complete += 1;
        pos = end + 2;
    }
    Parse::Complete(Request::Multibulk { len: pos, argc: argc as usize, head })
}

/// Walks the rest of a multibulk frame that is being streamed to the upstream
/// without being buffered: only the bulk headers are read, payloads are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamer {
    args_left: u64,
    bulk_left: u64,
}

impl Streamer {
    /// Continues a frame from `Partial::resume_at`, with `args_left` arguments to go.
    pub fn new(args_left: u64) -> Self {
        Self { args_left, bulk_left: 0 }
    }

    /// Consumes what it can of `buf`: returns how many bytes belong to the frame and
    /// whether the frame is now complete. Zero bytes and not done means a bulk header
    /// is still incomplete.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(usize, bool), ProtoError> {
        let mut pos = 0;
        loop {
            if self.bulk_left > 0 {
                let take = self.bulk_left.min((buf.len() - pos) as u64);
                self.bulk_left -= take;
                pos += take as usize;
                if self.bulk_left > 0 {
                    return Ok((pos, false));
                }
                self.args_left -= 1;
            }
            if self.args_left == 0 {
                return Ok((pos, true));
            }
            if pos >= buf.len() {
                return Ok((pos, false));
            }
            let Some(cr) = header_end(buf, pos) else {
                return if buf.len() - pos > INLINE_MAX {
                    Err(ProtoError::TooBigBulkCount)
                } else {
                    Ok((pos, false))
                };
            };
            if buf[pos] != b'$' {
                return Err(ProtoError::ExpectedDollar(buf[pos]));
            }
            let len = match parse_ll(&buf[pos + 1..cr]) {
                Some(n) if (0..=MAX_BULK).contains(&n) => n as u64,
                _ => return Err(ProtoError::InvalidBulkLength),
            };
            pos = cr + 2;
            self.bulk_left = len + 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], authed: bool) -> (usize, Vec<Vec<u8>>) {
        match parse(buf, authed) {
            Parse::Complete(r) => {
                let args = r.args(buf).into_iter().map(<[u8]>::to_vec).collect();
                (r.len(), args)
            }
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn multibulk_and_inline() {
        let (len, args) = complete(b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\nPING\r\n", false);
        assert_eq!(len, 22);
        assert_eq!(args, vec![b"AUTH".to_vec(), b"pw".to_vec()]);
        let (len, args) = complete(b"AUTH pw\r\n", false);
        assert_eq!((len, args.len()), (9, 2));
        let (len, args) = complete(b"PING\n", false);
        assert_eq!((len, args), (5, vec![b"PING".to_vec()]));
    }

    #[test]
    fn empty_requests() {
        assert_eq!(parse(b"*0\r\n", false), Parse::Complete(Request::Empty { len: 4 }));
        assert_eq!(parse(b"*-1\r\n", false), Parse::Complete(Request::Empty { len: 5 }));
        assert_eq!(parse(b"\r\n", false), Parse::Complete(Request::Empty { len: 2 }));
    }

    #[test]
    fn protocol_errors() {
        use ProtoError::*;
        assert_eq!(parse(b"*x\r\n", true), Parse::Error(InvalidMultibulkLength));
        assert_eq!(parse(b"*1\r\n$abc\r\n", true), Parse::Error(InvalidBulkLength));
        assert_eq!(parse(b"*1\r\n$-1\r\n", true), Parse::Error(InvalidBulkLength));
        assert_eq!(parse(b"*1\r\n:1\r\n", true), Parse::Error(ExpectedDollar(b':')));
        assert_eq!(parse(b"*11\r\n", false), Parse::Error(UnauthMultibulkLength));
        assert_eq!(parse(b"*1\r\n$16385\r\n", false), Parse::Error(UnauthBulkLength));
        assert_eq!(parse(b"ECHO \"a\r\n", false), Parse::Error(UnbalancedQuotes));
        assert!(matches!(parse(b"*11\r\n", true), Parse::Incomplete(Some(_))));
        assert!(matches!(parse(b"*1\r\n$16385\r\n", true), Parse::Incomplete(Some(_))));
        let long = vec![b'a'; INLINE_MAX + 1];
        assert_eq!(parse(&long, false), Parse::Error(TooBigInline));
        assert_eq!(ExpectedDollar(b':').reply(), &b"-ERR Protocol error: expected '$', got ':'\r\n"[..]);
        assert_eq!(ExpectedDollar(b'\n').reply(), &b"-ERR Protocol error: expected '$', got ' '\r\n"[..]);
    }

    #[test]
    fn a_nul_hides_the_end_of_a_line_as_from_strchr() {
        // Inline: Redis never sees the line end, and waits.
        for buf in [&b"PING\0\r\n"[..], b"GET a\0\r\n", b"\0\r\n", b"\0\n", b"ECHO \"\0\"\r\n"] {
            assert_eq!(parse(buf, true), Parse::Incomplete(None), "{buf:?}");
        }
        // ...until the buffer passes 64 KiB, NUL and all.
        let mut long = b"PING\0\r\n".to_vec();
        long.resize(INLINE_MAX + 1, b'a');
        assert_eq!(parse(&long, true), Parse::Error(ProtoError::TooBigInline));
        // A NUL after the line end is the next request's business.
        assert!(matches!(parse(b"PING\r\n\0", true), Parse::Complete(Request::Inline { len: 6, .. })));
        // Multibulk headers: waits, where a plain search for \r would see a bad length.
        assert_eq!(parse(b"*1\0\r\n$4\r\nPING\r\n", true), Parse::Incomplete(None));
        assert!(matches!(parse(b"*1\r\n$4\0\r\nPING\r\n", true), Parse::Incomplete(Some(_))));
        let mut long = b"*1\0\r\n".to_vec();
        long.resize(INLINE_MAX + 1, b'a');
        assert_eq!(parse(&long, true), Parse::Error(ProtoError::TooBigMultibulkCount));
        // In a payload, a NUL is just a byte.
        assert!(matches!(parse(b"*1\r\n$2\r\n\0\0\r\n", true), Parse::Complete(_)));
        let mut s = Streamer::new(1);
        assert_eq!(s.advance(b"$4\0\r\nPING\r\n"), Ok((0, false)));
    }

    #[test]
    fn inline_requests_go_upstream_as_multibulk() {
        let buf = b"SET \"a b\" '\\'x'\r\n";
        let Parse::Complete(req) = parse(buf, true) else { panic!() };
        assert_eq!(&req.encoded().unwrap()[..], b"*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$2\r\n'x\r\n");
        let Parse::Complete(req) = parse(b"*1\r\n$4\r\nPING\r\n", true) else { panic!() };
        assert_eq!(req.encoded(), None);
    }

    /// Every prefix of varied frames (odd headers, NULs, signs, leading zeros, 18
    /// and 19 digits, several requests in a row), and every one-byte change of them:
    /// the one-pass parse answers as the full one, or leaves it to it.
    #[test]
    fn the_one_pass_parse_agrees_with_the_full_one() {
        let frames: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000001234\r\n$3\r\nxxx\r\n*1\r\n$4\r\nPING\r\n",
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            b"*1\r\n$01\r\nx\r\n",
            b"*01\r\n$1\r\nx\r\n",
            b"*1\r\n$-1\r\n",
            b"*-1\r\n*0\r\n",
            b"*1\r\n$+1\r\nx\r\n",
            b"*1\0\r\n$1\r\nx\r\n",
            b"*1\r\n$1\0\r\nx\r\n",
            b"*1\r\n$123456789012345678\r\nx\r\n",
            b"*1\r\n$1234567890123456789\r\nx\r\n",
            b"*2147483648\r\n",
            b"*1\r\n$536870913\r\n",
            b"*1\r\n:1\r\n",
            b"*2\r\n$1\r\na\r\n$1\r\nb\n\n",
            b"*1\r\r$1\r\rx\r\r",
            // 2^64 + 1: past 18 digits a u64 would wrap (to 1).
            b"*1\r\n$18446744073709551617\r\nx\r\n",
            b"*18446744073709551617\r\n$1\r\nx\r\n",
        ];
        let check = |buf: &[u8]| {
            if let Some(fast) = whole_multibulk(buf) {
                assert_eq!(Parse::Complete(fast), parse_multibulk(buf, true), "{buf:?}");
            }
        };
        for frame in frames {
            for end in 1..=frame.len() {
                check(&frame[..end]);
                for at in 1..end {
                    for b in [b'0', b'1', b'9', b'\r', b'\n', 0, b'$', b'*', b'-', b'x'] {
                        let mut v = frame[..end].to_vec();
                        v[at] = b;
                        check(&v);
                    }
                }
            }
        }
        // And it takes the common frames itself.
        assert!(whole_multibulk(frames[0]).is_some());
        assert!(whole_multibulk(frames[1]).is_some());
    }

    #[test]
    fn partial_reports_progress() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc";
        match parse(buf, true) {
            Parse::Incomplete(Some(p)) => {
                assert_eq!(p.argc, 3);
                assert_eq!(p.complete, 2);
                assert_eq!(&buf[p.head.get(1).unwrap().clone()], b"k");
                assert_eq!(p.next_len, Some(100));
                assert_eq!(&buf[p.resume_at..p.resume_at + 6], b"$100\r\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn streamer_walks_big_bulks_in_pieces() {
        let frame = b"$5\r\nhello\r\n$0\r\n\r\nNEXT";
        let mut s = Streamer::new(2);
        // Feed one byte at a time, the way a slow client would.
        let mut fed = 0;
        let mut done = false;
        let mut pending = Vec::new();
        for &b in frame.iter() {
            pending.push(b);
            let (n, d) = s.advance(&pending).unwrap();
            fed += n;
            pending.drain(..n);
            if d {
                done = true;
                break;
            }
        }
        assert!(done);
        assert_eq!(fed, frame.len() - 4);
    }
}
