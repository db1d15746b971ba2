//! The object endpoints: users, databases, roles, Redis ACLs, cluster settings and
//! policy. Creates answer 200 with the created object, as RS does.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::caller::Authed;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawUid, uid};
use super::views;
use crate::control::roles::{Permission, makes_admin};
use crate::control::{Caller, Error};
use crate::control::{Control, bdbs, objects};

/// Admin-level users and roles are only for admins to grant or change.
fn admin_only(caller: &Caller, touches_admin: bool) -> ApiResult<()> {
    if touches_admin && !caller.is_admin() {
        return Err(Error::forbidden("only an admin may grant, change or remove admin rights").into());
    }
    Ok(())
}

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
    RawUid(raw): RawUid,
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
    let who = caller.require(Permission::CreateUser)?;
    admin_only(who, makes_admin(&c.snapshot(), body.role.as_deref(), &body.role_uids))?;
    let u = c.create_user(body).await?;
    Ok(Json(views::user(&c, &u)))
}

pub async fn update_user(
    State(c): State<Control>,
    caller: Authed,
    RawUid(raw): RawUid,
    JsonBody(body): JsonBody<objects::UserPatch>,
) -> ApiResult<Json<Value>> {
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

pub async fn delete_user(
    State(c): State<Control>,
    caller: Authed,
    RawUid(raw): RawUid,
) -> ApiResult<Json<Value>> {
    let who = caller.require(Permission::DeleteUser)?;
    let uid = uid(&raw, "user_not_exist", "user")?;
    let snap = c.snapshot();
    if let Some(target) = snap.users.get(&uid) {
        admin_only(who, makes_admin(&snap, Some(&target.role), &target.role_uids))?;
    }
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
    RawUid(raw): RawUid,
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
    RawUid(raw): RawUid,
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
    RawUid(raw): RawUid,
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
    RawUid(raw): RawUid,
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
    let who = caller.require(Permission::ManageRoles)?;
    admin_only(who, body.management.as_deref() == Some("admin"))?;
    Ok(Json(views::role(&c.create_role(body).await?)))
}

pub async fn update_role(
    State(c): State<Control>,
    caller: Authed,
    RawUid(raw): RawUid,
    JsonBody(body): JsonBody<objects::RoleInput>,
) -> ApiResult<Json<Value>> {
    let who = caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    let was_admin = c.snapshot().roles.get(&uid).is_some_and(|r| r.management == "admin");
    admin_only(who, was_admin || body.management.as_deref() == Some("admin"))?;
    Ok(Json(views::role(&c.update_role(uid, body).await?)))
}

pub async fn delete_role(
    State(c): State<Control>,
    caller: Authed,
    RawUid(raw): RawUid,
) -> ApiResult<Json<Value>> {
    let who = caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "role_not_exist", "role")?;
    admin_only(who, c.snapshot().roles.get(&uid).is_some_and(|r| r.management == "admin"))?;
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
    RawUid(raw): RawUid,
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
    RawUid(raw): RawUid,
    JsonBody(body): JsonBody<objects::AclInput>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ManageRoles)?;
    let uid = uid(&raw, "redis_acl_not_exist", "redis ACL")?;
    Ok(Json(views::acl(&c.update_acl(uid, body).await?)))
}

pub async fn delete_acl(
    State(c): State<Control>,
    caller: Authed,
    RawUid(raw): RawUid,
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
