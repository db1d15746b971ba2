//! A database whose upstream is a primary under Redis Sentinel
//! (`redis+sentinel://…/<master name>`): where the Sentinels are ([`SentinelSpec`]),
//! how they are asked and the answer verified ([`ask`]), and the task per database
//! that follows the primary ([`watch`]) — by subscribing to `+switch-master` on
//! every reachable Sentinel ([`subscribe`]), by a poll as the safety net, and
//! whenever the data path reports a connection error or a `-READONLY`.
//!
//! Follows <https://redis.io/docs/latest/develop/reference/sentinel-clients/>.

mod ask;
mod subscribe;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::Upstream;

/// How long one Sentinel may take to connect and answer before the next is asked
/// (the spec's "short timeout"); capped by the upstream connect timeout.
pub const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);

/// The Sentinels of one database and the name they know its primary by. Their own
/// credentials (`sentinel_username`, `sentinel_password_env`) are kept apart from
/// the data nodes'.
#[derive(Clone)]
pub struct SentinelSpec {
    /// `host:port` of each Sentinel, in the order given.
    pub sentinels: Vec<String>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
}

impl SentinelSpec {
    /// Checks the addresses and the master name.
    pub fn new(sentinels: Vec<String>, master: String) -> Result<Self, String> {
        if sentinels.is_empty() || sentinels.iter().any(String::is_empty) {
            return Err("a Sentinel address is empty (host:port[,host:port…])".into());
        }
        if sentinels.len() > 64 {
            return Err("at most 64 Sentinels".into());
        }
        for s in &sentinels {
            super::upstream::check_hostport(s).map_err(|why| format!("Sentinel {s:?}: {why}"))?;
        }
        if master.is_empty() || master.len() > 256 || master.contains(['/', ' ', '?', '#']) {
            return Err("the master name must be 1 to 256 characters, without '/', spaces, '?' or '#'".into());
        }
        Ok(Self { sentinels, master, username: None, password: None })
    }

    /// One Sentinel as an [`Upstream`] to open sessions on: its address, the
    /// Sentinels' credentials, and the data nodes' TLS settings (`rediss+sentinel://`
    /// is TLS to both).
    fn sentinel(&self, i: usize, template: &Upstream) -> Upstream {
        let mut u = template.at(&self.sentinels[i]);
        u.username = self.username.clone();
        u.password = self.password.clone();
        u.sentinel = None;
        u.connect_timeout = template.connect_timeout.min(SENTINEL_TIMEOUT);
        u
    }
}

impl PartialEq for SentinelSpec {
    fn eq(&self, other: &Self) -> bool {
        let secret = |s: &Self| s.password.as_ref().map(|p| p.as_str().to_string());
        self.sentinels == other.sentinels
            && self.master == other.master
            && self.username == other.username
            && secret(self) == secret(other)
    }
}

impl std::fmt::Debug for SentinelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSpec")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Shared by the watcher and its subscribers.
pub(super) type Spec = Arc<SentinelSpec>;
