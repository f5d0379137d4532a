//! Limits of the API listener: connections that are slow to send their headers, or idle on
//! keep-alive, are closed after `api.header_timeout_secs`; a client's `x-request-id` is kept
//! only when it is a short token, and replaced otherwise before it is logged or stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::{DraasProcess, TestApp, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app_with_header_timeout(secs: &str) -> TestApp {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_API__HEADER_TIMEOUT_SECS", secs)]);
    app
}

async fn connect(api: &DraasProcess) -> TcpStream {
    TcpStream::connect(api.base_url.trim_start_matches("http://")).await.unwrap()
}

/// Read until the server closes the connection (or `within` passes: `None`).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn a_connection_trickling_its_headers_is_closed_after_the_header_timeout() {
    let app = app_with_header_timeout("2").await;
    let mut stream = connect(&app.api).await;
    let (mut read, mut write) = stream.split();
    let trickle = async {
        write.write_all(b"GET /healthz HTTP/1.1\r\nHost: draas\r\n").await.unwrap();
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if write.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    };
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    let closed = async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let took = tokio::select! {
        took = closed => Some(took),
        () = trickle => None,
    };
    let took = took.expect("the connection stayed open for 10 s of trickled headers");
    if draas_tests::verbose() {
        eprintln!("FIGURE trickled headers: closed after {took:?} (header timeout 2 s)");
    }
    assert!(took < Duration::from_secs(6), "closed only after {took:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = app_with_header_timeout("2").await;
    let mut stream = connect(&app.api).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: draas\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let took = closed_within(&mut stream, Duration::from_secs(10)).await;
    if draas_tests::verbose() {
        eprintln!("FIGURE idle keep-alive: closed after {took:?} (header timeout 2 s)");
    }
    assert!(took.is_some_and(|t| t < Duration::from_secs(6)), "an idle connection stayed open: {took:?}");
}

#[tokio::test]
async fn an_invalid_request_id_is_replaced_before_it_is_logged_or_stored() {
    let app = spawn_app().await;
    let id = app.create_instance("ids", json!({})).await["id"].as_str().unwrap().to_owned();
    let forged = "x\"} level=ERROR msg=forged {\"";
    let long = "a".repeat(8000);
    for bad in [forged, long.as_str(), ""] {
        let res = app
            .req(Method::POST, &format!("/api/v1/instances/{id}/stop"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(!echoed.is_empty() && echoed != bad && echoed.len() <= 128, "{echoed}");
        let op: Value = res.json().await.unwrap();
        assert_eq!(op["correlationId"].as_str(), Some(echoed.as_str()), "{op}");
    }
    assert!(!app.api.logged(&["msg=forged"]), "the forged id reached the log");
    let good = "client-42.retry_1:a";
    let res = app.req(Method::GET, "/api/v1/instances").header("x-request-id", good).send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], good);
}
