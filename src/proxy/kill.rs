//! A connection's kill switch: thrown by the admin side (a removed password, a
//! deleted user or database), by its output limits, or by one of its own halves
//! when the other ends; and how the connection waits for it and for shutdown.
//!
//! Why not a `CancellationToken`: a busy connection waits on its kill switch and on
//! shutdown at every poll, two or three times per request at pipeline 1, and a
//! `cancelled()` future takes the token's lock and its `Notify`'s lock at every poll
//! (measured: ~1,750 of ~12,800 instructions per GET, `benches/load/instructions.py`).
//! Here a poll is one atomic load and a waker registration. Only one task waits on
//! a kill switch, the connection's own (its halves and its parked wait are one
//! task), so one waker slot is enough.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use tokio_util::sync::CancellationToken;

/// See the module documentation. Clones throw the same switch.
#[derive(Debug, Clone, Default)]
pub struct Kill(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    killed: AtomicBool,
    /// The connection's task, while it waits on this switch or on shutdown.
    waker: AtomicWaker,
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

    /// Wakes the connection to look at the shutdown token (see [`Self::stopping`]):
    /// call after cancelling it.
    pub fn wake(&self) {
        self.0.waker.wake();
    }

    /// Resolves once the switch is thrown.
    pub fn killed(&self) -> Killed<'_> {
        Killed(self)
    }

    /// Resolves once `shutdown` is cancelled and this connection woken for it
    /// ([`Self::wake`]).
    pub fn stopping<'a>(&'a self, shutdown: &'a CancellationToken) -> Stopping<'a> {
        Stopping { kill: self, shutdown, or_killed: false }
    }

    /// Resolves once the switch is thrown or `shutdown` is cancelled (the parked wait).
    pub fn stopped<'a>(&'a self, shutdown: &'a CancellationToken) -> Stopping<'a> {
        Stopping { kill: self, shutdown, or_killed: true }
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

/// See [`Kill::stopping`] and [`Kill::stopped`]. Holds no registration with the
/// token: whoever cancels it wakes the connections (the listener, at shutdown).
pub struct Stopping<'a> {
    kill: &'a Kill,
    shutdown: &'a CancellationToken,
    or_killed: bool,
}

impl Future for Stopping<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the token is read: a cancel that the read misses
        // happened before its wake, which then finds this waker.
        self.kill.register(cx);
        if (self.or_killed && self.kill.is_killed()) || self.shutdown.is_cancelled() {
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
        let shutdown = CancellationToken::new();
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
        assert!(ready_now(kill.stopped(&shutdown)), "the parked wait ends on a kill too");
        assert!(!ready_now(kill.stopping(&shutdown)), "a kill is not a shutdown");
    }

    #[tokio::test]
    async fn a_waiting_connection_wakes_at_shutdown_once_woken() {
        for parked in [false, true] {
            let kill = Kill::new();
            let shutdown = CancellationToken::new();
            let waiting = tokio::spawn({
                let (kill, shutdown) = (kill.clone(), shutdown.clone());
                async move { if parked { kill.stopped(&shutdown).await } else { kill.stopping(&shutdown).await } }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "nothing cancelled yet");
            shutdown.cancel();
            kill.wake();
            tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
            assert!(!kill.is_killed(), "a shutdown is not a kill");
            assert!(ready_now(kill.stopping(&shutdown)), "already cancelled: no wait");
        }
    }
}
