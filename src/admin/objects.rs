//! The object endpoints: users, databases, roles, Redis ACLs, cluster settings and
//! policy. Creates answer 200 with the created object, as RS does.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::caller::Authed;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, uid};
use super::views;
use crate::control::roles::Permission;
use crate::control::{Control, bdbs, objects};

fn user_not_found(uid: u32) -> ApiError {
    ApiError::not_found("user_not_exist", format!("user {uid} does not exist"))
}

pub async fn list_users(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewUser)?;
    let snap = c.snapshot();
    Ok(Json(Value::Array(snap.users.values().map(|u| views::user(&c, u)).collect())))
}

pub async fn get_user(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    let snap = c.snapshot();
    let u = snap.users.get(&uid).ok_or_else(|| user_not_found(uid))?;
    Ok(Json(views::user(&c, u)))
}

pub async fn create_user(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::NewUser>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::CreateUser)?;
    let u = c.create_user(body).await?;
    Ok(Json(views::user(&c, &u)))
}

pub async fn update_user(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<objects::UserPatch>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::UpdateUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    let u = c.update_user(uid, body).await?;
    Ok(Json(views::user(&c, &u)))
}

pub async fn delete_user(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::DeleteUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    c.delete_user(uid).await?;
    Ok(Json(json!({})))
}

pub async fn list_bdbs(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewBdb)?;
    let snap = c.snapshot();
    Ok(Json(Value::Array(snap.bdbs.values().map(|b| views::bdb(&c, b)).collect())))
}

pub async fn get_bdb(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    let snap = c.snapshot();
    let b = snap
        .bdbs
        .get(&uid)
        .ok_or_else(|| ApiError::not_found("bdb_not_exist", format!("database {uid} does not exist")))?;
    Ok(Json(views::bdb(&c, b)))
}

pub async fn create_bdb(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<bdbs::NewBdb>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::CreateBdb)?;
    let b = c.create_bdb(body).await?;
    Ok(Json(views::bdb(&c, &b)))
}

pub async fn update_bdb(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<bdbs::BdbPatch>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::UpdateBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    let b = c.update_bdb(uid, body).await?;
    Ok(Json(views::bdb(&c, &b)))
}

pub async fn delete_bdb(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::DeleteBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    c.delete_bdb(uid).await?;
    Ok(Json(json!({})))
}

pub async fn list_roles(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(Value::Array(c.snapshot().roles.values().map(views::role).collect())))
}

pub async fn get_role(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    let snap = c.snapshot();
    let r = snap
        .roles
        .get(&uid)
        .ok_or_else(|| ApiError::not_found("role_not_exist", format!("role {uid} does not exist")))?;
    Ok(Json(views::role(r)))
}

pub async fn create_role(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::RoleInput>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    Ok(Json(views::role(&c.create_role(body).await?)))
}

pub async fn update_role(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<objects::RoleInput>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    Ok(Json(views::role(&c.update_role(uid, body).await?)))
}

pub async fn delete_role(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    c.delete_role(uid).await?;
    Ok(Json(json!({})))
}

pub async fn list_acls(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(Value::Array(c.snapshot().redis_acls.values().map(views::acl).collect())))
}

pub async fn get_acl(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    let snap = c.snapshot();
    let a = snap.redis_acls.get(&uid).ok_or_else(|| {
        ApiError::not_found("redis_acl_not_exist", format!("redis ACL {uid} does not exist"))
    })?;
    Ok(Json(views::acl(a)))
}

pub async fn create_acl(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::AclInput>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    Ok(Json(views::acl(&c.create_acl(body).await?)))
}

pub async fn update_acl(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<objects::AclInput>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    Ok(Json(views::acl(&c.update_acl(uid, body).await?)))
}

pub async fn delete_acl(
    State(c): State<Control>,
    caller: Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    c.delete_acl(uid).await?;
    Ok(Json(json!({})))
}

pub async fn get_cluster(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(views::cluster(&c.snapshot().cluster)))
}

pub async fn get_policy(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(views::policy(&c.snapshot().policy)))
}

pub async fn put_policy(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::PolicyPatch>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::UpdateCluster)?;
    Ok(Json(views::policy(&c.update_policy(body).await?)))
}
