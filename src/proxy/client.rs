//! The client-to-upstream half of a connection, its read loop: frames requests,
//! hands the ones turnstile answers itself to [`super::local`], forwards everything
//! else byte for byte where [`super::route`] says, and plans the replies.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use zeroize::Zeroize;

use super::BdbContext;
use super::Upstream;
use super::io::{READ_MIN, ReadSome, UpstreamWrite};
use super::kill::Kill;
use super::lane::{self, Lane};
use super::mailbox::Mailbox;
use super::plan::{Entry, Plan, Tag};
use super::registry::SessionSlot;
use super::users::Credential;
use crate::auth::{Identity, InUse};
use crate::authz::Grant;
use crate::resp::command::{self, Command, MAX_NAME};
use crate::resp::request::{self, Parse, Partial, ProtoError, Streamer};

/// A forwarded request larger than this is streamed to the upstream as it arrives
/// instead of being buffered whole.
const STREAM_AT: usize = 64 * 1024;
/// Requests turnstile answers itself must fit in this much (a 1 MiB password is
/// already absurd); beyond it they get Redis's "invalid bulk length" and a close.
const MAX_WHOLE: usize = 1024 * 1024;
/// After the client stops sending (EOF, protocol error, shutdown), how long the
/// replies it is still owed may take before the connection is dropped anyway.
pub const DRAIN: Duration = Duration::from_secs(5);

/// `CLIENT REPLY` state: Redis sends no replies at all while it is OFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyMode {
    On,
    Off,
    SkipNext,
}

pub(super) enum Flow {
    Continue,
    Stop,
    /// Close now, dropping whatever the client is still owed.
    Abort,
}

/// Where the client's forwarded requests go now. One choice, so impossible
/// combinations (a lane and a connection of its own at once) cannot be written.
pub(super) enum Conn {
    /// Nothing forwarded yet.
    Unrouted,
    /// Stateless requests go to a shared connection.
    Lane(Shared),
    /// The client has a connection of its own, for the rest of its life.
    Own(Own),
}

/// A lane this client uses, and where its replies arrive.
pub(super) struct Shared {
    pub(super) lane: Lane,
    pub(super) mailbox: Arc<Mailbox>,
}

/// The client's own upstream connection.
pub(super) struct Own {
    pub(super) writer: UpstreamWrite,
    pub(super) upstream: Arc<Upstream>,
    /// Whom it is logged in as (None after a `RESET`, until the next command).
    pub(super) login: Option<(Grant, Arc<Credential>)>,
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
    /// Whom it is logged in as: it goes back to the pool of that rule.
    pub login: (Grant, Arc<Credential>),
    /// Something but stateless commands was sent: a `RESET` is due before reuse.
    pub dirty: bool,
}

/// How the client half's run ended.
#[allow(clippy::large_enum_variant)] // returned once per park; boxing would allocate for nothing
pub enum ClientExit<R> {
    /// The connection is over; the upstream writer if it can be reused.
    Done(Option<Handback>),
    /// Idle and asked to park: its state, and the reader to wait on. The relay
    /// parks when it reaches the plan's `Park` entry, which is pushed last.
    Parked(ClientHalf, R),
}

pub struct ClientHalf {
    pub(super) ctx: Arc<BdbContext>,
    /// Where the admin side reads who this connection is authenticated as.
    pub(super) slot: Arc<SessionSlot>,
    pub(super) plan: Arc<Plan>,
    pub(super) conn: Conn,
    pub(super) identity: Option<Identity>,
    /// Counts this connection in the `connections` of the password it
    /// authenticated with, while it is authenticated with it.
    pub(super) in_use: Option<InUse>,
    /// The identity's rights on this database, as of `generation`.
    pub(super) grant: Option<Grant>,
    /// The directory's generation when `grant` was computed.
    pub(super) generation: u64,
    pub(super) reply_mode: ReplyMode,
    /// Boxed: rare (a request too large to buffer), and every connection's
    /// future holds the field.
    streaming: Option<Box<Streamer>>,
    /// The upstream connection may hold state a later client must not inherit
    /// (anything but [`Command::Stateless`] was sent): reusing it takes a `RESET`.
    pub(super) dirty: bool,
    /// Stateless requests in the current run, bound for the lane.
    pub(super) shared_pending: u64,
    /// Of those, the ones whose replies are not in the plan yet (like `pending`).
    pub(super) shared_unplanned: u64,
    /// The client switched to RESP3 (`HELLO 3`) while on lanes: it uses RESP3 lanes,
    /// and a connection of its own gets `HELLO 3` first.
    pub(super) resp3: bool,
    /// A MULTI was forwarded and no EXEC or DISCARD since: Redis queues what it
    /// gets, so turnstile sends no login of its own until the transaction ends.
    pub(super) in_multi: bool,
    /// The protocol the client last asked for with HELLO, for replies turnstile
    /// renders itself (`ACL GETUSER`).
    pub(super) proto3: bool,
    /// Plain replies owed for requests forwarded since the last push to the plan:
    /// counted here and pushed as one entry before their bytes go upstream, so a
    /// pipeline costs one plan update per read rather than one per request.
    pending: u64,
}

impl ClientHalf {
    /// The client's address (for throttling, the sample of clients) is the slot's.
    pub fn new(ctx: Arc<BdbContext>, slot: Arc<SessionSlot>, plan: Arc<Plan>) -> Self {
        Self {
            ctx,
            slot,
            plan,
            conn: Conn::Unrouted,
            identity: None,
            in_use: None,
            grant: None,
            generation: 0,
            reply_mode: ReplyMode::On,
            streaming: None,
            dirty: false,
            shared_pending: 0,
            shared_unplanned: 0,
            resp3: false,
            in_multi: false,
            proto3: false,
            pending: 0,
        }
    }

    /// Reads requests until the client leaves, a protocol error, a QUIT, a stop
    /// (graceful shutdown, [`Kill::stop`]) or a kill of `abort` (the relay ended).
    /// Then gives the relay up to [`DRAIN`] to deliver what is owed before aborting
    /// the connection.
    ///
    /// Returns the upstream writer if the upstream was left between two commands
    /// (nothing half-sent, no write failed), so that the connection can be reused.
    ///
    /// Not an `async fn`: an async fn moves its arguments into locals, so `self`
    /// would be stored twice in a future every idle connection carries.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn run<R: ReadSome>(mut self, mut reader: R, abort: Kill) -> impl Future<Output = ClientExit<R>> {
        async move {
            // An unauthenticated client is bounded in time: it must AUTH by this deadline.
            // (A connection resumed from parking is authenticated: no timer.)
            let deadline = match self.identity {
                None => self.ctx.auth_timeout().map(|t| tokio::time::Instant::now() + t),
                Some(_) => None,
            };
            // Boxed, and dropped once authenticated: an idle authenticated
            // connection carries no timer.
            let mut first_auth = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
            let parkable = reader.parkable();
            // No buffer while the connection is idle: one is taken when bytes arrive,
            // kept while requests keep coming (its room is reused in place), and
            // dropped with this future when the connection parks, so thousands of
            // idle connections cost little more than their sockets.
            let mut buf = BytesMut::new();
            let mut chunk = READ_MIN;
            // Reads since the connection woke, and bytes read into `buf` since it was
            // made (see `keep_or_release`).
            let (mut reads, mut read_in) = (0u32, 0);
            loop {
                // Not boxed (an allocation and a copy of ~900 bytes per read, ~6% of
                // a GET's instructions): a parked connection holds none of this
                // future, and its rare large parts (AUTH, connecting, streaming) are
                // boxed where they are awaited.
                match self.process(&mut buf).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Stop) => break,
                    Ok(Flow::Abort) => {
                        abort.kill();
                        return ClientExit::Done(None);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "upstream write failed");
                        self.push(Entry::Close);
                        self.conn = Conn::Unrouted;
                        break;
                    }
                }
                keep_or_release(&mut buf, &mut read_in, &mut chunk, reads);
                if self.identity.is_some() {
                    first_auth = None;
                }
                let read = tokio::select! {
                    biased;
                    () = abort.killed() => return ClientExit::Done(None),
                    () = abort.stopping() => {
                        self.push(Entry::Close);
                        break;
                    }
                    _ = async { first_auth.as_mut().expect("guarded").await }, if first_auth.is_some() => {
                        tracing::debug!("no AUTH before the deadline; closing");
                        self.push(Entry::Close);
                        break;
                    }
                    () = self.slot.park().requested(), if parkable => {
                        if self.can_park(&buf) {
                            self.park();
                            return ClientExit::Parked(self, reader);
                        }
                        // Busy in a way that cannot park (a connection of its own):
                        // active as far as the sweeps are concerned. Idle all the
                        // same: it holds no read buffer while it waits.
                        if buf.is_empty() {
                            release(&mut buf, &mut read_in, &mut chunk);
                        }
                        self.slot.park().touch();
                        continue;
                    }
                    r = reader.read_some(&mut buf, &mut chunk) => r,
                };
                match read {
                    Ok(n) if n > 0 => {
                        (reads, read_in) = (reads.saturating_add(1), read_in.saturating_add(n));
                        self.slot.park().touch();
                    }
                    _ => {
                        // A half-sent request that was being streamed leaves the upstream
                        // mid-command: nothing more will be answered, so end right away.
                        if self.streaming.is_some() {
                            abort.kill();
                            return ClientExit::Done(None);
                        }
                        self.push(Entry::Close);
                        break;
                    }
                }
            }
            // Keep the upstream writer open while draining: dropping it sends a FIN,
            // and Redis drops a client (and its pending replies) on EOF.
            tokio::select! {
                () = abort.killed() => {}
                _ = tokio::time::sleep(DRAIN) => {
                    abort.kill();
                    return ClientExit::Done(None);
                }
            }
            // A protocol error in the middle of a streamed value leaves half a command upstream.
            if self.streaming.is_some() {
                return ClientExit::Done(None);
            }
            let dirty = self.dirty;
            ClientExit::Done(match std::mem::replace(&mut self.conn, Conn::Unrouted) {
                Conn::Own(Own { writer, upstream, login: Some(login) }) => {
                    Some(Handback { writer, upstream, login, dirty })
                }
                _ => None,
            })
        }
    }

    /// Whether the connection holds nothing a parked one could not: authenticated
    /// (no AUTH deadline), on lanes or none (a connection of its own is read by the
    /// relay all the time), nothing buffered, streamed or waiting to be planned.
    fn can_park(&self, buf: &BytesMut) -> bool {
        self.identity.is_some()
            && matches!(self.conn, Conn::Unrouted | Conn::Lane(_))
            && buf.is_empty()
            && self.streaming.is_none()
            && !self.in_multi
            && self.reply_mode == ReplyMode::On
            && self.pending == 0
            && self.shared_pending == 0
            && self.shared_unplanned == 0
    }

    /// Leaves the lane (its mailbox goes with the relay's copy; the next request
    /// joins again) and tells the relay to park after what it still delivers.
    fn park(&mut self) {
        self.conn = Conn::Unrouted;
        // The request is served: resumed, the connection is active again (else it
        // would park again before reading what woke it).
        self.slot.park().touch();
        self.push(Entry::Park);
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
                Parse::Incomplete(partial) => return self.incomplete(buf, pos, run, partial).await,
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
            if cmd == Command::Reset && argc != 1 && matches!(self.conn, Conn::Own(_)) {
                // Redis answers the arity error itself, and fails an open MULTI.
                cmd = Command::Other;
            }
            // An inline request goes upstream re-encoded (see `Request::encoded`).
            let encoded = req.encoded();
            let wire_len = encoded.as_ref().map_or(len, Bytes::len);
            if authenticated && forwarded(cmd) {
                if matches!(cmd, Command::ClientSetinfo | Command::Other) {
                    self.note_names(cmd, name, argc, &req, frame);
                }
                // The identity's rights changed under it (a role or policy change):
                // a connection of its own logged in with the old rights is closed.
                if !self.refresh_grant() {
                    return Ok(self.revoked());
                }
                if matches!(cmd, Command::Stateless | Command::ClientSetinfo)
                    && !matches!(self.conn, Conn::Own(_))
                    && self.reply_mode == ReplyMode::On
                    && wire_len <= lane::MAX_REQUEST
                {
                    match self.route().await {
                        super::route::Route::Lane => {
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
                        super::route::Route::Failed => {
                            // Requests of this run that were meant for the lane are
                            // not sent: the client's next reply is the error.
                            self.shared_pending = 0;
                            self.shared_unplanned = 0;
                            *run = None;
                            return Ok(Flow::Stop);
                        }
                        super::route::Route::Refused(e) => {
                            // The client stays (a failover): this request, and those of
                            // the run meant for the lane that is gone, get the error.
                            self.fail_pending(e.reply()).await;
                            *run = None;
                            *pos += len;
                            self.local(Bytes::from_static(e.reply()));
                            continue;
                        }
                        super::route::Route::Own => {}
                    }
                }
                // From here on the client has a connection of its own; what it sent
                // to the lane goes first.
                if self.shared_pending > 0 {
                    self.flush(buf, run).await?;
                }
                self.dirty |= cmd != Command::Stateless;
                let entry = self.expectation(cmd, argc);
                if !self.own_ready(buf, run).await? {
                    return Ok(Flow::Stop);
                }
                match cmd {
                    Command::Multi => self.in_multi = true,
                    Command::Exec | Command::Discard => self.in_multi = false,
                    _ => {}
                }
                self.plan_entry(entry).await;
                if let Some(bytes) = encoded {
                    // The plan learns of this reply before its request goes upstream.
                    self.flush(buf, run).await?;
                    self.write_own(&bytes).await?;
                } else {
                    extend(run, *pos, *pos + len);
                }
                *pos += len;
                continue;
            }
            let owned: Vec<Vec<u8>> = req.args(frame).iter().map(|a| a.to_vec()).collect();
            if matches!(cmd, Command::Auth | Command::Hello | Command::Ambiguous) {
                // The request held a password (a smuggled `AUTH\0…` may too): do not
                // leave it in the read buffer.
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

    /// A request not complete yet: a large one that is only forwarded is streamed
    /// upstream as it arrives; one turnstile must see whole waits (bounded).
    async fn incomplete(
        &mut self,
        buf: &mut BytesMut,
        pos: &mut usize,
        run: &mut Option<Range<usize>>,
        partial: Option<Partial>,
    ) -> std::io::Result<Flow> {
        let authenticated = self.identity.is_some();
        let pending = &buf[*pos..];
        if let Some(p) = partial.filter(|_| authenticated && pending.len() >= STREAM_AT) {
            match stream_decision(pending, &p) {
                Decision::Wait => {}
                Decision::TooBig => return Ok(self.protocol_error(ProtoError::InvalidBulkLength)),
                // Boxed: once per large value, and its future (~850 bytes) would
                // otherwise sit in every read's.
                Decision::Stream(cmd) => return Box::pin(self.start_streaming(cmd, buf, pos, run, p)).await,
            }
        } else if pending.len() > MAX_WHOLE {
            return Ok(self.protocol_error(ProtoError::InvalidBulkLength));
        }
        Ok(Flow::Continue)
    }

    /// Starts streaming a large forwarded request upstream as it arrives, on the
    /// client's own connection.
    async fn start_streaming(
        &mut self,
        cmd: Command,
        buf: &mut BytesMut,
        pos: &mut usize,
        run: &mut Option<Range<usize>>,
        p: Partial,
    ) -> std::io::Result<Flow> {
        if !self.refresh_grant() {
            return Ok(self.revoked());
        }
        // Requests bound for the lane go first (and are answered before
        // this one takes its own connection).
        if self.shared_pending > 0 {
            self.flush(buf, run).await?;
        }
        self.dirty = true;
        let entry = self.expectation(cmd, p.argc as usize);
        if !self.own_ready(buf, run).await? {
            return Ok(Flow::Stop);
        }
        self.plan_entry(entry).await;
        extend(run, *pos, *pos + p.resume_at);
        *pos += p.resume_at;
        self.streaming = Some(Box::new(Streamer::new(p.argc - p.complete)));
        self.process_from(buf, pos, run).await
    }

    /// Makes sure the client's own connection is open and logged in as its
    /// current rule's user (the login goes after what this run already holds).
    /// False if it could not be (the client was told and is closing).
    async fn own_ready(&mut self, buf: &[u8], run: &mut Option<Range<usize>>) -> std::io::Result<bool> {
        if matches!(self.conn, Conn::Own(_)) && !self.needs_login() {
            return Ok(true);
        }
        // Opening or logging in: once per connection, or after a RESET or an AUTH
        // as another user. Boxed: its future (a flush beside a connect) would
        // otherwise sit in every read's, which a woken connection boxes whole.
        Box::pin(self.open_own(buf, run)).await
    }

    /// [`Self::own_ready`]'s slow path.
    async fn open_own(&mut self, buf: &[u8], run: &mut Option<Range<usize>>) -> std::io::Result<bool> {
        if !self.ensure_upstream().await? {
            return Ok(false);
        }
        if self.needs_login() {
            self.flush(buf, run).await?;
            return self.ensure_login().await;
        }
        Ok(true)
    }

    /// Plans a reply of turnstile's own, unless `CLIENT REPLY` silences it.
    pub(super) fn local(&mut self, reply: Bytes) {
        match self.reply_mode {
            ReplyMode::On => self.push(Entry::Local(reply)),
            ReplyMode::Off => {}
            ReplyMode::SkipNext => self.reply_mode = ReplyMode::On,
        }
    }

    /// What the client is owed for a forwarded request, minding `CLIENT REPLY`.
    pub(super) fn expectation(&mut self, cmd: Command, argc: usize) -> Entry {
        let silent = self.silenced();
        let subscriptions = argc.saturating_sub(1) as u64;
        // (Un)subscribe confirmations are pushes to Redis: sent even with replies off.
        match cmd {
            Command::Subscribe(_) => {
                Entry::Replies { n: subscriptions.max(1), tag: Tag::Pubsub, silent: false }
            }
            Command::Unsubscribe(kind) if argc == 1 => Entry::UnsubscribeAll { kind, silent: false },
            Command::Unsubscribe(_) => Entry::Replies { n: subscriptions, tag: Tag::Pubsub, silent: false },
            // A fixed denial (Redis answers NOPERM), planned as MONITOR all the same
            // should an upstream ever run it.
            Command::Monitor => Entry::Replies { n: 1, tag: Tag::Monitor, silent },
            // A fixed denial too: its one reply is the NOPERM, followed like any
            // other (it may name turnstile's upstream user, see `authz::names`).
            // Should an upstream ever run it, the stream that follows is not RESP
            // and the relay passes it through unparsed.
            Command::Replication => Entry::Replies { n: 1, tag: Tag::Plain, silent },
            Command::Blocking => Entry::Replies { n: 1, tag: Tag::Blocking, silent },
            _ => Entry::Replies { n: 1, tag: Tag::Plain, silent },
        }
    }

    /// Whether the upstream's reply to the request being forwarded must not reach
    /// the client. Redis sends nothing while replies are OFF, and nothing for the
    /// one request after SKIP. The upstream is never told (turnstile implements
    /// CLIENT REPLY itself), so it always answers and the relay drops what must not
    /// be seen.
    pub(super) fn silenced(&mut self) -> bool {
        match self.reply_mode {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                true
            }
        }
    }

    pub(super) async fn plan_entry(&mut self, entry: Entry) {
        match entry {
            Entry::Replies { n, tag: Tag::Plain, silent: false } => self.pending += n,
            e => {
                self.plan.wait_for_space().await;
                self.push(e);
            }
        }
    }

    /// Appends to the plan, after the replies still counted in `pending`.
    pub(super) fn push(&mut self, entry: Entry) {
        self.push_pending();
        self.plan.push(entry);
    }

    /// Moves the replies counted in `pending` into the plan.
    pub(super) fn push_pending(&mut self) {
        if self.shared_unplanned > 0 {
            self.plan.push(Entry::Shared { n: std::mem::take(&mut self.shared_unplanned) });
        }
        if self.pending > 0 {
            self.plan.push(Entry::Replies { n: self.pending, tag: Tag::Plain, silent: false });
            self.pending = 0;
        }
    }

    /// Sends a request of turnstile's own making upstream, on the client's own
    /// connection. False if the upstream could not be reached (the client was told
    /// and the connection is closing).
    pub(super) async fn forward_own(&mut self, entry: Entry, bytes: &[u8]) -> std::io::Result<bool> {
        self.dirty = true;
        if !self.ensure_upstream().await? || (self.needs_login() && !self.ensure_login().await?) {
            return Ok(false);
        }
        self.plan_entry(entry).await;
        self.write_own(bytes).await?;
        Ok(true)
    }

    /// Writes to the client's own connection (if it has one).
    pub(super) async fn write_own(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.push_pending();
        if let Conn::Own(own) = &mut self.conn {
            own.writer.write_all(bytes).await?;
            // TLS may keep the tail of a write in its buffer; on TCP this is a no-op.
            own.writer.flush().await?;
        }
        Ok(())
    }

    fn protocol_error(&mut self, e: ProtoError) -> Flow {
        tracing::debug!(?e, "protocol error from client");
        self.push(Entry::Local(e.reply()));
        self.push(Entry::Close);
        Flow::Stop
    }

    /// The client's identity lost its access to this database, or its rights
    /// changed while it holds a connection logged in with the old ones: closed, as
    /// Redis closes the connections of a user it deletes.
    fn revoked(&mut self) -> Flow {
        tracing::info!("closing a connection whose rights on the database changed");
        self.push(Entry::Close);
        Flow::Stop
    }

    /// Writes the pending run of forwarded bytes upstream.
    pub(super) async fn flush(&mut self, buf: &[u8], run: &mut Option<Range<usize>>) -> std::io::Result<()> {
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
        if let (Some(r), Conn::Own(own)) = (run.take(), &mut self.conn) {
            own.writer.write_all(&buf[r]).await?;
            // TLS may keep the tail of a write in its buffer; on TCP this is a no-op.
            own.writer.flush().await?;
        }
        Ok(())
    }
}

/// Requests that go upstream as they are once the client is authenticated.
pub(super) fn forwarded(cmd: Command) -> bool {
    !command::must_be_whole(cmd) && !matches!(cmd, Command::Quit | Command::Reset)
}

impl ClientHalf {
    /// Remembers `CLIENT SETNAME` and `CLIENT SETINFO LIB-NAME` (when valid, as
    /// Redis would take them) for the rotation GET's sample of clients. Costs a
    /// length check on any other request.
    fn note_names(&self, cmd: Command, name: &[u8], argc: usize, req: &request::Request, frame: &[u8]) {
        let arg = |i| req.arg(frame, i);
        let value = |i| arg(i).filter(|v| super::hello::name_is_valid(v));
        match cmd {
            // The value is past the arguments the parser keeps: SETINFO is rare
            // enough to split whole.
            Command::ClientSetinfo
                if argc == 4
                    && arg(2).is_some_and(|a| command::c_str(a).eq_ignore_ascii_case(b"lib-name")) =>
            {
                if let Some(v) = req.args(frame).get(3).filter(|v| super::hello::name_is_valid(v)) {
                    self.slot.set_lib_name(v);
                }
            }
            Command::Other if argc == 3 && name.len() == 6 && name.eq_ignore_ascii_case(b"client") => {
                if arg(1).is_some_and(|a| a.eq_ignore_ascii_case(b"setname"))
                    && let Some(v) = value(2)
                {
                    self.slot.set_name(v);
                }
            }
            _ => {}
        }
    }
}

/// The mode named by `CLIENT REPLY <mode>`, if it is ON, OFF or SKIP (read as Redis's
/// `strcasecmp` reads it: up to a NUL, so `off\0…` is OFF).
pub(super) fn reply_mode(mode: Option<&[u8]>) -> Option<ReplyMode> {
    let mode = command::c_str(mode?);
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
    // A long name, or a long subcommand of a container turnstile looks into, still
    // arriving: one with a NUL in what came so far is ambiguous (see
    // `Command::Ambiguous`) and waits to be answered whole. Past that, Redis can
    // only read a name longer than any command turnstile answers.
    let long_one = || if arriving(pending, p).contains(&0) { Command::Ambiguous } else { Command::Other };
    let cmd = match p.head.get(0) {
        None if long_next => long_one(),
        None => return Decision::Wait,
        Some(r) => {
            let name = &pending[r.clone()];
            match p.head.get(1) {
                Some(s) => command::classify(name, Some(&pending[s.clone()])),
                None if !command::needs_subcommand(name) => command::classify(name, None),
                None if long_next => match command::classify(name, None) {
                    Command::Other => long_one(),
                    other => other,
                },
                None => return Decision::Wait,
            }
        }
    };
    if !forwarded(cmd) {
        if pending.len() > MAX_WHOLE { Decision::TooBig } else { Decision::Wait }
    } else {
        Decision::Stream(cmd)
    }
}

/// The bytes of the incomplete argument after `p`'s complete ones, as far as they
/// have arrived (its `$<len>` header has: `next_len` is known).
fn arriving<'a>(pending: &'a [u8], p: &Partial) -> &'a [u8] {
    let rest = pending.get(p.resume_at..).unwrap_or_default();
    rest.iter().position(|&b| b == b'\n').map_or(&[][..], |nl| &rest[nl + 1..])
}

/// After a read's requests are handled: an empty read buffer is kept for the next
/// read by a connection that keeps reading (at pipeline 1, making a new one per
/// request was an allocation and a free per request, ~340 instructions of a GET's
/// 8,700). It is given back after a connection's first read since it woke (most
/// connections that send one burst then go quiet: a thousand new ones would each
/// hold 4 KiB until they park), and once more than [`READ_MIN`] was read into it: it
/// may have grown for a large request. The read size starts again from
/// [`READ_MIN`] with the next buffer: a grown one (up to 64 KiB, after reads that
/// filled their room) would otherwise size the fresh buffer, and a short request
/// would keep it. So a connection between requests keeps at most a few KiB, and a
/// 1 MB value's buffer is not kept for the next `GET`.
fn keep_or_release(buf: &mut BytesMut, read_in: &mut usize, chunk: &mut usize, reads: u32) {
    if buf.is_empty() && (reads <= 1 || *read_in > READ_MIN) {
        release(buf, read_in, chunk);
    }
}

/// Gives the (empty) read buffer back; the next one starts at the minimum read size.
fn release(buf: &mut BytesMut, read_in: &mut usize, chunk: &mut usize) {
    (*buf, *read_in, *chunk) = (BytesMut::new(), 0, READ_MIN);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that keeps reading keeps its buffer; its first read since it
    /// woke, a buffer more than `READ_MIN` went through, or one not yet drained do not.
    #[test]
    fn the_read_buffer_is_kept_only_for_a_connection_that_keeps_reading() {
        use crate::proxy::io::READ_MAX;
        let filled = |n: usize| {
            let mut b = BytesMut::with_capacity(n.max(READ_MIN));
            b.extend_from_slice(&vec![b'x'; n]);
            b.clear();
            b
        };
        let mut chunk = READ_MIN;
        let (mut buf, mut read_in) = (filled(40), 40);
        keep_or_release(&mut buf, &mut read_in, &mut chunk, 1);
        assert_eq!((buf.capacity(), read_in), (0, 0), "the first read's buffer goes");
        let (mut buf, mut read_in) = (filled(40), 40);
        keep_or_release(&mut buf, &mut read_in, &mut chunk, 2);
        assert!(buf.capacity() >= READ_MIN && read_in == 40, "a second read's buffer stays");
        // Reads that filled their room grew the read size: it starts over with the
        // next buffer, or that buffer would be made 64 KiB and kept.
        let (mut buf, mut read_in, mut chunk) = (filled(READ_MIN + 1), READ_MIN + 1, READ_MAX);
        keep_or_release(&mut buf, &mut read_in, &mut chunk, 5);
        assert_eq!((buf.capacity(), read_in), (0, 0), "a buffer a large request went through goes");
        assert_eq!(chunk, READ_MIN, "and the next one starts small");
        let (mut buf, mut read_in) = (BytesMut::from(&b"*1\r\n"[..]), 5000);
        keep_or_release(&mut buf, &mut read_in, &mut chunk, 1);
        assert_eq!(&buf[..], b"*1\r\n", "a partial request is kept");
    }

    /// A read's future is held inline by every active connection (not boxed per
    /// read, see `run`): the rare, large paths it can take (AUTH and the other
    /// commands turnstile answers, connecting, logging in, streaming, a lane that
    /// ended) must stay boxed where they are awaited.
    #[tokio::test]
    async fn a_reads_future_stays_small() {
        let d = crate::auth::Directory::new(
            crate::auth::HashParams::default(),
            crate::auth::VerifyOptions::default(),
        );
        let ctx = Arc::new(BdbContext::new(1, d, Upstream::parse("redis://127.0.0.1:1").unwrap(), 0));
        let reg = ctx.sessions.register(Kill::new(), None, None);
        let mut c = ClientHalf::new(Arc::clone(&ctx), Arc::clone(&reg.slot), Arc::new(Plan::default()));
        let mut buf = BytesMut::new();
        let size = std::mem::size_of_val(&c.process(&mut buf));
        eprintln!("a read's future: {size} bytes");
        // 936 bytes; 3,368 with AUTH's login, a lane's reconnect and streaming inline.
        assert!(size <= 1024, "a read's future is {size} bytes: box the rare path that grew it");
    }
}
