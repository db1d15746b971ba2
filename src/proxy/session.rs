//! One client connection: its two halves, joined in one task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::BdbContext;
use super::admission::Permit;
use super::both::Both;
use super::client::{ClientExit, ClientHalf, Handback};
use super::io::{ClientWrite, ReadSome, UpstreamRead, UpstreamWrite};
use super::kill::Kill;
use super::plan::Plan;
use super::pool::Conn;
use super::registry::SessionSlot;
use super::relay::{Relay, RelayExit};

/// A TLS handshake must finish within this (or the auth timeout, if shorter): a
/// client that opens TCP and sends nothing does not hold a connection slot for long.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one plain TCP client. See [`serve_connection`]. Not an `async fn`: the
/// returned future is `serve_connection`'s own, with no wrapper holding a second copy
/// of the arguments for the connection's lifetime.
///
/// `guard` is dropped when the connection ends (the listener's count of open
/// connections): kept in this future rather than in a wrapper around it, which
/// would hold a second copy of the whole future (an upvar moved into its `.await`).
/// `peer` is the address `accept` returned (asking the socket again is a system call
/// per connection).
pub fn serve_tcp(
    ctx: Arc<BdbContext>,
    stream: TcpStream,
    peer: Option<SocketAddr>,
    permit: Option<Permit>,
    guard: impl Send + 'static,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    serve_connection(ctx, reader, ClientWrite::new(writer), peer, permit, guard)
}

/// Completes a client's TLS handshake, bounded in time. None if it failed (a
/// plaintext client, a missing or untrusted client certificate) or took too long.
pub async fn handshake(
    ctx: &BdbContext,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = stream.set_nodelay(true);
    let limit = ctx.auth_timeout().map_or(TLS_HANDSHAKE_TIMEOUT, |t| t.min(TLS_HANDSHAKE_TIMEOUT));
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            // rustls's error says what went wrong with the handshake, never key bytes.
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Serves one client over an established TLS session. See [`serve_connection`].
pub fn serve_tls(
    ctx: Arc<BdbContext>,
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Option<SocketAddr>,
    permit: Option<Permit>,
) -> impl Future<Output = ()> + Send {
    let (reader, writer) = tokio::io::split(stream);
    serve_connection(ctx, reader, writer, peer, permit, ())
}

/// Serves one client until it leaves, misbehaves, or is asked to stop at shutdown
/// ([`Kill::stop`], after which what it is owed is delivered, within
/// [`super::client::DRAIN`]).
///
/// The halves run concurrently so neither direction can block the other: a client
/// that writes a long pipeline before reading, or an upstream that answers slowly,
/// never deadlocks the connection. Both live in one task (one allocation) because
/// they never need two cores at once. Generic over the stream so plain TCP pays
/// nothing for TLS being possible.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve_connection<R, W>(
    ctx: Arc<BdbContext>,
    reader: R,
    writer: W,
    peer: Option<SocketAddr>,
    permit: Option<Permit>,
    guard: impl Send + 'static,
) -> impl Future<Output = ()> + Send
where
    R: ReadSome,
    W: AsyncWrite + Unpin + Send,
{
    // Registered so the admin side can close this connection (password removed,
    // user deleted, database deleted): killing `abort` ends both halves. The
    // unauthenticated permit moves into the slot, which lets it go at the first
    // successful AUTH. Made here, not in the future: the future then stores one
    // pointer instead of the permit and the address for the connection's life.
    let abort = Kill::new();
    // From here on the bound in all may close it to make room (see `admission`).
    if let Some(p) = &permit {
        p.bind(&abort);
    }
    let slot = SessionSlot::new(abort.clone(), permit, peer);
    // The halves are made here too, and captured: a value moved into the future
    // and then into a local would take room twice for the connection's life.
    let plan = Arc::new(Plan::default());
    let mut client = ClientHalf::new(Arc::clone(&ctx), Arc::clone(&slot), Arc::clone(&plan));
    let mut relay = Relay::new(plan, writer).counting(Arc::clone(&ctx));
    let mut reader = reader;
    // Not an `async fn`: the arguments are then stored once in the future.
    async move {
        let registration = ctx.sessions.insert(slot);
        let (writer, reader) = loop {
            // Boxed: the running halves' state (~2 KiB) exists only while the
            // connection is active; a parked one holds just the halves' fields.
            // Matched as a temporary, not bound to a name: a named, partly moved
            // value would keep its room (~500 bytes) in the future while parked.
            match Box::pin(active(client, relay, reader, &abort)).await {
                (ClientExit::Parked(c, r), RelayExit::Parked(rl)) => (client, relay, reader) = (c, rl, r),
                (ClientExit::Done(h), RelayExit::Done(u)) => break (h, u),
                // The relay ended (the client stopped taking bytes, or a kill)
                // while the client half parked: the connection is over.
                _ => break (None, None),
            }
            crate::metrics::inc(&ctx.stats.parked);
            // Bytes, a kill or a shutdown: each is handled by the active halves
            // exactly as if they had been waiting all along.
            // No `cancelled()` future on a shutdown token: ~70 bytes less in
            // every parked connection (shutdown is a flag, see `proxy::kill`).
            tokio::select! {
                biased;
                () = abort.stopped() => {}
                () = reader.ready() => {}
            }
            ctx.stats.parked.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        };
        drop(registration);
        // Boxed: once per connection, and its locals (the handback, the login)
        // would otherwise enlarge every connection's future for its whole life.
        // Boxed even when there is nothing to give back: testing first kept the
        // two options in the future (16 bytes per idle connection) to save one
        // small allocation per close.
        Box::pin(hand_back(&ctx, writer, reader)).await;
        tracing::debug!("disconnected");
        drop(guard);
    }
}

/// Both halves ended with the upstream between commands: the client is gone
/// (its socket is closed by now), the upstream connection can serve the next one.
/// (TLS upstream connections are not kept: their liveness cannot be probed
/// without reading.)
async fn hand_back(ctx: &BdbContext, writer: Option<Handback>, reader: Option<UpstreamRead>) {
    if let (
        Some(Handback { writer: UpstreamWrite::Tcp(writer), upstream, login: (grant, cred), dirty }),
        Some(UpstreamRead::Tcp(reader)),
    ) = (writer, reader)
    {
        ctx.pool.give_back(Conn { reader, writer }, upstream, &cred, grant.key, dirty).await;
    }
}

/// Runs both halves until the connection ends or parks. The halves run
/// concurrently so neither direction can block the other (see [`serve_connection`]).
/// The relay kills `abort` when it ends for good, which stops the client half too.
fn active<R, W>(
    client: ClientHalf,
    relay: Relay<W>,
    reader: R,
    abort: &Kill,
) -> Both<impl Future<Output = ClientExit<R>> + Send, impl Future<Output = RelayExit<W>> + Send>
where
    R: ReadSome,
    W: AsyncWrite + Unpin + Send,
{
    Both::new(client.run(reader, abort.clone()), relay.run(abort.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Directory, HashParams, VerifyOptions};
    use crate::proxy::Upstream;

    /// The connection future lives as long as the connection: its size is memory
    /// every idle connection pays.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let d = Directory::new(HashParams::default(), VerifyOptions::default());
        let ctx = Arc::new(BdbContext::new(1, d, Upstream::parse("redis://127.0.0.1:1").unwrap(), 0));
        {
            let (r, w) = TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
            let plan = Arc::new(Plan::default());
            let reg = ctx.sessions.register(Kill::new(), None, None);
            let c = ClientHalf::new(Arc::clone(&ctx), Arc::clone(&reg.slot), Arc::clone(&plan));
            let (cf, rf) = (std::mem::size_of::<ClientHalf>(), std::mem::size_of::<Relay<ClientWrite>>());
            let kill = Kill::new();
            let both = active(c, Relay::new(plan, w), r, &kill);
            let size = std::mem::size_of_val(&both);
            eprintln!("active halves: {size} bytes (client half {cf}, relay {rf})");
            // Boxed each time a parked connection wakes, and held by every
            // connection between requests until it parks: memory that bursts of
            // new connections pay all at once. Each half's future plus a tag: 2,016
            // bytes, in mimalloc's 2,048-byte class (the next is 2,560). It was
            // 3,264 (class 3,584) when the halves' arguments and exits were stored
            // beside them and opening the own connection was inline.
            assert!(size <= 2048, "the active halves' future is {size} bytes: past mimalloc's 2 KiB class");
        }
        let fut = serve_tcp(ctx, client, None, None, ());
        let size = std::mem::size_of_val(&fut);
        eprintln!("connection future: {size} bytes");
        // What every idle connection's task holds: since parking, the running
        // halves (client half + relay above, ~2 KiB) are boxed per active phase,
        // and this is their fields plus the parked wait. 560 bytes here, 568 in
        // release (`-Zprint-type-sizes`); 1,904 before parking, 632 before the
        // rare fields and the hand-back at the end were boxed. tokio's task cell is
        // 128-byte aligned: header 32 + scheduler and id 16 + the stage (this
        // future, its tracing span 40, the task tracker's token 8, the stage's tag
        // 8) + trailer 48, so up to 616 bytes in release the cell is 768 bytes
        // (896 at 632, 1,024 at 776). Checked here with room for release's extra.
        assert!(size <= 600, "connection future is {size} bytes: its task cell outgrows 768 bytes");
        // As the listener spawns it.
        use tracing::Instrument;
        let spawned = std::mem::size_of_val(&fut.instrument(tracing::info_span!("conn")));
        assert_eq!(spawned, size + 40, "the span's size changed: redo the sum above");
    }

    /// Over TLS the stream halves are shared handles, so the connection future is
    /// about the same size as over plain TCP (rustls's own state is on the heap).
    #[tokio::test]
    async fn the_tls_connection_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        let server = crate::tls::server_config(&cert, &key, None).unwrap();
        let client = crate::tls::client_config(&cert, None).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connecting = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.unwrap()
        });
        let (tcp, _) = l.accept().await.unwrap();
        let d = Directory::new(HashParams::default(), VerifyOptions::default());
        let ctx = Arc::new(BdbContext::new(1, d, Upstream::parse("redis://127.0.0.1:1").unwrap(), 0));
        let tls = handshake(&ctx, tokio_rustls::TlsAcceptor::from(server), tcp).await.expect("handshake");
        let _client = connecting.await.unwrap();
        let fut = serve_tls(ctx, tls, None, None);
        let size = std::mem::size_of_val(&fut);
        eprintln!("TLS connection future: {size} bytes");
        assert!(size < 3072, "TLS connection future is {size} bytes");
    }
}
