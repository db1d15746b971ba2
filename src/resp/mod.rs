//! RESP without I/O: client request framing, upstream reply boundaries, replies.
//!
//! Hand-written rather than built on `redis-protocol`'s decoder because the proxy
//! must (a) reproduce Redis's exact limits and protocol errors, inline syntax
//! included, and (b) stream values of hundreds of MB without buffering them; a
//! frame decoder materialises whole frames. `redis-protocol` encodes the few
//! commands turnstile sends itself and checks this scanner in the tests.

pub mod command;
pub mod encode;
pub mod inline;
pub mod number;
pub mod replies;
pub mod reply;
pub mod request;
