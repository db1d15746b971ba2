//! Extractors whose failures are JSON errors that say what is wrong: a malformed or
//! mistyped body names the field or the byte position (never echoing a value, which
//! could be a password), a non-numeric uid is a 404.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::control::Control;

/// Bodies larger than this are refused with 413 (the largest legitimate one, a user
/// with a long password and many roles, is a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a handler waits for the whole body once it starts reading it, put in
/// each request's extensions by the server (`admin.body_timeout_secs`). Without
/// it (requests made in tests through the router) the default applies.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

/// `admin.body_timeout_secs`'s default.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Control> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Control) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// The body's bytes, size-limited, for handlers that parse it in two steps.
pub struct RawBody(pub Bytes);

impl FromRequest<Control> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Control) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {BODY_LIMIT} bytes"),
            )
        };
        // A declared length over the limit is refused before reading a byte: the
        // client, if it sent `Expect: 100-continue`, then never sends the body (hyper
        // sends `100 Continue` only once the body is read).
        let declared = req.headers().get(axum::http::header::CONTENT_LENGTH);
        if declared.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).is_some_and(|n| n > BODY_LIMIT as u64)
        {
            return Err(too_large());
        }
        // A body trickled byte by byte would keep its request in flight (and its
        // connection open) for ever: bounded, like the head.
        let limit = req.extensions().get::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state)).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body did not arrive within {} s", limit.as_secs()),
            )
        })?;
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request("invalid_body", "the request body could not be read")
            }
        })?;
        Ok(Self(bytes))
    }
}

/// Parses a JSON body with an error that names the problem without quoting values.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::bad_request("missing_body", "a JSON body is required")),
        // Every body of this API is an object; serde would otherwise read a struct
        // from an array, field by position.
        Some(b'{') => {}
        Some(_) => return Err(ApiError::bad_request("invalid_json", "the body must be a JSON object")),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = format!("line {} column {}", inner.line(), inner.column());
        let description = match inner.classify() {
            serde_json::error::Category::Data => describe_data_error(&inner.to_string(), &path, &at),
            _ => format!("malformed JSON: {}", strip_position(&inner.to_string())) + &format!(" at {at}"),
        };
        ApiError::bad_request("invalid_json", description)
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("malformed JSON: trailing characters at line {} column {}", e.line(), e.column()),
        )
    })?;
    Ok(value)
}

fn strip_position(msg: &str) -> &str {
    msg.rsplit_once(" at line ").map_or(msg, |(m, _)| m)
}

/// serde's "invalid type: string \"x\", expected u32" would echo the value; keep
/// only what is expected and where.
fn describe_data_error(msg: &str, path: &str, at: &str) -> String {
    let msg = strip_position(msg);
    let field = if path == "." { String::new() } else { format!("field `{path}`: ") };
    if msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
        || msg.starts_with("invalid length")
    {
        let expected = msg.split_once(", expected ").map_or("another value", |(_, e)| e);
        format!("{field}wrong type or value, expected {expected} (at {at})")
    } else {
        // missing field / unknown field / duplicate field: these name fields only.
        format!("{field}{msg} (at {at})")
    }
}

/// A path's `{uid}` as sent, `None` if it is not UTF-8 once percent-decoded (`%FF`):
/// axum's own rejection would be a plain-text 400, and such a uid names no object.
pub struct RawUid(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RawUid {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Self(Path::<String>::from_request_parts(parts, state).await.ok().map(|Path(raw)| raw)))
    }
}

/// Parses a path uid; anything but a number names no object, hence 404.
pub fn uid(raw: &RawUid, code: &'static str, what: &str) -> Result<u32, ApiError> {
    let not_found =
        |shown: &str| ApiError::not_found(code, format!("{what} {shown} does not exist (uids are integers)"));
    match &raw.0 {
        Some(raw) => raw.parse::<u32>().map_err(|_| not_found(&format!("{raw:?}"))),
        None => Err(not_found("(not UTF-8)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        password: String,
        n: Option<u32>,
    }

    #[test]
    fn errors_name_the_problem_not_the_value() {
        let e = parse::<Body>(b"{\"password\": 12345}").unwrap_err();
        assert!(
            e.description.contains("`password`") && e.description.contains("a string"),
            "{}",
            e.description
        );
        assert!(!e.description.contains("12345"));
        let e = parse::<Body>(b"{\"password\": \"x\", \"n\": \"hunter2\"}").unwrap_err();
        assert!(!e.description.contains("hunter2"), "{}", e.description);
        let e = parse::<Body>(b"{\n\"password\": \"a\"\n\"n\": 1}").unwrap_err();
        assert!(e.description.contains("line 3"), "{}", e.description);
        let e = parse::<Body>(b"{\"password\": \"a\",}").unwrap_err();
        assert!(e.description.starts_with("malformed JSON"), "{}", e.description);
        let e = parse::<Body>(b"{}").unwrap_err();
        assert!(e.description.contains("missing field `password`"), "{}", e.description);
        let e = parse::<Body>(b"{\"password\": \"a\", \"colour\": 1}").unwrap_err();
        assert!(e.description.contains("unknown field `colour`"), "{}", e.description);
        assert_eq!(parse::<Body>(b"").unwrap_err().code, "missing_body");
        let e = parse::<Body>(b"[\"pw\", 1]").unwrap_err();
        assert_eq!((e.code, e.description.as_str()), ("invalid_json", "the body must be a JSON object"));
        assert!(parse::<Body>(b"{\"password\": \"a\"} x").is_err());
    }
}
