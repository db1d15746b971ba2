//! One tracing span per admin request: method, route template, status, latency.
//!
//! Only the route *template* (`/v1/bdbs/{uid}`) is recorded, never the raw URI,
//! headers or body: `Authorization` carries a password, bodies carry new ones, and a
//! raw path is unbounded caller input.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The middleware: wraps the rest of the request in an `admin_request` span and logs
/// one line when the response is ready.
pub async fn span(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str);
    let span = tracing::info_span!("admin_request", method = %request.method(), route = %route);
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(status, latency_ms, "admin request");
        response
    }
    .instrument(span)
    .await
}
