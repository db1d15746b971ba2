//! The admin API's error response: RS's `{"error_code", "description", "message"}`
//! (RS documents both `description` and `message`, so both are sent).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::control::{Error, Kind};

/// The JSON body of every error response.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// RS's machine-readable code, e.g. `password_not_complex`, `user_not_exist`.
    pub error_code: &'static str,
    /// What is wrong, for a human; never quotes a password.
    pub description: String,
    /// The same text as `description` (RS's documents use both names).
    pub message: String,
    /// `password_in_use` only (documented as [`PasswordInUseBody`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub usage: Option<serde_json::Value>,
}

/// The 409 `password_in_use` body: the error, and the usage of the passwords
/// that refused the delete (never a password or a hash).
#[derive(Serialize, ToSchema)]
#[schema(as = PasswordInUse)]
pub struct PasswordInUseBody {
    pub error_code: &'static str,
    pub description: String,
    pub message: String,
    pub usage: Vec<crate::control::rotation::EntryView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    pub detail: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into(), detail: None }
    }

    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub fn not_found(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, description)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match e.kind {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self { status, code: e.code, description: e.description, detail: e.detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error_code: self.code,
            message: self.description.clone(),
            description: self.description,
            usage: self.detail,
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"turnstile\""));
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
