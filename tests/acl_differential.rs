//! Rules are enforced by Redis itself: the same bytes sent to a real Redis whose users
//! were made with `ACL SETUSER <name> on >pw <rule>` (the oracle) and to turnstile with
//! that rule on the user's role get the same bytes back, case by case, on fresh
//! connections, for allowed and denied commands, keys (`~`, `%R~`, `%W~`), channels,
//! transactions, scripts, `SORT … BY`, selectors, the `ACL` subcommands a client
//! may use, and identity switches (AUTH, RESET, HELLO AUTH) on one connection. The
//! oracle's users also get `turnstile::authz::FIXED_DENIALS` (at the root and in
//! every selector), as turnstile's upstream users do.
//!
//! Not compared here: `ACL USERS` / `ACL LIST` (they list this database's users, not
//! the server's: `tests/authorization.rs` checks them), and `CONFIG GET` of patterns
//! (answered from a list of non-secret parameters; the same file checks them).

mod common;

use common::authz::*;
use common::*;
use turnstile::authz::FIXED_DENIALS;

/// The users of both sides and their rules (one role and one redis_acl each).
const USERS: &[(&str, &str)] = &[
    ("alice", "+@read ~cache:*"),
    ("bob", "+@all ~*"),
    ("carol", "+@all ~cache:* &news:*"),
    ("dave", "+@all %R~r:* %W~w:* ~both:*"),
    ("erin", "+@read ~ro:* (+set ~rw:*)"),
    ("frank", "-@all +get +multi +exec +eval ~f:*"),
    ("gina", "+@all -@dangerous ~* &*"),
];

/// The same data on both servers, written with the control credential before each case.
const SEED: &[&[&str]] = &[
    &["FLUSHALL"],
    &["SET", "cache:1", "v1"],
    &["RPUSH", "cache:l", "3", "1", "2"],
    &["SET", "cache:w_1", "30"],
    &["SET", "cache:w_2", "20"],
    &["SET", "cache:w_3", "10"],
    &["HSET", "cache:h", "f", "v"],
    &["SET", "secret:1", "s"],
    &["SET", "r:1", "rv"],
    &["SET", "w:1", "wv"],
    &["SET", "both:1", "bv"],
    &["SET", "ro:1", "rov"],
    &["SET", "rw:1", "rwv"],
    &["SET", "f:1", "fv"],
];

const GET_KEY: &str = "return redis.call('get', KEYS[1])";
const GET_SECRET: &str = "return redis.call('get', 'secret:1')";
const PCALL_SECRET: &str = "return redis.pcall('get', 'secret:1')";

struct Case {
    name: &'static str,
    user: &'static str,
    resp3: bool,
    cmds: Vec<Vec<&'static str>>,
    /// Replies after the AUTH / HELLO one (more than one per command for pub/sub).
    replies: usize,
}

/// A RESP2 case: `AUTH <user> pw`, then `cmds` written in one go, one reply each.
fn c(name: &'static str, user: &'static str, cmds: &[&[&'static str]]) -> Case {
    Case { name, user, resp3: false, cmds: cmds.iter().map(|a| a.to_vec()).collect(), replies: cmds.len() }
}

impl Case {
    /// Starts with `HELLO 3 AUTH <user> pw` instead.
    fn resp3(mut self) -> Self {
        self.resp3 = true;
        self
    }

    fn replies(mut self, n: usize) -> Self {
        self.replies = n;
        self
    }

    fn input(&self) -> Vec<u8> {
        let mut out = if self.resp3 {
            cmd_bytes(&["HELLO", "3", "AUTH", self.user, USER_PW])
        } else {
            cmd_bytes(&["AUTH", self.user, USER_PW])
        };
        for cmd in &self.cmds {
            out.extend(cmd_bytes(cmd));
        }
        out
    }
}

fn cases() -> Vec<Case> {
    vec![
        // ---- alice: +@read ~cache:*
        c("read: allowed GET", "alice", &[&["GET", "cache:1"], &["HGETALL", "cache:h"]]),
        c("read: denied key", "alice", &[&["GET", "secret:1"], &["MGET", "cache:1", "secret:1"]]),
        c("read: denied command", "alice", &[&["SET", "cache:1", "x"], &["GET", "cache:1"]]),
        c("read: PING is not @read", "alice", &[&["PING"]]),
        c("read: ACL WHOAMI not granted", "alice", &[&["ACL", "WHOAMI"]]),
        c("read: ACL CAT not granted", "alice", &[&["ACL", "CAT"]]),
        c("read: CLIENT INFO not granted", "alice", &[&["CLIENT", "INFO"], &["CLIENT", "ID"]]),
        c("read: CONFIG GET not granted", "alice", &[&["CONFIG", "GET", "maxmemory"]]),
        c("read: MULTI not granted", "alice", &[&["MULTI"], &["SET", "cache:1", "y"], &["EXEC"]]),
        c("read: SUBSCRIBE not granted", "alice", &[&["SUBSCRIBE", "news:1"], &["GET", "cache:1"]]),
        c("read: RESP3", "alice", &[&["GET", "cache:1"], &["GET", "secret:1"], &["SET", "cache:2", "x"]])
            .resp3(),
        // ---- bob: +@all ~* (no channel: resetchannels)
        c("all: SET GET DEL", "bob", &[&["SET", "bob:1", "v"], &["GET", "bob:1"], &["DEL", "bob:1"]]),
        c("all: ACL WHOAMI", "bob", &[&["ACL", "WHOAMI"], &["PING"]]),
        c("all: ACL CAT", "bob", &[&["ACL", "CAT"]]),
        c("all: ACL CAT of an unknown category", "bob", &[&["ACL", "CAT", "nosuch"]]),
        c("all: ACL DRYRUN alice allowed", "bob", &[&["ACL", "DRYRUN", "alice", "GET", "cache:1"]]),
        c(
            "all: ACL DRYRUN alice denied command",
            "bob",
            &[&["ACL", "DRYRUN", "alice", "SET", "cache:1", "x"]],
        ),
        c("all: ACL DRYRUN alice denied key", "bob", &[&["ACL", "DRYRUN", "alice", "GET", "secret:1"]]),
        c(
            "all: ACL DRYRUN carol denied channel",
            "bob",
            &[&["ACL", "DRYRUN", "carol", "PUBLISH", "sports", "x"]],
        ),
        c(
            "all: ACL DRYRUN erin through a selector",
            "bob",
            &[&["ACL", "DRYRUN", "erin", "SET", "rw:1", "x"], &["ACL", "DRYRUN", "erin", "SET", "ro:1", "x"]],
        ),
        c(
            "all: ACL DRYRUN a fixed denial",
            "bob",
            &[&["ACL", "DRYRUN", "bob", "CONFIG", "SET", "maxmemory", "1"]],
        ),
        c("all: ACL DRYRUN unknown user", "bob", &[&["ACL", "DRYRUN", "nosuchuser", "GET", "x"]]),
        c("all: ACL DRYRUN unknown command", "bob", &[&["ACL", "DRYRUN", "alice", "NOSUCHCMD"]]),
        c("all: ACL DRYRUN itself", "bob", &[&["ACL", "DRYRUN", "bob", "SET", "x", "1"]]),
        c("all: no channel", "bob", &[&["SUBSCRIBE", "ch"], &["PUBLISH", "ch", "x"], &["PING"]]),
        c("all: MULTI EXEC", "bob", &[&["MULTI"], &["SET", "bob:m", "1"], &["INCR", "bob:m"], &["EXEC"]]),
        c("all: SORT BY with every key", "bob", &[&["SORT", "cache:l", "BY", "cache:w_*"]]),
        c(
            "all: SORT GET with every key",
            "bob",
            &[&["SORT", "cache:l", "BY", "cache:w_*", "GET", "cache:w_*"]],
        ),
        c("all: CONFIG GET maxmemory", "bob", &[&["CONFIG", "GET", "maxmemory"]]),
        c("all: CONFIG GET maxmemory RESP3", "bob", &[&["CONFIG", "GET", "maxmemory"], &["ACL", "WHOAMI"]])
            .resp3(),
        // One name per CONFIG GET: Redis 7.0 answers several in its dict's order, which
        // differs from one server process to the next.
        c(
            "all: CONFIG GET a name in the client's case",
            "bob",
            &[&["CONFIG", "GET", "MAXMEMORY"], &["config", "get", "Maxmemory-Policy"]],
        ),
        c("all: CONFIG GET another name RESP3", "bob", &[&["CONFIG", "GET", "timeout"]]).resp3(),
        c("all: CONFIG GET without a pattern", "bob", &[&["CONFIG", "GET"], &["CONFIG"]]),
        c(
            "all: ACL arity and unknown subcommands",
            "bob",
            &[
                &["ACL"],
                &["ACL", "WHOAMI", "extra"],
                &["ACL", "USERS", "extra"],
                &["ACL", "LIST", "extra"],
                &["ACL", "DRYRUN", "alice"],
                &["ACL", "NOSUCH"],
                &["acl", "whoami"],
            ],
        ),
        c(
            "all: ACL DRYRUN names are case-sensitive",
            "bob",
            &[&["ACL", "DRYRUN", "Alice", "GET", "cache:1"]],
        ),
        c("all: ACL DRYRUN with a wrong arity", "bob", &[&["ACL", "DRYRUN", "alice", "GET"]]),
        c(
            "all: CLIENT REPLY",
            "bob",
            &[
                &["CLIENT", "REPLY", "OFF"],
                &["SET", "bob:cr", "1"],
                &["CLIENT", "REPLY", "ON"],
                &["GET", "bob:cr"],
            ],
        )
        .replies(2),
        c("all: EVAL", "bob", &[&["EVAL", GET_KEY, "1", "cache:1"]]),
        c("all: RESP3 channel denied", "bob", &[&["SUBSCRIBE", "ch"], &["ACL", "WHOAMI"]]).resp3(),
        // ---- carol: +@all ~cache:* &news:*
        c("channels: SUBSCRIBE allowed", "carol", &[&["SUBSCRIBE", "news:1"], &["PING"], &["UNSUBSCRIBE"]]),
        c("channels: SUBSCRIBE one denied", "carol", &[&["SUBSCRIBE", "news:2", "sports"], &["PING"]]),
        c("channels: PUBLISH allowed", "carol", &[&["PUBLISH", "news:nobody", "hi"]]),
        c("channels: PUBLISH denied", "carol", &[&["PUBLISH", "sports", "hi"]]),
        c("channels: PSUBSCRIBE other pattern", "carol", &[&["PSUBSCRIBE", "*"], &["PSUBSCRIBE", "news:1*"]]),
        c(
            "channels: RESP2 subscribed PUBLISH",
            "carol",
            &[&["SUBSCRIBE", "news:4"], &["PUBLISH", "news:4", "x"]],
        ),
        c("channels: RESP3 self PUBLISH", "carol", &[&["SUBSCRIBE", "news:3"], &["PUBLISH", "news:3", "hi"]])
            .resp3()
            .replies(3),
        c(
            "channels: RESP3 denied",
            "carol",
            &[&["SUBSCRIBE", "sports"], &["PUBLISH", "sports", "x"], &["PING"]],
        )
        .resp3(),
        c(
            "channels: RESP3 PUBLISH while subscribed",
            "carol",
            &[
                &["SUBSCRIBE", "news:5"],
                &["PUBLISH", "sports", "x"],
                &["GET", "secret:1"],
                &["UNSUBSCRIBE", "news:5"],
            ],
        )
        .resp3(),
        c("keys: EVAL with a denied key", "carol", &[&["EVAL", GET_KEY, "1", "secret:1"]]),
        c("keys: EVAL script touches a denied key", "carol", &[&["EVAL", GET_SECRET, "0"]]),
        c(
            "keys: EVAL script declares one key, touches another",
            "carol",
            &[&["EVAL", GET_SECRET, "1", "cache:1"]],
        ),
        c("keys: EVAL pcall of a denied key", "carol", &[&["EVAL", PCALL_SECRET, "0"]]),
        c("keys: SORT plain", "carol", &[&["SORT", "cache:l"]]),
        c(
            "keys: SORT BY without every key",
            "carol",
            &[&["SORT", "cache:l", "BY", "cache:w_*"], &["SORT", "cache:l", "BY", "nosort"]],
        ),
        c(
            "keys: SORT GET without every key",
            "carol",
            &[&["SORT", "cache:l", "GET", "cache:w_*"], &["SORT", "cache:l", "GET", "#"]],
        ),
        c(
            "keys: MULTI with a denied key",
            "carol",
            &[
                &["MULTI"],
                &["SET", "cache:m", "1"],
                &["SET", "secret:m", "1"],
                &["EXEC"],
                &["GET", "cache:m"],
            ],
        ),
        c(
            "keys: MULTI allowed",
            "carol",
            &[&["MULTI"], &["SET", "cache:m2", "1"], &["GET", "cache:m2"], &["EXEC"]],
        ),
        c(
            "keys: WATCH a denied key",
            "carol",
            &[&["WATCH", "secret:1"], &["WATCH", "cache:1"], &["UNWATCH"]],
        ),
        // ---- dave: +@all %R~r:* %W~w:* ~both:*
        c("rw: read a read key", "dave", &[&["GET", "r:1"], &["STRLEN", "r:1"]]),
        c("rw: write a read key", "dave", &[&["SET", "r:1", "x"], &["APPEND", "r:1", "x"]]),
        c("rw: write a write key", "dave", &[&["SET", "w:1", "x"], &["DEL", "w:2"]]),
        c("rw: read a write key", "dave", &[&["GET", "w:1"]]),
        c("rw: COPY read to write", "dave", &[&["COPY", "r:1", "w:copy"]]),
        c("rw: COPY write to read", "dave", &[&["COPY", "w:1", "r:copy"]]),
        c("rw: full keys", "dave", &[&["SET", "both:1", "x"], &["GET", "both:1"], &["GET", "secret:1"]]),
        c("rw: RESP3", "dave", &[&["GET", "r:1"], &["SET", "r:1", "y"], &["LPUSH", "w:l", "1"]]).resp3(),
        c(
            "rw: DRYRUN",
            "dave",
            &[&["ACL", "DRYRUN", "dave", "SET", "r:1", "x"], &["ACL", "DRYRUN", "dave", "GET", "r:1"]],
        ),
        // ---- erin: +@read ~ro:* (+set ~rw:*)
        c("selector: root rights", "erin", &[&["GET", "ro:1"], &["EXISTS", "ro:1"]]),
        c("selector: selector rights", "erin", &[&["SET", "rw:1", "x"]]),
        c(
            "selector: neither",
            "erin",
            &[&["SET", "ro:1", "x"], &["GET", "rw:1"], &["MSET", "rw:1", "a", "rw:2", "b"]],
        ),
        c("selector: RESP3", "erin", &[&["SET", "rw:2", "z"], &["GET", "ro:1"], &["GET", "rw:2"]]).resp3(),
        // ---- frank: -@all +get +multi +exec +eval ~f:*
        c("few commands: GET", "frank", &[&["GET", "f:1"], &["GET", "cache:1"]]),
        c(
            "few commands: the rest",
            "frank",
            &[&["SET", "f:1", "x"], &["PING"], &["ECHO", "x"], &["ACL", "WHOAMI"]],
        ),
        c(
            "few commands: MULTI with a denied command",
            "frank",
            &[&["MULTI"], &["GET", "f:1"], &["SET", "f:1", "x"], &["EXEC"]],
        ),
        c(
            "few commands: EVAL calls a denied command",
            "frank",
            &[&["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "f:1"]],
        ),
        c("few commands: RESP3", "frank", &[&["GET", "f:1"], &["PING"]]).resp3(),
        c(
            "few commands: what turnstile answers itself",
            "frank",
            &[&["CLIENT", "REPLY", "OFF"], &["GET", "f:1"], &["CLIENT", "REPLY", "SKIP"], &["GET", "f:1"]],
        ),
        c(
            "few commands: CLIENT subcommands turnstile knows",
            "frank",
            &[
                &["CLIENT", "SETINFO", "lib-name", "x"],
                &["CLIENT", "MAINT_NOTIFICATIONS", "on"],
                &["CLIENT", "INFO"],
                &["CLIENT", "ID"],
            ],
        ),
        c(
            "few commands: connection state",
            "frank",
            &[
                &["SELECT", "0"],
                &["CLIENT", "SETNAME", "x"],
                &["WATCH", "f:1"],
                &["SUBSCRIBE", "ch"],
                &["GET", "f:1"],
            ],
        ),
        c(
            "few commands: HELLO SETNAME",
            "frank",
            &[
                &["HELLO", "3", "AUTH", "frank", USER_PW, "SETNAME", "myname"],
                &["GET", "f:1"],
                &["CLIENT", "GETNAME"],
                &["HELLO", "2", "SETNAME", "other"],
                &["GET", "f:1"],
            ],
        ),
        // ---- gina: +@all -@dangerous ~* &*
        c("no dangerous: ACL WHOAMI and CAT", "gina", &[&["ACL", "WHOAMI"], &["ACL", "CAT"]]),
        c("no dangerous: ACL DRYRUN", "gina", &[&["ACL", "DRYRUN", "alice", "GET", "cache:1"]]),
        c(
            "no dangerous: ACL USERS / LIST / GETUSER",
            "gina",
            &[&["ACL", "USERS"], &["ACL", "LIST"], &["ACL", "GETUSER", "alice"]],
        ),
        c("no dangerous: KEYS FLUSHALL", "gina", &[&["KEYS", "*"], &["FLUSHALL"], &["EXISTS", "cache:1"]]),
        c("no dangerous: CONFIG GET", "gina", &[&["CONFIG", "GET", "maxmemory"]]),
        c(
            "no dangerous: any channel",
            "gina",
            &[&["SUBSCRIBE", "g:1", "g:2"], &["UNSUBSCRIBE", "g:1", "g:2"]],
        )
        .replies(4),
        c(
            "alice: ACL USERS not granted",
            "alice",
            &[&["ACL", "USERS"], &["ACL", "LIST"], &["ACL", "DRYRUN", "bob", "GET", "x"]],
        ),
        c(
            "read: arity before rights",
            "alice",
            &[
                &["ACL", "WHOAMI", "extra"],
                &["ACL", "DRYRUN", "bob"],
                &["CONFIG", "GET"],
                &["CONFIG", "GET", "requirepass"],
                &["ACL", "GETUSER", "bob"],
            ],
        ),
        // ---- Switching identity on one connection: the rights follow the last AUTH.
        c(
            "switch: AUTH to another user on a lane",
            "alice",
            &[
                &["SET", "cache:sw", "x"],
                &["AUTH", "bob", USER_PW],
                &["SET", "cache:sw", "x"],
                &["ACL", "WHOAMI"],
                &["AUTH", "alice", USER_PW],
                &["GET", "cache:sw"],
                &["SET", "cache:sw", "y"],
                &["ACL", "WHOAMI"],
            ],
        ),
        c(
            "switch: AUTH on a connection of its own keeps its database",
            "bob",
            &[
                &["SELECT", "1"],
                &["SET", "k:db1", "v"],
                &["AUTH", "gina", USER_PW],
                &["GET", "k:db1"],
                &["SET", "k:db1", "w"],
                &["AUTH", "alice", USER_PW],
                &["GET", "cache:1"],
                &["SET", "cache:1", "w"],
            ],
        ),
        c(
            "switch: a failed AUTH keeps the rights",
            "alice",
            &[&["AUTH", "bob", "wrong"], &["SET", "cache:1", "x"], &["ACL", "WHOAMI"]],
        ),
        c(
            "switch: RESET, then another user",
            "bob",
            &[
                &["SET", "bob:r", "1"],
                &["RESET"],
                &["GET", "bob:r"],
                &["AUTH", "alice", USER_PW],
                &["SET", "cache:1", "x"],
                &["GET", "cache:1"],
            ],
        ),
        c(
            "switch: HELLO 3 AUTH to another user",
            "alice",
            &[
                &["HELLO", "3", "AUTH", "bob", USER_PW],
                &["SET", "bob:h", "1"],
                &["HELLO", "2", "AUTH", "alice", USER_PW],
                &["SET", "bob:h", "2"],
            ],
        ),
        c(
            "switch: AUTH on a connection of its own takes the new user's channels",
            "carol",
            &[&["SELECT", "0"], &["AUTH", "bob", USER_PW], &["SUBSCRIBE", "news:9"]],
        ),
        // Last: a pattern subscription would count in later PUBLISH cases of news:*.
        c(
            "channels: PSUBSCRIBE the allowed pattern",
            "carol",
            &[&["PSUBSCRIBE", "news:*"], &["PUNSUBSCRIBE"]],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_answer_byte_for_byte_as_redis() {
    rules_answer_byte_for_byte_as(Redis::start, &[]).await;
}

/// The same against Valkey 8, a Redis 7.2-line server: its ACL errors name the
/// user (`User alice has no permissions…`), where turnstile's upstream user must
/// never show; the client's own name does, as on the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_answer_byte_for_byte_as_valkey() {
    // Valkey 8.0.1 itself never answers a failed `AUTH` pipelined behind a
    // successful one (checked by hand on a bare server: the `-WRONGPASS` is
    // missing and the replies after it come); turnstile answers it as Redis does.
    rules_answer_byte_for_byte_as(Redis::start_valkey, &["switch: a failed AUTH keeps the rights"]).await;
}

/// Every case, less those named in `skip`, against `server` as oracle and upstream.
async fn rules_answer_byte_for_byte_as(server: fn(&[&str]) -> Redis, skip: &[&str]) {
    // The oracle: the same users made with ACL SETUSER, and the same password on
    // its default user as the upstream has.
    let oracle = server(&["--requirepass", SVC, "--dir", &scratch_dir()]);
    let mut oracle_admin = service_conn(&oracle).await;
    for (name, rule) in USERS {
        oracle_user(&mut oracle_admin, name, rule, FIXED_DENIALS).await;
    }

    // turnstile, with each rule on its user's role.
    let stack = Stack::over(server(&["--requirepass", SVC, "--dir", &scratch_dir()]), "", "").await;
    let mut grants = Vec::new();
    for (name, rule) in USERS {
        let (role, acl) = stack.role_with_rule(name, rule).await;
        stack.user(name, &[role]).await;
        grants.push((role, acl));
    }
    stack.grant(&grants).await;

    let mut upstream_admin = stack.service().await;

    let (oracle_addr, ours_addr) = (oracle.addr(), stack.db());
    let cases: Vec<Case> = cases().into_iter().filter(|c| !skip.contains(&c.name)).collect();
    let total = cases.len();
    assert!(total >= 40, "only {total} cases");
    let mut failures = Vec::new();
    let mut denials = 0;
    for case in &cases {
        // The data is laid anew before each case, so a case that wrongly changed it on
        // one side does not make the following ones differ too.
        for cmd in SEED {
            let a = oracle_admin.cmd(cmd).await;
            let b = upstream_admin.cmd(cmd).await;
            assert_eq!(show(&a), show(&b), "seeding {cmd:?}");
        }
        let input = case.input();
        let n = case.replies + 1;
        let (a, b) = tokio::join!(run(&oracle_addr, &input, n), run(&ours_addr, &input, n));
        let (a, b) = (normalise_ids(&a), normalise_ids(&b));
        denials += show(&a).matches("NOPERM").count();
        if a != b {
            failures.push(format!(
                "case {:?} as {}\n  input:     {:?}\n  redis:     {:?}\n  turnstile: {:?}",
                case.name,
                case.user,
                show(&input).replace(USER_PW, "<pw>"),
                show(&a),
                show(&b)
            ));
        }
    }
    // The cases must exercise refusals, or agreeing on them would prove nothing.
    assert!(denials >= 30, "only {denials} NOPERM replies from the oracle");
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from Redis:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{total} cases, {denials} NOPERM replies, identical");
}

#[test]
fn rule_args_keep_selectors_whole_and_denials_reach_them() {
    assert_eq!(rule_args("+@read  ~ro:* (+set ~rw:*)"), ["+@read", "~ro:*", "(+set ~rw:*)"]);
    assert_eq!(
        with_denials("+@read (+set ~rw:*)", &["-monitor", "-debug"]),
        ["+@read", "(+set ~rw:* -monitor -debug)", "-monitor", "-debug"]
    );
}
