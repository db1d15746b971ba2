//! Replays the fuzz targets' inputs under a plain `cargo test`: every crash input
//! kept in `fuzz/regressions/<target>/` and the seed corpus in `fuzz/corpus/<target>/`,
//! through the same invariant checks the fuzz targets run (`fuzz/src/lib.rs`).

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/<dir>/<target>/`; returns how many there were.
fn replay(dir: &str, target: &str, check: fn(&[u8]) -> usize) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir).join(target);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("read input");
        // A panic names the input that caused it.
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{} fails its invariants", f.display());
    }
    files.len()
}

#[test]
fn request_corpus_and_regressions_hold() {
    assert!(replay("corpus", "request", checks::check_request) >= 20, "seed corpus is missing");
    replay("regressions", "request", checks::check_request);
}

#[test]
fn reply_corpus_and_regressions_hold() {
    assert!(replay("corpus", "reply", checks::check_reply) >= 10, "seed corpus is missing");
    replay("regressions", "reply", checks::check_reply);
}

/// The checks see every frame (they are not vacuous on a known stream).
#[test]
fn checks_see_every_frame() {
    let mut data = vec![1u8, 7];
    data.extend_from_slice(b"*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(checks::check_request(&data), 3);
    let mut reply = vec![0u8, 3];
    reply.extend_from_slice(b"+OK\r\n:1\r\n*2\r\n$1\r\na\r\n_\r\n");
    assert_eq!(checks::check_reply(&reply), 3);
}
