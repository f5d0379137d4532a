//! The OpenAPI document (utoipa). A committed copy lives at `api/openapi.json`; a test keeps
//! it in sync (`UPDATE_OPENAPI=1` rewrites it).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{components, config, health, instances, operations, status};

/// The v1 API.
#[derive(OpenApi)]
#[openapi(
    info(title = "draas", description = "Drasi Server as a Service: run and supervise many drasi-server instances."),
    paths(
        health::healthz, health::readyz,
        instances::create, instances::list, instances::get, instances::update,
        config::get, config::put, config::patch,
        components::list, components::create, components::get, components::put, components::delete,
        operations::start, operations::stop, operations::restart, operations::delete,
        operations::get, operations::list, operations::cancel,
        status::history, status::recent_changes, status::events, status::push, status::reconcile_one, status::reconcile_all,
    ),
    components(schemas(
        crate::error::Problem, draas_jobs::validate::FieldError, crate::dto::Instance, crate::dto::InstancePage,
        crate::dto::CreateInstance, crate::dto::UpdateInstance, crate::dto::Health,
        operations::OperationDto, operations::OperationPage, draas_jobs::ops::OperationError,
        draas_jobs::ops::OperationKind, draas_jobs::ops::OperationStatus,
        draas_jobs::store::history::StatusChange, status::History, status::StatusUpdate, status::StatusPushed,
        draas_jobs::drasi::DrasiConfig, draas_jobs::drasi::Source, draas_jobs::drasi::Query,
        draas_jobs::drasi::QuerySource, draas_jobs::drasi::Reaction, draas_jobs::drasi::LogLevel,
        draas_jobs::model::Platform, draas_jobs::model::ProbeRecord, draas_jobs::model::DesiredState, draas_jobs::model::Status,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "instances"), (name = "config"), (name = "lifecycle"), (name = "operations"), (name = "status"), (name = "health")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as pretty JSON, as committed.
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}
