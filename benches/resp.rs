//! RESP scanning throughput: client requests (small commands; a 1 MB value streamed)
//! and upstream replies (small bulks; a 1 MB bulk), in bytes per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use turnstile::resp::command::classify;
use turnstile::resp::reply::ReplyScanner;
use turnstile::resp::request::{Parse, Streamer, parse};

fn pipeline_of_gets(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| format!("*2\r\n$3\r\nGET\r\n$9\r\nkey:{i:05}\r\n").into_bytes()).collect()
}

fn big_set(len: usize) -> Vec<u8> {
    let mut v = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${len}\r\n").into_bytes();
    v.extend(std::iter::repeat_n(b'x', len));
    v.extend_from_slice(b"\r\n");
    v
}

/// What the client half does per request: frame it and classify its name.
fn scan_requests(buf: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while let Parse::Complete(req) = parse(&buf[pos..], true) {
        let frame = &buf[pos..];
        black_box(classify(req.arg(frame, 0).unwrap(), req.arg(frame, 1)));
        pos += req.len();
        n += 1;
    }
    n
}

/// What it does for a large value: the header, then the payload streamed.
fn stream_request(buf: &[u8]) -> usize {
    let Parse::Incomplete(Some(p)) = parse(&buf[..64], true) else { panic!("partial frame") };
    let mut s = Streamer::new(p.argc - p.complete);
    let mut pos = p.resume_at;
    // Fed in 16 KiB reads, as from a socket.
    for chunk_end in (pos..buf.len()).step_by(16 * 1024).skip(1).chain([buf.len()]) {
        let (n, done) = s.advance(&buf[pos..chunk_end]).unwrap();
        pos += n;
        if done {
            break;
        }
    }
    pos
}

fn scan_replies(buf: &[u8], chunk: usize) -> usize {
    let mut s = ReplyScanner::new();
    let mut frames = 0;
    for piece in buf.chunks(chunk) {
        let mut pos = 0;
        while pos < piece.len() {
            let (n, info) = s.scan(&piece[pos..]).unwrap();
            pos += n;
            frames += usize::from(info.is_some());
        }
    }
    frames
}

fn resp(c: &mut Criterion) {
    let mut g = c.benchmark_group("requests");
    let small = pipeline_of_gets(1000);
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("1000 GETs", |b| b.iter(|| assert_eq!(scan_requests(black_box(&small)), 1000)));
    let big = big_set(1 << 20);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("SET of 1 MB, streamed", |b| {
        b.iter(|| assert_eq!(stream_request(black_box(&big)), big.len()))
    });
    g.finish();

    let mut g = c.benchmark_group("replies");
    let bulks: Vec<u8> = (0..1000).flat_map(|i| format!("$9\r\nval:{i:05}\r\n").into_bytes()).collect();
    g.throughput(Throughput::Bytes(bulks.len() as u64));
    g.bench_function("1000 bulk replies", |b| {
        b.iter(|| assert_eq!(scan_replies(black_box(&bulks), 16 * 1024), 1000))
    });
    let mut one = b"$1048576\r\n".to_vec();
    one.extend(std::iter::repeat_n(b'y', 1 << 20));
    one.extend_from_slice(b"\r\n");
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("1 MB bulk reply", |b| {
        b.iter(|| assert_eq!(scan_replies(black_box(&one), 16 * 1024), 1))
    });
    g.finish();
}

criterion_group!(benches, resp);
criterion_main!(benches);
