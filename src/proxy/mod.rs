//! The data path: one listener per database, and per connection a client half
//! (framing, AUTH, forwarding) and a relay half (replies, in order).

mod client;
mod hello;
pub mod listener;
mod plan;
mod relay;
pub mod session;
pub mod upstream;

use std::sync::atomic::AtomicUsize;

use crate::auth::Directory;
pub use upstream::Upstream;

/// Everything a connection to one database needs. Shared by its connections.
#[derive(Debug)]
pub struct BdbContext {
    pub uid: u32,
    pub directory: Directory,
    pub upstream: Upstream,
    /// 0 means unlimited.
    pub max_connections: usize,
    /// Connections open right now.
    pub connections: AtomicUsize,
}

impl BdbContext {
    pub fn new(uid: u32, directory: Directory, upstream: Upstream, max_connections: usize) -> Self {
        Self { uid, directory, upstream, max_connections, connections: AtomicUsize::new(0) }
    }
}
