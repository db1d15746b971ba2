//! The byte streams a connection runs over — plain TCP or TLS — behind one small
//! trait, so the connection code is generic (no boxing, no `dyn` on the hot path)
//! and the plain TCP path keeps its zero-buffer-while-idle reads.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Reads start small (most requests and replies are tiny) and grow while they keep
/// filling the buffer, so a 100 MB value moves in 64 KiB steps rather than 4 KiB ones.
pub const READ_MIN: usize = 4 * 1024;
pub const READ_MAX: usize = 64 * 1024;

/// The read side of a connection.
pub trait ReadSome: Send + 'static {
    /// Waits for bytes, then appends what is available to `buf` (growing it by
    /// `*chunk` first if it is nearly full, and adapting `*chunk`). `Ok(0)` is EOF.
    /// Cancel safe: when the future is dropped, no byte is lost.
    fn read_some(
        &mut self,
        buf: &mut BytesMut,
        chunk: &mut usize,
    ) -> impl Future<Output = std::io::Result<usize>> + Send;

    /// Whether the connection can wait for bytes without reading them: only then
    /// can it park (see [`super::park`]).
    fn parkable(&self) -> bool;

    /// Resolves when bytes (or EOF, or an error) may be read. Holds no buffer.
    fn ready(&self) -> impl Future<Output = ()> + Send;
}

/// Makes room for a read; returns the room.
fn reserve(buf: &mut BytesMut, chunk: usize) -> usize {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(chunk);
    }
    buf.capacity() - buf.len()
}

/// Doubles the next read while reads fill the room, else back to the minimum.
fn next_chunk(read: &std::io::Result<usize>, room: usize, chunk: usize) -> usize {
    match read {
        Ok(n) if *n == room => (chunk * 2).min(READ_MAX),
        _ => READ_MIN,
    }
}

impl ReadSome for OwnedReadHalf {
    async fn read_some(&mut self, buf: &mut BytesMut, chunk: &mut usize) -> std::io::Result<usize> {
        loop {
            // Readiness first, memory second: an idle connection holds no buffer.
            // `poll_read_ready`, not `readable()`: its one waker slot (this socket has
            // one reader) takes the reactor's lock once per wait; `readable()` links
            // a waiter into a list and takes it to link, to check and to unlink
            // (~300 instructions per GET at pipeline 1).
            let stream: &TcpStream = self.as_ref();
            std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
            let room = reserve(buf, *chunk);
            let read = match read_draining(self, buf, room) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Readiness was stale (the last read did not drain the socket to
                    // EAGAIN): give the buffer back before waiting, or every idle
                    // connection keeps 4 KiB per direction (measured: 12 → 4 KiB each).
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                    continue;
                }
                r => r,
            };
            *chunk = next_chunk(&read, room, *chunk);
            return read;
        }
    }

    fn parkable(&self) -> bool {
        true
    }

    fn ready(&self) -> impl Future<Output = ()> + Send {
        // Polled directly (`readable()` is ~180 bytes of nested futures, held by
        // every parked connection). An error is a kind of readiness: the read that
        // follows reports it.
        let stream: &TcpStream = self.as_ref();
        std::future::poll_fn(move |cx| stream.poll_read_ready(cx).map(|_| ()))
    }
}

/// Reads what the socket holds. A read shorter than the room it had drained the
/// socket: readiness is then cleared at once, so the next wait goes straight to the
/// reactor instead of costing a `recv` that only says EAGAIN — one system call per
/// request on each side of the proxy (measured with `benches/load/syscalls.sh`: 6 → 4
/// socket calls per GET at pipeline 1).
///
/// The read runs inside `try_io`, so the readiness that gets cleared is the one
/// observed *before* the read: data that arrives after it raises a new readiness
/// event, which is not lost. Closed states (EOF) are never cleared by tokio.
fn read_draining(r: &OwnedReadHalf, buf: &mut BytesMut, room: usize) -> std::io::Result<usize> {
    let stream: &TcpStream = r.as_ref();
    let mut drained = None;
    let read = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = r.try_read_buf(buf)?;
        if n > 0 && n < room {
            drained = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match drained {
        Some(n) => Ok(n),
        None => read,
    }
}

/// A TLS stream has no readiness separate from reading (records must be decrypted),
/// so its buffer is taken before waiting. rustls holds buffers of its own per
/// connection anyway; this one is small next to them.
async fn read_tls<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    chunk: &mut usize,
) -> std::io::Result<usize> {
    let room = reserve(buf, *chunk);
    // `read_buf` is cancel safe: data not yet handed out stays inside rustls.
    let read = r.read_buf(buf).await;
    *chunk = next_chunk(&read, room, *chunk);
    read
}

/// A client connection over TLS, read side.
pub type TlsServerRead = ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>;
/// A client connection over TLS, write side.
pub type TlsServerWrite = WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>;

impl ReadSome for TlsServerRead {
    async fn read_some(&mut self, buf: &mut BytesMut, chunk: &mut usize) -> std::io::Result<usize> {
        read_tls(self, buf, chunk).await
    }

    /// Records must be decrypted to know whether a request came: a TLS client
    /// never parks (rustls's own buffers dwarf what parking saves anyway).
    fn parkable(&self) -> bool {
        false
    }

    fn ready(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// The write half of a plain TCP client connection. Unlike tokio's own, it does not
/// call `shutdown(2)` when dropped: after a close the client asked for, the
/// descriptor's close, when the read half goes too, sends the same FIN after the
/// same bytes.
/// Why: under connection churn (`redis-benchmark -k 0`) `perf` put 19% of the
/// proxy's CPU in that separate call (on loopback it runs the peer's TCP receive
/// path and wake-up inside it), next to 6% for the close that followed.
pub struct ClientWrite(Option<OwnedWriteHalf>);

impl ClientWrite {
    pub fn new(w: OwnedWriteHalf) -> Self {
        Self(Some(w))
    }

    fn half(&mut self) -> &mut OwnedWriteHalf {
        // Only `drop` takes it out.
        self.0.as_mut().expect("the write half is present until drop")
    }
}

impl Drop for ClientWrite {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            // Not shut down on drop: closed with the read half (see the type).
            w.forget();
        }
    }
}

impl AsyncWrite for ClientWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().half()).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().half()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|w| w.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().half()).poll_flush(cx)
    }

    /// A real shutdown: used when the relay ends the connection itself (output
    /// limits, a kill), where the client must see the end although its read half
    /// may still be held; a close the client asked for skips it (see `Relay::run`).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().half()).poll_shutdown(cx)
    }
}

/// A connection to the upstream: plain or TLS, chosen per upstream at connect time
/// (the upstream can be changed live), hence an enum rather than a type parameter.
pub enum UpstreamStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamStream {
    pub fn into_split(self) -> (UpstreamRead, UpstreamWrite) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (UpstreamRead::Tcp(r), UpstreamWrite::Tcp(w))
            }
            Self::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (UpstreamRead::Tls(r), UpstreamWrite::Tls(w))
            }
        }
    }
}

type TlsClient = tokio_rustls::client::TlsStream<TcpStream>;

pub enum UpstreamRead {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsClient>),
}

pub enum UpstreamWrite {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<TlsClient>),
}

impl ReadSome for UpstreamRead {
    async fn read_some(&mut self, buf: &mut BytesMut, chunk: &mut usize) -> std::io::Result<usize> {
        match self {
            Self::Tcp(r) => r.read_some(buf, chunk).await,
            Self::Tls(r) => read_tls(r, buf, chunk).await,
        }
    }

    /// Upstream connections are read by the relay, never parked on.
    fn parkable(&self) -> bool {
        false
    }

    fn ready(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

impl AsyncWrite for UpstreamWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(w) => Pin::new(w).poll_write(cx, b),
            Self::Tls(w) => Pin::new(w).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Self::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(w) => w.is_write_vectored(),
            Self::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(w) => Pin::new(w).poll_flush(cx),
            Self::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Self::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
