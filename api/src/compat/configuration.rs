//! `/api/configuration/instances/{id}`: the whole configuration in the original's
//! `Configuration` shape (ours is a superset: kind-specific properties, more server keys),
//! read, or changed with JSON Patch and answered 202 (rows 14–15).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};

use super::error::{Answer, CompatError};
use super::json::{self, ALL_CONFIG_KEYS};
use super::{InstancePath, instance_id, load};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{PathParams, RawBody};

/// Row 14: the stored configuration, secrets redacted unless the token is an admin's.
pub async fn get(
    State(state): State<AppState>,
    PathParams(p): PathParams<InstancePath>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let s = load(&state, &instance_id(&p.instance_id)?).await?;
    Ok(Json(json::config_shown(&s.config.value, &caller)?).into_response())
}

/// Row 15: JSON Patch (RFC 6902) over the configuration; the result is validated before it
/// is stored (a rejected patch changes nothing). A running instance picks the change up when
/// it is reconciled or restarted; until then its status reads `ConfigurationChanged`.
pub async fn patch(
    State(state): State<AppState>,
    PathParams(p): PathParams<InstancePath>,
    Extension(caller): Extension<Caller>,
    body: RawBody,
) -> Answer {
    let ops = json::patch(json::body(&body, true)?, ALL_CONFIG_KEYS)?;
    let id = instance_id(&p.instance_id)?;
    let plugins = crate::plugins::Checker::load(&state).await?;
    let (after, ()) = state
        .store
        .instances()
        .update_by(&id, Some(&caller.name), |s| {
            if s.unreadable.is_some() {
                return Err(ApiError::corrupt().into());
            }
            let before = json::config_out(&s.config.value)?;
            let mut doc = before.clone();
            json::apply_patch(&mut doc, &ops, &caller)?;
            let mut config = json::parse_original_config(doc, Some(&before))?;
            crate::network::confine_for(&state, &caller, s, &mut config)?;
            plugins.check_instance(s, &config)?;
            s.config.value = config;
            Ok::<_, CompatError>(())
        })
        .await
        .map_err(|e| e.for_instance(id.as_str()))?;
    tracing::info!(instance = %id, api = "compat", "configuration patched");
    Ok((StatusCode::ACCEPTED, Json(json::config_shown(&after.config.value, &caller)?)).into_response())
}
