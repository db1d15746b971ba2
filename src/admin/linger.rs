//! A lingering close for admin connections (nginx's `lingering_close`).
//!
//! After refusing a request whose body it did not read (413, 401), the server
//! closes the connection; closing a socket with unread bytes makes the kernel send a
//! reset, which can destroy the response before the client has read it (curl then
//! reports a reset instead of the 413). So once the write side is shut down, what
//! the client still sends is read and thrown away, bounded in bytes and time,
//! until it closes too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// At most this is read and discarded after the response...
pub(super) const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// ...for at most this long.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(2);

/// An admin connection's stream with a lingering `poll_shutdown`.
pub struct Lingering<T> {
    inner: T,
    activity: Arc<Activity>,
    drain: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
    shut: bool,
}

impl<T> Lingering<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity, drain: None, shut: false }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut = true;
        }
        // A connection that never got a response (a half-sent request timed out)
        // has nothing to protect: it closes at once.
        if !this.activity.responded() {
            return Poll::Ready(Ok(()));
        }
        let (timer, left) =
            this.drain.get_or_insert_with(|| (Box::pin(tokio::time::sleep(LINGER_TIME)), LINGER_BYTES));
        let mut scratch = [0u8; 8192];
        loop {
            if *left == 0 || timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => *left = left.saturating_sub(rb.filled().len()),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
