//! turnstile: an authenticating proxy for the Redis protocol.
//!
//! Module map:
//! - [`resp`]: RESP framing without I/O (client requests, upstream reply boundaries).
//! - [`admin`]: the admin REST API (axum), Redis Enterprise's password endpoints.
//! - [`authz`]: authorization without I/O: rule strings, the fixed denials, the
//!   readable `CONFIG GET` parameters, turnstile's secret for its upstream users.
//! - [`auth`]: password sets (argon2id), the verification cache, the directory of
//!   databases and users.
//! - [`proxy`]: listeners and connections: AUTH at the proxy, forwarding, ordering.
//! - [`cli`]: operator subcommands that call the admin API (`turnstile passwords`).
//! - [`config`]: the TOML configuration, validated before anything binds.
//! - [`effective`]: the effective configuration `turnstile check-config` prints.
//! - [`descriptors`]: the open file limit, and spare descriptors to shed connections
//!   with when it is reached.
//! - [`control`]: the control plane: the one writer of state (validate → persist → apply).
//! - [`metrics`]: Prometheus counters (relaxed atomics on the data path) and their
//!   text exposition.
//! - [`store`]: durable state (one atomically replaced JSON document) behind a trait.
//! - [`time`]: wall-clock time and ISO 8601, for the data path and the control plane.
//! - [`tls`]: PEM files into rustls configurations for listeners and upstreams.
//! - [`server`]: wires config, directory and listeners together; graceful shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
pub mod control;
pub mod descriptors;
pub mod effective;
pub mod metrics;
pub mod proxy;
pub mod resp;
pub mod server;
pub mod store;
pub mod time;
pub mod tls;
