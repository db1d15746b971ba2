//! The client-to-upstream half of a connection: frames requests, answers AUTH and
//! friends itself, forwards everything else byte for byte, and plans the replies.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroize;

use super::BdbContext;
use super::Upstream;
use super::hello;
use super::io::{READ_MIN, ReadSome, UpstreamRead, UpstreamWrite};
use super::lane::{self, Batch, Lane};
use super::mailbox::{self, Mailbox};
use super::plan::{Entry, Plan, Tag};
use super::registry::SessionSlot;
use crate::auth::Identity;
use crate::resp::command::{self, Command, MAX_NAME};
use crate::resp::replies;
use crate::resp::request::{self, Parse, Partial, ProtoError, Streamer};

/// A forwarded request larger than this is streamed to the upstream as it arrives
/// instead of being buffered whole.
const STREAM_AT: usize = 64 * 1024;
/// Requests turnstile answers itself must fit in this much (a 1 MiB password is
/// already absurd); beyond it they get Redis's "invalid bulk length" and a close.
const MAX_WHOLE: usize = 1024 * 1024;
/// How long a throttled address waits for its refusal (see `login`).
const THROTTLED_REPLY_DELAY: Duration = Duration::from_secs(1);
/// After the client stops sending (EOF, protocol error, shutdown), how long the
/// replies it is still owed may take before the connection is dropped anyway.
pub const DRAIN: Duration = Duration::from_secs(5);

/// `CLIENT REPLY` state: Redis sends no replies at all while it is OFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    SkipNext,
}

enum Flow {
    Continue,
    Stop,
    /// Close now, dropping whatever the client is still owed.
    Abort,
}

/// Where a forwarded request goes.
enum Route {
    Lane,
    Own,
    /// No upstream could be reached; the client was told and the connection is closing.
    Failed,
}

/// A lane this client uses, and where its replies arrive.
struct Shared {
    lane: Lane,
    mailbox: Arc<Mailbox>,
}

enum Decision {
    Stream(Command),
    Wait,
    TooBig,
}

/// What the client half leaves of a connection whose upstream can be reused.
pub struct Handback {
    pub writer: UpstreamWrite,
    pub upstream: Arc<Upstream>,
    /// Something but stateless commands was sent: a `RESET` is due before reuse.
    pub dirty: bool,
}

pub struct ClientHalf {
    ctx: Arc<BdbContext>,
    /// Where the admin side reads who this connection is authenticated as.
    slot: Arc<SessionSlot>,
    /// The client's address, for brute-force throttling.
    peer: Option<IpAddr>,
    plan: Arc<Plan>,
    /// The upstream connection's writer, and which upstream it leads to.
    upstream: Option<(UpstreamWrite, Arc<Upstream>)>,
    identity: Option<Identity>,
    reply_mode: ReplyMode,
    streaming: Option<Streamer>,
    /// The upstream connection may hold state a later client must not inherit
    /// (anything but [`Command::Stateless`] was sent): reusing it takes a `RESET`.
    dirty: bool,
    /// This client's share of a shared upstream connection, once it used one.
    shared: Option<Shared>,
    /// Stateless requests in the current run, bound for the lane.
    shared_pending: u64,
    /// Of those, the ones whose replies are not in the plan yet (like `pending`).
    shared_unplanned: u64,
    /// The client switched to RESP3 (`HELLO 3`) while on lanes: it uses RESP3 lanes,
    /// and a connection of its own gets `HELLO 3` first.
    resp3: bool,
    /// Never use a lane again (it sent a command that needs a connection of its own,
    /// fell behind reading, or the database does not share connections).
    pinned: bool,
    /// Plain replies owed for requests forwarded since the last push to the plan:
    /// counted here and pushed as one entry before their bytes go upstream, so a
    /// pipeline costs one plan update per read rather than one per request.
    pending: u64,
}

impl ClientHalf {
    pub fn new(ctx: Arc<BdbContext>, slot: Arc<SessionSlot>, plan: Arc<Plan>, peer: Option<IpAddr>) -> Self {
        Self {
            ctx,
            slot,
            peer,
            plan,
            upstream: None,
            identity: None,
            reply_mode: ReplyMode::On,
            streaming: None,
            dirty: false,
            shared: None,
            shared_pending: 0,
            shared_unplanned: 0,
            resp3: false,
            pinned: false,
            pending: 0,
        }
    }

    /// Reads requests until the client leaves, a protocol error, a QUIT, `stop`
    /// (graceful shutdown) or `abort` (the relay ended). Then gives the relay up to
    /// [`DRAIN`] to deliver what is owed before aborting the connection.
    ///
    /// Returns the upstream writer if the upstream was left between two commands
    /// (nothing half-sent, no write failed), so that the connection can be reused.
    ///
    /// Not an `async fn`: an async fn moves its arguments into locals, so `self`
    /// would be stored twice in a future every idle connection carries.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn run<R: ReadSome>(
        mut self,
        mut reader: R,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> impl Future<Output = Option<Handback>> {
        async move {
            // Created once: a `cancelled()` future registers with its token, which is
            // not free to redo on every read of a busy connection.
            let aborted = abort.cancelled();
            let stopped = stop.cancelled();
            // An unauthenticated client is bounded in time: it must AUTH by this deadline.
            let deadline = self.ctx.auth_timeout().map(|t| tokio::time::Instant::now() + t);
            // Boxed, and dropped once authenticated: an idle authenticated
            // connection carries no timer.
            let mut first_auth = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
            tokio::pin!(aborted, stopped);
            // No buffer while the connection is idle: one is taken when bytes arrive and
            // given back once they are all handled, so thousands of idle connections
            // cost little more than their sockets.
            let mut buf = BytesMut::new();
            let mut chunk = READ_MIN;
            loop {
                // Boxed: its state (up to ~600 bytes while writes are in flight) would
                // otherwise sit in every idle connection's future. One allocation per
                // read is nothing next to the read and write system calls it serves.
                match Box::pin(self.process(&mut buf)).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Stop) => break,
                    Ok(Flow::Abort) => {
                        abort.cancel();
                        return None;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "upstream write failed");
                        self.push(Entry::Close);
                        self.upstream = None;
                        break;
                    }
                }
                if buf.is_empty() {
                    buf = BytesMut::new();
                }
                if self.identity.is_some() {
                    first_auth = None;
                }
                let read = tokio::select! {
                    biased;
                    _ = &mut aborted => return None,
                    _ = &mut stopped => {
                        self.push(Entry::Close);
                        break;
                    }
                    _ = async { first_auth.as_mut().expect("guarded").await }, if first_auth.is_some() => {
                        tracing::debug!("no AUTH before the deadline; closing");
                        self.push(Entry::Close);
                        break;
                    }
                    r = reader.read_some(&mut buf, &mut chunk) => r,
                };
                match read {
                    Ok(n) if n > 0 => {}
                    _ => {
                        // A half-sent request that was being streamed leaves the upstream
                        // mid-command: nothing more will be answered, so end right away.
                        if self.streaming.is_some() {
                            abort.cancel();
                            return None;
                        }
                        self.push(Entry::Close);
                        break;
                    }
                }
            }
            // Keep the upstream writer open while draining: dropping it sends a FIN,
            // and Redis drops a client (and its pending replies) on EOF.
            tokio::select! {
                _ = &mut aborted => {}
                _ = tokio::time::sleep(DRAIN) => {
                    abort.cancel();
                    return None;
                }
            }
            // A protocol error in the middle of a streamed value leaves half a command upstream.
            if self.streaming.is_some() {
                return None;
            }
            let dirty = self.dirty;
            self.upstream.take().map(|(writer, upstream)| Handback { writer, upstream, dirty })
        }
    }

    /// Handles every complete request in `buf`, then drops what it consumed.
    async fn process(&mut self, buf: &mut BytesMut) -> std::io::Result<Flow> {
        let mut pos = 0;
        // Consecutive forwarded requests, written upstream in one go.
        let mut run: Option<Range<usize>> = None;
        let result = self.process_from(buf, &mut pos, &mut run).await;
        let flushed = self.flush(buf, &mut run).await;
        buf.advance(pos);
        result.and_then(|flow| flushed.map(|()| flow))
    }

    async fn process_from(
        &mut self,
        buf: &mut BytesMut,
        pos: &mut usize,
        run: &mut Option<Range<usize>>,
    ) -> std::io::Result<Flow> {
        loop {
            if *pos >= buf.len() {
                return Ok(Flow::Continue);
            }
            if let Some(streamer) = self.streaming.as_mut() {
                match streamer.advance(&buf[*pos..]) {
                    Ok((n, done)) => {
                        extend(run, *pos, *pos + n);
                        *pos += n;
                        if !done {
                            return Ok(Flow::Continue);
                        }
                        self.streaming = None;
                        continue;
                    }
                    Err(e) => return Ok(self.protocol_error(e)),
                }
            }
            let authenticated = self.identity.is_some();
            let req = match request::parse(&buf[*pos..], authenticated) {
                Parse::Error(e) => return Ok(self.protocol_error(e)),
                Parse::Incomplete(partial) => {
                    let pending = &buf[*pos..];
                    if let Some(p) = partial.filter(|_| authenticated && pending.len() >= STREAM_AT) {
                        match stream_decision(pending, &p) {
                            Decision::Wait => {}
                            Decision::TooBig => {
                                return Ok(self.protocol_error(ProtoError::InvalidBulkLength));
                            }
                            Decision::Stream(cmd) => {
                                // Requests bound for the lane go first (and are
                                // answered before this one takes its own connection).
                                if self.shared_pending > 0 {
                                    self.flush(buf, run).await?;
                                }
                                self.dirty = true;
                                let entry = self.expectation(cmd, p.argc as usize);
                                if !self.ensure_upstream().await? {
                                    return Ok(Flow::Stop);
                                }
                                self.plan_entry(entry).await;
                                extend(run, *pos, *pos + p.resume_at);
                                *pos += p.resume_at;
                                self.streaming = Some(Streamer::new(p.argc - p.complete));
                                continue;
                            }
                        }
                    } else if pending.len() > MAX_WHOLE {
                        return Ok(self.protocol_error(ProtoError::InvalidBulkLength));
                    }
                    return Ok(Flow::Continue);
                }
                Parse::Complete(req) => req,
            };
            let len = req.len();
            let frame = &buf[*pos..];
            let Some(name) = req.arg(frame, 0) else {
                // Nothing to answer, and nothing to send: Redis would ignore it too.
                // (Only requests in their canonical form go upstream.)
                if run.is_some() {
                    self.flush(buf, run).await?;
                }
                *pos += len;
                continue;
            };
            if command::is_cross_protocol(name) {
                // Redis's defence against browsers speaking HTTP to it: the
                // connection is closed at once, before authentication, without a
                // reply (not even those still to be written for earlier requests).
                tracing::info!("POST or Host: received, closing the connection (cross-protocol scripting?)");
                *pos += len;
                return Ok(Flow::Abort);
            }
            let argc = req.argc();
            let mut cmd = command::classify(name, req.arg(frame, 1));
            if cmd == Command::ClientReply && (argc != 3 || reply_mode(req.arg(frame, 2)).is_none()) {
                // Malformed: let the upstream answer with its own error.
                cmd = Command::Other;
            }
            if cmd == Command::Reset && argc != 1 && self.upstream.is_some() {
                // Redis answers the arity error itself, and fails an open MULTI.
                cmd = Command::Other;
            }
            // An inline request goes upstream re-encoded (see `Request::encoded`).
            let encoded = req.encoded();
            let wire_len = encoded.as_ref().map_or(len, Bytes::len);
            if authenticated && forwarded(cmd) {
                if matches!(cmd, Command::Stateless | Command::ClientSetinfo)
                    && self.upstream.is_none()
                    && !self.pinned
                    && self.reply_mode == ReplyMode::On
                    && wire_len <= lane::MAX_REQUEST
                {
                    match self.route().await {
                        Route::Lane => {
                            self.shared_unplanned += 1;
                            *pos += len;
                            if let Some(bytes) = encoded {
                                // What came before goes first; this one on its own.
                                self.flush(buf, run).await?;
                                self.send_shared(bytes, 1).await?;
                            } else {
                                self.shared_pending += 1;
                                extend(run, *pos - len, *pos);
                            }
                            continue;
                        }
                        Route::Failed => {
                            // Requests of this run that were meant for the lane are
                            // not sent: the client's next reply is the error.
                            self.shared_pending = 0;
                            self.shared_unplanned = 0;
                            *run = None;
                            return Ok(Flow::Stop);
                        }
                        Route::Own => {}
                    }
                }
                // From here on the client has a connection of its own; what it sent
                // to the lane goes first.
                self.pinned = true;
                if self.shared_pending > 0 {
                    self.flush(buf, run).await?;
                }
                self.dirty |= cmd != Command::Stateless;
                let entry = self.expectation(cmd, argc);
                if !self.ensure_upstream().await? {
                    return Ok(Flow::Stop);
                }
                self.plan_entry(entry).await;
                if let Some(bytes) = encoded {
                    // The plan learns of this reply before its request goes upstream.
                    self.flush(buf, run).await?;
                    if let Some((up, _)) = self.upstream.as_mut() {
                        up.write_all(&bytes).await?;
                        up.flush().await?;
                    }
                } else {
                    extend(run, *pos, *pos + len);
                }
                *pos += len;
                continue;
            }
            let owned: Vec<Vec<u8>> = req.args(frame).iter().map(|a| a.to_vec()).collect();
            if matches!(cmd, Command::Auth | Command::Hello) {
                // The request held a password: do not leave it in the read buffer.
                buf[*pos..*pos + len].zeroize();
            }
            *pos += len;
            // Earlier forwarded requests go upstream before anything this one sends.
            self.flush(buf, run).await?;
            // Boxed: AUTH & co. are rare and their future (argon2 on the blocking
            // pool, upstream connect) is large; inline, every idle connection would
            // carry its space.
            let flow = Box::pin(self.intercept(cmd, owned)).await;
            if let Flow::Stop = flow? {
                return Ok(Flow::Stop);
            }
        }
    }

    /// Answers the requests turnstile handles itself.
    async fn intercept(&mut self, cmd: Command, args: Vec<Vec<u8>>) -> std::io::Result<Flow> {
        // Wiped however this returns: AUTH and HELLO carry passwords.
        let args = zeroize::Zeroizing::new(args);
        let authenticated = self.identity.is_some();
        match cmd {
            Command::Auth => {
                let reply = match args.len() {
                    0 | 1 => replies::AUTH_ARITY,
                    2 | 3 => {
                        let (user, password) = match args.len() {
                            2 => (None, &args[1]),
                            _ => (Some(args[1].as_slice()), &args[2]),
                        };
                        if self.login(user, password).await { replies::OK } else { replies::WRONGPASS }
                    }
                    _ => replies::SYNTAX,
                };
                self.local(Bytes::from_static(reply));
            }
            Command::Hello => match hello::parse(&args) {
                Err(reply) => self.local(reply),
                Ok(mut h) => {
                    // Option by option, as Redis 7.0's helloCommand: the first that
                    // fails answers the HELLO, and what came before it stands.
                    for step in std::mem::take(&mut h.steps) {
                        let failed = match step {
                            hello::Step::Auth(user, password) => {
                                (!self.login(Some(&user), &password).await).then_some(replies::WRONGPASS)
                            }
                            hello::Step::SetName(name) if hello::name_is_valid(&name) => {
                                h.setname = Some(name);
                                None
                            }
                            hello::Step::SetName(_) => Some(replies::BAD_CLIENT_NAME),
                            hello::Step::Syntax(reply) => {
                                self.local(reply);
                                return Ok(Flow::Continue);
                            }
                        };
                        if let Some(reply) = failed {
                            self.local(Bytes::from_static(reply));
                            return Ok(Flow::Continue);
                        }
                    }
                    if self.identity.is_none() {
                        self.local(Bytes::from_static(replies::HELLO_NOAUTH));
                    } else if let Flow::Stop = self.hello(h).await? {
                        return Ok(Flow::Stop);
                    }
                }
            },
            Command::Quit => {
                self.reply_mode = ReplyMode::On;
                self.local(Bytes::from_static(replies::OK));
                self.push(Entry::Close);
                return Ok(Flow::Stop);
            }
            // Redis checks RESET's arity before anything else (authentication
            // included); with a connection of its own the client's `RESET x` went
            // upstream instead (see `process_from`), where it also fails a MULTI.
            Command::Reset if args.len() != 1 => self.local(Bytes::from_static(replies::RESET_ARITY)),
            Command::Reset => {
                if self.upstream.is_none() {
                    // Back to RESP2, as Redis's RESET does (on lanes, a RESP2 lane).
                    self.resp3 = false;
                }
                self.identity = None;
                self.slot.set_identity(None);
                self.reply_mode = ReplyMode::On;
                if self.upstream.is_some() {
                    // Reset the upstream session too (transactions, subscriptions,
                    // MONITOR, protocol), then log it back in for the next AUTH.
                    if !self
                        .forward_own(Entry::AwaitReset, &Bytes::from_static(b"*1\r\n$5\r\nRESET\r\n"))
                        .await?
                    {
                        return Ok(Flow::Stop);
                    }
                    if let Some(auth) = self.ctx.upstream().auth_command() {
                        self.push(Entry::Swallow);
                        if let Some((up, _)) = self.upstream.as_mut() {
                            up.write_all(&auth).await?;
                            up.flush().await?;
                        }
                    }
                } else {
                    self.local(Bytes::from_static(replies::RESET));
                }
            }
            Command::ClientReply if authenticated => match reply_mode(args.get(2).map(Vec::as_slice)) {
                Some(ReplyMode::On) => {
                    self.reply_mode = ReplyMode::On;
                    self.local(Bytes::from_static(replies::OK));
                }
                Some(ReplyMode::Off) => self.reply_mode = ReplyMode::Off,
                Some(ReplyMode::SkipNext) if self.reply_mode == ReplyMode::On => {
                    self.reply_mode = ReplyMode::SkipNext;
                }
                _ => {}
            },
            Command::ClientMaintNotifications if authenticated => {
                let sub = args.get(1).map_or(&b""[..], Vec::as_slice);
                self.local(replies::unknown_client_subcommand(sub));
            }
            Command::AclWhoami if authenticated => {
                let reply = match (args.len(), &self.identity) {
                    (2, Some(id)) => replies::bulk(id.name().as_bytes()),
                    _ => Bytes::from_static(replies::WHOAMI_ARITY),
                };
                self.local(reply);
            }
            // EXEC refused for lack of authentication aborts the transaction: Redis
            // says so in EXECABORT's words.
            Command::Exec => self.local(Bytes::from_static(replies::EXECABORT_NOAUTH)),
            _ => self.local(Bytes::from_static(replies::NOAUTH)),
        }
        Ok(Flow::Continue)
    }

    /// An authenticated HELLO with a valid name. Without SETNAME, on lanes, it picks
    /// the lane of the protocol it asks for and is answered there, by Redis; else
    /// it goes to the client's own connection.
    async fn hello(&mut self, h: hello::Hello) -> std::io::Result<Flow> {
        let request = h.upstream_command();
        if h.setname.is_none() && self.upstream.is_none() && !self.pinned && self.reply_mode == ReplyMode::On
        {
            // `route` moves the client to a lane of that protocol.
            let before = self.resp3;
            self.resp3 = h.version.map_or(self.resp3, |v| v == 3);
            match self.route().await {
                Route::Lane => {
                    self.shared_unplanned += 1;
                    self.send_shared(request, 1).await?;
                    return Ok(Flow::Continue);
                }
                Route::Failed => return Ok(Flow::Stop),
                // This HELLO itself sets the protocol of the client's own connection.
                Route::Own => self.resp3 = before,
            }
        }
        // CLIENT REPLY OFF|SKIP silences a HELLO's map like any other reply (the
        // relay still reads it, to learn the protocol).
        let silent = self.silenced();
        let entry = Entry::Replies { n: 1, tag: Tag::Hello, silent };
        Ok(if self.forward_own(entry, &request).await? { Flow::Continue } else { Flow::Stop })
    }

    /// Verifies credentials; on success the connection takes that identity, on
    /// failure it keeps the one it had (as Redis does).
    async fn login(&mut self, user: Option<&[u8]>, password: &[u8]) -> bool {
        let throttle = self.ctx.directory.throttle();
        if let Some(ip) = self.peer
            && !throttle.allows(ip)
        {
            // Refused without spending argon2: the same reply as a wrong password,
            // held back for a moment (a tarpit): answered at once, a throttled
            // attacker turns into a flood of cheap requests that competes with the
            // authenticated clients for CPU (measured in the load comparison: they
            // kept 26% of their throughput during a 200-connection storm).
            // Counted only: a storm of these must not reach the event log one by one.
            crate::metrics::inc(&self.ctx.stats.auth_throttled);
            tracing::debug!(%ip, "AUTH refused: address throttled after repeated failures");
            tokio::time::sleep(THROTTLED_REPLY_DELAY).await;
            return false;
        }
        match self.ctx.directory.authenticate(self.ctx.uid, user, password).await {
            Some(id) => {
                // Publish the identity, then re-check the password is still in its
                // set: a removal that swapped the set just before scanning for
                // connections to close either sees this identity or is seen here.
                self.slot.set_identity(Some(id.clone()));
                if !self.ctx.directory.is_current(&id) {
                    self.slot.set_identity(self.identity.clone());
                    crate::metrics::inc(&self.ctx.stats.auth_failure);
                    tracing::info!(user = id.name(), "AUTH raced with the removal of its password");
                    return false;
                }
                crate::metrics::inc(&self.ctx.stats.auth_success);
                tracing::debug!(user = id.name(), "authenticated");
                self.identity = Some(id);
                true
            }
            None => {
                crate::metrics::inc(&self.ctx.stats.auth_failure);
                let d = &self.ctx.directory;
                let now = crate::control::time::now_ms();
                d.failures().auth_failed(self.ctx.uid, self.peer, user, now);
                if let Some(ip) = self.peer
                    && d.throttle().failed(ip)
                {
                    d.failures().throttled(self.ctx.uid, ip, now);
                }
                let shown = user.map(|u| String::from_utf8_lossy(&u[..u.len().min(64)]).into_owned());
                tracing::info!(user = shown.as_deref().unwrap_or("default"), "AUTH failed");
                false
            }
        }
    }

    /// Plans a reply of turnstile's own, unless `CLIENT REPLY` silences it.
    fn local(&mut self, reply: Bytes) {
        match self.reply_mode {
            ReplyMode::On => self.push(Entry::Local(reply)),
            ReplyMode::Off => {}
            ReplyMode::SkipNext => self.reply_mode = ReplyMode::On,
        }
    }

    /// What the client is owed for a forwarded request, minding `CLIENT REPLY`.
    fn expectation(&mut self, cmd: Command, argc: usize) -> Entry {
        let silent = self.silenced();
        let subscriptions = argc.saturating_sub(1) as u64;
        // (Un)subscribe confirmations are pushes to Redis: sent even with replies off.
        match cmd {
            Command::Subscribe(_) => {
                Entry::Replies { n: subscriptions.max(1), tag: Tag::Pubsub, silent: false }
            }
            Command::Unsubscribe(kind) if argc == 1 => Entry::UnsubscribeAll { kind, silent: false },
            Command::Unsubscribe(_) => Entry::Replies { n: subscriptions, tag: Tag::Pubsub, silent: false },
            Command::Monitor => Entry::Replies { n: 1, tag: Tag::Monitor, silent },
            Command::Replication => Entry::Opaque,
            _ => Entry::Replies { n: 1, tag: Tag::Plain, silent },
        }
    }

    /// Whether the upstream's reply to the request being forwarded must not reach
    /// the client. Redis sends nothing while replies are OFF, and nothing for the
    /// one request after SKIP. The upstream is never told (turnstile implements
    /// CLIENT REPLY itself), so it always answers and the relay drops what must not
    /// be seen.
    fn silenced(&mut self) -> bool {
        match self.reply_mode {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                true
            }
        }
    }

    async fn plan_entry(&mut self, entry: Entry) {
        match entry {
            Entry::Replies { n, tag: Tag::Plain, silent: false } => self.pending += n,
            e => {
                self.plan.wait_for_space().await;
                self.push(e);
            }
        }
    }

    /// Appends to the plan, after the replies still counted in `pending`.
    fn push(&mut self, entry: Entry) {
        self.push_pending();
        self.plan.push(entry);
    }

    /// Moves the replies counted in `pending` into the plan.
    fn push_pending(&mut self) {
        if self.shared_unplanned > 0 {
            self.plan.push(Entry::Shared { n: std::mem::take(&mut self.shared_unplanned) });
        }
        if self.pending > 0 {
            self.plan.push(Entry::Replies { n: self.pending, tag: Tag::Plain, silent: false });
            self.pending = 0;
        }
    }

    /// Sends a request of turnstile's own making upstream. False if the upstream
    /// could not be reached (the client was told and the connection is closing).
    async fn forward_own(&mut self, entry: Entry, bytes: &Bytes) -> std::io::Result<bool> {
        self.dirty = true;
        if !self.ensure_upstream().await? {
            return Ok(false);
        }
        self.plan_entry(entry).await;
        if let Some((up, _)) = self.upstream.as_mut() {
            up.write_all(bytes).await?;
            up.flush().await?;
        }
        Ok(true)
    }

    /// Opens the upstream connection on first use and logs it in. On failure plans
    /// an error reply and a close, and returns false.
    async fn ensure_upstream(&mut self) -> std::io::Result<bool> {
        if self.upstream.is_some() {
            return Ok(true);
        }
        // Once per connection, and large (connect with a timeout): boxed.
        Box::pin(self.open_upstream()).await
    }

    async fn open_upstream(&mut self) -> std::io::Result<bool> {
        self.pinned = true;
        // Requests sent on the lane take effect first: a client's commands reach
        // Redis in the order it sent them, whichever connection carries them.
        if let Some(s) = &self.shared {
            s.mailbox.wait_in_flight_below(1).await;
        }
        let upstream = self.ctx.upstream_full();
        // A connection a previous client left clean (reset and logged in already).
        if let Some(conn) = self.ctx.pool.take(&upstream) {
            self.push(Entry::Attach(UpstreamRead::Tcp(conn.reader)));
            self.upstream = Some((UpstreamWrite::Tcp(conn.writer), upstream));
            return self.resume_resp3().await;
        }
        match upstream.connect().await {
            Ok(stream) => {
                let (reader, mut writer) = stream.into_split();
                self.push(Entry::Attach(reader));
                if let Some(auth) = upstream.auth_command() {
                    self.push(Entry::Swallow);
                    writer.write_all(&auth).await?;
                    writer.flush().await?;
                }
                self.upstream = Some((writer, upstream));
                self.resume_resp3().await
            }
            Err(e) => {
                crate::metrics::inc(&self.ctx.stats.upstream_connect_errors);
                tracing::warn!(error = %e, upstream = %upstream.address, "upstream unavailable");
                self.push(Entry::Local(Bytes::from_static(replies::UPSTREAM_UNAVAILABLE)));
                self.push(Entry::Close);
                Ok(false)
            }
        }
    }

    /// Whether a stateless request can go to a lane: yes if the client has one (or
    /// one can be had), no if the database does not share connections.
    async fn route(&mut self) -> Route {
        if let Some(s) = &self.shared {
            if s.mailbox.backlog() > mailbox::BACKLOG_SOFT {
                // The client is not reading its replies: let Redis buffer for it on
                // a connection of its own, as it would without turnstile.
                self.pinned = true;
                return Route::Own;
            }
            if s.lane.is_open() && s.lane.resp3() == self.resp3 {
                return Route::Lane;
            }
        }
        // Once per client (and after a lane fails), and large: boxed.
        Box::pin(self.join_lane()).await
    }

    async fn join_lane(&mut self) -> Route {
        // Changing lanes (another protocol, a changed upstream): what went on the
        // old one is answered first, so the client's commands take effect in order.
        if let Some(s) = &self.shared {
            s.mailbox.wait_in_flight_below(1).await;
        }
        // The database's upstream now: a client whose lane ended (or that changes
        // protocol) after the upstream was changed moves to the new one.
        let upstream = self.ctx.upstream_full();
        // TLS upstream connections are not shared: a lane relies on reading the
        // socket's readiness, which a TLS stream does not expose.
        if upstream.pool.shared == 0 || upstream.tls {
            self.pinned = true;
            return Route::Own;
        }
        match self.ctx.lanes.get(&upstream, self.resp3).await {
            Ok(lane) => {
                match &mut self.shared {
                    Some(s) => s.lane = lane,
                    None => {
                        let mailbox = Arc::new(Mailbox::new(
                            upstream.pool.output,
                            self.slot.kill_switch(),
                            Arc::clone(&self.ctx.lane_replies),
                        ));
                        self.push(Entry::Mailbox(Arc::clone(&mailbox)));
                        self.shared = Some(Shared { lane, mailbox });
                    }
                }
                Route::Lane
            }
            Err(replies::NOPROTO) => {
                // An upstream without RESP3: HELLO 3 goes to a connection of its own.
                self.pinned = true;
                Route::Own
            }
            Err(reply) => {
                crate::metrics::inc(&self.ctx.stats.upstream_connect_errors);
                self.push(Entry::Local(Bytes::from_static(reply)));
                self.push(Entry::Close);
                Route::Failed
            }
        }
    }

    /// Hands `n` complete requests to the client's lane, after planning their
    /// replies. An error ends the connection (the relay tells the client why).
    async fn send_shared(&mut self, bytes: Bytes, n: u64) -> std::io::Result<()> {
        let Some(s) = &self.shared else {
            return Err(std::io::Error::other("no shared connection"));
        };
        let mailbox = Arc::clone(&s.mailbox);
        self.plan.wait_for_space().await;
        self.push_pending();
        if !mailbox.send(n).await {
            return Err(std::io::Error::other("shared upstream connection lost"));
        }
        let mut batch = Batch { bytes, n, mailbox };
        for _ in 0..2 {
            let lane = match self.shared.as_ref() {
                Some(s) => s.lane.clone(),
                None => break,
            };
            match lane.send(batch).await {
                Ok(()) => return Ok(()),
                // The lane ended before taking it: nothing was sent, so the next
                // lane may take it.
                Err(b) => batch = b,
            }
            let upstream = self.ctx.upstream_full();
            match self.ctx.lanes.get(&upstream, lane.resp3()).await {
                Ok(lane) => {
                    if let Some(s) = self.shared.as_mut() {
                        s.lane = lane;
                    }
                }
                Err(reply) => {
                    batch.mailbox.lose(reply);
                    break;
                }
            }
        }
        batch.mailbox.lose(replies::UPSTREAM_LOST);
        Err(std::io::Error::other("no shared upstream connection"))
    }

    /// A client that switched to RESP3 on lanes keeps it on its own connection: a
    /// `HELLO 3` goes first, its reply unseen (the relay learns the protocol from it).
    async fn resume_resp3(&mut self) -> std::io::Result<bool> {
        if !self.resp3 {
            return Ok(true);
        }
        self.push(Entry::Replies { n: 1, tag: Tag::Hello, silent: true });
        if let Some((up, _)) = self.upstream.as_mut() {
            up.write_all(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await?;
            up.flush().await?;
        }
        Ok(true)
    }

    fn protocol_error(&mut self, e: ProtoError) -> Flow {
        tracing::debug!(?e, "protocol error from client");
        self.push(Entry::Local(e.reply()));
        self.push(Entry::Close);
        Flow::Stop
    }

    /// Writes the pending run of forwarded bytes upstream.
    async fn flush(&mut self, buf: &[u8], run: &mut Option<Range<usize>>) -> std::io::Result<()> {
        if self.shared_pending > 0 {
            let n = std::mem::take(&mut self.shared_pending);
            let Some(range) = run.take() else { return Ok(()) };
            return self.send_shared(Bytes::copy_from_slice(&buf[range]), n).await;
        }
        // The plan must know what is owed before the upstream can answer it.
        if self.pending > 0 {
            self.plan.wait_for_space().await;
            self.push_pending();
        }
        if let (Some(r), Some((up, _))) = (run.take(), self.upstream.as_mut()) {
            up.write_all(&buf[r]).await?;
            // TLS may keep the tail of a write in its buffer; on TCP this is a no-op.
            up.flush().await?;
        }
        Ok(())
    }
}

/// Requests that go upstream once the client is authenticated.
fn forwarded(cmd: Command) -> bool {
    !matches!(
        cmd,
        Command::Auth
            | Command::Hello
            | Command::AclWhoami
            | Command::Quit
            | Command::Reset
            | Command::ClientReply
            | Command::ClientMaintNotifications
    )
}

/// The mode named by `CLIENT REPLY <mode>`, if it is ON, OFF or SKIP.
fn reply_mode(mode: Option<&[u8]>) -> Option<ReplyMode> {
    let mode = mode?;
    if mode.eq_ignore_ascii_case(b"on") {
        Some(ReplyMode::On)
    } else if mode.eq_ignore_ascii_case(b"off") {
        Some(ReplyMode::Off)
    } else if mode.eq_ignore_ascii_case(b"skip") {
        Some(ReplyMode::SkipNext)
    } else {
        None
    }
}

fn extend(run: &mut Option<Range<usize>>, start: usize, end: usize) {
    match run {
        // Runs are contiguous by construction: anything not forwarded flushes them.
        Some(r) => {
            debug_assert_eq!(r.end, start, "forwarded runs are contiguous");
            r.end = end;
        }
        None => *run = Some(start..end),
    }
}

/// Decides whether a large, incomplete request can be streamed: only once it is
/// known not to be one turnstile must answer itself.
fn stream_decision(pending: &[u8], p: &Partial) -> Decision {
    let long_next = p.next_len.is_some_and(|l| l > MAX_NAME as u64);
    let cmd = match p.head.get(0) {
        None if long_next => Command::Other,
        None => return Decision::Wait,
        Some(r) => {
            let name = &pending[r.clone()];
            match p.head.get(1) {
                Some(s) => command::classify(name, Some(&pending[s.clone()])),
                None if !command::needs_subcommand(name) || long_next => command::classify(name, None),
                None => return Decision::Wait,
            }
        }
    };
    if command::must_be_whole(cmd) || !forwarded(cmd) {
        if pending.len() > MAX_WHOLE { Decision::TooBig } else { Decision::Wait }
    } else {
        Decision::Stream(cmd)
    }
}
