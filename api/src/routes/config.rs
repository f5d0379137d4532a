//! `/api/v1/instances/{id}/config`: the whole drasi-server configuration, as JSON or as the
//! exact YAML drasi-server will be given; replaced whole or patched (RFC 6902 / RFC 7396).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::model::{DesiredState, InstanceState};
use draas_jobs::domain::operation::{Operation, OperationKind};
use draas_jobs::domain::validate::{FieldError, parse_config};
use draas_jobs::domain::{redact, render};
use draas_jobs::queue::submit::Request;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::instances::{load, parse_id};
use super::operations::wait_duration;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{IfMatch, MediaType, PathParams, QueryParams, RawBody, RequestId, etag};
use crate::lifecycle;
use crate::plugins::Checker;
use crate::secrets::{reveal, shown, shown_yaml};

/// Options of `GET …/config`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// JSON only: show draas' defaults filled in, as drasi-server gets them.
    pub effective: Option<bool>,
    /// Show secrets instead of `***` (admin tokens only).
    pub reveal: Option<bool>,
}

fn wants_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/yaml") || a.contains("text/yaml") || a.contains("application/x-yaml"))
}

/// The stored configuration with its ETag, secrets shown only when `reveal`.
pub fn config_response(status: StatusCode, s: &InstanceState, reveal: bool) -> Result<Response, ApiError> {
    let doc = shown(serde_json::to_value(&s.config.value).map_err(|e| ApiError::internal(&e))?, reveal);
    Ok((status, [etag(s.config.version)], Json(doc)).into_response())
}

/// `?wait=N` of a configuration write: hold up to N seconds for its `reconfigure` to end.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    pub wait: Option<u64>,
}

/// After a configuration write to an instance that should run: a `reconfigure` operation (live
/// through the server's API where it can be, else a restart), held up to `wait`. The
/// configuration is stored whatever happens here: when the operation cannot be queued now
/// (a full queue), the reconciler applies the change at its next tick.
pub async fn reconfigure(
    state: &AppState,
    caller: &Caller,
    after: &InstanceState,
    request_id: &str,
    wait: std::time::Duration,
) -> Option<Operation> {
    if after.instance.value.desired_state != DesiredState::Running {
        return None;
    }
    let request = Request::new(OperationKind::Reconfigure, Some(after.id()), "user", request_id);
    match lifecycle::submit_and_wait(state, caller, request, wait).await {
        Ok(op) => Some(op),
        Err(e) => {
            tracing::warn!(instance = %after.id(), code = e.code(), "stored a configuration; its reconfigure was not queued (the reconciler applies it)");
            None
        }
    }
}

/// The headers naming a configuration write's operation: `X-Draas-Operation` (its id) and
/// `X-Draas-Operation-Status`, and with `location` the operation as `Location` too.
pub fn operation_headers(op: Option<&Operation>, location: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let Some(op) = op else { return h };
    let value = |s: String| header::HeaderValue::from_str(&s).ok();
    if let Some(v) = value(op.id.to_string()) {
        h.insert(header::HeaderName::from_static("x-draas-operation"), v);
    }
    if let Some(v) = value(op.status.as_str().to_owned()) {
        h.insert(header::HeaderName::from_static("x-draas-operation-status"), v);
    }
    if location && let Some(v) = value(format!("/api/v1/operations/{}", op.id)) {
        h.insert(header::LOCATION, v);
    }
    h
}

/// How an edit uses the stored configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Changes part of it: refused (409) when it cannot be read.
    Part,
    /// Replaces it whole: allowed when it cannot be read (how a corrupt one is mended).
    Whole,
}

/// Apply `edit` to the configuration of `id` under `If-Match`, validate, store.
pub async fn edit_config(
    state: &AppState,
    caller: &Caller,
    id: &str,
    if_match: &IfMatch,
    scope: Edit,
    mut edit: impl FnMut(&DrasiConfig) -> Result<DrasiConfig, ApiError>,
) -> Result<InstanceState, ApiError> {
    let id = parse_id(id)?;
    let plugins = Checker::load(state).await?;
    let (after, ()) = state
        .store
        .instances()
        .update_by(&id, Some(&caller.name), |s| {
            if_match.check(s.config.version)?;
            if scope == Edit::Part && s.unreadable.is_some() {
                return Err(ApiError::corrupt());
            }
            let mut config = keep_secrets(&s.config.value, edit(&s.config.value)?)?;
            crate::network::confine_for(state, caller, s, &mut config)?;
            plugins.check_instance(s, &config)?;
            s.config.value = config;
            Ok::<_, ApiError>(())
        })
        .await
        .map_err(|e| if e.code() == "instance_not_found" { ApiError::instance_not_found(id.as_str()) } else { e })?;
    Ok(after)
}

/// A client that wrote back a redacted document (`***` where secrets go) keeps the secrets.
fn keep_secrets(current: &DrasiConfig, new: DrasiConfig) -> Result<DrasiConfig, ApiError> {
    let mut doc = serde_json::to_value(&new).map_err(|e| ApiError::internal(&e))?;
    if !redact::has_marker(&doc) {
        return Ok(new);
    }
    redact::restore(&mut doc, &serde_json::to_value(current).map_err(|e| ApiError::internal(&e))?);
    Ok(parse_config(doc)?)
}

/// The configuration as JSON, or with `Accept: application/yaml` the exact YAML drasi-server
/// is given (draas' defaults filled in, allocated port included once there is one).
#[utoipa::path(get, path = "/api/v1/instances/{id}/config", tag = "config", params(("id" = String, Path), ConfigQuery),
    responses((status = 200, description = "The configuration", body = DrasiConfig, headers(("ETag" = String)),
        content((DrasiConfig = "application/json"), (String = "application/yaml"))),
        (status = 400, body = Problem), (status = 403, body = Problem, description = "reveal without an admin token"),
        (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<ConfigQuery>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reveal = reveal(q.reveal, &caller)?;
    let s = load(&state, &parse_id(&id)?).await?;
    if wants_yaml(&headers) || q.effective == Some(true) {
        let ports = render::Ports::observed(s.observed.as_ref().map(|o| &o.value));
        let policy = state.settings.network.policy();
        let rendered =
            render::render(&s, &state.settings.process.host, &ports, policy).map_err(|e| ApiError::internal(&e))?;
        if wants_yaml(&headers) {
            return Ok((
                [
                    (header::CONTENT_TYPE, "application/yaml".to_owned()),
                    etag(s.config.version),
                    (header::HeaderName::from_static("x-draas-spec-hash"), rendered.spec_hash),
                ],
                shown_yaml(&rendered.yaml, reveal)?,
            )
                .into_response());
        }
        let effective: Value = serde_norway::from_str(&rendered.yaml).map_err(|e| ApiError::internal(&e))?;
        return Ok(([etag(s.config.version)], Json(shown(effective, reveal))).into_response());
    }
    config_response(StatusCode::OK, &s, reveal)
}

/// Replace the whole configuration (JSON or YAML body). An instance that should run gets a
/// `reconfigure` operation, named by `Location` and `X-Draas-Operation`.
#[utoipa::path(put, path = "/api/v1/instances/{id}/config", tag = "config", params(("id" = String, Path), WriteQuery),
    request_body(content = DrasiConfig, content_type = "application/json"),
    responses((status = 200, body = DrasiConfig, headers(("Location" = String, description = "the reconfigure operation"),
            ("X-Draas-Operation" = String), ("X-Draas-Operation-Status" = String))),
        (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 412, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<WriteQuery>,
    if_match: IfMatch,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let media = body.expect(&[MediaType::Json, MediaType::Yaml])?;
    let config = parse_config(body.document(media)?)?;
    let after = edit_config(&state, &caller, &id, &if_match, Edit::Whole, |_| Ok(config.clone())).await?;
    let op = reconfigure(&state, &caller, &after, &rid, wait).await;
    Ok((operation_headers(op.as_ref(), true), config_response(StatusCode::OK, &after, false)?).into_response())
}

/// Patch the configuration: JSON Patch (RFC 6902) or JSON Merge Patch (RFC 7396). The result
/// is validated before it is stored; a rejected patch changes nothing.
#[utoipa::path(patch, path = "/api/v1/instances/{id}/config", tag = "config",
    request_body(content = Object, content_type = "application/json-patch+json",
        description = "RFC 6902 operations, or an RFC 7396 merge document with Content-Type application/merge-patch+json"),
    params(("id" = String, Path), WriteQuery),
    responses((status = 200, body = DrasiConfig, headers(("Location" = String, description = "the reconfigure operation"),
            ("X-Draas-Operation" = String), ("X-Draas-Operation-Status" = String))),
        (status = 400, body = Problem),
        (status = 403, body = Problem, description = "a JSON Patch copy, move or test of a secret, without an admin token"),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the stored configuration cannot be read (instance_corrupt): PUT a whole one"),
        (status = 412, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn patch(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<WriteQuery>,
    if_match: IfMatch,
    RequestId(rid): RequestId,
    Extension(caller): Extension<Caller>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let edit = match body.expect(&[MediaType::JsonPatch, MediaType::MergePatch])? {
        MediaType::JsonPatch => Patch::Json(body.json()?),
        _ => Patch::Merge(body.json()?),
    };
    let after = edit_config(&state, &caller, &id, &if_match, Edit::Part, |current| {
        let mut doc = serde_json::to_value(current).map_err(|e| ApiError::internal(&e))?;
        edit.apply(&mut doc, &caller)?;
        Ok(parse_config(doc)?)
    })
    .await?;
    let op = reconfigure(&state, &caller, &after, &rid, wait).await;
    Ok((operation_headers(op.as_ref(), true), config_response(StatusCode::OK, &after, false)?).into_response())
}

/// A patch document of either kind.
enum Patch {
    /// RFC 6902 operations.
    Json(json_patch::Patch),
    /// RFC 7396 merge document.
    Merge(Value),
}

impl Patch {
    fn apply(&self, doc: &mut Value, caller: &Caller) -> Result<(), ApiError> {
        match self {
            Patch::Json(ops) => crate::patch::apply(doc, ops, caller).map_err(patch_error),
            Patch::Merge(merge) => {
                json_patch::merge(doc, merge);
                Ok(())
            }
        }
    }
}

fn patch_error(e: crate::patch::Failure) -> ApiError {
    let status =
        if e.code == "secret_path_forbidden" { StatusCode::FORBIDDEN } else { StatusCode::UNPROCESSABLE_ENTITY };
    ApiError::fields(status, vec![FieldError::new(e.code, e.message, format!("/{}", e.index))])
}
