//! The network policy on the API's write paths: every configuration about to be stored loses
//! the server `host` and `port` the operator does not allow (see
//! [`draas_jobs::domain::network`]), and the answer says so in `Warning: 299 - "…"` headers
//! (as the Kubernetes API reports what it changed), so the body keeps its shape.

use std::cell::RefCell;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::model::{InstanceState, Platform};
use draas_jobs::domain::{network, render};

use crate::AppState;

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Apply the policy to the configuration `config` of an instance on `platform` (whose
/// allocated port, if any, is `port`), keeping its warnings for the answer.
pub fn confine(state: &AppState, platform: Platform, port: Option<u16>, config: &mut DrasiConfig) {
    let policy = network::Policy {
        own_host: Some(render::default_host(platform, &state.settings.process.host)),
        own_port: port,
        ..state.settings.network.policy()
    };
    let warnings = network::confine(config, policy);
    // Outside a request (no middleware scope) there is nobody to tell.
    let _ = WARNINGS.try_with(|cell| {
        let mut kept = cell.borrow_mut();
        for w in warnings {
            if !kept.contains(&w) {
                kept.push(w);
            }
        }
    });
}

/// [`confine`] a new configuration of the instance `s`.
pub fn confine_for(state: &AppState, s: &InstanceState, config: &mut DrasiConfig) {
    confine(state, s.instance.value.platform, s.observed.as_ref().and_then(|o| o.value.port), config);
}

/// Middleware: collect the request's warnings and add them to a successful answer.
pub async fn warnings(req: Request, next: Next) -> Response {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async move {
            let mut res = next.run(req).await;
            let warnings = WARNINGS.with(RefCell::take);
            if res.status().is_success() {
                for w in warnings {
                    if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace(['"', '\\'], "'"))) {
                        res.headers_mut().append(header::WARNING, v);
                    }
                }
            }
            res
        })
        .await
}
