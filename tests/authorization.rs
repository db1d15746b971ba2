//! Authorization against real Redis: every fixed denial is refused byte for byte as
//! Redis refuses a user whose ACL lacks it, and no reply (CONFIG GET, the ACL
//! subcommands, INFO, HELLO…) shows the upstream's password, turnstile's upstream
//! users, their hashes or their passwords — for the default user and a `+@all ~*`
//! user, on a lane, on a connection of its own (SELECT, MULTI), in RESP2 and RESP3,
//! pipelined or not; nor do the trace logs. Rules and roles change live (next
//! command; pinned connections of a moved user closed; a user no longer admitted cut
//! off), clients of different rules never share rights on lanes or pooled
//! connections, an upstream restarted without its ACL gets turnstile's users back,
//! two turnstiles on one upstream keep their own users, a control credential that
//! cannot manage users stops the start (exit 64), and rule strings are validated.

mod common;

use std::time::Duration;

use common::admin::{ADMIN, ADMIN_EMAIL, ADMIN_PW, Process};
use common::authz::*;
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use turnstile::authz::{FIXED_DENIALS, USER_PREFIX, derive_password};

const OK: &str = "+OK\r\n";
const NOPERM_SET: &str = "-NOPERM this user has no permissions to run the 'set' command\r\n";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
/// Enough for a change to close connections or an upstream to come back; polled.
const SOON: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// The fixed denials and the secrets, for the default user and a `+@all ~*` user.
// ---------------------------------------------------------------------------------

/// The rule of the database's default user (RS's "Full Access").
const FULL_ACCESS: &str = "~* &* +@all";

/// The database (default user with `DEFAULT_PW`; `app` on `+@all ~*`, `reader` on
/// `+@read ~*`, `outsider` whose role the database does not admit) and the oracle
/// (its `default` and `app` users with the same rules plus `FIXED_DENIALS`).
struct Isolation {
    stack: Stack,
    oracle: Redis,
}

/// DEBUG and MODULE are enabled on both servers, so only the ACL can refuse them.
const ENABLE: [&str; 4] = ["--enable-debug-command", "yes", "--enable-module-command", "yes"];

async fn isolation() -> Isolation {
    isolation_on(Redis::start).await
}

/// As [`isolation`], with `server` (Redis, or Valkey, whose errors name the user)
/// as both the upstream and the oracle.
async fn isolation_on(server: fn(&[&str]) -> Redis) -> Isolation {
    let dir = scratch_dir();
    // The slow log keeps every command, turnstile's own management ones included.
    let slowlog = ["--slowlog-log-slower-than", "0", "--slowlog-max-len", "4096"];
    let upstream = server(&[&["--requirepass", SVC, "--dir", &dir][..], &ENABLE, &slowlog].concat());
    let stack = Stack::over(upstream, "", "").await;
    stack.default_password().await;
    let (app_role, app_acl) = stack.role_with_rule("app", "+@all ~*").await;
    let (reader_role, reader_acl) = stack.role_with_rule("reader", "+@read ~*").await;
    let (outsider_role, _) = stack.role_with_rule("outsider", "+@all ~* &*").await;
    stack.user("app", &[app_role]).await;
    stack.user("reader", &[reader_role]).await;
    stack.user("outsider", &[outsider_role]).await;
    stack.grant(&[(app_role, app_acl), (reader_role, reader_acl)]).await;

    let oracle = server(&[&["--dir", &dir][..], &ENABLE].concat());
    let mut first = oracle.connect().await;
    let svc = format!(">{SVC}");
    assert_eq!(show(&first.cmd(&["ACL", "SETUSER", "oadmin", "on", &svc, "~*", "&*", "+@all"]).await), OK);
    let mut admin = oracle.connect().await;
    assert_eq!(show(&admin.cmd(&["AUTH", "oadmin", SVC]).await), OK);
    oracle_user(&mut admin, "app", "+@all ~*", FIXED_DENIALS).await;
    let pw = format!(">{DEFAULT_PW}");
    let mut args = vec!["ACL", "SETUSER", "default", "on", "resetpass", pw.as_str()];
    let rule = with_denials(FULL_ACCESS, FIXED_DENIALS);
    args.extend(rule.iter().map(String::as_str));
    assert_eq!(show(&admin.cmd(&args).await), OK);
    Isolation { stack, oracle }
}

/// A command that needs the right `token` (`-name` or `-name|sub`) names, with
/// arguments Redis accepts (arity is checked before ACL). Harmless where it matters
/// if a denial were missing (`SHUTDOWN ABORT`, `DEBUG SLEEP 0`, `CLIENT PAUSE 1`).
/// Tokens this table does not know get `x` arguments up to the command's arity.
async fn denial_command(token: &str, oracle: &mut Conn) -> Vec<String> {
    let name = token.strip_prefix('-').unwrap_or_else(|| panic!("a fixed denial that grants: {token}"));
    let known: &[&str] = match name {
        "acl|setuser" => &["ACL", "SETUSER", "probe-user", "on", ">probe-pw", "+@all", "~*"],
        "acl|deluser" => &["ACL", "DELUSER", "probe-user"],
        "acl|load" => &["ACL", "LOAD"],
        "acl|save" => &["ACL", "SAVE"],
        "acl|log" => &["ACL", "LOG"],
        "acl|genpass" => &["ACL", "GENPASS"],
        "config|set" => &["CONFIG", "SET", "maxmemory", "0"],
        "config|rewrite" => &["CONFIG", "REWRITE"],
        "config|resetstat" => &["CONFIG", "RESETSTAT"],
        "replicaof" => &["REPLICAOF", "NO", "ONE"],
        "slaveof" => &["SLAVEOF", "NO", "ONE"],
        "sync" => &["SYNC"],
        "psync" => &["PSYNC", "?", "-1"],
        "failover" => &["FAILOVER", "ABORT"],
        "module" => &["MODULE", "LIST"],
        "debug" => &["DEBUG", "SLEEP", "0"],
        "shutdown" => &["SHUTDOWN", "ABORT"],
        "save" => &["SAVE"],
        "bgsave" => &["BGSAVE", "SCHEDULE"],
        "bgrewriteaof" => &["BGREWRITEAOF"],
        "migrate" => &["MIGRATE", "127.0.0.1", "1", "k", "0", "10"],
        "client|kill" => &["CLIENT", "KILL", "ID", "999999"],
        "client|pause" => &["CLIENT", "PAUSE", "1"],
        "client|unpause" => &["CLIENT", "UNPAUSE"],
        "client|no-evict" => &["CLIENT", "NO-EVICT", "on"],
        "client|list" => &["CLIENT", "LIST"],
        "client|info" => &["CLIENT", "INFO"],
        "monitor" => &["MONITOR"],
        "swapdb" => &["SWAPDB", "0", "1"],
        "slowlog" => &["SLOWLOG", "GET"],
        _ => &[],
    };
    if !known.is_empty() {
        return known.iter().map(|s| s.to_string()).collect();
    }
    // COMMAND INFO gives the arity (`*1 *N $len name :arity …`).
    let info = show(&oracle.cmd(&["COMMAND", "INFO", name]).await);
    let arity: i64 = info
        .split("\r\n")
        .find_map(|l| l.strip_prefix(':'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no arity for {name}: {info:?}"));
    let mut cmd: Vec<String> = name.split('|').map(str::to_uppercase).collect();
    if !name.contains('|') && info.contains(&format!("{name}|")) {
        // A container: its HELP subcommand needs the right too.
        cmd.push("HELP".into());
        return cmd;
    }
    while (cmd.len() as i64) < arity.abs() {
        cmd.push("x".into());
    }
    cmd
}

/// Every fixed denial as a command, `MONITOR` last (were it allowed, the connection
/// would only stream from then on).
async fn denial_commands(oracle: &Redis) -> Vec<Vec<String>> {
    let mut admin = oracle.connect().await;
    assert_eq!(show(&admin.cmd(&["AUTH", "oadmin", SVC]).await), OK);
    let mut out = Vec::new();
    for token in FIXED_DENIALS {
        out.push(denial_command(token, &mut admin).await);
    }
    out.sort_by_key(|c| c[0] == "MONITOR");
    out
}

#[derive(Clone, Copy, Debug)]
enum Route {
    /// Only a GET first: the client is on a shared connection.
    Lane,
    /// SELECT 0 first: the client has a connection of its own.
    Select,
    /// Inside MULTI (a connection of its own), then EXEC.
    Multi,
}

const ROUTES: [Route; 3] = [Route::Lane, Route::Select, Route::Multi];

/// The login step of `user` (`default` or a named one) in RESP2 or RESP3.
fn login(user: &str, resp3: bool) -> Vec<u8> {
    let pw = if user == "default" { DEFAULT_PW } else { USER_PW };
    match (resp3, user) {
        (false, "default") => cmd_bytes(&["AUTH", pw]),
        (false, _) => cmd_bytes(&["AUTH", user, pw]),
        (true, _) => cmd_bytes(&["HELLO", "3", "AUTH", user, pw]),
    }
}

/// Steps: log in, take `route`, then `cmds` (one step each, or one pipelined step),
/// then `EXEC` for MULTI.
fn script(
    user: &str,
    resp3: bool,
    route: Route,
    cmds: &[Vec<String>],
    pipelined: bool,
) -> Vec<(Vec<u8>, usize)> {
    let mut steps = vec![(login(user, resp3), 1)];
    steps.push(match route {
        Route::Lane => (cmd_bytes(&["GET", "k:lane"]), 1),
        Route::Select => (cmd_bytes(&["SELECT", "0"]), 1),
        Route::Multi => (cmd_bytes(&["MULTI"]), 1),
    });
    let encoded: Vec<Vec<u8>> =
        cmds.iter().map(|c| cmd_bytes(&c.iter().map(String::as_str).collect::<Vec<_>>())).collect();
    if pipelined {
        steps.push((encoded.concat(), encoded.len()));
    } else {
        steps.extend(encoded.into_iter().map(|e| (e, 1)));
    }
    if let Route::Multi = route {
        steps.push((cmd_bytes(&["EXEC"]), 1));
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_denials_are_refused_as_redis_refuses_them() {
    fixed_denials_are_refused_as_the_server_refuses_them(isolation().await).await;
}

/// Valkey (the Redis 7.2 line) names the user in its refusals: the client's own
/// name must appear, as on the oracle, never turnstile's upstream user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_denials_are_refused_as_valkey_refuses_them() {
    fixed_denials_are_refused_as_the_server_refuses_them(isolation_on(Redis::start_valkey).await).await;
}

async fn fixed_denials_are_refused_as_the_server_refuses_them(iso: Isolation) {
    let denials = denial_commands(&iso.oracle).await;
    assert!(denials.len() >= 25, "only {} fixed denials", denials.len());
    let (oracle, ours) = (iso.oracle.addr(), iso.stack.db());
    let mut failures = Vec::new();
    let (mut runs, mut differ) = (0, 0);
    for user in ["default", "app"] {
        for resp3 in [false, true] {
            for route in ROUTES {
                for pipelined in [false, true] {
                    if failures.len() == 4 {
                        continue; // enough to see what is wrong; a wrong run can take long
                    }
                    let steps = script(user, resp3, route, &denials, pipelined);
                    let (a, b) = tokio::join!(run_steps(&oracle, &steps), run_steps(&ours, &steps));
                    let (a, b) = (normalise_ids(&a), normalise_ids(&b));
                    // (In MULTI, Redis refuses SYNC, SAVE… for being there, before the ACL.)
                    let text = show(&a);
                    let refusals = text.matches("-NOPERM").count()
                        + text.matches("-ERR Command not allowed inside a transaction").count();
                    assert_eq!(refusals, denials.len(), "the oracle refuses every one: {}", show(&a));
                    runs += 1;
                    differ += usize::from(a != b);
                    if a != b && failures.len() < 4 {
                        failures.push(format!(
                            "{user}, {}, {route:?}, {}:\n  redis:     {:?}\n  turnstile: {:?}",
                            if resp3 { "RESP3" } else { "RESP2" },
                            if pipelined { "pipelined" } else { "one by one" },
                            show(&a),
                            show(&b)
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{differ} of the {runs} runs made differ from Redis (the first {} shown):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What a client could send to learn something about the server and its users. In
/// MULTI, only what the rules allow there (a refused command would abort the EXEC).
fn probes(route: Route) -> Vec<Vec<String>> {
    let probes: &[&[&str]] = &[
        &["CONFIG", "GET", "*"],
        &["CONFIG", "GET", "requirepass"],
        &["CONFIG", "GET", "masterauth"],
        &["CONFIG", "GET", "*pass*"],
        &["CONFIG", "GET", "*user*"],
        &["CONFIG", "GET", "tls-*"],
        &["ACL", "LIST"],
        &["ACL", "USERS"],
        &["ACL", "WHOAMI"],
        &["ACL", "GETUSER", "default"],
        &["ACL", "GETUSER", "app"],
        &["ACL", "DRYRUN", "default", "GET", "k"],
        &["ACL", "DRYRUN", "app", "CONFIG", "SET", "maxmemory", "0"],
        &["ACL", "LOG"],
        &["CLIENT", "LIST"],
        &["CLIENT", "INFO"],
        &["INFO", "everything"],
        &["SLOWLOG", "GET", "4096"],
        &["EVAL", "return redis.pcall('acl', 'whoami')", "0"],
        &["EVAL", "return redis.pcall('acl', 'list')", "0"],
        &["EVAL", "return redis.pcall('config', 'get', '*')", "0"],
        &["EVAL", "return redis.pcall('client', 'list')", "0"],
        &["HELLO"],
    ];
    let refused_in_multi = |p: &&&[&str]| {
        let (name, sub) = (p[0].to_lowercase(), p.get(1).map(|s| s.to_lowercase()).unwrap_or_default());
        let denied = |t: &&str| *t == format!("-{name}") || *t == format!("-{name}|{sub}");
        matches!(p[0], "CLIENT" | "HELLO") || FIXED_DENIALS.iter().any(denied)
    };
    probes
        .iter()
        .filter(|p| !matches!(route, Route::Multi) || !refused_in_multi(p))
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Everything secret that turnstile put on the upstream, read there with the control
/// credential and from the store: (what, the text that must never reach a client).
async fn upstream_secrets(iso: &Isolation) -> Vec<(String, String)> {
    let mut secrets = vec![("the upstream password".to_string(), SVC.to_string())];
    secrets.push(("the user prefix".into(), USER_PREFIX.into()));
    let mut service = iso.stack.service().await;
    // Read after the clients ran, so users made only when first needed exist too.
    let users = upstream_users(&mut service).await;
    let ours: Vec<&(String, Vec<String>)> =
        users.iter().filter(|(n, _)| n.starts_with(USER_PREFIX)).collect();
    assert!(ours.len() >= 2, "turnstile's users on the upstream (default's and app's rule): {users:?}");
    let state = iso.stack.state();
    let secret = state["upstream_users"]["secret"].as_str().unwrap_or_else(|| panic!("no secret in {state}"));
    let instance =
        state["upstream_users"]["instance"].as_str().unwrap_or_else(|| panic!("no instance in {state}"));
    assert!(secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_hexdigit()), "secret is hex");
    assert!(instance.len() >= 8 && instance.chars().all(|c| c.is_ascii_hexdigit()), "instance is hex");
    secrets.push(("the upstream users' secret".into(), secret.into()));
    secrets.push(("the instance".into(), instance.into()));
    for (name, hashes) in &users {
        for h in hashes {
            secrets.push((format!("{name}'s password hash"), h.clone()));
        }
    }
    for (name, hashes) in ours {
        assert!(!hashes.is_empty(), "{name} has a password");
        secrets.push(("an internal user's name".into(), name.clone()));
        let pw = derive_password(secret, name).unwrap_or_else(|| panic!("no password derived for {name}"));
        // The derived password is the real one: the search below looks for the right thing.
        let mut probe = iso.stack.upstream.connect().await;
        assert_eq!(
            show(&probe.cmd(&["AUTH", name, &pw]).await),
            OK,
            "{name} logs in with its derived password"
        );
        secrets.push((format!("{name}'s password"), pw));
    }
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_shows_a_secret_or_an_internal_user() {
    no_reply_shows_a_secret_or_an_internal_user_on(isolation().await).await;
}

/// The same where the upstream's errors name the user they ran as (Valkey).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_shows_a_secret_or_an_internal_user_on_valkey() {
    no_reply_shows_a_secret_or_an_internal_user_on(isolation_on(Redis::start_valkey).await).await;
}

async fn no_reply_shows_a_secret_or_an_internal_user_on(iso: Isolation) {
    let db = iso.stack.db();
    let mut outputs = Vec::new();
    for user in ["default", "app"] {
        for resp3 in [false, true] {
            for route in ROUTES {
                for pipelined in [false, true] {
                    let steps = script(user, resp3, route, &probes(route), pipelined);
                    let out = show(&run_steps(&db, &steps).await);
                    assert!(!out.contains("<closed") && !out.contains("<timed out"), "{out}");
                    assert!(out.contains("maxmemory"), "CONFIG GET * answered: {out}");
                    let context =
                        format!("{user} RESP{} {route:?} pipelined={pipelined}", if resp3 { 3 } else { 2 });
                    outputs.push((context, out));
                }
            }
        }
    }
    let secrets = upstream_secrets(&iso).await;
    let mut leaks = Vec::new();
    let mut searched = 0;
    for (context, out) in &outputs {
        searched += out.len();
        for (what, s) in &secrets {
            if let Some(at) = out.find(s.as_str()) {
                let from = out[..at].rfind("\r\n*").unwrap_or(at.saturating_sub(200));
                let to = (at + 120).min(out.len());
                let around: String = out.chars().skip(from).take(to - from).collect();
                leaks.push(format!("{what} in {context}: …{around:?}…"));
            }
        }
        for param in ["requirepass", "masterauth", "masteruser", "tls-key-file-pass"] {
            if out.contains(&format!("\r\n{param}\r\n")) {
                leaks.push(format!("parameter {param} in {context}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks (the first 6):\n{}",
        leaks.len(),
        leaks[..leaks.len().min(6)].join("\n")
    );
    eprintln!("searched {searched} bytes of replies for {} secrets", secrets.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_subcommands_describe_this_databases_users() {
    let iso = isolation().await;
    let db = iso.stack.db();
    let mut oracle = Conn::connect(&iso.oracle.addr()).await;
    assert_eq!(show(&oracle.cmd(&["AUTH", DEFAULT_PW]).await), OK);
    // Users admitted here, sorted by name as Redis lists its users (ACL USERS walks
    // its radix tree); not `outsider` (its role is not granted) nor the admin API's
    // `admin`.
    let users = "*3\r\n$3\r\napp\r\n$7\r\ndefault\r\n$6\r\nreader\r\n";
    // Order mismatches are collected, so that everything else is still checked.
    let mut misordered = Vec::new();
    for (user, resp3) in [("default", false), ("app", false), ("default", true), ("app", true)] {
        for route in [Route::Lane, Route::Select] {
            let what = format!("{user} RESP{} {route:?}", if resp3 { 3 } else { 2 });
            let mut c = Conn::connect(&db).await;
            c.send(&login(user, resp3)).await;
            c.reply().await;
            let (opener, _) = &script(user, resp3, route, &[], false)[1];
            c.send(opener).await;
            c.reply().await;
            let got = show(&c.cmd(&["ACL", "USERS"]).await);
            if got != users {
                let mut names = bulk_strings(got.as_bytes());
                names.sort();
                assert_eq!(names, ["app", "default", "reader"], "{what}: ACL USERS {got:?}");
                misordered.push(format!("{what}: ACL USERS: want {users:?}, got {got:?}"));
            }
            assert_eq!(
                show(&c.cmd(&["ACL", "WHOAMI"]).await),
                format!("${}\r\n{user}\r\n", user.len()),
                "{what}"
            );
            let list = bulk_strings(&c.cmd(&["ACL", "LIST"]).await);
            assert_eq!(list.len(), 3, "{what}: {list:?}");
            let line = |name: &str| {
                let l = list.iter().find(|l| l.starts_with(&format!("user {name} on ")));
                l.unwrap_or_else(|| panic!("{what}: no line for {name} in {list:?}")).clone()
            };
            for l in &list {
                assert!(!l.contains('#') && !l.contains('>'), "{what}: {l:?}");
            }
            assert!(line("app").contains("+@all") && line("app").contains("~*"), "{what}: {list:?}");
            assert!(line("reader").contains("+@read"), "{what}: {list:?}");
            let order: Vec<&str> = list.iter().filter_map(|l| l.split(' ').nth(1)).collect();
            if order != ["app", "default", "reader"] {
                misordered.push(format!("{what}: ACL LIST order {order:?}"));
            }
            // CLIENT INFO, if answered, names the client's own user (never turnstile's).
            let info = show(&c.cmd(&["CLIENT", "INFO"]).await);
            assert!(
                info.starts_with("-NOPERM") || info.contains(&format!(" user={user} ")),
                "{what}: {info:?}"
            );
            // A parameter that is not shown is answered as one that does not exist.
            oracle.send(&cmd_bytes(&["HELLO", if resp3 { "3" } else { "2" }])).await;
            oracle.reply().await;
            let none = oracle.cmd(&["CONFIG", "GET", "no-such-parameter"]).await;
            for hidden in ["requirepass", "masterauth", "masteruser"] {
                assert_eq!(
                    show(&c.cmd(&["CONFIG", "GET", hidden]).await),
                    show(&none),
                    "{what}: CONFIG GET {hidden}"
                );
            }
            assert_eq!(
                show(&c.cmd(&["CONFIG", "GET", "maxmemory"]).await),
                show(&oracle.cmd(&["CONFIG", "GET", "maxmemory"]).await),
                "{what}"
            );
            // DRYRUN answers for this database's users, as Redis does for its own.
            for (args, expected) in [
                (&["ACL", "DRYRUN", "reader", "GET", "k"][..], "+OK\r\n".to_string()),
                (
                    &["ACL", "DRYRUN", "reader", "SET", "k", "v"][..],
                    bulk("This user has no permissions to run the 'set' command"),
                ),
                (
                    &["ACL", "DRYRUN", "app", "CONFIG", "SET", "maxmemory", "0"][..],
                    bulk("This user has no permissions to run the 'config|set' command"),
                ),
                (
                    &["ACL", "DRYRUN", "outsider", "GET", "k"][..],
                    "-ERR User 'outsider' not found\r\n".to_string(),
                ),
                (&["ACL", "DRYRUN", "admin", "GET", "k"][..], "-ERR User 'admin' not found\r\n".to_string()),
            ] {
                assert_eq!(show(&c.cmd(args).await), expected, "{what}: {args:?}");
            }
        }
    }
    // The reader's rule lacks the ACL subcommands: Redis's own refusals.
    let mut r = iso.stack.authed("reader").await;
    for sub in ["whoami", "users", "list", "dryrun"] {
        let mut args = vec!["ACL", sub];
        if sub == "dryrun" {
            args.extend(["app", "GET", "k"]);
        }
        let expected = format!("-NOPERM this user has no permissions to run the 'acl|{sub}' command\r\n");
        assert_eq!(show(&r.cmd(&args).await), expected);
    }
    // turnstile's upstream users are nobody's here, even by their exact names.
    let mut service = iso.stack.service().await;
    let mut app = iso.stack.authed("app").await;
    for (name, _) in upstream_users(&mut service).await {
        if name.starts_with(USER_PREFIX) {
            let dryrun = show(&app.cmd(&["ACL", "DRYRUN", &name, "GET", "k"]).await);
            assert_eq!(dryrun, format!("-ERR User '{name}' not found\r\n"), "ACL DRYRUN {name}");
            assert_eq!(show(&app.cmd(&["ACL", "GETUSER", &name]).await), "$-1\r\n", "ACL GETUSER {name}");
        }
    }
    assert!(
        misordered.is_empty(),
        "`default` comes first, then the other users sorted ({} mismatches):\n{}",
        misordered.len(),
        misordered[..misordered.len().min(4)].join("\n")
    );
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

// ---------------------------------------------------------------------------------
// Live changes.
// ---------------------------------------------------------------------------------

/// `c` sees EOF within `SOON` (a PING sent first may still be answered).
async fn assert_closed(c: &mut Conn, what: &str) {
    let _ = tokio::io::AsyncWriteExt::write_all(&mut c.stream, &cmd_bytes(&["PING"])).await;
    match closed_within(c, SOON).await {
        Ok(rest) => assert!(
            rest.is_empty()
                || ["+PONG\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n"].contains(&show(&rest).as_str())
                || show(&rest).starts_with("-ERR"),
            "{what}: unexpected bytes before the close: {:?}",
            show(&rest)
        ),
        Err(rest) => panic!("{what}: still open after {SOON:?} (got {:?})", show(&rest)),
    }
}

async fn assert_cmd(c: &mut Conn, args: &[&str], expected: &str, what: &str) {
    let got = try_cmd(c, args).await.unwrap_or_else(|| panic!("{what}: {args:?}: the connection was closed"));
    assert_eq!(show(&got), expected, "{what}: {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_change_applies_to_connected_clients_on_their_next_command() {
    let stack = Stack::start().await;
    let (role, acl) = stack.role_with_rule("app", "+@all ~*").await;
    stack.user("app", &[role]).await;
    stack.grant(&[(role, acl)]).await;

    // A lane client (stateless commands only), a RESP3 lane client, and one with a
    // connection of its own (CLIENT ID is not a lane command).
    let mut lane = stack.authed("app").await;
    let mut lane3 = Conn::connect(&stack.db()).await;
    lane3.send(&login("app", true)).await;
    lane3.reply().await;
    let mut own = stack.authed("app").await;
    let id = own.cmd(&["CLIENT", "ID"]).await;
    for (c, what) in [(&mut lane, "lane"), (&mut lane3, "RESP3 lane"), (&mut own, "own")] {
        assert_cmd(c, &["SET", "k", "v"], OK, what).await;
    }

    stack.ok("PUT", &format!("/v1/redis_acls/{acl}"), json!({"acl": "+@all -set ~*"})).await;
    // The very next command, with no reconnect and no wait.
    for (c, what) in [(&mut lane, "lane"), (&mut lane3, "RESP3 lane"), (&mut own, "own")] {
        assert_cmd(c, &["SET", "k", "w"], NOPERM_SET, what).await;
        assert_cmd(c, &["GET", "k"], "$1\r\nv\r\n", what).await;
    }
    assert_eq!(show(&own.cmd(&["CLIENT", "ID"]).await), show(&id), "the same upstream connection");
    // A new client gets the new rule too.
    assert_cmd(&mut stack.authed("app").await, &["SET", "k", "w"], NOPERM_SET, "new").await;

    stack.ok("PUT", &format!("/v1/redis_acls/{acl}"), json!({"acl": "+@all ~*"})).await;
    for (c, what) in [(&mut lane, "lane"), (&mut lane3, "RESP3 lane"), (&mut own, "own")] {
        assert_cmd(c, &["SET", "k", "v2"], OK, what).await;
    }
    assert_eq!(show(&own.cmd(&["CLIENT", "ID"]).await), show(&id));

    // Validation: what the rule may not hold is a 400 naming it, and changes nothing.
    let before = stack.ok("GET", "/v1/redis_acls", Value::Null).await;
    let hash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    let secret = "Secret-in-rule-9q";
    let refused: Vec<(String, &str, &str)> = vec![
        (format!(">{secret}"), ">", secret),
        (format!("<{secret}"), "<", secret),
        (format!("#{hash}"), "#", hash),
        (format!("!{hash}"), "!", hash),
        ("nopass".into(), "nopass", ""),
        ("resetpass".into(), "resetpass", ""),
        ("reset".into(), "reset", ""),
        ("on".into(), "on", ""),
        ("off".into(), "off", ""),
        ("frobnicate".into(), "frobnicate", ""),
    ];
    for (token, named, hidden) in &refused {
        let rule = format!("+@all ~* {token}");
        for (method, path) in
            [("POST", "/v1/redis_acls".to_string()), ("PUT", format!("/v1/redis_acls/{acl}"))]
        {
            let body =
                if method == "POST" { json!({"name": "bad", "acl": rule}) } else { json!({"acl": rule}) };
            let (status, v) = stack.call(method, &path, body).await;
            let what = format!("{method} {path} with {token:?}");
            assert_eq!(status, 400, "{what}: {v}");
            assert_eq!(v["error_code"], "invalid_redis_acl", "{what}: {v}");
            let description = v["description"].as_str().unwrap_or_default();
            assert!(names(description, named), "{what}: the description names {named:?}: {description:?}");
            if !hidden.is_empty() {
                assert!(!v.to_string().contains(hidden), "{what}: the secret is echoed: {v}");
            }
        }
    }
    // Every other token of Redis's grammar is a rule, in any case Redis accepts.
    for (i, rule) in [
        "allkeys allchannels allcommands",
        "nocommands resetkeys resetchannels +get",
        "+@ALL -@Dangerous ~*",
        "+GET +Set ~k:*",
        "+config|get -client|info %RW~a:* %R~b:* %W~c:* &news:* &other",
        "~* +@read (+set ~rw:*) (+del ~tmp:* &tmp)",
        "clearselectors +@all ~* -flushall",
    ]
    .iter()
    .enumerate()
    {
        let (status, v) =
            stack.call("POST", "/v1/redis_acls", json!({"name": format!("ok-{i}"), "acl": rule})).await;
        assert_eq!(status, 200, "{rule:?} is a valid rule: {v}");
        let uid = v["uid"].as_u64().unwrap();
        stack.ok("DELETE", &format!("/v1/redis_acls/{uid}"), Value::Null).await;
    }
    // A rule the upstream refuses: 400, the old rule stays, here and upstream.
    for rule in ["+@all ~* +nosuchcommand", "-@all +get ~* +nosuchcommand"] {
        let (status, v) = stack.call("PUT", &format!("/v1/redis_acls/{acl}"), json!({"acl": rule})).await;
        assert_eq!(status, 400, "{rule}: {v}");
        assert_cmd(&mut lane, &["SET", "k", "v3"], OK, "after a refused rule").await;
        assert_cmd(&mut own, &["SET", "k", "v3"], OK, "after a refused rule").await;
    }
    let (status, v) =
        stack.call("POST", "/v1/redis_acls", json!({"name": "bad", "acl": "+@all +nosuchcommand"})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        stack.ok("GET", "/v1/redis_acls", Value::Null).await,
        before,
        "nothing was created or changed"
    );
    assert_eq!(stack.ok("GET", &format!("/v1/redis_acls/{acl}"), Value::Null).await["acl"], "+@all ~*");
    assert_cmd(&mut stack.authed("app").await, &["SET", "k", "v4"], OK, "a new client").await;
}

/// Whether `description` names `token`: as a word, or for a one-character modifier,
/// that character.
fn names(description: &str, token: &str) -> bool {
    if token.len() == 1 {
        return description.contains(token);
    }
    description.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).any(|w| w == token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_move_users_and_cut_off_those_no_longer_admitted() {
    let stack = Stack::start().await;
    let (writer, writer_acl) = stack.role_with_rule("writer", "+@all ~* &*").await;
    let (reader, reader_acl) = stack.role_with_rule("reader", "+@read +@connection +@transaction ~*").await;
    let (other, _) = stack.role_with_rule("other", "+@all ~*").await;
    // Both roles; the first matching entry of roles_permissions decides: writer.
    let uid = stack.user("u", &[reader, writer]).await;
    stack.grant(&[(writer, writer_acl), (reader, reader_acl)]).await;

    let mut lane = stack.authed("u").await;
    let mut own = stack.authed("u").await;
    assert_cmd(&mut own, &["SELECT", "0"], OK, "own").await;
    assert_cmd(&mut lane, &["SET", "k", "v"], OK, "the first matching entry is the writer's").await;
    assert_cmd(&mut own, &["SET", "k", "v"], OK, "own").await;

    // A role added that does not change the rule changes nothing.
    stack.ok("PUT", &format!("/v1/users/{uid}"), json!({"role_uids": [reader, writer, other]})).await;
    assert_cmd(&mut own, &["SET", "k", "v"], OK, "own, same rule").await;

    // The database's order changes: the reader's entry comes first now.
    stack.grant(&[(reader, reader_acl), (writer, writer_acl)]).await;
    assert_cmd(&mut lane, &["SET", "k", "w"], NOPERM_SET, "lane after the reorder").await;
    assert_cmd(&mut lane, &["GET", "k"], "$1\r\nv\r\n", "lane after the reorder").await;
    assert_closed(&mut own, "a connection of its own, under the old rule").await;

    // The user's roles change: the writer's rule again.
    let mut own = stack.authed("u").await;
    assert_cmd(&mut own, &["MULTI"], OK, "own").await;
    stack.ok("PUT", &format!("/v1/users/{uid}"), json!({"role_uids": [writer]})).await;
    assert_cmd(&mut lane, &["SET", "k", "w"], OK, "lane after the role change").await;
    assert_closed(&mut own, "a connection in MULTI, under the old rule").await;

    // No longer admitted: every connection of the user on this database goes.
    let mut own = stack.authed("u").await;
    assert_cmd(&mut own, &["SUBSCRIBE", "ch"], "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", "own").await;
    let mut idle = stack.authed("u").await;
    let in_use = internal_users(&stack).await;
    stack.grant(&[(reader, reader_acl)]).await;
    assert_closed(&mut lane, "lane of a user no longer admitted").await;
    assert_closed(&mut own, "subscriber of a user no longer admitted").await;
    assert_closed(&mut idle, "idle client of a user no longer admitted").await;
    let mut again = Conn::connect(&stack.db()).await;
    assert_eq!(show(&again.cmd(&["AUTH", "u", USER_PW]).await), WRONGPASS);
    // The writer's rule is granted no more: its upstream user goes.
    eventually("the unused upstream user is deleted", SOON, || async {
        (internal_users(&stack).await == in_use - 1).then_some(())
    })
    .await;
}

/// How many of turnstile's users the upstream has.
async fn internal_users(stack: &Stack) -> usize {
    let users = upstream_users(&mut stack.service().await).await;
    users.iter().filter(|(n, _)| n.starts_with(USER_PREFIX)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restarted_without_its_acl_gets_turnstiles_users_back() {
    let mut stack = Stack::start().await;
    stack.default_password().await;
    let (role, acl) = stack.role_with_rule("app", "+@all -flushall ~*").await;
    stack.user("app", &[role]).await;
    stack.grant(&[(role, acl)]).await;
    let mut lane = stack.authed("app").await;
    assert_cmd(&mut lane, &["SET", "k", "v"], OK, "lane").await;
    assert_cmd(&mut stack.authed("default").await, &["SET", "k", "v"], OK, "default").await;
    let before = internal_users(&stack).await;
    assert!(before >= 2, "default's and app's users exist upstream");

    stack.upstream.restart();

    // New clients get in and work, by turnstile's doing alone.
    let db = stack.db();
    for user in ["app", "default"] {
        let (db, login) = (db.as_str(), login(user, false));
        eventually(&format!("a new {user} client works"), SOON, move || {
            let login = login.clone();
            async move {
                let mut c = Conn::connect(db).await;
                c.send(&login).await;
                c.reply().await;
                try_cmd(&mut c, &["SET", "k2", "v"]).await.filter(|r| show(r) == OK)
            }
        })
        .await;
    }
    let after = internal_users(&stack).await;
    assert_eq!(after, before, "the same users are back");
    // The rule is the rule again, not more: FLUSHALL stays refused.
    let mut c = stack.authed("app").await;
    assert_cmd(
        &mut c,
        &["FLUSHALL"],
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n",
        "after",
    )
    .await;

    // The client that was connected: at most one "closed" error, then it works.
    let lost = "-ERR upstream Redis closed the connection\r\n";
    match try_cmd(&mut lane, &["SET", "k", "v2"]).await.map(|r| show(&r)) {
        Some(r) if r == OK => {}
        Some(r) if r == lost => match try_cmd(&mut lane, &["SET", "k", "v3"]).await.map(|r| show(&r)) {
            Some(r) => assert_eq!(r, OK, "after the one error"),
            None => eprintln!(
                "the lane client was closed after {lost:?} (a lost lane closes the clients it owed)"
            ),
        },
        other => panic!("the connected lane client got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_turnstiles_on_one_upstream_keep_their_own_users() {
    let upstream = Redis::start(&["--requirepass", SVC, "--dir", &scratch_dir()]);
    let url = format!("redis://:{SVC}@{}", upstream.addr());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Process::start(dir_a.path(), &url).await;
    let mut b = Process::start(dir_b.path(), &url).await;
    // The same user name and the same role and rule names, different rules.
    for (p, rule) in [(&a, "+@all ~*"), (&b, "+@read ~*")] {
        let (role, acl) = role_with_rule(p, "app", rule).await;
        user(p, "app", &[role]).await;
        grant(p, &[(role, acl)]).await;
    }
    async fn check(a: &Process, b: &Process, when: &str) {
        assert_cmd(&mut authed(&a.bdb(1), "app").await, &["SET", "k", "a"], OK, &format!("A {when}")).await;
        assert_cmd(&mut authed(&b.bdb(1), "app").await, &["SET", "k", "b"], NOPERM_SET, &format!("B {when}"))
            .await;
    }
    check(&a, &b, "with both running").await;
    let mut a_client = authed(&a.bdb(1), "app").await;
    assert_cmd(&mut a_client, &["SET", "k", "a"], OK, "A's connected client").await;
    // B starting again reconciles its own users, and only those.
    b = b.stop_and_restart().await;
    check(&a, &b, "after B restarted").await;
    assert_cmd(&mut a_client, &["SET", "k", "a2"], OK, "A's connected client after B restarted").await;
    let mut service = service_conn(&upstream).await;
    let names: Vec<String> = upstream_users(&mut service).await.into_iter().map(|(n, _)| n).collect();
    let ours = names.iter().filter(|n| n.starts_with(USER_PREFIX)).count();
    assert!(ours >= 2, "a user for each process's rule: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_credential_that_cannot_manage_users_stops_the_start() {
    let upstream = Redis::start(&["--requirepass", SVC]);
    let mut service = service_conn(&upstream).await;
    let weak_pw = "Weak-ctl-pw-3e";
    let setuser = ["ACL", "SETUSER", "weak", "on", &format!(">{weak_pw}"), "+@all", "-acl", "~*", "&*"];
    assert_eq!(show(&service.cmd(&setuser).await), OK);
    let mut weak = upstream.connect().await;
    assert_eq!(show(&weak.cmd(&["AUTH", "weak", weak_pw]).await), OK);
    assert!(
        show(&weak.cmd(&["ACL", "SETUSER", "x"]).await).starts_with("-NOPERM"),
        "weak cannot manage users"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("turnstile.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[store]\ndir = \"{}\"\n[auth]\nargon2_m_cost = 64\nargon2_t_cost = 1\n\
             [bootstrap]\nadmin_name = \"{ADMIN}\"\nadmin_email = \"{ADMIN_EMAIL}\"\n\
             [[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nupstream = \"redis://weak:{weak_pw}@{}\"\n",
            dir.path().join("data").display(),
            upstream.addr()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .arg("--config")
        .arg(&config)
        .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // It must exit; announcing its admin API means it started.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_read = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr_pipe, &mut b).await;
        b
    });
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                status = child.wait() => return status.unwrap(),
                line = stdout.next_line() => match line.unwrap() {
                    Some(l) if l.contains("admin API listening") => {
                        panic!("turnstile started with a control credential that cannot manage users: {l}")
                    }
                    Some(_) => {}
                    None => return child.wait().await.unwrap(),
                },
            }
        }
    })
    .await
    .expect("turnstile neither started nor exited");
    let stderr = show(&stderr_read.await.unwrap());
    assert_eq!(status.code(), Some(64), "exit status; stderr: {stderr}");
    assert!(stderr.to_lowercase().contains("user"), "the message says why: {stderr:?}");
    assert!(!stderr.contains(weak_pw), "the credential is not printed: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_never_mix_on_shared_or_reused_connections() {
    let stack = Stack::start().await;
    let (app, app_acl) = stack.role_with_rule("app", "+@all ~*").await;
    let (reader, reader_acl) = stack.role_with_rule("reader", "+@read +@connection +acl|whoami ~*").await;
    stack.user("app", &[app]).await;
    stack.user("reader", &[reader]).await;
    stack.grant(&[(app, app_acl), (reader, reader_acl)]).await;
    let db = stack.db();

    // Clients of both rules, RESP2 and RESP3, pipelining at once on the lanes.
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (db, user, resp3) = (db.clone(), if c % 2 == 0 { "app" } else { "reader" }, c % 4 >= 2);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(&db).await;
            conn.send(&login(user, resp3)).await;
            conn.reply().await;
            let mut pipeline = Vec::new();
            for i in 0..50 {
                let key = format!("k:{c}:{i}");
                pipeline.extend(cmd_bytes(&["SET", &key, "v"]));
                pipeline.extend(cmd_bytes(&["GET", &key]));
            }
            conn.send(&pipeline).await;
            let null = if resp3 { "_\r\n" } else { "$-1\r\n" };
            let one = if user == "app" { format!("{OK}$1\r\nv\r\n") } else { format!("{NOPERM_SET}{null}") };
            assert_eq!(show(&conn.replies(100).await), one.repeat(50), "{user} (RESP3: {resp3})");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // Connections of their own go back to the pool and are taken again: never with
    // the rights of the client before.
    for round in 0..4 {
        for (user, set) in [("app", OK), ("reader", NOPERM_SET)] {
            let what = format!("{user}, round {round}");
            let mut c = authed(&db, user).await;
            assert_cmd(&mut c, &["SELECT", "0"], OK, &what).await;
            assert_cmd(&mut c, &["SET", "k", "v"], set, &what).await;
            assert_cmd(&mut c, &["ACL", "WHOAMI"], &bulk(user), &what).await;
            assert_eq!(show(&c.cmd(&["QUIT"]).await), OK);
            c.read_to_close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnstiles_upstream_secrets_never_reach_its_logs() {
    let mut upstream = Redis::start(&["--requirepass", SVC, "--dir", &scratch_dir()]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://:{SVC}@{}", upstream.addr());
    let p = Process::start_tracing(dir.path(), &url).await;
    api_ok(&p, "PUT", "/v1/bdbs/1/passwords", json!({ "password": DEFAULT_PW })).await;
    let (role, acl) = role_with_rule(&p, "app", "+@all ~*").await;
    user(&p, "app", &[role]).await;
    grant(&p, &[(role, acl)]).await;
    let db = p.bdb(1);
    for who in ["app", "default"] {
        assert_cmd(&mut authed(&db, who).await, &["SET", "k", "v"], OK, who).await;
    }
    api_ok(&p, "PUT", &format!("/v1/redis_acls/{acl}"), json!({"acl": "+@all -flushall ~*"})).await;
    // Users made again after a restart of the upstream, and a pinned client.
    upstream.restart();
    eventually("app works again", SOON, || async {
        let mut c = Conn::connect(&db).await;
        c.send(&login("app", false)).await;
        c.reply().await;
        try_cmd(&mut c, &["SET", "k", "v"]).await.filter(|r| show(r) == OK)
    })
    .await;
    let mut own = authed(&db, "default").await;
    assert_cmd(&mut own, &["SELECT", "0"], OK, "pinned").await;
    drop(own);

    let mut service = service_conn(&upstream).await;
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data").join("state.json")).unwrap()).unwrap();
    let key = state["upstream_users"]["secret"].as_str().unwrap().to_string();
    let mut secrets = vec![SVC.to_string(), key.clone()];
    for (name, hashes) in upstream_users(&mut service).await {
        if name.starts_with(USER_PREFIX) {
            secrets.push(derive_password(&key, &name).unwrap());
            secrets.extend(hashes);
        }
    }
    assert!(secrets.len() >= 6, "two internal users at least: {}", secrets.len());
    drop(p);
    let log = std::fs::read_to_string(dir.path().join("turnstile.log")).unwrap();
    assert!(log.contains("TRACE") && log.len() > 10_000, "trace logs were captured");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret ({}…) is in the trace logs", &s[..4]);
    }
}

/// Redis closes the subscribers whose channels a rule change revokes and keeps the
/// others; turnstile's clients, whose subscriptions live on upstream connections of
/// their rule's user, see the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_change_that_revokes_channels_closes_those_subscribers_as_redis_does() {
    let oracle = Redis::start(&["--requirepass", SVC, "--dir", &scratch_dir()]);
    let mut oracle_admin = service_conn(&oracle).await;
    oracle_user(&mut oracle_admin, "s", "+@all ~* &news:*", FIXED_DENIALS).await;
    let stack = Stack::start().await;
    let (role, acl) = stack.role_with_rule("s", "+@all ~* &news:*").await;
    stack.user("s", &[role]).await;
    stack.grant(&[(role, acl)]).await;

    let mut sides = Vec::new();
    for addr in [oracle.addr(), stack.db()] {
        let mut exact = authed(&addr, "s").await;
        assert_cmd(
            &mut exact,
            &["SUBSCRIBE", "news:1"],
            "*3\r\n$9\r\nsubscribe\r\n$6\r\nnews:1\r\n:1\r\n",
            &addr,
        )
        .await;
        let mut pattern = authed(&addr, "s").await;
        let psub = "*3\r\n$10\r\npsubscribe\r\n$6\r\nnews:*\r\n:1\r\n";
        assert_cmd(&mut pattern, &["PSUBSCRIBE", "news:*"], psub, &addr).await;
        sides.push((addr.clone(), exact, pattern, authed(&addr, "s").await));
    }

    let pw = format!(">{USER_PW}");
    let rule = with_denials("+@all ~* &news:1", FIXED_DENIALS);
    let mut args = vec!["ACL", "SETUSER", "s", "reset", "on", pw.as_str()];
    args.extend(rule.iter().map(String::as_str));
    assert_eq!(show(&oracle_admin.cmd(&args).await), OK);
    stack.ok("PUT", &format!("/v1/redis_acls/{acl}"), json!({"acl": "+@all ~* &news:1"})).await;

    let mut seen = Vec::new();
    for (addr, mut exact, mut pattern, mut publisher) in sides {
        let before_close = closed_within(&mut pattern, SOON).await.unwrap_or_else(|got| {
            panic!("{addr}: the revoked pattern subscriber is still open ({:?})", show(&got))
        });
        assert_cmd(&mut publisher, &["PUBLISH", "news:1", "hi"], ":1\r\n", &addr).await;
        let message = "*3\r\n$7\r\nmessage\r\n$6\r\nnews:1\r\n$2\r\nhi\r\n";
        assert_eq!(show(&exact.reply().await), message, "{addr}: the kept subscriber");
        let noperm =
            "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n";
        assert_cmd(&mut publisher, &["PUBLISH", "news:2", "hi"], noperm, &addr).await;
        seen.push(show(&before_close));
    }
    assert_eq!(seen[0], seen[1], "what the closed subscriber got before the close (redis, turnstile)");
}

/// One rule granted on two databases with upstreams of their own: a change reaches
/// both before the 200, and a refused one changes neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_two_databases_changes_on_both_or_neither() {
    let (one, two) = (
        Redis::start(&["--requirepass", SVC, "--dir", &scratch_dir()]),
        Redis::start(&["--requirepass", SVC, "--dir", &scratch_dir()]),
    );
    let dir = tempfile::tempdir().unwrap();
    let second = format!(
        "[[bdbs]]\nuid = 2\nname = \"two\"\nlisten = \"127.0.0.1:0\"\nupstream = \"redis://:{SVC}@{}\"\n",
        two.addr()
    );
    let url = format!("redis://:{SVC}@{}", one.addr());
    let p = Process::start_with(dir.path(), &url, "", "", &second).await;
    let (role, acl) = role_with_rule(&p, "app", "+@all ~*").await;
    user(&p, "app", &[role]).await;
    grant_on(&p, 1, &[(role, acl)]).await;
    grant_on(&p, 2, &[(role, acl)]).await;
    let mut clients = [authed(&p.bdb(1), "app").await, authed(&p.bdb(2), "app").await];
    for (i, c) in clients.iter_mut().enumerate() {
        assert_cmd(c, &["SET", "k", "v"], OK, &format!("bdb {}", i + 1)).await;
    }
    api_ok(&p, "PUT", &format!("/v1/redis_acls/{acl}"), json!({"acl": "+@all -set ~*"})).await;
    for (i, c) in clients.iter_mut().enumerate() {
        assert_cmd(c, &["SET", "k", "v"], NOPERM_SET, &format!("bdb {} after the change", i + 1)).await;
    }
    // A rule the upstreams refuse changes neither database.
    let body = r#"{"acl": "+@all ~* +nosuchcommand"}"#;
    let (status, v) = p.curl("PUT", &format!("/v1/redis_acls/{acl}"), (ADMIN, ADMIN_PW), Some(body)).await;
    assert_eq!(status, 400, "{v}");
    for (i, c) in clients.iter_mut().enumerate() {
        assert_cmd(c, &["SET", "k", "v"], NOPERM_SET, &format!("bdb {} after a refused change", i + 1)).await;
        assert_cmd(c, &["GET", "k"], "$1\r\nv\r\n", &format!("bdb {} after a refused change", i + 1)).await;
    }
}

/// An operator (or a script) deletes turnstile's upstream user by hand: Redis closes
/// its connections, and the next logins get `WRONGPASS` from the upstream; turnstile
/// makes the user again by itself. On a database that does not admit its default
/// user, the ACL subcommands do not list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_user_deleted_by_hand_comes_back() {
    let stack = Stack::start_with("", "default_user = false").await;
    let (role, acl) = stack.role_with_rule("app", "+@all ~*").await;
    stack.user("app", &[role]).await;
    stack.grant(&[(role, acl)]).await;
    let mut c = stack.authed("app").await;
    assert_cmd(&mut c, &["SET", "k", "v"], OK, "before").await;
    assert_cmd(&mut c, &["ACL", "USERS"], "*1\r\n$3\r\napp\r\n", "no default user").await;
    assert_cmd(
        &mut c,
        &["ACL", "DRYRUN", "default", "GET", "k"],
        "-ERR User 'default' not found\r\n",
        "dryrun",
    )
    .await;

    let mut service = stack.service().await;
    let names: Vec<String> = upstream_users(&mut service)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(USER_PREFIX))
        .collect();
    assert!(!names.is_empty(), "app's rule has its upstream user");
    for n in &names {
        assert_eq!(show(&service.cmd(&["ACL", "DELUSER", n]).await), ":1\r\n");
    }
    let db = stack.db();
    eventually("a new client works again", SOON, || async {
        let mut c = Conn::connect(&db).await;
        c.send(&login("app", false)).await;
        c.reply().await;
        try_cmd(&mut c, &["SET", "k", "w"]).await.filter(|r| show(r) == OK)
    })
    .await;
    assert!(internal_users(&stack).await >= names.len(), "the users are back");
}
