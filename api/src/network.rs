//! The operator's policies on the API's write paths. Every configuration about to be stored
//! loses the server `host` and `port` the operator does not allow (see
//! [`draas_jobs::domain::network`]), and the answer says so in `Warning: 299 - "…"` headers
//! (as the Kubernetes API reports what it changed), so the body keeps its shape; and, unless
//! an admin token asks, it is refused (422, naming the field) when it sets what only an admin
//! may or names a file outside the instance's directory, as are runtime options outside the
//! allow-list and maximums ([`draas_jobs::domain::policy`]). Whoever writes, a `${NAME}`
//! must name a secret of the instance or a variable of `process.env_allow`
//! ([`draas_jobs::domain::secrets`]).

use std::cell::RefCell;
use std::collections::BTreeSet;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::model::{InstanceState, Platform, RuntimeOptions};
use draas_jobs::domain::validate::ConfigError;
use draas_jobs::domain::{network, policy, render, secrets};

use crate::AppState;
use crate::auth::Caller;

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Apply the policies to the configuration `config` of an instance on `platform` (whose
/// allocated port, if any, is `port`) written by `caller`, keeping the network policy's
/// warnings for the answer.
pub fn confine(
    state: &AppState,
    caller: &Caller,
    platform: Platform,
    port: Option<u16>,
    before: Option<&DrasiConfig>,
    secrets: &BTreeSet<String>,
    config: &mut DrasiConfig,
) -> Result<(), ConfigError> {
    if !caller.is_admin() {
        policy::check_config(config, before)?;
    }
    // Whoever writes: a reference to anything else would resolve (or fail) against an
    // environment nobody chose for the instance.
    secrets::check_references(config, before, secrets, &state.settings.process.env_allow)
        .map_err(|e| ConfigError(vec![e]))?;
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
    Ok(())
}

/// [`confine`] a new configuration of the instance `s`.
pub fn confine_for(
    state: &AppState,
    caller: &Caller,
    s: &InstanceState,
    config: &mut DrasiConfig,
) -> Result<(), ConfigError> {
    let port = s.observed.as_ref().and_then(|o| o.value.port);
    let before = s.unreadable.is_none().then_some(&s.config.value);
    confine(state, caller, s.instance.value.platform, port, before, &s.secret_names, config)
}

/// Check the `${NAME}` references of a new configuration of the instance `s` (the part of
/// [`confine_for`] that a path which applies no other policy still applies).
pub fn check_references_for(state: &AppState, s: &InstanceState, config: &DrasiConfig) -> Result<(), ConfigError> {
    let before = s.unreadable.is_none().then_some(&s.config.value);
    secrets::check_references(config, before, &s.secret_names, &state.settings.process.env_allow)
        .map_err(|e| ConfigError(vec![e]))
}

/// May `caller` give an instance on `platform` these runtime options (image, CPUs, memory)?
/// Pointers are relative to the options object.
pub fn admit_runtime(
    state: &AppState,
    caller: &Caller,
    platform: Platform,
    r: &RuntimeOptions,
) -> Result<(), ConfigError> {
    if caller.is_admin() {
        return Ok(());
    }
    let own = draas_jobs::settings::own_image(&state.settings, platform);
    policy::check_runtime(r, state.settings.policy.limits(own))
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
