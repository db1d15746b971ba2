//! `/v1/users` and `/v1/users/{uid}`: admin API users. Creates answer 200 with the
//! created object, as RS does; only admins grant, change or remove admin rights.

use axum::Json;
use axum::extract::State;

use super::caller::{Authed, admin_only};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawUid, uid};
use super::responses::{Auth, BadBody, Conflict, NotFound, Refused, Unavailable};
use super::views::{self, Empty, UserView};
use crate::control::roles::{Permission, makes_admin};
use crate::control::{Control, objects};

fn user_not_found(uid: u32) -> ApiError {
    ApiError::not_found("user_not_exist", format!("user {uid} does not exist"))
}

/// List the users.
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, description = "Every user", body = [UserView]), Auth))]
pub async fn list_users(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Vec<UserView>>> {
    caller.require(Permission::ViewUser)?;
    let snap = c.snapshot();
    Ok(Json(snap.users.values().map(|u| views::user(&c, u)).collect()))
}

/// Get a user.
#[utoipa::path(get, path = "/users/{uid}", tag = "users",
    params(("uid" = u32, Path, description = "The user's uid")),
    responses((status = 200, description = "The user", body = UserView), Auth, NotFound))]
pub async fn get_user(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<UserView>> {
    caller.require(Permission::ViewUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    let snap = c.snapshot();
    let u = snap.users.get(&uid).ok_or_else(|| user_not_found(uid))?;
    Ok(Json(views::user(&c, u)))
}

/// Create a user (its first password is `password`).
#[utoipa::path(post, path = "/users", tag = "users", request_body = objects::NewUser,
    responses((status = 200, description = "The created user", body = UserView),
        Auth, BadBody, Conflict, Unavailable))]
pub async fn create_user(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::NewUser>,
) -> ApiResult<Json<UserView>> {
    let who = caller.require(Permission::CreateUser)?;
    admin_only(who, makes_admin(&c.snapshot(), body.role.as_deref(), &body.role_uids))?;
    let u = c.create_user_by(Some(who), body).await?;
    Ok(Json(views::user(&c, &u)))
}

/// Change a user: only the fields given change; `password` replaces all of its
/// passwords (and unlocks it).
#[utoipa::path(put, path = "/users/{uid}", tag = "users", request_body = objects::UserPatch,
    params(("uid" = u32, Path, description = "The user's uid")),
    responses((status = 200, description = "The changed user", body = UserView),
        Auth, BadBody, NotFound, Conflict, Unavailable))]
pub async fn update_user(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<objects::UserPatch>,
) -> ApiResult<Json<UserView>> {
    let who = caller.require(Permission::UpdateUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    let snap = c.snapshot();
    let target = snap.users.get(&uid).ok_or_else(|| user_not_found(uid))?;
    let was_admin = makes_admin(&snap, Some(&target.role), &target.role_uids);
    let becomes_admin = makes_admin(
        &snap,
        body.role.as_deref().or(Some(&target.role)),
        body.role_uids.as_deref().unwrap_or(&target.role_uids),
    );
    admin_only(who, was_admin || becomes_admin)?;
    let u = c.update_user(uid, body).await?;
    Ok(Json(views::user(&c, &u)))
}

/// Delete a user and close its database connections. The last admin cannot be
/// deleted (406 `cannot_delete_last_admin`).
#[utoipa::path(delete, path = "/users/{uid}", tag = "users",
    params(("uid" = u32, Path, description = "The user's uid")),
    responses((status = 200, description = "Deleted", body = Empty), Auth, NotFound, Refused, Unavailable))]
pub async fn delete_user(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<Empty>> {
    let who = caller.require(Permission::DeleteUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    let snap = c.snapshot();
    if let Some(target) = snap.users.get(&uid) {
        admin_only(who, makes_admin(&snap, Some(&target.role), &target.role_uids))?;
    }
    c.delete_user_by(Some(who), uid).await?;
    Ok(Json(Empty {}))
}
