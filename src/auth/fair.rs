//! Evaluation slots handed out round-robin across source addresses.
//!
//! Why not one first-come queue (a semaphore): a burst of attempts from one address
//! would then stand in front of every other address's logins, and a legitimate
//! first `AUTH` would wait for the whole burst (600 queued guesses: 13 s). Here each
//! address that has attempts waiting gets one queue, and a freed slot goes to the
//! next address in turn: one address's burst waits behind itself, and a login from
//! an address with nothing queued waits about one evaluation per other waiting
//! address. Attempts without an address (admin logins, password changes) share one
//! queue of their own.
//!
//! Memory: one small entry per waiting attempt. A connection has at most one AUTH in
//! progress, so an address's queue is bounded by its connections (the per-address
//! bound on unauthenticated connections, plus the database's `max_connections`);
//! a waiter whose future is dropped (its client went away) leaves its queue at once.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// At most `concurrency` slots held at once; see the module documentation.
#[derive(Debug)]
pub struct FairSlots {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Slots nobody holds. Invariant: when it is above zero, nobody waits (a freed
    /// slot goes to a waiter before it counts as free).
    free: usize,
    next_id: u64,
    /// Waiters per address, oldest first. Only non-empty queues are kept.
    queues: HashMap<Option<IpAddr>, VecDeque<Waiter>>,
    /// The addresses with a queue, each once, in the order their turns come.
    ring: VecDeque<Option<IpAddr>>,
    /// Waiters in all queues (for the gauge).
    waiting: usize,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tx: oneshot::Sender<Slot>,
}

/// One held slot; dropping it hands the slot to the next address's oldest waiter.
#[derive(Debug)]
pub struct Slot {
    /// None once the slot has been handed on by other means (a failed hand-over).
    shared: Option<Arc<Shared>>,
}

impl FairSlots {
    pub fn new(concurrency: usize) -> Self {
        let state = State {
            free: concurrency.max(1),
            next_id: 0,
            queues: HashMap::new(),
            ring: VecDeque::new(),
            waiting: 0,
        };
        Self { shared: Arc::new(Shared { state: Mutex::new(state) }) }
    }

    /// Waits for a slot in `from`'s turn. Dropping the future leaves the queue.
    pub async fn acquire(&self, from: Option<IpAddr>) -> Slot {
        loop {
            if let Some(slot) = self.try_acquire(from).await {
                return slot;
            }
        }
    }

    /// One wait in the queue: `None` only if the waiter's sender went without a slot,
    /// which the hand-over never does (the caller queues again rather than panic).
    async fn try_acquire(&self, from: Option<IpAddr>) -> Option<Slot> {
        let mut waiting = {
            let mut s = self.shared.lock();
            if s.free > 0 {
                s.free -= 1;
                return Some(Slot { shared: Some(Arc::clone(&self.shared)) });
            }
            let id = s.next_id;
            s.next_id += 1;
            let (tx, rx) = oneshot::channel();
            let waiter = Waiter { id, tx };
            // Split borrow: the queue entry and the ring are separate fields.
            let State { queues, ring, .. } = &mut *s;
            match queues.entry(from) {
                Entry::Occupied(mut q) => q.get_mut().push_back(waiter),
                Entry::Vacant(v) => {
                    v.insert(VecDeque::from([waiter]));
                    ring.push_back(from);
                }
            }
            s.waiting += 1;
            Waiting { shared: Arc::clone(&self.shared), from, id, rx }
        };
        // The sender is dropped unsent only by this waiter's own guard, which runs
        // after this await; a slot sent is ours.
        (&mut waiting.rx).await.ok()
    }

    /// Attempts waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().waiting
    }

    /// (free slots, addresses with a queue), for tests.
    #[cfg(test)]
    fn shape(&self) -> (usize, usize, usize) {
        let s = self.shared.lock();
        (s.free, s.queues.len(), s.ring.len())
    }
}

impl Shared {
    /// Critical sections only move entries around; a panic cannot leave the state
    /// half-changed in a way that matters more than refusing all logins would.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot is free: give it to the next address's oldest waiter, or keep it.
    /// Sending happens outside the lock (a slot that comes back must lock again).
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut s = self.lock();
                match s.pop_next() {
                    Some(w) => w,
                    None => {
                        s.free += 1;
                        return;
                    }
                }
            };
            match next.tx.send(Slot { shared: Some(Arc::clone(self)) }) {
                Ok(()) => return,
                // Its receiver was dropped between the pop and the send: the slot
                // goes to the next waiter here, without recursing through Drop.
                Err(mut back) => back.shared = None,
            }
        }
    }
}

impl State {
    fn pop_next(&mut self) -> Option<Waiter> {
        loop {
            let from = self.ring.pop_front()?;
            // The ring names only addresses with a non-empty queue; one that has
            // none is skipped rather than trusted.
            let Entry::Occupied(mut q) = self.queues.entry(from) else { continue };
            let Some(w) = q.get_mut().pop_front() else {
                q.remove();
                continue;
            };
            if q.get().is_empty() {
                q.remove();
            } else {
                // Its next waiter waits for every other address's turn first.
                self.ring.push_back(from);
            }
            self.waiting -= 1;
            return Some(w);
        }
    }

    /// Takes waiter `id` out of `from`'s queue; false if it is not there (it was
    /// handed a slot already).
    fn remove(&mut self, from: Option<IpAddr>, id: u64) -> bool {
        let Entry::Occupied(mut q) = self.queues.entry(from) else { return false };
        let Some(at) = q.get().iter().position(|w| w.id == id) else { return false };
        q.get_mut().remove(at);
        if q.get().is_empty() {
            q.remove();
            if let Some(r) = self.ring.iter().position(|a| *a == from) {
                self.ring.remove(r);
            }
        }
        self.waiting -= 1;
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.release();
        }
    }
}

/// A queued waiter: if dropped before its slot came, it leaves its queue; a slot
/// already sent to it is in `rx` and goes on to the next waiter when `rx` drops.
struct Waiting {
    shared: Arc<Shared>,
    from: Option<IpAddr>,
    id: u64,
    rx: oneshot::Receiver<Slot>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // After a normal wake-up the waiter is gone already; this finds nothing.
        self.shared.lock().remove(self.from, self.id);
        // The lock is released here; `rx` is dropped after this body, and a slot
        // inside it releases itself (taking the lock again).
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    type Acquiring<'a> = Pin<Box<dyn Future<Output = Slot> + 'a>>;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    /// Polls once: queues the waiter (in call order), or returns its slot.
    fn poll<F: Future<Output = Slot> + ?Sized>(f: &mut Pin<Box<F>>) -> Option<Slot> {
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(s) => Some(s),
            Poll::Pending => None,
        }
    }

    #[test]
    fn slots_go_round_robin_across_addresses() {
        let q = FairSlots::new(1);
        let held = poll(&mut Box::pin(q.acquire(ip(9)))).expect("a free slot at once");
        // A burst from .2, then one attempt each from .3 and from nowhere.
        let names = ["a1", "a2", "a3", "b1", "n1"];
        let from = [ip(2), ip(2), ip(2), ip(3), None];
        let mut waiting: Vec<(&str, Acquiring<'_>)> =
            names.iter().zip(from).map(|(n, f)| (*n, Box::pin(q.acquire(f)) as Acquiring<'_>)).collect();
        for (_, f) in &mut waiting {
            assert!(poll(f).is_none());
        }
        assert_eq!(q.waiting(), 5);
        let mut order = Vec::new();
        drop(held);
        while !waiting.is_empty() {
            let ready: Vec<usize> = (0..waiting.len()).collect();
            let mut got = None;
            for i in ready {
                if let Some(slot) = poll(&mut waiting[i].1) {
                    assert!(got.is_none(), "one slot, one holder");
                    got = Some((i, slot));
                }
            }
            let (i, slot) = got.expect("the freed slot went to someone");
            order.push(waiting.remove(i).0);
            drop(slot);
        }
        assert_eq!(order, ["a1", "b1", "n1", "a2", "a3"]);
        assert_eq!(q.shape(), (1, 0, 0));
    }

    #[test]
    fn a_dropped_waiter_leaves_its_queue_and_stalls_no_one() {
        let q = FairSlots::new(1);
        let held = poll(&mut Box::pin(q.acquire(ip(9)))).unwrap();
        let mut a: Acquiring<'_> = Box::pin(q.acquire(ip(2)));
        let mut b: Acquiring<'_> = Box::pin(q.acquire(ip(3)));
        let mut c: Acquiring<'_> = Box::pin(q.acquire(ip(3)));
        assert!(poll(&mut a).is_none() && poll(&mut b).is_none() && poll(&mut c).is_none());
        assert_eq!(q.shape(), (0, 2, 2));
        // Its client went away while queued: no entry is left.
        drop(a);
        assert_eq!((q.waiting(), q.shape()), (2, (0, 1, 1)));
        // Handed a slot but dropped before it looked: the slot moves on to c.
        drop(held);
        drop(b);
        let slot = poll(&mut c).expect("the slot b never took went to c");
        assert_eq!((q.waiting(), q.shape()), (0, (0, 0, 0)));
        drop(slot);
        assert_eq!(q.shape(), (1, 0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_concurrency_slots_are_held() {
        let q = Arc::new(FairSlots::new(3));
        let held = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let (q, held, most) = (Arc::clone(&q), Arc::clone(&held), Arc::clone(&most));
                tokio::spawn(async move {
                    let from = if i % 5 == 0 { None } else { ip((i % 7) as u8) };
                    let slot = q.acquire(from).await;
                    let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                    held.fetch_sub(1, Ordering::SeqCst);
                    drop(slot);
                })
            })
            .collect();
        // Some waiters give up midway (clients that disconnect).
        let quitters: Vec<_> = (0..50u32)
            .map(|i| {
                let q = Arc::clone(&q);
                tokio::spawn(async move { q.acquire(ip((i % 3) as u8)).await })
            })
            .collect();
        for t in &quitters {
            t.abort();
        }
        for t in tasks {
            t.await.unwrap();
        }
        for t in quitters {
            let _ = t.await;
        }
        assert!(most.load(Ordering::SeqCst) <= 3, "{} held at once", most.load(Ordering::SeqCst));
        assert_eq!(q.shape(), (3, 0, 0), "every slot back, no queue left");
        assert_eq!(q.waiting(), 0);
    }
}
