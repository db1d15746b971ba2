//! Authorization: the upstream ACL users turnstile manages, one per (database, rule)
//! in use, and which of them a client's commands run as.
//!
//! Redis itself enforces every rule: a client's forwarded commands travel on
//! upstream connections logged in as the user of the rule its `AUTH` earned, so
//! `-NOPERM`, `-EXECABORT` and script ACL failures are Redis's own, byte for byte.
//! The service credential of a database only manages those users
//! (`proxy::users`); no client command ever runs with it. What no rule may grant is
//! in [`denials`]. This module holds no I/O.

pub mod config_get;
pub mod denials;
mod glob;
pub mod names;
pub mod rule;
pub mod secret;

use std::sync::Arc;

pub use denials::FIXED_DENIALS;
pub use secret::{Secret, derive_password};

/// Every upstream user turnstile creates has a name starting with this: no operator
/// names a user like it, and reconciliation never touches a user without it.
pub const USER_PREFIX: &str = "__turnstile:";

/// RS's "Full Access": what a database's default user may do (before the fixed
/// denials).
pub const FULL_ACCESS: &str = "~* &* +@all";

/// Which rule of a database a client's commands run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKey {
    /// The database's default user: full access.
    Default,
    /// A `redis_acl`, by uid, granted through the database's `roles_permissions`.
    Acl(u32),
}

impl RuleKey {
    /// The part of the upstream user's name that names the rule.
    pub fn tag(&self) -> String {
        match self {
            Self::Default => "default".into(),
            Self::Acl(uid) => format!("acl{uid}"),
        }
    }
}

/// A client's rights on a database: the rule and its text as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: RuleKey,
    pub rule: Arc<str>,
}

impl Grant {
    /// The default user's grant.
    pub fn full_access() -> Self {
        // One string for the process: every default-user connection holds a grant.
        static RULE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(FULL_ACCESS));
        Self { key: RuleKey::Default, rule: Arc::clone(&RULE) }
    }
}
