//! `HELLO [protover [AUTH user pass] [SETNAME name]]`, validated as Redis 7 does.

use bytes::Bytes;

use crate::resp::{encode, number::parse_ll, replies};

/// A valid HELLO request.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: Option<i64>,
    pub auth: Option<(Vec<u8>, Vec<u8>)>,
    pub setname: Option<Vec<u8>>,
}

/// Validates `args` (including `HELLO` itself) in Redis's order, returning Redis's
/// error reply for the first problem.
pub fn parse(args: &[Vec<u8>]) -> Result<Hello, Bytes> {
    let mut hello = Hello { version: None, auth: None, setname: None };
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
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            hello.auth = Some((args[j + 1].clone(), args[j + 2].clone()));
            j += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            hello.setname = Some(args[j + 1].clone());
            j += 2;
        } else {
            return Err(replies::hello_syntax(opt));
        }
    }
    Ok(hello)
}

impl Hello {
    /// Redis checks the name only after the AUTH option (7.0: a bad name fails the
    /// HELLO but the AUTH in it has already taken effect, and the protocol stays).
    pub fn name_is_valid(&self) -> bool {
        self.setname.as_ref().is_none_or(|n| n.iter().all(|c| (b'!'..=b'~').contains(c)))
    }

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
        assert_eq!(
            &parse(&args("HELLO 3 AUTH")).unwrap_err()[..],
            b"-ERR Syntax error in HELLO option 'AUTH'\r\n"
        );
        assert_eq!(
            &parse(&args("HELLO 3 AUTH u")).unwrap_err()[..],
            b"-ERR Syntax error in HELLO option 'AUTH'\r\n"
        );
        assert!(!parse(&args("HELLO 3 SETNAME a\tb")).unwrap().name_is_valid());
        assert!(parse(&args("HELLO 3 SETNAME ab")).unwrap().name_is_valid());
    }

    #[test]
    fn strips_credentials_upstream() {
        let h = parse(&args("HELLO 3 AUTH u p SETNAME app")).unwrap();
        assert_eq!(h.auth, Some((b"u".to_vec(), b"p".to_vec())));
        assert_eq!(
            &h.upstream_command()[..],
            b"*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$3\r\napp\r\n"
        );
        assert_eq!(&parse(&args("HELLO")).unwrap().upstream_command()[..], b"*1\r\n$5\r\nHELLO\r\n");
    }
}
