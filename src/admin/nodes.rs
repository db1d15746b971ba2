//! `GET /v1/nodes`: the fleet's nodes (RS has the endpoint): uid, address, status,
//! the state version each applies, when each was last heard from.

use axum::Json;
use axum::extract::State;

use super::caller::Authed;
use super::error::ApiResult;
use super::responses::Auth;
use crate::control::Control;
use crate::control::fleet::NodeView;
use crate::control::roles::Permission;

/// With a file store, the one node; with a shared store, every registered node,
/// `stale` when alive but behind the store, `down` when its heartbeat stopped.
#[utoipa::path(get, path = "/nodes", tag = "cluster",
    responses((status = 200, description = "The fleet's nodes", body = Vec<NodeView>),
        (status = 503, description = "The store cannot be reached", body = Object), Auth))]
pub async fn list_nodes(State(control): State<Control>, caller: Authed) -> ApiResult<Json<Vec<NodeView>>> {
    caller.require(Permission::ViewCluster)?;
    Ok(Json(control.nodes().await?))
}
