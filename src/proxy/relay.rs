//! The upstream-to-client half of a connection: passes replies through untouched and
//! inserts turnstile's own replies at the positions the plan gives.

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::io::{READ_MIN, ReadSome, UpstreamRead};
use super::kill::Kill;
use super::mailbox::Mailbox;
use super::plan::{Entry, Plan, Tag};
use crate::resp::command::SubKind;
use crate::resp::replies;
use crate::resp::reply::{FrameInfo, ReplyScanner};

/// How long closing the client's side of the connection may take.
const SHUTDOWN_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// What the relay knows of the upstream connection's state.
#[derive(Debug, Default)]
struct Modes {
    resp3: bool,
    monitor: bool,
    /// Last subscription count reported for channels + patterns (Redis reports them
    /// together), and the part of it that is each.
    // 32-bit: every connection's future holds these (a count past 2^31 saturates).
    regular: i32,
    channels: i32,
    patterns: i32,
    shard: i32,
}

impl Modes {
    fn subscribed(&self) -> bool {
        self.regular > 0 || self.shard > 0
    }

    fn count(&self, kind: SubKind) -> i64 {
        i64::from(match kind {
            SubKind::Channel => self.channels,
            SubKind::Pattern => self.patterns,
            SubKind::Shard => self.shard,
        })
    }

    /// Updates the counts from a (un)subscribe confirmation; false if `info` is not one.
    fn confirmation(&mut self, info: &FrameInfo) -> bool {
        let head = &info.head;
        let Some(count) = info.third else {
            return false;
        };
        let count = i32::try_from(count.max(0)).unwrap_or(i32::MAX);
        let up = count > self.regular;
        let down = count < self.regular;
        if head.eq_ignore_case(b"subscribe") {
            self.channels = self.channels.saturating_add(i32::from(up));
        } else if head.eq_ignore_case(b"psubscribe") {
            self.patterns = self.patterns.saturating_add(i32::from(up));
        } else if head.eq_ignore_case(b"unsubscribe") {
            self.channels = self.channels.saturating_sub(i32::from(down));
        } else if head.eq_ignore_case(b"punsubscribe") {
            self.patterns = self.patterns.saturating_sub(i32::from(down));
        } else if head.eq_ignore_case(b"ssubscribe") || head.eq_ignore_case(b"sunsubscribe") {
            self.shard = count;
            return true;
        } else {
            return false;
        }
        self.regular = count;
        true
    }
}

/// Fires when the node of a connection of its own is retired; never without one.
/// A plain struct rather than an `async` block: it is polled in the relay's main
/// select, whose state every connection's future carries.
struct Retired<'a>(&'a mut Option<Pin<Box<WaitForCancellationFutureOwned>>>);

impl Future for Retired<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.0.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        }
    }
}

fn is_message(info: &FrameInfo) -> bool {
    let h = &info.head;
    h.eq_ignore_case(b"message") || h.eq_ignore_case(b"pmessage") || h.eq_ignore_case(b"smessage")
}

enum Flow {
    Continue,
    Close,
    /// The plan's `Park`: everything owed is delivered.
    Park,
}

/// How the relay's run ended.
#[allow(clippy::large_enum_variant)] // returned once per park; boxing would allocate for nothing
pub enum RelayExit<W> {
    /// The connection is over; the upstream reader if it can be reused.
    Done(Option<UpstreamRead>),
    /// Parked at the client half's request (see [`super::park`]).
    Parked(Relay<W>),
}

/// How [`Relay::pump`] ended.
enum End {
    /// At the plan's `Close` (true) or because the upstream went away (false).
    Closed(bool),
    Park,
}

/// See the module documentation.
pub struct Relay<W> {
    plan: Arc<Plan>,
    client: W,
    upstream: Option<UpstreamRead>,
    buf: BytesMut,
    /// Size of the next read (see `READ_MIN`).
    chunk: usize,
    /// Follows the upstream's replies. Made when the first upstream bytes arrive: a
    /// client that only ever uses shared connections never needs one, and every
    /// idle connection would carry its 152 bytes.
    scanner: Option<Box<ReplyScanner>>,
    modes: Modes,
    current: Option<Entry>,
    /// Dropping the bytes of the frame being scanned (our own AUTH's reply).
    swallowing: bool,
    /// Dropping the bytes of the frame being scanned (replies the client turned off).
    dropping: bool,
    /// The bytes of the reply being scanned, held to be rewritten (`Rewrite`).
    /// Boxed, like `held`: rare, and every connection's future holds the field.
    #[allow(clippy::box_collection)] // on purpose: 8 bytes in every parked connection, not 24
    capturing: Option<Box<Vec<u8>>>,
    /// The upstream stream is no longer followed; bytes pass straight through.
    opaque: bool,
    /// Where upstream failures are counted (the database this connection serves).
    ctx: Option<Arc<super::BdbContext>>,
    /// Where replies to requests sent on shared upstream connections arrive.
    mailbox: Option<Arc<Mailbox>>,
    /// The name of the client's user as of the reply being relayed (`Entry::Shown`),
    /// shown where Redis 7.2+ names turnstile's upstream user in an error.
    shown: Option<Arc<str>>,
    /// For a connection of its own to a Sentinel-managed node: fires when a
    /// failover retires the node (boxed: only such clients pay for it).
    retired: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Replies of ours held back to go out in one write with the shared reply that
    /// follows them (see `advance_plan`).
    held: Option<Box<Bytes>>,
}

impl<W> Drop for Relay<W> {
    fn drop(&mut self) {
        // The lane must not keep replies for a client nobody will write to.
        if let Some(m) = &self.mailbox {
            m.close();
        }
    }
}

impl<W: AsyncWrite + Unpin> Relay<W> {
    pub fn new(plan: Arc<Plan>, client: W) -> Self {
        Self {
            plan,
            client,
            upstream: None,
            buf: BytesMut::new(),
            chunk: READ_MIN,
            scanner: None,
            modes: Modes::default(),
            current: None,
            swallowing: false,
            dropping: false,
            capturing: None,
            opaque: false,
            ctx: None,
            mailbox: None,
            shown: None,
            retired: None,
            held: None,
        }
    }

    /// Counts upstream failures on `ctx`'s metrics.
    pub fn counting(mut self, ctx: Arc<super::BdbContext>) -> Self {
        self.ctx = Some(ctx);
        self
    }

    fn upstream_failed(&self) {
        if let Some(ctx) = &self.ctx {
            crate::metrics::inc(&ctx.stats.upstream_lost);
        }
    }

    /// Runs until the plan says close, the upstream goes away, the client stops
    /// accepting bytes, or `abort` fires.
    ///
    /// Returns the upstream reader if the client got everything it was owed and
    /// nothing else is in flight: the upstream connection can then be reused.
    ///
    /// Not an `async fn`, so that `self` is stored once in the future (see
    /// `ClientHalf::run`).
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn run(mut self, abort: Kill) -> impl Future<Output = RelayExit<W>> {
        async move {
            // Abort first: a connection closed at once (POST, output limits) writes
            // nothing more, even if more happens to be ready.
            let result = tokio::select! {
                biased;
                () = abort.killed() => Ok(End::Closed(false)),
                r = self.pump() => r,
            };
            let planned_close = match result {
                Ok(End::Park) => return RelayExit::Parked(self),
                Ok(End::Closed(planned)) => planned,
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    false
                }
            };
            // Bounded: over TLS a shutdown writes close_notify, which a client that
            // reads nothing (one closed for its output limits) would never take.
            // Not after a close the client asked for (its EOF, QUIT): the socket's
            // close says the same, one system call fewer per connection.
            if !planned_close {
                let _ = tokio::time::timeout(SHUTDOWN_MAX, self.client.shutdown()).await;
            }
            let idle = planned_close
                && !self.opaque
                && !self.swallowing
                && !self.dropping
                && self.current.is_none()
                && self.buf.is_empty()
                && self.at_boundary()
                && self.plan.is_empty();
            // The client half stops too (its own kill switch).
            abort.kill();
            RelayExit::Done(if idle { self.upstream.take() } else { None })
        }
    }

    /// Until the plan's `Close` or `Park`, or the upstream goes away.
    async fn pump(&mut self) -> std::io::Result<End> {
        loop {
            match self.advance_plan().await? {
                Flow::Close => return Ok(End::Closed(true)),
                Flow::Park => {
                    // The client left its lane: so does the relay (nothing is in
                    // flight on it), and a parked connection holds no mailbox.
                    if let Some(m) = self.mailbox.take() {
                        m.close();
                    }
                    return Ok(End::Park);
                }
                Flow::Continue => {}
            }
            if matches!(self.current, Some(Entry::Shared { .. })) {
                // Not boxed, as the client half's `process` is not.
                if let Flow::Close = self.relay_shared().await? {
                    return Ok(End::Closed(false));
                }
                continue;
            }
            let Some(upstream) = self.upstream.as_mut() else {
                self.plan.pushed().await;
                continue;
            };
            // As on the client side: no buffer is held while waiting (plain TCP).
            let read = tokio::select! {
                biased;
                // First: a subscriber's stream of messages must not keep it on a
                // node that is no longer the primary. (Pending for ever without one.)
                () = Retired(&mut self.retired) => {
                    // Boxed: rare, and every connection's future would carry it.
                    Box::pin(self.node_retired()).await?;
                    return Ok(End::Closed(false));
                }
                r = upstream.read_some(&mut self.buf, &mut self.chunk) => r,
                _ = self.plan.pushed(), if self.current.is_none() => continue,
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    // A reset, or a TLS alert (e.g. the upstream refused turnstile's
                    // client certificate after the handshake): the upstream is gone.
                    tracing::debug!(error = %e, "upstream read failed");
                    0
                }
            };
            if n == 0 {
                self.upstream_gone().await?;
                return Ok(End::Closed(false));
            }
            // Boxed: a connection of its own cannot park, so an idle subscriber
            // would carry this state (~750 bytes) for as long as it listens.
            if let Flow::Close = Box::pin(self.relay_bytes()).await? {
                return Ok(End::Closed(true));
            }
        }
    }

    /// Holds a reply of ours until the lane reply after it. At most one is held:
    /// it is held only when the next entry owing bytes is that lane reply.
    fn hold(&mut self, bytes: Bytes) {
        debug_assert!(self.held.is_none(), "a second reply held before the lane reply");
        self.held = Some(Box::new(bytes));
    }

    /// Writes the replies held back, if any.
    async fn write_held(&mut self) -> std::io::Result<()> {
        match self.held.take() {
            Some(held) => self.client.write_all(&held).await,
            None => Ok(()),
        }
    }

    /// Writes the replies held back and then `bytes`, in one system call when the
    /// socket takes both.
    async fn write_after_held(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(held) = self.held.take() else { return self.client.write_all(bytes).await };
        let n =
            self.client.write_vectored(&[std::io::IoSlice::new(&held), std::io::IoSlice::new(bytes)]).await?;
        if n < held.len() {
            self.client.write_all(&held[n..]).await?;
            self.client.write_all(bytes).await
        } else {
            self.client.write_all(&bytes[n - held.len()..]).await
        }
    }

    /// Writes a delivery (after any held reply of ours) while keeping the soft
    /// output limit: a client above it must make room in time, whether or not more
    /// replies arrive to notice it, and the queue may go over it while this write
    /// waits on a client that reads nothing. `deadline`: when the client, above the
    /// limit as the delivery was taken, must be below it.
    async fn write_delivery(
        &mut self,
        mailbox: &Mailbox,
        bytes: &[u8],
        mut deadline: Option<std::time::Instant>,
    ) -> std::io::Result<()> {
        let write = self.write_after_held(bytes);
        tokio::pin!(write);
        loop {
            // Biased towards the write: one that completes at once (nearly all)
            // never registers with the timer or the notification.
            match deadline {
                None => tokio::select! {
                    biased;
                    r = &mut write => return r,
                    () = mailbox.went_over_soft() => deadline = mailbox.soft_deadline(),
                },
                Some(at) => tokio::select! {
                    biased;
                    r = &mut write => return r,
                    () = tokio::time::sleep_until(at.into()) => match mailbox.enforce_soft_limit() {
                        Some(next) => deadline = Some(next),
                        // Cut: the kill ends the relay; until then the write waits.
                        None if mailbox.is_cut() => return write.await,
                        // Below it again.
                        None => deadline = None,
                    },
                },
            }
        }
    }

    /// Passes on the replies of the current `Shared` entry as the lane delivers
    /// them. `Close` if they will not come (the lane's connection failed).
    async fn relay_shared(&mut self) -> std::io::Result<Flow> {
        let Some(mailbox) = self.mailbox.clone() else {
            self.write_held().await?;
            self.client.write_all(replies::UPSTREAM_LOST).await?;
            return Ok(Flow::Close);
        };
        // Entries end at reply boundaries, so each starts at one.
        let mut mid_reply = false;
        loop {
            match mailbox.next().await {
                Ok((d, soft_deadline)) => {
                    mid_reply = !d.whole;
                    self.write_delivery(&mailbox, &d.bytes, soft_deadline).await?;
                    if let Some(Entry::Shared { n }) = &mut self.current {
                        *n = n.saturating_sub(d.replies);
                        if *n == 0 {
                            self.current = None;
                            self.client.flush().await?;
                            return Ok(Flow::Continue);
                        }
                    }
                }
                Err(reason) => {
                    if reason == replies::UPSTREAM_LOST {
                        self.upstream_failed();
                    }
                    self.write_held().await?;
                    // As in `upstream_gone`: never after half a reply.
                    if !mid_reply {
                        self.client.write_all(reason).await?;
                    }
                    self.client.flush().await?;
                    return Ok(Flow::Close);
                }
            }
        }
    }

    /// A failover retired the node this client's own connection goes to: it is
    /// told as Redis tells the clients of a demoted node — `-UNBLOCKED` if it was
    /// blocked, else that the connection closed (Sentinel's `CLIENT KILL`) — and
    /// closed, to reconnect to the new primary.
    async fn node_retired(&mut self) -> std::io::Result<()> {
        tracing::debug!("the upstream node was retired by a failover; closing the client");
        self.upstream_failed();
        if self.at_boundary() && !self.swallowing && !self.dropping {
            let blocked = matches!(self.current, Some(Entry::Replies { tag: Tag::Blocking, .. }));
            let reply = if blocked { replies::UNBLOCKED } else { replies::UPSTREAM_LOST };
            self.client.write_all(reply).await?;
        }
        self.upstream = None;
        Ok(())
    }

    /// The upstream closed. If the client is owed replies, say why they will not come.
    async fn upstream_gone(&mut self) -> std::io::Result<()> {
        if self.retired.is_some() {
            // A Sentinel-managed node: its end is (likely) a failover; the client
            // is told in any case, blocked or subscribed, as when it is retired.
            if let Some(ctx) = &self.ctx {
                ctx.failover.nudge();
            }
            return Box::pin(self.node_retired()).await;
        }
        let owed = self.current.is_some() || !self.plan.is_empty();
        if owed {
            self.upstream_failed();
            // Not after half a reply: the client would read the error as the rest
            // of it. Then the close alone says it.
            if self.at_boundary() && !self.swallowing && !self.dropping {
                self.client.write_all(replies::UPSTREAM_LOST).await?;
            }
        }
        tracing::debug!(owed, "upstream closed the connection");
        Ok(())
    }

    /// Runs the entries at the head of the plan that need no upstream bytes.
    async fn advance_plan(&mut self) -> std::io::Result<Flow> {
        let mut wrote = false;
        let flow = loop {
            let entry = match self.current.take() {
                Some(e) => e,
                None => match self.plan.pop() {
                    Some(e) => e,
                    None => break Flow::Continue,
                },
            };
            match entry {
                // Followed by a reply from a lane (a client's AUTH and its first
                // command, sent together): held, to go out in the same write, as
                // Redis answers the commands of one read in one write. One system
                // call and one wake-up of the client fewer per such connection;
                // nothing waits on it that would not wait for the next reply anyway.
                // Only with no upstream connection of the client's own, whose bytes
                // are written elsewhere: the held bytes go out in `relay_shared`,
                // which runs next.
                Entry::Local(bytes) if self.upstream.is_none() && self.plan.next_owed_is_shared() => {
                    self.hold(bytes)
                }
                Entry::Local(bytes) => {
                    self.write_held().await?;
                    match self.mailbox.clone() {
                        // A client that reads nothing can block here while the lane
                        // fills its mailbox for the lane replies owed after this one.
                        Some(m) => self.write_delivery(&m, &bytes, m.soft_deadline()).await?,
                        None => self.client.write_all(&bytes).await?,
                    }
                    wrote = true;
                }
                Entry::Attach(reader) => self.upstream = Some(reader),
                Entry::Shown(name) => self.shown = Some(name),
                Entry::Node(token) => self.retired = Some(Box::pin(token.cancelled_owned())),
                Entry::Mailbox(m) => self.mailbox = Some(m),
                Entry::Shared { n: 0 } => {}
                Entry::Close => {
                    self.client.flush().await?;
                    return Ok(Flow::Close);
                }
                Entry::Park => {
                    self.client.flush().await?;
                    return Ok(Flow::Park);
                }
                Entry::Replies { n: 0, .. } => {}
                Entry::UnsubscribeAll { kind, silent } => {
                    let n = self.modes.count(kind).max(1) as u64;
                    self.current = Some(Entry::Replies { n, tag: Tag::Pubsub, silent });
                    break Flow::Continue;
                }
                // Replies the stream cannot be followed for are simply passed on.
                Entry::Replies { .. } | Entry::AwaitReset | Entry::Swallow | Entry::Rewrite { .. }
                    if self.opaque => {}
                other => {
                    self.current = Some(other);
                    break Flow::Continue;
                }
            }
        };
        if wrote {
            // Our replies go out now, not with the next upstream bytes: TLS may hold
            // the tail of a write in its buffer (on TCP this is a no-op).
            self.client.flush().await?;
        }
        Ok(flow)
    }

    /// Passes the buffered upstream bytes to the client, frame by frame.
    async fn relay_bytes(&mut self) -> std::io::Result<Flow> {
        let mut pos = 0;
        let mut flushed = 0;
        while pos < self.buf.len() {
            if self.opaque {
                pos = self.buf.len();
                break;
            }
            if self.at_boundary() {
                // A reply is starting. The entry it answers was planned before its
                // request was sent, so it is in the plan by now, behind any replies
                // of ours that must go out first.
                if self.current.is_none() && !self.plan.is_empty() {
                    self.client.write_all(&self.buf[flushed..pos]).await?;
                    flushed = pos;
                    if let Flow::Close | Flow::Park = self.advance_plan().await? {
                        // (`Park` never comes while an upstream connection of the
                        // client's own is read: it would close rather than hang.)
                        return Ok(self.close_at(pos));
                    }
                }
                if matches!(self.current, Some(Entry::Swallow)) {
                    self.client.write_all(&self.buf[flushed..pos]).await?;
                    flushed = pos;
                    self.swallowing = true;
                } else if matches!(self.current, Some(Entry::Replies { silent: true, .. }))
                    && !self.may_be_out_of_band(self.buf[pos])
                {
                    self.client.write_all(&self.buf[flushed..pos]).await?;
                    flushed = pos;
                    self.dropping = true;
                } else if matches!(self.current, Some(Entry::Rewrite { .. }))
                    && self.capturing.is_none()
                    && !self.may_be_out_of_band(self.buf[pos])
                {
                    self.client.write_all(&self.buf[flushed..pos]).await?;
                    flushed = pos;
                    self.capturing = Some(Box::default());
                }
            }
            let scanner = self.scanner.get_or_insert_with(Default::default);
            let step = match scanner.scan_errors(&self.buf[pos..]) {
                Ok(step) => step,
                Err(_) => {
                    tracing::warn!("upstream reply stream not understood; passing it through unparsed");
                    self.opaque = true;
                    continue;
                }
            };
            let n = step.used;
            if let Some(held) = self.capturing.as_mut() {
                if held.len() + n > 64 * 1024 {
                    // A CLIENT INFO line is small; anything past 64 KiB is not one.
                    self.opaque = true;
                    self.client.write_all(held).await?;
                    self.capturing = None;
                } else {
                    held.extend_from_slice(&self.buf[pos..pos + n]);
                    flushed = pos + n;
                }
            }
            let at = pos;
            pos += n;
            if self.swallowing || self.dropping {
                flushed = pos;
            }
            if step.short {
                // The read ended inside an error line: it is kept, and scanned
                // whole with the next read (it may name turnstile's user).
                self.client.write_all(&self.buf[flushed..pos]).await?;
                self.client.flush().await?;
                let _ = self.buf.split_to(pos);
                return Ok(Flow::Continue);
            }
            // An error naming turnstile's user, the reply or an element of one:
            // what came before it goes as it is, the error with the client's name.
            if let Some(e) = step.error
                && self.capturing.is_none()
                && flushed <= at + e
                && crate::authz::names::names_internal(&self.buf[at + e..pos])
            {
                let name = self.shown.as_deref().unwrap_or("default");
                if let Some(shown) = crate::authz::names::rewrite_error(&self.buf[at + e..pos], name) {
                    self.client.write_all(&self.buf[flushed..at + e]).await?;
                    self.client.write_all(&shown).await?;
                    flushed = pos;
                }
            }
            if !step.frame {
                continue;
            }
            let info = *self.scanner.as_deref().expect("made above").last();
            if let Some(held) = self.capturing.take()
                && let Some(Entry::Rewrite { from, to, silent: false }) = &self.current
            {
                // An error instead of the reply (a rule without the command) may
                // name turnstile's user too.
                let name = self.shown.as_deref().unwrap_or("default");
                match crate::authz::names::rewrite_error(&held, name) {
                    Some(shown) => self.client.write_all(&shown).await?,
                    None => self.client.write_all(&super::acl::rewrite_user(&held, from, to)).await?,
                }
            }
            if let Some(ctx) = &self.ctx
                && crate::metrics::is_noperm(info.kind, info.head.bytes())
            {
                crate::metrics::inc(&ctx.stats.noperm);
            }
            self.dropping = false;
            if self.swallowing {
                self.swallowing = false;
                if !(info.kind == b'+' && info.head.eq_ignore_case(b"OK")) {
                    tracing::warn!("upstream refused the service credentials");
                    self.upstream_failed();
                    self.client.write_all(replies::UPSTREAM_AUTH_FAILED).await?;
                    // Never reused: it is not logged in.
                    self.upstream = None;
                    return Ok(Flow::Close);
                }
                self.current = None;
            } else if self.on_frame(&info) {
                // The entry is complete: what follows in the plan may be ours to say.
                self.client.write_all(&self.buf[flushed..pos]).await?;
                flushed = pos;
                if let Flow::Close | Flow::Park = self.advance_plan().await? {
                    return Ok(self.close_at(pos));
                }
            }
        }
        self.client.write_all(&self.buf[flushed..pos]).await?;
        // TLS may keep the tail of a write in its buffer; on TCP this is a no-op.
        self.client.flush().await?;
        // Every byte is passed on: give the buffer back (none is held while idle).
        self.buf = BytesMut::new();
        Ok(Flow::Continue)
    }

    /// Between two upstream replies (or before the first).
    fn at_boundary(&self) -> bool {
        self.scanner.as_ref().is_none_or(|s| s.at_boundary())
    }

    /// Closing at `pos`: what follows was never asked for, and stays in the buffer
    /// to tell `run` the upstream connection is not idle.
    fn close_at(&mut self, pos: usize) -> Flow {
        let _ = self.buf.split_to(pos);
        Flow::Close
    }

    /// Whether a frame starting with `kind` could be a push rather than a reply;
    /// such frames are never dropped, as Redis delivers pushes even with replies off.
    fn may_be_out_of_band(&self, kind: u8) -> bool {
        kind == b'>' || (kind == b'*' && !self.modes.resp3 && self.modes.subscribed()) || self.modes.monitor
    }

    /// Accounts for one complete upstream frame. Returns true when it completed the
    /// current plan entry.
    fn on_frame(&mut self, info: &FrameInfo) -> bool {
        let tag = match &self.current {
            Some(Entry::Replies { tag, .. }) => Some(*tag),
            _ => None,
        };
        // Out-of-band frames are not replies to any request.
        match info.kind {
            b'>' => {
                // Only (un)subscribe confirmations answer a request; messages and
                // invalidations are pushed unasked.
                let answers_a_request = self.modes.confirmation(info);
                if !answers_a_request {
                    return false;
                }
            }
            b'*' if !self.modes.resp3 => {
                if self.modes.subscribed() && is_message(info) {
                    return false;
                }
                if tag == Some(Tag::Pubsub) || self.modes.subscribed() {
                    self.modes.confirmation(info);
                }
            }
            b'+' if self.modes.monitor && info.head.bytes().first().is_some_and(u8::is_ascii_digit) => {
                return false;
            }
            _ => {}
        }
        match &mut self.current {
            Some(Entry::Replies { n, tag, .. }) => {
                match tag {
                    Tag::Hello if info.kind == b'%' => self.modes.resp3 = true,
                    Tag::Hello if info.kind == b'*' => self.modes.resp3 = false,
                    Tag::Monitor if info.kind == b'+' => self.modes.monitor = true,
                    // A rejected (un)subscribe is one error, however many channels it named.
                    Tag::Pubsub if info.kind == b'-' => *n = 1,
                    _ => {}
                }
                *n -= 1;
                if *n == 0 {
                    self.current = None;
                    return true;
                }
                false
            }
            Some(Entry::Rewrite { .. }) => {
                self.current = None;
                true
            }
            Some(Entry::AwaitReset) => {
                if info.kind == b'+' && info.head.eq_ignore_case(b"RESET") {
                    self.modes = Modes::default();
                    self.current = None;
                    return true;
                }
                false
            }
            // Nothing expected: an unsolicited reply, passed through as it is.
            _ => false,
        }
    }
}
