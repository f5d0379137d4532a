//! The HTTP client of the draas API: bearer token, problem answers turned into one-line
//! errors, instance names resolved to ids.

pub mod conn;
pub mod error;
pub mod sse;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

pub use conn::{ConnArgs, Connection};
pub use error::CliError;

/// Longest a plain request may take (a `?wait=` is at most 60 s on the server).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// A request body.
pub enum Body {
    /// `application/json`.
    Json(Value),
    /// A JSON document sent with another media type (e.g. `application/json-patch+json`).
    JsonAs(Value, &'static str),
}

/// The problem document of an error answer (only what the client shows).
#[derive(Deserialize)]
struct Problem {
    code: String,
    message: String,
    #[serde(default)]
    pointer: Option<String>,
}

/// A client of one draas API.
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<SecretString>,
}

impl Client {
    /// A client for `conn`.
    pub fn new(conn: Connection) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("draas-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Transport(error::chain(&e)))?;
        Ok(Self { http, server: conn.server, token: conn.token })
    }

    /// A request to `path` (absolute, e.g. `/api/v1/instances`), with the token when there is one.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(t) => rb.bearer_auth(t.expose_secret()),
            None => rb,
        }
    }

    /// Send `rb`; an error status becomes [`CliError::Api`], no answer [`CliError::Transport`].
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response, CliError> {
        let res = rb.send().await.map_err(|e| self.unreachable(&e))?;
        if res.status().is_success() { Ok(res) } else { Err(api_error(res).await) }
    }

    /// Send a request with an optional body, with the plain-request timeout, and read JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<Value, CliError> {
        self.write(method, path, query, body).await.map(|(v, _)| v)
    }

    /// Like [`Client::call`], with the operation a configuration write started (its
    /// `X-Draas-Operation` header), if any.
    pub async fn write(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<(Value, Option<String>), CliError> {
        let mut rb = self.request(method, path).query(query).timeout(REQUEST_TIMEOUT);
        rb = match body {
            Some(Body::Json(v)) => rb.json(&v),
            Some(Body::JsonAs(v, media)) => rb.header(header::CONTENT_TYPE, media).body(v.to_string()),
            None => rb,
        };
        let res = self.send(rb).await?;
        let op = res.headers().get("x-draas-operation").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if res.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok((Value::Null, op));
        }
        let v = res
            .json()
            .await
            .map_err(|e| CliError::Transport(format!("the answer is not JSON: {}", error::chain(&e))))?;
        Ok((v, op))
    }

    /// GET `path` with `query` and read JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.call(Method::GET, path, query, None).await
    }

    /// GET `path` as text with an `Accept` header.
    pub async fn get_text(&self, path: &str, accept: &str) -> Result<String, CliError> {
        let rb = self.request(Method::GET, path).header(header::ACCEPT, accept).timeout(REQUEST_TIMEOUT);
        let res = self.send(rb).await?;
        res.text().await.map_err(|e| self.unreachable(&e))
    }

    /// The instance `name_or_id` names: read by id, else found by name. Unknown → the API's 404.
    pub async fn instance(&self, name_or_id: &str) -> Result<Value, CliError> {
        let by_id = self.get(&format!("/api/v1/instances/{}", segment(name_or_id)), &[]).await;
        match by_id {
            Err(CliError::Api { status: 404, .. }) => match self.find_by_name(name_or_id).await? {
                Some(found) => Ok(found),
                None => by_id,
            },
            other => other,
        }
    }

    /// The id of the instance `name_or_id` names.
    pub async fn instance_id(&self, name_or_id: &str) -> Result<String, CliError> {
        let found = self.instance(name_or_id).await?;
        Ok(found["id"].as_str().unwrap_or(name_or_id).to_owned())
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<Value>, CliError> {
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned())];
            query.extend(cursor.map(|c| ("cursor", c)));
            let page = self.get("/api/v1/instances", &query).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if let Some(found) = items.into_iter().find(|i| i["name"] == name) {
                return Ok(Some(found));
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(None),
            }
        }
    }

    /// Instance id → name, for every instance (for tables that show names beside ids).
    pub async fn names(&self) -> Result<std::collections::HashMap<String, String>, CliError> {
        let mut names = std::collections::HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned())];
            query.extend(cursor.take().map(|c| ("cursor", c)));
            let page = self.get("/api/v1/instances", &query).await?;
            for i in page["items"].as_array().into_iter().flatten() {
                if let (Some(id), Some(name)) = (i["id"].as_str(), i["name"].as_str()) {
                    names.insert(id.to_owned(), name.to_owned());
                }
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(names),
            }
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        CliError::Transport(format!("cannot reach draas at {}: {}", self.server, error::root_cause(e)))
    }
}

/// One path segment, percent-encoded where needed (ids are `[a-z0-9-]`, names too; anything
/// else is passed through encoded so the API answers with its own error).
pub fn segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The error of a non-success answer: the problem's code and message, else the HTTP status.
async fn api_error(res: Response) -> CliError {
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    match serde_json::from_str::<Problem>(&text) {
        Ok(p) => CliError::Api { status: status.as_u16(), code: p.code, message: p.message, pointer: p.pointer },
        Err(_) => CliError::Api {
            status: status.as_u16(),
            pointer: None,
            code: format!("http_{}", status.as_u16()),
            message: if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text.chars().take(200).collect()
            },
        },
    }
}
