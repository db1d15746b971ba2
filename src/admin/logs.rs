//! `GET /v1/logs`: the event log, with Redis Enterprise's query parameters
//! (`stime`, `etime`, `order`, `limit`, `offset`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::caller::Authed;
use super::error::{ApiError, ApiResult};
use super::responses::{Auth, Invalid};
use crate::control::Control;
use crate::control::roles::Permission;
use crate::store::events::Event;
use crate::time;

/// Unknown parameters are refused (400), as unknown body fields are: a misspelt
/// filter must not silently return everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    stime: Option<String>,
    etime: Option<String>,
    order: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn invalid(name: &str, why: &str) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("{name}: {why}"))
}

fn instant(name: &str, v: Option<&str>) -> ApiResult<Option<u64>> {
    v.map(|s| {
        time::parse_iso8601(s).ok_or_else(|| invalid(name, "must be ISO 8601, like 2024-01-31T08:58:01Z"))
    })
    .transpose()
}

fn count(name: &str, v: Option<&str>) -> ApiResult<Option<usize>> {
    v.map(|s| s.parse::<usize>().map_err(|_| invalid(name, "must be a non-negative integer"))).transpose()
}

/// Everyone with admin API access may read the log (RS's `view_logged_events`); it
/// never holds a password or a hash.
#[utoipa::path(get, path = "/logs", tag = "logs",
    params(
        ("stime" = Option<String>, Query, description = "Only events at or after this time (ISO 8601)"),
        ("etime" = Option<String>, Query, description = "Only events at or before this time (ISO 8601)"),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<String>, Query, description = "At most this many events"),
        ("offset" = Option<String>, Query, description = "Skip this many events first"),
    ),
    responses((status = 200, description = "Events: `time`, `type`, `severity` and what they concern; never a password",
        body = Vec<Object>), Invalid, Auth))]
pub async fn get_logs(
    State(control): State<Control>,
    caller: Authed,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ViewCluster)?;
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request("invalid_parameter", "malformed query string or unknown parameter")
    })?;
    let stime = instant("stime", q.stime.as_deref())?;
    let etime = instant("etime", q.etime.as_deref())?;
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(invalid("order", "must be asc or desc")),
    };
    let limit = count("limit", q.limit.as_deref())?;
    let offset = count("offset", q.offset.as_deref())?.unwrap_or(0);
    let mut events: Vec<Event> = control
        .events()
        .await
        .into_iter()
        .filter(|e| {
            let t = e.time_ms / 1000;
            stime.is_none_or(|s| t >= s) && etime.is_none_or(|end| t <= end)
        })
        .collect();
    if descending {
        events.reverse();
    }
    let shown = events.iter().skip(offset).take(limit.unwrap_or(usize::MAX)).map(view).collect();
    Ok(Json(Value::Array(shown)))
}

/// An event as RS shows one: `time` (ISO 8601), `type`, `severity`, then its fields.
pub fn view(e: &Event) -> Value {
    let severity = match e.kind.as_str() {
        "auth_failed"
        | "address_throttled"
        | "user_locked"
        | "auth_failures_dropped"
        | "primary_switched" => "WARNING",
        _ => "INFO",
    };
    let mut m = Map::new();
    m.insert("time".into(), json!(time::iso8601(e.time_ms / 1000)));
    m.insert("type".into(), json!(e.kind));
    m.insert("severity".into(), json!(severity));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    opt("actor", e.actor.as_ref().map(|v| json!(v)));
    opt("actor_uid", e.actor_uid.map(|v| json!(v)));
    opt("bdb_uid", e.bdb_uid.map(|v| json!(v)));
    opt("user", e.user.as_ref().map(|v| json!(v)));
    opt("user_uid", e.user_uid.map(|v| json!(v)));
    opt("redis_acl_uid", e.redis_acl_uid.map(|v| json!(v)));
    opt("address", e.address.as_ref().map(|v| json!(v)));
    opt("previous_address", e.previous_address.as_ref().map(|v| json!(v)));
    opt("count", e.count.map(|v| json!(v)));
    opt("last_time", e.last_time_ms.map(|v| json!(time::iso8601(v / 1000))));
    opt("node_uid", e.node.map(|v| json!(v)));
    opt("nodes", e.nodes.as_ref().map(|v| json!(v)));
    opt("due", e.due_ms.map(|v| json!(time::iso8601(v.div_ceil(1000)))));
    opt("password_ids", (!e.password_ids.is_empty()).then(|| json!(e.password_ids)));
    Value::Object(m)
}
