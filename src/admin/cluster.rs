//! `GET /v1/cluster` and `/v1/cluster/policy`: cluster settings (password
//! complexity, expiration) and the admin login lockout policy. `PUT /v1/cluster`,
//! which doubles as the legacy rotation call, is in `passwords`.

use axum::Json;
use axum::extract::State;

use super::caller::Authed;
use super::error::ApiResult;
use super::extract::JsonBody;
use super::responses::{Auth, BadBody, Unavailable};
use super::views::{self, ClusterView, PolicyView};
use crate::control::roles::Permission;
use crate::control::{Control, objects};

/// Get the cluster settings.
#[utoipa::path(get, path = "/cluster", tag = "cluster",
    responses((status = 200, description = "The cluster settings", body = ClusterView), Auth))]
pub async fn get_cluster(State(c): State<Control>, caller: Authed) -> ApiResult<Json<ClusterView>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(views::cluster(&c.snapshot().cluster)))
}

/// Get the admin login lockout policy.
#[utoipa::path(get, path = "/cluster/policy", tag = "cluster",
    responses((status = 200, description = "The lockout policy", body = PolicyView), Auth))]
pub async fn get_policy(State(c): State<Control>, caller: Authed) -> ApiResult<Json<PolicyView>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(views::policy(&c.snapshot().policy)))
}

/// Change the admin login lockout policy: only the fields given change.
#[utoipa::path(put, path = "/cluster/policy", tag = "cluster", request_body = objects::PolicyPatch,
    responses((status = 200, description = "The new policy", body = PolicyView), Auth, BadBody, Unavailable))]
pub async fn put_policy(
    State(c): State<Control>,
    caller: Authed,
    JsonBody(body): JsonBody<objects::PolicyPatch>,
) -> ApiResult<Json<PolicyView>> {
    caller.require(Permission::UpdateCluster)?;
    Ok(Json(views::policy(&c.update_policy(body).await?)))
}
