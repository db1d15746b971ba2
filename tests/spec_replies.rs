//! Every row and rule of `resp-auth.md`, checked on exact bytes through a real socket.

mod common;

use common::*;

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_turnstile_makes_itself() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    let mut c = proxy.connect().await;
    assert_eq!(c.cmd(&["GET", "k"]).await, NOAUTH);
    assert_eq!(c.cmd(&["PING"]).await, NOAUTH);
    assert_eq!(c.cmd(&["AUTH", "wrong"]).await, WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "nosuchuser", "s3cret"]).await, WRONGPASS);
    assert_eq!(c.cmd(&["AUTH"]).await, b"-ERR wrong number of arguments for 'auth' command\r\n");
    assert_eq!(c.cmd(&["AUTH", "a", "b", "c"]).await, b"-ERR syntax error\r\n");
    assert_eq!(
        c.cmd(&["HELLO", "3"]).await,
        &b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"[..]
    );
    assert_eq!(c.cmd(&["HELLO", "4"]).await, b"-NOPROTO unsupported protocol version\r\n");
    assert_eq!(c.cmd(&["HELLO", "3", "AUTH"]).await, b"-ERR Syntax error in HELLO option 'AUTH'\r\n");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]).await, NOAUTH);
    assert_eq!(c.cmd(&["AUTH", "s3cret"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["PING"]).await, b"+PONG\r\n");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]).await, b"$7\r\ndefault\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_auth_returns_the_upstreams_hello_in_the_asked_protocol() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    let mut c = proxy.connect().await;
    let reply = c.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]).await;
    assert!(reply.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), "{}", show(&reply));
    assert!(show(&reply).contains("$5\r\nproto\r\n:3\r\n"));
    // RESP3 now: a map-returning command comes back as a map.
    let r = c.cmd(&["CONFIG", "GET", "maxmemory"]).await;
    assert!(r.starts_with(b"%1\r\n"), "{}", show(&r));

    let mut c2 = proxy.connect().await;
    let reply = c2.cmd(&["HELLO", "2", "AUTH", "default", "s3cret", "SETNAME", "app1"]).await;
    assert!(reply.starts_with(b"*14\r\n$6\r\nserver\r\n"), "{}", show(&reply));
    assert_eq!(c2.cmd(&["CLIENT", "GETNAME"]).await, b"$4\r\napp1\r\n");
    let mut c3 = proxy.connect().await;
    assert_eq!(c3.cmd(&["HELLO", "3", "AUTH", "default", "nope"]).await, WRONGPASS);
    assert_eq!(c3.cmd(&["PING"]).await, NOAUTH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_says_ok_and_closes() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    let mut c = proxy.connect().await;
    c.send(&cmd_bytes(&["QUIT"])).await;
    assert_eq!(c.read_to_close().await, b"+OK\r\n");
    let mut c = proxy.authed("s3cret").await;
    c.send(&[cmd_bytes(&["SET", "a", "1"]), cmd_bytes(&["QUIT"]), cmd_bytes(&["GET", "a"])].concat()).await;
    assert_eq!(c.read_to_close().await, b"+OK\r\n+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_work_like_arrays() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["my pw"]).await;
    let mut c = proxy.connect().await;
    c.send(b"PING\r\n").await;
    assert_eq!(c.reply().await, NOAUTH);
    c.send(b"AUTH \"my pw\"\r\nPING\r\nSET k 'v w'\nGET k\r\n").await;
    assert_eq!(c.replies(4).await, b"+OK\r\n+PONG\r\n+OK\r\n$3\r\nv w\r\n");
    // Blank lines are ignored, as by Redis.
    c.send(b"\r\n   \r\nPING\r\n").await;
    assert_eq!(c.reply().await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_limits_and_protocol_errors_close() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    let cases: &[(&[u8], &[u8])] = &[
        (b"*11\r\n", b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
        (b"*1\r\n$16385\r\n", b"-ERR Protocol error: unauthenticated bulk length\r\n"),
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"ECHO \"unterminated\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    ];
    for (input, expected) in cases {
        let mut c = proxy.connect().await;
        c.send(input).await;
        assert_eq!(show(&c.read_to_close().await), show(expected), "input {:?}", show(input));
    }
    // Exactly at the limits is fine: 10 elements, 16384-byte bulk.
    let mut c = proxy.connect().await;
    let ten: Vec<&str> = std::iter::repeat_n("x", 10).collect();
    assert_eq!(c.cmd(&ten).await, NOAUTH);
    let big = "y".repeat(16384);
    assert_eq!(c.cmd(&["AUTH", &big]).await, WRONGPASS);
    // An inline line over 64 KiB with no newline.
    let mut c = proxy.connect().await;
    c.send(&vec![b'a'; 64 * 1024 + 10]).await;
    assert_eq!(c.read_to_close().await, b"-ERR Protocol error: too big inline request\r\n");
    // After AUTH the limits no longer apply.
    let mut c = proxy.authed("s3cret").await;
    let args: Vec<String> = (0..21).map(|i| i.to_string()).collect();
    let mut cmd = vec!["RPUSH", "list"];
    cmd.extend(args.iter().map(String::as_str));
    assert_eq!(c.cmd(&cmd).await, b":21\r\n");
    let v = "z".repeat(100_000);
    assert_eq!(c.cmd(&["SET", "big", &v]).await, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_before_a_protocol_error_are_delivered_first() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    let mut c = proxy.connect().await;
    c.send(b"AUTH s3cret\r\nPING\r\n*1\r\n$x\r\n").await;
    assert_eq!(
        show(&c.read_to_close().await),
        "+OK\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_rules() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    proxy.add_user("alice", &["alice-pw"]).await;
    let mut c = proxy.connect().await;
    // AUTH <pw> is AUTH default <pw>.
    assert_eq!(c.cmd(&["AUTH", "default", "s3cret"]).await, b"+OK\r\n");
    // A failed AUTH leaves the connection authenticated as before.
    assert_eq!(c.cmd(&["AUTH", "wrong"]).await, WRONGPASS);
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]).await, b"$7\r\ndefault\r\n");
    // A successful AUTH as another user switches identity.
    assert_eq!(c.cmd(&["AUTH", "alice", "alice-pw"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]).await, b"$5\r\nalice\r\n");
    assert_eq!(c.cmd(&["AUTH", "alice", "s3cret"]).await, WRONGPASS);
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]).await, b"$5\r\nalice\r\n");
    // RESET de-authenticates, and the upstream connection stays usable.
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["RESET"]).await, b"+RESET\r\n");
    assert_eq!(c.cmd(&["GET", "k"]).await, NOAUTH);
    assert_eq!(c.cmd(&["AUTH", "s3cret"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n");
    // RESET before any upstream connection exists.
    let mut c = proxy.connect().await;
    assert_eq!(c.cmd(&["RESET"]).await, b"+RESET\r\n");
    assert_eq!(c.cmd(&["PING"]).await, NOAUTH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_only_admitted_where_their_roles_allow() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    proxy.directory.set_user("bob", vec![99]).unwrap();
    proxy
        .directory
        .change(&turnstile::auth::SetId::User("bob".into()), turnstile::auth::SetChange::Add, b"bob-pw")
        .await
        .unwrap();
    let mut c = proxy.connect().await;
    // Same reply as a wrong password: which part was wrong is not revealed.
    assert_eq!(c.cmd(&["AUTH", "bob", "bob-pw"]).await, WRONGPASS);
    proxy.directory.set_user("bob", vec![99, 1]).unwrap();
    assert_eq!(c.cmd(&["AUTH", "bob", "bob-pw"]).await, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_default_user_and_empty_sets_refuse_auth() {
    let redis = Redis::start(&[]);
    let mut o = ProxyOptions::new(&format!("redis://{}", redis.addr()));
    o.default_user = false;
    let proxy = Proxy::with(o).await;
    proxy.add_default("s3cret").await;
    let mut c = proxy.connect().await;
    assert_eq!(c.cmd(&["AUTH", "s3cret"]).await, WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "default", "s3cret"]).await, WRONGPASS);
    // Secure by default: a database with no default password admits nobody.
    let proxy = Proxy::start(&redis, &[]).await;
    let mut c = proxy.connect().await;
    assert_eq!(c.cmd(&["AUTH", ""]).await, WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "anything"]).await, WRONGPASS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_mixing_auth_and_commands_stay_in_order() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["s3cret"]).await;
    let mut c = proxy.connect().await;
    // The spec's example, in one packet.
    c.send(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n").await;
    assert_eq!(c.replies(2).await, b"+OK\r\n+PONG\r\n");
    // Intercepted commands in the middle of forwarded ones.
    let mut p = Vec::new();
    for args in [
        &["SET", "a", "1"][..],
        &["ACL", "WHOAMI"],
        &["GET", "a"],
        &["AUTH", "bad"],
        &["INCR", "a"],
        &["AUTH", "s3cret"],
        &["GET", "a"],
        &["HELLO", "2"],
        &["ECHO", "end"],
    ] {
        p.extend(cmd_bytes(args));
    }
    c.send(&p).await;
    let out = c.replies(9).await;
    let s = show(&out);
    let expected_prefix = "+OK\r\n$7\r\ndefault\r\n$1\r\n1\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n:2\r\n+OK\r\n$1\r\n2\r\n*14\r\n";
    assert!(s.starts_with(expected_prefix), "{s}");
    assert!(s.ends_with("$3\r\nend\r\n"), "{s}");
}
