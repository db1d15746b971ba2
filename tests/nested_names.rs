//! Errors nested inside replies never show turnstile's upstream user names: an
//! `EXEC` array element, a script's `redis.pcall` error returned in a table (or a
//! RESP3 map), an `FCALL` result. Valkey 8 (a Redis 7.2-line server) names the
//! user in those errors; the oracle is a real Valkey whose user was made with
//! `ACL SETUSER alice on >pw <rule>`, turnstile's alice has the same rule, and the
//! same bytes to both get the same bytes back — in RESP2 and RESP3, pipelined, on
//! the lane, on a connection of its own and inside `MULTI` (pinned), including a
//! rule changed between `MULTI` and `EXEC` (oracle: `ACL SETUSER alice -get`;
//! turnstile: `PUT /v1/redis_acls`). No reply of turnstile's holds `__turnstile:`.
//! The same cases against Debian's Redis 7.0 (which says "this user") must agree too.

mod common;

use std::time::Duration;

use common::authz::*;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turnstile::authz::FIXED_DENIALS;

/// alice's rule on both sides, and what it becomes before `EXEC` in the live case.
const RULE: &str = "+@all -hset ~cache:*";
const LESS: &str = "+@all -hset -get ~cache:*";

/// A table holding a denied command's error (nested one deep).
const NESTED: &str = "return {redis.pcall('HSET', KEYS[1], 'f', 'v'), 1}";
/// Two deep, and a denied key beside it.
const DEEPER: &str = "return {1, {redis.pcall('HSET', KEYS[1], 'f', 'v'), redis.pcall('GET', 'secret:1')}}";
/// A map (RESP3 `%`; an array in RESP2) holding the error.
const MAP: &str = "return {map={a=redis.pcall('HSET', KEYS[1], 'f', 'v')}}";
/// The error as the whole reply (rewritten already before nested errors were).
const TOP: &str = "return redis.pcall('HSET', KEYS[1], 'f', 'v')";
/// Run at `EXEC` after the rule lost GET: the error is an element of EXEC's array.
const CALL_GET: &str = "return redis.call('GET', KEYS[1])";
const PCALL_GET: &str = "return {redis.pcall('GET', KEYS[1])}";
/// A function whose result holds the error (`FCALL`).
const LIBRARY: &str = "#!lua name=nested\nredis.register_function('pc', function(keys, args) \
                       return {redis.pcall('HSET', keys[1], 'f', 'v')} end)";

fn eval(script: &str) -> Vec<&str> {
    vec!["EVAL", script, "1", "cache:h"]
}

/// One connection's exchange: steps written in turn (each a pipeline, written in
/// one go, one reply per command), each step's replies read before the next; between the two steps of a
/// `live` case alice's rule is changed on the side the connection goes to.
struct Case {
    name: &'static str,
    steps: Vec<Vec<Vec<&'static str>>>,
}

fn case(name: &'static str, cmds: Vec<Vec<&'static str>>) -> Case {
    Case { name, steps: vec![cmds] }
}

fn cases() -> Vec<Case> {
    let many = |n: usize| (0..n).map(|_| eval(NESTED)).collect::<Vec<_>>();
    let mut multi_many = vec![vec!["MULTI"]];
    multi_many.extend(many(60));
    multi_many.push(vec!["EXEC"]);
    vec![
        // Lane commands only: the lane carries them (top-level errors).
        case(
            "lane: denied command in a pipeline",
            vec![
                vec!["GET", "cache:1"],
                vec!["HSET", "cache:h", "f", "v"],
                vec!["MGET", "cache:1", "cache:2"],
            ],
        ),
        // EVAL / FCALL go on a connection of their own.
        case(
            "own connection: script tables, pipelined",
            vec![
                vec!["GET", "cache:1"],
                eval(NESTED),
                eval(DEEPER),
                eval(MAP),
                eval(TOP),
                vec!["FCALL", "pc", "1", "cache:h"],
                vec!["GET", "cache:1"],
            ],
        ),
        // Replies that span several reads: errors cut by a read's end.
        case("own connection: 120 nested errors in one pipeline", many(120)),
        case(
            "pinned: EXEC holding script errors",
            vec![
                vec!["MULTI"],
                eval(NESTED),
                vec!["GET", "cache:1"],
                eval(DEEPER),
                eval(MAP),
                vec!["FCALL", "pc", "1", "cache:h"],
                vec!["EXEC"],
                eval(TOP),
            ],
        ),
        case("pinned: EXEC of 60 nested errors", multi_many),
        Case {
            name: "live: the rule loses GET between MULTI and EXEC",
            steps: vec![
                vec![
                    vec!["MULTI"],
                    vec!["GET", "cache:1"],
                    vec!["EVAL", CALL_GET, "1", "cache:1"],
                    vec!["EVAL", PCALL_GET, "1", "cache:1"],
                ],
                vec![vec!["EXEC"], vec!["GET", "cache:1"], eval(NESTED)],
            ],
        },
    ]
}

/// Each side: where alice connects, and how her rule changes and comes back.
trait Side {
    fn addr(&self) -> String;
    async fn set_rule(&mut self, rule: &str);
}

struct Oracle {
    redis: Redis,
    admin: Conn,
}

impl Side for Oracle {
    fn addr(&self) -> String {
        self.redis.addr()
    }

    async fn set_rule(&mut self, rule: &str) {
        let change = if rule == LESS { "-get" } else { "+get" };
        let got = self.admin.cmd(&["ACL", "SETUSER", "alice", change]).await;
        assert_eq!(show(&got), "+OK\r\n");
    }
}

struct Ours {
    stack: Stack,
    acl: u64,
}

impl Side for Ours {
    fn addr(&self) -> String {
        self.stack.db()
    }

    async fn set_rule(&mut self, rule: &str) {
        self.stack.ok("PUT", &format!("/v1/redis_acls/{}", self.acl), json!({ "acl": rule })).await;
    }
}

/// The same data and function on a server, through its control connection.
async fn seed(admin: &mut Conn) {
    for cmd in [
        &["FLUSHALL"][..],
        &["SET", "cache:1", "v1"],
        &["HSET", "cache:h", "f", "old"],
        &["SET", "secret:1", "s"],
        &["FUNCTION", "LOAD", "REPLACE", LIBRARY],
    ] {
        let got = admin.cmd(cmd).await;
        assert!(!got.starts_with(b"-"), "seeding {cmd:?}: {}", show(&got));
    }
}

/// Writes `input` and reads until `n` whole replies have come (or a close, a
/// timeout, unparsable bytes: then a `<…>` marker ends the output).
async fn exchange(stream: &mut TcpStream, input: &[u8], n: usize, out: &mut Vec<u8>) -> Result<(), String> {
    stream.write_all(input).await.map_err(|e| format!("<write failed: {e}>"))?;
    let mut framed = out.len();
    let mut chunk = vec![0u8; 64 * 1024];
    for got in 0..n {
        loop {
            match frame_len(&out[framed..]) {
                Ok(Some(len)) => {
                    framed += len;
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("<invalid RESP: {e}>")),
            }
            match tokio::time::timeout(REPLY_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(format!("<closed after {got} of {n} replies>")),
                Ok(Ok(k)) => out.extend_from_slice(&chunk[..k]),
                Err(_) => return Err("<timed out>".into()),
            }
        }
    }
    if framed < out.len() {
        return Err("<bytes beyond the replies asked for>".into());
    }
    Ok(())
}

/// Runs `case` as alice on `side` (RESP3 after `HELLO 3` if asked); the rule is
/// changed between steps and restored at the end.
async fn run_case(side: &mut impl Side, case: &Case, resp3: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(side.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let hello = if resp3 {
        cmd_bytes(&["HELLO", "3", "AUTH", "alice", USER_PW])
    } else {
        cmd_bytes(&["AUTH", "alice", USER_PW])
    };
    let mut out = Vec::new();
    let mut result = exchange(&mut stream, &hello, 1, &mut out).await;
    for (i, step) in case.steps.iter().enumerate() {
        if result.is_err() {
            break;
        }
        if i > 0 {
            side.set_rule(LESS).await;
        }
        let input: Vec<u8> = step.iter().flat_map(|c| cmd_bytes(c)).collect();
        result = exchange(&mut stream, &input, step.len(), &mut out).await;
    }
    if case.steps.len() > 1 {
        side.set_rule(RULE).await;
    }
    if let Err(marker) = result {
        out.extend_from_slice(marker.as_bytes());
    }
    normalise_ids(&out)
}

/// Every case on `server` (as oracle and as turnstile's upstream), both protocols.
/// `names_user`: the server puts the user's name in ACL errors (Valkey, 7.2+).
async fn nested_errors_answer_as(server: Redis, upstream: Redis, names_user: bool) {
    let oracle_redis = server;
    let mut admin = service_conn(&oracle_redis).await;
    oracle_user(&mut admin, "alice", RULE, FIXED_DENIALS).await;
    seed(&mut admin).await;
    let mut oracle = Oracle { redis: oracle_redis, admin };

    let stack = Stack::over(upstream, "", "").await;
    let (role, acl) = stack.role_with_rule("alice", RULE).await;
    stack.user("alice", &[role]).await;
    stack.grant(&[(role, acl)]).await;
    seed(&mut stack.service().await).await;
    let mut ours = Ours { stack, acl };

    let mut failures = Vec::new();
    let mut named = 0;
    for case in cases() {
        for resp3 in [false, true] {
            let a = run_case(&mut oracle, &case, resp3).await;
            let b = run_case(&mut ours, &case, resp3).await;
            let label = format!("{} ({})", case.name, if resp3 { "RESP3" } else { "RESP2" });
            assert!(
                !show(&b).contains("__turnstile:"),
                "{label}: an internal name reached the client: {}",
                show(&b)
            );
            // Each case must hold an error naming the user on the oracle, or agreeing
            // on it would show nothing.
            let here = show(&a).matches("User alice").count();
            assert!(!names_user || here > 0, "{label}: the oracle named no user: {}", show(&a));
            named += here;
            if a != b {
                failures.push(format!("{label}\n  oracle:    {:?}\n  turnstile: {:?}", show(&a), show(&b)));
            }
        }
    }
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
    eprintln!(
        "{} cases in RESP2 and RESP3 identical; {named} errors named the user on the oracle",
        cases().len()
    );
    // The live case left the rule as it was.
    let rule = ours.stack.ok("GET", &format!("/v1/redis_acls/{}", ours.acl), serde_json::Value::Null).await;
    assert_eq!(rule["acl"], RULE);
}

fn server_args() -> Vec<String> {
    vec!["--requirepass".into(), SVC.into(), "--dir".into(), scratch_dir()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_errors_show_the_clients_name_as_valkey_does() {
    let args = server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (Some(oracle), Some(upstream)) = (Redis::try_start_valkey(&args), Redis::try_start_valkey(&args))
    else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), nested_errors_answer_as(oracle, upstream, true))
        .await
        .expect("the cases took over two minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_errors_answer_as_redis_does() {
    let args = server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    nested_errors_answer_as(Redis::start(&args), Redis::start(&args), false).await;
}
