//! `/metrics` on the API and on a worker: Prometheus (OpenMetrics) text with the figures the
//! operators need, behind the token unless `api.metrics_public`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{eventually, free_port, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

/// The value of the first sample line starting with `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn api_and_worker_metrics_count_requests_jobs_passes_queues_and_instances() {
    let app = spawn_app().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _worker = app
        .start_worker("node-a", &[("DRAAS_RECONCILE__INTERVAL_SECS", "1"), ("DRAAS_WORKER__METRICS_LISTEN", &listen)]);
    let id = app.create_instance("measured", json!({})).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // Without a token: refused, on both listeners.
    let res = reqwest::get(format!("{}/metrics", app.api.base_url)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let worker_url = format!("http://{listen}/metrics");
    let res = eventually("the worker's metrics listener", LONG, || async {
        reqwest::Client::new().get(&worker_url).send().await.ok()
    })
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The worker: the start job ran once and succeeded, its queue wait and duration were
    // measured, and node passes are timed.
    let worker_text = eventually("node passes in the worker's metrics", LONG, || async {
        let text =
            reqwest::Client::new().get(&worker_url).bearer_auth(&app.token).send().await.ok()?.text().await.ok()?;
        sample(&text, r#"draas_reconcile_pass_duration_seconds_count{scope="node"}"#)
            .is_some_and(|n| n >= 1.0)
            .then_some(text)
    })
    .await;
    assert_eq!(
        sample(&worker_text, r#"draas_jobs_total{kind="start",outcome="succeeded"}"#),
        Some(1.0),
        "{worker_text}"
    );
    assert_eq!(sample(&worker_text, r#"draas_job_pickup_seconds_count{kind="start"}"#), Some(1.0), "{worker_text}");
    assert_eq!(sample(&worker_text, r#"draas_job_duration_seconds_count{kind="start"}"#), Some(1.0), "{worker_text}");

    // The API: request histogram by route template (never by raw path), queue depths, and
    // instances by platform and status once a global pass counted them.
    let res = app.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"));
    let api_text = eventually("instance counts in the API's metrics", LONG, || async {
        let text = app.req(Method::GET, "/metrics").send().await.ok()?.text().await.ok()?;
        (sample(&text, r#"draas_instances{platform="process",status="running"}"#) == Some(1.0)).then_some(text)
    })
    .await;
    let created = sample(
        &api_text,
        r#"draas_http_request_duration_seconds_count{route="/api/v1/instances",method="POST",status="201"}"#,
    );
    assert_eq!(created, Some(1.0), "{api_text}");
    assert!(api_text.contains(r#"route="/api/v1/operations/{id}""#), "route templates, not paths: {api_text}");
    assert!(!api_text.contains(&id), "no instance id in a label: {api_text}");
    assert!(api_text.contains(r#"draas_queue_depth{queue="shared"} 0"#), "{api_text}");
    assert!(api_text.contains(r#"draas_queue_depth{queue="node-node-a"} 0"#), "{api_text}");
    assert!(api_text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
}

#[tokio::test]
async fn metrics_can_be_public_while_everything_else_still_needs_the_token() {
    let app = spawn_app().await;
    let api = app.start_api(&[("DRAAS_API__METRICS_PUBLIC", "true")]);
    let res = reqwest::get(format!("{}/metrics", api.base_url)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = reqwest::get(format!("{}/api/v1/instances", api.base_url)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "only /metrics is public");
}
