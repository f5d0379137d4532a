//! `/api/server/instances/{id}/configuration/server`: the server's own fields (host, port,
//! logLevel) of the stored configuration, read, JSON-Patched or set one by one (rows 6–10).
//! Every change is validated like any configuration change and stored whole.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::validate::parse_config;
use serde_json::{Map, Value};

use super::error::{Answer, CompatError};
use super::json::{self, SERVER_KEYS};
use super::model::ServerConfiguration;
use super::{InstancePath, instance_id, load};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{PathParams, RawBody};

/// The projection as a JSON object (absent fields as `null`, so `replace` finds them).
fn view(c: &DrasiConfig) -> Result<Value, CompatError> {
    serde_json::to_value(ServerConfiguration::of(c)).map_err(|e| CompatError::internal(&e))
}

/// `c` with host, port and logLevel taken from `view` (`null` or absent = unset).
fn with_server(c: &DrasiConfig, view: Value) -> Result<DrasiConfig, CompatError> {
    let Value::Object(mut view) = view else {
        return Err(CompatError::bad_request("the server configuration must be an object"));
    };
    json::canonical_keys(&mut view, SERVER_KEYS);
    if let Some(k) = view.keys().find(|k| !SERVER_KEYS.contains(&k.as_str())) {
        return Err(CompatError::bad_request(format!(
            "unknown server configuration field '{k}'; expected host, port or logLevel"
        )));
    }
    let mut doc = serde_json::to_value(c).map_err(|e| CompatError::internal(&e))?;
    let obj = doc.as_object_mut().ok_or_else(|| CompatError::internal(&"configuration is not an object"))?;
    for key in SERVER_KEYS {
        match view.remove(*key) {
            None | Some(Value::Null) => obj.remove(*key),
            Some(v) => obj.insert((*key).to_owned(), v),
        };
    }
    json::lower_log_level(obj);
    Ok(parse_config(doc)?)
}

/// Edit the projection of instance `raw_id` with `edit`, store the result, answer it.
async fn edit(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    change: impl Fn(&mut Value) -> Result<(), CompatError>,
) -> Answer {
    let id = instance_id(raw_id)?;
    let (after, ()) = state
        .store
        .instances()
        .update_by(&id, Some(&caller.name), |s| {
            if s.unreadable.is_some() {
                return Err(ApiError::corrupt().into());
            }
            let mut v = view(&s.config.value)?;
            change(&mut v)?;
            let mut config = with_server(&s.config.value, v)?;
            crate::network::confine_for(state, caller, s, &mut config)?;
            s.config.value = config;
            Ok::<_, CompatError>(())
        })
        .await
        .map_err(|e| e.for_instance(id.as_str()))?;
    Ok(Json(ServerConfiguration::of(&after.config.value)).into_response())
}

/// Row 6: the server configuration.
pub async fn get(State(state): State<AppState>, PathParams(p): PathParams<InstancePath>) -> Answer {
    let s = load(&state, &instance_id(&p.instance_id)?).await?;
    Ok(Json(ServerConfiguration::of(&s.config.value)).into_response())
}

/// Row 7: JSON Patch (RFC 6902) over the server configuration.
pub async fn patch(
    State(state): State<AppState>,
    PathParams(p): PathParams<InstancePath>,
    Extension(caller): Extension<Caller>,
    body: RawBody,
) -> Answer {
    let ops = json::patch(json::body(&body, true)?, SERVER_KEYS)?;
    edit(&state, &caller, &p.instance_id, |v| json::apply_patch(v, &ops, &caller)).await
}

/// Set one field of the projection from a bare JSON body.
fn set(v: &mut Value, key: &str, value: Value) -> Result<(), CompatError> {
    let obj: &mut Map<String, Value> =
        v.as_object_mut().ok_or_else(|| CompatError::internal(&"projection is not an object"))?;
    obj.insert(key.to_owned(), value);
    Ok(())
}

async fn put_field(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    body: &RawBody,
    key: &str,
    expected: &str,
) -> Answer {
    let value = json::body(body, false)?.unwrap_or(Value::Null);
    let ok = match key {
        "port" => value.is_i64() || value.is_u64(),
        _ => value.is_string(),
    };
    if !ok {
        return Err(CompatError::bad_request(format!("the body must be {expected}")));
    }
    edit(state, caller, raw_id, |v| set(v, key, value.clone())).await
}

/// Row 8: set the host (JSON string).
pub async fn put_host(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    body: RawBody,
) -> Answer {
    put_field(&state, &caller, &p.instance_id, &body, "host", "a JSON string (the host)").await
}

/// Row 9: set the port (JSON integer, 1–65535; reserved for the instance at its next start).
pub async fn put_port(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    body: RawBody,
) -> Answer {
    put_field(&state, &caller, &p.instance_id, &body, "port", "a JSON integer (the port, 1-65535)").await
}

/// Row 10: set the log level (JSON string: trace, debug, info, warn or error).
pub async fn put_log_level(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    body: RawBody,
) -> Answer {
    put_field(&state, &caller, &p.instance_id, &body, "logLevel", "a JSON string (trace, debug, info, warn or error)")
        .await
}
