//! `CONFIG GET` without secrets: a client's patterns are replaced by the names of
//! the non-secret parameters they match, so Redis answers (and its ACL decides
//! whether the client may ask at all) but never with `requirepass`, `masterauth`,
//! TLS key passwords, file paths or replication addresses. Redis Enterprise answers
//! `CONFIG GET` for a fixed set of settings too; this list follows its table.

use super::glob;

/// Parameters a client may read.
pub const READABLE: &[&str] = &[
    "activerehashing",
    "active-expire-effort",
    "busy-reply-threshold",
    "databases",
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "hll-sparse-max-bytes",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "lfu-decay-time",
    "lfu-log-factor",
    "list-compress-depth",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "lua-time-limit",
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    "notify-keyspace-events",
    "proto-max-bulk-len",
    "set-max-intset-entries",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "stream-node-max-bytes",
    "stream-node-max-entries",
    "timeout",
    "tracking-table-max-keys",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
];

/// The arguments to send after `CONFIG GET` for a client's `patterns`: a name
/// without glob characters stays as the client wrote it (Redis echoes it back in
/// the client's case) if it is readable; a pattern becomes the readable names it
/// matches. When nothing is left, one empty name, which Redis matches to nothing,
/// so the reply is still Redis's own (an empty map, or `-NOPERM` if the client's
/// rule does not grant `config|get`).
pub fn rewrite(patterns: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for p in patterns {
        if !p.iter().any(|c| matches!(c, b'[' | b'*' | b'?')) {
            if READABLE.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(p)) {
                out.push(p.to_vec());
            }
            continue;
        }
        for r in READABLE {
            if glob::matches(p, r.as_bytes()) && !out.iter().any(|o| o.eq_ignore_ascii_case(r.as_bytes())) {
                out.push(r.as_bytes().to_vec());
            }
        }
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_asked_for() {
        let all = rewrite(&[b"*"]);
        assert_eq!(all.len(), READABLE.len());
        for secret in ["requirepass", "masterauth", "masteruser", "tls-key-file-pass", "dir", "replicaof"] {
            assert!(!all.iter().any(|a| a == secret.as_bytes()), "{secret}");
        }
        assert_eq!(rewrite(&[b"requirepass"]), vec![Vec::<u8>::new()]);
        assert_eq!(rewrite(&[b"MAXMEMORY"]), vec![b"MAXMEMORY".to_vec()]);
        assert_eq!(rewrite(&[b"maxmemory*"]).len(), 3);
        assert_eq!(rewrite(&[b"*pass*", b"masterauth"]), vec![Vec::<u8>::new()]);
    }
}
