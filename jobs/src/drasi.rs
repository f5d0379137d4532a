//! drasi-server's own REST API, as draas reads it: the components with their status (the
//! reconciler's component health, the API's `/components`), a query's current results and its
//! live changes (`attach`).
//! The server answers `{"success": true, "data": …}`, or an error `{"code", "message"}`.

use std::time::Duration;

use serde_json::Value;

use crate::domain::config::ComponentKind::{self, Queries, Reactions, Sources};
use crate::domain::model::ComponentStatus;

/// How long one read of the server may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A read the server could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DrasiError {
    /// It could not be reached, or answered something that is not its API.
    #[error("drasi-server at {url} did not answer: {message}")]
    Unreachable { url: String, message: String },
    /// It refused: its status, code (empty when it gave none) and message.
    #[error("{}", if code.is_empty() { message.clone() } else { format!("{code}: {message}") })]
    Refused { status: u16, code: String, message: String },
}

/// The refusal in an error answer of the server: its `code` and `message` (or `error`), else
/// the status and the body's text.
pub fn refusal(status: u16, body: &str) -> DrasiError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_owned);
    let message = field("message")
        .or_else(|| field("error"))
        .unwrap_or_else(|| format!("HTTP {status}: {}", crate::domain::text::plain(body.trim())));
    DrasiError::Refused { status, code: field("code").unwrap_or_default(), message }
}

/// One item of the server's component lists.
#[derive(serde::Deserialize)]
struct Listed {
    id: String,
    status: String,
    #[serde(default, alias = "errorMessage")]
    error_message: Option<String>,
}

/// GET `path` of the server at `endpoint`; its `data`.
async fn data(http: &reqwest::Client, endpoint: &str, path: &str) -> Result<Value, DrasiError> {
    let url = format!("{endpoint}/api/v1/{path}");
    let unreachable = |message: String| DrasiError::Unreachable { url: url.clone(), message };
    let res = http.get(&url).timeout(READ_TIMEOUT).send().await.map_err(|e| unreachable(e.to_string()))?;
    let status = res.status();
    if !status.is_success() {
        return Err(refusal(status.as_u16(), &res.text().await.unwrap_or_default()));
    }
    let body: Value = res.json().await.map_err(|e| unreachable(format!("not JSON: {e}")))?;
    body.get("data").cloned().ok_or_else(|| unreachable("an answer without data".into()))
}

/// The server's sources, queries and reactions with their status (its internal
/// `__component_graph__` source left out); `None` when it does not say.
pub async fn components(http: &reqwest::Client, endpoint: &str) -> Option<Vec<ComponentStatus>> {
    let list = |collection: ComponentKind| async move {
        let items: Vec<Listed> = serde_json::from_value(data(http, endpoint, collection.key()).await.ok()?).ok()?;
        Some(items.into_iter().filter(|i| !i.id.starts_with("__")).map(move |i| ComponentStatus {
            kind: collection.singular().to_owned(),
            id: i.id,
            status: i.status,
            error: i.error_message,
        }))
    };
    let (s, q, r) = tokio::join!(list(Sources), list(Queries), list(Reactions));
    Some(s?.chain(q?).chain(r?).collect())
}

/// One component of the server's instance snapshot: its id and status (its configuration,
/// which may hold secrets, is not read).
#[derive(serde::Deserialize)]
struct Snapped {
    id: String,
    status: String,
}

/// The server's instance snapshot, as far as a probe reads it.
#[derive(serde::Deserialize)]
struct Snapshot {
    sources: Vec<Snapped>,
    queries: Vec<Snapped>,
    reactions: Vec<Snapped>,
}

/// The status of every source, query and reaction in one read: drasi-server's snapshot of its
/// instance `server_id` (the configuration's `id`), without error messages (the lists have
/// them). An answer also shows the server is up: its `/health` says no more.
pub async fn snapshot(
    http: &reqwest::Client,
    endpoint: &str,
    server_id: &str,
) -> Result<Vec<ComponentStatus>, DrasiError> {
    let path = format!("instances/{server_id}/snapshot");
    let snapshot: Snapshot = serde_json::from_value(data(http, endpoint, &path).await?).map_err(|e| {
        DrasiError::Unreachable { url: format!("{endpoint}/api/v1/{path}"), message: format!("not a snapshot: {e}") }
    })?;
    let kinds = [(Sources, snapshot.sources), (Queries, snapshot.queries), (Reactions, snapshot.reactions)];
    Ok(kinds
        .into_iter()
        .flat_map(|(kind, items)| {
            items.into_iter().filter(|i| !i.id.starts_with("__")).map(move |i| ComponentStatus {
                kind: kind.singular().to_owned(),
                id: i.id,
                status: i.status,
                error: None,
            })
        })
        .collect())
}

/// The current result rows of query `query`.
pub async fn results(http: &reqwest::Client, endpoint: &str, query: &str) -> Result<Vec<Value>, DrasiError> {
    match data(http, endpoint, &format!("queries/{query}/results")).await? {
        Value::Array(rows) => Ok(rows),
        other => Err(DrasiError::Unreachable {
            url: format!("{endpoint}/api/v1/queries/{query}/results"),
            message: format!("results that are not a list: {other}"),
        }),
    }
}

/// One change of a query's results as the server's `attach` stream sends it: its sequence
/// number, time and the rows added, updated and deleted (its profiling figures left out).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResultChange {
    pub sequence: u64,
    pub timestamp: String,
    /// `{"type": "ADD" | "UPDATE" | "DELETE", "data" | "before"/"after": …}` per row.
    pub results: Vec<Value>,
}

/// The live changes of query `query`, from the server's `attach` (Server-Sent Events, one JSON
/// object per change). The stream ends when the server closes it: it stopped, or dropped the
/// query. An error answer (the query is unknown: 404 `QUERY_NOT_FOUND`) is `Refused`.
pub async fn attach(
    http: &reqwest::Client,
    endpoint: &str,
    query: &str,
) -> Result<impl futures::Stream<Item = Result<ResultChange, DrasiError>> + Send + 'static, DrasiError> {
    use futures::StreamExt;

    let url = format!("{endpoint}/api/v1/queries/{query}/attach");
    let unreachable = |message: String| DrasiError::Unreachable { url: url.clone(), message };
    let res = tokio::time::timeout(READ_TIMEOUT, http.get(&url).header("accept", "text/event-stream").send())
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", READ_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = res.status();
    if !status.is_success() {
        return Err(refusal(status.as_u16(), &res.text().await.unwrap_or_default()));
    }
    let events = sse_stream::SseStream::from_bytes_stream(res.bytes_stream());
    Ok(events.filter_map(move |event| {
        let url = url.clone();
        async move {
            let unreachable = |message: String| DrasiError::Unreachable { url: url.clone(), message };
            match event {
                Err(e) => Some(Err(unreachable(format!("the stream broke: {e}")))),
                Ok(e) => e.data.filter(|d| !d.is_empty()).map(|d| {
                    serde_json::from_str(&d).map_err(|e| unreachable(format!("a change that is not one: {e}")))
                }),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_reason_is_kept() {
        let body = r#"{"code":"QUERY_DELETE_FAILED","message":"Depended on by: out"}"#;
        assert_eq!(refusal(400, body).to_string(), "QUERY_DELETE_FAILED: Depended on by: out");
        assert_eq!(refusal(400, r#"{"success":false,"error":"no such source"}"#).to_string(), "no such source");
        assert_eq!(refusal(400, "boom").to_string(), "HTTP 400: boom");
    }
}
