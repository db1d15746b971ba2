//! The replies turnstile writes itself, byte for byte as Redis 7 writes them.

use bytes::{BufMut, Bytes, BytesMut};

use super::command::c_str;

pub const OK: &[u8] = b"+OK\r\n";
pub const RESET: &[u8] = b"+RESET\r\n";
pub const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
pub const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
pub const EXECABORT_NOAUTH: &[u8] =
    b"-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n";
pub const AUTH_ARITY: &[u8] = b"-ERR wrong number of arguments for 'auth' command\r\n";
pub const WHOAMI_ARITY: &[u8] = b"-ERR wrong number of arguments for 'acl|whoami' command\r\n";
pub const RESET_ARITY: &[u8] = b"-ERR wrong number of arguments for 'reset' command\r\n";
pub const SYNTAX: &[u8] = b"-ERR syntax error\r\n";
pub const HELLO_NOAUTH: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";
pub const NOPROTO: &[u8] = b"-NOPROTO unsupported protocol version\r\n";
pub const HELLO_BAD_VERSION: &[u8] = b"-ERR Protocol version is not an integer or out of range\r\n";
pub const BAD_CLIENT_NAME: &[u8] =
    b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n";
pub const UPSTREAM_UNAVAILABLE: &[u8] = b"-ERR upstream Redis is unavailable\r\n";
pub const UPSTREAM_LOST: &[u8] = b"-ERR upstream Redis closed the connection\r\n";
pub const UPSTREAM_AUTH_FAILED: &[u8] = b"-ERR upstream Redis rejected the proxy's service credentials\r\n";
pub const UPSTREAM_RULE_REFUSED: &[u8] = b"-ERR upstream Redis refused the ACL rule of this user\r\n";
/// What Redis tells a blocked client when its node is demoted under it
/// (`disconnectAllBlockedClients`, replication.c), before closing it.
pub const UNBLOCKED: &[u8] =
    b"-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n";
/// No verified primary came within the wait bound (a Sentinel failover under way).
pub const NO_PRIMARY: &[u8] = b"-ERR upstream Redis primary is unknown (Sentinel failover in progress)\r\n";
pub const MAX_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";

/// `-ERR Syntax error in HELLO option '<opt>'`.
pub fn hello_syntax(option: &[u8]) -> Bytes {
    // Redis formats the option with `%s`: up to its first NUL.
    let option = c_str(option);
    let mut b = BytesMut::with_capacity(40 + option.len());
    b.put_slice(b"-ERR Syntax error in HELLO option '");
    put_error_text(&mut b, option);
    b.put_slice(b"'\r\n");
    b.freeze()
}

/// `-ERR unknown subcommand '<sub>'. Try <CONTAINER> HELP.`, as Redis 7 words it
/// (`commandCheckExistence`): the subcommand as a C string (up to its first NUL),
/// at most 128 bytes of it, the container's name in capitals.
pub fn unknown_subcommand(container: &[u8], sub: &[u8]) -> Bytes {
    let sub = c_str(sub);
    let mut b = BytesMut::with_capacity(64 + sub.len().min(128));
    b.put_slice(b"-ERR unknown subcommand '");
    put_error_text(&mut b, &sub[..sub.len().min(128)]);
    b.put_slice(b"'. Try ");
    put_error_text(&mut b, &c_str(container).to_ascii_uppercase());
    b.put_slice(b" HELP.\r\n");
    b.freeze()
}

/// `-ERR unknown command '<name>', with args beginning with: '<arg>' …`, as Redis 7
/// words it (`commandCheckExistence`): every argument as a C string (up to its
/// first NUL); at most 128 bytes of the name; arguments quoted one after another
/// while fewer than 128 bytes of them are shown, each cut to what is left of the
/// 128.
pub fn unknown_command(args: &[Vec<u8>]) -> Bytes {
    const SHOWN: usize = 128;
    let mut shown = Vec::with_capacity(SHOWN + 3);
    for arg in args.iter().skip(1) {
        if shown.len() >= SHOWN {
            break;
        }
        let arg = c_str(arg);
        let room = SHOWN - shown.len();
        shown.push(b'\'');
        shown.extend_from_slice(&arg[..arg.len().min(room)]);
        shown.extend_from_slice(b"' ");
    }
    let name = args.first().map_or(&b""[..], |n| c_str(n));
    let mut b = BytesMut::with_capacity(96 + SHOWN + shown.len());
    b.put_slice(b"-ERR unknown command '");
    put_error_text(&mut b, &name[..name.len().min(SHOWN)]);
    b.put_slice(b"', with args beginning with: ");
    put_error_text(&mut b, &shown);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// A bulk string: `$<len>\r\n<bytes>\r\n` (the same in RESP2 and RESP3).
pub fn bulk(s: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(s.len() + 16);
    b.put_u8(b'$');
    b.put_slice(s.len().to_string().as_bytes());
    b.put_slice(b"\r\n");
    b.put_slice(s);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// Redis replaces newlines in error texts with spaces so the reply stays one line.
fn put_error_text(b: &mut BytesMut, s: &[u8]) {
    b.extend(s.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        assert_eq!(&bulk(b"default")[..], b"$7\r\ndefault\r\n");
        assert_eq!(&hello_syntax(b"AUTH")[..], b"-ERR Syntax error in HELLO option 'AUTH'\r\n");
        assert_eq!(
            &unknown_subcommand(b"client", b"maint_notifications")[..],
            b"-ERR unknown subcommand 'maint_notifications'. Try CLIENT HELP.\r\n"
        );
        assert_eq!(
            &unknown_subcommand(b"Config", b"GET\x00x\r\n")[..],
            b"-ERR unknown subcommand 'GET'. Try CONFIG HELP.\r\n"
        );
        assert_eq!(&hello_syntax(b"FOO\x00bar")[..], b"-ERR Syntax error in HELLO option 'FOO'\r\n");
        let args = |a: &[&[u8]]| a.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            &unknown_command(&args(&[b"GET\x00x", b"k", b"a\x00b"]))[..],
            b"-ERR unknown command 'GET', with args beginning with: 'k' 'a' \r\n"
        );
        assert_eq!(
            &unknown_command(&args(&[b"\x00"]))[..],
            b"-ERR unknown command '', with args beginning with: \r\n"
        );
        // 128 bytes of arguments at most, the last one cut to fit.
        let long = vec![b'a'; 200];
        let reply = unknown_command(&args(&[b"x\x00", &long, b"next"]));
        let expected =
            format!("-ERR unknown command 'x', with args beginning with: '{}' \r\n", "a".repeat(128));
        assert_eq!(&reply[..], expected.as_bytes());
        assert_eq!(&hello_syntax(b"a\r\nb")[..], b"-ERR Syntax error in HELLO option 'a  b'\r\n");
    }
}
