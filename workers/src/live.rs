//! Live applies: the steps of a [`draas_jobs::domain::live::Plan`] sent to a running
//! drasi-server's own API, in order, stopping at the first the server refuses.

use std::time::Duration;

use draas_jobs::domain::live::{Action, Step};
use reqwest::Method;

/// How long one call to the server may take (a created source may bootstrap first).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A step the server refused, or could not be asked.
#[derive(Debug)]
pub struct Refused {
    pub step: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

/// The client of live applies: a new connection per call. A pooled one may have been closed by
/// the server while it sat idle (during `validate`), and a step sent on it fails with "error
/// sending request" although the server is fine; a POST cannot simply be sent again.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap_or_default())
}

/// Send `steps` to the server at `endpoint`, in order.
pub async fn apply(endpoint: &str, steps: &[Step]) -> Result<(), Refused> {
    let http = client();
    for step in steps {
        let base = format!("{endpoint}/api/v1/{}", step.collection.key());
        let (method, url) = match step.action {
            Action::Delete => (Method::DELETE, format!("{base}/{}", step.id)),
            Action::Create => (Method::POST, base.clone()),
            Action::Replace => (Method::PUT, format!("{base}/{}", step.id)),
        };
        // drasi-server 0.2.2 starts a component it creates with `autoStart` (the default) twice
        // at once, in its handler and in the lifecycle it calls, and the server can die of it
        // (seen with reactions): create it stopped, then start it with a call of its own.
        let (body, start) = match (&step.body, step.action) {
            (Some(body), Action::Create) => {
                let start = body.get("autoStart").and_then(serde_json::Value::as_bool) != Some(false);
                let mut body = body.clone();
                body["autoStart"] = serde_json::Value::Bool(false);
                (Some(body), start)
            }
            (body, _) => (body.clone(), false),
        };
        let refused = |message: String| Refused { step: step.describe(), message };
        let mut req = http.request(method, url).timeout(STEP_TIMEOUT);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let res = req.send().await.map_err(|e| refused(format!("the server did not answer: {e}")))?;
        let status = res.status();
        // A component already gone is what a delete wants (a retried apply, or a server
        // changed behind draas' back).
        if step.action == Action::Delete && status == reqwest::StatusCode::NOT_FOUND {
            continue;
        }
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            return Err(refused(draas_jobs::drasi::refusal(status.as_u16(), &body).to_string()));
        }
        if start {
            let url = format!("{base}/{}/start", step.id);
            let res = http.post(url).timeout(STEP_TIMEOUT).send().await;
            let res = res.map_err(|e| refused(format!("the server did not answer its start: {e}")))?;
            let status = res.status();
            if !status.is_success() {
                let body = res.text().await.unwrap_or_default();
                return Err(refused(format!("start: {}", draas_jobs::drasi::refusal(status.as_u16(), &body))));
            }
        }
    }
    Ok(())
}
