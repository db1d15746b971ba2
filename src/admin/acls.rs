//! `/v1/redis_acls` and `/v1/redis_acls/{uid}`: named Redis ACL rule strings.

use axum::Json;
use axum::extract::State;

use super::caller::Authed;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawUid, uid};
use super::responses::{Auth, BadBody, Conflict, NotFound, Unavailable};
use super::views::{self, AclView, Empty};
use crate::control::roles::Permission;
use crate::control::{Control, objects};

/// List the Redis ACLs.
#[utoipa::path(get, path = "/redis_acls", tag = "redis_acls",
    responses((status = 200, description = "Every Redis ACL", body = [AclView]), Auth))]
pub async fn list_acls(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Vec<AclView>>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(c.snapshot().redis_acls.values().map(views::acl).collect()))
}

/// Get a Redis ACL.
#[utoipa::path(get, path = "/redis_acls/{uid}", tag = "redis_acls",
    params(("uid" = u32, Path, description = "The Redis ACL's uid")),
    responses((status = 200, description = "The Redis ACL", body = AclView), Auth, NotFound))]
pub async fn get_acl(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<AclView>> {
    caller.require(Permission::ViewCluster)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    let snap = c.snapshot();
    let a = snap.redis_acls.get(&uid).ok_or_else(|| {
        ApiError::not_found("redis_acl_not_exist", format!("redis ACL {uid} does not exist"))
    })?;
    Ok(Json(views::acl(a)))
}

/// Create a Redis ACL (`name` and `acl` are required).
#[utoipa::path(post, path = "/redis_acls", tag = "redis_acls", request_body = objects::AclInput,
    responses((status = 200, description = "The created Redis ACL", body = AclView),
        Auth, BadBody, Conflict, Unavailable))]
pub async fn create_acl(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::AclInput>,
) -> ApiResult<Json<AclView>> {
    caller.require(Permission::ManageRoles)?;
    Ok(Json(views::acl(&c.create_acl_by(Some(&caller.0), body).await?)))
}

/// Change a Redis ACL: only the fields given change.
#[utoipa::path(put, path = "/redis_acls/{uid}", tag = "redis_acls", request_body = objects::AclInput,
    params(("uid" = u32, Path, description = "The Redis ACL's uid")),
    responses((status = 200, description = "The changed Redis ACL", body = AclView),
        Auth, BadBody, NotFound, Conflict, Unavailable))]
pub async fn update_acl(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<objects::AclInput>,
) -> ApiResult<Json<AclView>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    Ok(Json(views::acl(&c.update_acl_by(Some(&caller.0), uid, body).await?)))
}

/// Delete a Redis ACL; one still used by a database is refused (409 `redis_acl_in_use`).
#[utoipa::path(delete, path = "/redis_acls/{uid}", tag = "redis_acls",
    params(("uid" = u32, Path, description = "The Redis ACL's uid")),
    responses((status = 200, description = "Deleted", body = Empty), Auth, NotFound, Conflict, Unavailable))]
pub async fn delete_acl(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<Empty>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    c.delete_acl_by(Some(&caller.0), uid).await?;
    Ok(Json(Empty {}))
}
