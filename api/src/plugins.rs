//! Plugins: `GET /api/v1/plugins` (what each platform, and each node for processes, can run,
//! as the workers published it), and the check every configuration write makes: a source,
//! bootstrap provider or reaction whose kind the instance's platform does not provide is
//! refused (422 `plugin_missing`, pointing at the component's `kind`). Where no worker has
//! published a catalog, nothing can be checked; the worker then refuses the start itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::model::{InstanceState, Platform};
use draas_jobs::domain::plugins::{self, Catalog, Scope};
use draas_jobs::domain::validate::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// What one place provides.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDto {
    pub platform: Platform,
    /// The node, for the process platform; the Docker worker's node for docker.
    pub node: Option<String>,
    /// `type/kind`, e.g. `source/postgres` (built-in kinds are not listed).
    pub kinds: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

/// The plugin catalogs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Plugins {
    /// Kinds every server has without plugins.
    pub builtin: Vec<String>,
    pub catalogs: Vec<CatalogDto>,
}

/// What each platform (each node, for processes) can run.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, body = Plugins)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Plugins>, ApiError> {
    let mut catalogs: Vec<CatalogDto> = state
        .store
        .plugins()
        .all()
        .await?
        .into_iter()
        .map(|(scope, catalog, at)| {
            let (platform, node) = match scope {
                Scope::Process(n) => (Platform::Process, Some(n)),
                Scope::Docker(n) => (Platform::Docker, Some(n)),
                Scope::Kubernetes => (Platform::Kubernetes, None),
            };
            CatalogDto { platform, node, kinds: catalog.kinds.into_iter().collect(), updated_at: at }
        })
        .collect();
    catalogs.sort_by(|a, b| (a.platform.as_str(), &a.node).cmp(&(b.platform.as_str(), &b.node)));
    Ok(Json(Plugins { builtin: plugins::BUILTIN.iter().map(|s| (*s).to_owned()).collect(), catalogs }))
}

/// The published catalogs, read once for one write.
pub struct Checker {
    published: Vec<(Scope, Catalog)>,
}

impl Checker {
    /// Read the catalogs.
    pub async fn load(state: &AppState) -> Result<Self, ApiError> {
        let published = state.store.plugins().all().await?.into_iter().map(|(s, c, _)| (s, c)).collect();
        Ok(Self { published })
    }

    /// Refuse `config` for an instance on `platform` (placed on `node`) when it needs a plugin
    /// that platform lacks.
    pub fn check(&self, platform: Platform, node: Option<&str>, config: &DrasiConfig) -> Result<(), ApiError> {
        let Some(catalog) = plugins::for_platform(&self.published, platform, node) else { return Ok(()) };
        let lacking = plugins::missing(config, &catalog);
        if lacking.is_empty() {
            return Ok(());
        }
        let where_ = match (platform, node) {
            (Platform::Process, Some(n)) => format!("node '{n}'"),
            (Platform::Process, None) => "any node".to_owned(),
            (p, _) => format!("the {} platform", p.as_str()),
        };
        let errors = lacking
            .into_iter()
            .map(|n| {
                FieldError::new(
                    "plugin_missing",
                    format!("{where_} has no plugin {} (needed by {})", n.plugin, n.component),
                    n.pointer,
                )
            })
            .collect();
        Err(ApiError::fields(StatusCode::UNPROCESSABLE_ENTITY, errors))
    }

    /// [`Checker::check`] for an instance as stored.
    pub fn check_instance(&self, s: &InstanceState, config: &DrasiConfig) -> Result<(), ApiError> {
        self.check(s.instance.value.platform, s.node(), config)
    }
}
