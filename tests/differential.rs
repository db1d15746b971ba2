//! Differential test of the client side: the same bytes sent to a real Redis configured
//! with the same users and passwords (the oracle) and to turnstile must get the same
//! bytes back (`resp-auth.md`'s rule of thumb), case by case, on fresh connections.
//! Besides every row of the spec's table, the cases take AUTH / HELLO / ACL WHOAMI /
//! RESET / QUIT into contexts where Redis treats them specially (MULTI, RESP2 pub/sub,
//! `CLIENT REPLY`): the rule of thumb covers those too.
//!
//! Not tested here, on purpose:
//! - An *unknown* command before authentication: Redis answers `-ERR unknown command …`,
//!   turnstile `-NOAUTH Authentication required.` (it keeps no command table). That is
//!   the one difference the spec accepts.
//! - A *known* command with the wrong number of arguments before authentication: Redis
//!   checks arity before authentication and answers with an arity error; the spec says
//!   nothing about it, so every pre-auth command below is a valid one.
//!
//! Documented differences (README), asserted as such in `documented_differences`:
//! `AUTH` / `ACL WHOAMI` inside `MULTI` are answered at once rather than queued, and
//! while subscribed in RESP2 they are answered rather than refused.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to collect a case's output.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// Read this many complete replies, then send `QUIT` and read until the server
    /// closes: the tail (which must be just `+OK`, and is compared like the rest)
    /// proves that no extra or missing reply is hiding behind the first `n`.
    Replies(usize),
    /// The server closes the connection by itself (QUIT, protocol errors): read all.
    ToClose,
}
use Read::{Replies, ToClose};

/// One command as a RESP multibulk.
fn c(args: &[&str]) -> Vec<u8> {
    cmd_bytes(args)
}

/// Several commands written in one go (a pipeline).
fn p(cmds: &[&[&str]]) -> Vec<u8> {
    cmds.iter().flat_map(|a| cmd_bytes(a)).collect()
}

/// The cases: (name, exact bytes written at once on a fresh connection, how to read).
/// Keys are distinct per case, so both servers hold the same data at every step.
fn cases() -> Vec<(&'static str, Vec<u8>, Read)> {
    let big = "b".repeat(20_000);
    let filler = vec![b'f'; 70_000];
    let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    let mut rpush11 = vec!["RPUSH", "k:rpush11"];
    rpush11.extend(eleven.iter().map(String::as_str));
    vec![
        // ---- Before authentication: valid commands only.
        ("preauth PING", c(&["PING"]), Replies(1)),
        ("preauth GET", c(&["GET", "k:pre"]), Replies(1)),
        ("preauth SET", c(&["SET", "k:pre", "v"]), Replies(1)),
        ("preauth ACL WHOAMI", c(&["ACL", "WHOAMI"]), Replies(1)),
        ("preauth lowercase acl whoami", c(&["acl", "whoami"]), Replies(1)),
        (
            "preauth pipeline of valid commands",
            p(&[&["PING"], &["ECHO", "x"], &["GET", "k:pre"], &["ACL", "WHOAMI"]]),
            Replies(4),
        ),
        ("preauth EXEC", c(&["EXEC"]), Replies(1)),
        ("preauth MULTI, DISCARD, EXEC", p(&[&["MULTI"], &["DISCARD"], &["EXEC"]]), Replies(3)),
        (
            "preauth SET is not stored",
            p(&[&["SET", "k:prestored", "v"], &["AUTH", "pw1"], &["GET", "k:prestored"]]),
            Replies(3),
        ),
        // ---- AUTH that succeeds: every password of the default set, and a user.
        ("AUTH pw1", p(&[&["AUTH", "pw1"], &["PING"], &["ACL", "WHOAMI"]]), Replies(3)),
        ("AUTH pw2", p(&[&["AUTH", "pw2"], &["PING"], &["ACL", "WHOAMI"]]), Replies(3)),
        ("AUTH default pw1", p(&[&["AUTH", "default", "pw1"], &["ACL", "WHOAMI"]]), Replies(2)),
        ("AUTH default pw2", p(&[&["AUTH", "default", "pw2"], &["ACL", "WHOAMI"]]), Replies(2)),
        (
            "AUTH alice",
            p(&[
                &["AUTH", "alice", "alice-pw"],
                &["ACL", "WHOAMI"],
                &["SET", "k:alice", "v"],
                &["GET", "k:alice"],
            ]),
            Replies(4),
        ),
        (
            "lowercase auth",
            p(&[&["auth", "pw1"], &["Auth", "Default", "pw2"], &["acl", "whoami"]]),
            Replies(3),
        ),
        // ---- AUTH that fails.
        ("AUTH wrong password", p(&[&["AUTH", "nope"], &["PING"]]), Replies(2)),
        ("AUTH empty password", c(&["AUTH", ""]), Replies(1)),
        ("AUTH password in wrong case", c(&["AUTH", "PW1"]), Replies(1)),
        ("AUTH default wrong password", p(&[&["AUTH", "default", "nope"], &["PING"]]), Replies(2)),
        ("AUTH unknown user", p(&[&["AUTH", "mallory", "pw1"], &["ACL", "WHOAMI"]]), Replies(2)),
        ("AUTH alice with a default password", c(&["AUTH", "alice", "pw1"]), Replies(1)),
        ("AUTH default with alice's password", c(&["AUTH", "default", "alice-pw"]), Replies(1)),
        ("AUTH no args", p(&[&["AUTH"], &["PING"]]), Replies(2)),
        ("AUTH 3 args", p(&[&["AUTH", "a", "b", "c"], &["PING"]]), Replies(2)),
        (
            "AUTH 3 args with valid credentials first",
            p(&[&["AUTH", "default", "pw1", "extra"], &["PING"]]),
            Replies(2),
        ),
        ("AUTH 4 args", c(&["AUTH", "default", "pw1", "x", "y"]), Replies(1)),
        // ---- AUTH on an authenticated connection.
        (
            "failed AUTH keeps the identity",
            p(&[
                &["AUTH", "alice", "alice-pw"],
                &["AUTH", "nope"],
                &["ACL", "WHOAMI"],
                &["AUTH", "default", "alice-pw"],
                &["ACL", "WHOAMI"],
                &["PING"],
            ]),
            Replies(6),
        ),
        (
            "AUTH switches identity",
            p(&[
                &["AUTH", "pw1"],
                &["ACL", "WHOAMI"],
                &["AUTH", "alice", "alice-pw"],
                &["ACL", "WHOAMI"],
                &["AUTH", "default", "pw2"],
                &["ACL", "WHOAMI"],
            ]),
            Replies(6),
        ),
        (
            "bad-arity AUTH after auth",
            p(&[&["AUTH", "pw1"], &["AUTH"], &["AUTH", "a", "b", "c"], &["PING"]]),
            Replies(4),
        ),
        (
            "ACL WHOAMI with an extra argument after auth",
            p(&[&["AUTH", "pw1"], &["ACL", "WHOAMI", "extra"]]),
            Replies(2),
        ),
        // ---- HELLO. Successful replies carry the server's client id: see `normalise_ids`.
        ("HELLO 3 before auth", p(&[&["HELLO", "3"], &["PING"]]), Replies(2)),
        ("HELLO 2 before auth", c(&["HELLO", "2"]), Replies(1)),
        ("HELLO before auth", c(&["HELLO"]), Replies(1)),
        ("HELLO 4", c(&["HELLO", "4"]), Replies(1)),
        ("HELLO 1", c(&["HELLO", "1"]), Replies(1)),
        ("HELLO -1", c(&["HELLO", "-1"]), Replies(1)),
        ("HELLO x", c(&["HELLO", "x"]), Replies(1)),
        ("HELLO 4 with valid AUTH", p(&[&["HELLO", "4", "AUTH", "default", "pw1"], &["PING"]]), Replies(2)),
        ("HELLO AUTH without a version", c(&["HELLO", "AUTH", "default", "pw1"]), Replies(1)),
        ("HELLO 3 AUTH missing both", c(&["HELLO", "3", "AUTH"]), Replies(1)),
        ("HELLO 3 AUTH missing password", c(&["HELLO", "3", "AUTH", "default"]), Replies(1)),
        ("HELLO 3 unknown option", c(&["HELLO", "3", "FOO", "bar"]), Replies(1)),
        // Redis compares HELLO's options (and CLIENT REPLY's modes) with `strcasecmp`,
        // which stops at a NUL, and quotes them with `%s`, which does too.
        ("HELLO 3 unknown option with a NUL", c(&["HELLO", "3", "FOO\0bar", "x"]), Replies(1)),
        (
            "HELLO 3 AUTH option with a NUL",
            p(&[&["HELLO", "3", "AUTH\0x", "default", "pw1"], &["PING"]]),
            Replies(2),
        ),
        (
            "HELLO 2 AUTH with a NUL, wrong password",
            p(&[&["HELLO", "2", "auth\0", "default", "nope"], &["PING"]]),
            Replies(2),
        ),
        (
            "CLIENT REPLY mode with a NUL",
            p(&[
                &["AUTH", "pw1"],
                &["CLIENT", "REPLY", "off\0x"],
                &["PING"],
                &["CLIENT", "REPLY", "on\0"],
                &["PING"],
            ]),
            Replies(3),
        ),
        ("HELLO 2 SETNAME missing name", c(&["HELLO", "2", "SETNAME"]), Replies(1)),
        (
            "HELLO 3 AUTH ok",
            p(&[
                &["HELLO", "3", "AUTH", "default", "pw1"],
                &["PING"],
                &["ACL", "WHOAMI"],
                &["CONFIG", "GET", "maxmemory"],
            ]),
            Replies(4),
        ),
        ("HELLO 2 AUTH ok", p(&[&["HELLO", "2", "AUTH", "default", "pw2"], &["PING"]]), Replies(2)),
        (
            "HELLO 3 AUTH alice",
            p(&[&["HELLO", "3", "AUTH", "alice", "alice-pw"], &["ACL", "WHOAMI"]]),
            Replies(2),
        ),
        ("lowercase hello auth", p(&[&["hello", "3", "auth", "default", "pw2"], &["ping"]]), Replies(2)),
        ("HELLO 3 AUTH bad", p(&[&["HELLO", "3", "AUTH", "default", "nope"], &["PING"]]), Replies(2)),
        ("HELLO 2 AUTH bad", p(&[&["HELLO", "2", "AUTH", "default", "nope"], &["PING"]]), Replies(2)),
        ("HELLO 3 AUTH unknown user", p(&[&["HELLO", "3", "AUTH", "mallory", "pw1"], &["PING"]]), Replies(2)),
        (
            "HELLO 3 AUTH ok SETNAME",
            p(&[&["HELLO", "3", "AUTH", "default", "pw1", "SETNAME", "myapp"], &["CLIENT", "GETNAME"]]),
            Replies(2),
        ),
        (
            "HELLO 3 SETNAME bad name before auth",
            p(&[&["HELLO", "3", "SETNAME", "bad name"], &["PING"]]),
            Replies(2),
        ),
        (
            "HELLO 3 AUTH ok SETNAME bad name",
            p(&[
                &["HELLO", "3", "AUTH", "default", "pw1", "SETNAME", "bad name"],
                &["PING"],
                &["ACL", "WHOAMI"],
                &["CLIENT", "GETNAME"],
            ]),
            Replies(4),
        ),
        (
            "HELLO 3 AUTH bad SETNAME bad name",
            p(&[&["HELLO", "3", "AUTH", "default", "nope", "SETNAME", "bad name"], &["PING"]]),
            Replies(2),
        ),
        (
            "HELLO 3 AUTH twice, the last one counts",
            p(&[&["HELLO", "3", "AUTH", "default", "pw1", "AUTH", "alice", "alice-pw"], &["ACL", "WHOAMI"]]),
            Replies(2),
        ),
        (
            "HELLO after AUTH",
            p(&[&["AUTH", "pw1"], &["HELLO", "3"], &["PING"], &["HELLO", "2"], &["PING"], &["HELLO"]]),
            Replies(6),
        ),
        (
            "HELLO SETNAME after AUTH",
            p(&[&["AUTH", "pw1"], &["HELLO", "2", "SETNAME", "app2"], &["CLIENT", "GETNAME"]]),
            Replies(3),
        ),
        (
            "failed HELLO AUTH keeps identity and protocol",
            p(&[
                &["HELLO", "3", "AUTH", "alice", "alice-pw"],
                &["HELLO", "2", "AUTH", "default", "nope"],
                &["ACL", "WHOAMI"],
                &["CONFIG", "GET", "maxmemory"],
            ]),
            Replies(4),
        ),
        // ---- Pipelines mixing AUTH and other commands in one write.
        ("pipeline: preauth, AUTH, commands", p(&[&["PING"], &["AUTH", "pw1"], &["PING"]]), Replies(3)),
        (
            "pipeline: AUTH, commands, failed AUTH, WHOAMI",
            p(&[
                &["AUTH", "pw1"],
                &["PING"],
                &["SET", "k:pipe", "1"],
                &["GET", "k:pipe"],
                &["AUTH", "nope"],
                &["ACL", "WHOAMI"],
                &["INCR", "k:pipe"],
                &["AUTH", "alice", "alice-pw"],
                &["ACL", "WHOAMI"],
                &["GET", "k:pipe"],
            ]),
            Replies(10),
        ),
        (
            "pipeline: HELLO AUTH in the middle",
            p(&[
                &["GET", "k:pipehello"],
                &["HELLO", "3", "AUTH", "default", "pw2"],
                &["SET", "k:pipehello", "x"],
                &["GET", "k:pipehello"],
                &["HELLO", "2"],
                &["ECHO", "end"],
            ]),
            Replies(6),
        ),
        (
            "HELLO inside MULTI",
            p(&[&["AUTH", "pw1"], &["MULTI"], &["HELLO", "3"], &["PING"], &["EXEC"], &["PING"]]),
            Replies(6),
        ),
        (
            "RESET inside MULTI",
            p(&[
                &["AUTH", "pw1"],
                &["MULTI"],
                &["SET", "k:multireset", "1"],
                &["RESET"],
                &["AUTH", "pw2"],
                &["EXEC"],
                &["EXISTS", "k:multireset"],
            ]),
            Replies(7),
        ),
        (
            "QUIT inside MULTI",
            p(&[&["AUTH", "pw1"], &["MULTI"], &["SET", "k:multiquit", "1"], &["QUIT"]]),
            ToClose,
        ),
        (
            "CLIENT REPLY OFF silences turnstile's own replies",
            p(&[
                &["AUTH", "pw1"],
                &["CLIENT", "REPLY", "OFF"],
                &["AUTH", "nope"],
                &["ACL", "WHOAMI"],
                &["PING"],
                &["CLIENT", "REPLY", "ON"],
                &["ACL", "WHOAMI"],
            ]),
            Replies(3),
        ),
        (
            "CLIENT REPLY SKIP skips an own reply",
            p(&[&["AUTH", "pw1"], &["CLIENT", "REPLY", "SKIP"], &["AUTH", "nope"], &["PING"]]),
            Replies(2),
        ),
        // ---- RESET.
        (
            "RESET, NOAUTH, re-AUTH",
            p(&[
                &["AUTH", "pw1"],
                &["SET", "k:reset", "v"],
                &["RESET"],
                &["GET", "k:reset"],
                &["ACL", "WHOAMI"],
                &["AUTH", "pw2"],
                &["GET", "k:reset"],
                &["ACL", "WHOAMI"],
            ]),
            Replies(8),
        ),
        ("RESET before auth", p(&[&["RESET"], &["PING"], &["AUTH", "pw1"], &["PING"]]), Replies(4)),
        (
            "RESET after HELLO 3 as alice",
            p(&[
                &["HELLO", "3", "AUTH", "alice", "alice-pw", "SETNAME", "n1"],
                &["RESET"],
                &["PING"],
                &["AUTH", "pw1"],
                &["ACL", "WHOAMI"],
                &["CLIENT", "GETNAME"],
                &["CONFIG", "GET", "maxmemory"],
            ]),
            Replies(7),
        ),
        (
            "RESET then HELLO AUTH",
            p(&[&["AUTH", "pw1"], &["RESET"], &["HELLO", "3", "AUTH", "default", "pw2"], &["PING"]]),
            Replies(4),
        ),
        // ---- QUIT: +OK, then the server closes; nothing after it is answered.
        ("QUIT before auth", c(&["QUIT"]), ToClose),
        ("QUIT with an argument", c(&["QUIT", "now"]), ToClose),
        ("QUIT after AUTH", p(&[&["AUTH", "pw1"], &["QUIT"]]), ToClose),
        (
            "QUIT in a pipeline",
            p(&[&["AUTH", "pw1"], &["SET", "k:quit", "1"], &["QUIT"], &["GET", "k:quit"]]),
            ToClose,
        ),
        ("QUIT in a preauth pipeline", p(&[&["PING"], &["QUIT"], &["PING"]]), ToClose),
        // ---- Inline commands.
        ("inline PING before auth", b"PING\r\n".to_vec(), Replies(1)),
        ("inline AUTH then PING", b"AUTH pw1\r\nPING\r\n".to_vec(), Replies(2)),
        ("inline AUTH user pw", b"AUTH alice alice-pw\r\nACL WHOAMI\r\n".to_vec(), Replies(2)),
        ("inline LF only", b"AUTH pw2\nPING\nACL WHOAMI\n".to_vec(), Replies(3)),
        (
            "inline quoted args",
            b"AUTH \"pw1\"\r\nSET k:inline 'a b'\r\nGET k:inline\r\nECHO \"x\\x41\\ty\"\r\n".to_vec(),
            Replies(4),
        ),
        ("inline extra spaces", b"  AUTH   pw1   \r\nPING\r\n".to_vec(), Replies(2)),
        ("inline bad AUTH", b"AUTH nope\r\nAUTH\r\nAUTH a b c\r\nPING\r\n".to_vec(), Replies(4)),
        ("inline HELLO AUTH", b"HELLO 3 AUTH default pw1\r\nPING\r\n".to_vec(), Replies(2)),
        ("inline then multibulk", [b"AUTH pw1\r\n".to_vec(), c(&["ACL", "WHOAMI"])].concat(), Replies(2)),
        // ---- Empty frames: Redis consumes them without a reply.
        ("*0 before auth", b"*0\r\nPING\r\n".to_vec(), Replies(1)),
        ("*0 and *-1 around AUTH", b"*-1\r\nAUTH pw1\r\n*0\r\n*-5\r\nPING\r\n".to_vec(), Replies(2)),
        ("blank inline lines", b"\r\n\r\n   \r\nAUTH pw1\r\n\r\n\nPING\r\n".to_vec(), Replies(2)),
        (
            "empty frames after auth",
            [c(&["AUTH", "pw1"]), b"*0\r\n\r\n".to_vec(), c(&["PING"])].concat(),
            Replies(2),
        ),
        // ---- Sizes: limits before auth, none after.
        (
            "10 elements before auth is fine",
            c(&["DEL", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"]),
            Replies(1),
        ),
        ("16384-byte bulk before auth is fine", c(&["AUTH", &"y".repeat(16384)]), Replies(1)),
        (
            "11 elements and a 20000-byte bulk after auth",
            [c(&["AUTH", "pw1"]), c(&rpush11), c(&["SET", "k:big", &big]), c(&["STRLEN", "k:big"])].concat(),
            Replies(4),
        ),
        // ---- Issue 12: CLIENT REPLY and HELLO, HELLO's options one by one, RESET's
        // arity, the cross-protocol defence, NUL bytes that hide a line's end.
        (
            "CLIENT REPLY OFF silences a HELLO",
            p(&[
                &["AUTH", "pw1"],
                &["CLIENT", "REPLY", "OFF"],
                &["HELLO", "3"],
                &["CLIENT", "REPLY", "ON"],
                &["PING"],
            ]),
            Replies(3),
        ),
        (
            "CLIENT REPLY SKIP skips a HELLO",
            p(&[&["AUTH", "pw1"], &["CLIENT", "REPLY", "SKIP"], &["HELLO", "2"], &["PING"]]),
            Replies(2),
        ),
        (
            "HELLO with a bad AUTH, then a good one",
            p(&[&["HELLO", "2", "AUTH", "default", "nope", "AUTH", "default", "pw1"], &["ACL", "WHOAMI"]]),
            Replies(2),
        ),
        (
            "HELLO with a good AUTH, then a bad one",
            p(&[
                &["HELLO", "3", "AUTH", "alice", "alice-pw", "AUTH", "default", "nope"],
                &["ACL", "WHOAMI"],
                &["PING"],
            ]),
            Replies(3),
        ),
        (
            "HELLO AUTH then a bad name",
            p(&[
                &["HELLO", "3", "AUTH", "alice", "alice-pw", "SETNAME", "a b"],
                &["ACL", "WHOAMI"],
                &["PING"],
            ]),
            Replies(3),
        ),
        (
            "HELLO bad name then AUTH",
            p(&[&["HELLO", "3", "SETNAME", "a b", "AUTH", "alice", "alice-pw"], &["ACL", "WHOAMI"]]),
            Replies(2),
        ),
        (
            "HELLO AUTH then a bad option",
            p(&[&["HELLO", "2", "AUTH", "default", "pw1", "FOO"], &["ACL", "WHOAMI"]]),
            Replies(2),
        ),
        (
            "HELLO bad AUTH then a bad option",
            p(&[&["HELLO", "2", "AUTH", "default", "nope", "FOO"], &["ACL", "WHOAMI"]]),
            Replies(2),
        ),
        ("RESET x before auth", p(&[&["RESET", "x"], &["PING"]]), Replies(2)),
        ("RESET x keeps the login", p(&[&["AUTH", "pw1"], &["RESET", "x"], &["ACL", "WHOAMI"]]), Replies(3)),
        (
            "RESET x fails a MULTI",
            p(&[
                &["AUTH", "pw1"],
                &["MULTI"],
                &["SET", "k:resetx", "1"],
                &["RESET", "x"],
                &["EXEC"],
                &["GET", "k:resetx"],
            ]),
            Replies(6),
        ),
        ("POST before auth", b"POST / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(), ToClose),
        ("Host: before auth", b"Host: example\r\nPING\r\n".to_vec(), ToClose),
        ("post as a multibulk", c(&["post", "x"]), ToClose),
        ("POST after AUTH drops the AUTH's reply", b"AUTH pw1\r\nPOST /\r\nPING\r\n".to_vec(), ToClose),
        ("POSTS is just unknown", p(&[&["AUTH", "pw1"], &["POSTS"]]), Replies(2)),
        // Redis waits for a line end it cannot see; the filler pushes the buffer past
        // 64 KiB, where both give up with the same error instead of waiting forever.
        ("inline PING\\0", [&b"AUTH pw1\r\nPING\0\r\n"[..], &filler].concat(), ToClose),
        ("inline GET a\\0", [&b"AUTH pw1\r\nGET a\0\r\n"[..], &filler].concat(), ToClose),
        ("a NUL line in a pipeline", [&b"AUTH pw1\r\nPING\r\n\0\r\nPING\r\n"[..], &filler].concat(), ToClose),
        ("NUL in a *N header", [&b"AUTH pw1\r\n*1\0\r\n$4\r\nPING\r\n"[..], &filler].concat(), ToClose),
        ("NUL in a $N header", [&b"AUTH pw1\r\n*1\r\n$4\0\r\nPING\r\n"[..], &filler].concat(), ToClose),
        ("NUL in a *N header before auth", [&b"*1\0\r\n"[..], &filler].concat(), ToClose),
        // ---- Protocol errors: an error reply, then the server closes.
        ("*x", b"*x\r\n".to_vec(), ToClose),
        ("$abc", b"*1\r\n$abc\r\n".to_vec(), ToClose),
        ("$-1 in a multibulk", b"*1\r\n$-1\r\n".to_vec(), ToClose),
        ("expected $", b"*1\r\n:5\r\n".to_vec(), ToClose),
        ("*11 before auth", b"*11\r\n".to_vec(), ToClose),
        ("$16385 before auth", b"*1\r\n$16385\r\n".to_vec(), ToClose),
        ("bulk over proto-max-bulk-len before auth", b"*1\r\n$99999999999\r\n".to_vec(), ToClose),
        ("multibulk over INT_MAX before auth", b"*3000000000\r\n".to_vec(), ToClose),
        ("unbalanced quotes", b"ECHO \"unterminated\r\n".to_vec(), ToClose),
        ("replies before a protocol error come first", b"AUTH pw1\r\nPING\r\n*1\r\n$x\r\n".to_vec(), ToClose),
        ("protocol error after auth", [c(&["AUTH", "pw1"]), b"*1\r\n$abc\r\n".to_vec()].concat(), ToClose),
        ("too big inline request", vec![b'a'; 64 * 1024 + 10], ToClose),
        ("too big multibulk count string", [b"*".to_vec(), vec![b'1'; 70_000]].concat(), ToClose),
    ]
}

/// Writes `input` on a fresh connection to `addr` and collects the output. A close,
/// a hang or unparsable bytes do not abort the test: they end the output with a
/// `<…>` marker, so the case is reported next to the other side's bytes.
async fn run(addr: &str, input: &[u8], read: Read) -> Vec<u8> {
    let mut conn = Conn::connect(addr).await;
    conn.send(input).await;
    let mut out = Vec::new();
    match tokio::time::timeout(REPLY_TIMEOUT, collect(&mut conn.stream, read, &mut out)).await {
        Ok(Ok(())) => {}
        Ok(Err(marker)) => out.extend_from_slice(marker.as_bytes()),
        Err(_) => out.extend_from_slice(b"<timed out>"),
    }
    out
}

async fn collect(stream: &mut TcpStream, read: Read, out: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = vec![0u8; 64 * 1024];
    if let Replies(n) = read {
        let mut got = 0;
        let mut framed = 0; // bytes of `out` that form complete replies
        while got < n {
            if let Some(len) = reply_len(&out[framed..])? {
                framed += len;
                got += 1;
                continue;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(format!("<closed after {got} of {n} replies>")),
                Ok(k) => out.extend_from_slice(&chunk[..k]),
            }
        }
        stream.write_all(&cmd_bytes(&["QUIT"])).await.map_err(|e| format!("<QUIT not sent: {e}>"))?;
    }
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(k) => out.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Length of the complete reply at the start of `buf`, if it is all there. RESP3
/// framing, or RESP2 for what RESP3 lacks (`$-1`, `*-1` nulls).
fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    use redis_protocol::{resp2, resp3};
    match resp3::decode::complete::decode_range(buf) {
        Ok(Some((_, len))) => Ok(Some(len)),
        Ok(None) => Ok(None),
        Err(e3) => match resp2::decode::decode_range(buf) {
            Ok(r) => Ok(r.map(|(_, len)| len)),
            Err(e2) => Err(format!("<invalid RESP: {e3:?} / {e2:?}>")),
        },
    }
}

/// The one field that legitimately differs between two Redis servers: a HELLO reply's
/// `id` (the server's own client id, `$2\r\nid\r\n:<n>\r\n` in RESP2 and RESP3 alike).
/// Its digits become `ID`; every other byte, of HELLO replies too, is compared as is.
/// Returns the normalised bytes and how many ids were replaced.
fn normalise_ids(b: &[u8]) -> (Vec<u8>, usize) {
    const FIELD: &[u8] = b"$2\r\nid\r\n:";
    let mut out = Vec::with_capacity(b.len());
    let mut replaced = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(FIELD) {
            out.extend_from_slice(FIELD);
            i += FIELD.len();
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && b[i + digits..].starts_with(b"\r\n") {
                out.extend_from_slice(b"ID");
                i += digits;
                replaced += 1;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    (out, replaced)
}

#[test]
fn normalise_ids_touches_only_the_id_value() {
    let hello = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$2\r\nid\r\n:1234\r\n$4\r\nmode\r\n";
    let (n, k) = normalise_ids(hello);
    assert_eq!(show(&n), "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$2\r\nid\r\n:ID\r\n$4\r\nmode\r\n");
    assert_eq!(k, 1);
    let (n, k) = normalise_ids(b"$2\r\nid\r\n$3\r\n:12\r\n");
    assert_eq!(show(&n), "$2\r\nid\r\n$3\r\n:12\r\n");
    assert_eq!(k, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_in_same_bytes_out_as_redis() {
    // Redis A: the oracle, with the same users and passwords as turnstile.
    let redis_a = Redis::start(&[]);
    let mut admin = redis_a.connect().await;
    assert_eq!(
        show(&admin.cmd(&["ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]).await),
        "+OK\r\n"
    );
    assert_eq!(
        show(
            &admin
                .cmd(&["ACL", "SETUSER", "default", "on", "resetpass", ">pw1", ">pw2", "~*", "&*", "+@all",])
                .await
        ),
        "+OK\r\n"
    );
    // The oracle really requires authentication now.
    let mut check = redis_a.connect().await;
    assert_eq!(show(&check.cmd(&["PING"]).await), "-NOAUTH Authentication required.\r\n");

    // Redis B behind turnstile.
    let redis_b = Redis::start(&[]);
    let proxy = Proxy::start(&redis_b, &["pw1", "pw2"]).await;
    proxy.add_user("alice", &["alice-pw"]).await;
    let proxy_addr = proxy.addr.to_string();
    let oracle_addr = redis_a.addr();

    let mut failures = Vec::new();
    let mut hello_ids = 0;
    let cases = cases();
    let total = cases.len();
    for (name, input, read) in cases {
        let (oracle, ours) = tokio::join!(run(&oracle_addr, &input, read), run(&proxy_addr, &input, read));
        let (oracle, k) = normalise_ids(&oracle);
        let (ours, _) = normalise_ids(&ours);
        hello_ids += k;
        if oracle != ours {
            let shown_input = if input.len() > 200 {
                format!("{:?}… ({} bytes)", show(&input[..200]), input.len())
            } else {
                format!("{:?}", show(&input))
            };
            failures.push(format!(
                "case {name:?}\n  input:     {shown_input}\n  redis:     {:?}\n  turnstile: {:?}",
                show(&oracle),
                show(&ours)
            ));
        }
    }
    // The table must exercise successful HELLO replies, or the id normalisation and the
    // HELLO comparisons would be vacuous.
    assert!(hello_ids >= 10, "only {hello_ids} HELLO ids seen from Redis");
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from Redis:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The two places where turnstile answers differently from Redis on purpose (see the
/// README): both servers are asked, so the test also notices if Redis changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_differences() {
    let redis_a = Redis::start(&[]);
    let mut admin = redis_a.connect().await;
    admin.cmd(&["ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]).await;
    admin.cmd(&["ACL", "SETUSER", "default", "on", "resetpass", ">pw1", "~*", "&*", "+@all"]).await;
    let redis_b = Redis::start(&[]);
    let proxy = Proxy::start(&redis_b, &["pw1"]).await;
    proxy.add_user("alice", &["alice-pw"]).await;

    let multi =
        p(&[&["AUTH", "pw1"], &["MULTI"], &["AUTH", "alice", "alice-pw"], &["ACL", "WHOAMI"], &["EXEC"]]);
    let redis = run(&redis_a.addr(), &multi, Replies(5)).await;
    assert_eq!(show(&redis), "+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$5\r\nalice\r\n+OK\r\n");
    let ours = run(&proxy.addr.to_string(), &multi, Replies(5)).await;
    assert_eq!(show(&ours), "+OK\r\n+OK\r\n+OK\r\n$5\r\nalice\r\n*0\r\n+OK\r\n");

    let subscribed = p(&[&["AUTH", "pw1"], &["SUBSCRIBE", "ch"], &["ACL", "WHOAMI"], &["UNSUBSCRIBE"]]);
    let redis = run(&redis_a.addr(), &subscribed, Replies(4)).await;
    assert!(show(&redis).contains("-ERR Can't execute 'acl|whoami'"), "{}", show(&redis));
    let ours = run(&proxy.addr.to_string(), &subscribed, Replies(4)).await;
    assert_eq!(
        show(&ours),
        "+OK\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n$7\r\ndefault\r\n*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n+OK\r\n"
    );
}
