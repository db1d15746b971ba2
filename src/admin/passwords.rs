//! The password endpoints: databases' default users (`/v1/bdbs/{uid}/passwords`),
//! users (`/v1/users/password`) and the legacy `/v1/cluster` rotation calls.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{Authed, AuthedMayBeExpired};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawBody, RawUid, parse, uid};
use super::views;
use crate::auth::SetChange;
use crate::control::Control;
use crate::control::roles::Permission;

fn op(method: &Method) -> SetChange {
    match *method {
        Method::POST => SetChange::Add,
        Method::DELETE => SetChange::Remove,
        _ => SetChange::Replace,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdbPasswordBody {
    password: String,
}

/// `PUT` replaces the set, `POST` adds, `DELETE` removes. Permission `update_bdb`.
pub async fn bdb_passwords(
    State(control): State<Control>,
    method: Method,
    caller: Authed,
    RawUid(raw): RawUid,
    JsonBody(body): JsonBody<BdbPasswordBody>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::UpdateBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    control.bdb_password(uid, op(&method), &body.password).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPasswordBody {
    username: Option<String>,
    new_password: Option<String>,
    /// Required by DELETE; accepted and ignored by POST/PUT (deprecated in RS).
    old_password: Option<String>,
}

fn required<'a>(v: &'a Option<String>, name: &str) -> ApiResult<&'a str> {
    v.as_deref().ok_or_else(|| ApiError::bad_request("missing_parameter", format!("{name} is required")))
}

/// `POST` adds `new_password`, `PUT` replaces all with it, `DELETE` removes
/// `old_password`. Users may rotate their own passwords (even expired ones);
/// admins anyone's.
pub async fn user_password(
    State(control): State<Control>,
    method: Method,
    AuthedMayBeExpired(caller): AuthedMayBeExpired,
    JsonBody(body): JsonBody<UserPasswordBody>,
) -> ApiResult<Json<Value>> {
    let op = op(&method);
    let password = match op {
        SetChange::Remove => required(&body.old_password, "old_password")?,
        _ => required(&body.new_password, "new_password")?,
    };
    control.user_password(&caller, body.username.as_deref(), op, password, None).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyBody {
    username: String,
    old_password: Option<String>,
    new_password: Option<String>,
}

/// The older RS rotation calls on `/v1/cluster` (seed 000), for admins: `POST` adds
/// `new_password`, `DELETE` removes `old_password`, `PUT` replaces all with
/// `new_password`; on `POST`/`PUT`, `old_password` must be a current password.
async fn legacy(
    control: &Control,
    method: &Method,
    caller: Authed,
    body: LegacyBody,
) -> ApiResult<Json<Value>> {
    if !caller.0.is_admin() {
        return Err(
            crate::control::Error::forbidden("password rotation through /v1/cluster is for admins").into()
        );
    }
    let op = op(method);
    match op {
        SetChange::Remove => {
            let old = required(&body.old_password, "old_password")?;
            control.user_password(&caller.0, Some(&body.username), op, old, None).await?;
        }
        _ => {
            let new = required(&body.new_password, "new_password")?;
            let old = required(&body.old_password, "old_password")?;
            control.user_password(&caller.0, Some(&body.username), op, new, Some(old)).await?;
        }
    }
    Ok(Json(json!({})))
}

/// `POST|DELETE /v1/cluster`: the legacy rotation calls.
pub async fn cluster_rotation(
    State(control): State<Control>,
    method: Method,
    caller: Authed,
    JsonBody(body): JsonBody<LegacyBody>,
) -> ApiResult<Json<Value>> {
    legacy(&control, &method, caller, body).await
}

/// `PUT /v1/cluster`: with a `username`, the legacy "replace all passwords"; without,
/// the cluster settings update.
pub async fn cluster_put(
    State(control): State<Control>,
    caller: Authed,
    RawBody(raw): RawBody,
) -> ApiResult<Json<Value>> {
    let body: Value = parse(&raw)?;
    if body.get("username").is_some() {
        return legacy(&control, &Method::PUT, caller, parse(&raw)?).await;
    }
    caller.require(Permission::UpdateCluster)?;
    let settings = control.update_cluster(parse(&raw)?).await?;
    Ok(Json(views::cluster(&settings)))
}
