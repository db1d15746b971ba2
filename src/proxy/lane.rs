//! Shared upstream connections ("lanes"): the stateless commands of many clients
//! (GET, SET, HSET… see [`crate::resp::command::Command::Stateless`]) multiplexed
//! onto a few connections per database, as twemproxy does.
//!
//! Why: with one upstream connection per client, every request costs Redis a read
//! and a write of its own and turnstile four socket calls. On a lane, the requests
//! of all clients that arrive together go to Redis in one write and their replies
//! come back in one read, so Redis and turnstile each make a fraction of the calls
//! (measured with `benches/load/syscalls.sh`; see the README's Performance section).
//!
//! What keeps it correct:
//! - only complete requests of bounded size are sent, so a client that disconnects
//!   mid-frame cannot leave half a command on a connection others use;
//! - one client's requests all go to one lane, so Redis answers them in order, and
//!   the lane hands each client exactly the replies to its requests (it counts
//!   frames, oldest batch first);
//! - a client leaves the lane for a connection of its own (see `ClientHalf`) at its
//!   first command that could leave state behind (SELECT, MULTI, SUBSCRIBE, CLIENT
//!   SETNAME, a blocking command…), after its lane requests have all been answered,
//!   so its commands still take effect in the order it sent them.
//! - a lane whose connection fails tells every client it owed replies, and the next
//!   request opens a new one.
//! - a lane never waits for a client: replies are handed to the client's mailbox
//!   as they are read, and a client that does not take them is disconnected at its
//!   output limits (see [`super::mailbox`]), so no one's reply waits behind
//!   another client's reading. The one exception costs no one anything: while a
//!   single client is owed everything on the lane and nothing else is queued, the
//!   lane reads at that client's pace (a huge value streams through, not buffered).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::Upstream;
use super::failover::Failover;
use super::handshake::UpstreamError;
use super::io::{READ_MIN, ReadSome, UpstreamRead, UpstreamWrite};
use super::mailbox::{Delivery, Mailbox, PAUSE_AT};
use super::users::UpstreamUsers;
use crate::authz::{Grant, RuleKey};
use crate::resp::replies;
use crate::resp::reply::ReplyScanner;

/// Batches waiting for a lane before senders wait in turn.
const QUEUE: usize = 1024;
/// How many times a lane lets other clients queue requests before it writes.
const GATHER_ROUNDS: usize = 3;
/// Request bytes a lane buffers for writing before it stops taking batches.
const WRITE_MAX: usize = 256 * 1024;
/// A request larger than this is not sent on a lane (the client gets a connection
/// of its own): one big value must not hold up every other client's requests.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Complete requests of one client, and where their `n` replies go.
pub struct Batch {
    pub bytes: Bytes,
    pub n: u64,
    pub mailbox: Arc<Mailbox>,
}

/// A handle on a running lane. Cheap to clone; the lane ends when its connection
/// fails, when it has been idle for the pool's idle time, or once every handle is
/// gone and every reply delivered.
#[derive(Clone)]
pub struct Lane {
    tx: mpsc::Sender<Batch>,
    upstream: Arc<Upstream>,
    /// Whose rights the connection carries: the turnstile user it logged in as.
    key: RuleKey,
    /// The connection speaks RESP3 (`HELLO 3`): it carries RESP3 clients only.
    resp3: bool,
}

impl Lane {
    /// False once the lane has ended (its connection failed, or it went idle).
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// The rule whose upstream user the lane is logged in as.
    pub fn key(&self) -> RuleKey {
        self.key
    }

    /// Hands a batch to the lane; gives it back if the lane has ended (nothing of
    /// it was sent, so another lane may take it).
    pub async fn send(&self, batch: Batch) -> Result<(), Batch> {
        self.tx.send(batch).await.map_err(|e| e.0)
    }

    fn serves(&self, upstream: &Arc<Upstream>) -> bool {
        self.is_open() && Arc::ptr_eq(&self.upstream, upstream)
    }
}

/// Which lanes a connection may share: the same rights and the same protocol.
type LaneKey = (RuleKey, bool);

/// A database's lanes: `upstream.pool.shared` of them per (rule, protocol) —
/// clients of different rules never share a connection, since Redis checks rights
/// per connection, and RESP2 and RESP3 replies differ — opened on first use,
/// reopened when one fails or the upstream changes, closed when idle.
pub struct Lanes {
    slots: Mutex<HashMap<LaneKey, Vec<Option<Lane>>>>,
    next: AtomicUsize,
    /// Held while a lane is being opened.
    opening: tokio::sync::Mutex<()>,
    /// When the last attempt to open one failed, and why.
    failed: Mutex<Option<(Instant, UpstreamError)>>,
    /// `-NOPERM` replies the lanes carried.
    noperm: Arc<AtomicU64>,
    /// Told of a `-READONLY` or a lost connection on a Sentinel-managed node.
    failover: Arc<Failover>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("open", &self.open()).finish()
    }
}

impl Lanes {
    pub fn new(failover: Arc<Failover>) -> Self {
        Self {
            slots: Mutex::default(),
            next: AtomicUsize::new(0),
            opening: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
            noperm: Arc::default(),
            failover,
        }
    }

    /// Lanes running now.
    pub fn open(&self) -> usize {
        self.lock().values().flatten().flatten().filter(|l| l.is_open()).count()
    }

    /// `-NOPERM` replies the lanes carried so far.
    pub fn noperm(&self) -> u64 {
        self.noperm.load(Ordering::Relaxed)
    }

    /// Lanes running now for one rule and protocol.
    pub fn open_for(&self, key: RuleKey, resp3: bool) -> usize {
        self.lock().get(&(key, resp3)).map_or(0, |v| v.iter().flatten().filter(|l| l.is_open()).count())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LaneKey, Vec<Option<Lane>>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, i: usize, upstream: &Arc<Upstream>, key: LaneKey) -> Option<Lane> {
        let mut slots = self.lock();
        // Lanes that ended (idle, failed) leave their slots: drop them, so that
        // rules no client uses any more cost nothing.
        slots.retain(|_, v| v.iter().flatten().any(Lane::is_open));
        slots.get(&key)?.get(i).and_then(Option::as_ref).filter(|l| l.serves(upstream)).cloned()
    }

    /// A lane to `upstream` carrying `grant`'s rights, for a new client (spread
    /// round-robin over the lanes). [`UpstreamError::NoProto`] if the upstream does
    /// not speak RESP3 (the client then gets a connection of its own, where Redis
    /// answers its HELLO).
    pub async fn get(
        &self,
        upstream: &Arc<Upstream>,
        grant: &Grant,
        resp3: bool,
        users: &UpstreamUsers,
    ) -> Result<Lane, UpstreamError> {
        let want = upstream.pool.shared.max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % want;
        let key = (grant.key, resp3);
        if let Some(lane) = self.find(i, upstream, key) {
            return Ok(lane);
        }
        // One connect at a time: forty clients arriving together must not open forty
        // connections. Those that waited while an attempt failed share its failure
        // rather than each waiting out a connect timeout in turn.
        let asked = Instant::now();
        let _opening = self.opening.lock().await;
        if let Some(lane) = self.find(i, upstream, key) {
            return Ok(lane);
        }
        if let Some((at, e)) = *self.failed.lock().unwrap_or_else(|p| p.into_inner())
            && at >= asked
        {
            return Err(e);
        }
        match open(upstream, grant, resp3, users, Arc::clone(&self.noperm), &self.failover).await {
            Ok(lane) => {
                let mut slots = self.lock();
                let slots = slots.entry(key).or_default();
                slots.resize_with(want, || None);
                slots[i] = Some(lane.clone());
                Ok(lane)
            }
            Err(e) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), e));
                Err(e)
            }
        }
    }
}

/// Connects, logs in as the rule's turnstile user, and starts the lane's task.
async fn open(
    upstream: &Arc<Upstream>,
    grant: &Grant,
    resp3: bool,
    users: &UpstreamUsers,
    noperm: Arc<AtomicU64>,
    failover: &Arc<Failover>,
) -> Result<Lane, UpstreamError> {
    // A lane relies on reading the socket's readiness, which TLS does not expose.
    if upstream.tls {
        return Err(UpstreamError::Unavailable);
    }
    let (reader, writer, _) = users.session(upstream, grant, resp3).await?;
    let (UpstreamRead::Tcp(reader), UpstreamWrite::Tcp(writer)) = (reader, writer) else {
        return Err(UpstreamError::Unavailable);
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let node = upstream.sentinel.is_some().then(|| (Arc::clone(upstream), Arc::clone(failover)));
    tokio::spawn(run(reader, writer, rx, upstream.pool.idle, noperm, node));
    tracing::debug!(upstream = %upstream.address, rule = ?grant.key, "shared upstream connection opened");
    Ok(Lane { tx, upstream: Arc::clone(upstream), key: grant.key, resp3 })
}

/// A batch written (or about to be) whose replies are still to come.
struct InFlight {
    mailbox: Arc<Mailbox>,
    remaining: u64,
}

/// What a lane to a Sentinel-managed node needs: the node (whose `retired`
/// token ends the lane) and where to report signs of a failover.
type Node = Option<(Arc<Upstream>, Arc<Failover>)>;

/// Why a lane stopped reading.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The node answered `-READONLY`: it was demoted. That reply and all after it
    /// are withheld (never shown to a client).
    #[error("the node answered -READONLY: it is a replica now")]
    ReadOnly,
    /// A failover retired the node.
    #[error("the node is no longer the primary")]
    Retired,
}

/// The reply state a lane leaves behind: in the middle of a reply, the client it
/// was for has had part of it.
#[derive(Default)]
struct Reading {
    scanner: ReplyScanner,
    /// Inside a push frame nobody asked for (see `split`).
    skipping: bool,
}

/// The lane's task: writes batches as they come (all those waiting, in one write)
/// and hands replies out as they are read, until the connection fails or the lane
/// is no longer wanted. Reading never waits for writing and vice versa, so Redis
/// can always make progress.
async fn run(
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Batch>,
    idle: Duration,
    noperm: Arc<AtomicU64>,
    node: Node,
) {
    let mut owed = VecDeque::new();
    let mut reading = Reading::default();
    let retired = node.as_ref().map(|(u, _)| u.retired.clone());
    let result = pump(reader, writer, &mut rx, &mut owed, idle, &noperm, &mut reading, retired).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, owed = owed.len(), "shared upstream connection ended");
    }
    // A lane to a Sentinel-managed node: its end is a sign of a failover. The
    // clients it owed replies stay connected (each request gets the error, never a
    // replay, since it may have run) and go on on the next primary's lanes.
    let keep = match (&node, &result) {
        (Some((up, failover)), Err(End::ReadOnly)) => {
            failover.retire(up);
            true
        }
        (Some((_, failover)), Err(_)) => {
            failover.nudge();
            true
        }
        _ => false,
    };
    // The client whose reply was cut short cannot be told: it is closed.
    let mut cut = !reading.scanner.at_boundary() && !reading.skipping;
    // Nothing more will be answered: everyone still owed a reply is told, including
    // batches queued but never taken (the channel is closed first, so none follow).
    rx.close();
    for f in owed {
        if keep && !std::mem::take(&mut cut) {
            f.mailbox.fail(f.remaining, replies::UPSTREAM_LOST);
        } else {
            f.mailbox.lose(replies::UPSTREAM_LOST);
        }
    }
    while let Ok(batch) = rx.try_recv() {
        if keep {
            batch.mailbox.fail(batch.n, replies::UPSTREAM_LOST);
        } else {
            batch.mailbox.lose(replies::UPSTREAM_LOST);
        }
    }
}

#[allow(clippy::too_many_arguments)] // one call site, each a separate piece of the lane
async fn pump(
    mut reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Batch>,
    owed: &mut VecDeque<InFlight>,
    idle: Duration,
    noperm: &AtomicU64,
    reading: &mut Reading,
    retired: Option<tokio_util::sync::CancellationToken>,
) -> Result<(), End> {
    // Made once: polled on every pass, registered with its token only once.
    let retired_given = retired.is_some();
    let retired = async {
        match retired {
            Some(t) => t.cancelled_owned().await,
            None => std::future::pending().await,
        }
    };
    // Only a lane to a Sentinel-managed node watches for `-READONLY`: on a fixed
    // upstream (a replica on purpose) it is Redis's answer to that one request.
    let follows_primary = retired_given;
    tokio::pin!(retired);
    // Checked every `idle`: a lane that took no batch over a whole period closes.
    // An interval made once costs nothing per request, unlike a timer reset on
    // every batch.
    let mut idle_check =
        tokio::time::interval_at(tokio::time::Instant::now() + idle, idle.max(Duration::from_millis(10)));
    let mut busy = false;
    let mut out = BytesMut::new();
    let mut buf = BytesMut::new();
    let mut chunk = READ_MIN;
    let mut deliveries = Vec::new();
    let mut wanted = true;
    loop {
        // Everything already queued goes out in one write.
        while wanted && out.len() < WRITE_MAX {
            match rx.try_recv() {
                Ok(batch) => {
                    busy = true;
                    take(batch, &mut out, owed);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => wanted = false,
            }
        }
        if !out.is_empty() {
            match writer.try_write(&out) {
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            // Written: the buffer is kept for the next batch (regrown per batch it
            // cost ~40 instructions a request at pipeline 16), unless a large one
            // grew it: an idle lane holds little.
            if out.is_empty() && out.capacity() > KEEP_OUT {
                out = BytesMut::new();
            }
        }
        if !wanted && owed.is_empty() && out.is_empty() {
            return Ok(());
        }
        // Read on for everyone, unless only one client is owed anything and it is
        // behind (see the module documentation).
        let paused = pause_for(owed, rx);
        tokio::select! {
            biased;
            () = &mut retired => return Err(End::Retired),
            read = reader.read_some(&mut buf, &mut chunk), if paused.is_none() => {
                if read? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                let split = split(&buf, reading, owed, &mut deliveries, noperm, follows_primary);
                // What came before a `-READONLY` is delivered; it and the rest not.
                // What `split` held back (the start of an error line) stays for the
                // next read.
                let bytes = match &split {
                    Ok(done) => buf.split_to(*done).freeze(),
                    Err(_) => buf.split().freeze(),
                };
                for (mailbox, part, replies, whole) in deliveries.drain(..) {
                    let bytes = match part {
                        Part::Read(range) => bytes.slice(range),
                        Part::Shown(shown) => shown,
                    };
                    mailbox.deliver(Delivery { bytes, replies, whole });
                }
                split?;
            }
            () = async { paused.as_ref().expect("guarded").room().await }, if paused.is_some() => {}
            ready = writer.writable(), if !out.is_empty() => ready?,
            _ = idle_check.tick(), if wanted => {
                if !std::mem::take(&mut busy) && owed.is_empty() && out.is_empty() {
                    // Closed first, so no client hands it a batch from now on; any
                    // batch that made it into the queue before is still served.
                    rx.close();
                    wanted = false;
                    while let Ok(batch) = rx.try_recv() {
                        take(batch, &mut out, owed);
                    }
                    tracing::debug!("idle shared upstream connection closed");
                }
            }
            batch = rx.recv(), if wanted && out.len() < WRITE_MAX => match batch {
                Some(batch) => {
                    busy = true;
                    take(batch, &mut out, owed);
                    // Let the other clients woken by the same events queue their
                    // requests first, so they all go out in one write: without this,
                    // at one request per client (pipeline 1) every request was a write
                    // and every reply a read of its own, as with no sharing at all.
                    // Again while more keep coming (a few times at most: each round
                    // is a pass of the scheduler, i.e. latency).
                    for _ in 0..GATHER_ROUNDS {
                        tokio::task::yield_now().await;
                        let before = owed.len();
                        while out.len() < WRITE_MAX {
                            match rx.try_recv() {
                                Ok(batch) => take(batch, &mut out, owed),
                                Err(_) => break,
                            }
                        }
                        if owed.len() == before {
                            break;
                        }
                    }
                }
                None => wanted = false,
            },
        }
    }
}

/// The client to wait for before reading on: the one owed every reply in flight,
/// if its backlog reached [`PAUSE_AT`] and no other client's batch is queued.
/// Waiting then delays no one; the moment another batch arrives, it stops.
fn pause_for(owed: &VecDeque<InFlight>, rx: &mpsc::Receiver<Batch>) -> Option<Arc<Mailbox>> {
    let head = &owed.front()?.mailbox;
    if head.backlog() < PAUSE_AT || !rx.is_empty() {
        return None;
    }
    owed.iter().all(|f| Arc::ptr_eq(&f.mailbox, head)).then(|| Arc::clone(head))
}

/// The lane's write buffer is kept between batches up to this capacity.
const KEEP_OUT: usize = 16 * 1024;

fn take(batch: Batch, out: &mut BytesMut, owed: &mut VecDeque<InFlight>) {
    out.extend_from_slice(&batch.bytes);
    owed.push_back(InFlight { mailbox: batch.mailbox, remaining: batch.n });
}

/// What a delivery holds: bytes of the read, or a reply rewritten for the client.
enum Part {
    Read(Range<usize>),
    /// An error naming turnstile's upstream user, with the client's name instead.
    Shown(Bytes),
}

type Deliveries = Vec<(Arc<Mailbox>, Part, u64, bool)>;

/// Cuts the replies in `buf` by client: one range per client per read (a client's
/// whole batch, or the part of it read so far), oldest first. Returns how many
/// bytes of `buf` it handled: all, unless the read ends inside an error line (at
/// any depth), which is held back until whole: it may name turnstile's upstream
/// user (see [`crate::authz::names`]), or be a `-READONLY`. Such an error, a reply
/// or an element of one, goes to the client as a [`Part::Shown`] between the
/// ranges before and after it. Stops at a `-READONLY` (see [`End::ReadOnly`]),
/// having cut what came before it.
fn split(
    buf: &BytesMut,
    reading: &mut Reading,
    owed: &mut VecDeque<InFlight>,
    deliveries: &mut Deliveries,
    noperm: &AtomicU64,
    follows_primary: bool,
) -> Result<usize, End> {
    let Reading { scanner, skipping } = reading;
    let (mut pos, mut start, mut done) = (0, 0, 0);
    while pos < buf.len() {
        // A RESP3 push is nobody's reply: another client can aim its tracking
        // invalidations at this connection (`CLIENT TRACKING on REDIRECT <id>`,
        // the id a HELLO on a lane shows). Dropped, so it can neither reach a
        // client nor end the lane for everyone.
        if !*skipping && scanner.at_boundary() && buf[pos] == b'>' {
            if start < pos
                && let Some(head) = owed.front()
            {
                deliveries.push((Arc::clone(&head.mailbox), Part::Read(start..pos), done, true));
                done = 0;
            }
            *skipping = true;
        }
        if *skipping {
            let (n, info) = scanner
                .scan(&buf[pos..])
                .map_err(|_| std::io::Error::other("upstream reply not understood"))?;
            pos += n;
            start = pos;
            *skipping = info.is_none();
            continue;
        }
        let Some(head) = owed.front_mut() else {
            return Err(std::io::Error::other("upstream sent bytes nobody asked for").into());
        };
        let at = pos;
        let step = scanner
            .scan_errors(&buf[pos..])
            .map_err(|_| std::io::Error::other("upstream reply not understood"))?;
        pos += step.used;
        if step.short {
            break;
        }
        if step.frame
            && follows_primary
            && scanner.last().kind == b'-'
            && scanner.last().head.bytes().starts_with(b"READONLY")
        {
            // Only a replica says it, and only before running the command.
            let began = at + step.error.unwrap_or(0);
            if start < began {
                deliveries.push((Arc::clone(&head.mailbox), Part::Read(start..began), done, true));
            }
            return Err(End::ReadOnly);
        }
        // An error naming turnstile's user: what came before it goes as it is,
        // the error itself with the client's name.
        let mut shown = None;
        if let Some(e) = step.error
            && crate::authz::names::names_internal(&buf[at + e..pos])
            && let Some(bytes) =
                crate::authz::names::rewrite_error(&buf[at + e..pos], &head.mailbox.shown_name())
        {
            let e = at + e;
            if start < e {
                // A boundary only if the error is the whole reply.
                let whole = step.frame && scanner.last().kind == b'-';
                deliveries.push((Arc::clone(&head.mailbox), Part::Read(start..e), done, whole));
                done = 0;
            }
            shown = Some(Bytes::from(bytes));
            start = pos;
        }
        if !step.frame {
            if let Some(bytes) = shown {
                deliveries.push((Arc::clone(&head.mailbox), Part::Shown(bytes), 0, false));
            }
            continue;
        }
        let info = scanner.last();
        if crate::metrics::is_noperm(info.kind, info.head.bytes()) {
            crate::metrics::inc(noperm);
        }
        done += 1;
        head.remaining -= 1;
        let last = head.remaining == 0;
        match shown {
            Some(bytes) => {
                deliveries.push((Arc::clone(&head.mailbox), Part::Shown(bytes), done, true));
                done = 0;
            }
            None if last => {
                deliveries.push((Arc::clone(&head.mailbox), Part::Read(start..pos), done, true));
                (start, done) = (pos, 0);
            }
            None => {}
        }
        if last {
            owed.pop_front();
        }
    }
    if start < pos
        && let Some(head) = owed.front()
    {
        deliveries.push((Arc::clone(&head.mailbox), Part::Read(start..pos), done, scanner.at_boundary()));
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies to two clients as the upstream sends them, and as each must see them:
    /// errors naming turnstile's users, the whole reply or nested at any depth.
    const A: [(&[u8], &[u8]); 2] = [
        (
            b"*2\r\n-NOPERM User __turnstile:x:1:acl1 has no permissions\r\n:1\r\n",
            b"*2\r\n-NOPERM User alice has no permissions\r\n:1\r\n",
        ),
        (
            b"-ERR ACL failure in script: User __turnstile:x:1:acl1 x\r\n",
            b"-ERR ACL failure in script: User alice x\r\n",
        ),
    ];
    const B: [(&[u8], &[u8]); 2] = [
        (
            b"%1\r\n$1\r\na\r\n*2\r\n-ERR __turnstile:x:1:acl2 deep\r\n-ERR plain\r\n",
            b"%1\r\n$1\r\na\r\n*2\r\n-ERR bob deep\r\n-ERR plain\r\n",
        ),
        (b"$20\r\n-ERR __turnstile:x:1\r\n", b"$20\r\n-ERR __turnstile:x:1\r\n"),
    ];

    /// What `pump` does with one read: split it and hand out the deliveries.
    fn read(buf: &mut BytesMut, reading: &mut Reading, owed: &mut VecDeque<InFlight>, got: &mut Deliveries) {
        let mut deliveries = Vec::new();
        let done = split(buf, reading, owed, &mut deliveries, &AtomicU64::new(0), false).unwrap();
        let bytes = buf.split_to(done).freeze();
        for (m, part, n, whole) in deliveries {
            let part = match part {
                Part::Read(r) => Part::Shown(bytes.slice(r)),
                shown => shown,
            };
            got.push((m, part, n, whole));
        }
    }

    #[test]
    fn nested_errors_show_the_clients_name_wherever_a_read_ends() {
        let stream: Vec<u8> = A.iter().chain(&B).flat_map(|r| r.0.iter().copied()).collect();
        for cut in 0..=stream.len() {
            let (a, b) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
            a.set_shown(Arc::from("alice"));
            b.set_shown(Arc::from("bob"));
            let mut owed: VecDeque<InFlight> = [(&a, 2), (&b, 2)]
                .into_iter()
                .map(|(m, remaining)| InFlight { mailbox: Arc::clone(m), remaining })
                .collect();
            let (mut reading, mut got, mut buf) = (Reading::default(), Vec::new(), BytesMut::new());
            for piece in [&stream[..cut], &stream[cut..]] {
                buf.extend_from_slice(piece);
                read(&mut buf, &mut reading, &mut owed, &mut got);
            }
            assert!(buf.is_empty() && owed.is_empty(), "cut {cut}");
            for (m, replies) in [(&a, &A), (&b, &B)] {
                // Each client sees its replies with its own name, and every delivery
                // counts the replies it completes and says whether it ends at one.
                let want: Vec<u8> = replies.iter().flat_map(|r| r.1.iter().copied()).collect();
                let ends: Vec<usize> = replies
                    .iter()
                    .scan(0, |at, r| {
                        *at += r.1.len();
                        Some(*at)
                    })
                    .collect();
                let mut seen = Vec::new();
                for (_, part, n, whole) in got.iter().filter(|d| Arc::ptr_eq(&d.0, m)) {
                    let Part::Shown(bytes) = part else { unreachable!() };
                    let before = seen.len();
                    seen.extend_from_slice(bytes);
                    let crossed = ends.iter().filter(|&&e| e > before && e <= seen.len()).count() as u64;
                    assert_eq!((*n, *whole), (crossed, ends.contains(&seen.len())), "cut {cut}");
                }
                assert_eq!(String::from_utf8_lossy(&seen), String::from_utf8_lossy(&want), "cut {cut}");
            }
        }
    }
}
