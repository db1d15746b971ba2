//! `GET /metrics` (Prometheus), `GET /live`, `GET /ready`, and the layer that times
//! every admin request per route template.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::caller::Authed;
use super::error::ApiResult;
use super::responses::Auth;
use crate::control::Control;
use crate::control::roles::Permission;

/// The Prometheus exposition. Without `admin.metrics_auth` no credentials are asked
/// for: it holds counts, database uids and user names only, never a secret.
#[utoipa::path(get, path = "/metrics", tag = "health", security((), ("basic" = [])),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        Auth))]
pub async fn metrics(State(control): State<Control>, mut parts: Parts) -> ApiResult<Response> {
    if control.metrics_auth() {
        Authed::from_request_parts(&mut parts, &control).await?.require(Permission::ViewCluster)?;
    }
    let inputs = crate::metrics::render::Inputs {
        directory: control.directory(),
        bdbs: control.endpoint_addrs().into_iter().filter_map(|(uid, _)| control.endpoint(uid)).collect(),
        admin: control.admin_metrics(),
        store: control.store_status(),
        state: control.snapshot(),
        store_writes: control.store_writes(),
    };
    let body = crate::metrics::render::render(&inputs);
    Ok(([(header::CONTENT_TYPE, crate::metrics::text::CONTENT_TYPE)], body).into_response())
}

/// 200 while the process serves requests at all.
#[utoipa::path(get, path = "/live", tag = "health", security(()),
    responses((status = 200, description = "The process serves", body = Object)))]
pub async fn live() -> Response {
    axum::Json(json!({"status": "live"})).into_response()
}

/// 200 once the store is loaded and every database listens; 503 (saying why) while
/// one does not, or during shutdown.
#[utoipa::path(get, path = "/ready", tag = "health", security(()),
    responses((status = 200, description = "Store loaded, every database listening", body = Object),
        (status = 503, description = "Not ready: `reason` says why", body = Object)))]
pub async fn ready(State(control): State<Control>) -> Response {
    // A store that cannot be reached leaves the node ready: it serves AUTH and
    // traffic from its last known state, and a load balancer must keep sending
    // clients. `/ready` says so, and writes are refused meanwhile.
    let s = control.store_status();
    let store = json!({
        "kind": if s.shared { "redis" } else { "file" },
        "status": if s.up { "up" } else { "down" },
        "version": s.revision,
        "seconds_since_sync": s.since_sync_secs,
        "node_uid": s.node_uid,
    });
    let mut body = match control.readiness() {
        Ok(()) => json!({"status": "ready"}),
        Err(why) => json!({"status": "not_ready", "reason": why.to_string()}),
    };
    if s.shared {
        body["store"] = store;
    }
    let status = if body["status"] == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// Times a request and records it under its route template (`/v1/bdbs/{uid}`), so
/// raw paths — which a client chooses — never become labels.
pub async fn track(State(control): State<Control>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    control.admin_metrics().observe(&route, &method, response.status().as_u16(), started.elapsed());
    response
}
