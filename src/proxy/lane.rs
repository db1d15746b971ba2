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

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::Upstream;
use super::io::{READ_MIN, ReadSome, UpstreamStream};
use super::mailbox::{Delivery, Mailbox, PAUSE_AT};
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
/// fails, or once every handle is gone and every reply delivered.
#[derive(Clone)]
pub struct Lane {
    tx: mpsc::Sender<Batch>,
    upstream: Arc<Upstream>,
    /// The connection speaks RESP3 (`HELLO 3`): it carries RESP3 clients only.
    resp3: bool,
}

impl Lane {
    /// False once the lane has ended (its connection failed).
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// Hands a batch to the lane; gives it back if the lane has ended (nothing of
    /// it was sent, so another lane may take it).
    pub async fn send(&self, batch: Batch) -> Result<(), Batch> {
        self.tx.send(batch).await.map_err(|e| e.0)
    }

    fn serves(&self, upstream: &Arc<Upstream>, resp3: bool) -> bool {
        self.is_open() && self.resp3 == resp3 && Arc::ptr_eq(&self.upstream, upstream)
    }
}

/// A database's lanes: `upstream.pool.shared` of them per protocol (RESP2 and
/// RESP3 replies differ, so each client uses a lane of its own protocol), opened on
/// first use, reopened when one fails or the upstream changes.
#[derive(Default)]
pub struct Lanes {
    /// RESP2 lanes, then RESP3 ones.
    slots: Mutex<[Vec<Option<Lane>>; 2]>,
    next: AtomicUsize,
    /// Held while a lane is being opened.
    opening: tokio::sync::Mutex<()>,
    /// When the last attempt to open one failed, and the reply it gave.
    failed: Mutex<Option<(Instant, &'static [u8])>>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("open", &self.open()).finish()
    }
}

impl Lanes {
    /// Lanes running now.
    pub fn open(&self) -> usize {
        self.lock().iter().flatten().flatten().filter(|l| l.is_open()).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Vec<Option<Lane>>; 2]> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, i: usize, upstream: &Arc<Upstream>, resp3: bool) -> Option<Lane> {
        let slots = self.lock();
        slots[usize::from(resp3)]
            .get(i)
            .and_then(Option::as_ref)
            .filter(|l| l.serves(upstream, resp3))
            .cloned()
    }

    /// A lane to `upstream` for a new client (spread round-robin over the lanes).
    /// On failure, the reply that tells the client why.
    /// [`replies::NOPROTO`] if the upstream does not speak RESP3 (the client then
    /// gets a connection of its own, where Redis answers its HELLO).
    pub async fn get(&self, upstream: &Arc<Upstream>, resp3: bool) -> Result<Lane, &'static [u8]> {
        let want = upstream.pool.shared.max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % want;
        if let Some(lane) = self.find(i, upstream, resp3) {
            return Ok(lane);
        }
        // One connect at a time: forty clients arriving together must not open forty
        // connections. Those that waited while an attempt failed share its failure
        // rather than each waiting out a connect timeout in turn.
        let asked = Instant::now();
        let _opening = self.opening.lock().await;
        if let Some(lane) = self.find(i, upstream, resp3) {
            return Ok(lane);
        }
        if let Some((at, reply)) = *self.failed.lock().unwrap_or_else(|p| p.into_inner())
            && at >= asked
        {
            return Err(reply);
        }
        match open(upstream, resp3).await {
            Ok(lane) => {
                let mut slots = self.lock();
                let slots = &mut slots[usize::from(resp3)];
                slots.resize_with(want, || None);
                slots[i] = Some(lane.clone());
                Ok(lane)
            }
            Err(reply) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), reply));
                Err(reply)
            }
        }
    }
}

/// Connects, logs in with the service credentials, and starts the lane's task.
async fn open(upstream: &Arc<Upstream>, resp3: bool) -> Result<Lane, &'static [u8]> {
    let stream = match upstream.connect().await {
        Ok(UpstreamStream::Tcp(s)) => s,
        Ok(UpstreamStream::Tls(_)) => return Err(replies::UPSTREAM_UNAVAILABLE),
        Err(e) => {
            tracing::warn!(error = %e, upstream = %upstream.address, "upstream unavailable");
            return Err(replies::UPSTREAM_UNAVAILABLE);
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    // The service AUTH, then HELLO 3 for a RESP3 lane, sent together.
    let auth = upstream.auth_command();
    let mut hello = BytesMut::new();
    if let Some(auth) = &auth {
        hello.extend_from_slice(auth);
    }
    if resp3 {
        hello.extend_from_slice(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    }
    if !hello.is_empty() {
        let login = async {
            writer.write_all(&hello).await?;
            first_replies(&mut reader, usize::from(auth.is_some()) + usize::from(resp3)).await
        };
        let outcome = tokio::time::timeout(upstream.connect_timeout, login).await;
        // It held the service password.
        zeroize::Zeroize::zeroize(&mut hello[..]);
        match outcome {
            Ok(Ok(kinds)) => {
                if auth.is_some() && kinds.first() != Some(&b'+') {
                    tracing::warn!(upstream = %upstream.address, "upstream refused the service credentials");
                    return Err(replies::UPSTREAM_AUTH_FAILED);
                }
                if resp3 && kinds.last() != Some(&b'%') {
                    return Err(replies::NOPROTO);
                }
            }
            _ => return Err(replies::UPSTREAM_UNAVAILABLE),
        }
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(reader, writer, rx));
    tracing::debug!(upstream = %upstream.address, "shared upstream connection opened");
    Ok(Lane { tx, upstream: Arc::clone(upstream), resp3 })
}

/// Reads `n` replies and returns the kind of each (`+OK` is `+`, an error `-`, a
/// HELLO 3 reply `%`). Nothing may follow them.
async fn first_replies(reader: &mut OwnedReadHalf, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    let mut chunk = READ_MIN;
    let mut scanner = ReplyScanner::new();
    let mut kinds = Vec::new();
    let mut pos = 0;
    loop {
        if reader.read_some(&mut buf, &mut chunk).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        while pos < buf.len() {
            if kinds.len() == n {
                return Err(std::io::Error::other("unexpected bytes after the login replies"));
            }
            let (k, info) = scanner.scan(&buf[pos..]).map_err(|_| std::io::Error::other("bad reply"))?;
            pos += k;
            if let Some(info) = info {
                kinds.push(info.kind);
            }
        }
        if kinds.len() == n {
            return Ok(kinds);
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("login replies too long"));
        }
    }
}

/// A batch written (or about to be) whose replies are still to come.
struct InFlight {
    mailbox: Arc<Mailbox>,
    remaining: u64,
}

/// The lane's task: writes batches as they come (all those waiting, in one write)
/// and hands replies out as they are read, until the connection fails or the lane
/// is no longer wanted. Reading never waits for writing and vice versa, so Redis
/// can always make progress.
async fn run(reader: OwnedReadHalf, writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Batch>) {
    let mut owed = VecDeque::new();
    let result = pump(reader, writer, &mut rx, &mut owed).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, owed = owed.len(), "shared upstream connection ended");
    }
    // Nothing more will be answered: everyone still owed a reply is told, including
    // batches queued but never taken (the channel is closed first, so none follow).
    rx.close();
    while let Ok(batch) = rx.try_recv() {
        batch.mailbox.lose(replies::UPSTREAM_LOST);
    }
    for f in owed {
        f.mailbox.lose(replies::UPSTREAM_LOST);
    }
}

async fn pump(
    mut reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Batch>,
    owed: &mut VecDeque<InFlight>,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    let mut buf = BytesMut::new();
    let mut chunk = READ_MIN;
    let mut scanner = ReplyScanner::new();
    let mut deliveries = Vec::new();
    let mut wanted = true;
    loop {
        // Everything already queued goes out in one write.
        while wanted && out.len() < WRITE_MAX {
            match rx.try_recv() {
                Ok(batch) => take(batch, &mut out, owed),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => wanted = false,
            }
        }
        if !out.is_empty() {
            match writer.try_write(&out) {
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if out.is_empty() {
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
            read = reader.read_some(&mut buf, &mut chunk), if paused.is_none() => {
                if read? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                split(&buf, &mut scanner, owed, &mut deliveries)?;
                let bytes = buf.split().freeze();
                for (mailbox, range, replies, whole) in deliveries.drain(..) {
                    mailbox.deliver(Delivery { bytes: bytes.slice(range), replies, whole });
                }
            }
            () = async { paused.as_ref().expect("guarded").room().await }, if paused.is_some() => {}
            ready = writer.writable(), if !out.is_empty() => ready?,
            batch = rx.recv(), if wanted && out.len() < WRITE_MAX => match batch {
                Some(batch) => {
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

fn take(batch: Batch, out: &mut BytesMut, owed: &mut VecDeque<InFlight>) {
    out.extend_from_slice(&batch.bytes);
    owed.push_back(InFlight { mailbox: batch.mailbox, remaining: batch.n });
}

/// Cuts the replies in `buf` by client: one range per client per read (a client's
/// whole batch, or the part of it read so far), oldest first.
fn split(
    buf: &BytesMut,
    scanner: &mut ReplyScanner,
    owed: &mut VecDeque<InFlight>,
    deliveries: &mut Vec<(Arc<Mailbox>, Range<usize>, u64, bool)>,
) -> std::io::Result<()> {
    let (mut pos, mut start, mut done) = (0, 0, 0);
    while pos < buf.len() {
        let Some(head) = owed.front_mut() else {
            return Err(std::io::Error::other("upstream sent bytes nobody asked for"));
        };
        let (n, info) =
            scanner.scan(&buf[pos..]).map_err(|_| std::io::Error::other("upstream reply not understood"))?;
        pos += n;
        if info.is_none() {
            continue;
        }
        done += 1;
        head.remaining -= 1;
        if head.remaining == 0 {
            let head = owed.pop_front().expect("checked above");
            deliveries.push((head.mailbox, start..pos, done, true));
            (start, done) = (pos, 0);
        }
    }
    if start < pos
        && let Some(head) = owed.front()
    {
        deliveries.push((Arc::clone(&head.mailbox), start..pos, done, scanner.at_boundary()));
    }
    Ok(())
}
