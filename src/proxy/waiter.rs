//! A waker slot for a signal that one task waits on and polls at every wake-up: a
//! registration is skipped while that task's waker is still in the slot.
//!
//! Why: a busy connection polls its kill switch, shutdown and park signal at every
//! wake-up of either half, eleven times per GET at pipeline 1. `AtomicWaker::register`
//! costs two read-modify-writes each time, and with the futures around it that was
//! ~7% of a GET's instructions (`benches/load/instructions.py`, callgrind). Here a
//! poll whose waker is already in the slot is three loads; the lock is taken only
//! by the first poll after a wake, and by the wake.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;

/// See the module documentation. **One task only** may register: the skip trusts
/// that the pointers it reads are those of the last waker put here. With two tasks,
/// one could read its own earlier pointers (the relaxed loads need not show the
/// other's store) and skip while the slot holds the other's waker, then sleep
/// through the wake. Kill switches and park signals are waited on by their
/// connection's task alone.
#[derive(Debug, Default)]
pub struct Waiter {
    /// The waiting task's waker. Taken by a wake.
    slot: Mutex<Option<Waker>>,
    /// True exactly while `slot` holds the waker named by `data` and `vtable`: set
    /// with the put and cleared with the take, under the slot's lock, so a poll
    /// that reads it true knows a wake has yet to take that waker.
    armed: AtomicBool,
    /// The waker in the slot, its data and vtable pointers. Written under the lock
    /// by the one waiting task, read by it alone.
    data: AtomicUsize,
    vtable: AtomicUsize,
}

impl Waiter {
    /// Puts `waker` in the slot unless it is there already. Call before reading the
    /// state the wake announces, as with `AtomicWaker`.
    #[inline]
    pub fn register(&self, waker: &Waker) {
        let (data, vtable) = (waker.data() as usize, std::ptr::from_ref(waker.vtable()) as usize);
        if !(self.armed.load(Ordering::Acquire)
            && self.data.load(Ordering::Relaxed) == data
            && self.vtable.load(Ordering::Relaxed) == vtable)
        {
            self.put(waker, data, vtable);
        }
    }

    /// Out of line: the skip above stays a few instructions where it is inlined.
    #[cold]
    #[inline(never)]
    fn put(&self, waker: &Waker, data: usize, vtable: usize) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(waker.clone());
        self.data.store(data, Ordering::Relaxed);
        self.vtable.store(vtable, Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
    }

    /// Wakes the waiting task, if one is registered.
    pub fn wake(&self) {
        let taken = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            self.armed.store(false, Ordering::Release);
            slot.take()
        };
        // Woken outside the lock: waking may run arbitrary code.
        if let Some(w) = taken {
            w.wake();
        }
    }
}

/// Wakers that count their wakes, for tests of wake-ups here and elsewhere.
#[cfg(test)]
pub(crate) mod counting {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::{Wake, Waker};

    pub struct Count(AtomicU32);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker, and what counts its wakes.
    pub fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicU32::new(0)));
        (Arc::clone(&c), Waker::from(c))
    }

    pub fn woken(c: &Count) -> u32 {
        c.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::counting::{counting, woken};
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_registration_skipped_for_the_same_waker_is_still_woken() {
        let w = Waiter::default();
        let (a, wa) = counting();
        w.register(&wa);
        w.register(&wa);
        w.wake();
        assert_eq!(woken(&a), 1);
        // The wake emptied the slot: the same waker registers again, and is woken again.
        w.register(&wa);
        w.register(&wa);
        w.wake();
        assert_eq!(woken(&a), 2);
        w.wake();
        assert_eq!(woken(&a), 2, "nothing registered since the last wake");
    }

    #[test]
    fn another_waker_replaces_the_one_in_the_slot() {
        let w = Waiter::default();
        let (a, wa) = counting();
        let (b, wb) = counting();
        w.register(&wa);
        w.register(&wb);
        w.wake();
        assert_eq!((woken(&a), woken(&b)), (0, 1));
        w.register(&wb);
        w.register(&wa);
        w.register(&wa);
        w.wake();
        assert_eq!((woken(&a), woken(&b)), (1, 1));
    }

    /// The waiter's protocol under a race: register, then read the state the wake
    /// announces. Either the read sees the state or the wake reaches the waker;
    /// and after a wake, the next registration is put again (not skipped on a slot
    /// the wake emptied), so the wake after it is not lost.
    #[test]
    fn a_wake_from_another_thread_between_polls_is_not_lost() {
        use std::sync::atomic::AtomicBool;
        for _ in 0..5_000 {
            let w = Arc::new(Waiter::default());
            let flag = Arc::new(AtomicBool::new(false));
            let (a, wa) = counting();
            w.register(&wa);
            let waker = std::thread::spawn({
                let (w, flag) = (Arc::clone(&w), Arc::clone(&flag));
                move || {
                    flag.store(true, Ordering::Release);
                    w.wake();
                }
            });
            // A poll racing the wake: its registration is skipped or put again.
            w.register(&wa);
            let seen = flag.load(Ordering::Acquire);
            waker.join().unwrap();
            assert!(seen || woken(&a) >= 1, "neither the state nor the wake reached the waiter");
            let before = woken(&a);
            w.register(&wa);
            w.wake();
            assert_eq!(woken(&a), before + 1, "a registration after a wake is woken by the next");
        }
    }
}
