//! What an admin connection is doing, for its watchdog: requests in flight, when
//! the last one ended, and whether any response was written. Shared by the
//! connection's task and its requests' bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// See the module documentation.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` at which the last request ended.
    last_end_ms: AtomicU64,
    started: AtomicBool,
    responded: AtomicBool,
    /// Signalled when a request ends, so the watchdog re-arms for the idle limit
    /// instead of sleeping out the check it set while the request was in flight.
    ended: tokio::sync::Notify,
}

/// Counts one request in flight until dropped (with its response body, so a
/// response still being written keeps the connection busy).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            started: AtomicBool::new(false),
            responded: AtomicBool::new(false),
            ended: tokio::sync::Notify::new(),
        })
    }

    /// A request's head has arrived.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    /// Resolves when a request ends (at once if one ended since the last call).
    pub async fn request_ended(&self) {
        self.ended.notified().await
    }

    /// Whether any request has arrived on this connection.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether a response was written on this connection (its body finished).
    pub fn responded(&self) -> bool {
        self.responded.load(Ordering::Relaxed)
    }

    /// When the connection should be closed if nothing happens meanwhile: `header`
    /// after it opened while no request has arrived yet (whatever the protocol, and
    /// before hyper has seen a byte), `idle` after the last request ended, and never
    /// while a request is in flight (checked again after `idle`).
    pub fn deadline(&self, header: Duration, idle: Duration) -> Instant {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return now + idle;
        }
        if !self.started.load(Ordering::Relaxed) {
            return self.opened + header;
        }
        self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed)) + idle
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end_ms.store(a.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        a.responded.store(true, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
        a.ended.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(2);
    const I: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn deadlines_follow_the_requests() {
        let a = Activity::new();
        assert_eq!(a.deadline(H, I), a.opened + H, "no request yet: the header limit");
        assert!(!a.started() && !a.responded());
        let busy = a.begin();
        let before = Instant::now();
        assert!(a.deadline(H, I) >= before + I, "busy: checked again a whole idle period later");
        drop(busy);
        assert!(a.started() && a.responded());
        let d = a.deadline(H, I);
        let now = Instant::now();
        // The request ended a moment ago: idle from then (milliseconds resolution).
        assert!(d <= now + I && d + Duration::from_millis(50) >= now + I, "idle since the request ended");
    }
}
