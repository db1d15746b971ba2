//! Names Redis reads as C strings. Redis finds a command in a hash table that hashes
//! the whole name but compares keys with `strcasecmp`, which stops at a NUL: sent on,
//! `CONFIG "GET\0<n>" requirepass` is `CONFIG GET requirepass` for about one `n` in
//! eight, and `"AUTH\0<n>" default <service password>` an AUTH as the service user for
//! one in a few hundred. turnstile forwards neither: a name, or an `ACL`/`CLIENT`/
//! `CONFIG` subcommand, with a NUL in it is answered as Redis answers a name it does
//! not find. The oracle is a real Redis: for every suffix it does not happen to
//! resolve, its reply to the same bytes must be turnstile's, byte for byte.

mod common;

use common::*;

/// The upstream's own password: the secret the smuggled names were after.
const SVC: &str = "Svc-secret-nul-frobozz";
/// Suffixes tried per form: enough that, forwarded, each form would hit (the
/// subcommand forms about one in eight, AUTH about one in 256).
const TRIES: usize = 3000;

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    encode(&refs)
}

/// `template` with `{}` in one argument replaced by `\0<n>`.
fn form(template: &[&str], n: usize) -> Vec<Vec<u8>> {
    template.iter().map(|a| a.replace("{}", &format!("\0{n}")).into_bytes()).collect()
}

/// The same `TRIES` requests pipelined on an authenticated connection; their replies.
async fn replies_to(conn: &mut Conn, template: &[&str]) -> Vec<Vec<u8>> {
    let all: Vec<u8> = (0..TRIES).flat_map(|n| multibulk(&form(template, n))).collect();
    conn.send(&all).await;
    let mut out = Vec::with_capacity(TRIES);
    for _ in 0..TRIES {
        out.push(conn.reply().await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_names_never_reach_what_turnstile_answers() {
    let upstream = Redis::start(&["--requirepass", SVC]);
    let proxy = Proxy::with(ProxyOptions::new(&format!("redis://:{SVC}@{}", upstream.addr()))).await;
    proxy.add_default("pw1").await;
    let oracle = Redis::start(&["--requirepass", "pw1"]);

    let mut ours = proxy.authed("pw1").await;
    let mut theirs = Conn::connect(&oracle.addr()).await;
    assert_eq!(theirs.cmd(&["AUTH", "pw1"]).await, b"+OK\r\n");

    let forms: &[&[&str]] = &[
        &["CONFIG", "GET{}", "requirepass"],
        &["CONFIG{}", "GET", "requirepass"],
        &["config", "get{}", "*"],
        &["AUTH{}", "default", SVC],
        // Version 2: an oracle that does resolve it stays in RESP2 for what follows.
        &["HELLO{}", "2", "AUTH", "default", SVC],
        &["ACL", "LIST{}"],
        &["ACL", "GETUSER{}", "default"],
        &["CLIENT", "INFO{}"],
        &["GET{}", "k"],
    ];
    for template in forms {
        let got = replies_to(&mut ours, template).await;
        let want = replies_to(&mut theirs, template).await;
        let mut compared = 0;
        for (n, (g, w)) in got.iter().zip(&want).enumerate() {
            let shown = show(g);
            // (A request that carries the password gets it quoted back, as Redis
            // quotes the arguments of a name it does not find: its own bytes.)
            if !template.contains(&SVC) {
                assert!(!shown.contains(SVC), "{template:?} #{n} showed the service password: {shown}");
            }
            assert!(!shown.contains("__turnstile"), "{template:?} #{n} showed an upstream user: {shown}");
            assert!(g.starts_with(b"-ERR unknown "), "{template:?} #{n} was not refused: {shown}");
            // Where the oracle resolved the name by chance, it ran the command: only
            // its "not found" replies are Redis's answer to compare with.
            if w.starts_with(b"-ERR unknown ") {
                assert_eq!(shown, show(w), "{template:?} #{n}");
                compared += 1;
            }
        }
        assert!(compared * 10 >= TRIES * 8, "{template:?}: only {compared} of {TRIES} compared with Redis");
    }
    // Nothing of it went upstream (the service connection's own AUTH is no error).
    assert_eq!(upstream_errors(&upstream, Some(SVC)).await, 0);
    // The connection still acts with the default user's rights, no more.
    assert_eq!(show(&ours.cmd(&["ACL", "WHOAMI"]).await), "$7\r\ndefault\r\n");
    let refused = show(&ours.cmd(&["CONFIG", "SET", "maxmemory", "12345"]).await);
    assert!(refused.starts_with("-NOPERM"), "{refused}");
    let mut service = Conn::connect(&upstream.addr()).await;
    assert_eq!(service.cmd(&["AUTH", SVC]).await, b"+OK\r\n");
    assert_eq!(
        show(&service.cmd(&["CONFIG", "GET", "maxmemory"]).await),
        "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    );
}

/// How many `-ERR` replies the upstream has given (`INFO errorstats`): forwarded, a
/// name it does not find would be one.
async fn upstream_errors(upstream: &Redis, password: Option<&str>) -> u64 {
    let mut c = Conn::connect(&upstream.addr()).await;
    if let Some(pw) = password {
        assert_eq!(c.cmd(&["AUTH", pw]).await, b"+OK\r\n");
    }
    let info = String::from_utf8(c.cmd(&["INFO", "errorstats"]).await).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("errorstat_ERR:count="))
        .map_or(0, |n| n.split(',').next().unwrap().trim().parse().unwrap())
}

/// The first suffix `n` for which the oracle does not resolve `template`.
async fn unresolved(oracle: &mut Conn, template: &[&str]) -> usize {
    for n in 0..100 {
        oracle.send(&multibulk(&form(template, n))).await;
        let reply = oracle.reply().await;
        if reply.starts_with(b"-ERR unknown ") {
            return n;
        }
    }
    panic!("Redis resolved {template:?} for 100 suffixes in a row");
}

/// Inside MULTI, Redis refuses a name it does not find and then the whole EXEC
/// (`-EXECABORT`); turnstile answers the name itself and the transaction fails the
/// same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_with_a_smuggled_name_fails_as_in_redis() {
    let upstream = Redis::start(&[]);
    let proxy = Proxy::start(&upstream, &["pw1"]).await;
    let oracle = Redis::start(&["--requirepass", "pw1"]);
    let mut probe = Conn::connect(&oracle.addr()).await;
    assert_eq!(probe.cmd(&["AUTH", "pw1"]).await, b"+OK\r\n");

    let get = form(&["GET{}", "k:multi"], unresolved(&mut probe, &["GET{}", "k:multi"]).await);
    let config = form(
        &["CONFIG", "GET{}", "maxmemory"],
        unresolved(&mut probe, &["CONFIG", "GET{}", "maxmemory"]).await,
    );
    for (what, smuggled) in [("a name", get), ("a subcommand", config)] {
        let mut input = cmd_bytes(&["AUTH", "pw1"]);
        input.extend(cmd_bytes(&["MULTI"]));
        input.extend(cmd_bytes(&["SET", "k:multi", "v"]));
        input.extend(multibulk(&smuggled));
        input.extend(cmd_bytes(&["EXEC"]));
        input.extend(cmd_bytes(&["GET", "k:multi"]));
        // And after the failed transaction, one that works.
        input.extend(cmd_bytes(&["MULTI"]));
        input.extend(cmd_bytes(&["INCR", "k:count"]));
        input.extend(cmd_bytes(&["EXEC"]));
        let mut a = Conn::connect(&oracle.addr()).await;
        let mut b = proxy.connect().await;
        a.send(&input).await;
        b.send(&input).await;
        let (want, got) = (show(&a.replies(9).await), show(&b.replies(9).await));
        assert!(want.contains("-EXECABORT"), "{what}: {want}");
        assert_eq!(got, want, "{what}");
    }
}

/// A request too large to hold (turnstile streams those upstream as they arrive)
/// whose name or subcommand has a NUL is held whole and answered all the same, the
/// long argument being the name itself or another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_with_a_smuggled_name_are_answered_whole() {
    let upstream = Redis::start(&[]);
    let proxy = Proxy::start(&upstream, &["pw1"]).await;
    let oracle = Redis::start(&["--requirepass", "pw1"]);
    let long = "x".repeat(200_000);
    let long_name = format!("AUTH{{}}{long}");
    let long_sub = format!("GET{{}}{long}");
    let templates: [&[&str]; 3] =
        [&["AUTH{}", "default", &long], &[&long_name, "default", "pw1"], &["CONFIG", &long_sub, "maxmemory"]];
    for template in templates {
        let mut probe = Conn::connect(&oracle.addr()).await;
        assert_eq!(probe.cmd(&["AUTH", "pw1"]).await, b"+OK\r\n");
        let n = unresolved(&mut probe, template).await;
        let mut input = cmd_bytes(&["AUTH", "pw1"]);
        input.extend(multibulk(&form(template, n)));
        input.extend(cmd_bytes(&["PING"]));
        let mut a = Conn::connect(&oracle.addr()).await;
        let mut b = proxy.connect().await;
        a.send(&input).await;
        b.send(&input).await;
        let (want, got) = (show(&a.replies(3).await), show(&b.replies(3).await));
        assert!(want.contains("-ERR unknown "), "{want}");
        assert_eq!(got, want);
        assert_eq!(upstream_errors(&upstream, None).await, 0, "{:?} went upstream", &template[0][..8]);
    }
}
