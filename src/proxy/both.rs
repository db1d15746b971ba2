//! The two halves of an active connection, polled as one future: client half first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Polls `client` and then `relay`, in that order at every wake-up, until both
    /// end. Not `tokio::join!`, which takes turns at going first: the relay must
    /// come after the client half for a push to the plan to need no wake-up (see
    /// `Plan`).
    ///
    /// Written out rather than an `async fn` over two pinned futures: that one
    /// stored the halves' arguments, both futures and both exits side by side
    /// (3,264 bytes, boxed anew each time a parked connection wakes); here each half
    /// is its future or, once done, its exit (2,016 bytes).
    pub struct Both<C: Future, L: Future> {
        #[pin]
        client: Half<C>,
        #[pin]
        relay: Half<L>,
    }
}

impl<C: Future, L: Future> Both<C, L> {
    pub fn new(client: C, relay: L) -> Self {
        Self { client: Half::Running { fut: client }, relay: Half::Running { fut: relay } }
    }
}

impl<C: Future, L: Future> Future for Both<C, L> {
    type Output = (C::Output, L::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let client_done = this.client.as_mut().poll_done(cx);
        let relay_done = this.relay.as_mut().poll_done(cx);
        if !(client_done && relay_done) {
            return Poll::Pending;
        }
        match (this.client.take(), this.relay.take()) {
            (Some(c), Some(r)) => Poll::Ready((c, r)),
            // Polled again after it returned Ready: a bug in the caller, never a
            // panic in a connection's task.
            _ => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// One half: running, then its exit until `Both` hands it out.
    #[project = HalfProj]
    enum Half<F: Future> {
        Running { #[pin] fut: F },
        Done { exit: Option<F::Output> },
    }
}

impl<F: Future> Half<F> {
    /// Polls the half if it still runs; whether it is done.
    fn poll_done(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let exit = match self.as_mut().project() {
            HalfProj::Running { fut } => match fut.poll(cx) {
                Poll::Ready(exit) => exit,
                Poll::Pending => return false,
            },
            HalfProj::Done { .. } => return true,
        };
        // The finished future is dropped here, before the other half runs on.
        self.set(Half::Done { exit: Some(exit) });
        true
    }

    fn take(self: Pin<&mut Self>) -> Option<F::Output> {
        match self.project() {
            HalfProj::Done { exit } => exit.take(),
            HalfProj::Running { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The client half is polled before the relay at every wake-up, and both exits
    /// come out together once the later one ends.
    #[tokio::test]
    async fn polls_the_client_first_and_waits_for_both() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let o = Arc::clone(&order);
        let client = async move {
            o.lock().unwrap().push("client");
            "client exit"
        };
        let o = Arc::clone(&order);
        let relay = async move {
            o.lock().unwrap().push("relay");
            rx.await.unwrap();
            o.lock().unwrap().push("relay done");
            7
        };
        let both = tokio::spawn(Both::new(client, relay));
        tokio::task::yield_now().await;
        assert!(!both.is_finished(), "returned before the relay ended");
        tx.send(()).unwrap();
        assert_eq!(both.await.unwrap(), ("client exit", 7));
        assert_eq!(*order.lock().unwrap(), ["client", "relay", "relay done"]);
    }
}
