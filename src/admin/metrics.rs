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
    let body = crate::metrics::render::render(&control);
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
    match control.readiness() {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": why.to_string()})),
        )
            .into_response(),
    }
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
