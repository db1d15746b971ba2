//! turnstile's upstream user names kept out of the errors clients see.
//!
//! Redis 7.2 and later (and Valkey) name the user in ACL errors: `-NOPERM User
//! <name> has no permissions to run the 'get' command`, and `-ERR ACL failure in
//! script: User <name> …`. On turnstile's upstream connections that name is
//! turnstile's own (`__turnstile:<instance>:<bdb>:<rule>`), which a client must
//! never learn; the client is shown its own name instead, as Redis would show it.
//! Redis 7.0 says "this user" and needs nothing.
//!
//! The same holds for an error *inside* a reply: an `EXEC` array element, a
//! script's `redis.pcall` error returned in a table, a RESP3 map value. Those are
//! found by [`crate::resp::reply::ReplyScanner::scan_errors`] as the relay walks
//! the reply, and each is rewritten here like a top-level one (an error element is
//! a line of its own, so replacing it leaves the rest of the reply as it is).
//!
//! Bulk strings are left alone, even one holding error text (a script's
//! `return redis.pcall(...)['err']`): a value is the application's data, and
//! turnstile never rewrites data.

use super::USER_PREFIX;

/// Longest error line looked at: ACL errors are a line of a few hundred bytes.
pub const MAX_ERROR: usize = crate::resp::reply::MAX_ERROR;

/// True if `error` (one error line, top-level or an element) names one of
/// turnstile's upstream users: the one search the common case costs.
pub fn names_internal(error: &[u8]) -> bool {
    find(error, USER_PREFIX.as_bytes()).is_some()
}

/// `reply` (one complete RESP simple error, `-…\r\n`, the whole reply or an
/// element of one) with every turnstile user
/// name in it replaced by `client`, or `None` if it names none (the common case,
/// which costs one search of the line).
pub fn rewrite_error(reply: &[u8], client: &str) -> Option<Vec<u8>> {
    let prefix = USER_PREFIX.as_bytes();
    if reply.first() != Some(&b'-') || reply.len() > MAX_ERROR || find(reply, prefix).is_none() {
        return None;
    }
    // A simple error is one line: a name with a line break in it would end it early.
    let shown: Vec<u8> = client.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
    let mut out = Vec::with_capacity(reply.len());
    let mut rest = reply;
    while let Some(at) = find(rest, prefix) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&shown);
        // The name runs to the next space (turnstile's names have none) or the line end.
        let tail = &rest[at..];
        let end = tail.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\'').unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.extend_from_slice(rest);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_own_name_replaces_turnstiles() {
        let got = rewrite_error(
            b"-NOPERM User __turnstile:90429db0:1:acl1 has no permissions to run the 'get' command\r\n",
            "alice",
        );
        assert_eq!(got.unwrap(), b"-NOPERM User alice has no permissions to run the 'get' command\r\n");
    }

    #[test]
    fn script_failures_and_several_names_are_rewritten() {
        let got = rewrite_error(
            b"-ERR ACL failure in script: User __turnstile:ab:2:default has no permissions to run the 'set' \
              command script: 4963, on @user_script:1. __turnstile:ab:2:default\r\n",
            "default",
        )
        .unwrap();
        assert_eq!(
            got,
            b"-ERR ACL failure in script: User default has no permissions to run the 'set' command script: \
              4963, on @user_script:1. default\r\n"
        );
        assert!(!got.windows(USER_PREFIX.len()).any(|w| w == USER_PREFIX.as_bytes()));
    }

    #[test]
    fn errors_without_a_name_and_other_replies_are_left_alone() {
        assert!(
            rewrite_error(b"-NOPERM this user has no permissions to run the 'get' command\r\n", "a")
                .is_none()
        );
        assert!(rewrite_error(b"-NOPERM No permissions to access a key\r\n", "a").is_none());
        // A value is data, whatever it holds.
        assert!(rewrite_error(b"+__turnstile:x:1:acl1\r\n", "a").is_none());
        assert!(rewrite_error(b"$21\r\n__turnstile:x:1:acl1\r\n\r\n", "a").is_none());
    }

    #[test]
    fn a_name_with_a_line_break_cannot_end_the_line() {
        let got = rewrite_error(b"-NOPERM User __turnstile:x:1:acl1 has no\r\n", "ev\r\n+OK").unwrap();
        assert_eq!(got, b"-NOPERM User ev  +OK has no\r\n");
    }
}
