//! Why an admin operation was refused: a kind (which the HTTP layer maps to a status)
//! and Redis Enterprise's error code. Never carries a password or a hash.

/// Broad class of a refusal; the admin API maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: malformed or invalid parameters.
    BadRequest,
    /// 401: no valid credentials (or locked, or expired).
    Unauthorized,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: no such object.
    NotFound,
    /// 406: "invalid configuration parameters" (RS's code for rejected changes).
    NotAcceptable,
    /// 409: the object already exists.
    Conflict,
    /// 503: the change could not be made durable; nothing was applied.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct Error {
    pub kind: Kind,
    pub code: &'static str,
    pub description: String,
    /// Structured detail for the body (`password_in_use`: the usage that refused).
    pub detail: Option<serde_json::Value>,
}

impl Error {
    pub fn new(kind: Kind, code: &'static str, description: impl Into<String>) -> Self {
        Self { kind, code, description: description.into(), detail: None }
    }

    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(Kind::BadRequest, code, description)
    }

    pub fn not_found(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, code, description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(Kind::Forbidden, "unauthorized_action", description)
    }

    pub fn unauthorized(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(Kind::Unauthorized, code, description)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
