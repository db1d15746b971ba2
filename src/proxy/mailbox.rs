//! A client's share of a shared upstream connection: the replies a lane has read
//! for it, queued until the client's relay writes them out, with the bounds that
//! keep one slow client from holding up the others or turnstile's memory.
//!
//! The lane never waits for a client: it hands each reply over and reads on, so
//! another client's reply is never delayed by how one client reads. A client that
//! cannot take its replies is dealt with as Redis deals with one
//! (`client-output-buffer-limit`): past the hard limit, or above the soft limit for
//! longer than its seconds, it is disconnected and what was queued for it dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::kill::Kill;

/// Queued reply bytes beyond which the client is taken off the shared connection
/// for its next requests (it is not keeping up: let Redis buffer for it, as it would
/// without turnstile, on a connection of its own).
pub const BACKLOG_SOFT: usize = 256 * 1024;
/// Queued reply bytes at which a lane stops reading for a client while no one else
/// is owed a reply on it: a huge value read by one client then streams through at
/// that client's pace with this much held here (nobody else waits). As soon as
/// another client's request is on the lane, the lane reads on regardless.
pub const PAUSE_AT: usize = 1024 * 1024;
/// Deliveries queued beyond which a small one is copied out of the lane's read
/// buffer. A delivery is a slice of a whole read (up to 64 KiB, shared with the
/// other clients' replies in it): queued behind others, ten bytes would keep the
/// whole read alive while counting as ten. Copying only for a client that is this
/// far behind keeps what it holds within about twice what is counted, and costs
/// clients that keep up nothing.
const COPY_BEHIND: usize = 16;
/// Slices at least this large already count for half their read or more.
const COPY_BELOW: usize = 32 * 1024;
/// An empty queue keeps room for this many deliveries (see [`Mailbox::next`]).
const KEPT_DELIVERIES: usize = 16;
/// Requests one client may have unanswered on a shared connection; past it the
/// client waits for answers (a pipeline of 20,000 GETs goes through in steps).
pub const MAX_IN_FLIGHT: u64 = 128;

/// How much turnstile queues for one client of a shared connection, in the terms
/// of Redis's `client-output-buffer-limit <class> <hard> <soft> <soft seconds>`
/// (0 turns a limit off). See `proxy.client_output_buffer_*` in the README for the
/// defaults and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes queued beyond which the client is disconnected at once.
    pub hard: usize,
    /// Bytes queued beyond which, for longer than `soft_for`, it is disconnected.
    pub soft: usize,
    pub soft_for: Duration,
    /// Bytes queued for all clients of a database together beyond which a client
    /// that gets more while holding over [`BACKLOG_SOFT`] is disconnected (Redis's
    /// `maxmemory-clients`, which evicts the clients using most first).
    pub total: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            hard: 64 * 1024 * 1024,
            soft: 16 * 1024 * 1024,
            soft_for: Duration::from_secs(60),
            total: 1024 * 1024 * 1024,
        }
    }
}

/// What a database's clients of shared connections hold together.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Reply bytes queued for all of them (see [`OutputLimits::total`]).
    pub queued: AtomicUsize,
    /// Clients disconnected for their output limits (Redis's INFO
    /// `client_output_buffer_limit_disconnections`).
    pub disconnections: AtomicU64,
}

/// Replies read for one client: `bytes` complete `replies` of them (a partial reply
/// at the end of `bytes` is completed by the next delivery).
pub struct Delivery {
    pub bytes: Bytes,
    pub replies: u64,
    /// `bytes` ends where a reply ends (not inside one).
    pub whole: bool,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Delivery>,
    bytes: usize,
    /// Since when `bytes` has been above the soft limit.
    soft_since: Option<Instant>,
    /// Requests sent on a lane whose replies have not all arrived.
    in_flight: u64,
    /// Set when nothing more will come: what the relay should tell the client.
    lost: Option<&'static [u8]>,
    /// The relay is gone: replies are dropped as they arrive.
    closed: bool,
    /// The relay, while it waits in [`Mailbox::next`]. Kept under the same lock as
    /// the queue rather than in a `Notify`: a relay at pipeline 1 waits once per
    /// reply, and a `Notify` took a lock of its own to register, another to wake and
    /// a third to deregister (~4% of a GET's instructions).
    reader: Option<std::task::Waker>,
}

/// See the module documentation. One per client connection that used a lane,
/// shared by its client half (which sends), the lane (which delivers) and the relay
/// (which writes out).
#[derive(Default)]
pub struct Mailbox {
    inbox: Mutex<Inbox>,
    /// `Inbox::bytes`, readable without the lock (the lane looks at it on every
    /// pass, the client half at every lane request).
    queued: AtomicUsize,
    limits: OutputLimits,
    /// What is queued for all the database's clients (see [`OutputLimits::total`]).
    total: Arc<Backlog>,
    /// Ends the client's connection (both halves) when it is over its limits.
    kill: Kill,
    /// For the lane: the relay made room.
    space: Notify,
    /// For the client half: requests were answered.
    answered: Notify,
    /// For the relay: the queue went over the soft limit, so its clock runs (the
    /// relay may be in the middle of writing a delivery popped below it).
    over_soft: Notify,
    /// The client's user, shown where Redis 7.2+ names turnstile's upstream user
    /// in an error (see [`crate::authz::names`]). Changed only with nothing in
    /// flight, so every reply shows the user its request ran as.
    shown: Mutex<Arc<str>>,
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        // What it still held no longer counts towards the database's total.
        let held = self.lock().bytes;
        self.total.queued.fetch_sub(held, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("Mailbox").field("queued", &i.bytes).field("in_flight", &i.in_flight).finish()
    }
}

impl Mailbox {
    /// A mailbox bounded by `limits`, counting what it holds in `total` (shared by
    /// the database's clients); `kill` closes the client's connection.
    pub fn new(limits: OutputLimits, kill: Kill, total: Arc<Backlog>) -> Self {
        Self {
            inbox: Mutex::default(),
            queued: AtomicUsize::new(0),
            limits,
            total,
            kill,
            space: Notify::new(),
            answered: Notify::new(),
            over_soft: Notify::new(),
            shown: Mutex::new(Arc::from("default")),
        }
    }

    /// The name Redis would show for the client's user (read on an error only).
    pub fn shown_name(&self) -> Arc<str> {
        Arc::clone(&self.shown.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The client's user from its next request on; call with nothing in flight.
    pub fn set_shown(&self, name: Arc<str>) {
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }

    /// Sets what is queued, here and in the database's total.
    fn set_bytes(&self, i: &mut Inbox, bytes: usize) {
        if bytes >= i.bytes {
            self.total.queued.fetch_add(bytes - i.bytes, Ordering::Relaxed);
        } else {
            self.total.queued.fetch_sub(i.bytes - bytes, Ordering::Relaxed);
        }
        i.bytes = bytes;
        self.queued.store(bytes, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `n` requests as sent, once fewer than [`MAX_IN_FLIGHT`] are unanswered
    /// (a client that pipelines without end waits for answers, in steps). False if
    /// the mailbox is lost: nothing more may be sent.
    pub async fn send(&self, n: u64) -> bool {
        loop {
            {
                let mut i = self.lock();
                if i.lost.is_some() {
                    return false;
                }
                if i.in_flight < MAX_IN_FLIGHT {
                    i.in_flight += n;
                    return true;
                }
            }
            self.answered.notified().await;
        }
    }

    #[cfg(test)]
    fn sent(&self, n: u64) {
        self.lock().in_flight += n;
    }

    /// Reply bytes queued and not yet written to the client.
    pub fn backlog(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// True once the client was disconnected for its output limits.
    pub fn is_cut(&self) -> bool {
        self.kill.is_killed()
    }

    /// True once nothing more will be delivered.
    #[cfg(test)]
    fn is_lost(&self) -> bool {
        self.lock().lost.is_some()
    }

    /// Waits until fewer than `limit` requests are unanswered (or the mailbox is
    /// lost, which answers everything).
    pub async fn wait_in_flight_below(&self, limit: u64) {
        loop {
            if self.lock().in_flight < limit {
                return;
            }
            // notify_one keeps a permit if nobody waits yet: no wake-up is missed
            // between the check and the wait (there is one waiter, the client half).
            self.answered.notified().await;
        }
    }

    /// The relay's next delivery, and when the client will be over its soft limit
    /// for too long if it is above it now (see [`Self::enforce_soft_limit`]; read
    /// under the same lock). `Err` once the mailbox is lost and drained, with what to
    /// tell the client.
    pub fn next(&self) -> impl Future<Output = Result<(Delivery, Option<Instant>), &'static [u8]>> + '_ {
        std::future::poll_fn(move |cx| {
            let mut i = self.lock();
            if let Some(d) = i.queue.pop_front() {
                let left = i.bytes - d.bytes.len();
                self.set_bytes(&mut i, left);
                if i.bytes <= self.limits.soft {
                    i.soft_since = None;
                }
                if i.queue.is_empty() && i.queue.capacity() > KEPT_DELIVERIES {
                    // A client that once fell behind does not keep the room it
                    // needed then. A few slots stay: at pipeline 1 the queue
                    // empties at every reply, and making it again was an
                    // allocation and a free per request. A parked client holds
                    // no queue at all (its mailbox goes when it parks); one that
                    // cannot park (over TLS) keeps these few slots.
                    i.queue = VecDeque::new();
                }
                let soft_deadline = i.soft_since.map(|t| t + self.limits.soft_for);
                drop(i);
                self.space.notify_one();
                return Poll::Ready(Ok((d, soft_deadline)));
            }
            if let Some(reason) = i.lost {
                return Poll::Ready(Err(reason));
            }
            // Whoever queues or loses next takes this under the lock and wakes it.
            if !i.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                i.reader = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// For the lane: resolves once the relay has taken something (or the client is
    /// gone). A permit is kept if it happened before the wait began.
    pub async fn room(&self) {
        self.space.notified().await;
    }

    /// The relay is gone: the lane drops what it still reads for this client.
    pub fn close(&self) {
        let mut i = self.lock();
        i.closed = true;
        i.queue = VecDeque::new();
        // Nothing will wake it now: a finished connection's task is not kept alive
        // by its waker until the lane drops the mailbox.
        i.reader = None;
        self.set_bytes(&mut i, 0);
        drop(i);
        self.space.notify_one();
    }

    /// Nothing more will come (the lane's connection failed): the relay tells the
    /// client `reason` once the queue is drained, and the client half stops waiting
    /// for answers.
    pub fn lose(&self, reason: &'static [u8]) {
        let mut i = self.lock();
        i.lost.get_or_insert(reason);
        i.in_flight = 0;
        unlock_and_wake_reader(i);
        self.answered.notify_one();
        self.space.notify_one();
    }

    /// `n` requests sent on a lane will not be answered, yet the client stays (a
    /// Sentinel-managed database's lane ended in a failover): each gets `reason`
    /// in its place, and the client goes on on another lane.
    pub fn fail(&self, n: u64, reason: &'static [u8]) {
        if n == 0 {
            return;
        }
        let bytes = Bytes::from(reason.repeat(n as usize));
        self.deliver(Delivery { bytes, replies: n, whole: true });
    }

    /// Queues replies for the relay, never waiting: the lane goes on reading for
    /// everyone else. A client this puts over its limits is disconnected, as Redis
    /// disconnects a client over its output buffer limits: at once, without a word,
    /// its queued replies dropped. False then.
    pub fn deliver(&self, d: Delivery) -> bool {
        self.deliver_at(d, Instant::now)
    }

    /// [`Self::deliver`] with the clock passed in (read only above the soft limit).
    fn deliver_at(&self, d: Delivery, now: impl FnOnce() -> Instant) -> bool {
        let mut i = self.lock();
        i.in_flight = i.in_flight.saturating_sub(d.replies);
        if i.closed || i.lost.is_some() {
            return true;
        }
        let mut d = d;
        if i.queue.len() >= COPY_BEHIND && d.bytes.len() < COPY_BELOW {
            d.bytes = Bytes::copy_from_slice(&d.bytes);
        }
        let queued = i.bytes + d.bytes.len();
        self.set_bytes(&mut i, queued);
        i.queue.push_back(d);
        if let Some(limit) = self.over_limit(&mut i, now) {
            drop(i);
            self.cut(limit);
            return false;
        }
        unlock_and_wake_reader(i);
        self.answered.notify_one();
        true
    }

    /// Disconnects the client for going over `limit`, dropping what is queued.
    fn cut(&self, limit: &str) {
        let mut i = self.lock();
        if i.closed {
            // The relay closed the mailbox (it parked, or the connection ended)
            // after the limit was found exceeded: what was queued has been taken,
            // so nothing is over the limit any more.
            return;
        }
        tracing::info!(
            queued = i.bytes,
            limit,
            "client closed for overcoming its output buffer limit on a shared upstream connection"
        );
        self.total.disconnections.fetch_add(1, Ordering::Relaxed);
        i.closed = true;
        i.lost.get_or_insert(b"");
        i.in_flight = 0;
        i.queue = VecDeque::new();
        self.set_bytes(&mut i, 0);
        // The relay, woken first, finds the mailbox lost; the kill ends the
        // connection either way.
        unlock_and_wake_reader(i);
        self.kill.kill();
        self.answered.notify_one();
        self.space.notify_one();
    }

    /// When the client will have been over its soft limit for too long, if it is
    /// over it now.
    pub fn soft_deadline(&self) -> Option<Instant> {
        // Without the lock while below it (every reply of turnstile's own asks).
        if self.limits.soft == 0 || self.backlog() <= self.limits.soft {
            return None;
        }
        Some(self.lock().soft_since? + self.limits.soft_for)
    }

    /// Resolves once the queue has gone over the soft limit since the last call
    /// (a permit is kept if nobody waited: check [`Self::soft_deadline`] after).
    pub async fn went_over_soft(&self) {
        self.over_soft.notified().await;
    }

    /// For the relay, at the soft deadline: disconnects the client if it is still
    /// above its soft limit (the kill ends the relay too); else the next deadline.
    pub fn enforce_soft_limit(&self) -> Option<Instant> {
        let over = self.over_limit(&mut self.lock(), Instant::now);
        match over {
            Some(limit) => {
                self.cut(limit);
                None
            }
            None => self.lock().soft_since.map(|t| t + self.limits.soft_for),
        }
    }

    /// Which limit the queue is over, if any (Redis's `checkClientOutputBufferLimits`:
    /// the soft one counts once it has been exceeded for more than its seconds).
    fn over_limit(&self, i: &mut Inbox, now: impl FnOnce() -> Instant) -> Option<&'static str> {
        let l = &self.limits;
        if l.hard > 0 && i.bytes > l.hard {
            return Some("hard");
        }
        if l.total > 0 && i.bytes > BACKLOG_SOFT && self.total.queued.load(Ordering::Relaxed) > l.total {
            return Some("total");
        }
        if l.soft == 0 || i.bytes <= l.soft {
            i.soft_since = None;
            return None;
        }
        let now = now();
        match i.soft_since {
            None => {
                i.soft_since = Some(now);
                // The relay may be stuck writing to a client that reads nothing,
                // with no deadline: it must start the clock's watch now, whether
                // or not more replies arrive.
                self.over_soft.notify_one();
                None
            }
            Some(since) => (now.duration_since(since) > l.soft_for).then_some("soft"),
        }
    }
}

/// Releases the inbox's lock, then wakes the relay if it waits in
/// [`Mailbox::next`]: its waker is taken under the lock (so a delivery costs one
/// lock), and woken outside it (waking may run arbitrary code).
fn unlock_and_wake_reader(mut i: std::sync::MutexGuard<'_, Inbox>) {
    let reader = i.reader.take();
    drop(i);
    if let Some(w) = reader {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bytes: &'static [u8], replies: u64) -> Delivery {
        Delivery { bytes: Bytes::from_static(bytes), replies, whole: true }
    }

    fn big(n: usize) -> Delivery {
        Delivery { bytes: Bytes::from(vec![b'x'; n]), replies: 1, whole: true }
    }

    /// The relay waits in `next` with its waker under the queue's lock: a delivery,
    /// a loss and a cut, each from another thread, wake it, and it then finds what
    /// woke it.
    #[test]
    fn a_waiting_relay_is_woken_by_a_delivery_a_loss_and_a_cut() {
        use crate::proxy::waiter::counting::{counting, woken};
        use std::task::Context;
        let waits = |m: &Mailbox, change: &(dyn Fn(&Mailbox) + Sync)| {
            let (count, waker) = counting();
            let mut cx = Context::from_waker(&waker);
            let mut next = std::pin::pin!(m.next());
            assert!(next.as_mut().poll(&mut cx).is_pending(), "nothing queued yet");
            std::thread::scope(|s| s.spawn(|| change(m)).join().unwrap());
            assert_eq!(woken(&count), 1, "woken once");
            match next.as_mut().poll(&mut cx) {
                Poll::Ready(r) => r.map(|(d, _)| d.bytes),
                Poll::Pending => panic!("woken with nothing to take"),
            }
        };
        let m = Mailbox::default();
        let got = waits(&m, &|m| assert!(m.deliver(d(b"+x\r\n", 1))));
        assert_eq!(&got.unwrap()[..], b"+x\r\n");
        let got = waits(&m, &|m| m.lose(b"-ERR gone\r\n"));
        assert_eq!(got.err(), Some(&b"-ERR gone\r\n"[..]));
        let limits = OutputLimits { hard: 8, ..OutputLimits::default() };
        let m = Mailbox::new(limits, Kill::new(), Arc::default());
        let got = waits(&m, &|m| assert!(!m.deliver(big(16)), "over the hard limit: cut"));
        assert_eq!(got.err(), Some(&b""[..]));
    }

    #[tokio::test]
    async fn delivers_in_order_and_counts_answers() {
        let m = Mailbox::default();
        m.sent(3);
        assert!(m.deliver(d(b"+a\r\n+b", 1)));
        assert!(m.deliver(d(b"\r\n+c\r\n", 2)));
        m.wait_in_flight_below(1).await;
        assert_eq!(m.backlog(), 12);
        assert_eq!(&m.next().await.ok().unwrap().0.bytes[..], b"+a\r\n+b");
        assert_eq!(m.next().await.ok().unwrap().0.replies, 2);
        assert_eq!(m.backlog(), 0);
        m.lose(b"-ERR gone\r\n");
        assert_eq!(m.next().await.err(), Some(&b"-ERR gone\r\n"[..]));
    }

    /// Emptied at every reply (pipeline 1), the queue keeps its few slots; emptied
    /// after falling far behind, it gives the room back.
    #[tokio::test]
    async fn an_empty_queue_keeps_only_a_little_room() {
        let m = Mailbox::default();
        m.sent(1);
        assert!(m.deliver(d(b"+a\r\n", 1)));
        m.next().await.ok().unwrap();
        let kept = m.lock().queue.capacity();
        assert!((1..=KEPT_DELIVERIES).contains(&kept), "kept {kept}");
        m.sent(100);
        for _ in 0..100 {
            assert!(m.deliver(d(b"+a\r\n", 1)));
        }
        for _ in 0..100 {
            m.next().await.ok().unwrap();
        }
        assert_eq!(m.lock().queue.capacity(), 0, "room for a hundred deliveries is not kept");
    }

    #[tokio::test]
    async fn past_the_hard_limit_the_client_is_disconnected_and_its_replies_dropped() {
        let kill = Kill::new();
        let limits = OutputLimits { hard: 1000, soft: 0, soft_for: Duration::ZERO, total: 0 };
        let m = Mailbox::new(limits, kill.clone(), Arc::default());
        m.sent(3);
        assert!(m.deliver(big(1000)), "at the limit is not over it");
        assert!(!kill.is_killed());
        assert!(!m.deliver(big(1)), "one byte over");
        assert!(kill.is_killed(), "the connection is closed");
        assert!(m.is_lost());
        assert_eq!(m.backlog(), 0, "its replies are dropped, not kept");
        m.wait_in_flight_below(1).await;
        // Later replies are dropped as they arrive, and nothing is written.
        assert!(m.deliver(big(5000)));
        assert_eq!(m.backlog(), 0);
        assert_eq!(m.next().await.err(), Some(&b""[..]));
    }

    #[tokio::test]
    async fn above_the_soft_limit_for_too_long_the_client_is_disconnected() {
        let kill = Kill::new();
        let limits = OutputLimits { hard: 0, soft: 100, soft_for: Duration::from_secs(60), total: 0 };
        let m = Mailbox::new(limits, kill.clone(), Arc::default());
        m.sent(10);
        let t0 = Instant::now();
        let at = |s: u64| move || t0 + Duration::from_secs(s);
        assert!(m.deliver_at(big(150), at(0)), "over the soft limit: the clock starts");
        assert!(m.deliver_at(big(10), at(60)), "not for longer than 60 s yet");
        // Drained below it: the clock starts again.
        m.next().await.ok().unwrap();
        m.next().await.ok().unwrap();
        assert!(m.deliver_at(big(150), at(100)), "over again, but the clock was reset");
        assert!(m.deliver_at(big(1), at(160)), "60 s is not more than 60 s");
        assert!(!kill.is_killed());
        assert!(!m.deliver_at(big(1), at(161)), "over for longer than the soft seconds");
        assert!(kill.is_killed());
    }

    #[tokio::test]
    async fn the_soft_limit_holds_without_further_replies() {
        let kill = Kill::new();
        let limits = OutputLimits { hard: 0, soft: 100, soft_for: Duration::from_secs(60), total: 0 };
        let m = Mailbox::new(limits, kill.clone(), Arc::default());
        m.sent(1);
        let Some(past) = Instant::now().checked_sub(Duration::from_secs(61)) else { return };
        assert_eq!(m.soft_deadline(), None, "below the soft limit: no deadline");
        assert!(m.deliver_at(big(150), || past));
        assert_eq!(m.soft_deadline(), Some(past + Duration::from_secs(60)));
        // What the relay does at the deadline, with nothing more delivered.
        assert_eq!(m.enforce_soft_limit(), None);
        assert!(kill.is_killed());
    }

    #[tokio::test]
    async fn a_client_far_behind_holds_copies_not_whole_reads() {
        let m = Mailbox::default();
        m.sent(100);
        let read = Bytes::from(vec![b'r'; 64 * 1024]);
        for _ in 0..COPY_BEHIND + 4 {
            assert!(m.deliver(Delivery { bytes: read.slice(0..10), replies: 1, whole: true }));
        }
        let i = m.lock();
        let sharing = |d: &Delivery| d.bytes.as_ptr() == read.as_ptr();
        assert!(i.queue.iter().take(COPY_BEHIND).all(sharing), "a client keeping up gets slices");
        assert!(!i.queue.iter().skip(COPY_BEHIND).any(sharing), "one far behind gets copies");
    }

    #[tokio::test]
    async fn over_the_database_total_the_clients_holding_much_are_disconnected() {
        let total = Arc::new(Backlog::default());
        let limits = OutputLimits { hard: 0, soft: 0, soft_for: Duration::ZERO, total: 2 * BACKLOG_SOFT };
        let (ka, kb) = (Kill::new(), Kill::new());
        let a = Mailbox::new(limits, ka.clone(), Arc::clone(&total));
        let b = Mailbox::new(limits, kb.clone(), Arc::clone(&total));
        a.sent(10);
        b.sent(10);
        assert!(a.deliver(big(2 * BACKLOG_SOFT)), "at the total is not over it");
        assert!(b.deliver(big(100)), "over the total, but b holds little");
        assert!(b.deliver(big(1000)));
        assert_eq!(total.queued.load(Ordering::Relaxed), 2 * BACKLOG_SOFT + 1100);
        assert!(!a.deliver(big(1)), "a holds much: cut");
        assert!(ka.is_killed() && !kb.is_killed());
        assert_eq!(total.queued.load(Ordering::Relaxed), 1100, "a's bytes are given back");
        assert_eq!(total.disconnections.load(Ordering::Relaxed), 1, "a's cut is counted");
        b.next().await.ok().unwrap();
        drop(b);
        assert_eq!(total.queued.load(Ordering::Relaxed), 0, "and b's when it goes");
    }

    #[tokio::test]
    async fn a_closed_mailbox_swallows_deliveries() {
        let m = Mailbox::default();
        m.close();
        assert!(m.deliver(big(OutputLimits::default().hard * 2)));
        assert_eq!(m.backlog(), 0);
    }
}
