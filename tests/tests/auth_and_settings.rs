//! Authentication, public health endpoints, the API documents, and the settings a `draas api`
//! process is started with (tokens, dev mode, key prefix), against real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::{DraasProcess, TestApp, eventually, problem, sample_config, spawn_app};
use reqwest::{Method, RequestBuilder, StatusCode, header};
use serde_json::{Value, json};

/// A request to `api` without any token.
fn anonymous(app: &TestApp, api: &DraasProcess, method: Method, path: &str) -> RequestBuilder {
    app.client.request(method, format!("{}{path}", api.base_url))
}

/// Every protected route family, with a body where the route takes one.
fn protected_routes(id: &str) -> Vec<(Method, String, Option<Value>)> {
    let i = format!("/api/v1/instances/{id}");
    vec![
        (Method::GET, "/api/v1/instances".into(), None),
        (Method::POST, "/api/v1/instances".into(), Some(json!({"name": "intruder"}))),
        (Method::GET, i.clone(), None),
        (Method::PATCH, i.clone(), Some(json!({"description": "defaced"}))),
        (Method::DELETE, i.clone(), None),
        (Method::POST, format!("{i}/start"), None),
        (Method::POST, format!("{i}/stop"), None),
        (Method::POST, format!("{i}/restart"), None),
        (Method::GET, "/api/v1/operations".into(), None),
        (Method::GET, format!("{i}/config"), None),
        (Method::PUT, format!("{i}/config"), Some(json!({}))),
        (Method::GET, format!("{i}/config/sources"), None),
        (Method::POST, format!("{i}/config/sources"), Some(json!({"kind": "mock", "id": "x"}))),
        (Method::GET, format!("{i}/config/sources/sensors"), None),
        (Method::PUT, format!("{i}/config/sources/sensors"), Some(json!({"kind": "mock"}))),
        (Method::DELETE, format!("{i}/config/reactions/out"), None),
        (Method::GET, format!("{i}/logs"), None),
        (Method::GET, format!("{i}/components"), None),
        (Method::GET, format!("{i}/queries/hot/results"), None),
        (Method::GET, format!("{i}/queries/hot/watch"), None),
    ]
}

#[tokio::test]
async fn protected_routes_refuse_missing_wrong_and_empty_tokens_with_401() {
    let app = spawn_app().await;
    let id = app.create_instance("guarded", sample_config()).await["id"].as_str().unwrap().to_owned();
    let before = app.snapshot().await;
    let wrong = format!("{}x", app.token);
    let authorizations: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong-token".into()),
        Some(format!("Bearer {wrong}")),
        Some(format!("Bearer {}", &app.token[..app.token.len() - 1])),
        Some("Bearer ".into()),
        Some("Bearer".into()),
        Some(String::new()),
        Some(app.token.clone()),
        Some(format!("Basic {}", app.token)),
        Some(format!("Token {}", app.token)),
    ];
    for (method, path, body) in protected_routes(&id) {
        for auth in &authorizations {
            let mut req = anonymous(&app, &app.api, method.clone(), &path);
            if let Some(auth) = auth {
                req = req.header(header::AUTHORIZATION, auth);
            }
            if let Some(body) = &body {
                req = req.json(body);
            }

            let res = req.send().await.unwrap();

            let challenge = res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
            let (status, problem) = problem(res).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("unauthorized")),
                "{method} {path} with {auth:?}"
            );
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{method} {path} with {auth:?}");
        }
    }
    assert_eq!(app.snapshot().await, before, "an unauthenticated request wrote");
}

/// RFC 9110 §11.1: the authentication scheme is a case-insensitive token.
#[tokio::test]
async fn the_bearer_scheme_is_matched_case_insensitively() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let res = anonymous(&app, &app.api, Method::GET, "/api/v1/instances")
            .header(header::AUTHORIZATION, format!("{scheme} {}", app.token))
            .send()
            .await
            .unwrap();

        assert_eq!(res.status(), StatusCode::OK, "scheme {scheme:?}");
    }
}

#[tokio::test]
async fn the_right_token_opens_every_protected_route_family() {
    let app = spawn_app().await;
    let id = app.create_instance("open", sample_config()).await["id"].as_str().unwrap().to_owned();
    for path in [
        "/api/v1/instances".to_owned(),
        format!("/api/v1/instances/{id}"),
        format!("/api/v1/instances/{id}/config"),
        format!("/api/v1/instances/{id}/config/sources"),
        format!("/api/v1/instances/{id}/config/sources/sensors"),
        "/api/v1/operations".to_owned(),
    ] {
        let res = app.req(Method::GET, &path).send().await.unwrap();

        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_reference_docs_open_without_a_token_and_load_nothing_from_elsewhere() {
    let app = spawn_app().await;
    let spec = anonymous(&app, &app.api, Method::GET, "/openapi.json").send().await.unwrap();
    assert_eq!(spec.status(), StatusCode::OK);
    let spec: serde_json::Value = spec.json().await.unwrap();
    assert!(spec["paths"]["/api/v1/instances/{id}/logs"].is_object(), "the document the API serves");
    let page = anonymous(&app, &app.api, Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let assets: Vec<&str> = html.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert!(!assets.is_empty(), "{html}");
    for asset in assets {
        assert!(!asset.contains("//"), "{asset} is loaded from elsewhere: {html}");
        let res = anonymous(&app, &app.api, Method::GET, &format!("/docs/{}", asset.trim_start_matches("./")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asset}: served from the binary");
    }
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app().await;
    for (path, expected) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let res = anonymous(&app, &app.api, Method::GET, path).send().await.unwrap();

        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], expected, "{path}");
    }
}

#[tokio::test]
async fn every_token_of_a_comma_separated_list_is_accepted() {
    let app = spawn_app().await;
    let api = app.start_api(&[("DRAAS_API_TOKENS", "one, two")]);
    let url = format!("{}/api/v1/instances", api.base_url);

    for token in ["one", "two"] {
        let res = app.client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{token}");
    }
    for token in ["one,two", "one, two", " two", "three", app.token.as_str(), ""] {
        let res = app.client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{token:?}");
    }
}

#[tokio::test]
async fn dev_mode_needs_no_token_and_warns_that_authentication_is_disabled() {
    let app = spawn_app().await;
    let api = app.start_api(&[("DRAAS_DEV", "true"), ("DRAAS_API_TOKENS", "")]);

    let res = anonymous(&app, &api, Method::POST, "/api/v1/instances")
        .json(&json!({"name": "devmode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = anonymous(&app, &api, Method::GET, "/api/v1/instances")
        .header(header::AUTHORIZATION, "Bearer anything")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    eventually("the dev-mode warning in the log", Duration::from_secs(10), || async {
        api.logged(&["WARN", "authentication is disabled"]).then_some(())
    })
    .await;
    assert!(!app.api.logged(&["authentication is disabled"]), "an API with tokens does not warn");
}

#[tokio::test]
async fn every_key_lives_under_the_configured_prefix() {
    let app = spawn_app().await;
    let id = app.create_instance("prefixed", sample_config()).await["id"].as_str().unwrap().to_owned();
    let res = app
        .req(Method::PATCH, &format!("/api/v1/instances/{id}/config"))
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(r#"{"logLevel":"debug"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let mut c = app.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();

    assert!(!keys.is_empty());
    let tag = format!("{{{}}}:", app.prefix);
    let stray: Vec<&String> = keys.iter().filter(|k| !k.starts_with(&tag)).collect();
    assert!(stray.is_empty(), "keys outside {tag}: {stray:?}");
    assert!(keys.contains(&format!("{tag}config:{id}")), "{keys:?}");
}

#[tokio::test]
async fn apis_with_different_prefixes_on_one_redis_do_not_see_each_other() {
    let app = spawn_app().await;
    let other = app.start_api(&[("DRAAS_KEY_PREFIX", "other-fleet")]);
    app.create_instance("mine", json!({})).await;

    let res =
        app.req_to(&other, Method::POST, "/api/v1/instances").json(&json!({"name": "mine"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "names are unique per prefix only");
    let theirs: Value = res.json().await.unwrap();

    let page: Value = app.req_to(&other, Method::GET, "/api/v1/instances").send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], theirs["id"]);
    let (status, _) = app.get_json(&format!("/api/v1/instances/{}", theirs["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut c = app.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with(&format!("{{{}}}:", app.prefix)) || k.starts_with("{other-fleet}:")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.starts_with("{other-fleet}:")), "{keys:?}");
}

#[tokio::test]
async fn readiness_fails_while_health_holds_when_redis_is_gone() {
    let mut app = spawn_app().await;
    let res = anonymous(&app, &app.api, Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    app.redis.kill();

    let res = eventually("/readyz to answer 503", Duration::from_secs(30), || async {
        let res = anonymous(&app, &app.api, Method::GET, "/readyz").send().await.unwrap();
        (res.status() != StatusCode::OK).then_some(res)
    })
    .await;
    let retry_after = res.headers().get(header::RETRY_AFTER).cloned();
    let (status, body) = problem(res).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready")));
    assert!(retry_after.is_some(), "503 without Retry-After");
    let res = anonymous(&app, &app.api, Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn protected_requests_answer_503_store_unavailable_quickly_when_redis_is_gone() {
    let mut app = spawn_app().await;
    let id = app.create_instance("stranded", sample_config()).await["id"].as_str().unwrap().to_owned();

    app.redis.kill();

    let requests = [
        app.req(Method::GET, "/api/v1/instances"),
        app.req(Method::GET, &format!("/api/v1/instances/{id}")),
        app.req(Method::GET, &format!("/api/v1/instances/{id}/config")),
        app.req(Method::POST, "/api/v1/instances").json(&json!({"name": "during-outage"})),
        app.req(Method::PUT, &format!("/api/v1/instances/{id}/config")).json(&json!({})),
    ];
    for req in requests {
        let started = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(30), req.send())
            .await
            .expect("a request during an outage must not hang")
            .unwrap();
        let elapsed = started.elapsed();

        let retry_after = res.headers().get(header::RETRY_AFTER).cloned();
        let (status, body) = problem(res).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")),
            "{body}"
        );
        assert!(retry_after.is_some(), "503 without Retry-After");
        assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_as_json_with_the_instance_paths() {
    let app = spawn_app().await;

    let res = app.req(Method::GET, "/openapi.json").send().await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/api/v1/instances", "/api/v1/instances/{id}", "/api/v1/instances/{id}/config", "/healthz", "/readyz"] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    assert_eq!(doc, serde_json::from_str::<Value>(&draas_api::openapi::json()).unwrap());
}

#[tokio::test]
async fn the_docs_page_is_html() {
    let app = spawn_app().await;

    let res = app.req(Method::GET, "/docs").send().await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"),
        "{:?}",
        res.headers()[header::CONTENT_TYPE]
    );
    let html = res.text().await.unwrap().to_ascii_lowercase();
    assert!(html.contains("<html") || html.contains("<!doctype html"), "{html}");
}

#[tokio::test]
async fn an_api_without_tokens_or_dev_mode_refuses_to_start() {
    let app = spawn_app().await;
    for tokens in [None, Some(""), Some(" , ,")] {
        let mut env = vec![("DRAAS_REDIS_URL", app.redis.url.as_str())];
        if let Some(t) = tokens {
            env.push(("DRAAS_API_TOKENS", t));
        }

        let (status, stderr) = draas_tests::api_exit(&env).await;

        assert!(!status.success(), "{tokens:?}: exited {status}");
        assert!(stderr.contains("DRAAS_API_TOKENS"), "{tokens:?}: stderr does not say what to set:\n{stderr}");
    }
    let (status, stderr) =
        draas_tests::api_exit(&[("DRAAS_REDIS_URL", app.redis.url.as_str()), ("DRAAS_DEV", "false")]).await;
    assert!(!status.success(), "DRAAS_DEV=false: exited {status}");
    assert!(stderr.contains("DRAAS_API_TOKENS"), "{stderr}");
}

#[tokio::test]
async fn an_api_with_an_unusable_key_prefix_refuses_to_start() {
    let app = spawn_app().await;
    for prefix in ["a}b", "a{b", "has space", ""] {
        let (status, stderr) = draas_tests::api_exit(&[
            ("DRAAS_REDIS_URL", app.redis.url.as_str()),
            ("DRAAS_API_TOKENS", "t"),
            ("DRAAS_KEY_PREFIX", prefix),
        ])
        .await;

        assert!(!status.success(), "{prefix:?}: exited {status}");
        assert!(stderr.contains("prefix"), "{prefix:?}:\n{stderr}");
    }
}
