//! turnstile frames requests exactly as a real Redis does (`fuzz/src/framing.rs` says
//! how that is observed): a corpus of inputs where framing is delicate (NUL bytes, bare
//! `\r`, quotes and escapes, length headers, empty requests, cross-protocol words),
//! then thousands of seeded random ones, each written to a real `redis-server` and
//! compared with turnstile's parse. The `framing` fuzz target does the same with
//! coverage-guided inputs (nightly, `scripts/fuzz.sh`).

#![forbid(unsafe_code)]

mod common;
#[path = "../fuzz/src/framing.rs"]
mod framing;

use common::Redis;
use framing::{End, Framed, Oracle, Rng, Verdict};

/// Inputs where Redis's framing has a quirk turnstile must share.
fn corpus() -> Vec<Vec<u8>> {
    let cases: &[&[u8]] = &[
        // The NUL wedge: strchr stops at the NUL, so Redis never sees these lines end.
        b"qq\0\r\n",
        b"qq a\0\r\n",
        b"qq a\r\n\0\r\nqq b\r\n",
        b"\0\r\n",
        b"\0",
        b"qq \"a\0\"\r\n",
        b"*1\0\r\n$2\r\nqq\r\n",
        b"*1\r\n$2\0\r\nqq\r\n",
        b"*2\r\n$2\r\nqq\r\n$1\0\r\na\r\n",
        b"*1\r\n\0$2\r\nqq\r\n",
        // ...but a NUL inside a payload, or after the line end, is just a byte.
        b"*2\r\n$2\r\nqq\r\n$3\r\na\0b\r\n",
        b"qq\r\n\0",
        b"*1\r\n$2\r\nqq\r\n\0",
        // A bare \r inside an inline line separates arguments; the line ends at \n.
        b"qq a\rb\r\n",
        b"qq\r\r\n",
        b"qq\rqq\n",
        b"\r",
        b"qq a\r",
        // Quotes and escapes (sdssplitargs).
        b"qq \"a b\" 'c d'\r\n",
        b"qq \"\\x41\\x4g\\n\\q\"\r\n",
        b"qq 'it\\'s'\r\n",
        b"qq \"a\"b\r\n",
        b"qq 'a'b\r\n",
        b"qq \"unterminated\r\n",
        b"qq \"\"\r\n",
        b"\"\"\r\n",
        // Length headers: string2ll's strictness, the unchecked byte after \r.
        b"*01\r\n",
        b"*+1\r\n",
        b"* 1\r\n",
        b"*\r\n",
        b"*1\rX$2\r\nqq\r\n",
        b"*1\r\n$2\rXqq\r\n",
        b"*1\r\n$2\r\nqqXY",
        b"*1\r\n$-0\r\n",
        b"*1\r\n:2\r\n",
        b"*-5\r\n*0\r\nqq\r\n",
        b"*3000000000\r\n",
        b"*1\r\n$99999999999\r\n",
        b"*1\r\n$2\r\nq",
        b"*2\r\n$2\r\nqq\r\n",
        b"*2\r\n$2\r\nqq\r\n$5\r\nab",
        // Blank lines and empty multibulks are consumed without a reply.
        b"\r\n\n  \t\r\nqq\r\n",
        // Redis closes at POST / Host: (strcasecmp: up to a NUL).
        b"POST / HTTP/1.1\r\n",
        b"qq\r\nHost: x\r\n",
        b"*1\r\n$5\r\npost\0\r\n",
        b"posts\r\n",
    ];
    let mut out: Vec<Vec<u8>> = cases.iter().map(|c| c.to_vec()).collect();
    // Long arguments: the 128-byte cuts of Redis's error message.
    out.push([&b"qq "[..], &vec![b'a'; 300], b" ", &vec![b'b'; 300], b"\r\n"].concat());
    out.push([&b"*2\r\n$300\r\n"[..], &vec![b'z'; 300], b"\r\n$1\r\nb\r\n"].concat());
    out
}

#[test]
fn redis_frames_every_input_as_turnstile_does() {
    let redis = Redis::start(&[]);
    let mut oracle = Oracle::new(&redis.addr());
    let mut corpus = corpus();
    // The fuzz target's seeds and every input it ever found, replayed on stable.
    for dir in ["fuzz/corpus/framing", "fuzz/regressions/framing"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.expect("dir entry").path();
            if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                corpus.push(std::fs::read(path).expect("read input"));
            }
        }
    }
    for input in &corpus {
        assert_eq!(oracle.check(input), Verdict::Agrees, "corpus input {:?}", String::from_utf8_lossy(input));
    }
    // Seeded, so a failure names an input that can be made again.
    let seed =
        std::env::var("TURNSTILE_FRAMING_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_f00d);
    let rounds: usize =
        std::env::var("TURNSTILE_FRAMING_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let mut rng = Rng(seed);
    let (mut agreed, mut skipped, mut waiting, mut errors) = (0, 0, 0, 0);
    for _ in 0..rounds {
        let input = framing::random_input(&mut rng, 200);
        match framing::frame(&input).end {
            End::Waiting { qbuf } if qbuf > 0 => waiting += 1,
            End::Error(_) => errors += 1,
            _ => {}
        }
        match oracle.check(&input) {
            Verdict::Agrees => agreed += 1,
            Verdict::Skipped => skipped += 1,
        }
    }
    eprintln!(
        "{agreed} random inputs agreed ({waiting} left Redis waiting, {errors} were protocol errors), {skipped} skipped"
    );
    // Not vacuous: most inputs were compared, and all three outcomes were seen.
    assert!(agreed >= rounds * 9 / 10, "only {agreed} of {rounds} compared");
    assert!(waiting >= rounds / 20 && errors >= rounds / 20, "waiting {waiting}, errors {errors}");
}

/// The oracle notices a wrong framing: the one turnstile had before (an inline line
/// ending at a NUL), and a multibulk header with a NUL taken as a protocol error.
#[test]
fn the_oracle_catches_the_old_nul_framing() {
    let redis = Redis::start(&[]);
    let mut oracle = Oracle::new(&redis.addr());
    let wrong = [
        (&b"qq\0\r\n"[..], Framed { requests: vec![vec![b"qq".to_vec()]], end: End::Waiting { qbuf: 0 } }),
        (
            &b"*1\0\r\n$2\r\nqq\r\n"[..],
            Framed {
                requests: vec![],
                end: End::Error(bytes::Bytes::from_static(
                    b"-ERR Protocol error: invalid multibulk length\r\n",
                )),
            },
        ),
    ];
    for (input, framed) in wrong {
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| oracle.check_framed(input, framed)));
        assert!(caught.is_err(), "a wrong framing of {:?} passed", String::from_utf8_lossy(input));
        // The oracle's own connection is still in step after a failed check.
        oracle = Oracle::new(&redis.addr());
    }
}
