//! `/api/v1/instances/{id}/config/{sources|queries|reactions}[/{componentId}]`: one component
//! at a time. Each edit is validated as part of the whole configuration.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use draas_jobs::domain::config::{ComponentKind, DrasiConfig};
use draas_jobs::domain::ids::ComponentId;
use draas_jobs::domain::validate::{dependants, parse_config};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::config::{Edit, WriteQuery, edit_config, operation_headers, reconfigure};
use super::instances::{load, parse_id};
use super::operations::wait_duration;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{IfMatch, MediaType, PathParams, QueryParams, RawBody, RequestId, etag};
use crate::secrets::{reveal, shown};

fn kind(raw: &str) -> Result<ComponentKind, ApiError> {
    match raw {
        "sources" => Ok(ComponentKind::Sources),
        "queries" => Ok(ComponentKind::Queries),
        "reactions" => Ok(ComponentKind::Reactions),
        _ => Err(ApiError::not_found(
            "route_not_found",
            format!("no component collection '{raw}'; use sources, queries or reactions"),
        )),
    }
}

fn component_id(raw: &str) -> Result<ComponentId, ApiError> {
    Ok(raw.parse::<ComponentId>()?)
}

/// The collection `kind` of a configuration, as JSON values.
fn collection(config: &DrasiConfig, kind: ComponentKind) -> Result<Vec<Value>, ApiError> {
    let doc = serde_json::to_value(config).map_err(|e| ApiError::internal(&e))?;
    Ok(doc.get(kind.key()).and_then(Value::as_array).cloned().unwrap_or_default())
}

fn position(items: &[Value], id: &str) -> Option<usize> {
    items.iter().position(|c| c.get("id").and_then(Value::as_str) == Some(id))
}

fn not_found(kind: ComponentKind, id: &str) -> ApiError {
    ApiError::not_found("component_not_found", format!("{} '{id}' does not exist", kind.key()))
}

/// Replace collection `kind` with `items` and validate the whole configuration. Errors in
/// the component at `index` are reported relative to the component's own body.
fn with_collection(
    config: &DrasiConfig,
    kind: ComponentKind,
    items: Vec<Value>,
    index: usize,
) -> Result<DrasiConfig, ApiError> {
    let mut doc = serde_json::to_value(config).map_err(|e| ApiError::internal(&e))?;
    doc[kind.key()] = Value::Array(items);
    parse_config(doc).map_err(|e| ApiError::from(e).relative_to(&format!("/{}/{index}", kind.key())))
}

/// Body of a component: a JSON object whose `id`, if present, matches `id`.
fn component_body(body: &RawBody, id: Option<&str>) -> Result<Value, ApiError> {
    body.expect(&[MediaType::Json])?;
    let mut v: Value = body.json()?;
    let obj = v.as_object_mut().ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "a component must be a JSON object").at("")
    })?;
    if let Some(id) = id {
        match obj.get("id") {
            None => {
                obj.insert("id".into(), Value::String(id.to_owned()));
            }
            Some(Value::String(s)) if s == id => {}
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "id_mismatch",
                    "the body's id differs from the id in the path",
                )
                .at("/id"));
            }
        }
    }
    Ok(v)
}

/// `?reveal=true`: show secrets (admin tokens only).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevealQuery {
    pub reveal: Option<bool>,
}

/// List one kind of component.
#[utoipa::path(get, path = "/api/v1/instances/{id}/config/{kind}", tag = "config",
    params(("id" = String, Path), ("kind" = String, Path, description = "sources, queries or reactions"), RevealQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    PathParams((id, k)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<RevealQuery>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let reveal = reveal(q.reveal, &caller)?;
    let kind = kind(&k)?;
    let s = load(&state, &parse_id(&id)?).await?;
    let items = shown(Value::Array(collection(&s.config.value, kind)?), reveal);
    Ok(([etag(s.config.version)], Json(items)).into_response())
}

/// Add a component.
#[utoipa::path(post, path = "/api/v1/instances/{id}/config/{kind}", tag = "config",
    params(("id" = String, Path), ("kind" = String, Path, description = "sources, queries or reactions"), WriteQuery),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 201, body = Object), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 412, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams((id, k)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<WriteQuery>,
    if_match: IfMatch,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let kind = kind(&k)?;
    let component = component_body(&body, None)?;
    let cid = component.get("id").and_then(Value::as_str).map(str::to_owned);
    let after = edit_config(&state, &caller, &id, &if_match, Edit::Part, |config| {
        let mut items = collection(config, kind)?;
        if let Some(cid) = &cid
            && position(&items, cid).is_some()
        {
            return Err(ApiError::conflict("component_exists", format!("{} '{cid}' already exists", kind.key())));
        }
        items.push(component.clone());
        let index = items.len() - 1;
        with_collection(config, kind, items, index)
    })
    .await?;
    let cid = cid.unwrap_or_default();
    let location = format!("/api/v1/instances/{id}/config/{}/{cid}", kind.key());
    let op = reconfigure(&state, &caller, &after, &rid, wait).await;
    let headers = operation_headers(op.as_ref(), false);
    Ok((
        StatusCode::CREATED,
        headers,
        [etag(after.config.version), (header::LOCATION, location)],
        Json(shown(component, false)),
    )
        .into_response())
}

/// Read one component.
#[utoipa::path(get, path = "/api/v1/instances/{id}/config/{kind}/{componentId}", tag = "config",
    params(("id" = String, Path), ("kind" = String, Path), ("componentId" = String, Path), RevealQuery),
    responses((status = 200, body = Object), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams((id, k, cid)): PathParams<(String, String, String)>,
    QueryParams(q): QueryParams<RevealQuery>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let reveal = reveal(q.reveal, &caller)?;
    let kind = kind(&k)?;
    let cid = component_id(&cid)?;
    let s = load(&state, &parse_id(&id)?).await?;
    let items = collection(&s.config.value, kind)?;
    let i = position(&items, cid.as_str()).ok_or_else(|| not_found(kind, cid.as_str()))?;
    Ok(([etag(s.config.version)], Json(shown(items[i].clone(), reveal))).into_response())
}

/// Replace (or create) one component.
#[utoipa::path(put, path = "/api/v1/instances/{id}/config/{kind}/{componentId}", tag = "config",
    params(("id" = String, Path), ("kind" = String, Path), ("componentId" = String, Path), WriteQuery),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 412, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams((id, k, cid)): PathParams<(String, String, String)>,
    QueryParams(q): QueryParams<WriteQuery>,
    if_match: IfMatch,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let kind = kind(&k)?;
    let cid = component_id(&cid)?;
    let component = component_body(&body, Some(cid.as_str()))?;
    let mut created = false;
    let after = edit_config(&state, &caller, &id, &if_match, Edit::Part, |config| {
        let mut items = collection(config, kind)?;
        let existing = position(&items, cid.as_str());
        created = existing.is_none();
        let index = match existing {
            Some(i) => {
                items[i] = component.clone();
                i
            }
            None => {
                items.push(component.clone());
                items.len() - 1
            }
        };
        with_collection(config, kind, items, index)
    })
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let op = reconfigure(&state, &caller, &after, &rid, wait).await;
    let headers = operation_headers(op.as_ref(), true);
    Ok((status, headers, [etag(after.config.version)], Json(shown(component, false))).into_response())
}

/// Remove one component; refused (409) while other components depend on it.
#[utoipa::path(delete, path = "/api/v1/instances/{id}/config/{kind}/{componentId}", tag = "config",
    params(("id" = String, Path), ("kind" = String, Path), ("componentId" = String, Path), WriteQuery),
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams((id, k, cid)): PathParams<(String, String, String)>,
    QueryParams(q): QueryParams<WriteQuery>,
    if_match: IfMatch,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let kind = kind(&k)?;
    let cid = component_id(&cid)?;
    let after = edit_config(&state, &caller, &id, &if_match, Edit::Part, |config| {
        let mut items = collection(config, kind)?;
        let i = position(&items, cid.as_str()).ok_or_else(|| not_found(kind, cid.as_str()))?;
        let users = dependants(config, kind, cid.as_str());
        if !users.is_empty() {
            return Err(ApiError::conflict(
                "component_in_use",
                format!("{} '{cid}' is used by {}", kind.key(), users.join(", ")),
            ));
        }
        items.remove(i);
        with_collection(config, kind, items, i)
    })
    .await?;
    let op = reconfigure(&state, &caller, &after, &rid, wait).await;
    Ok((StatusCode::NO_CONTENT, operation_headers(op.as_ref(), true), [etag(after.config.version)]).into_response())
}
