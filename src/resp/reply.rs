//! Finding reply boundaries in the upstream's RESP2/RESP3 stream, without decoding it.
//!
//! The relay needs to know where each top-level reply ends (to keep replies in order
//! when turnstile answers some commands itself) and a few facts about it (is it a push,
//! a pub/sub message, `+RESET`…). Payloads are skipped, never copied, so a 100 MB
//! bulk costs the same as a small one; the scanner keeps its state between reads.
//! [`ReplyScanner::scan_errors`] also stops at every error element, at any depth
//! (an `EXEC` or script result may hold one), so the relay can rewrite the few that
//! name turnstile's upstream user without copying anything else.

use super::number::parse_ll;

/// How many bytes of a line (or of an aggregate's first element) are kept for
/// classification. Enough for `RESET`, `QUEUED`, `punsubscribe`, a timestamp.
const CAPTURE: usize = 32;
/// Aggregates nested deeper than this are treated as a stream we cannot follow.
const MAX_DEPTH: usize = 1024;
/// Longest error line [`ReplyScanner::scan_errors`] waits for whole: ACL errors are
/// a line of a few hundred bytes; a longer one is passed on as it comes.
pub const MAX_ERROR: usize = 4096;

/// A short prefix of some bytes of the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    buf: [u8; CAPTURE],
    len: u8,
    truncated: bool,
}

impl Default for Capture {
    fn default() -> Self {
        Self { buf: [0; CAPTURE], len: 0, truncated: false }
    }
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.bytes()))
    }
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let room = CAPTURE - self.len as usize;
        let take = room.min(bytes.len());
        self.buf[self.len as usize..self.len as usize + take].copy_from_slice(&bytes[..take]);
        self.len += take as u8;
        self.truncated |= take < bytes.len();
    }

    /// The captured bytes (at most 32).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// True when the captured bytes are the whole value.
    pub fn is_whole(&self) -> bool {
        !self.truncated
    }

    /// The whole value equals `s`, ignoring ASCII case.
    pub fn eq_ignore_case(&self, s: &[u8]) -> bool {
        self.is_whole() && self.bytes().eq_ignore_ascii_case(s)
    }
}

/// What the relay needs to know about a complete top-level reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// The RESP type byte: `+`, `-`, `$`, `*`, `>`, `%`…
    pub kind: u8,
    /// For a simple string or error: its first bytes. For an aggregate: its first
    /// element, when that is a string.
    pub head: Capture,
    /// For an aggregate: its third element, when that is an integer (the
    /// subscription count of a pub/sub confirmation).
    pub third: Option<i64>,
    /// For an aggregate: its declared number of elements.
    pub len: u64,
}

/// Where [`ReplyScanner::scan_errors`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes consumed.
    pub used: usize,
    /// A top-level reply ended at `used`; [`ReplyScanner::last`] tells what it was
    /// (not copied here: this is returned for every reply on the hot path).
    pub frame: bool,
    /// An error element (`-…\r\n`, at any depth, or the whole reply) ended at
    /// `used`; it began at this offset of the bytes scanned.
    pub error: Option<usize>,
    /// The bytes ran out inside an error element's line that began at `used`
    /// (and is no longer than [`MAX_ERROR`] so far): nothing of it was consumed,
    /// so that it can be scanned again, whole, once more bytes have come.
    pub short: bool,
}

/// The upstream sent something that is not RESP, or that turnstile cannot follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError;

#[derive(Debug, Clone, Copy)]
struct Level {
    left: u64,
    attribute: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    /// Expecting a type byte.
    Start,
    /// Inside a line (a scalar or a header) of this type.
    Line(u8),
    /// Skipping a blob payload; the count includes the trailing CRLF.
    Blob(u64),
}

/// Which part of the current top-level frame the element being read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Top,
    First,
    Third,
    Other,
}

/// Resumable scanner over the upstream's reply stream.
#[derive(Debug)]
pub struct ReplyScanner {
    stack: Vec<Level>,
    elem: Elem,
    slot: Slot,
    /// Elements completed so far at depth 1 of the current frame.
    index: u64,
    line: Capture,
    info: FrameInfo,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self {
            stack: Vec::new(),
            elem: Elem::Start,
            slot: Slot::Top,
            index: 0,
            line: Capture::default(),
            info: FrameInfo::default(),
        }
    }

    /// True between frames: nothing of a reply has been seen yet.
    pub fn at_boundary(&self) -> bool {
        self.stack.is_empty() && self.elem == Elem::Start
    }

    /// Consumes `buf` until a top-level reply ends or the bytes run out. Returns the
    /// bytes consumed and, if a reply ended at that point, what it was.
    pub fn scan(&mut self, buf: &[u8]) -> Result<(usize, Option<FrameInfo>), ScanError> {
        let s = self.scan_inner::<false>(buf)?;
        Ok((s.used, s.frame.then_some(self.info)))
    }

    /// As [`scan`](Self::scan), and also stops after every error element, whole in
    /// `buf` (see [`Scanned`]). An error line that `buf` ends inside is left
    /// unconsumed (`short`) while it is at most [`MAX_ERROR`] bytes: the caller
    /// keeps those bytes and scans them again with the next read. Costs nothing
    /// more for replies without an error element.
    pub fn scan_errors(&mut self, buf: &[u8]) -> Result<Scanned, ScanError> {
        self.scan_inner::<true>(buf)
    }

    /// The top-level reply that ended last.
    pub fn last(&self) -> &FrameInfo {
        &self.info
    }

    #[inline(always)]
    fn scan_inner<const ERRORS: bool>(&mut self, buf: &[u8]) -> Result<Scanned, ScanError> {
        if let Some(scanned) = self.scan_simple(buf) {
            return Ok(scanned);
        }
        let done = |used, frame, error| Ok(Scanned { used, frame, error, short: false });
        let mut pos = 0;
        // Where the error element being read began, when it began in `buf`.
        let mut error = None;
        while pos < buf.len() {
            match self.elem {
                Elem::Start => {
                    let kind = buf[pos];
                    if ERRORS && kind == b'-' {
                        match buf[pos..].iter().position(|&b| b == b'\n') {
                            Some(_) => error = Some(pos),
                            None if buf.len() - pos <= MAX_ERROR => {
                                return Ok(Scanned { used: pos, frame: false, error: None, short: true });
                            }
                            // Too long for an ACL error: read as it comes.
                            None => {}
                        }
                    }
                    pos += 1;
                    if !b"+-:_#,($!=*%~>|".contains(&kind) {
                        return Err(ScanError);
                    }
                    self.slot = self.slot_for_new_element();
                    if self.slot == Slot::Top {
                        self.info = FrameInfo { kind, ..FrameInfo::default() };
                    }
                    self.line = Capture::default();
                    self.elem = Elem::Line(kind);
                }
                Elem::Line(kind) => {
                    let rest = &buf[pos..];
                    match rest.iter().position(|&b| b == b'\n') {
                        None => {
                            self.line.push(rest);
                            pos = buf.len();
                        }
                        Some(nl) => {
                            self.line.push(&rest[..nl]);
                            pos += nl + 1;
                            let ended = self.end_line(kind)?;
                            if ERRORS && kind == b'-' && error.is_some() {
                                if ended {
                                    self.finish_frame();
                                }
                                return done(pos, ended, error);
                            }
                            if ended {
                                self.finish_frame();
                                return done(pos, true, None);
                            }
                        }
                    }
                }
                Elem::Blob(left) => {
                    let take = left.min((buf.len() - pos) as u64) as usize;
                    if self.slot == Slot::First {
                        // Only the payload, not its CRLF, belongs in the capture.
                        let payload = (left.saturating_sub(2) as usize).min(take);
                        self.info.head.push(&buf[pos..pos + payload]);
                    }
                    pos += take;
                    let left = left - take as u64;
                    self.elem = Elem::Blob(left);
                    if left == 0 && self.complete_element() {
                        self.finish_frame();
                        return done(pos, true, None);
                    }
                }
            }
        }
        done(pos, false, None)
    }

    /// Most replies, whole in `buf` at a frame boundary: a top-level `+` or `:` line
    /// (`+OK`, a counter) or a `$` bulk (a GET's value). Leaves the scanner exactly
    /// as the element-by-element loop below would, in a fraction of its steps (it
    /// was ~150 instructions per `+OK`); anything else (an error, an aggregate, a
    /// partial or malformed reply) is `None`, with nothing changed, for that loop.
    /// After a top-level attribute the scanner is at such a boundary too, and the
    /// value that follows ends the frame, as it does in the loop.
    #[inline(always)]
    fn scan_simple(&mut self, buf: &[u8]) -> Option<Scanned> {
        if self.elem != Elem::Start || !self.stack.is_empty() {
            return None;
        }
        let kind = *buf.first()?;
        if !matches!(kind, b'+' | b':' | b'$') {
            return None;
        }
        let nl = 1 + buf[1..].iter().position(|&b| b == b'\n')?;
        let raw = &buf[1..nl];
        if raw.len() > CAPTURE {
            return None;
        }
        // As `end_line` keeps it: the captured line, its CR dropped.
        let mut line = Capture::default();
        line.push(raw);
        if line.bytes().last() == Some(&b'\r') {
            line.len -= 1;
        }
        let used = if kind == b'$' {
            match parse_ll(line.bytes()) {
                Some(-1) => nl + 1,
                // Like `Elem::Blob`: the payload and two bytes, not checked.
                Some(n) if n >= 0 => {
                    let end = (nl + 1).checked_add(usize::try_from(n).ok()?)?.checked_add(2)?;
                    if end > buf.len() {
                        return None;
                    }
                    end
                }
                _ => return None,
            }
        } else {
            nl + 1
        };
        self.info = FrameInfo { kind, ..FrameInfo::default() };
        if kind != b'$' {
            self.info.head = line;
        }
        // (`self.line` is reset at every element's start: not kept.)
        self.index = 0;
        self.slot = Slot::Top;
        Some(Scanned { used, frame: true, error: None, short: false })
    }

    fn slot_for_new_element(&self) -> Slot {
        match self.stack.len() {
            0 => Slot::Top,
            1 if !self.stack[0].attribute => match self.index {
                0 => Slot::First,
                2 => Slot::Third,
                _ => Slot::Other,
            },
            _ => Slot::Other,
        }
    }

    fn finish_frame(&mut self) -> FrameInfo {
        self.elem = Elem::Start;
        self.index = 0;
        self.slot = Slot::Top;
        self.info
    }

    /// The line of an element of type `kind` ended. Returns true if that ended the
    /// top-level frame. Inlined: it runs for nearly every element, from both scans.
    #[inline(always)]
    fn end_line(&mut self, kind: u8) -> Result<bool, ScanError> {
        let mut line = self.line;
        if line.is_whole() && line.bytes().last() == Some(&b'\r') {
            line.len -= 1;
        }
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                match self.slot {
                    Slot::Top => self.info.head = line,
                    Slot::First if kind == b'+' => self.info.head = line,
                    Slot::Third if kind == b':' && line.is_whole() => {
                        self.info.third = parse_ll(line.bytes());
                    }
                    _ => {}
                }
                Ok(self.complete_element())
            }
            b'$' | b'!' | b'=' => {
                let n = header_len(&line)?;
                if n < 0 {
                    return Ok(self.complete_element());
                }
                self.elem = Elem::Blob(n as u64 + 2);
                Ok(false)
            }
            _ => {
                let n = header_len(&line)?;
                if self.slot == Slot::Top {
                    self.info.len = n.max(0) as u64;
                }
                if n <= 0 {
                    return Ok(self.complete_element());
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(ScanError);
                }
                let pairs = matches!(kind, b'%' | b'|');
                let left = (n as u64).checked_mul(if pairs { 2 } else { 1 }).ok_or(ScanError)?;
                self.stack.push(Level { left, attribute: kind == b'|' });
                self.elem = Elem::Start;
                Ok(false)
            }
        }
    }

    /// An element ended; pops finished aggregates. Returns true at a frame's end.
    fn complete_element(&mut self) -> bool {
        self.elem = Elem::Start;
        loop {
            let depth = self.stack.len();
            let Some(level) = self.stack.last_mut() else {
                return true;
            };
            level.left -= 1;
            if depth == 1 && !level.attribute {
                self.index += 1;
            }
            if level.left > 0 {
                return false;
            }
            let attribute = level.attribute;
            self.stack.pop();
            if attribute {
                // An attribute decorates the value that follows it; it is not itself
                // an element of its parent, and the frame goes on.
                return false;
            }
        }
    }
}

/// Parses a length header; `?` (RESP3 streamed types, never sent by Redis) and
/// anything malformed are errors.
fn header_len(line: &Capture) -> Result<i64, ScanError> {
    if !line.is_whole() {
        return Err(ScanError);
    }
    match parse_ll(line.bytes()) {
        Some(n) if n >= -1 => Ok(n),
        _ => Err(ScanError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` fed in chunks of `chunk` bytes; returns each frame's end offset.
    fn frames(input: &[u8], chunk: usize) -> Vec<(usize, FrameInfo)> {
        let mut s = ReplyScanner::new();
        let mut out = Vec::new();
        let mut offset = 0;
        for piece in input.chunks(chunk) {
            let mut pos = 0;
            while pos < piece.len() {
                let (n, info) = s.scan(&piece[pos..]).expect("valid RESP");
                pos += n;
                if let Some(info) = info {
                    out.push((offset + pos, info));
                }
            }
            offset += piece.len();
        }
        assert!(s.at_boundary());
        out
    }

    /// The fast path for whole simple replies (`scan_simple`) leaves the same frames,
    /// the same facts and the same errors as the element-by-element loop, which
    /// one-byte chunks always take.
    #[test]
    fn the_fast_path_agrees_with_the_loop() {
        let long = format!("+{}\r\n", "x".repeat(40));
        let exact = format!("+{}\r\n", "y".repeat(31));
        let inputs: Vec<&[u8]> = vec![
            b"+OK\r\n",
            b"+OK\n",
            b":12\r\n:-3\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$3\r\nabcXY",
            long.as_bytes(),
            exact.as_bytes(),
            b"|1\r\n+k\r\n+v\r\n+OK\r\n",
            b"|1\r\n+k\r\n+v\r\n$2\r\nhi\r\n",
            b"+QUEUED\r\n$5\r\nhello\r\n:1\r\n*1\r\n+a\r\n",
        ];
        for input in inputs {
            assert_eq!(frames(input, input.len()), frames(input, 1), "{:?}", String::from_utf8_lossy(input));
        }
        for bad in [&b"$x\r\n"[..], b"$-2\r\n", b":\r\n"] {
            let (mut whole, mut split) = (ReplyScanner::new(), ReplyScanner::new());
            let w = whole.scan(bad);
            let mut r = Ok((0, None));
            for piece in bad.chunks(1) {
                r = split.scan(piece);
                if r.is_err() {
                    break;
                }
            }
            assert_eq!(w.is_err(), r.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn scalars_and_bulks() {
        let input = b"+OK\r\n-ERR x\r\n:5\r\n$3\r\nfoo\r\n$-1\r\n_\r\n";
        for chunk in 1..input.len() {
            let f = frames(input, chunk);
            let ends: Vec<usize> = f.iter().map(|x| x.0).collect();
            assert_eq!(ends, vec![5, 13, 17, 26, 31, 34], "chunk {chunk}");
            assert_eq!(f[0].1.head.bytes(), b"OK");
            assert_eq!(f[1].1.kind, b'-');
        }
    }

    #[test]
    fn pubsub_confirmation_is_classified() {
        let input =
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
        for chunk in 1..input.len() {
            let f = frames(input, chunk);
            assert_eq!(f.len(), 2);
            assert!(f[0].1.head.eq_ignore_case(b"subscribe"));
            assert_eq!(f[0].1.third, Some(1));
            assert_eq!(f[1].1.kind, b'>');
            assert!(f[1].1.head.eq_ignore_case(b"message"));
        }
    }

    #[test]
    fn nested_maps_and_attributes() {
        let input =
            b"%2\r\n+a\r\n*2\r\n:1\r\n:2\r\n+b\r\n%1\r\n+c\r\n_\r\n|1\r\n+k\r\n+v\r\n+OK\r\n*-1\r\n*0\r\n";
        let f = frames(input, 3);
        assert_eq!(f.len(), 4);
        assert_eq!(f[1].1.head.bytes(), b"OK");
    }

    /// Feeds `input` to `scan_errors` in reads of `chunk` bytes, keeping what a
    /// short stop leaves for the next read (as the lane and the relay do). Returns
    /// each error element's bytes and each frame's end, in stream offsets.
    fn errors(input: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
        let mut s = ReplyScanner::new();
        let (mut errs, mut ends) = (Vec::new(), Vec::new());
        let (mut buf, mut base) = (Vec::new(), 0);
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            let mut pos = 0;
            while pos < buf.len() {
                let at = pos;
                let step = s.scan_errors(&buf[pos..]).expect("valid RESP");
                pos += step.used;
                if step.short {
                    assert!(buf.len() - pos <= MAX_ERROR);
                    break;
                }
                assert!(step.used > 0, "progress");
                if let Some(e) = step.error {
                    errs.push(buf[at + e..pos].to_vec());
                }
                if step.frame {
                    ends.push(base + pos);
                }
            }
            buf.drain(..pos);
            base += pos;
        }
        assert!(buf.is_empty() && s.at_boundary());
        (errs, ends)
    }

    #[test]
    fn errors_are_found_at_any_depth_in_any_read() {
        let input: &[u8] = b"*2\r\n-NOPERM a\r\n:1\r\n-ERR top\r\n%1\r\n$1\r\na\r\n*1\r\n-ERR deep\r\n\
            |1\r\n+k\r\n-ERR in attr\r\n+OK\r\n>2\r\n-ERR push\r\n_\r\n~1\r\n-ERR set\r\n$5\r\n-ERR \r\n";
        for chunk in 1..=input.len() {
            let (errs, ends) = errors(input, chunk);
            let errs: Vec<&[u8]> = errs.iter().map(Vec::as_slice).collect();
            assert_eq!(
                errs,
                [
                    &b"-NOPERM a\r\n"[..],
                    b"-ERR top\r\n",
                    b"-ERR deep\r\n",
                    b"-ERR in attr\r\n",
                    b"-ERR push\r\n",
                    b"-ERR set\r\n"
                ],
                "chunk {chunk}"
            );
            assert_eq!(
                ends,
                frames(input, input.len()).iter().map(|f| f.0).collect::<Vec<_>>(),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn an_error_line_too_long_for_acl_is_not_held() {
        let mut input = b"*1\r\n-".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_ERROR + 10));
        input.extend_from_slice(b"\r\n");
        let mut s = ReplyScanner::new();
        let first = s.scan_errors(&input[..MAX_ERROR + 8]).unwrap();
        assert!(!first.short && first.error.is_none() && first.used == MAX_ERROR + 8);
        let rest = s.scan_errors(&input[MAX_ERROR + 8..]).unwrap();
        assert!(rest.frame && rest.error.is_none());
        // Whole in one read, it is reported, whatever its length.
        let whole = ReplyScanner::new().scan_errors(&input).unwrap();
        assert_eq!((whole.error, whole.used), (Some(4), input.len()));
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(ReplyScanner::new().scan(b"hello\r\n"), Err(ScanError));
        assert_eq!(ReplyScanner::new().scan(b"$?\r\n"), Err(ScanError));
        assert_eq!(ReplyScanner::new().scan(b"*x\r\n"), Err(ScanError));
    }
}
