//! `/api/server/instances`: create, list, read, delete, and set the status of an instance
//! (rows 1–5 of ORIGINAL.md §1).

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::ids::{InstanceId, InstanceName};
use draas_jobs::domain::model::Cause;
use draas_jobs::domain::model::{DesiredState, InstanceRecord};
use draas_jobs::domain::operation::OperationKind;
use serde_json::{Map, Value};

use super::error::{Answer, CompatError};
use super::json::{self, SERVER_KEYS};
use super::lifecycle::run_to_end;
use super::model::{DrasiInstance, InstanceStatus, OriginalEnum, PlatformType};
use super::{InstancePath, instance_id, load};
use crate::AppState;
use crate::auth::Caller;
use crate::dto::MAX_DESCRIPTION;
use crate::extract::{PathParams, RawBody, RequestId};

const CREATE_KEYS: &[&str] = &["name", "description", "serverConfiguration", "platformType"];

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CompatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CompatError::bad_request(format!("{key} must be a string"))),
    }
}

/// The configuration of a new instance: only what `serverConfiguration` sets. The original's
/// defaults (0.0.0.0:8080) are not stored, so draas picks the host and allocates the port.
pub fn initial_config(server: Option<&Value>) -> Result<DrasiConfig, CompatError> {
    let doc = match server {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(sc)) => {
            let mut sc = sc.clone();
            json::canonical_keys(&mut sc, SERVER_KEYS);
            sc.retain(|k, v| SERVER_KEYS.contains(&k.as_str()) && !v.is_null());
            json::lower_log_level(&mut sc);
            sc
        }
        Some(_) => return Err(CompatError::bad_request("serverConfiguration must be an object")),
    };
    Ok(draas_jobs::domain::validate::parse_config(Value::Object(doc))?)
}

fn new_record(state: &AppState, obj: &Map<String, Value>) -> Result<InstanceRecord, CompatError> {
    let name = string_field(obj, "name")?.unwrap_or_default();
    let name: InstanceName =
        name.parse().map_err(|e: draas_jobs::domain::ids::IdError| CompatError::bad_request(e.message))?;
    let description = string_field(obj, "description")?.unwrap_or_default();
    if description.len() > MAX_DESCRIPTION || description.contains('\0') {
        return Err(CompatError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION} bytes, without NUL"
        )));
    }
    let platform = match obj.get("platformType") {
        None | Some(Value::Null) => state.settings.default_platform,
        Some(v) => PlatformType::from_json(v)
            .ok_or_else(|| CompatError::bad_request("platformType must be Process, Docker or AKS (or 0, 1, 2)"))?
            .to_platform(),
    };
    let now = Utc::now();
    Ok(InstanceRecord {
        id: InstanceId::generate(),
        name,
        description,
        platform,
        desired_state: DesiredState::Stopped,
        generation: 1,
        created_at: now,
        updated_at: now,
        runtime: Default::default(),
        created_by: None,
        updated_by: None,
    })
}

/// Row 1: create an instance → 201, `Location`, `DrasiInstance`.
pub async fn create(State(state): State<AppState>, Extension(caller): Extension<Caller>, body: RawBody) -> Answer {
    let obj = json::object(json::body(&body, false)?.unwrap_or(Value::Null), CREATE_KEYS)?;
    let record = InstanceRecord { created_by: Some(caller.name.to_string()), ..new_record(&state, &obj)? };
    let mut config = initial_config(obj.get("serverConfiguration"))?;
    crate::network::confine(&state, &caller, record.platform, None, None, &Default::default(), &mut config)?;
    state.store.instances().create(&record, &config, caller.quota.max_instances).await.map_err(|e| match e {
        draas_jobs::store::StoreError::NameTaken => {
            CompatError::conflict(format!("an instance named '{}' already exists", record.name))
        }
        e => e.into(),
    })?;
    tracing::info!(instance = %record.id, name = %record.name, api = "compat", "instance created");
    let created = load(&state, &record.id).await?;
    let location = format!("/api/server/instances/{}", record.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(DrasiInstance::of(&created))).into_response())
}

/// Row 2: every instance, oldest first.
pub async fn list(State(state): State<AppState>) -> Answer {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let ids = state.store.instances().ids_after(cursor.as_ref(), 500).await?;
        let states = state.store.instances().load_many(&ids).await?;
        out.extend(states.iter().flatten().map(DrasiInstance::of));
        match ids.last() {
            Some(last) if ids.len() == 500 => cursor = Some(last.clone()),
            _ => return Ok(Json(out).into_response()),
        }
    }
}

/// Row 3: one instance.
pub async fn get(State(state): State<AppState>, PathParams(p): PathParams<InstancePath>) -> Answer {
    let id = instance_id(&p.instance_id)?;
    Ok(Json(DrasiInstance::of(&load(&state, &id).await?)).into_response())
}

/// Row 4: delete through a delete operation, waited for → 204.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    RequestId(rid): RequestId,
) -> Answer {
    let id = instance_id(&p.instance_id)?;
    load(&state, &id).await?;
    run_to_end(&state, &caller, &id, OperationKind::Delete, &rid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Row 5: record a status (bare JSON enum body) as observed, unless a worker is acting on
/// the instance (409).
pub async fn set_status(
    State(state): State<AppState>,
    PathParams(p): PathParams<InstancePath>,
    body: RawBody,
) -> Answer {
    let id = instance_id(&p.instance_id)?;
    let raw = json::body(&body, false)?.unwrap_or(Value::Null);
    let wanted = InstanceStatus::from_json(&raw).ok_or_else(|| {
        CompatError::bad_request("the body must be an InstanceStatus: Created, Running, Stopped or Error (or 0-3)")
    })?;
    let Some(status) = wanted.to_status() else {
        return Err(CompatError::bad_request(
            "ConfigurationChanged cannot be set: draas reports it while a changed configuration awaits a restart",
        ));
    };
    let s = load(&state, &id).await?;
    let mut observed = s.observed.map(|o| o.value).unwrap_or_default();
    observed.status = status;
    observed.message = Some("status set through the original API".into());
    observed.observed_at = Some(Utc::now());
    let cause = Cause { source: "compat", reason: "status-set", by: "" };
    if !state.store.instances().observe(&id, &observed, cause, None, None).await? {
        return Err(CompatError::conflict("a worker is acting on the instance; its status cannot be set now"));
    }
    Ok(Json(DrasiInstance::of(&load(&state, &id).await?)).into_response())
}
