//! turnstile: an authenticating proxy for the Redis protocol.
//!
//! Module map:
//! - [`resp`]: RESP framing without I/O (client requests, upstream reply boundaries).
//! - [`auth`]: password sets (argon2id), the verification cache, the directory of
//!   databases and users.
//! - [`proxy`]: listeners and connections: AUTH at the proxy, forwarding, ordering.
//! - [`config`]: the TOML configuration, validated before anything binds.
//! - [`server`]: wires config, directory and listeners together; graceful shutdown.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod proxy;
pub mod resp;
pub mod server;
