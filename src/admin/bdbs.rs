//! `/v1/bdbs` and `/v1/bdbs/{uid}`: databases, created, changed and deleted live
//! (their listeners start and stop with them).

use axum::Json;
use axum::extract::State;

use super::caller::Authed;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawUid, uid};
use super::responses::{Auth, BadBody, Conflict, Invalid, NotFound, Refused, Unavailable};
use super::views::{self, BdbView, Empty};
use crate::control::roles::Permission;
use crate::control::{Control, bdbs};

/// List the databases.
#[utoipa::path(get, path = "/bdbs", tag = "bdbs",
    responses((status = 200, description = "Every database", body = [BdbView]), Auth))]
pub async fn list_bdbs(State(c): State<Control>, caller: Authed) -> ApiResult<Json<Vec<BdbView>>> {
    caller.require(Permission::ViewBdb)?;
    let snap = c.snapshot();
    Ok(Json(snap.bdbs.values().map(|b| views::bdb(&c, b)).collect()))
}

/// Get a database.
#[utoipa::path(get, path = "/bdbs/{uid}", tag = "bdbs",
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "The database", body = BdbView), Auth, NotFound))]
pub async fn get_bdb(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<BdbView>> {
    caller.require(Permission::ViewBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    let snap = c.snapshot();
    let b = snap
        .bdbs
        .get(&uid)
        .ok_or_else(|| ApiError::not_found("bdb_not_exist", format!("database {uid} does not exist")))?;
    Ok(Json(views::bdb(&c, b)))
}

/// Create a database and start its listener (406 `port_unavailable` if its address
/// cannot be bound; nothing is stored then).
#[utoipa::path(post, path = "/bdbs", tag = "bdbs", request_body = bdbs::NewBdb,
    responses((status = 200, description = "The created database", body = BdbView),
        Auth, BadBody, Conflict, Refused, Unavailable))]
pub async fn create_bdb(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<bdbs::NewBdb>,
) -> ApiResult<Json<BdbView>> {
    let who = caller.require(Permission::CreateBdb)?;
    let b = c.create_bdb_by(Some(who), body).await?;
    Ok(Json(views::bdb(&c, &b)))
}

/// Change a database: only the fields given change. A database from the config file
/// keeps its address and upstream (400).
#[utoipa::path(put, path = "/bdbs/{uid}", tag = "bdbs", request_body = bdbs::BdbPatch,
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "The changed database", body = BdbView),
        Auth, BadBody, NotFound, Conflict, Refused, Unavailable))]
pub async fn update_bdb(
    State(c): State<Control>,
    caller: Authed,
    raw: RawUid,
    JsonBody(body): JsonBody<bdbs::BdbPatch>,
) -> ApiResult<Json<BdbView>> {
    caller.require(Permission::UpdateBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    let b = c.update_bdb(uid, body).await?;
    Ok(Json(views::bdb(&c, &b)))
}

/// Delete a database: its listener stops and its connections are closed. One from
/// the config file is refused (400).
#[utoipa::path(delete, path = "/bdbs/{uid}", tag = "bdbs",
    params(("uid" = u32, Path, description = "The database's uid")),
    responses((status = 200, description = "Deleted", body = Empty), Auth, Invalid, NotFound, Unavailable))]
pub async fn delete_bdb(State(c): State<Control>, caller: Authed, raw: RawUid) -> ApiResult<Json<Empty>> {
    let who = caller.require(Permission::DeleteBdb)?;
    let uid = uid(&raw, "bdb_not_exist", "database")?;
    c.delete_bdb_by(Some(who), uid).await?;
    Ok(Json(Empty {}))
}
