//! Request bodies that live until their response is sent, and are then read to
//! their end (bounded) rather than cut off.
//!
//! A handler may answer before reading the body (401, 404, 413), and axum drops the
//! unread body with the request. Over HTTP/2, dropping it before the response ends
//! makes h2 reset the stream with CANCEL, which curl reports as "Stream error in the
//! HTTP/2 framing layer" instead of the status. Dropped after it, h2 sends
//! RST_STREAM(NO_ERROR), which RFC 9113 §8.1 allows, but curl 7.88 (Debian 12) still
//! reports that as a framing error while it is uploading. So once the response is
//! written, the rest of the body is read and thrown away, up to
//! [`super::linger::LINGER_BYTES`] within [`super::linger::LINGER_TIME`]; only a
//! client that sends more than that gets the reset. Over HTTP/1.1 the same drain
//! keeps the connection usable; hyper never sends `100 Continue` for a body no one
//! asked to read.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::activity::Busy;
use super::linger::{LINGER_BYTES, LINGER_TIME};

/// The request body, shared by the handler and the response.
pub struct SharedBody(Arc<Mutex<Incoming>>);

/// A response body that keeps the request body (and the request's [`Busy`]) alive
/// until it has been written in full and dropped by hyper.
pub struct HeldResponse {
    body: Body,
    request: Option<Arc<Mutex<Incoming>>>,
    _busy: Busy,
}

/// Splits `incoming` into the body the handler reads and a keeper for the response.
pub fn share(incoming: Incoming) -> (SharedBody, Arc<Mutex<Incoming>>) {
    let shared = Arc::new(Mutex::new(incoming));
    (SharedBody(Arc::clone(&shared)), shared)
}

impl HeldResponse {
    pub fn new(body: Body, request: Arc<Mutex<Incoming>>, busy: Busy) -> Self {
        Self { body, request: Some(request), _busy: busy }
    }
}

impl Drop for HeldResponse {
    /// hyper drops the response body once it has been written in full.
    fn drop(&mut self) {
        let Some(request) = self.request.take() else { return };
        // Anyone else still holding the body (the handler is done by now) keeps it.
        let Ok(incoming) = Arc::try_unwrap(request) else { return };
        let incoming = incoming.into_inner().unwrap_or_else(|p| p.into_inner());
        if http_body::Body::is_end_stream(&incoming) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(incoming));
        }
    }
}

/// Reads and discards what is left of a request body, within the linger bounds.
async fn drain(mut incoming: Incoming) {
    use http_body_util::BodyExt;
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while let Some(Ok(frame)) = incoming.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            match left.checked_sub(n) {
                Some(l) => left = l,
                None => return,
            }
        }
    })
    .await;
}

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Uncontended: only the handler reads; the response side only holds it.
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *b).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).size_hint()
    }
}

impl http_body::Body for HeldResponse {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
