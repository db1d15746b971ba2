//! Everything after authentication is forwarded unchanged (transactions, pub/sub in
//! RESP2 and RESP3, client tracking, blocking commands, huge values, deep pipelines,
//! MONITOR, CLIENT REPLY, one upstream connection per client), on exact bytes
//! through turnstile against a real Redis.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PW: &str = "s3cret";
const WHOAMI: &[u8] = b"$7\r\ndefault\r\n";
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";

/// Asserts exact bytes, showing both sides as text on failure.
#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(show(got), show(want), "{what}");
}

/// Concatenated `cmd_bytes` of several commands: one pipeline, one write.
fn pipeline(cmds: &[&[&str]]) -> Vec<u8> {
    cmds.iter().flat_map(|c| cmd_bytes(c)).collect()
}

/// A RESP2 pub/sub frame `*3 <kind> <channel> :<count>`.
fn confirm(kind: &str, channel: &str, count: i64) -> Vec<u8> {
    format!("*3\r\n${}\r\n{kind}\r\n${}\r\n{channel}\r\n:{count}\r\n", kind.len(), channel.len()).into_bytes()
}

/// Reads the confirmations of an UNSUBSCRIBE/PUNSUBSCRIBE without arguments, one
/// per entry of `channels`. Redis walks its subscription dict, so the order is not
/// fixed; the counts go down to `rest` and each channel appears exactly once.
async fn read_unsubscribe_all(c: &mut Conn, kind: &str, channels: &[&str], rest: i64) {
    let mut seen = Vec::new();
    for i in 0..channels.len() {
        let r = c.reply().await;
        let count = rest + (channels.len() - 1 - i) as i64;
        let ch = channels
            .iter()
            .find(|ch| r == confirm(kind, ch, count))
            .unwrap_or_else(|| {
                panic!(
                    "reply {i} to {kind} (no args) is not a confirmation for one of {channels:?} with count {count}: {}",
                    show(&r)
                )
            });
        assert!(!seen.contains(ch), "{ch} confirmed twice");
        seen.push(*ch);
    }
}

/// Polls `INFO clients` on `c` until Redis reports `n` blocked clients.
async fn wait_blocked_clients(c: &mut Conn, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = format!("blocked_clients:{n}\r\n");
    loop {
        let info = c.cmd(&["INFO", "clients"]).await;
        if show(&info).contains(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never reported {want:?}; last INFO clients: {}",
            show(&info)
        );
        tokio::task::yield_now().await;
    }
}

/// The integer of a `:<n>\r\n` reply.
#[track_caller]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_watch() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut c = proxy.authed(PW).await;

    // One command at a time.
    same(&c.cmd(&["MULTI"]).await, b"+OK\r\n", "MULTI");
    same(&c.cmd(&["SET", "k", "10"]).await, b"+QUEUED\r\n", "SET queued");
    same(&c.cmd(&["INCR", "k"]).await, b"+QUEUED\r\n", "INCR queued");
    same(&c.cmd(&["EXEC"]).await, b"*2\r\n+OK\r\n:11\r\n", "EXEC");
    same(&c.cmd(&["GET", "k"]).await, b"$2\r\n11\r\n", "after EXEC");

    // The same as one pipeline.
    c.send(&pipeline(&[&["MULTI"], &["SET", "k", "1"], &["INCR", "k"], &["EXEC"]])).await;
    same(&c.replies(4).await, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n", "pipelined transaction");

    // DISCARD drops the queue.
    c.send(&pipeline(&[&["MULTI"], &["INCR", "k"], &["DISCARD"], &["GET", "k"]])).await;
    same(&c.replies(4).await, b"+OK\r\n+QUEUED\r\n+OK\r\n$1\r\n2\r\n", "DISCARD");

    // WATCH, a conflicting write from another connection, EXEC aborts.
    let mut other = proxy.authed(PW).await;
    same(&c.cmd(&["WATCH", "k"]).await, b"+OK\r\n", "WATCH");
    same(&other.cmd(&["SET", "k", "99"]).await, b"+OK\r\n", "conflict");
    same(&c.cmd(&["MULTI"]).await, b"+OK\r\n", "MULTI after WATCH");
    same(&c.cmd(&["INCR", "k"]).await, b"+QUEUED\r\n", "INCR queued");
    c.send(&cmd_bytes(&["EXEC"])).await;
    same(&c.reply().await, b"*-1\r\n", "EXEC after conflict");
    same(&c.cmd(&["GET", "k"]).await, b"$2\r\n99\r\n", "write kept");

    // WATCH without a conflict commits.
    c.send(&pipeline(&[&["WATCH", "k"], &["MULTI"], &["INCR", "k"], &["EXEC"]])).await;
    same(&c.replies(4).await, b"+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n:100\r\n", "WATCH without conflict");

    // A command error inside MULTI aborts EXEC, as in Redis.
    c.send(&pipeline(&[&["MULTI"], &["NOSUCHCMD"], &["EXEC"]])).await;
    let r = show(&c.replies(3).await);
    assert!(
        r.starts_with("+OK\r\n-ERR unknown command 'NOSUCHCMD'")
            && r.ends_with("\r\n-EXECABORT Transaction discarded because of previous errors.\r\n"),
        "{r}"
    );

    // Redis would queue ACL WHOAMI inside MULTI (`+QUEUED`) and answer it in EXEC's
    // array; turnstile answers it at once (a documented difference, see the README),
    // and the transaction around it is unaffected.
    c.send(&pipeline(&[&["MULTI"], &["ACL", "WHOAMI"], &["INCR", "k"], &["EXEC"]])).await;
    same(
        &c.replies(4).await,
        b"+OK\r\n$7\r\ndefault\r\n+QUEUED\r\n*1\r\n:101\r\n",
        "ACL WHOAMI inside MULTI (answered at once; documented difference)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_resp2() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut sub = proxy.authed(PW).await;
    let mut publisher = proxy.authed(PW).await;

    sub.send(&cmd_bytes(&["SUBSCRIBE", "ch1", "ch2"])).await;
    same(
        &sub.replies(2).await,
        &[confirm("subscribe", "ch1", 1), confirm("subscribe", "ch2", 2)].concat(),
        "SUBSCRIBE ch1 ch2",
    );
    same(&publisher.cmd(&["PUBLISH", "ch1", "hello"]).await, b":1\r\n", "PUBLISH receivers");
    same(&sub.reply().await, b"*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n", "message");
    same(&publisher.cmd(&["PUBLISH", "ch2", "bin\r\nary"]).await, b":1\r\n", "PUBLISH ch2");
    same(
        &sub.reply().await,
        b"*3\r\n$7\r\nmessage\r\n$3\r\nch2\r\n$8\r\nbin\r\nary\r\n",
        "message with CRLF in it",
    );
    // PING in RESP2 subscribed mode.
    same(&sub.cmd(&["PING"]).await, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", "PING while subscribed");
    same(&sub.cmd(&["PING", "hi"]).await, b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n", "PING hi while subscribed");
    // UNSUBSCRIBE without arguments: one confirmation per channel.
    sub.send(&cmd_bytes(&["UNSUBSCRIBE"])).await;
    read_unsubscribe_all(&mut sub, "unsubscribe", &["ch1", "ch2"], 0).await;
    // Normal commands work again.
    same(&sub.cmd(&["PING"]).await, b"+PONG\r\n", "PING after");
    same(&sub.cmd(&["SET", "a", "1"]).await, b"+OK\r\n", "SET after");
    same(&sub.cmd(&["GET", "a"]).await, b"$1\r\n1\r\n", "GET after");
    same(&publisher.cmd(&["PUBLISH", "ch1", "x"]).await, b":0\r\n", "nobody listens any more");

    // Pipeline: UNSUBSCRIBE (no args) + ACL WHOAMI + PING, after 2 subscriptions.
    sub.send(&cmd_bytes(&["SUBSCRIBE", "ch1", "ch2"])).await;
    same(
        &sub.replies(2).await,
        &[confirm("subscribe", "ch1", 1), confirm("subscribe", "ch2", 2)].concat(),
        "SUBSCRIBE again",
    );
    sub.send(&pipeline(&[&["UNSUBSCRIBE"], &["ACL", "WHOAMI"], &["PING"]])).await;
    read_unsubscribe_all(&mut sub, "unsubscribe", &["ch1", "ch2"], 0).await;
    same(&sub.reply().await, WHOAMI, "ACL WHOAMI after the confirmations");
    same(&sub.reply().await, b"+PONG\r\n", "PING last");

    // SUBSCRIBE + UNSUBSCRIBE (no args) + ACL WHOAMI + PING in one write: the
    // number of confirmations is only known once the subscriptions are made.
    sub.send(&pipeline(&[&["SUBSCRIBE", "a", "b", "c"], &["UNSUBSCRIBE"], &["ACL", "WHOAMI"], &["PING"]]))
        .await;
    same(
        &sub.replies(3).await,
        &[confirm("subscribe", "a", 1), confirm("subscribe", "b", 2), confirm("subscribe", "c", 3)].concat(),
        "SUBSCRIBE a b c",
    );
    read_unsubscribe_all(&mut sub, "unsubscribe", &["a", "b", "c"], 0).await;
    same(&sub.replies(2).await, b"$7\r\ndefault\r\n+PONG\r\n", "tail");

    // PSUBSCRIBE with a pattern, and pmessage.
    same(&sub.cmd(&["PSUBSCRIBE", "ne*"]).await, &confirm("psubscribe", "ne*", 1), "PSUBSCRIBE");
    same(&publisher.cmd(&["PUBLISH", "news", "hi"]).await, b":1\r\n", "PUBLISH to the pattern");
    same(&sub.reply().await, b"*4\r\n$8\r\npmessage\r\n$3\r\nne*\r\n$4\r\nnews\r\n$2\r\nhi\r\n", "pmessage");
    // A channel and a pattern at once: UNSUBSCRIBE (no args) drops only the channel.
    same(
        &sub.cmd(&["SUBSCRIBE", "news"]).await,
        &confirm("subscribe", "news", 2),
        "SUBSCRIBE next to a pattern",
    );
    same(&publisher.cmd(&["PUBLISH", "news", "both"]).await, b":2\r\n", "channel and pattern both receive");
    let two = show(&sub.replies(2).await);
    let msg = "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$4\r\nboth\r\n";
    let pmsg = "*4\r\n$8\r\npmessage\r\n$3\r\nne*\r\n$4\r\nnews\r\n$4\r\nboth\r\n";
    assert!(two == format!("{msg}{pmsg}") || two == format!("{pmsg}{msg}"), "{two}");
    // (No ACL WHOAMI while still subscribed: Redis refuses it there in RESP2.)
    sub.send(&pipeline(&[&["UNSUBSCRIBE"], &["PING"], &["PUNSUBSCRIBE"], &["ACL", "WHOAMI"], &["PING"]]))
        .await;
    same(
        &sub.replies(3).await,
        &[
            confirm("unsubscribe", "news", 1),
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n".to_vec(),
            confirm("punsubscribe", "ne*", 0),
        ]
        .concat(),
        "unsubscribing a channel, then a pattern",
    );
    same(&sub.replies(2).await, b"$7\r\ndefault\r\n+PONG\r\n", "not subscribed any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_push_and_tracking() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut sub = proxy.authed(PW).await;
    let mut publisher = proxy.authed(PW).await;

    let hello = sub.cmd(&["HELLO", "3"]).await;
    assert!(
        hello.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
            && show(&hello).contains("$5\r\nproto\r\n:3\r\n"),
        "{}",
        show(&hello)
    );
    sub.send(&cmd_bytes(&["SUBSCRIBE", "ch1", "ch2"])).await;
    same(
        &sub.replies(2).await,
        b">3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$3\r\nch2\r\n:2\r\n",
        "RESP3 subscribe confirmations",
    );
    same(&publisher.cmd(&["PUBLISH", "ch1", "hello"]).await, b":1\r\n", "PUBLISH");
    same(&sub.reply().await, b">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n", "message push");
    // RESP3 allows any command while subscribed; order must hold.
    sub.send(&pipeline(&[&["ACL", "WHOAMI"], &["GET", "k"]])).await;
    same(&sub.replies(2).await, b"$7\r\ndefault\r\n_\r\n", "WHOAMI + GET");
    // A push in the middle of a pipeline is not the reply to the command before it:
    // a PUBLISH to itself makes the push arrive just before PUBLISH's own reply.
    sub.send(&pipeline(&[
        &["PUBLISH", "ch2", "self"],
        &["ACL", "WHOAMI"],
        &["GET", "k"],
        &["ACL", "WHOAMI"],
    ]))
    .await;
    same(
        &sub.replies(5).await,
        b">3\r\n$7\r\nmessage\r\n$3\r\nch2\r\n$4\r\nself\r\n:1\r\n$7\r\ndefault\r\n_\r\n$7\r\ndefault\r\n",
        "self-PUBLISH push, then replies in order",
    );
    sub.send(&pipeline(&[&["UNSUBSCRIBE", "ch1"], &["ACL", "WHOAMI"]])).await;
    same(
        &sub.replies(2).await,
        b">3\r\n$11\r\nunsubscribe\r\n$3\r\nch1\r\n:1\r\n$7\r\ndefault\r\n",
        "UNSUBSCRIBE ch1",
    );
    sub.send(&pipeline(&[&["UNSUBSCRIBE"], &["ACL", "WHOAMI"], &["PING"]])).await;
    same(
        &sub.replies(3).await,
        b">3\r\n$11\r\nunsubscribe\r\n$3\r\nch2\r\n:0\r\n$7\r\ndefault\r\n+PONG\r\n",
        "UNSUBSCRIBE (no args) in RESP3",
    );

    // Client-side caching: invalidation pushes.
    let mut t = proxy.authed(PW).await;
    assert!(t.cmd(&["HELLO", "3"]).await.starts_with(b"%7\r\n"));
    same(&t.cmd(&["CLIENT", "TRACKING", "ON"]).await, b"+OK\r\n", "TRACKING ON");
    same(&publisher.cmd(&["SET", "k", "v1"]).await, b"+OK\r\n", "SET");
    same(&t.cmd(&["GET", "k"]).await, b"$2\r\nv1\r\n", "GET tracked");
    same(&publisher.cmd(&["SET", "k", "v2"]).await, b"+OK\r\n", "SET other");
    same(&t.reply().await, b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", "invalidation push");
    t.send(&pipeline(&[&["ACL", "WHOAMI"], &["PING"]])).await;
    same(&t.replies(2).await, b"$7\r\ndefault\r\n+PONG\r\n", "after invalidation");
    // Its own write: Redis 7 sends the invalidation right after the write's reply.
    // A push is out of band, so turnstile may deliver it after a reply of its own
    // that follows; the replies themselves must stay in order, and the push must
    // come exactly once, after the write's `+OK`.
    t.send(&pipeline(&[&["GET", "k"], &["SET", "k", "v3"], &["ACL", "WHOAMI"], &["PING"]])).await;
    let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n".to_vec();
    let mut frames = Vec::new();
    for _ in 0..5 {
        frames.push(t.reply().await);
    }
    let at: Vec<usize> = (0..5).filter(|&i| frames[i] == push).collect();
    let replies: Vec<String> = frames.iter().filter(|f| **f != push).map(|f| show(f)).collect();
    assert_eq!(
        replies,
        ["$2\r\nv2\r\n", "+OK\r\n", "$7\r\ndefault\r\n", "+PONG\r\n"],
        "self invalidation inside a pipeline: {frames:?}"
    );
    assert!(
        at.len() == 1 && at[0] >= 2,
        "invalidation push exactly once, after +OK: {:?}",
        frames.iter().map(|f| show(f)).collect::<Vec<_>>()
    );
    same(&t.cmd(&["PING"]).await, b"+PONG\r\n", "nothing left over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut blocked = proxy.authed(PW).await;
    let mut pusher = proxy.authed(PW).await;

    blocked.send(&cmd_bytes(&["BLPOP", "q", "0"])).await;
    wait_blocked_clients(&mut pusher, 1).await;
    same(&pusher.cmd(&["RPUSH", "q", "x"]).await, b":1\r\n", "RPUSH");
    same(&blocked.reply().await, b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n", "BLPOP result");
    same(&blocked.cmd(&["PING"]).await, b"+PONG\r\n", "usable after");
    wait_blocked_clients(&mut pusher, 0).await;

    // A local reply pipelined behind a blocked command waits for it.
    blocked
        .send(&pipeline(&[&["BLPOP", "q", "0"], &["ACL", "WHOAMI"], &["ECHO", "e"], &["ACL", "WHOAMI"]]))
        .await;
    wait_blocked_clients(&mut pusher, 1).await;
    same(&pusher.cmd(&["RPUSH", "q", "y"]).await, b":1\r\n", "RPUSH 2");
    same(
        &blocked.replies(4).await,
        b"*2\r\n$1\r\nq\r\n$1\r\ny\r\n$7\r\ndefault\r\n$1\r\ne\r\n$7\r\ndefault\r\n",
        "BLPOP first, then WHOAMI, ECHO, WHOAMI",
    );

    // A timeout gives the null array; XREAD BLOCK is woken by XADD.
    blocked.send(&cmd_bytes(&["BLPOP", "empty", "0.01"])).await;
    same(&blocked.reply().await, b"*-1\r\n", "BLPOP timeout");
    blocked.send(&pipeline(&[&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], &["ACL", "WHOAMI"]])).await;
    wait_blocked_clients(&mut pusher, 1).await;
    same(&pusher.cmd(&["XADD", "s", "1-1", "f", "v"]).await, b"$3\r\n1-1\r\n", "XADD");
    same(
        &blocked.replies(2).await,
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n$7\r\ndefault\r\n",
        "XREAD BLOCK, then WHOAMI",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_of_64_mb_round_trips() {
    const LEN: usize = 64 * 1024 * 1024;
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut c = proxy.authed(PW).await;
    // Not periodic on any power of two, and full of CR and LF bytes.
    let value: Vec<u8> = (0..LEN).map(|i| ((i % 251) ^ (i >> 13)) as u8).collect();
    let started = Instant::now();
    c.send(&encode(&[b"SET", b"big", &value])).await;
    same(&c.reply().await, b"+OK\r\n", "SET big");
    same(
        &c.cmd(&["STRLEN", "big"]).await,
        format!(":{LEN}\r\n").as_bytes(),
        "STRLEN big (upstream got every byte)",
    );
    c.send(&pipeline(&[&["GET", "big"], &["ACL", "WHOAMI"]])).await;
    let reply = c.reply().await;
    let header = format!("${LEN}\r\n");
    assert!(reply.starts_with(header.as_bytes()), "header: {}", show(&reply[..reply.len().min(40)]));
    assert!(reply.ends_with(b"\r\n"), "no CRLF after the payload");
    let payload = &reply[header.len()..reply.len() - 2];
    assert_eq!(payload.len(), LEN, "payload length");
    if let Some(i) = payload.iter().zip(&value).position(|(a, b)| a != b) {
        panic!(
            "payload differs first at byte {i}: got {:?}, want {:?}",
            &payload[i..(i + 16).min(LEN)],
            &value[i..(i + 16).min(LEN)]
        );
    }
    same(&c.reply().await, WHOAMI, "WHOAMI after the big reply");
    eprintln!("64 MB SET + GET took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_command_pipelines() {
    const N: usize = 10_000;
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut c = proxy.authed(PW).await;

    let incr = cmd_bytes(&["INCR", "n"]);
    c.send(&incr.repeat(N)).await;
    for i in 1..=N {
        let r = c.reply().await;
        assert_eq!(show(&r), format!(":{i}\r\n"), "reply {i} of {N}");
    }
    same(&c.cmd(&["GET", "n"]).await, b"$5\r\n10000\r\n", "final value");

    // Mixed: every 100th command is answered by turnstile itself.
    let whoami = cmd_bytes(&["ACL", "WHOAMI"]);
    let incr = cmd_bytes(&["INCR", "m"]);
    let mut p = Vec::new();
    let mut expected = Vec::with_capacity(N);
    let mut counter = 0;
    for i in 0..N {
        if i % 100 == 99 {
            p.extend_from_slice(&whoami);
            expected.push(show(WHOAMI));
        } else {
            p.extend_from_slice(&incr);
            counter += 1;
            expected.push(format!(":{counter}\r\n"));
        }
    }
    c.send(&p).await;
    for (i, want) in expected.iter().enumerate() {
        let r = c.reply().await;
        assert_eq!(&show(&r), want, "mixed pipeline, reply at position {i}");
    }
    same(&c.cmd(&["PING"]).await, b"+PONG\r\n", "nothing left over");
}

/// MONITOR shows every client's traffic, so no rule grants it (a fixed denial):
/// Redis refuses it with its own NOPERM. RESET on the pinned connection that
/// follows logs the client out, and the next AUTH logs the upstream session in
/// again, as that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_is_refused_then_reset_logs_in_again() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    proxy.add_user("alice", &["alice-pw"]).await;
    let mut mon = proxy.authed(PW).await;
    same(
        &mon.cmd(&["MONITOR"]).await,
        b"-NOPERM this user has no permissions to run the 'monitor' command\r\n",
        "MONITOR",
    );
    // Pinned by SELECT, then reset: logged out at turnstile.
    same(&mon.cmd(&["SELECT", "0"]).await, b"+OK\r\n", "SELECT");
    same(&mon.cmd(&["SET", "k", "v"]).await, b"+OK\r\n", "SET");
    same(&mon.cmd(&["RESET"]).await, b"+RESET\r\n", "RESET");
    same(&mon.cmd(&["PING"]).await, NOAUTH, "PING after RESET");
    same(&mon.cmd(&["AUTH", "alice", "alice-pw"]).await, b"+OK\r\n", "AUTH again");
    same(&mon.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n", "GET after AUTH");
    // Upstream, the session runs as alice's rule's user, not as the service user.
    let who = show(&mon.cmd(&["CLIENT", "GETNAME"]).await);
    assert_eq!(who, "$-1\r\n");
    let mut direct = redis.connect().await;
    let list = show(&direct.cmd(&["CLIENT", "LIST"]).await);
    let users: Vec<&str> = list.split_whitespace().filter_map(|f| f.strip_prefix("user=")).collect();
    assert!(users.iter().filter(|u| u.starts_with("__turnstile:")).count() >= 1, "{list}");
    assert_eq!(
        users.iter().filter(|u| **u == "default").count(),
        1,
        "only our own direct connection: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_off_skip_on() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut c = proxy.authed(PW).await;

    c.send(&pipeline(&[
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "a", "1"],
        &["ACL", "WHOAMI"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "a"],
    ]))
    .await;
    same(&c.replies(2).await, b"+OK\r\n$1\r\n1\r\n", "OFF ... ON");
    same(&c.cmd(&["PING"]).await, b"+PONG\r\n", "nothing extra after ON");

    // OFF and ON in separate writes.
    c.send(&cmd_bytes(&["CLIENT", "REPLY", "OFF"])).await;
    c.send(&cmd_bytes(&["INCR", "a"])).await;
    c.send(&cmd_bytes(&["ACL", "WHOAMI"])).await;
    same(&c.cmd(&["CLIENT", "REPLY", "ON"]).await, b"+OK\r\n", "first reply after OFF is ON's");
    same(&c.cmd(&["GET", "a"]).await, b"$1\r\n2\r\n", "INCR ran");

    // SKIP skips exactly the next reply (SKIP itself has none); local replies
    // after it are not affected.
    c.send(&pipeline(&[
        &["CLIENT", "REPLY", "SKIP"],
        &["SET", "b", "2"],
        &["GET", "b"],
        &["ACL", "WHOAMI"],
        &["CLIENT", "REPLY", "SKIP"],
        &["INCR", "b"],
        &["ACL", "WHOAMI"],
        &["INCR", "b"],
    ]))
    .await;
    same(&c.replies(4).await, b"$1\r\n2\r\n$7\r\ndefault\r\n$7\r\ndefault\r\n:4\r\n", "SKIP");
    // SKIP twice: the second SKIP is the skipped command, and it skips the next.
    c.send(&pipeline(&[
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "b"],
        &["PING"],
    ]))
    .await;
    same(&c.reply().await, b"+PONG\r\n", "SKIP SKIP");
    // SKIP then ON: ON clears the skip and is answered.
    c.send(&pipeline(&[
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "ON"],
        &["PING"],
        &["ACL", "WHOAMI"],
    ]))
    .await;
    same(&c.replies(3).await, b"+OK\r\n+PONG\r\n$7\r\ndefault\r\n", "SKIP then ON");
    // OFF then SKIP: still off until ON.
    c.send(&pipeline(&[
        &["CLIENT", "REPLY", "OFF"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "b"],
        &["ACL", "WHOAMI"],
        &["CLIENT", "REPLY", "ON"],
        &["PING"],
    ]))
    .await;
    same(&c.replies(2).await, b"+OK\r\n+PONG\r\n", "OFF then SKIP");
    same(&c.cmd(&["ACL", "WHOAMI"]).await, WHOAMI, "all back on");

    // The cases below diverge from Redis (see the messages). Mismatches are
    // collected so one run reports all of them; each is printed as it is found.
    let mut wrong: Vec<String> = Vec::new();
    let mut soft = |got: Vec<u8>, want: &[u8], what: &str| {
        if got != want {
            let m = format!("{what}: got {:?}, want {:?}", show(&got), show(want));
            eprintln!("MISMATCH {m}");
            wrong.push(m);
        }
    };

    // Redis still sends pub/sub confirmations (pushes) to a client whose next reply
    // is skipped; ACL WHOAMI must come after the UNSUBSCRIBE confirmations.
    let mut d = proxy.authed(PW).await;
    d.send(&pipeline(&[
        &["CLIENT", "REPLY", "SKIP"],
        &["SUBSCRIBE", "x", "y"],
        &["UNSUBSCRIBE"],
        &["ACL", "WHOAMI"],
        &["PING"],
    ]))
    .await;
    // A hang is one of the ways this goes wrong; bound it below the harness's
    // timeout so that every mismatch in this test is still reported.
    let mut frames = Vec::new();
    let complete = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..6 {
            frames.push(d.reply().await);
        }
    })
    .await
    .is_ok();
    if !complete {
        frames.push(b"<then nothing within 10 s>".to_vec());
    }
    let unsub_order = if frames.contains(&confirm("unsubscribe", "x", 1)) { ["x", "y"] } else { ["y", "x"] };
    soft(
        frames.concat(),
        &[
            confirm("subscribe", "x", 1),
            confirm("subscribe", "y", 2),
            confirm("unsubscribe", unsub_order[0], 1),
            confirm("unsubscribe", unsub_order[1], 0),
            WHOAMI.to_vec(),
            b"+PONG\r\n".to_vec(),
        ]
        .concat(),
        "SKIP + SUBSCRIBE x y + UNSUBSCRIBE + ACL WHOAMI + PING",
    );

    // SKIP applies to the next command Redis *sees*. A command turnstile answers
    // itself is skipped (Redis would skip it too), so the upstream's pending skip
    // must not swallow the reply of the forwarded command after it.
    let mut e = proxy.authed(PW).await;
    e.send(&pipeline(&[&["CLIENT", "REPLY", "SKIP"], &["ACL", "WHOAMI"], &["PING"], &["ECHO", "after"]]))
        .await;
    // A hang is the failure to expect here; bounded as above.
    let got = tokio::time::timeout(Duration::from_secs(10), e.replies(2))
        .await
        .unwrap_or_else(|_| b"<nothing within 10 s>".to_vec());
    soft(got, b"+PONG\r\n$5\r\nafter\r\n", "SKIP + ACL WHOAMI + PING + ECHO after");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `CLIENT ID` is about the connection, so asking for it takes the client off the
/// shared upstream connection: from then on it has one of its own, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_needs_its_own_connection_keeps_it() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &[PW]).await;
    let mut a = proxy.authed(PW).await;
    let mut b = proxy.authed(PW).await;

    let id_a = integer(&a.cmd(&["CLIENT", "ID"]).await);
    let id_b = integer(&b.cmd(&["CLIENT", "ID"]).await);
    assert_ne!(id_a, id_b, "two clients share an upstream connection");

    // One at a time, interleaved with other commands and local replies.
    for i in 0..200 {
        same(&a.cmd(&["INCR", "x"]).await, format!(":{}\r\n", i + 1).as_bytes(), "INCR");
        same(&a.cmd(&["ACL", "WHOAMI"]).await, WHOAMI, "WHOAMI");
        assert_eq!(integer(&a.cmd(&["CLIENT", "ID"]).await), id_a, "round {i}");
    }
    // In one deep pipeline.
    a.send(&cmd_bytes(&["CLIENT", "ID"]).repeat(1000)).await;
    for i in 0..1000 {
        assert_eq!(integer(&a.reply().await), id_a, "pipelined CLIENT ID {i}");
    }
    // Re-authenticating (successfully or not) keeps the connection.
    same(&a.cmd(&["AUTH", PW]).await, b"+OK\r\n", "AUTH again");
    same(
        &a.cmd(&["AUTH", "wrong"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        "failed AUTH",
    );
    assert_eq!(integer(&a.cmd(&["CLIENT", "ID"]).await), id_a, "after AUTH");
    // RESET keeps the upstream connection for the next authentication.
    same(&a.cmd(&["RESET"]).await, b"+RESET\r\n", "RESET");
    same(&a.cmd(&["AUTH", PW]).await, b"+OK\r\n", "AUTH after RESET");
    assert_eq!(integer(&a.cmd(&["CLIENT", "ID"]).await), id_a, "after RESET");
    assert_eq!(integer(&b.cmd(&["CLIENT", "ID"]).await), id_b, "b unchanged");
    // A third client gets its own again.
    let mut c = proxy.authed(PW).await;
    let id_c = integer(&c.cmd(&["CLIENT", "ID"]).await);
    assert!(id_c != id_a && id_c != id_b, "{id_a} {id_b} {id_c}");
}
