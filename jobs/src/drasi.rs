//! drasi-server's own REST API, as draas reads it: the components with their status (the
//! reconciler's component health, the API's `/components`) and a query's current results.
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
    /// It refused: its status, code and message.
    #[error("drasi-server refused: {code}: {message}")]
    Refused { status: u16, code: String, message: String },
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
    let body: Value = res.json().await.map_err(|e| unreachable(format!("not JSON ({status}): {e}")))?;
    if !status.is_success() {
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Err(DrasiError::Refused { status: status.as_u16(), code: text("code"), message: text("message") });
    }
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
