//! A connection's kill switch: thrown by the admin side (a removed password, a
//! deleted user or database), by its output limits, or by one of its own halves
//! when the other ends; and how the connection waits for it and for shutdown.
//!
//! Why not a `CancellationToken`: a busy connection waits on its kill switch and on
//! shutdown at every poll, two or three times per request at pipeline 1, and a
//! `cancelled()` future takes the token's lock and its `Notify`'s lock at every poll
//! (measured: ~1,750 of ~12,800 instructions per GET, `benches/load/instructions.py`);
//! even `is_cancelled` takes the lock. So shutdown is a flag here too, set for each
//! connection by its registry ([`super::registry::Sessions::stop_all`]). A poll is
//! an atomic load and a waker registration, itself skipped while the connection's
//! waker is in the slot (`proxy::waiter`). Only one task waits on
//! a kill switch, the connection's own (its halves and its parked wait are one
//! task), so one waker slot is enough.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use super::waiter::Waiter;

/// See the module documentation. Clones throw the same switch.
#[derive(Debug, Clone, Default)]
pub struct Kill(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    killed: AtomicBool,
    /// Set at shutdown ([`Kill::stop`]): the connection finishes what it owes.
    stopping: AtomicBool,
    /// The connection's task, while it waits on this switch or on shutdown.
    waker: Waiter,
}

impl Kill {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the connection: both halves, or its parked wait.
    pub fn kill(&self) {
        // Stored before the wake: a waiter woken (or registering) after this reads it.
        self.0.killed.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    pub fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::Acquire)
    }

    /// Asks the connection to finish at shutdown: it reads no more requests and
    /// delivers what it owes (see [`Self::stopping`]).
    pub fn stop(&self) {
        // Stored before the wake, as in `kill`.
        self.0.stopping.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Resolves once the switch is thrown.
    pub fn killed(&self) -> Killed<'_> {
        Killed(self)
    }

    /// Resolves once the connection is asked to stop ([`Self::stop`]).
    pub fn stopping(&self) -> Stopping<'_> {
        Stopping { kill: self, or_killed: false }
    }

    /// Resolves once the switch is thrown or the connection asked to stop (the
    /// parked wait).
    pub fn stopped(&self) -> Stopping<'_> {
        Stopping { kill: self, or_killed: true }
    }

    fn register(&self, cx: &Context<'_>) {
        self.0.waker.register(cx.waker());
    }
}

/// See [`Kill::killed`].
pub struct Killed<'a>(&'a Kill);

impl Future for Killed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let k = self.0;
        if k.is_killed() {
            return Poll::Ready(());
        }
        k.register(cx);
        // Thrown between the load and the registration: seen now.
        if k.is_killed() { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// See [`Kill::stopping`] and [`Kill::stopped`].
pub struct Stopping<'a> {
    kill: &'a Kill,
    or_killed: bool,
}

impl Future for Stopping<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the flags are read: a store that the reads miss
        // happened before its wake, which then finds this waker.
        self.kill.register(cx);
        if (self.or_killed && self.kill.is_killed()) || self.kill.0.stopping.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ready_now(f: impl Future<Output = ()>) -> bool {
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())).is_ready()
    }

    #[tokio::test]
    async fn a_waiting_connection_wakes_when_killed() {
        let kill = Kill::new();
        let waiting = tokio::spawn({
            let kill = kill.clone();
            async move { kill.killed().await }
        });
        tokio::task::yield_now().await;
        // (Nothing else may poll it meanwhile: one task waits on a kill switch.)
        assert!(!waiting.is_finished(), "not killed yet");
        kill.kill();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
        assert!(ready_now(kill.killed()), "once killed, at once");
        assert!(ready_now(kill.stopped()), "the parked wait ends on a kill too");
        assert!(!ready_now(kill.stopping()), "a kill is not a shutdown");
    }

    #[tokio::test]
    async fn a_waiting_connection_wakes_when_asked_to_stop() {
        for parked in [false, true] {
            let kill = Kill::new();
            let waiting = tokio::spawn({
                let kill = kill.clone();
                async move { if parked { kill.stopped().await } else { kill.stopping().await } }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "not asked yet");
            kill.stop();
            tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
            assert!(!kill.is_killed(), "a shutdown is not a kill");
            assert!(ready_now(kill.stopping()), "already asked: no wait");
            assert!(!ready_now(kill.killed()), "and stopping is not killed");
        }
    }
}
