//! Test harness: a real `redis-server` on a free port, turnstile on 127.0.0.1:0, and a
//! raw RESP client that reads whole replies (framed by `redis-protocol`, an
//! implementation independent of turnstile's own scanner).
#![allow(dead_code)]

pub mod admin;
pub mod authz;
pub mod fleet;
pub mod sentinel;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use turnstile::auth::{BdbAccess, Directory, HashParams, SetChange, SetId, VerifyOptions};
use turnstile::proxy::{BdbContext, Upstream, listener};

/// Cheapest argon2 the crate accepts: tests exercise logic, not hashing cost.
pub const FAST: HashParams = HashParams { m_cost: 8, t_cost: 1, p_cost: 1 };

/// A reply must arrive within this; a hang fails the test instead of blocking CI.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` child process, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    args: Vec<String>,
    /// `redis-server`, or another server of the same protocol (Valkey).
    binary: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    /// Starts a throwaway Redis (no persistence) with extra config arguments.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_binary("redis-server", extra).unwrap_or_else(|| {
            panic!("could not start redis-server (is it installed? `apt-get install redis-server`)")
        })
    }

    /// Valkey 8, a Redis 7.2-line server, whose ACL errors name the user:
    /// `TURNSTILE_VALKEY_SERVER`, else where scripts/ensure-valkey.sh unpacks it
    /// (target/valkey), else `valkey-server` on the PATH.
    pub fn start_valkey(extra: &[&str]) -> Self {
        let binary = valkey_binary();
        Self::start_binary(&binary, extra)
            .unwrap_or_else(|| panic!("could not start {binary} (run scripts/ensure-valkey.sh)"))
    }

    /// Like `start_valkey`, or `None` (with the reason printed) when no Valkey
    /// binary is found at all, for tests that skip then.
    pub fn try_start_valkey(extra: &[&str]) -> Option<Self> {
        let binary = valkey_binary();
        let found = std::path::Path::new(&binary).exists()
            || std::process::Command::new(&binary).arg("--version").output().is_ok();
        if !found {
            eprintln!("skipped: no Valkey binary ({binary}); run scripts/ensure-valkey.sh");
            return None;
        }
        Some(Self::start_valkey(extra))
    }

    fn start_binary(binary: &str, extra: &[&str]) -> Option<Self> {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // A port found free can be taken by someone else before Redis binds it.
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn_redis(binary, port, &args) {
                return Some(Self { port, child, args, binary: binary.to_string() });
            }
        }
        None
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id (to signal it: `SIGSTOP`, `SIGCONT`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills Redis (like a crash) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if let Some(child) = spawn_redis(&self.binary, self.port, &self.args) {
                self.child = child;
                return;
            }
        }
        panic!("redis-server did not come back on port {}", self.port);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A direct connection to Redis, bypassing turnstile.
    pub async fn connect(&self) -> Conn {
        Conn::connect(&self.addr()).await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts redis-server (or `binary`) and waits until its log says it accepts connections.
/// Where `start_valkey` looks for the server (see there).
fn valkey_binary() -> String {
    let unpacked = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("valkey/usr/bin/valkey-server");
    std::env::var("TURNSTILE_VALKEY_SERVER").unwrap_or_else(|_| {
        if unpacked.exists() { unpacked.display().to_string() } else { "valkey-server".into() }
    })
}

fn spawn_redis(binary: &str, port: u16, extra: &[String]) -> Option<Child> {
    let mut child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--loglevel", "notice", "--daemonize", "no", "--protected-mode", "no"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.contains("Ready to accept connections") {
            return Some(child);
        }
    }
    // The log ended without readiness: the port was taken, or the config is bad.
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// turnstile serving one database (uid 1 unless said otherwise) in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub directory: Directory,
    pub ctx: Arc<BdbContext>,
    shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

pub struct ProxyOptions {
    pub uid: u32,
    pub upstream: String,
    pub default_user: bool,
    pub max_connections: usize,
    pub verify: VerifyOptions,
    /// Upstream connection reuse and sharing (the product's defaults unless changed).
    pub pool: turnstile::proxy::PoolLimits,
}

impl ProxyOptions {
    pub fn new(upstream: &str) -> Self {
        Self {
            uid: 1,
            upstream: upstream.to_string(),
            default_user: true,
            max_connections: 0,
            // Tests send many wrong passwords on purpose; the throttling test turns it on.
            verify: VerifyOptions {
                concurrency: 2,
                throttle: turnstile::auth::ThrottlePolicy::off(),
                ..VerifyOptions::default()
            },
            pool: turnstile::proxy::PoolLimits::default(),
        }
    }
}

impl Proxy {
    /// turnstile in front of `redis`, default-user password `pw`.
    pub async fn start(redis: &Redis, default_passwords: &[&str]) -> Self {
        let p = Self::with(ProxyOptions::new(&format!("redis://{}", redis.addr()))).await;
        for pw in default_passwords {
            p.add_default(pw).await;
        }
        p
    }

    pub async fn with(o: ProxyOptions) -> Self {
        let directory = Directory::new(FAST, o.verify);
        // Role 1's users get full access, like the default user.
        directory.set_acl(1, "~* &* +@all");
        let permissions = vec![turnstile::auth::Permission { role: 1, acl: 1 }];
        directory.set_bdb(o.uid, BdbAccess { default_user: o.default_user, permissions });
        Self::serve_with(directory, o.uid, &o.upstream, o.max_connections, o.pool).await
    }

    /// Serves database `uid` of an existing directory (several proxies may share one).
    pub async fn serve(directory: Directory, uid: u32, upstream: &str, max_connections: usize) -> Self {
        Self::serve_with(directory, uid, upstream, max_connections, turnstile::proxy::PoolLimits::default())
            .await
    }

    async fn serve_with(
        directory: Directory,
        uid: u32,
        upstream: &str,
        max_connections: usize,
        pool: turnstile::proxy::PoolLimits,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut up = Upstream::parse(upstream).unwrap();
        up.connect_timeout = Duration::from_secs(2);
        up.pool = pool;
        let ctx = Arc::new(BdbContext::new(uid, directory.clone(), up, max_connections));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::spawn(listener::serve(listener, Arc::clone(&ctx), shutdown.clone(), tracker.clone()));
        Self { addr, directory, ctx, shutdown, tracker }
    }

    pub async fn add_default(&self, pw: &str) {
        self.directory.change(&SetId::BdbDefault(self.ctx.uid), SetChange::Add, pw.as_bytes()).await.unwrap();
    }

    /// Creates user `name` (role 1, which this proxy's database admits) with passwords.
    pub async fn add_user(&self, name: &str, passwords: &[&str]) {
        self.directory.set_user(name, vec![1]).unwrap();
        for pw in passwords {
            self.directory.change(&SetId::User(name.into()), SetChange::Add, pw.as_bytes()).await.unwrap();
        }
    }

    pub async fn connect(&self) -> Conn {
        Conn::connect(&self.addr.to_string()).await
    }

    /// A connection that has authenticated as the default user with `pw`.
    pub async fn authed(&self, pw: &str) -> Conn {
        let mut c = self.connect().await;
        assert_eq!(c.cmd(&["AUTH", pw]).await, b"+OK\r\n");
        c
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A raw RESP connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Encodes a command as a RESP multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn cmd_bytes(args: &[&str]) -> Vec<u8> {
    encode(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
}

impl Conn {
    pub async fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        Self { stream, buf: Vec::new() }
    }

    /// A connection from a given local address (127.0.0.0/8 offers many), for tests
    /// that tell clients apart by address.
    pub async fn connect_from(local: &str, addr: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(local.parse().unwrap()).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream, buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends one command and returns its reply's exact bytes.
    pub async fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&cmd_bytes(args)).await;
        self.reply().await
    }

    /// The next complete reply, exact bytes.
    pub async fn reply(&mut self) -> Vec<u8> {
        self.replies(1).await
    }

    /// The next `n` complete replies, concatenated, exact bytes.
    pub async fn replies(&mut self, n: usize) -> Vec<u8> {
        tokio::time::timeout(REPLY_TIMEOUT, self.replies_inner(n)).await.unwrap_or_else(|_| {
            panic!("timed out waiting for {n} replies; have {:?}", String::from_utf8_lossy(&self.buf))
        })
    }

    async fn replies_inner(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            loop {
                match frame_len(&self.buf) {
                    Ok(Some(len)) => {
                        out.extend(self.buf.drain(..len));
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        panic!("invalid RESP from server: {e} in {:?}", String::from_utf8_lossy(&self.buf))
                    }
                }
                let mut chunk = vec![0u8; 64 * 1024];
                let k = self.stream.read(&mut chunk).await.unwrap();
                assert!(k > 0, "connection closed; got so far {:?}", String::from_utf8_lossy(&out));
                self.buf.extend_from_slice(&chunk[..k]);
            }
        }
        out
    }

    /// Reads until the peer closes; returns everything that came. Panics on hang.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        tokio::time::timeout(REPLY_TIMEOUT, async {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => out.extend_from_slice(&chunk[..k]),
                }
            }
        })
        .await
        .expect("the server did not close the connection");
        out
    }
}

/// Length of the complete reply at the start of `buf`, if it has all arrived: RESP3
/// framing, or RESP2 for what RESP3 lacks (the `$-1` / `*-1` nulls).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    use redis_protocol::{resp2, resp3};
    match resp3::decode::complete::decode_range(buf) {
        Ok(r) => Ok(r.map(|(_, len)| len)),
        Err(e3) => match resp2::decode::decode_range(buf) {
            Ok(r) => Ok(r.map(|(_, len)| len)),
            Err(e2) => Err(format!("{e3:?} / {e2:?}")),
        },
    }
}

/// `String::from_utf8_lossy` for assertion messages.
/// The value of an integer reply (`:42\r\n`).
pub fn integer(r: &[u8]) -> i64 {
    let s = show(r);
    s.strip_prefix(':')
        .and_then(|x| x.strip_suffix("\r\n"))
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {s:?}"))
}

pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
