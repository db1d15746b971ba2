//! The ordered plan of what the client is owed, shared by a connection's two halves.
//!
//! The client half appends one entry per request, in request order: "n replies from
//! the upstream", "this reply of ours", "swallow the upstream's answer to our own
//! AUTH"… The relay half consumes entries in order while it passes the upstream's
//! replies through, so a reply turnstile makes itself lands exactly between the
//! upstream replies it belongs between, even deep inside a pipeline.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::Notify;

use super::io::UpstreamRead;
use super::mailbox::Mailbox;
use crate::resp::command::SubKind;

/// What an upstream reply means for the relay's view of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Plain,
    /// (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE: the replies are confirmations.
    Pubsub,
    /// HELLO: the reply tells which protocol the connection now speaks.
    Hello,
    /// MONITOR: after its `+OK`, monitor lines flow out of band.
    Monitor,
    /// A blocking command (BLPOP…): if a failover retires the node meanwhile, the
    /// client is told `-UNBLOCKED`, as Redis tells it.
    Blocking,
}

pub enum Entry {
    /// This many replies from the upstream. `silent`: the client turned replies off
    /// (`CLIENT REPLY OFF|SKIP`), so they are counted but not passed on.
    Replies { n: u64, tag: Tag, silent: bool },
    /// UNSUBSCRIBE without arguments: one confirmation per current subscription of
    /// that kind (at least one), known only when the relay gets there.
    UnsubscribeAll { kind: SubKind, silent: bool },
    /// One reply from the upstream, passed on with `user=<from>` shown as
    /// `user=<to>` (`CLIENT INFO`: turnstile's upstream user name is never shown).
    Rewrite { from: Arc<str>, to: Arc<str>, silent: bool },
    /// Everything up to and including the upstream's `+RESET`.
    AwaitReset,
    /// The upstream's `+OK` to the service AUTH turnstile sent: not the client's.
    Swallow,
    /// A reply turnstile makes itself.
    Local(Bytes),
    /// The upstream connection was opened: read replies from here on.
    Attach(UpstreamRead),
    /// From here on the client's user is this one (AUTH, RESET): the name shown
    /// where Redis 7.2+ names turnstile's upstream user in an error.
    Shown(Arc<str>),
    /// The connection about to be attached goes to a Sentinel-managed node: when
    /// this token fires the node is no longer primary and the client is closed.
    Node(tokio_util::sync::CancellationToken),
    /// Where replies from shared upstream connections arrive for this client.
    Mailbox(Arc<Mailbox>),
    /// This many replies from the client's mailbox (requests sent on a lane).
    Shared { n: u64 },
    /// Everything before this is delivered: the connection parks (see
    /// [`super::park`]) once the relay gets here.
    Park,
    /// Flush and close the client connection.
    Close,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Replies { n, tag, silent } => write!(f, "Replies({n}, {tag:?}, silent: {silent})"),
            Self::UnsubscribeAll { kind, silent } => write!(f, "UnsubscribeAll({kind:?}, silent: {silent})"),
            Self::Rewrite { silent, .. } => write!(f, "Rewrite(silent: {silent})"),
            Self::AwaitReset => f.write_str("AwaitReset"),
            Self::Swallow => f.write_str("Swallow"),
            Self::Local(b) => write!(f, "Local({} bytes)", b.len()),
            Self::Attach(_) => f.write_str("Attach"),
            Self::Shown(name) => write!(f, "Shown({name})"),
            Self::Node(_) => f.write_str("Node"),
            Self::Mailbox(_) => f.write_str("Mailbox"),
            Self::Shared { n } => write!(f, "Shared({n})"),
            Self::Park => f.write_str("Park"),
            Self::Close => f.write_str("Close"),
        }
    }
}

/// Entries beyond this make the client half wait for the relay: a client that
/// pipelines endlessly without reading cannot grow turnstile's memory without bound.
const MAX_ENTRIES: usize = 4096;
/// An empty queue keeps room for this many entries between requests (see [`Plan::pop`]).
const KEPT_ENTRIES: usize = 16;

/// Only the client half pushes, and only while the connection's task polls it;
/// `session::active` polls the relay right after the client half at every wake-up,
/// so the relay sees a push in the same poll and a push wakes no one (a wake-up
/// of the connection's own task would poll both halves once more, a third of the
/// polls per request at pipeline 1).
#[derive(Default)]
pub struct Plan {
    queue: Mutex<VecDeque<Entry>>,
    /// Something was pushed since the relay last looked (see [`Self::pushed`]).
    fresh: AtomicBool,
    space: Notify,
}

impl Plan {
    /// Appends an entry, merging runs of plain replies so a deep pipeline of
    /// forwarded commands costs one entry.
    pub fn push(&self, entry: Entry) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            match (q.back_mut(), entry) {
                (
                    Some(Entry::Replies { n, tag: Tag::Plain, silent }),
                    Entry::Replies { n: more, tag: Tag::Plain, silent: s },
                ) if *silent == s => *n += more,
                (Some(Entry::Shared { n }), Entry::Shared { n: more }) => *n += more,
                (_, Entry::Shared { n: 0 }) => {}
                (_, Entry::Replies { n: 0, .. }) => {}
                (_, e) => q.push_back(e),
            }
        }
        self.fresh.store(true, Ordering::Release);
    }

    /// Takes the first entry, if any.
    pub fn pop(&self) -> Option<Entry> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // Only a full plan has a client half waiting for room (a notification
        // takes a lock: not one per request for nothing).
        let full = q.len() >= MAX_ENTRIES;
        let e = q.pop_front();
        // A parked connection holds no queue (160 bytes each), nor does one that
        // once queued many entries. A connection between requests keeps its few
        // slots (so does one that never parks, over TLS): at pipeline 1 the queue
        // empties at every reply, and making it again was an allocation and a free
        // per request.
        if q.is_empty() && (matches!(e, Some(Entry::Park)) || q.capacity() > KEPT_ENTRIES) {
            *q = VecDeque::new();
        }
        drop(q);
        if e.is_some() && full {
            self.space.notify_one();
        }
        e
    }

    /// True if the next entry that owes the client bytes is a reply from a shared
    /// upstream connection (past the bookkeeping entries that owe none).
    pub fn next_owed_is_shared(&self) -> bool {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for e in q.iter() {
            match e {
                Entry::Mailbox(_) | Entry::Shown(_) => continue,
                Entry::Shared { n } => return *n > 0,
                _ => return false,
            }
        }
        false
    }

    /// True if the plan holds anything the client is still owed.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Resolves when entries were pushed since it last resolved. Registers no
    /// waker: see the type's documentation for why none is needed.
    pub fn pushed(&self) -> Pushed<'_> {
        Pushed(self)
    }

    /// Waits while the plan is full.
    pub async fn wait_for_space(&self) {
        loop {
            let notified = self.space.notified();
            if self.queue.lock().unwrap_or_else(|p| p.into_inner()).len() < MAX_ENTRIES {
                return;
            }
            notified.await;
        }
    }
}

/// See [`Plan::pushed`].
pub struct Pushed<'a>(&'a Plan);

impl Future for Pushed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.fresh.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(p: &Plan) -> usize {
        p.queue.lock().unwrap().capacity()
    }

    /// Between requests the queue keeps its few slots (no allocation per request);
    /// parking, or emptying a queue that once grew, gives the room back.
    #[test]
    fn an_empty_queue_keeps_a_little_room_until_the_connection_parks() {
        let p = Plan::default();
        p.push(Entry::Shared { n: 1 });
        assert!(p.pop().is_some());
        let kept = capacity(&p);
        assert!(kept > 0, "emptied between requests: the room is kept");
        p.push(Entry::Shared { n: 1 });
        assert!(p.pop().is_some());
        assert_eq!(capacity(&p), kept, "the next request reuses it");
        p.push(Entry::Park);
        assert!(matches!(p.pop(), Some(Entry::Park)));
        assert_eq!(capacity(&p), 0, "a parked connection holds no queue");
        for i in 0..100 {
            p.push(Entry::Local(Bytes::from(format!("+{i}\r\n"))));
        }
        while p.pop().is_some() {}
        assert_eq!(capacity(&p), 0, "room for a hundred entries is not kept");
    }

    #[test]
    fn plain_replies_merge_and_zero_vanishes() {
        let p = Plan::default();
        p.push(Entry::Replies { n: 1, tag: Tag::Plain, silent: false });
        p.push(Entry::Replies { n: 2, tag: Tag::Plain, silent: false });
        p.push(Entry::Replies { n: 0, tag: Tag::Pubsub, silent: false });
        p.push(Entry::Replies { n: 1, tag: Tag::Plain, silent: true });
        p.push(Entry::Local(Bytes::from_static(b"+OK\r\n")));
        p.push(Entry::Replies { n: 1, tag: Tag::Plain, silent: false });
        assert!(matches!(p.pop(), Some(Entry::Replies { n: 3, tag: Tag::Plain, silent: false })));
        assert!(matches!(p.pop(), Some(Entry::Replies { n: 1, silent: true, .. })));
        assert!(matches!(p.pop(), Some(Entry::Local(_))));
        assert!(matches!(p.pop(), Some(Entry::Replies { n: 1, .. })));
        assert!(p.pop().is_none());
    }

    #[test]
    fn the_next_owed_entry_is_found_past_bookkeeping() {
        let p = Plan::default();
        assert!(!p.next_owed_is_shared());
        p.push(Entry::Shown(Arc::from("alice")));
        p.push(Entry::Shared { n: 1 });
        assert!(p.next_owed_is_shared());
        let q = Plan::default();
        q.push(Entry::Local(Bytes::from_static(b"+OK\r\n")));
        q.push(Entry::Shared { n: 1 });
        assert!(!q.next_owed_is_shared());
    }
}
