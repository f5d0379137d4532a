//! The OpenAPI document (utoipa). A committed copy lives at `api/openapi.json`; a test keeps
//! it in sync (`UPDATE_OPENAPI=1` rewrites it).

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::plugins;
use crate::routes::{components, config, data, health, instances, logs, operations, queues, secrets, status};

/// The v1 API.
#[derive(OpenApi)]
#[openapi(
    info(title = "draas", description = "Drasi Server as a Service: run and supervise many drasi-server instances."),
    paths(
        health::healthz, health::readyz,
        instances::create, instances::list, instances::get, instances::update,
        config::get, config::put, config::patch,
        components::list, components::create, components::get, components::put, components::delete,
        data::results, data::watch, data::components, logs::logs,
        operations::start, operations::stop, operations::restart, operations::delete,
        operations::get, operations::list, operations::cancel, queues::list, queues::backlog,
        status::history, status::recent_changes, status::events, status::push, status::reconcile_one, status::reconcile_all,
        plugins::list,
        secrets::list, secrets::put, secrets::delete, secrets::rewrap,
    ),
    components(schemas(
        crate::error::Problem, draas_jobs::domain::validate::FieldError, crate::dto::Instance, crate::dto::InstancePage,
        crate::dto::CreateInstance, crate::dto::UpdateInstance, crate::dto::Health,
        data::ResultsDto, data::ComponentsDto,
        operations::OperationDto, operations::OperationPage, queues::QueueDto, queues::BacklogDto, draas_jobs::domain::operation::OperationError,
        draas_jobs::domain::operation::OperationKind, draas_jobs::domain::operation::OperationStatus,
        draas_jobs::domain::model::StatusChange, status::History, status::StatusUpdate, status::StatusPushed,
        draas_jobs::domain::config::DrasiConfig, draas_jobs::domain::config::Source, draas_jobs::domain::config::Query,
        draas_jobs::domain::config::QuerySource, draas_jobs::domain::config::Reaction, draas_jobs::domain::config::LogLevel,
        draas_jobs::domain::model::Platform, draas_jobs::domain::model::ProbeRecord, draas_jobs::domain::model::DesiredState, draas_jobs::domain::model::Status,
        draas_jobs::domain::model::ComponentStatus, draas_jobs::domain::model::Condition, draas_jobs::domain::model::RuntimeFacts,
        crate::dto::ComponentsSummary, plugins::Plugins, plugins::CatalogDto,
        crate::dto::SetSecret, crate::dto::SecretInfo, crate::dto::SecretList, crate::dto::Rewrapped,
    )),
    modifiers(&BearerAuth, &ErrorResponses),
    security(("bearer" = [])),
    tags((name = "instances"), (name = "config"), (name = "lifecycle"), (name = "operations"), (name = "status"), (name = "plugins"), (name = "data"), (name = "secrets"), (name = "health")),
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

/// Every error answer is `application/problem+json`; every protected operation may answer 401
/// (token) and 503 (state store unavailable, or too slow); every operation with a body may
/// answer 413 (too large) and 415 (wrong Content-Type).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let mut extra = Vec::new();
                if op.security.is_none() {
                    extra.extend([("400", "Invalid path or query"), ("401", "Missing or wrong bearer token")]);
                    extra.push(("503", "State store unavailable, or the request took too long; see Retry-After"));
                }
                if op.request_body.is_some() {
                    extra.extend([("413", "Body larger than the limit"), ("415", "Unsupported Content-Type")]);
                }
                for (code, description) in extra {
                    op.responses.responses.entry(code.to_owned()).or_insert_with(|| problem(description).into());
                }
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(r) = response {
                        as_problem_json(r);
                    }
                }
            }
        }
    }
}

fn problem(description: &str) -> Response {
    let schema = RefOr::Ref(Ref::from_schema_name("Problem"));
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", ContentBuilder::new().schema(Some(schema)).build())
        .build()
}

/// A Problem body is served as `application/problem+json`.
fn as_problem_json(r: &mut Response) {
    let is_problem = r
        .content
        .get("application/json")
        .is_some_and(|c| matches!(&c.schema, Some(RefOr::Ref(s)) if s.ref_location.ends_with("/Problem")));
    if is_problem && let Some(c) = r.content.shift_remove("application/json") {
        r.content.insert("application/problem+json".to_owned(), c);
    }
}

/// The document as pretty JSON, as committed.
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}
