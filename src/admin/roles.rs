//! `/v1/roles` and `/v1/roles/{uid}`: RBAC roles. Only admins create or change an
//! admin-level role.

use axum::Json;
use axum::extract::State;

use super::caller::{Authed, admin_only};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawUid, uid};
use super::responses::{Auth, BadBody, Conflict, NotFound, Unavailable};
use super::views::{self, Empty, RoleView};
use crate::control::roles::Permission;
use crate::control::{Control, objects};

/// List the roles.
#[utoipa::path(get, path = "/roles", tag = "roles",
    responses((status = 200, description = "Every role", body = [RoleView]), Auth))]
pub async fn list_roles(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Vec<RoleView>>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(c.snapshot().roles.values().map(views::role).collect()))
}

/// Get a role.
#[utoipa::path(get, path = "/roles/{uid}", tag = "roles",
    params(("uid" = u32, Path, description = "The role's uid")),
    responses((status = 200, description = "The role", body = RoleView), Auth, NotFound))]
pub async fn get_role(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<RoleView>> {
    caller.require(Permission::ViewCluster)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    let snap = c.snapshot();
    let r = snap
        .roles
        .get(&uid)
        .ok_or_else(|| ApiError::not_found("role_not_exist", format!("role {uid} does not exist")))?;
    Ok(Json(views::role(r)))
}

/// Create a role (`name` and `management` are required).
#[utoipa::path(post, path = "/roles", tag = "roles", request_body = objects::RoleInput,
    responses((status = 200, description = "The created role", body = RoleView),
        Auth, BadBody, Conflict, Unavailable))]
pub async fn create_role(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::RoleInput>,
) -> ApiResult<Json<RoleView>> {
    let who = caller.require(Permission::ManageRoles)?;
    admin_only(who, body.management.as_deref() == Some("admin"))?;
    Ok(Json(views::role(&c.create_role(body).await?)))
}

/// Change a role: only the fields given change.
#[utoipa::path(put, path = "/roles/{uid}", tag = "roles", request_body = objects::RoleInput,
    params(("uid" = u32, Path, description = "The role's uid")),
    responses((status = 200, description = "The changed role", body = RoleView),
        Auth, BadBody, NotFound, Conflict, Unavailable))]
pub async fn update_role(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<objects::RoleInput>,
) -> ApiResult<Json<RoleView>> {
    let who = caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    let was_admin = c.snapshot().roles.get(&uid).is_some_and(|r| r.management == "admin");
    admin_only(who, was_admin || body.management.as_deref() == Some("admin"))?;
    Ok(Json(views::role(&c.update_role(uid, body).await?)))
}

/// Delete a role; one still given to users or databases is refused (409 `role_in_use`).
#[utoipa::path(delete, path = "/roles/{uid}", tag = "roles",
    params(("uid" = u32, Path, description = "The role's uid")),
    responses((status = 200, description = "Deleted", body = Empty), Auth, NotFound, Conflict, Unavailable))]
pub async fn delete_role(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<Empty>> {
    let who = caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    admin_only(who, c.snapshot().roles.get(&uid).is_some_and(|r| r.management == "admin"))?;
    c.delete_role(uid).await?;
    Ok(Json(Empty {}))
}
