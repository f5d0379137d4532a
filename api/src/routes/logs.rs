//! The servers' output: the lines workers ship into the store (see the worker's log shipping),
//! so this replica never touches a platform: `?tail=N` answers the last lines, `follow=true`
//! keeps the answer open and streams new lines until the instance stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::store::logs::LogLine;
use futures::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::data::{ended, runs};
use super::instances::{load, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{PathParams, QueryParams};
use crate::streams::StreamPermit;

/// Lines shown when `tail` is not given.
const DEFAULT_TAIL: usize = 100;
/// How often a followed log is read for more.
const POLL: Duration = Duration::from_millis(250);
/// Reads between two looks at the instance's record.
const CHECK_EVERY: u32 = 4;

/// `GET /api/v1/instances/{id}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Lines to show first: 1 to `logs.keep_lines` (default 100).
    pub tail: Option<usize>,
    /// Keep the answer open and send new lines as the server writes them, until it stops.
    pub follow: Option<bool>,
}

/// The server's output (stdout and stderr, colour codes stripped), as `text/plain` lines:
/// the last `tail` lines draas keeps (after a crash too), then, with `follow=true`, new lines
/// as they come, until the instance is stopped or deleted.
#[utoipa::path(get, path = "/api/v1/instances/{id}/logs", tag = "data", params(("id" = String, Path), LogsQuery),
    responses((status = 200, content_type = "text/plain", description = "one line of the server's output per line"),
        (status = 400, body = Problem, description = "invalid tail"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "instance_not_running: follow=true needs a running instance"),
        (status = 429, body = Problem, description = "too_many_streams (follow=true)")))]
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> Result<Response, ApiError> {
    let keep = state.settings.logs.keep_lines;
    let tail = q.tail.unwrap_or(DEFAULT_TAIL.min(keep));
    if tail == 0 || tail > keep {
        return Err(ApiError::bad_request("invalid_tail", format!("tail must be 1 to {keep} (logs.keep_lines)")));
    }
    let s = load(&state, &parse_id(&id)?).await?;
    let follow = q.follow.unwrap_or(false);
    if follow && !runs(&s) {
        return Err(ApiError::conflict(
            "instance_not_running",
            format!("instance {} is not running: drop follow=true to read its last lines", s.id()),
        ));
    }
    let permit = if follow { Some(state.stream_permit(&caller).await?) } else { None };
    let lines = state.store.logs().tail(s.id(), tail).await?;
    let body = match permit {
        None => Body::from(text(&lines)),
        Some(permit) => {
            let last = lines.last().map(|l| l.id.clone()).unwrap_or_else(|| "0-0".to_owned());
            let first = Bytes::from(text(&lines));
            let rest = followed(state.clone(), s.id().clone(), last, permit);
            Body::from_stream(futures::stream::once(async { Ok::<_, Infallible>(first) }).chain(rest))
        }
    };
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

fn text(lines: &[LogLine]) -> String {
    lines.iter().flat_map(|l| [l.line.as_str(), "\n"]).collect()
}

/// New lines after entry `last`, read every `POLL`, until the instance no longer runs (its
/// last lines included) or the client goes.
fn followed(
    state: AppState,
    id: InstanceId,
    last: String,
    permit: StreamPermit,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::unfold(Some((state, id, last, permit, 0_u32)), |step| async move {
        let (state, id, mut last, permit, mut reads) = step?;
        loop {
            reads += 1;
            let running = !reads.is_multiple_of(CHECK_EVERY) || ended(&state, &id).await.is_none();
            if !running {
                // The shipper writes the server's last lines out a moment after it ended.
                tokio::time::sleep(POLL * 4).await;
            }
            let lines = state.store.logs().after(&id, &last, 500).await.unwrap_or_default();
            if let Some(l) = lines.last() {
                last = l.id.clone();
                let next = running.then_some((state, id, last, permit, reads));
                return Some((Ok(Bytes::from(text(&lines))), next));
            }
            if !running {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    })
}
