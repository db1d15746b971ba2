//! One client connection: its two halves, joined in one task.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::BdbContext;
use super::client::ClientHalf;
use super::plan::Plan;
use super::relay::Relay;

/// Serves one client until it leaves, misbehaves, or `shutdown` (after which what it
/// is owed is delivered, within [`super::client::DRAIN`]).
///
/// The halves run concurrently so neither direction can block the other: a client
/// that writes a long pipeline before reading, or an upstream that answers slowly,
/// never deadlocks the connection. Both live in one task (one allocation) because
/// they never need two cores at once.
pub async fn serve_connection(ctx: Arc<BdbContext>, stream: TcpStream, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let (reader, writer) = stream.into_split();
    let plan = Arc::new(Plan::default());
    let abort = CancellationToken::new();
    // Registered so the admin side can close this connection (password removed,
    // user deleted, database deleted): cancelling `abort` ends both halves.
    let registration = ctx.sessions.register(abort.clone());
    let client = ClientHalf::new(Arc::clone(&ctx), Arc::clone(&registration.slot), Arc::clone(&plan), peer);
    let relay = Relay::new(plan, writer).counting(Arc::clone(&ctx));
    tokio::join!(client.run(reader, shutdown, abort.clone()), async {
        relay.run(abort.clone()).await;
        abort.cancel();
    });
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
            let reg = ctx.sessions.register(CancellationToken::new());
            let c = ClientHalf::new(Arc::clone(&ctx), Arc::clone(&reg.slot), Arc::clone(&plan), None);
            let cf = c.run(r, CancellationToken::new(), CancellationToken::new());
            let rf = Relay::new(plan, w).run(CancellationToken::new());
            eprintln!(
                "client half: {} bytes, relay: {} bytes",
                std::mem::size_of_val(&cf),
                std::mem::size_of_val(&rf)
            );
        }
        let fut = serve_connection(ctx, client, CancellationToken::new());
        let size = std::mem::size_of_val(&fut);
        eprintln!("connection future: {size} bytes");
        // 2,640 bytes when measured; the guard catches a large future sneaking in.
        assert!(size < 3072, "connection future is {size} bytes");
    }
}
