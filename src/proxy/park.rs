//! Parking idle connections: a connection with nothing in flight gives up the
//! state of its two running halves (~2 KiB of task) and waits for bytes holding only
//! what it must remember.
//!
//! Why not park at once, after every reply: the active state would then be made
//! again for every request (an allocation and two token registrations per request
//! at pipeline 1). Instead each database's accept loop sweeps its connections every
//! [`PARK_SWEEP`]: one that has read nothing since the previous sweep is asked to
//! park, so a connection parks after 1–2 sweeps of silence, and a busy one pays
//! one relaxed store per read.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::waiter::Waiter;

/// How often idle connections are looked for.
pub const PARK_SWEEP: Duration = Duration::from_secs(1);

const ACTIVE: u8 = 0;
/// A sweep found no read since the one before.
const IDLE: u8 = 1;
/// The next sweep found it still idle: the connection is asked to park.
const REQUESTED: u8 = 2;

/// A connection's side of the sweep: its activity mark, and how to wake it.
#[derive(Debug, Default)]
pub struct ParkSignal {
    state: AtomicU8,
    waker: Waiter,
}

impl ParkSignal {
    /// The connection read something (or declined to park): it is active.
    pub fn touch(&self) {
        // Relaxed, and a plain store: the only cost a busy connection pays. A lost
        // race with the sweeper only shifts parking by one sweep.
        if self.state.load(Ordering::Relaxed) != ACTIVE {
            self.state.store(ACTIVE, Ordering::Relaxed);
        }
    }

    /// One sweep: marks an active connection idle, asks an idle one to park.
    pub fn sweep(&self) {
        match self.state.compare_exchange(ACTIVE, IDLE, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) | Err(REQUESTED) => {}
            Err(_) => {
                if self.state.compare_exchange(IDLE, REQUESTED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    self.waker.wake();
                }
            }
        }
    }

    /// Resolves when the connection is asked to park.
    pub fn requested(&self) -> Requested<'_> {
        Requested(self)
    }
}

/// See [`ParkSignal::requested`]. A plain struct, polled in the client half's
/// read select: it registers a waker (skipped while its waker is in the slot) and
/// reads one atomic.
pub struct Requested<'a>(&'a ParkSignal);

impl Future for Requested<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let s = self.0;
        if s.state.load(Ordering::Acquire) == REQUESTED {
            return Poll::Ready(());
        }
        s.waker.register(cx.waker());
        // Asked between the load and the registration: seen now.
        if s.state.load(Ordering::Acquire) == REQUESTED { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_asked_after_two_silent_sweeps_and_a_read_resets_it() {
        let s = ParkSignal::default();
        let mut asked = std::pin::pin!(s.requested());
        let waker = futures_noop();
        let mut cx = Context::from_waker(&waker);
        assert!(asked.as_mut().poll(&mut cx).is_pending());
        s.sweep();
        assert!(asked.as_mut().poll(&mut cx).is_pending(), "one sweep is not enough");
        s.touch();
        s.sweep();
        assert!(asked.as_mut().poll(&mut cx).is_pending(), "a read in between resets it");
        s.sweep();
        assert!(asked.as_mut().poll(&mut cx).is_ready());
        s.sweep();
        assert!(asked.as_mut().poll(&mut cx).is_ready(), "further sweeps change nothing");
        s.touch();
        assert!(asked.as_mut().poll(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn the_sweep_wakes_the_waiting_connection() {
        let s = std::sync::Arc::new(ParkSignal::default());
        let waiting = tokio::spawn({
            let s = std::sync::Arc::clone(&s);
            async move { s.requested().await }
        });
        tokio::task::yield_now().await;
        s.sweep();
        s.sweep();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
    }

    fn futures_noop() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
