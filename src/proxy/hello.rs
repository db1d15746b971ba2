//! `HELLO [protover [AUTH user pass] [SETNAME name]]`, validated as Redis 7 does.

use bytes::Bytes;

use zeroize::Zeroizing;

use crate::resp::command::c_str;
use crate::resp::{encode, number::parse_ll, replies};

/// One option of a HELLO, in the order the client gave them.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// `AUTH user pass`: checked when Redis gets to it (wiped when dropped).
    Auth(Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>),
    /// `SETNAME name`.
    SetName(Vec<u8>),
    /// An option Redis cannot parse: its error, and nothing after it is looked at.
    Syntax(Bytes),
}

/// A HELLO whose protocol version is valid.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: Option<i64>,
    /// Redis 7.0's `helloCommand` acts on the options one by one and stops at the
    /// first that fails: `HELLO 2 AUTH u bad AUTH u good` is WRONGPASS (the second
    /// AUTH is never tried), `HELLO 2 AUTH u good AUTH u bad` is WRONGPASS with the
    /// first AUTH already in effect, and a bad name or option after a good AUTH
    /// fails the HELLO but leaves the client authenticated.
    pub steps: Vec<Step>,
    /// The name the HELLO sets, once every step has passed (the last SETNAME).
    pub setname: Option<Vec<u8>>,
}

/// Validates the version of `args` (including `HELLO` itself) and lists its
/// options in order, returning Redis's error reply for a bad version (which Redis
/// checks before any option).
pub fn parse(args: &[Vec<u8>]) -> Result<Hello, Bytes> {
    let mut hello = Hello { version: None, steps: Vec::new(), setname: None };
    if args.len() >= 2 {
        let v = parse_ll(&args[1]).ok_or_else(|| Bytes::from_static(replies::HELLO_BAD_VERSION))?;
        if !(2..=3).contains(&v) {
            return Err(Bytes::from_static(replies::NOPROTO));
        }
        hello.version = Some(v);
    }
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        // Redis compares options with `strcasecmp`: `AUTH\0…` is AUTH there.
        let key = c_str(opt);
        if key.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            hello
                .steps
                .push(Step::Auth(Zeroizing::new(args[j + 1].clone()), Zeroizing::new(args[j + 2].clone())));
            j += 3;
        } else if key.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            hello.steps.push(Step::SetName(args[j + 1].clone()));
            j += 2;
        } else {
            hello.steps.push(Step::Syntax(replies::hello_syntax(opt)));
            break;
        }
    }
    Ok(hello)
}

/// Redis's rule for client names (`clientSetNameOrReply`): no spaces, newlines or
/// other special characters; empty clears the name.
pub fn name_is_valid(name: &[u8]) -> bool {
    name.iter().all(|c| (b'!'..=b'~').contains(c))
}

impl Hello {
    /// The HELLO sent upstream: the client's, minus its credentials (the upstream
    /// connection is already logged in with the service credentials).
    pub fn upstream_command(&self) -> Bytes {
        let version = self.version.map(|v| v.to_string());
        let mut args: Vec<&[u8]> = vec![b"HELLO"];
        if let Some(v) = &version {
            args.push(v.as_bytes());
        }
        if let Some(name) = &self.setname {
            args.push(b"SETNAME");
            args.push(name);
        }
        encode::command(&args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn redis_errors_in_redis_order() {
        assert_eq!(&parse(&args("HELLO 4")).unwrap_err()[..], replies::NOPROTO);
        assert_eq!(&parse(&args("HELLO x")).unwrap_err()[..], replies::HELLO_BAD_VERSION);
        let syntax = |s: &str| match parse(&args(s)).unwrap().steps.pop() {
            Some(Step::Syntax(reply)) => reply,
            other => panic!("{other:?}"),
        };
        assert_eq!(&syntax("HELLO 3 AUTH")[..], b"-ERR Syntax error in HELLO option 'AUTH'\r\n");
        assert_eq!(&syntax("HELLO 3 AUTH u")[..], b"-ERR Syntax error in HELLO option 'AUTH'\r\n");
        assert!(!name_is_valid(b"a\tb"));
        assert!(name_is_valid(b"ab"));
    }

    #[test]
    fn options_are_kept_in_order_up_to_the_first_bad_one() {
        let h = parse(&args("HELLO 2 AUTH u bad SETNAME n AUTH u good FOO AUTH x y")).unwrap();
        let kinds: Vec<&str> = h
            .steps
            .iter()
            .map(|s| match s {
                Step::Auth(..) => "auth",
                Step::SetName(_) => "setname",
                Step::Syntax(_) => "syntax",
            })
            .collect();
        assert_eq!(kinds, ["auth", "setname", "auth", "syntax"]);
        assert_eq!(h.steps[0], Step::Auth(Zeroizing::new(b"u".to_vec()), Zeroizing::new(b"bad".to_vec())));
    }

    /// Options are read as C strings, as Redis's `strcasecmp` reads them.
    #[test]
    fn options_end_at_a_nul() {
        let args = |a: &[&[u8]]| a.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
        let h = parse(&args(&[b"HELLO", b"3", b"auth\x00x", b"u", b"p", b"SETNAME\x00", b"n"])).unwrap();
        assert_eq!(h.steps[0], Step::Auth(Zeroizing::new(b"u".to_vec()), Zeroizing::new(b"p".to_vec())));
        assert_eq!(h.steps[1], Step::SetName(b"n".to_vec()));
        let h = parse(&args(&[b"HELLO", b"3", b"FOO\x00AUTH"])).unwrap();
        assert_eq!(h.steps, [Step::Syntax(replies::hello_syntax(b"FOO"))]);
    }

    #[test]
    fn strips_credentials_upstream() {
        let mut h = parse(&args("HELLO 3 AUTH u p SETNAME app")).unwrap();
        h.setname = Some(b"app".to_vec());
        assert_eq!(
            &h.upstream_command()[..],
            b"*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$3\r\napp\r\n"
        );
        assert_eq!(&parse(&args("HELLO")).unwrap().upstream_command()[..], b"*1\r\n$5\r\nHELLO\r\n");
    }
}
