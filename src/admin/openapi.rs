//! The admin API's OpenAPI document: its frame (title, Basic auth, tags) here, its
//! paths from the handlers' `#[utoipa::path]` annotations as the router registers
//! them (`super::routes`), served unauthenticated at `GET /v1/openapi.json`.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::responses;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "turnstile admin API",
        description = "Redis Enterprise Software's password endpoints and the objects around them. \
            HTTP Basic authentication with a user's name or email and any one of its passwords. \
            Errors are `{\"error_code\", \"description\", \"message\"}`."
    ),
    modifiers(&Components),
    security(("basic" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "passwords", description = "Password rotation: databases' default users and named users"),
        (name = "users", description = "Admin API users (and the named users of `AUTH <user> <password>`)"),
        (name = "bdbs", description = "Databases: where applications connect, which Redis they reach"),
        (name = "roles", description = "RBAC roles"),
        (name = "redis_acls", description = "Named Redis ACL rules"),
        (name = "cluster", description = "Cluster settings and the login lockout policy"),
        (name = "openapi", description = "This document"),
    )
)]
struct Frame;

/// HTTP Basic, and the error responses the operations refer to.
struct Components;

impl Modify for Components {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let basic = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build());
        components.add_security_scheme("basic", basic);
        components.responses.extend(responses::components().map(|(n, r)| (n, r.into())));
    }
}

/// The document's frame, before the router adds the paths.
pub fn frame() -> Document {
    let mut doc = Frame::openapi();
    // utoipa copies Cargo.toml's license, and the crate names none: an empty one is noise.
    doc.info.license = None;
    doc
}

/// `aliases` are paths also served without `/v1`, by the same handlers; operation ids
/// must be unique in a document, so the aliases' get a suffix.
pub fn rename_aliases(doc: &mut Document, aliases: &[&str]) {
    for (path, item) in doc.paths.paths.iter_mut().filter(|(p, _)| aliases.contains(&p.as_str())) {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            if let Some(id) = op.operation_id.as_mut() {
                id.push_str("_unversioned");
            }
            let own = op.description.take().map(|d| format!("\n\n{d}")).unwrap_or_default();
            op.description = Some(format!("An alias of `/v1{path}`, as RS's own examples use it.{own}"));
        }
    }
}

/// The serialised document, made once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(super::openapi().to_pretty_json().expect("the OpenAPI document serialises"))
});

/// Get this OpenAPI document (no authentication needed: it describes the API, holds
/// no data).
#[utoipa::path(get, path = "/openapi.json", tag = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)))]
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.clone())
}
