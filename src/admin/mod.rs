//! The admin REST API: Redis Enterprise's password endpoints and the objects around
//! them. `app(control)` builds the whole router, so tests drive it with `oneshot`.

mod caller;
pub mod error;
mod extract;
mod logs;
mod metrics;
mod objects;
mod passwords;
pub mod tls;
mod trace;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, put};

use crate::control::Control;
use error::ApiError;

/// The admin API router.
pub fn app(control: Control) -> Router {
    let bdb_passwords =
        put(passwords::bdb_passwords).post(passwords::bdb_passwords).delete(passwords::bdb_passwords);
    let v1 = Router::new()
        .route("/bdbs", get(objects::list_bdbs).post(objects::create_bdb))
        .route("/bdbs/{uid}", get(objects::get_bdb).put(objects::update_bdb).delete(objects::delete_bdb))
        .route("/bdbs/{uid}/passwords", bdb_passwords.clone())
        .route(
            "/users/password",
            put(passwords::user_password).post(passwords::user_password).delete(passwords::user_password),
        )
        .route("/users", get(objects::list_users).post(objects::create_user))
        .route("/users/{uid}", get(objects::get_user).put(objects::update_user).delete(objects::delete_user))
        .route("/roles", get(objects::list_roles).post(objects::create_role))
        .route("/roles/{uid}", get(objects::get_role).put(objects::update_role).delete(objects::delete_role))
        .route("/redis_acls", get(objects::list_acls).post(objects::create_acl))
        .route(
            "/redis_acls/{uid}",
            get(objects::get_acl).put(objects::update_acl).delete(objects::delete_acl),
        )
        .route(
            "/cluster",
            get(objects::get_cluster)
                .put(passwords::cluster_put)
                .post(passwords::cluster_rotation)
                .delete(passwords::cluster_rotation),
        )
        .route("/cluster/policy", get(objects::get_policy).put(objects::put_policy))
        .route("/logs", get(logs::get_logs));
    Router::new()
        .nest("/v1", v1)
        // The seed's own example line says `PUT /bdbs/1/passwords`, without /v1.
        .route("/bdbs/{uid}/passwords", bdb_passwords)
        .route("/metrics", get(metrics::metrics))
        .route("/live", get(metrics::live))
        .route("/ready", get(metrics::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(axum::middleware::from_fn(trace::span))
        .layer(axum::middleware::from_fn_with_state(control.clone(), metrics::track))
        .with_state(control)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method",
    )
}
