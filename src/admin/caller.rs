//! HTTP Basic authentication of admin API callers (name or email, any one of the
//! user's passwords), with 401 vs 403 as RS answers them.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

use super::error::ApiError;
use crate::control::{Caller, Control, Error, roles::Permission};

/// An authenticated caller whose password has not expired.
pub struct Authed(pub Caller);

/// An authenticated caller, expired password allowed (only for rotating it).
pub struct AuthedMayBeExpired(pub Caller);

async fn authenticate(parts: &Parts, control: &Control) -> Result<Caller, ApiError> {
    let missing =
        || ApiError::from(Error::unauthorized("unauthorized", "HTTP Basic credentials are required"));
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let encoded = value.to_str().ok().and_then(|v| v.strip_prefix("Basic ")).ok_or_else(missing)?;
    let mut buf = Zeroizing::new(vec![0u8; encoded.len()]);
    let decoded = Base64::decode(encoded.trim(), &mut buf).map_err(|_| missing())?;
    let text = std::str::from_utf8(decoded).map_err(|_| missing())?;
    let (login, password) = text.split_once(':').ok_or_else(missing)?;
    let caller = control.login(login, password).await?;
    if !caller.has_api_access() {
        return Err(Error::forbidden("this user has no admin API access (role none)").into());
    }
    Ok(caller)
}

impl FromRequestParts<Control> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, control: &Control) -> Result<Self, ApiError> {
        let caller = authenticate(parts, control).await?;
        if caller.expired {
            return Err(Error::unauthorized(
                "password_expired",
                "the password has expired; set a new one with /v1/users/password",
            )
            .into());
        }
        Ok(Self(caller))
    }
}

impl FromRequestParts<Control> for AuthedMayBeExpired {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, control: &Control) -> Result<Self, ApiError> {
        authenticate(parts, control).await.map(Self)
    }
}

impl Authed {
    /// 403 unless the caller's roles grant `p`.
    pub fn require(&self, p: Permission) -> Result<&Caller, ApiError> {
        if self.0.can(p) {
            Ok(&self.0)
        } else {
            Err(Error::forbidden("the caller's role does not allow this").into())
        }
    }
}

/// Admin-level users and roles are only for admins to grant, change or remove.
pub fn admin_only(caller: &Caller, touches_admin: bool) -> Result<(), ApiError> {
    if touches_admin && !caller.is_admin() {
        return Err(Error::forbidden("only an admin may grant, change or remove admin rights").into());
    }
    Ok(())
}
