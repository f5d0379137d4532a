//! `/api/v1/instances/{id}/secrets`: an instance's secrets, write-only. A value goes in
//! (`PUT …/secrets/{name}`), is sealed with the first of `secrets.keys` and never comes out
//! through any route, to anyone; a list shows names and update times. A change reaches a
//! server that should run through a restart (its environment is set when it starts).
//! `POST /api/v1/secrets/rewrap` (admin) seals every value with the first key again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::DesiredState;
use draas_jobs::domain::operation::{Operation, OperationKind};
use draas_jobs::domain::secrets::SecretName;
use draas_jobs::queue::submit::Request;
use draas_jobs::store::secrets::SetOutcome;
use draas_jobs::vault::{Sealed, Vault};
use secrecy::{ExposeSecret, SecretString};

use super::config::{WriteQuery, operation_headers};
use super::instances::{load, parse_id};
use super::operations::wait_duration;
use crate::AppState;
use crate::auth::Caller;
use crate::dto::{Rewrapped, SecretInfo, SecretList, SetSecret};
use crate::error::{ApiError, Problem};
use crate::extract::{MediaType, PathParams, QueryParams, RawBody, RequestId};
use crate::lifecycle;

/// The vault of the configured keys, or 503 `secrets_disabled`.
pub fn vault(state: &AppState) -> Result<Vault, ApiError> {
    match state.settings.secrets.vault() {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets_disabled",
            "no key to encrypt secrets with: set secrets.keys (DRAAS_SECRETS__KEYS, base64 of 32 random bytes)",
        )),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// Parse a secret name (422 `invalid_secret_name`).
pub fn parse_name(raw: &str, pointer: &str) -> Result<SecretName, ApiError> {
    raw.parse::<SecretName>()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_secret_name", e.0).at(pointer))
}

/// Check a value's size (422 `secret_too_large`).
pub fn check_value(state: &AppState, value: &SecretString, pointer: &str) -> Result<(), ApiError> {
    let max = state.settings.secrets.max_value_bytes;
    if value.expose_secret().len() > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "secret_too_large",
            format!("a secret value may be at most {max} bytes (secrets.max_value_bytes)"),
        )
        .at(pointer));
    }
    Ok(())
}

/// 422 `too_many_secrets`.
pub fn too_many(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_secrets",
        format!(
            "an instance may have at most {} secrets (secrets.max_per_instance)",
            state.settings.secrets.max_per_instance
        ),
    )
}

fn info(name: &SecretName, sealed: &Sealed) -> SecretInfo {
    SecretInfo { name: name.to_string(), updated_at: sealed.updated_at }
}

/// The names of an instance's secrets and when each was set; never a value.
#[utoipa::path(get, path = "/api/v1/instances/{id}/secrets", tag = "secrets", params(("id" = String, Path)),
    responses((status = 200, body = SecretList), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<SecretList>, ApiError> {
    let id = parse_id(&id)?;
    load(&state, &id).await?;
    let stored = state.store.secrets().load(&id).await?;
    Ok(Json(SecretList { items: stored.sealed.iter().map(|(n, s)| info(n, s)).collect() }))
}

/// Set a secret (created 201, replaced 200). An instance that should run is restarted with
/// it (the operation is named by `X-Draas-Operation`; `?wait=` holds for it).
#[utoipa::path(put, path = "/api/v1/instances/{id}/secrets/{name}", tag = "secrets",
    params(("id" = String, Path), ("name" = String, Path, description = "[A-Z_][A-Z0-9_]*, at most 64, not DRAAS_…"), WriteQuery),
    request_body(content = SetSecret, content_type = "application/json"),
    responses((status = 200, body = SecretInfo, description = "Replaced", headers(("X-Draas-Operation" = String), ("X-Draas-Operation-Status" = String))),
        (status = 201, body = SecretInfo, description = "Created", headers(("X-Draas-Operation" = String), ("X-Draas-Operation-Status" = String))),
        (status = 400, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem, description = "invalid_secret_name, secret_too_large, too_many_secrets"),
        (status = 503, body = Problem, description = "secrets_disabled: no key configured")))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams((id, name)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<WriteQuery>,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let id = parse_id(&id)?;
    let name = parse_name(&name, "")?;
    body.expect(&[MediaType::Json])?;
    let req: SetSecret = body.json()?;
    check_value(&state, &req.value, "/value")?;
    let vault = vault(&state)?;
    let sealed = vault.seal(&id, &name, req.value.expose_secret(), Utc::now());
    let max = state.settings.secrets.max_per_instance;
    let status = match state.store.secrets().set(&id, &name, &sealed, max).await? {
        SetOutcome::Created => StatusCode::CREATED,
        SetOutcome::Updated => StatusCode::OK,
        SetOutcome::Full => return Err(too_many(&state)),
        SetOutcome::NotFound => return Err(ApiError::instance_not_found(id.as_str())),
    };
    tracing::info!(instance = %id, secret = %name, "secret set");
    let op = restart(&state, &caller, &id, &rid, wait).await;
    Ok((status, operation_headers(op.as_ref(), false), Json(info(&name, &sealed))).into_response())
}

/// Remove a secret; an instance that should run is restarted without it.
#[utoipa::path(delete, path = "/api/v1/instances/{id}/secrets/{name}", tag = "secrets",
    params(("id" = String, Path), ("name" = String, Path), WriteQuery),
    responses((status = 204, description = "Removed", headers(("X-Draas-Operation" = String), ("X-Draas-Operation-Status" = String))),
        (status = 400, body = Problem), (status = 404, body = Problem, description = "instance_not_found, secret_not_found"),
        (status = 422, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams((id, name)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<WriteQuery>,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let wait = wait_duration(&state, q.wait)?;
    let id = parse_id(&id)?;
    let name = parse_name(&name, "")?;
    load(&state, &id).await?;
    if !state.store.secrets().remove(&id, &name).await? {
        return Err(ApiError::not_found("secret_not_found", format!("instance '{id}' has no secret {name}")));
    }
    tracing::info!(instance = %id, secret = %name, "secret removed");
    let op = restart(&state, &caller, &id, &rid, wait).await;
    Ok((StatusCode::NO_CONTENT, operation_headers(op.as_ref(), false)).into_response())
}

/// After a change of the secrets of an instance that should run: a `restart`, held up to
/// `wait`. When it cannot be queued now, the reconciler sees the changed spec hash and
/// redeploys at its next tick.
async fn restart(
    state: &AppState,
    caller: &Caller,
    id: &InstanceId,
    rid: &str,
    wait: std::time::Duration,
) -> Option<Operation> {
    let s = state.store.instances().load(id).await.ok().flatten()?;
    if s.instance.value.desired_state != DesiredState::Running {
        return None;
    }
    let request = Request::new(OperationKind::Restart, Some(id), "secrets", rid);
    match lifecycle::submit_and_wait(state, caller, request, wait).await {
        Ok(op) => Some(op),
        Err(e) => {
            tracing::warn!(instance = %id, code = e.code(), "a secret changed; its restart was not queued (the reconciler redeploys)");
            None
        }
    }
}

/// Seal every secret of every instance with the first of `secrets.keys` (admin only), so the
/// keys after it can be dropped. Answers how many values it sealed anew.
#[utoipa::path(post, path = "/api/v1/secrets/rewrap", tag = "secrets",
    responses((status = 200, body = Rewrapped), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn rewrap(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Rewrapped>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "admin_required", "only an admin token may rewrap secrets"));
    }
    let vault = vault(&state)?;
    let (mut rewrapped, mut failed) = (0, 0);
    let mut cursor: Option<InstanceId> = None;
    loop {
        let ids = state.store.instances().ids_after(cursor.as_ref(), 500).await?;
        for id in &ids {
            let stored = state.store.secrets().load(id).await?;
            for (name, sealed) in &stored.sealed {
                match vault.reseal(id, name, sealed) {
                    Ok(None) => {}
                    Ok(Some(new)) => {
                        if state.store.secrets().reseal(id, name, sealed, &new).await? {
                            rewrapped += 1;
                        }
                    }
                    Err(e) => {
                        tracing::error!(instance = %id, secret = %name, error = %e, "a secret cannot be rewrapped");
                        failed += 1;
                    }
                }
            }
        }
        match ids.last() {
            Some(last) if ids.len() == 500 => cursor = Some(last.clone()),
            _ => break,
        }
    }
    tracing::info!(rewrapped, failed, key = vault.primary_id(), "secrets rewrapped");
    Ok(Json(Rewrapped { rewrapped, failed, key_id: vault.primary_id().to_owned() }))
}
