//! A client's share of a shared upstream connection: the replies a lane has read
//! for it, queued until the client's relay writes them out, with the bounds that
//! keep one slow client from holding up the others or turnstile's memory.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// Queued reply bytes beyond which the client is taken off the shared connection
/// for its next requests (it is not keeping up: let Redis buffer for it, as it would
/// without turnstile, on a connection of its own).
pub const BACKLOG_SOFT: usize = 256 * 1024;
/// Queued reply bytes beyond which the lane waits for the client to make room
/// before passing it more (a huge value is streamed through in steps of this).
const BACKLOG_HARD: usize = 16 * 1024 * 1024;
/// A lane waits this long for a client that makes no room at all; then the client
/// is cut off, so that it cannot stall everyone else on the connection.
pub const STALL: Duration = Duration::from_secs(5);
/// Requests one client may have unanswered on a shared connection; past it the
/// client waits for answers (a pipeline of 20,000 GETs goes through in steps).
pub const MAX_IN_FLIGHT: u64 = 128;

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
    /// Requests sent on a lane whose replies have not all arrived.
    in_flight: u64,
    /// Set when nothing more will come: what the relay should tell the client.
    lost: Option<&'static [u8]>,
    /// The relay is gone: replies are dropped as they arrive.
    closed: bool,
}

/// See the module documentation. One per client connection that used a lane,
/// shared by its client half (which sends), the lane (which delivers) and the relay
/// (which writes out).
#[derive(Default)]
pub struct Mailbox {
    inbox: Mutex<Inbox>,
    /// For the relay: something was delivered (or lost).
    ready: Notify,
    /// For the lane: the relay made room.
    space: Notify,
    /// For the client half: requests were answered.
    answered: Notify,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("Mailbox").field("queued", &i.bytes).field("in_flight", &i.in_flight).finish()
    }
}

impl Mailbox {
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
        self.lock().bytes
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

    /// The relay's next delivery; None once the mailbox is lost and drained, with
    /// what to tell the client.
    pub async fn next(&self) -> Result<Delivery, &'static [u8]> {
        loop {
            {
                let mut i = self.lock();
                if let Some(d) = i.queue.pop_front() {
                    i.bytes -= d.bytes.len();
                    if i.queue.is_empty() {
                        // An idle client holds no queue (measured: ~190 bytes each).
                        i.queue = VecDeque::new();
                    }
                    drop(i);
                    self.space.notify_one();
                    return Ok(d);
                }
                if let Some(reason) = i.lost {
                    return Err(reason);
                }
            }
            self.ready.notified().await;
        }
    }

    /// The relay is gone: the lane drops what it still reads for this client.
    pub fn close(&self) {
        let mut i = self.lock();
        i.closed = true;
        i.queue.clear();
        i.bytes = 0;
        drop(i);
        self.space.notify_one();
    }

    /// Nothing more will come (the lane's connection failed, or the client was cut
    /// off): the relay tells the client `reason` once the queue is drained, and the
    /// client half stops waiting for answers.
    pub fn lose(&self, reason: &'static [u8]) {
        let mut i = self.lock();
        i.lost.get_or_insert(reason);
        i.in_flight = 0;
        drop(i);
        self.ready.notify_one();
        self.answered.notify_one();
        self.space.notify_one();
    }

    /// Queues replies for the relay. Waits while the client has a large backlog;
    /// false if it made no room for `stall` (see [`STALL`]) and was cut off.
    pub async fn deliver(&self, d: Delivery, cut: &'static [u8], stall: Duration) -> bool {
        loop {
            {
                let mut i = self.lock();
                if i.closed || i.lost.is_some() {
                    i.in_flight = i.in_flight.saturating_sub(d.replies);
                    return true;
                }
                if i.bytes < BACKLOG_HARD || i.queue.is_empty() {
                    i.in_flight = i.in_flight.saturating_sub(d.replies);
                    i.bytes += d.bytes.len();
                    i.queue.push_back(d);
                    drop(i);
                    self.ready.notify_one();
                    self.answered.notify_one();
                    return true;
                }
            }
            if tokio::time::timeout(stall, self.space.notified()).await.is_err() {
                tracing::info!("client cut off: it read none of its replies for {stall:?}");
                self.lose(cut);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bytes: &'static [u8], replies: u64) -> Delivery {
        Delivery { bytes: Bytes::from_static(bytes), replies, whole: true }
    }

    #[tokio::test]
    async fn delivers_in_order_and_counts_answers() {
        let m = Mailbox::default();
        m.sent(3);
        assert!(m.deliver(d(b"+a\r\n+b", 1), b"", STALL).await);
        assert!(m.deliver(d(b"\r\n+c\r\n", 2), b"", STALL).await);
        m.wait_in_flight_below(1).await;
        assert_eq!(m.backlog(), 12);
        assert_eq!(&m.next().await.ok().unwrap().bytes[..], b"+a\r\n+b");
        assert_eq!(m.next().await.ok().unwrap().replies, 2);
        assert_eq!(m.backlog(), 0);
        m.lose(b"-ERR gone\r\n");
        assert_eq!(m.next().await.err(), Some(&b"-ERR gone\r\n"[..]));
    }

    #[tokio::test]
    async fn a_client_that_makes_no_room_is_cut_off() {
        let m = Mailbox::default();
        m.sent(2);
        let big = Bytes::from(vec![b'x'; BACKLOG_HARD]);
        assert!(
            m.deliver(
                Delivery { bytes: big.clone(), replies: 1, whole: true },
                b"-cut\r\n",
                Duration::from_millis(50)
            )
            .await
        );
        // Full: the next delivery waits STALL (paused clock), then gives up on the client.
        assert!(
            !m.deliver(
                Delivery { bytes: big, replies: 1, whole: true },
                b"-cut\r\n",
                Duration::from_millis(50)
            )
            .await
        );
        assert!(m.is_lost());
        m.wait_in_flight_below(1).await;
        assert_eq!(m.next().await.ok().unwrap().bytes.len(), BACKLOG_HARD);
        assert_eq!(m.next().await.err(), Some(&b"-cut\r\n"[..]));
    }

    #[tokio::test]
    async fn a_closed_mailbox_swallows_deliveries() {
        let m = Mailbox::default();
        m.close();
        assert!(
            m.deliver(
                Delivery { bytes: Bytes::from(vec![0; BACKLOG_HARD * 2]), replies: 1, whole: true },
                b"",
                STALL
            )
            .await
        );
        assert_eq!(m.backlog(), 0);
    }
}
