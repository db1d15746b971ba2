//! Where a database's upstream Redis is and how turnstile logs in to it.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::PoolLimits;
use crate::resp::encode;

/// The upstream of one database. Its credentials are the proxy's own service
/// credentials; applications never see them.
#[derive(Clone)]
pub struct Upstream {
    /// `host:port`.
    pub address: String,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
    pub connect_timeout: Duration,
    /// Idle connections kept for reuse (see [`super::pool`]).
    pub pool: PoolLimits,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Upstream {
    /// Parses `redis://[user[:password]@]host:port`. User and password may be
    /// percent-encoded. `rediss://` (TLS) is refused with a clear message for now.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = match url.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => {
                return Err("rediss:// (TLS to the upstream) is not supported yet; use redis://".into());
            }
            _ => return Err("must look like redis://[user[:password]@]host:port".into()),
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or("a port is required (host:port)")?;
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        port.parse::<u16>().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => {
                    (Some(percent_decode(user)?), Some(Zeroizing::new(percent_decode(pass)?)))
                }
                None => (Some(percent_decode(u)?), None),
            },
        };
        let username = username.filter(|u| !u.is_empty());
        Ok(Self {
            address: hostport.to_string(),
            username,
            password,
            connect_timeout: Duration::from_secs(3),
            pool: PoolLimits::default(),
        })
    }

    /// The AUTH command turnstile sends first on every upstream connection, if the
    /// upstream needs one.
    pub fn auth_command(&self) -> Option<Bytes> {
        let pass = self.password.as_ref()?;
        Some(match &self.username {
            Some(user) => encode::command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
            None => encode::command(&[b"AUTH", pass.as_bytes()]),
        })
    }

    /// Opens a connection, bounded by the connect timeout.
    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding in user or password")?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user or password is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let u = Upstream::parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!((u.address.as_str(), u.username, u.password.is_none()), ("127.0.0.1:6379", None, true));
        let u = Upstream::parse("redis://svc:p%40ss@db:7000").unwrap();
        assert_eq!(u.username.as_deref(), Some("svc"));
        assert_eq!(u.password.as_deref().map(String::as_str), Some("p@ss"));
        let u = Upstream::parse("redis://:secret@db:7000").unwrap();
        assert_eq!(u.username, None);
        assert_eq!(&u.auth_command().unwrap()[..], b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n");
        assert!(Upstream::parse("http://x:1").is_err());
        assert!(Upstream::parse("redis://x").is_err());
        assert!(Upstream::parse("redis://x:99999").is_err());
        assert!(Upstream::parse("rediss://x:1").unwrap_err().contains("TLS"));
    }

    #[test]
    fn debug_redacts_the_password() {
        let u = Upstream::parse("redis://svc:hunter2@db:7000").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
