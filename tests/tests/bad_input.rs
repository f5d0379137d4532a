//! Hostile and malformed input: every request gets a 4xx in the one error shape
//! (`application/problem+json` with a string `code` and `message`) and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use draas_tests::{TestApp, problem, sample_config, spawn_app};
use reqwest::{Method, RequestBuilder, StatusCode, header};
use serde_json::{Value, json};

/// An app with one instance already stored, so "nothing written" compares real data.
async fn app_with_one_instance() -> (TestApp, String) {
    let app = spawn_app().await;
    let id = app.create_instance("existing", sample_config()).await["id"].as_str().unwrap().to_owned();
    (app, id)
}

async fn instance_names(app: &TestApp) -> Vec<String> {
    let (status, page) = app.get_json("/api/v1/instances?limit=500").await;
    assert_eq!(status, StatusCode::OK);
    page["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect()
}

/// Send `req`, expect `status` and `code` in the one error shape, and prove nothing was
/// written. Returns the error body.
async fn refused(app: &TestApp, req: RequestBuilder, status: StatusCode, code: &str) -> Value {
    let before = app.snapshot().await;
    let (got, body) = problem(req.send().await.unwrap()).await;
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    assert_eq!(app.snapshot().await, before, "a refused request wrote: {body}");
    body
}

#[tokio::test]
async fn hostile_instance_names_are_refused_with_invalid_name_at_the_name_pointer() {
    let (app, _) = app_with_one_instance().await;
    let long = "a".repeat(64);
    let huge = "x".repeat(10 * 1024);
    let names = [
        "../../etc",
        "has space",
        "UPPER",
        "Upper",
        long.as_str(),
        "",
        "a;b",
        "$(reboot)",
        "`reboot`",
        "a\0b",
        "\0",
        huge.as_str(),
        "*a",
        "&a",
        "!tag",
        "- x",
        "a: b",
        "#comment",
        "-lead",
        "trail-",
        "a.b",
        "a/b",
        "a_b",
        "ünï",
        "a\nb",
        " a",
        "a ",
    ];
    for name in names {
        let body = refused(
            &app,
            app.req(Method::POST, "/api/v1/instances").json(&json!({"name": name, "config": sample_config()})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        )
        .await;
        assert_eq!(body["pointer"], "/name", "{name:?}");
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn hostile_names_are_refused_on_rename_too() {
    let (app, id) = app_with_one_instance().await;
    for name in ["../../etc", "has space", "UPPER", "", "a;b", "*a"] {
        let body = refused(
            &app,
            app.req(Method::PATCH, &format!("/api/v1/instances/{id}")).json(&json!({"name": name})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        )
        .await;
        assert_eq!(body["pointer"], "/name", "{name:?}");
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn a_name_of_63_characters_is_the_longest_accepted() {
    let app = spawn_app().await;
    let name = "a".repeat(63);

    let created = app.create_instance(&name, json!({})).await;

    assert_eq!(created["name"], json!(name));
}

#[tokio::test]
async fn invalid_configs_on_create_are_refused_with_a_code_and_a_pointer_under_config() {
    let (app, _) = app_with_one_instance().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"port": 0}), "invalid_port", "/config/port"),
        (json!({"port": 70000}), "invalid_port", "/config/port"),
        (json!({"port": -1}), "invalid_port", "/config/port"),
        (json!({"port": "80"}), "invalid_port", "/config/port"),
        (json!({"bogus": 1}), "unknown_field", "/config/bogus"),
        (
            json!({"queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "nope"}]}]}),
            "unknown_source",
            "/config/queries/0/sources/0/sourceId",
        ),
        (json!({"logLevel": "verbose"}), "invalid_log_level", "/config/logLevel"),
        (
            json!({"sources": [{"kind": "mock", "id": "s"}, {"kind": "mock", "id": "s"}]}),
            "duplicate_id",
            "/config/sources/1/id",
        ),
        (
            json!({"reactions": [{"kind": "log", "id": "r", "queries": ["missing"]}]}),
            "unknown_query",
            "/config/reactions/0/queries/0",
        ),
        (json!({"host": "a b"}), "invalid_host", "/config/host"),
        (json!({"host": ""}), "invalid_host", "/config/host"),
        (json!({"id": "../etc"}), "invalid_server_id", "/config/id"),
    ];
    for (config, code, pointer) in cases {
        let body = refused(
            &app,
            app.req(Method::POST, "/api/v1/instances").json(&json!({"name": "fresh", "config": config})),
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
        assert_eq!(body["pointer"], pointer, "{config}: {body}");
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn hostile_component_ids_in_a_config_are_refused() {
    let (app, _) = app_with_one_instance().await;
    let long = "c".repeat(64);
    for cid in ["../x", "a b", "a/b", ".hidden", "", "a\0b", "*a", long.as_str()] {
        let configs = [
            json!({"sources": [{"kind": "mock", "id": cid}]}),
            json!({"queries": [{"id": cid, "query": "MATCH (n) RETURN n"}]}),
            json!({"reactions": [{"kind": "log", "id": cid}]}),
            json!({"sources": [{"kind": "mock", "id": "s"}], "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": cid}]}]}),
        ];
        for config in configs {
            let before = app.snapshot().await;
            let res = app
                .req(Method::POST, "/api/v1/instances")
                .json(&json!({"name": "fresh", "config": config}))
                .send()
                .await
                .unwrap();

            let (status, body) = problem(res).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{config}: {body}");
            assert!(body["pointer"].as_str().unwrap_or("").starts_with("/config/"), "{config}: {body}");
            assert_eq!(app.snapshot().await, before);
        }
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn invalid_configs_on_put_are_refused_with_pointers_at_the_root() {
    let (app, id) = app_with_one_instance().await;
    let path = format!("/api/v1/instances/{id}/config");
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"port": 0}), "invalid_port", "/port"),
        (json!({"port": 70000}), "invalid_port", "/port"),
        (json!({"bogus": 1}), "unknown_field", "/bogus"),
        (json!({"logLevel": "verbose"}), "invalid_log_level", "/logLevel"),
        (
            json!({"sources": [{"kind": "mock", "id": "s"}, {"kind": "mock", "id": "s"}]}),
            "duplicate_id",
            "/sources/1/id",
        ),
        (
            json!({"queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "nope"}]}]}),
            "unknown_source",
            "/queries/0/sources/0/sourceId",
        ),
    ];
    for (config, code, pointer) in cases {
        let body =
            refused(&app, app.req(Method::PUT, &path).json(&config), StatusCode::UNPROCESSABLE_ENTITY, code).await;
        assert_eq!(body["pointer"], pointer, "{config}");
    }
    let (_, stored) = app.get_json(&path).await;
    assert_eq!(stored, sample_config());
}

#[tokio::test]
async fn several_problems_in_one_config_are_all_reported() {
    let (app, _) = app_with_one_instance().await;
    let config = json!({
        "sources": [{"kind": "mock", "id": "s"}, {"kind": "mock", "id": "s"}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "nope"}]}]
    });

    let body = refused(
        &app,
        app.req(Method::POST, "/api/v1/instances").json(&json!({"name": "fresh", "config": config})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "duplicate_id",
    )
    .await;

    let errors: Vec<(&str, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["pointer"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [("duplicate_id", "/config/sources/1/id"), ("unknown_source", "/config/queries/0/sources/0/sourceId")]
    );
}

#[tokio::test]
async fn unknown_and_mistyped_fields_in_the_create_body_are_refused() {
    let (app, _) = app_with_one_instance().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"name": "a", "bogus": 1}), "unknown_field", "/bogus"),
        (json!({"name": 7}), "invalid_field", "/name"),
        (json!({"name": "a", "platform": "vm"}), "invalid_field", "/platform"),
        (json!({"name": "a", "config": {"sources": {}}}), "invalid_field", "/config/sources"),
    ];
    for (req, code, pointer) in cases {
        let body = refused(
            &app,
            app.req(Method::POST, "/api/v1/instances").json(&req),
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
        assert_eq!(body["pointer"], pointer, "{req}");
    }
    for req in [json!({}), json!([]), json!("orders"), json!(null)] {
        let before = app.snapshot().await;
        let (status, _) = problem(app.req(Method::POST, "/api/v1/instances").json(&req).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{req}");
        assert_eq!(app.snapshot().await, before);
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn descriptions_over_the_limit_or_with_nul_are_refused() {
    let (app, _) = app_with_one_instance().await;
    for description in ["d".repeat(1025), "a\0b".to_owned()] {
        let body = refused(
            &app,
            app.req(Method::POST, "/api/v1/instances").json(&json!({"name": "fresh", "description": description})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_description",
        )
        .await;
        assert_eq!(body["pointer"], "/description");
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

fn two_mib_json() -> String {
    let filler = "x".repeat(2 * 1024 * 1024);
    json!({"name": "big", "description": filler}).to_string()
}

#[tokio::test]
async fn a_two_mib_body_is_refused_with_413_on_every_write() {
    let (app, id) = app_with_one_instance().await;
    let big = two_mib_json();
    // The server closes the connection after refusing an unread body; a client of its own
    // without pooling keeps that from reaching the connections of `app.client`.
    let unpooled = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let requests = [
        (Method::POST, "/api/v1/instances".to_owned(), "application/json"),
        (Method::PATCH, format!("/api/v1/instances/{id}"), "application/json"),
        (Method::PUT, format!("/api/v1/instances/{id}/config"), "application/json"),
        (Method::PUT, format!("/api/v1/instances/{id}/config"), "application/yaml"),
        (Method::PATCH, format!("/api/v1/instances/{id}/config"), "application/merge-patch+json"),
        (Method::POST, format!("/api/v1/instances/{id}/config/sources"), "application/json"),
        (Method::PUT, format!("/api/v1/instances/{id}/config/sources/sensors"), "application/json"),
    ];
    for (method, path, ct) in requests {
        refused(
            &app,
            unpooled
                .request(method, format!("{}{path}", app.api.base_url))
                .bearer_auth(&app.token)
                .header(header::CONTENT_TYPE, ct)
                .body(big.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        )
        .await;
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_read() {
    let app = spawn_app().await;
    let body = json!({"name": "near-limit", "bogus": "x".repeat(1024 * 1024 - 100)}).to_string();
    assert!(body.len() < 1024 * 1024);

    let (status, problem) = problem(
        app.req(Method::POST, "/api/v1/instances")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_field")),
        "a body under the limit is parsed, not refused for its size"
    );
}

#[tokio::test]
async fn malformed_json_is_400_malformed_json_on_every_write() {
    let (app, id) = app_with_one_instance().await;
    let bodies = [r#"{"name":"#, "{", "[1,", "not json", r#"{"name":"a",}"#, "\u{0}", ""];
    let targets = [
        (Method::POST, "/api/v1/instances".to_owned(), "application/json"),
        (Method::PATCH, format!("/api/v1/instances/{id}"), "application/json"),
        (Method::PUT, format!("/api/v1/instances/{id}/config"), "application/json"),
        (Method::PATCH, format!("/api/v1/instances/{id}/config"), "application/json-patch+json"),
        (Method::PATCH, format!("/api/v1/instances/{id}/config"), "application/merge-patch+json"),
        (Method::POST, format!("/api/v1/instances/{id}/config/queries"), "application/json"),
    ];
    let mut wrong = Vec::new();
    for (method, path, ct) in targets {
        for body in bodies {
            let before = app.snapshot().await;
            let res = app.req(method.clone(), &path).header(header::CONTENT_TYPE, ct).body(body).send().await.unwrap();

            let (status, problem) = problem(res).await;
            if (status, problem["code"].as_str()) != (StatusCode::BAD_REQUEST, Some("malformed_json")) {
                wrong.push(format!("{method} {path} ({ct}) {body:?} -> {status} {problem}"));
            }
            assert_eq!(app.snapshot().await, before, "{method} {path} {body:?}");
        }
    }
    assert!(wrong.is_empty(), "malformed JSON not answered 400 malformed_json:\n{}", wrong.join("\n"));
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn malformed_yaml_is_400_malformed_yaml() {
    let (app, id) = app_with_one_instance().await;
    for body in ["sources: [", "a: b\n c: d\n\t- e", "key: 'unterminated", "*undefined_alias"] {
        refused(
            &app,
            app.req(Method::PUT, &format!("/api/v1/instances/{id}/config"))
                .header(header::CONTENT_TYPE, "application/yaml")
                .body(body),
            StatusCode::BAD_REQUEST,
            "malformed_yaml",
        )
        .await;
    }
}

#[tokio::test]
async fn yaml_alias_bombs_are_refused_without_storing_anything() {
    let (app, id) = app_with_one_instance().await;
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        let row = [prev.as_str(); 10].join(", ");
        yaml.push_str(&format!("a{i}: &a{i} [{row}]\n"));
    }
    let before = app.snapshot().await;

    let res = app
        .req(Method::PUT, &format!("/api/v1/instances/{id}/config"))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();

    let (status, _) = problem(res).await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn missing_or_wrong_content_types_are_415() {
    let (app, id) = app_with_one_instance().await;
    let targets = [
        (Method::POST, "/api/v1/instances".to_owned()),
        (Method::PATCH, format!("/api/v1/instances/{id}")),
        (Method::PUT, format!("/api/v1/instances/{id}/config")),
        (Method::PATCH, format!("/api/v1/instances/{id}/config")),
        (Method::POST, format!("/api/v1/instances/{id}/config/sources")),
        (Method::PUT, format!("/api/v1/instances/{id}/config/sources/sensors")),
    ];
    let body = json!({"name": "fresh", "kind": "mock", "id": "sensors"}).to_string();
    for (method, path) in targets {
        for ct in
            [None, Some("text/plain"), Some("application/xml"), Some("multipart/form-data"), Some("application/jsonx")]
        {
            let mut req = app.req(method.clone(), &path).body(body.clone());
            if let Some(ct) = ct {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            refused(&app, req, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        }
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn a_content_type_with_parameters_and_odd_case_is_understood() {
    let app = spawn_app().await;

    let res = app
        .req(Method::POST, "/api/v1/instances")
        .header(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")
        .body(json!({"name": "charset"}).to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_routes_are_404_route_not_found_in_the_error_shape() {
    let (app, id) = app_with_one_instance().await;
    for path in [
        "/".to_owned(),
        "/nope".to_owned(),
        "/api/v1".to_owned(),
        "/api/v2/instances".to_owned(),
        "/api/v1/instance".to_owned(),
        format!("/api/v1/instances/{id}/config/sources/sensors/extra"),
        format!("/api/v1/instances/{id}/nope"),
    ] {
        refused(&app, app.req(Method::GET, &path), StatusCode::NOT_FOUND, "route_not_found").await;
    }
}

#[tokio::test]
async fn wrong_methods_are_405_in_the_error_shape() {
    let (app, id) = app_with_one_instance().await;
    let cases = [
        (Method::DELETE, "/api/v1/instances".to_owned()),
        (Method::PUT, "/api/v1/instances".to_owned()),
        (Method::PATCH, "/api/v1/instances".to_owned()),
        (Method::POST, format!("/api/v1/instances/{id}")),
        (Method::POST, format!("/api/v1/instances/{id}/config")),
        (Method::DELETE, format!("/api/v1/instances/{id}/config")),
        (Method::PATCH, format!("/api/v1/instances/{id}/config/sources")),
        (Method::POST, format!("/api/v1/instances/{id}/config/sources/sensors")),
        (Method::POST, "/healthz".to_owned()),
        (Method::POST, "/openapi.json".to_owned()),
    ];
    for (method, path) in cases {
        let before = app.snapshot().await;
        let res = app.req(method.clone(), &path).json(&json!({})).send().await.unwrap();
        let allow = res.headers().get(header::ALLOW).map(|v| v.to_str().unwrap().to_owned());

        let (status, body) = problem(res).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
            "{method} {path}"
        );
        let allow = allow.unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
        assert!(allow.contains("GET") && !allow.contains(method.as_str()), "{method} {path}: Allow {allow}");
        assert_eq!(app.snapshot().await, before);
    }
    assert_eq!(instance_names(&app).await, ["existing"]);
}

#[tokio::test]
async fn malformed_instance_ids_in_config_paths_are_400_invalid_id() {
    let (app, _) = app_with_one_instance().await;
    for bad in ["UPPER", "a%20b", "x;rm", "a%2Fb"] {
        for path in [
            format!("/api/v1/instances/{bad}/config"),
            format!("/api/v1/instances/{bad}/config/sources"),
            format!("/api/v1/instances/{bad}/config/sources/s"),
        ] {
            refused(&app, app.req(Method::GET, &path), StatusCode::BAD_REQUEST, "invalid_id").await;
        }
    }
}
