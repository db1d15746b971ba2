//! Idle upstream connections kept for reuse, so that a client that connects, AUTHs,
//! sends one command and leaves (the connection churn of PHP, serverless and CLI
//! workloads) does not cost a TCP connect, a service AUTH and a close to Redis.
//!
//! A connection enters the pool only when its client left with nothing owed. If that
//! client sent anything but stateless data commands (GET, SET, HSET…), it enters only
//! after Redis confirmed `RESET` (which clears everything a client can leave behind:
//! MULTI, WATCH, SELECT, subscriptions, tracking, the name, RESP3, and the login)
//! and the AUTH as its turnstile user again. Connections are kept per rule: the next
//! client gets one logged in with its own rights, exactly as fresh as a new one,
//! minus the round trips.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::Upstream;
use super::users::Credential;
use crate::authz::RuleKey;
use crate::resp::reply::ReplyScanner;

/// How many idle upstream connections a database keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// 0 disables reuse: every client connection opens and closes its own.
    pub size: usize,
    pub idle: Duration,
    /// Upstream connections shared by all clients of a database for stateless
    /// commands (see [`super::lane`]); 0 gives every client its own connection.
    pub shared: usize,
    /// What turnstile queues for one client of a shared connection before it
    /// disconnects it (`proxy.client_output_buffer_*`).
    pub output: super::mailbox::OutputLimits,
    /// For a Sentinel-managed upstream (`proxy.sentinel_*`).
    pub failover: FailoverTiming,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            size: 64,
            idle: Duration::from_secs(30),
            shared: 1,
            output: Default::default(),
            failover: Default::default(),
        }
    }
}

/// How a Sentinel-managed database follows its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverTiming {
    /// How long a new request waits for a verified primary during a failover
    /// before it is answered that the primary is unknown.
    pub wait: Duration,
    /// How often the Sentinels are asked even without news (the safety net
    /// behind `+switch-master`); at most a second.
    pub poll: Duration,
}

impl Default for FailoverTiming {
    fn default() -> Self {
        Self { wait: Duration::from_secs(3), poll: Duration::from_millis(500) }
    }
}

/// One upstream connection, both halves.
pub struct Conn {
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
}

struct Idle {
    conn: Conn,
    since: Instant,
    /// The upstream it was opened for: a changed upstream (address, credentials)
    /// must never be served by a connection to the old one.
    upstream: Arc<Upstream>,
    /// The rule whose turnstile user it is logged in as.
    key: RuleKey,
}

/// See the module documentation. Newest last: taking the newest keeps the set of
/// connections in use small and lets the oldest expire.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

/// Bounds on giving a connection back: a Redis that does not answer `RESET` at once
/// (or streams pushes at us) is not worth keeping.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);
const RECYCLE_MAX_BYTES: usize = 64 * 1024;
const RESET: &[u8] = b"*1\r\n$5\r\nRESET\r\n";

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.len()).finish()
    }
}

impl Pool {
    /// Idle connections right now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live idle connection to `upstream` logged in with rule `key`'s rights, if
    /// there is one.
    pub fn take(&self, upstream: &Arc<Upstream>, key: RuleKey) -> Option<Conn> {
        loop {
            let idle = {
                let mut idle = self.lock();
                let i = idle.iter().rposition(|i| i.key == key)?;
                idle.remove(i)
            };
            if !Arc::ptr_eq(&idle.upstream, upstream) || idle.since.elapsed() > upstream.pool.idle {
                // Stale: everything older is staler, and a changed upstream
                // invalidates them all.
                self.sweep(upstream);
                return None;
            }
            // Redis may have closed it meanwhile (restart, `timeout`): the reactor
            // has then marked it readable, and a read says EOF. A live, idle one
            // has nothing to read (without readiness this costs no syscall).
            let mut probe = [0u8; 1];
            match idle.conn.reader.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(idle.conn),
                _ => continue,
            }
        }
    }

    /// Drops connections that expired or belong to another upstream.
    pub fn sweep(&self, upstream: &Arc<Upstream>) {
        let limit = upstream.pool.idle;
        let dropped: Vec<Idle> = {
            let mut idle = self.lock();
            let (keep, drop): (Vec<Idle>, Vec<Idle>) = idle
                .drain(..)
                .partition(|i| Arc::ptr_eq(&i.upstream, upstream) && i.since.elapsed() <= limit);
            *idle = keep;
            drop
        };
        // Closed outside the lock.
        drop(dropped);
    }

    /// Keeps `conn`, logged in as `cred`, if there is room: at once if its client
    /// sent only stateless commands, else once Redis has confirmed `RESET` and the
    /// AUTH again. Runs after the client has gone, off its latency path.
    pub async fn give_back(
        &self,
        mut conn: Conn,
        upstream: Arc<Upstream>,
        cred: &Credential,
        key: RuleKey,
        needs_reset: bool,
    ) {
        if upstream.pool.size == 0 || self.len() >= upstream.pool.size {
            return;
        }
        if needs_reset {
            match tokio::time::timeout(RECYCLE_TIMEOUT, reset(&mut conn, cred)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "upstream connection not reusable");
                    return;
                }
                Err(_) => return,
            }
        }
        let mut idle = self.lock();
        if idle.len() < upstream.pool.size {
            idle.push(Idle { conn, since: Instant::now(), upstream, key });
        }
    }
}

/// Sends `RESET` and the AUTH as `cred`, then reads until Redis has confirmed both.
/// Anything before `+RESET` is what the last client's subscriptions or tracking
/// pushed after it left: dropped, never shown to anyone.
async fn reset(conn: &mut Conn, cred: &Credential) -> std::io::Result<()> {
    let auth = Some(cred.auth_command());
    let mut request = zeroize::Zeroizing::new(RESET.to_vec());
    if let Some(auth) = &auth {
        request.extend_from_slice(auth);
    }
    conn.writer.write_all(&request).await?;
    let mut buf = BytesMut::with_capacity(512);
    let mut scanner = ReplyScanner::new();
    let mut seen = 0usize;
    let mut reset_done = false;
    let refused = || std::io::Error::other("upstream refused RESET or turnstile's AUTH");
    loop {
        let mut pos = 0;
        while pos < buf.len() {
            let (n, info) = scanner.scan(&buf[pos..]).map_err(|_| refused())?;
            pos += n;
            let Some(info) = info else { continue };
            if !reset_done {
                reset_done = info.kind == b'+' && info.head.eq_ignore_case(b"RESET");
                // A Redis without RESET (before 6.2) answers with an error.
                if info.kind == b'-' {
                    return Err(refused());
                }
                if reset_done && auth.is_none() {
                    return finish(pos, &buf);
                }
            } else if info.kind == b'+' && info.head.eq_ignore_case(b"OK") {
                return finish(pos, &buf);
            } else {
                return Err(refused());
            }
        }
        let _ = buf.split_to(pos);
        seen += pos;
        if seen > RECYCLE_MAX_BYTES {
            return Err(std::io::Error::other("too much unsolicited data before +RESET"));
        }
        conn.reader.readable().await?;
        match conn.reader.try_read_buf(&mut buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The confirmations must be the last bytes: anything after them is unexplained.
fn finish(pos: usize, buf: &[u8]) -> std::io::Result<()> {
    if pos == buf.len() { Ok(()) } else { Err(std::io::Error::other("unexpected bytes after RESET")) }
}
