//! `/api/v1/instances`: create, list, read and rename instances.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::ids::{InstanceId, InstanceName};
use draas_jobs::domain::model::InstanceState;
use draas_jobs::domain::model::{DesiredState, InstanceRecord, RuntimeOptions};
use draas_jobs::domain::secrets::SecretName;
use draas_jobs::domain::validate::parse_config;
use draas_jobs::vault::Sealed;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{CreateInstance, Instance, InstancePage, ListInstances, MAX_DESCRIPTION, UpdateInstance};
use crate::error::{ApiError, Problem};
use crate::extract::{IfMatch, MediaType, PathParams, QueryParams, RawBody, etag};

/// Parse a path id; malformed ids are refused before they reach the store.
pub fn parse_id(raw: &str) -> Result<InstanceId, ApiError> {
    Ok(raw.parse::<InstanceId>()?)
}

/// Load an instance or answer 404.
pub async fn load(state: &AppState, id: &InstanceId) -> Result<InstanceState, ApiError> {
    state.store.instances().load(id).await?.ok_or_else(|| ApiError::instance_not_found(id.as_str()))
}

fn description(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION || d.contains('\0') => {
            Err(ApiError::field(draas_jobs::domain::validate::FieldError::new(
                "invalid_description",
                format!("description must be at most {MAX_DESCRIPTION} bytes, without NUL"),
                "/description",
            )))
        }
        d => Ok(d),
    }
}

fn runtime(r: Option<RuntimeOptions>) -> Result<Option<RuntimeOptions>, ApiError> {
    if let Some(r) = &r {
        draas_jobs::domain::validate::validate_runtime(r).map_err(|e| ApiError::from(e).under("/runtime"))?;
    }
    Ok(r)
}

fn name(n: &str) -> Result<InstanceName, ApiError> {
    n.parse::<InstanceName>()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message).at("/name"))
}

/// An instance with its ETag.
pub fn instance_response(status: StatusCode, s: &InstanceState) -> Response {
    (status, [etag(s.instance.version)], Json(Instance::from(s))).into_response()
}

/// Create an instance with its configuration.
#[utoipa::path(post, path = "/api/v1/instances", tag = "instances",
    request_body(content = CreateInstance, content_type = "application/json"),
    responses((status = 201, body = Instance, description = "Created; Location names it"),
        (status = 400, body = Problem), (status = 409, body = Problem, description = "Name taken"),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "quota_exceeded: the token has quotas.max_instances")))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: RawBody,
) -> Result<Response, ApiError> {
    body.expect(&[MediaType::Json])?;
    let req: CreateInstance = body.json()?;
    let name = name(&req.name)?;
    let description = description(req.description)?.unwrap_or_default();
    let mut config = match req.config {
        Some(v) => parse_config(v).map_err(|e| ApiError::from(e).under("/config"))?,
        None => DrasiConfig::default(),
    };
    let runtime = runtime(req.runtime)?;
    let platform = req.platform.unwrap_or(state.settings.default_platform);
    if let Some(r) = &runtime {
        crate::network::admit_runtime(&state, &caller, platform, r).map_err(|e| ApiError::from(e).under("/runtime"))?;
    }
    let id = InstanceId::generate();
    let secrets = first_secrets(&state, &id, req.secrets)?;
    let names = secrets.iter().map(|(n, _)| n.to_string()).collect();
    crate::network::confine(&state, &caller, platform, None, None, &names, &mut config)
        .map_err(|e| ApiError::from(e).under("/config"))?;
    crate::plugins::Checker::load(&state).await?.check(platform, None, &config).map_err(|e| e.under("/config"))?;
    let now = Utc::now();
    let record = InstanceRecord {
        id,
        name,
        description,
        platform,
        desired_state: DesiredState::Stopped,
        generation: 1,
        created_at: now,
        updated_at: now,
        runtime: runtime.unwrap_or_default(),
        created_by: Some(caller.name.to_string()),
        updated_by: None,
    };
    state.store.instances().create_with_secrets(&record, &config, caller.quota.max_instances, &secrets).await?;
    tracing::info!(instance = %record.id, name = %record.name, "instance created");
    let created = load(&state, &record.id).await?;
    let mut res = instance_response(StatusCode::CREATED, &created);
    let location = format!("/api/v1/instances/{}", record.id);
    if let Ok(v) = location.parse() {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// The secrets a create request gives, checked and sealed for instance `id`.
fn first_secrets(
    state: &AppState,
    id: &InstanceId,
    given: Option<BTreeMap<String, SecretString>>,
) -> Result<Vec<(SecretName, Sealed)>, ApiError> {
    let given = given.unwrap_or_default();
    if given.is_empty() {
        return Ok(Vec::new());
    }
    if given.len() > state.settings.secrets.max_per_instance {
        return Err(super::secrets::too_many(state).at("/secrets"));
    }
    let vault = super::secrets::vault(state)?;
    let now = Utc::now();
    given
        .iter()
        .map(|(name, value)| {
            let pointer = format!("/secrets/{name}");
            let name = super::secrets::parse_name(name, &pointer)?;
            super::secrets::check_value(state, value, &pointer)?;
            let sealed = vault.seal(id, &name, value.expose_secret(), now);
            Ok((name, sealed))
        })
        .collect()
}

/// The page size a list request asked for: 1 to the setting's maximum, default 100.
pub fn page_limit(state: &AppState, asked: Option<usize>) -> Result<usize, ApiError> {
    let max = state.settings.api.max_page_size;
    match asked.unwrap_or(100.min(max)) {
        n if n == 0 || n > max => {
            Err(ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {max}")))
        }
        n => Ok(n),
    }
}

/// Most ids examined per list request, whatever the filters.
const MAX_SCAN: usize = 5000;

/// List instances, oldest first, filtered by platform and status, one page at a time.
#[utoipa::path(get, path = "/api/v1/instances", tag = "instances", params(ListInstances),
    responses((status = 200, body = InstancePage), (status = 400, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListInstances>,
) -> Result<Json<InstancePage>, ApiError> {
    let limit = page_limit(&state, q.limit)?;
    let mut cursor = q
        .cursor
        .as_deref()
        .map(parse_id)
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned"))?;
    let batch = limit.max(100);
    let (mut items, mut scanned) = (Vec::new(), 0);
    loop {
        let ids = state.store.instances().ids_after(cursor.as_ref(), batch).await?;
        for (id, s) in ids.iter().zip(state.store.instances().load_many(&ids).await?) {
            scanned += 1;
            cursor = Some(id.clone());
            let Some(dto) = s.as_ref().map(Instance::from) else {
                continue;
            };
            if q.platform.is_none_or(|p| p == dto.platform) && q.status.is_none_or(|st| st == dto.status) {
                items.push(dto);
                if items.len() == limit {
                    return Ok(Json(InstancePage { items, next_cursor: cursor.map(|c| c.to_string()) }));
                }
            }
        }
        if ids.len() < batch {
            return Ok(Json(InstancePage { items, next_cursor: None }));
        }
        if scanned >= MAX_SCAN {
            return Ok(Json(InstancePage { items, next_cursor: cursor.map(|c| c.to_string()) }));
        }
    }
}

/// Read one instance.
#[utoipa::path(get, path = "/api/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance, headers(("ETag" = String))), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get(State(state): State<AppState>, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    Ok(instance_response(StatusCode::OK, &load(&state, &id).await?))
}

/// Rename an instance, change its description or its runtime options (image, limits).
#[utoipa::path(patch, path = "/api/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    request_body(content = UpdateInstance, content_type = "application/merge-patch+json"),
    responses((status = 200, body = Instance), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 412, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(id): PathParams<String>,
    if_match: IfMatch,
    body: RawBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    body.expect(&[MediaType::Json, MediaType::MergePatch])?;
    let req: UpdateInstance = body.json()?;
    let new_name = req.name.as_deref().map(name).transpose()?;
    let new_description = description(req.description)?;
    let new_runtime = runtime(req.runtime)?;
    let (after, ()) = state
        .store
        .instances()
        .update_by(&id, Some(&caller.name), |s| {
            if_match.check(s.instance.version)?;
            if let Some(n) = &new_name {
                s.instance.value.name = n.clone();
            }
            if let Some(d) = &new_description {
                s.instance.value.description = d.clone();
            }
            if let Some(r) = &new_runtime {
                crate::network::admit_runtime(&state, &caller, s.instance.value.platform, r)
                    .map_err(|e| ApiError::from(e).under("/runtime"))?;
                s.instance.value.runtime = r.clone();
            }
            Ok::<_, ApiError>(())
        })
        .await
        .map_err(|e| if e.status() == StatusCode::NOT_FOUND { ApiError::instance_not_found(id.as_str()) } else { e })?;
    Ok(instance_response(StatusCode::OK, &after))
}
