//! The password endpoints: databases' default users (`/v1/bdbs/{uid}/passwords`),
//! users (`/v1/users/password`) and the legacy `/v1/cluster` rotation calls. One
//! handler per method, so each has its own operation in the OpenAPI document.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::caller::{Authed, AuthedMayBeExpired};
use super::error::{ApiError, ApiResult, PasswordInUseBody};
use super::extract::{JsonBody, RawBody, RawUid, parse, uid};
use super::responses::{Auth, BadBody, NotFound, Refused, Unavailable};
use super::views::{self, ClusterView, Empty};
use crate::auth::SetChange;
use crate::control::roles::Permission;
use crate::control::rotation::{Change, Target};
use crate::control::{Control, PasswordsView, objects};
use crate::metrics::RotationEndpoint;

/// A database's default-user password. RS's body is `{"password"}`; turnstile
/// also takes a `label` (POST, PUT), `expire_old_after` (POST), and for DELETE an
/// `id` instead of the password, `unless_used_within`, or `cancel_expiry`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"password": "rotated-pw-2", "label": "deploy-2026-12", "expire_old_after": 86400}))]
#[serde(deny_unknown_fields)]
pub struct BdbPasswordBody {
    /// The password (required but for a DELETE by `id` or `cancel_expiry`).
    password: Option<String>,
    /// DELETE: the password's public id (from the GET), instead of the password.
    id: Option<String>,
    /// POST/PUT: a name for the new password, shown by the GET.
    label: Option<String>,
    /// POST: remove every other password of the set after this many seconds.
    expire_old_after: Option<u64>,
    /// DELETE: refuse (409 `password_in_use`) if the password has open connections
    /// or authenticated one within this many seconds.
    unless_used_within: Option<u64>,
    /// DELETE: cancel the scheduled `expire_old_after`, removing nothing.
    cancel_expiry: Option<bool>,
}

/// turnstile's rotation options, as both bodies have them (serde cannot flatten a
/// struct into a body that refuses unknown fields).
struct RotationOptions<'a> {
    id: Option<&'a str>,
    label: Option<&'a str>,
    expire_old_after: Option<u64>,
    unless_used_within: Option<u64>,
    cancel_expiry: Option<bool>,
}

macro_rules! rotation_options {
    ($body:expr) => {
        RotationOptions {
            id: $body.id.as_deref(),
            label: $body.label.as_deref(),
            expire_old_after: $body.expire_old_after,
            unless_used_within: $body.unless_used_within,
            cancel_expiry: $body.cancel_expiry,
        }
    };
}

impl<'a> RotationOptions<'a> {
    /// The control plane's view of an operation on `password`.
    fn change(self, op: SetChange, password: Option<&'a str>, name: &str) -> ApiResult<Change<'a>> {
        let named = [password.is_some(), self.id.is_some(), self.cancel_expiry == Some(true)];
        if named.iter().filter(|n| **n).count() > 1 {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("give one of {name}, id and cancel_expiry"),
            ));
        }
        let target = match (password, self.id, self.cancel_expiry) {
            (Some(p), _, _) => Target::Password(p),
            (None, Some(id), _) if op == SetChange::Remove => Target::Id(id),
            (None, None, Some(true)) if op == SetChange::Remove => Target::Expiry,
            (None, Some(_), _) | (None, None, Some(true)) => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "id and cancel_expiry are for DELETE",
                ));
            }
            (None, None, _) => {
                return Err(ApiError::bad_request("missing_parameter", format!("{name} is required")));
            }
        };
        Ok(Change {
            op,
            target,
            label: self.label,
            unless_used_within: self.unless_used_within,
            expire_old_after: self.expire_old_after,
        })
    }
}

async fn bdb_password(
    control: Control,
    caller: Authed,
    raw: &RawUid,
    op: SetChange,
    body: BdbPasswordBody,
) -> ApiResult<Json<Empty>> {
    caller.require(Permission::UpdateBdb)?;
    let uid = uid(raw, "bdb_not_exist", "database")?;
    let change = rotation_options!(body).change(op, body.password.as_deref(), "password")?;
    control.bdb_password_change(Some(&caller.0), uid, change).await?;
    control.admin_metrics().rotation(RotationEndpoint::BdbPasswords, op);
    Ok(Json(Empty {}))
}

/// A database's default-user passwords: public ids, labels, who added each and
/// when, last use, open connections and some of their clients, and the scheduled
/// expiry. Never a password or a hash.
#[utoipa::path(get, path = "/bdbs/{uid}/passwords", tag = "passwords",
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "The passwords and their usage", body = PasswordsView), Auth, NotFound))]
pub async fn list_bdb_passwords(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
) -> ApiResult<Json<PasswordsView>> {
    caller.require(Permission::ViewBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    c.bdb_passwords(uid)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("bdb_not_exist", format!("database {uid} does not exist")))
}

/// A user's passwords, as for a database. Users may read their own.
#[utoipa::path(get, path = "/users/{uid}/passwords", tag = "passwords",
    params(("uid" = u32, Path, description = "The user's uid")),
    responses((status = 200, description = "The passwords and their usage", body = PasswordsView), Auth, NotFound))]
pub async fn list_user_passwords(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
) -> ApiResult<Json<PasswordsView>> {
    let uid = uid(&raw, "user_not_exist", "user")?;
    if caller.0.uid != uid {
        caller.require(Permission::ViewUser)?;
    }
    c.user_passwords(uid)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user_not_exist", format!("user {uid} does not exist")))
}

/// Replace all of a database's default-user passwords with this one.
#[utoipa::path(put, path = "/bdbs/{uid}/passwords", tag = "passwords", request_body = BdbPasswordBody,
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "Replaced", body = Empty), Auth, BadBody, NotFound, Refused, Unavailable))]
pub async fn replace_bdb_passwords(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<BdbPasswordBody>,
) -> ApiResult<Json<Empty>> {
    bdb_password(c, caller, &raw, SetChange::Replace, body).await
}

/// Add a password to a database's default-user set (406 `new_password_same_as_current`
/// if it is in the set already).
#[utoipa::path(post, path = "/bdbs/{uid}/passwords", tag = "passwords", request_body = BdbPasswordBody,
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "Added", body = Empty), Auth, BadBody, NotFound, Refused, Unavailable))]
pub async fn add_bdb_password(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<BdbPasswordBody>,
) -> ApiResult<Json<Empty>> {
    bdb_password(c, caller, &raw, SetChange::Add, body).await
}

/// Remove a password from a database's default-user set; the last one cannot be
/// removed (406 `cannot_delete_last_password`).
#[utoipa::path(delete, path = "/bdbs/{uid}/passwords", tag = "passwords", request_body = BdbPasswordBody,
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "Removed", body = Empty),
        (status = 409, description = "`password_in_use`: refused by `unless_used_within`", body = PasswordInUseBody),
        Auth, BadBody, NotFound, Refused, Unavailable))]
pub async fn remove_bdb_password(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<BdbPasswordBody>,
) -> ApiResult<Json<Empty>> {
    bdb_password(c, caller, &raw, SetChange::Remove, body).await
}

/// A user's password change; `username` absent means the caller.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"username": "app-user", "new_password": "user-pw-2"}))]
#[serde(deny_unknown_fields)]
pub struct UserPasswordBody {
    /// The user's name; absent = the caller. Only admins may name another user.
    username: Option<String>,
    /// Required by POST and PUT.
    new_password: Option<String>,
    /// Required by DELETE (unless `id` or `cancel_expiry`); accepted and ignored by
    /// POST/PUT (deprecated in RS).
    old_password: Option<String>,
    /// DELETE: the password's public id (from the GET), instead of the password.
    id: Option<String>,
    /// POST/PUT: a name for the new password, shown by the GET.
    label: Option<String>,
    /// POST: remove every other password of the set after this many seconds.
    expire_old_after: Option<u64>,
    /// DELETE: refuse (409 `password_in_use`) if the password has open connections
    /// or authenticated one within this many seconds.
    unless_used_within: Option<u64>,
    /// DELETE: cancel the scheduled `expire_old_after`, removing nothing.
    cancel_expiry: Option<bool>,
}

fn required<'a>(v: &'a Option<String>, name: &str) -> ApiResult<&'a str> {
    v.as_deref().ok_or_else(|| ApiError::bad_request("missing_parameter", format!("{name} is required")))
}

async fn user_password(
    control: Control,
    caller: AuthedMayBeExpired,
    op: SetChange,
    body: UserPasswordBody,
) -> ApiResult<Json<Empty>> {
    let (password, name) = match op {
        SetChange::Remove => (body.old_password.as_deref(), "old_password"),
        _ => (body.new_password.as_deref(), "new_password"),
    };
    let change = rotation_options!(body).change(op, password, name)?;
    control.user_password_change(&caller.0, body.username.as_deref(), change, None).await?;
    control.admin_metrics().rotation(RotationEndpoint::UsersPassword, op);
    Ok(Json(Empty {}))
}

/// Add `new_password` to a user's passwords. Works with an expired password, so
/// that a user can rotate it.
#[utoipa::path(post, path = "/users/password", tag = "passwords", request_body = UserPasswordBody,
    responses((status = 200, description = "Added", body = Empty), Auth, BadBody, NotFound, Unavailable))]
pub async fn add_user_password(
    State(c): State<Control>,
    caller: AuthedMayBeExpired,
    JsonBody(body): JsonBody<UserPasswordBody>,
) -> ApiResult<Json<Empty>> {
    user_password(c, caller, SetChange::Add, body).await
}

/// Replace all of a user's passwords with `new_password`.
#[utoipa::path(put, path = "/users/password", tag = "passwords", request_body = UserPasswordBody,
    responses((status = 200, description = "Replaced", body = Empty), Auth, BadBody, NotFound, Unavailable))]
pub async fn replace_user_passwords(
    State(c): State<Control>,
    caller: AuthedMayBeExpired,
    JsonBody(body): JsonBody<UserPasswordBody>,
) -> ApiResult<Json<Empty>> {
    user_password(c, caller, SetChange::Replace, body).await
}

/// Remove `old_password` from a user's passwords; the last one cannot be removed
/// (400 `cannot_delete_last_password`).
#[utoipa::path(delete, path = "/users/password", tag = "passwords", request_body = UserPasswordBody,
    responses((status = 200, description = "Removed", body = Empty),
        (status = 409, description = "`password_in_use`: refused by `unless_used_within`", body = PasswordInUseBody),
        Auth, BadBody, NotFound, Unavailable))]
pub async fn remove_user_password(
    State(c): State<Control>,
    caller: AuthedMayBeExpired,
    JsonBody(body): JsonBody<UserPasswordBody>,
) -> ApiResult<Json<Empty>> {
    user_password(c, caller, SetChange::Remove, body).await
}

/// The older RS rotation form (seed 000), for admins.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"username": "app-user", "old_password": "user-pw-3", "new_password": "user-pw-4"}))]
#[serde(deny_unknown_fields)]
pub struct LegacyBody {
    /// The user's name.
    username: String,
    /// DELETE: the password to remove; POST/PUT: must be one of the current passwords.
    old_password: Option<String>,
    /// POST: the password to add; PUT: the one password to keep. Required by both.
    new_password: Option<String>,
}

/// The older RS rotation calls on `/v1/cluster` (seed 000), for admins: `POST` adds
/// `new_password`, `DELETE` removes `old_password`, `PUT` replaces all with
/// `new_password`; on `POST`/`PUT`, `old_password` must be a current password.
async fn legacy(control: &Control, op: SetChange, caller: Authed, body: LegacyBody) -> ApiResult<()> {
    if !caller.0.is_admin() {
        return Err(
            crate::control::Error::forbidden("password rotation through /v1/cluster is for admins").into()
        );
    }
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
    control.admin_metrics().rotation(RotationEndpoint::Cluster, op);
    Ok(())
}

/// Legacy rotation (admins): add `new_password` to user `username`'s passwords;
/// `old_password` must be one of its current ones.
#[utoipa::path(post, path = "/cluster", tag = "passwords", request_body = LegacyBody,
    responses((status = 200, description = "Added", body = Empty), Auth, BadBody, NotFound, Unavailable))]
pub async fn legacy_add_password(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<LegacyBody>,
) -> ApiResult<Json<Empty>> {
    legacy(&c, SetChange::Add, caller, body).await.map(|()| Json(Empty {}))
}

/// Legacy rotation (admins): remove `old_password` from user `username`'s passwords.
#[utoipa::path(delete, path = "/cluster", tag = "passwords", request_body = LegacyBody,
    responses((status = 200, description = "Removed", body = Empty), Auth, BadBody, NotFound, Unavailable))]
pub async fn legacy_remove_password(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<LegacyBody>,
) -> ApiResult<Json<Empty>> {
    legacy(&c, SetChange::Remove, caller, body).await.map(|()| Json(Empty {}))
}

/// `PUT /v1/cluster`'s body: settings, or (with `username`) the legacy rotation.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the body for the document; `cluster_put` dispatches itself
enum ClusterPutBody {
    Settings(objects::ClusterPatch),
    Rotation(LegacyBody),
}

/// What `PUT /v1/cluster` answers: the new settings, or `{}` for a rotation.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClusterPutReply {
    Settings(ClusterView),
    Rotation(Empty),
}

/// Without `username`: change the cluster settings (only the fields given). With
/// `username` (admins): the legacy "replace all of the user's passwords with
/// `new_password`", `old_password` being one of its current ones.
#[utoipa::path(put, path = "/cluster", tag = "cluster", request_body = ClusterPutBody,
    responses((status = 200, description = "The new settings, or `{}` after a rotation", body = ClusterPutReply),
        Auth, BadBody, NotFound, Unavailable))]
pub async fn cluster_put(
    State(control): State<Control>,
    caller: Authed,
    RawBody(raw): RawBody,
) -> ApiResult<Json<ClusterPutReply>> {
    let body: Value = parse(&raw)?;
    if body.get("username").is_some() {
        legacy(&control, SetChange::Replace, caller, parse(&raw)?).await?;
        return Ok(Json(ClusterPutReply::Rotation(Empty {})));
    }
    caller.require(Permission::UpdateCluster)?;
    let settings = control.update_cluster(parse(&raw)?).await?;
    Ok(Json(ClusterPutReply::Settings(views::cluster(&settings))))
}
