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
    let (reader, writer) = stream.into_split();
    let plan = Arc::new(Plan::default());
    let abort = CancellationToken::new();
    // Registered so the admin side can close this connection (password removed,
    // user deleted, database deleted): cancelling `abort` ends both halves.
    let registration = ctx.sessions.register(abort.clone());
    let client = ClientHalf::new(Arc::clone(&ctx), Arc::clone(&registration.slot), Arc::clone(&plan));
    let relay = Relay::new(plan, writer);
    tokio::join!(client.run(reader, shutdown, abort.clone()), async {
        relay.run(abort.clone()).await;
        abort.cancel();
    });
}
