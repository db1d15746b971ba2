//! Operator subcommands that talk to a running turnstile's admin API (so they need
//! no access to its store): `turnstile passwords …`.

pub mod http;
pub mod passwords;
