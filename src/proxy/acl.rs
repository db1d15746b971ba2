//! The replies to the `ACL` subcommands turnstile answers about its own users of a
//! database, in Redis 7's words and encodings.

use bytes::{BufMut, Bytes, BytesMut};
use redis_protocol::resp2::types::OwnedFrame;

/// `-NOPERM …` as Redis answers a user whose rule lacks `fullname` (`acl|list`):
/// Redis 7.0 says "this user", 7.2 and later name the user (`user`).
pub fn noperm(fullname: &str, user: Option<&str>) -> Bytes {
    match user {
        None => {
            Bytes::from(format!("-NOPERM this user has no permissions to run the '{fullname}' command\r\n"))
        }
        Some(user) => {
            // One line, whatever the name holds.
            let user: String = user.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
            Bytes::from(format!("-NOPERM User {user} has no permissions to run the '{fullname}' command\r\n"))
        }
    }
}

/// Redis's arity error for `fullname`.
pub fn arity(fullname: &str) -> Bytes {
    Bytes::from(format!("-ERR wrong number of arguments for '{fullname}' command\r\n"))
}

/// `ACL DRYRUN` naming a user the database does not have.
pub fn user_not_found(name: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(32 + name.len());
    b.put_slice(b"-ERR User '");
    b.extend(name.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    b.put_slice(b"' not found\r\n");
    b.freeze()
}

/// An array of bulk strings (`ACL USERS`, `ACL LIST`): the same in RESP2 and RESP3.
pub fn strings<S: AsRef<[u8]>>(items: &[S]) -> Bytes {
    let mut b = BytesMut::new();
    header(&mut b, b'*', items.len());
    for i in items {
        bulk(&mut b, i.as_ref());
    }
    b.freeze()
}

/// A null reply (`ACL GETUSER` of an unknown user).
pub fn null(resp3: bool) -> Bytes {
    Bytes::from_static(if resp3 { b"_\r\n" } else { b"$-1\r\n" })
}

/// `ACL GETUSER`'s reply from its RESP2 form, re-encoded for the client's
/// protocol: in RESP3 the fields are a map, `flags` a set, each selector a map.
pub fn getuser(details: &OwnedFrame, resp3: bool) -> Bytes {
    let mut b = BytesMut::new();
    let OwnedFrame::Array(fields) = details else {
        return null(resp3);
    };
    if !resp3 {
        encode(&mut b, details, false);
        return b.freeze();
    }
    header(&mut b, b'%', fields.len() / 2);
    for pair in fields.chunks(2) {
        let [key, value] = pair else { break };
        encode(&mut b, key, true);
        match (text(key), value) {
            (Some("flags"), OwnedFrame::Array(flags)) => {
                header(&mut b, b'~', flags.len());
                flags.iter().for_each(|f| encode(&mut b, f, true));
            }
            (Some("selectors"), OwnedFrame::Array(selectors)) => {
                header(&mut b, b'*', selectors.len());
                for s in selectors {
                    match s {
                        OwnedFrame::Array(kv) => {
                            header(&mut b, b'%', kv.len() / 2);
                            kv.iter().for_each(|f| encode(&mut b, f, true));
                        }
                        other => encode(&mut b, other, true),
                    }
                }
            }
            (_, v) => encode(&mut b, v, true),
        }
    }
    b.freeze()
}

/// A `CLIENT INFO` reply (`$` in RESP2, a verbatim `=` string in RESP3) with its
/// `user=<from>` field shown as `user=<to>`, or an `ACL DRYRUN` refusal (Redis
/// 7.2+: `User <from> has no permissions…`) with `<to>` in its place; anything
/// else (an error, `+OK`) unchanged.
pub fn rewrite_user(reply: &[u8], from: &str, to: &str) -> Vec<u8> {
    let Some(kind @ (b'$' | b'=')) = reply.first().copied() else { return reply.to_vec() };
    let Some(eol) = reply.windows(2).position(|w| w == b"\r\n") else { return reply.to_vec() };
    let body = &reply[eol + 2..reply.len().saturating_sub(2)];
    let (field, dryrun) = (format!("user={from}"), format!("User {from} "));
    let (at, needle, shown) = if body.starts_with(dryrun.as_bytes()) {
        (0, dryrun, format!("User {to} "))
    } else {
        let Some(at) = body.windows(field.len()).position(|w| w == field.as_bytes()) else {
            return reply.to_vec();
        };
        // Only a whole field: the name must end at a space or a line end.
        if body.get(at + field.len()).is_some_and(|c| !c.is_ascii_whitespace()) {
            return reply.to_vec();
        }
        (at, field, format!("user={to}"))
    };
    let end = at + needle.len();
    let mut new_body = Vec::with_capacity(body.len() + to.len());
    new_body.extend_from_slice(&body[..at]);
    new_body.extend_from_slice(shown.as_bytes());
    new_body.extend_from_slice(&body[end..]);
    let mut out = BytesMut::with_capacity(new_body.len() + 16);
    header(&mut out, kind, new_body.len());
    out.put_slice(&new_body);
    out.put_slice(b"\r\n");
    out.to_vec()
}

fn text(f: &OwnedFrame) -> Option<&str> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn header(b: &mut BytesMut, kind: u8, n: usize) {
    b.put_u8(kind);
    b.put_slice(n.to_string().as_bytes());
    b.put_slice(b"\r\n");
}

fn bulk(b: &mut BytesMut, s: &[u8]) {
    header(b, b'$', s.len());
    b.put_slice(s);
    b.put_slice(b"\r\n");
}

fn encode(b: &mut BytesMut, f: &OwnedFrame, resp3: bool) {
    match f {
        OwnedFrame::SimpleString(s) => {
            b.put_u8(b'+');
            b.put_slice(s);
            b.put_slice(b"\r\n");
        }
        OwnedFrame::Error(e) => {
            b.put_u8(b'-');
            b.put_slice(e.as_bytes());
            b.put_slice(b"\r\n");
        }
        OwnedFrame::Integer(i) => {
            b.put_u8(b':');
            b.put_slice(i.to_string().as_bytes());
            b.put_slice(b"\r\n");
        }
        OwnedFrame::BulkString(s) => bulk(b, s),
        OwnedFrame::Array(items) => {
            header(b, b'*', items.len());
            items.iter().for_each(|i| encode(b, i, resp3));
        }
        OwnedFrame::Null => b.put_slice(&null(resp3)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> OwnedFrame {
        let s = |x: &str| OwnedFrame::BulkString(x.as_bytes().to_vec());
        OwnedFrame::Array(vec![
            s("flags"),
            OwnedFrame::Array(vec![s("on")]),
            s("passwords"),
            OwnedFrame::Array(vec![]),
            s("commands"),
            s("+@all"),
            s("selectors"),
            OwnedFrame::Array(vec![OwnedFrame::Array(vec![s("commands"), s("+get")])]),
        ])
    }

    #[test]
    fn encodes_like_redis() {
        assert_eq!(&strings(&["alice", "default"])[..], b"*2\r\n$5\r\nalice\r\n$7\r\ndefault\r\n");
        assert_eq!(
            &noperm("acl|list", None)[..],
            b"-NOPERM this user has no permissions to run the 'acl|list' command\r\n"
        );
        assert_eq!(&user_not_found(b"a\nb")[..], b"-ERR User 'a b' not found\r\n");
        let r2 = getuser(&details(), false);
        assert!(r2.starts_with(b"*8\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$9\r\npasswords\r\n*0\r\n"));
        let r3 = getuser(&details(), true);
        assert!(r3.starts_with(b"%4\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$9\r\npasswords\r\n*0\r\n"));
        assert!(r3.ends_with(b"$9\r\nselectors\r\n*1\r\n%1\r\n$8\r\ncommands\r\n$4\r\n+get\r\n"));
        assert_eq!(&null(true)[..], b"_\r\n");
        let info = b"$49\r\nid=3 addr=x user=__turnstile:ab:1:default resp=2\n\r\n";
        assert_eq!(
            rewrite_user(info, "__turnstile:ab:1:default", "default"),
            b"$32\r\nid=3 addr=x user=default resp=2\n\r\n"
        );
        let v = b"=53\r\ntxt:id=3 addr=x user=__turnstile:ab:1:default resp=3\n\r\n";
        assert_eq!(
            rewrite_user(v, "__turnstile:ab:1:default", "alice"),
            b"=34\r\ntxt:id=3 addr=x user=alice resp=3\n\r\n"
        );
        assert_eq!(rewrite_user(b"-ERR x\r\n", "a", "b"), b"-ERR x\r\n");
    }
}
