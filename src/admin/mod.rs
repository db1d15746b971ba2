//! The admin REST API: Redis Enterprise's password endpoints and the objects around
//! them. `app(control)` builds the whole router, so tests drive it with `oneshot`.
//! Routes are declared once, with their handlers' OpenAPI annotations (`routes!`), so
//! the document served at `/v1/openapi.json` (`openapi()`) cannot drift from them.

mod acls;
mod activity;
mod bdbs;
mod bodies;
mod caller;
mod cluster;
pub mod error;
pub mod extract;
mod linger;
mod logs;
mod metrics;
mod nodes;
mod openapi;
mod passwords;
mod responses;
mod roles;
pub mod serve;
pub mod tls;
mod trace;
mod users;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::control::Control;
use error::ApiError;

/// Paths also served without the `/v1` prefix: the seed's own example line says
/// `PUT /bdbs/1/passwords`.
const UNVERSIONED: [&str; 1] = ["/bdbs/{uid}/passwords"];

/// Every route with its documentation. A new endpoint is one `.routes(routes!(…))`
/// line here plus its handler's `#[utoipa::path]`.
fn routes() -> OpenApiRouter<Control> {
    let bdb_passwords = || {
        routes!(
            passwords::list_bdb_passwords,
            passwords::replace_bdb_passwords,
            passwords::add_bdb_password,
            passwords::remove_bdb_password
        )
    };
    let v1 = OpenApiRouter::new()
        .routes(routes!(bdbs::list_bdbs, bdbs::create_bdb))
        .routes(routes!(bdbs::get_bdb, bdbs::update_bdb, bdbs::delete_bdb))
        .routes(bdb_passwords())
        .routes(routes!(
            passwords::add_user_password,
            passwords::replace_user_passwords,
            passwords::remove_user_password
        ))
        .routes(routes!(passwords::list_user_passwords))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user, users::update_user, users::delete_user))
        .routes(routes!(roles::list_roles, roles::create_role))
        .routes(routes!(roles::get_role, roles::update_role, roles::delete_role))
        .routes(routes!(acls::list_acls, acls::create_acl))
        .routes(routes!(acls::get_acl, acls::update_acl, acls::delete_acl))
        .routes(routes!(
            cluster::get_cluster,
            passwords::cluster_put,
            passwords::legacy_add_password,
            passwords::legacy_remove_password
        ))
        .routes(routes!(cluster::get_policy, cluster::put_policy))
        .routes(routes!(logs::get_logs))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(openapi::document));
    OpenApiRouter::with_openapi(openapi::frame())
        .nest("/v1", v1)
        .routes(bdb_passwords()) // UNVERSIONED
        .routes(routes!(metrics::metrics))
        .routes(routes!(metrics::live))
        .routes(routes!(metrics::ready))
}

/// The admin API router.
pub fn app(control: Control) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(axum::middleware::from_fn(trace::span))
        .layer(axum::middleware::from_fn_with_state(control.clone(), metrics::track))
        .with_state(control)
}

/// The OpenAPI 3.1 document of every route of `app`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    openapi::rename_aliases(&mut doc, &UNVERSIONED);
    doc
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
