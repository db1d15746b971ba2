//! Property tests of the RESP layer: any byte stream, cut into any chunks, frames the
//! same as in one piece and never panics; the reply scanner agrees with an
//! independent RESP3 encoder (`redis-protocol`) on where every frame ends.

use proptest::prelude::*;
use redis_protocol::resp3::types::{OwnedFrame, Resp3Frame, VerbatimStringFormat};
use turnstile::resp::reply::ReplyScanner;
use turnstile::resp::request::{self, Parse, Streamer};

/// What a client-side parse yields for a whole stream: each request's arguments,
/// then how it ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    Args(Vec<Vec<u8>>),
    Error(request::ProtoError),
}

/// Feeds `chunks` one at a time into a growing buffer, parsing whatever is complete,
/// the way a connection does.
fn parse_stream(chunks: &[&[u8]], authenticated: bool) -> Vec<Outcome> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match request::parse(&buf, authenticated) {
                Parse::Complete(req) => {
                    let args: Vec<Vec<u8>> = req.args(&buf).into_iter().map(<[u8]>::to_vec).collect();
                    // The allocation-free accessors the hot path uses agree with it.
                    assert_eq!(req.argc(), args.len());
                    for (i, a) in args.iter().enumerate().take(request::HEAD) {
                        assert_eq!(req.arg(&buf, i), Some(a.as_slice()));
                    }
                    if !args.is_empty() {
                        out.push(Outcome::Args(args));
                    }
                    buf.drain(..req.len());
                }
                Parse::Incomplete(_) => break,
                Parse::Error(e) => {
                    out.push(Outcome::Error(e));
                    return out;
                }
            }
        }
    }
    out
}

fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// Byte streams that look like RESP often enough to reach deep into the parser.
fn resp_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\x41".to_vec()),
        Just(b"AUTH".to_vec()),
        Just(b"-1".to_vec()),
        (0u32..40).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Well-formed commands, as multibulk or inline.
fn command() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    let arg = proptest::collection::vec(any::<u8>(), 0..40);
    (proptest::collection::vec(arg, 1..6), any::<bool>()).prop_map(|(args, inline)| {
        let printable = args.iter().all(|a| !a.is_empty() && a.iter().all(|c| c.is_ascii_alphanumeric()));
        if inline && printable {
            let mut line = args.join(&b' ');
            line.extend_from_slice(b"\r\n");
            (line, args)
        } else {
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
            (out, args)
        }
    })
}

fn frame() -> impl Strategy<Value = OwnedFrame> {
    let leaf = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..30)
            .prop_map(|data| OwnedFrame::BlobString { data, attributes: None }),
        "[a-zA-Z0-9 ]{0,20}"
            .prop_map(|s| OwnedFrame::SimpleString { data: s.into_bytes(), attributes: None }),
        "[A-Z]{1,8} [a-z ]{0,20}".prop_map(|data| OwnedFrame::SimpleError { data, attributes: None }),
        any::<i64>().prop_map(|data| OwnedFrame::Number { data, attributes: None }),
        any::<bool>().prop_map(|data| OwnedFrame::Boolean { data, attributes: None }),
        (-1e9f64..1e9).prop_map(|data| OwnedFrame::Double { data, attributes: None }),
        "[0-9]{1,30}".prop_map(|s| OwnedFrame::BigNumber { data: s.into_bytes(), attributes: None }),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|data| OwnedFrame::BlobError { data, attributes: None }),
        "[a-z ]{0,20}".prop_map(|s| OwnedFrame::VerbatimString {
            data: s.into_bytes(),
            format: VerbatimStringFormat::Text,
            attributes: None
        }),
        Just(OwnedFrame::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8)
                .prop_map(|data| OwnedFrame::Array { data, attributes: None }),
            proptest::collection::vec(inner, 1..8)
                .prop_map(|data| OwnedFrame::Push { data, attributes: None }),
        ]
    })
}

fn encode(f: &OwnedFrame) -> Vec<u8> {
    let mut buf = vec![0u8; f.encode_len(false)];
    let n = redis_protocol::resp3::encode::complete::encode(&mut buf, f, false).unwrap();
    buf.truncate(n);
    buf
}

/// Frame end offsets found by scanning `bytes` in the given chunks.
fn scan_ends(chunks: &[&[u8]]) -> Result<Vec<usize>, ()> {
    let mut s = ReplyScanner::new();
    let mut ends = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let mut pos = 0;
        while pos < chunk.len() {
            let (n, info) = s.scan(&chunk[pos..]).map_err(|_| ())?;
            pos += n;
            if info.is_some() {
                ends.push(offset + pos);
            }
        }
        offset += chunk.len();
    }
    Ok(ends)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_in_any_chunks_parse_the_same_and_never_panic(
        bytes in resp_ish(), cuts in proptest::collection::vec(any::<usize>(), 0..10), authed in any::<bool>()
    ) {
        let whole = parse_stream(&[&bytes], authed);
        let chunked = parse_stream(&cut(&bytes, &cuts), authed);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn well_formed_commands_round_trip_in_any_chunks(
        cmds in proptest::collection::vec(command(), 1..8), cuts in proptest::collection::vec(any::<usize>(), 0..10)
    ) {
        let bytes: Vec<u8> = cmds.iter().flat_map(|(b, _)| b.clone()).collect();
        let expected: Vec<Outcome> = cmds.into_iter().map(|(_, a)| Outcome::Args(a)).collect();
        prop_assert_eq!(parse_stream(&cut(&bytes, &cuts), true), expected);
    }

    #[test]
    fn streaming_a_frame_ends_exactly_where_parsing_does(
        (bytes, args) in command(), split in any::<usize>(), cuts in proptest::collection::vec(any::<usize>(), 0..10)
    ) {
        prop_assume!(bytes[0] == b'*');
        let Parse::Complete(req) = request::parse(&bytes, true) else { panic!("complete frame") };
        // Stop parsing after some complete arguments, stream the rest.
        let upto = {
            let partial = &bytes[..split % bytes.len()];
            match request::parse(partial, true) {
                Parse::Incomplete(Some(p)) => p,
                _ => return Ok(()),
            }
        };
        let mut s = Streamer::new(args.len() as u64 - upto.complete);
        let rest = &bytes[upto.resume_at..];
        let mut consumed = 0;
        let mut pending = Vec::new();
        let mut done = false;
        for chunk in cut(rest, &cuts) {
            pending.extend_from_slice(chunk);
            let (n, d) = s.advance(&pending).unwrap();
            consumed += n;
            pending.drain(..n);
            if d { done = true; break; }
        }
        prop_assert!(done);
        prop_assert_eq!(upto.resume_at + consumed, req.len());
    }

    #[test]
    fn reply_scanner_finds_every_frame_end_in_any_chunks(
        frames in proptest::collection::vec(frame(), 1..6), cuts in proptest::collection::vec(any::<usize>(), 0..12)
    ) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for f in &frames {
            bytes.extend(encode(f));
            ends.push(bytes.len());
        }
        prop_assert_eq!(scan_ends(&cut(&bytes, &cuts)), Ok(ends));
    }

    #[test]
    fn reply_scanner_never_panics_on_garbage(bytes in resp_ish(), cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let _ = scan_ends(&cut(&bytes, &cuts));
    }
}
