//! Where a database's upstream Redis is and how turnstile logs in to it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use tokio_util::sync::CancellationToken;

use super::PoolLimits;
use super::io::UpstreamStream;
use super::sentinel::SentinelSpec;
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
    /// `rediss://`: the connection is TLS, with SNI and verification for the host.
    pub tls: bool,
    /// For `rediss://`: the CA that verifies the upstream (and turnstile's own client
    /// certificate, if it needs one). Set from the configuration, not the URL.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// `redis+sentinel://`: the primary is whichever node these Sentinels name, and
    /// `address` is the one last verified (empty before the first).
    pub sentinel: Option<Arc<SentinelSpec>>,
    /// Cancelled once this node is no longer the verified primary of a
    /// Sentinel-managed database: its lanes and clients' own connections end, its
    /// pooled connections are dropped. Never cancelled for a fixed upstream.
    pub retired: CancellationToken,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .finish()
    }
}

impl Upstream {
    /// Parses `redis[s]://[user[:password]@]host:port`, or
    /// `redis[s]+sentinel://[user[:password]@]host:port[,host:port…]/<master name>`
    /// (the Sentinels' addresses; the credentials are the data nodes'). User and
    /// password may be percent-encoded. `rediss://` needs [`Self::tls_config`] set
    /// before connecting.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, sentinel, rest) = match url.split_once("://") {
            Some(("redis", rest)) => (false, false, rest),
            Some(("rediss", rest)) => (true, false, rest),
            Some(("redis+sentinel", rest)) => (false, true, rest),
            Some(("rediss+sentinel", rest)) => (true, true, rest),
            _ => {
                return Err("must look like redis://[user[:password]@]host:port (or rediss:// for TLS, \
                     or redis+sentinel://host:port[,host:port…]/<master name>)"
                    .into());
            }
        };
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
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
        let (address, sentinel, retired) = if sentinel {
            let (hosts, master) = hostport.split_once('/').ok_or(
                "the master name is missing (redis+sentinel://host:port[,host:port…]/<master name>)",
            )?;
            let master = percent_decode(master)?;
            let spec = SentinelSpec::new(hosts.split(',').map(str::to_string).collect(), master)?;
            // No primary is known yet: retired from the start, so new connections
            // wait for the first verified one.
            let retired = CancellationToken::new();
            retired.cancel();
            (String::new(), Some(Arc::new(spec)), retired)
        } else {
            let hostport = hostport.trim_end_matches('/');
            check_hostport(hostport)?;
            (hostport.to_string(), None, CancellationToken::new())
        };
        Ok(Self {
            address,
            username,
            password,
            connect_timeout: Duration::from_secs(3),
            pool: PoolLimits::default(),
            tls,
            tls_config: None,
            sentinel,
            retired,
        })
    }

    /// The URL without its password (what the admin API shows).
    pub fn display(&self) -> String {
        self.display_with(None)
    }

    /// The URL with `password` standing in for the password, if given (what
    /// `check-config` shows for a password written in the URL).
    pub fn display_with(&self, password: Option<&str>) -> String {
        let user = match (&self.username, password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        match &self.sentinel {
            Some(s) => {
                let scheme = if self.tls { "rediss+sentinel" } else { "redis+sentinel" };
                format!("{scheme}://{user}{}/{}", s.sentinels.join(","), s.master)
            }
            None => format!("{}://{user}{}", if self.tls { "rediss" } else { "redis" }, self.address),
        }
    }

    /// This upstream's settings aimed at one node (`host:port`), a primary a
    /// Sentinel named: a fresh `retired` token of its own.
    pub fn at(&self, address: &str) -> Self {
        Self { address: address.to_string(), retired: CancellationToken::new(), ..self.clone() }
    }

    /// Whether `other` names the same upstream with the same settings (then a
    /// change of the database's other settings leaves its connections alone).
    pub fn same_as(&self, other: &Self) -> bool {
        let secret = |u: &Self| u.password.as_ref().map(|p| p.as_str().to_string());
        self.sentinel == other.sentinel
            && (self.sentinel.is_some() || self.address == other.address)
            && self.username == other.username
            && secret(self) == secret(other)
            && self.tls == other.tls
            && self.connect_timeout == other.connect_timeout
            && self.pool == other.pool
    }

    /// Whether connections to this node may carry clients' commands: false once a
    /// Sentinel-managed node is no longer the verified primary (or before the first).
    pub fn is_current(&self) -> bool {
        !self.retired.is_cancelled()
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

    /// The host part of the address, for SNI and certificate verification.
    pub fn host(&self) -> &str {
        let host = self.address.rsplit_once(':').map_or(self.address.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Opens a connection (and, for `rediss://`, completes the TLS handshake),
    /// bounded by the connect timeout.
    pub async fn connect(&self) -> std::io::Result<UpstreamStream> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }

    async fn open(&self) -> std::io::Result<UpstreamStream> {
        let stream = TcpStream::connect(&self.address).await?;
        stream.set_nodelay(true)?;
        if !self.tls {
            return Ok(UpstreamStream::Tcp(stream));
        }
        let config = self.tls_config.clone().ok_or_else(|| {
            std::io::Error::other("rediss:// upstream without a CA to verify it (upstream_tls_ca)")
        })?;
        let name = rustls::pki_types::ServerName::try_from(self.host().to_string())
            .map_err(|_| std::io::Error::other("the upstream host is not a valid TLS server name"))?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
        Ok(UpstreamStream::Tls(Box::new(tls)))
    }
}

/// Checks a `host:port`.
pub(crate) fn check_hostport(hostport: &str) -> Result<(), String> {
    let (host, port) = hostport.rsplit_once(':').ok_or("a port is required (host:port)")?;
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    port.parse::<u16>().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
    Ok(())
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
        let u = Upstream::parse("rediss://db.example:6380").unwrap();
        assert!(u.tls && u.tls_config.is_none());
        assert_eq!(u.host(), "db.example");
        assert_eq!(Upstream::parse("rediss://[::1]:6380").unwrap().host(), "::1");
        assert!(!Upstream::parse("redis://x:1").unwrap().tls);
    }

    #[test]
    fn parses_sentinel_forms() {
        let u = Upstream::parse("redis+sentinel://svc:pw@127.0.0.1:26379,[::1]:26380/my%2Dmaster").unwrap();
        let s = u.sentinel.as_ref().unwrap();
        assert_eq!(s.sentinels, ["127.0.0.1:26379", "[::1]:26380"]);
        assert_eq!(s.master, "my-master");
        assert!(Upstream::parse("redis+sentinel://h:1/my%2Fmaster").is_err(), "a '/' in the name");
        assert_eq!((u.username.as_deref(), u.address.as_str(), u.tls), (Some("svc"), "", false));
        assert!(!u.is_current(), "no primary is known before the Sentinels are asked");
        let node = u.at("10.0.0.1:6379");
        assert!(node.is_current() && !u.is_current());
        assert!(node.same_as(&u), "a node of the same database is the same upstream");
        let t = Upstream::parse("rediss+sentinel://h:1/m").unwrap();
        assert!(t.tls && t.sentinel.is_some());
        assert!(Upstream::parse("redis+sentinel://h:1").is_err(), "no master name");
        assert!(Upstream::parse("redis+sentinel://h:1/").is_err(), "empty master name");
        assert!(Upstream::parse("redis+sentinel://h:1,/m").is_err(), "empty Sentinel");
        assert!(Upstream::parse("redis+sentinel://h/m").is_err(), "no port");
        assert!(Upstream::parse("redis+sentinel://h:1/m/x").is_err(), "a path");
        assert!(!Upstream::parse("redis+sentinel://a:1/m").unwrap().same_as(&t));
    }

    #[test]
    fn debug_redacts_the_password() {
        let u = Upstream::parse("redis://svc:hunter2@db:7000").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
