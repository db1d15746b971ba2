//! The OpenAPI document at `GET /v1/openapi.json`: served without credentials, a
//! well-formed OpenAPI 3.1 document (every `$ref` resolves, unique operation ids, Basic
//! auth, the error responses), listing exactly the routes the router serves — a hard
//! list here, so a route without docs, or docs without a route, fails — and whose
//! object schemas name exactly the fields the API sends, with their JSON types.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::admin::*;
use serde_json::{Value, json};

/// Every route of the admin API. A new route is one line here (and its handler's
/// `#[utoipa::path]` plus one `.routes(routes!(…))` line in src/admin/mod.rs).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/bdbs"),
    ("POST", "/v1/bdbs"),
    ("GET", "/v1/bdbs/{uid}"),
    ("PUT", "/v1/bdbs/{uid}"),
    ("DELETE", "/v1/bdbs/{uid}"),
    ("GET", "/v1/bdbs/{uid}/passwords"),
    ("PUT", "/v1/bdbs/{uid}/passwords"),
    ("POST", "/v1/bdbs/{uid}/passwords"),
    ("DELETE", "/v1/bdbs/{uid}/passwords"),
    ("GET", "/bdbs/{uid}/passwords"),
    ("PUT", "/bdbs/{uid}/passwords"),
    ("POST", "/bdbs/{uid}/passwords"),
    ("DELETE", "/bdbs/{uid}/passwords"),
    ("POST", "/v1/users/password"),
    ("PUT", "/v1/users/password"),
    ("DELETE", "/v1/users/password"),
    ("GET", "/v1/users/{uid}/passwords"),
    ("GET", "/v1/users"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users/{uid}"),
    ("PUT", "/v1/users/{uid}"),
    ("DELETE", "/v1/users/{uid}"),
    ("GET", "/v1/roles"),
    ("POST", "/v1/roles"),
    ("GET", "/v1/roles/{uid}"),
    ("PUT", "/v1/roles/{uid}"),
    ("DELETE", "/v1/roles/{uid}"),
    ("GET", "/v1/redis_acls"),
    ("POST", "/v1/redis_acls"),
    ("GET", "/v1/redis_acls/{uid}"),
    ("PUT", "/v1/redis_acls/{uid}"),
    ("DELETE", "/v1/redis_acls/{uid}"),
    ("GET", "/v1/cluster"),
    ("PUT", "/v1/cluster"),
    ("POST", "/v1/cluster"),
    ("DELETE", "/v1/cluster"),
    ("GET", "/v1/cluster/policy"),
    ("PUT", "/v1/cluster/policy"),
    ("GET", "/v1/logs"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/live"),
    ("GET", "/ready"),
];

/// The routes that need no credentials (`/metrics` unless `admin.metrics_auth`).
const PUBLIC: [(&str, &str); 4] =
    [("GET", "/v1/openapi.json"), ("GET", "/metrics"), ("GET", "/live"), ("GET", "/ready")];

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

/// Fetches the document as a client would: no credentials.
async fn document(a: &Admin) -> Value {
    let (status, doc, headers) = a.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(headers["content-type"], "application/json");
    doc
}

/// (METHOD, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            assert!(
                ["get", "put", "post", "delete", "patch", "head", "options", "trace"]
                    .contains(&method.as_str()),
                "{path}: unexpected key {method:?}"
            );
            ops.insert((method.to_uppercase(), path.clone()), op);
        }
    }
    ops
}

/// Resolves a local `$ref` (`#/components/…`) to its target.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let a = Admin::start().await;
    let doc = document(&a).await;
    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let listed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(listed.len(), ROUTES.len(), "ROUTES has a duplicate");
    let undocumented: Vec<_> = listed.difference(&documented).collect();
    let unlisted: Vec<_> = documented.difference(&listed).collect();
    assert!(undocumented.is_empty(), "routes missing from the document: {undocumented:?}");
    assert!(unlisted.is_empty(), "documented operations missing from ROUTES: {unlisted:?}");
    // What is served is what the library builds.
    assert_eq!(doc, serde_json::to_value(turnstile::admin::openapi()).unwrap());
}

/// Every listed route answers (401 without credentials, the document 200), and every
/// other method on those paths is the router's 405: the list, the document and the
/// router agree.
#[tokio::test]
async fn every_listed_route_is_served_and_no_other_method_is() {
    let a = Admin::start().await;
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        let concrete = path.replace("{uid}", "1");
        for method in METHODS {
            if (method, path) == ("GET", "/metrics") {
                // Text, not JSON: the scrape's content is tests/metrics.rs's business.
                let (status, _, text) = call_text(&a.control, method, path, None).await;
                assert_eq!(status, 200, "GET /metrics");
                assert!(text.contains("# TYPE turnstile_"), "GET /metrics: {text}");
                continue;
            }
            let body = (method != "GET").then_some("{}");
            let (status, v, headers) = a.call(method, &concrete, None, body).await;
            let what = format!("{method} {concrete}");
            if PUBLIC.contains(&(method, path)) {
                assert_eq!(status, 200, "{what}: {v}");
                if path.ends_with("openapi.json") {
                    assert_eq!(v["openapi"], "3.1.0", "{what}");
                }
            } else if ROUTES.contains(&(method, path)) {
                assert_eq!(status, 401, "{what}: {v}");
                assert_eq!(v["error_code"], "unauthorized", "{what}");
                assert_eq!(headers["www-authenticate"], "Basic realm=\"turnstile\"", "{what}");
            } else {
                assert_eq!(status, 405, "{what}: {v}");
                assert_eq!(v["error_code"], "method_not_allowed", "{what}");
            }
        }
    }
}

#[tokio::test]
async fn the_document_is_well_formed_openapi_3_1() {
    let a = Admin::start().await;
    let doc = document(&a).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "turnstile admin API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["components"]["securitySchemes"]["basic"], json!({"type": "http", "scheme": "basic"}));
    assert_eq!(doc["security"], json!([{"basic": []}]), "Basic auth everywhere by default");

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 100, "the error responses and schemas are shared through $ref");
    for r in refs {
        assert!(resolve(&doc, r).is_some(), "dangling $ref {r}");
    }
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let schema = &response["content"]["application/json"]["schema"];
        assert_eq!(schema["$ref"], "#/components/schemas/Error", "{name}");
    }
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        json!(["error_code", "description", "message"])
    );

    let mut ids = BTreeSet::new();
    for ((method, path), op) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_string()), "{what}: operationId {id} used twice");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what}: no summary");
        let responses = op["responses"].as_object().unwrap();
        let ok = &responses["200"]["content"];
        assert!(
            ok["application/json"]["schema"].is_object() || ok["text/plain"]["schema"].is_object(),
            "{what}: 200 body"
        );
        if PUBLIC.contains(&(method.as_str(), path.as_str())) {
            assert_eq!(op["security"][0], json!({}), "{what} needs no credentials");
            continue;
        }
        assert!(op.get("security").is_none(), "{what} overrides the global Basic auth");
        for status in ["401", "403"] {
            let r = responses.get(status).unwrap_or_else(|| panic!("{what}: {status} undocumented"));
            let target = resolve(&doc, r["$ref"].as_str().unwrap()).unwrap();
            assert_eq!(target["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
        }
        assert!(responses["401"]["$ref"] == "#/components/responses/Unauthorized", "{what}");
        if op.get("requestBody").is_some() {
            assert_eq!(op["requestBody"]["required"], true, "{what}");
            assert!(op["requestBody"]["content"]["application/json"]["schema"].is_object(), "{what}");
            for status in ["400", "413"] {
                assert!(responses.contains_key(status), "{what} reads a body: {status} undocumented");
            }
        }
        if method != "GET" {
            assert!(responses.contains_key("503"), "{what} changes state: 503 undocumented");
        }
        // Every `{param}` of the path is a required path parameter, an integer uid.
        // (Query parameters, such as `/v1/logs`'s filters, are the handler's business.)
        let declared: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|p| p.iter().filter(|p| p["in"] == "path").collect())
            .unwrap_or_default();
        let in_path = path.matches('{').count();
        assert_eq!(declared.len(), in_path, "{what}: {declared:?}");
        for p in declared {
            assert!(path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())), "{what}: {p}");
            assert_eq!(
                (&p["in"], &p["required"], &p["schema"]["type"]),
                (&json!("path"), &json!(true), &json!("integer"))
            );
        }
    }
}

/// The JSON types a schema property allows (`"type": "string"` or `["string", "null"]`;
/// a `$ref` or `items` means an object or array).
fn allowed_types(property: &Value) -> Vec<String> {
    match &property["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        _ if property.get("$ref").is_some() => vec!["object".into()],
        other => panic!("unexpected schema {property} ({other})"),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A real response object has exactly the schema's properties, all of them required,
/// each with a value of an allowed type (and among the allowed values, if listed).
fn assert_matches(doc: &Value, schema_name: &str, value: &Value) {
    let schema = &doc["components"]["schemas"][schema_name];
    let properties = schema["properties"].as_object().unwrap_or_else(|| panic!("no schema {schema_name}"));
    let sent: BTreeSet<&String> = value.as_object().unwrap_or_else(|| panic!("{value}")).keys().collect();
    let documented: BTreeSet<&String> = properties.keys().collect();
    assert_eq!(sent, documented, "{schema_name}: fields sent vs documented");
    let required: BTreeSet<&str> =
        schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(
        required,
        documented.iter().map(|s| s.as_str()).collect(),
        "{schema_name}: all fields are always sent"
    );
    for (field, property) in properties {
        let t = json_type(&value[field]);
        assert!(
            allowed_types(property).iter().any(|a| a == t),
            "{schema_name}.{field}: {t} not in {property}"
        );
        if let Some(values) = property["enum"].as_array() {
            assert!(
                values.contains(&value[field]),
                "{schema_name}.{field}: {} not in {values:?}",
                value[field]
            );
        }
    }
}

#[tokio::test]
async fn object_schemas_name_exactly_the_fields_the_api_sends() {
    let redis = common::Redis::start(&[]);
    let a = Admin::start().await;
    let doc = document(&a).await;
    let ok = |(s, v): (axum::http::StatusCode, Value)| {
        assert_eq!(s, 200, "{v}");
        v
    };
    let up = format!("redis://{}", redis.addr());
    ok(a.admin("POST", "/v1/roles", Some(r#"{"name": "app", "management": "db_viewer"}"#)).await);
    ok(a.admin("POST", "/v1/redis_acls", Some(r#"{"name": "all", "acl": "+@all ~*"}"#)).await);
    let bdb = json!({"name": "app", "listen": "127.0.0.1:0", "upstream": up,
                     "roles_permissions": [{"role_uid": 1, "redis_acl_uid": 1}]});
    assert_matches(&doc, "Bdb", &ok(a.admin("POST", "/v1/bdbs", Some(&bdb.to_string())).await));
    let user =
        r#"{"name": "app-user", "email": "app@example.com", "password": "user-pw-1", "role_uids": [1]}"#;
    assert_matches(&doc, "User", &ok(a.admin("POST", "/v1/users", Some(user)).await));

    let user_schema = &doc["components"]["schemas"]["User"]["properties"];
    assert_eq!(user_schema["status"]["enum"], json!(["active", "locked", "password_expired"]));
    assert_eq!(user_schema["role"]["enum"].as_array().map(Vec::len), Some(7), "the management roles");
    let users = ok(a.admin("GET", "/v1/users", None).await);
    // Both users: one who has logged in (last_login a string) and one who has not (null).
    assert_eq!(users.as_array().unwrap().len(), 2);
    users.as_array().unwrap().iter().for_each(|u| assert_matches(&doc, "User", u));
    assert!(users[0]["last_login"].is_string() && users[1]["last_login"].is_null(), "{users}");
    assert_matches(&doc, "Bdb", &ok(a.admin("GET", "/v1/bdbs", None).await)[0]);
    assert_matches(&doc, "Role", &ok(a.admin("GET", "/v1/roles/1", None).await));
    assert_matches(&doc, "RedisAcl", &ok(a.admin("GET", "/v1/redis_acls/1", None).await));
    assert_matches(&doc, "Cluster", &ok(a.admin("GET", "/v1/cluster", None).await));
    assert_matches(&doc, "Policy", &ok(a.admin("GET", "/v1/cluster/policy", None).await));
    let (s, err) = a.admin("GET", "/v1/users/99", None).await;
    assert_eq!(s, 404);
    assert_matches(&doc, "Error", &err);
    // `{}` answers are the `Empty` schema: an object with no properties allowed.
    assert_eq!(ok(a.admin("POST", "/v1/bdbs/1/passwords", Some(r#"{"password": "pw-2"}"#)).await), json!({}));
    assert_eq!(doc["components"]["schemas"]["Empty"]["additionalProperties"], false);
}

/// A uid that is not UTF-8 once percent-decoded names no object: a JSON 404 like any
/// other non-numeric uid (axum's own rejection would be a plain-text 400).
#[tokio::test]
async fn a_uid_that_is_not_utf8_is_a_json_404() {
    let a = Admin::start().await;
    for (method, path, body, code) in [
        ("GET", "/v1/users/%FF", None, "user_not_exist"),
        ("DELETE", "/v1/roles/%C3%28", None, "role_not_exist"),
        ("PUT", "/v1/bdbs/%FF/passwords", Some(r#"{"password": "pw-2"}"#), "bdb_not_exist"),
    ] {
        let (status, v, _) = a.call(method, path, Some((ADMIN, ADMIN_PW)), body).await;
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert_eq!(v["error_code"], code, "{method} {path}");
        assert!(v["description"].as_str().unwrap().contains("(not UTF-8)"), "{v}");
    }
}
