//! The configuration endpoint (`/api/v1/instances/{id}/config`) against a real `draas api`
//! and a real Redis: JSON and YAML reads, whole replacement, JSON Patch and merge patch,
//! preconditions, and proof that every rejected write leaves Redis untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use draas_tests::{TestApp, problem, sample_config, spawn_app, spawn_permissive_app};
use reqwest::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

/// Create an instance and return its id.
async fn create(app: &TestApp, name: &str, config: Value) -> String {
    app.create_instance(name, config).await["id"].as_str().unwrap().to_owned()
}

fn config_path(id: &str) -> String {
    format!("/api/v1/instances/{id}/config")
}

async fn generation(app: &TestApp, id: &str) -> u64 {
    let (status, body) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["generation"].as_u64().unwrap()
}

fn etag(res: &Response) -> String {
    res.headers()[header::ETAG].to_str().unwrap().to_owned()
}

async fn config_etag(app: &TestApp, id: &str) -> String {
    let res = app.req(Method::GET, &config_path(id)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    etag(&res)
}

/// The raw stored configuration: `HGET {<prefix>}:config:<id> data`.
async fn stored_config(app: &TestApp, id: &str) -> Option<String> {
    let mut c = app.redis().await;
    redis::cmd("HGET").arg(format!("{{{}}}:config:{id}", app.prefix)).arg("data").query_async(&mut c).await.unwrap()
}

async fn get_yaml(app: &TestApp, id: &str) -> Response {
    app.req(Method::GET, &config_path(id)).header(header::ACCEPT, "application/yaml").send().await.unwrap()
}

#[tokio::test]
async fn get_config_returns_the_stored_json_with_an_etag() {
    let app = spawn_app().await;
    let id = create(&app, "stored", sample_config()).await;

    let res = app.req(Method::GET, &config_path(&id)).send().await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let tag = etag(&res);
    assert!(
        tag.len() > 2
            && tag.starts_with('"')
            && tag.ends_with('"')
            && tag[1..tag.len() - 1].chars().all(|c| c.is_ascii_digit()),
        "ETag {tag}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, sample_config(), "no defaults are added to the stored config");
}

#[tokio::test]
async fn effective_config_fills_in_draas_defaults_and_leaves_the_stored_one_alone() {
    let app = spawn_app().await;
    let config = json!({
        "sources": [{"kind": "mock", "id": "sensors"}],
        "queries": [{"id": "hot", "query": "MATCH (s) RETURN s", "sources": [{"sourceId": "sensors"}]}],
        "reactions": []
    });
    let id = create(&app, "effective", config.clone()).await;

    let res = app.req(Method::GET, &format!("{}?effective=true", config_path(&id))).send().await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(etag(&res), config_etag(&app, &id).await);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["id"], json!(id));
    assert_eq!(e["host"], "127.0.0.1");
    assert_eq!(e["persistConfig"], false);
    assert_eq!(e["logLevel"], "info");
    assert_eq!(e["queries"][0]["queryLanguage"], "Cypher");
    assert_eq!(e["queries"][0]["autoStart"], true);
    assert_eq!(e["sources"], config["sources"]);
    assert!(e.get("port").is_none(), "no port before one is allocated: {e}");
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored, config);
}

#[tokio::test]
async fn effective_config_keeps_values_the_user_chose() {
    let app = spawn_permissive_app().await;
    let config = json!({
        "id": "my-server", "host": "0.0.0.0", "port": 9000, "logLevel": "debug", "persistConfig": true,
        "sources": [{"kind": "mock", "id": "s"}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "queryLanguage": "GQL", "autoStart": false, "sources": [{"sourceId": "s"}]}],
        "reactions": []
    });
    let id = create(&app, "chosen", config.clone()).await;

    let (status, e) = app.get_json(&format!("{}?effective=true", config_path(&id))).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(e, config);
}

#[tokio::test]
async fn yaml_config_is_the_effective_config_with_a_spec_hash() {
    let app = spawn_app().await;
    let id = create(&app, "yaml", sample_config()).await;
    let (_, effective) = app.get_json(&format!("{}?effective=true", config_path(&id))).await;

    let res = get_yaml(&app, &id).await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE].to_str().unwrap(), "application/yaml");
    let hash = res.headers()["x-draas-spec-hash"].to_str().unwrap().to_owned();
    assert!(
        hash.len() == 32 && hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "spec hash {hash}"
    );
    assert_eq!(etag(&res), config_etag(&app, &id).await);
    let text = res.text().await.unwrap();
    let parsed: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(parsed, effective, "YAML:\n{text}");
    assert_eq!(parsed["id"], json!(id));

    let again = get_yaml(&app, &id).await;
    assert_eq!(again.headers()["x-draas-spec-hash"].to_str().unwrap(), hash, "the hash is stable while the config is");
}

#[tokio::test]
async fn spec_hash_changes_when_the_config_changes() {
    let app = spawn_app().await;
    let id = create(&app, "hashed", sample_config()).await;
    let before = get_yaml(&app, &id).await.headers()["x-draas-spec-hash"].to_str().unwrap().to_owned();

    let res = app
        .send_body(Method::PATCH, &config_path(&id), "application/merge-patch+json", r#"{"logLevel":"debug"}"#)
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let after = get_yaml(&app, &id).await;
    assert_ne!(after.headers()["x-draas-spec-hash"].to_str().unwrap(), before);
}

fn hostile_strings() -> Vec<&'static str> {
    vec![
        "key: value",
        "a: b # c",
        "# not a comment",
        "it's",
        "say \"hi\"",
        "'single' and \"double\"",
        "line one\nline two\n",
        "trailing newline\n",
        "\ttab",
        "*alias",
        "&anchor",
        "!tag",
        "!!str",
        "%YAML 1.2",
        "@at",
        "`backtick",
        "|",
        ">",
        "- item",
        "? key",
        "[a, b]",
        "{a: b}",
        "---",
        "...",
        "yes",
        "no",
        "on",
        "off",
        "true",
        "False",
        "~",
        "null",
        "Null",
        "",
        " ",
        " leading space",
        "trailing space ",
        "0",
        "0x1F",
        "0o17",
        "1e3",
        "1_000",
        ".inf",
        "-.inf",
        ".nan",
        "2024-01-01",
        "12:30:00",
        "${DB_PASSWORD}",
        "prefix-${HOST}-suffix",
        "$${ESCAPED}",
        "unicode ✓ 日本語 🚀 ü",
        "\u{feff}bom",
        "\u{2028}line separator",
        "back\\slash",
        "nul \u{0} inside",
        "bell \u{7} escape \u{1b}[31m",
        "crlf\r\nline",
        "lone\rcarriage",
        "del \u{7f}",
        "c1 \u{85} next line",
    ]
}

#[tokio::test]
async fn hostile_strings_survive_the_yaml_round_trip_unchanged() {
    let app = spawn_app().await;
    let id = create(&app, "hostile", json!({})).await;
    let strings = hostile_strings();
    let mut source = json!({"kind": "mock", "id": "s", "password": "${DB_PASSWORD}", "all": strings});
    for (i, s) in strings.iter().enumerate() {
        source[format!("v{i}")] = json!(s);
    }
    source["key: with # specials"] = json!("value");
    let config = json!({
        "logLevel": "info",
        "sources": [source],
        "queries": [{"id": "q", "query": "MATCH (n)\nWHERE n.x = 'a: b' AND n.y = \"# c\"\nRETURN n", "sources": [{"sourceId": "s"}]}],
        "reactions": [{"kind": "log", "id": "r", "queries": ["q"], "template": "*{{after}}* & !{{before}} ${TOKEN}"}]
    });
    let res = app.req(Method::PUT, &config_path(&id)).json(&config).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let res = get_yaml(&app, &id).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let parsed: Value = serde_norway::from_str(&text).unwrap();

    let (_, effective) = app.get_json(&format!("{}?effective=true", config_path(&id))).await;
    assert_eq!(parsed, effective, "YAML:\n{text}");
    let got = &parsed["sources"][0];
    for (i, s) in strings.iter().enumerate() {
        assert_eq!(got[format!("v{i}")], json!(s), "value {s:?} in YAML:\n{text}");
    }
    assert_eq!(got["all"], json!(strings));
    assert_eq!(got["key: with # specials"], "value");
    assert_eq!(got["password"], "${DB_PASSWORD}");
    assert_eq!(parsed["queries"][0]["query"], config["queries"][0]["query"]);
    assert_eq!(parsed["reactions"][0]["template"], config["reactions"][0]["template"]);
    assert!(text.contains("${DB_PASSWORD}"), "env references reach drasi-server untouched:\n{text}");
}

#[tokio::test]
async fn put_replaces_the_whole_config_and_bumps_generation_and_etag() {
    let app = spawn_app().await;
    let id = create(&app, "replaced", sample_config()).await;
    let gen_before = generation(&app, &id).await;
    let etag_before = config_etag(&app, &id).await;
    let replacement = json!({
        "logLevel": "warn",
        "sources": [{"kind": "postgres", "id": "db", "host": "db.internal", "password": "${DB_PASSWORD}"}]
    });

    let res = app.req(Method::PUT, &config_path(&id)).json(&replacement).send().await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    let new_etag = etag(&res);
    assert_ne!(new_etag, etag_before);
    let body: Value = res.json().await.unwrap();
    let expected = json!({
        "logLevel": "warn",
        "sources": replacement["sources"],
        "queries": [],
        "reactions": []
    });
    assert_eq!(body, expected);
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored, expected, "nothing of the old config is kept");
    assert_eq!(config_etag(&app, &id).await, new_etag);
    assert_eq!(generation(&app, &id).await, gen_before + 1);
}

#[tokio::test]
async fn put_accepts_a_yaml_body() {
    let app = spawn_app().await;
    let id = create(&app, "yamlput", json!({})).await;
    let gen_before = generation(&app, &id).await;
    let yaml = "logLevel: debug\nsources:\n  - kind: mock\n    id: s\n    note: \"a: b # c\"\n    password: ${DB_PASSWORD}\nqueries:\n  - id: q\n    query: |\n      MATCH (n)\n      RETURN n\n    sources:\n      - sourceId: s\n";

    let res = app.send_body(Method::PUT, &config_path(&id), "application/yaml", yaml).await;

    assert_eq!(res.status(), StatusCode::OK);
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(
        stored,
        json!({
            "logLevel": "debug",
            "sources": [{"kind": "mock", "id": "s", "note": "a: b # c", "password": "${DB_PASSWORD}"}],
            "queries": [{"id": "q", "query": "MATCH (n)\nRETURN n\n", "sources": [{"sourceId": "s"}]}],
            "reactions": []
        })
    );
    assert_eq!(generation(&app, &id).await, gen_before + 1);
}

#[tokio::test]
async fn put_of_the_rendered_yaml_is_accepted_back() {
    let app = spawn_app().await;
    let id = create(&app, "roundtrip", sample_config()).await;
    let yaml = get_yaml(&app, &id).await.text().await.unwrap();
    let effective: Value = serde_norway::from_str(&yaml).unwrap();

    let res = app.send_body(Method::PUT, &config_path(&id), "application/yaml", yaml).await;

    assert_eq!(res.status(), StatusCode::OK);
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored, effective);
}

#[tokio::test]
async fn json_patch_adds_replaces_and_removes_and_bumps_generation() {
    let app = spawn_app().await;
    let id = create(&app, "patched", sample_config()).await;
    let gen_before = generation(&app, &id).await;
    let etag_before = config_etag(&app, &id).await;
    let ops = json!([
        {"op": "add", "path": "/sources/-", "value": {"kind": "mock", "id": "extra"}},
        {"op": "replace", "path": "/logLevel", "value": "debug"},
        {"op": "remove", "path": "/reactions/0"}
    ]);

    let res = app.send_body(Method::PATCH, &config_path(&id), "application/json-patch+json", ops.to_string()).await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(etag(&res), etag_before);
    let body: Value = res.json().await.unwrap();
    let mut expected = sample_config();
    expected["logLevel"] = json!("debug");
    expected["sources"].as_array_mut().unwrap().push(json!({"kind": "mock", "id": "extra"}));
    expected["reactions"] = json!([]);
    assert_eq!(body, expected);
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored, expected);
    assert_eq!(generation(&app, &id).await, gen_before + 1);
}

#[tokio::test]
async fn merge_patch_sets_and_removes_fields_and_bumps_generation() {
    let app = spawn_permissive_app().await;
    let id = create(&app, "merged", sample_config()).await;
    let gen_before = generation(&app, &id).await;

    let res = app
        .send_body(
            Method::PATCH,
            &config_path(&id),
            "application/merge-patch+json",
            r#"{"logLevel": null, "persistIndex": true, "port": 9100}"#,
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let mut expected = sample_config();
    expected.as_object_mut().unwrap().remove("logLevel");
    expected["persistIndex"] = json!(true);
    expected["port"] = json!(9100);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, expected);
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored, expected);
    assert_eq!(generation(&app, &id).await, gen_before + 1);
}

#[tokio::test]
async fn rejected_patches_answer_422_and_leave_the_stored_config_byte_identical() {
    let app = spawn_app().await;
    let id = create(&app, "guarded", sample_config()).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("application/json-patch+json", json!([{"op": "remove", "path": "/sources/5"}]), "patch_failed"),
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/queries/0/sources/0/sourceId", "value": "missing"}]),
            "unknown_source",
        ),
        ("application/json-patch+json", json!([{"op": "remove", "path": "/sources/0"}]), "unknown_source"),
        (
            "application/json-patch+json",
            json!([
                {"op": "replace", "path": "/logLevel", "value": "debug"},
                {"op": "test", "path": "/logLevel", "value": "warn"}
            ]),
            "patch_test_failed",
        ),
        (
            "application/json-patch+json",
            json!([
                {"op": "replace", "path": "/logLevel", "value": "debug"},
                {"op": "add", "path": "/port", "value": 0}
            ]),
            "invalid_port",
        ),
        ("application/json-patch+json", json!([{"op": "add", "path": "/bogus", "value": 1}]), "unknown_field"),
        ("application/merge-patch+json", json!({"logLevel": "verbose"}), "invalid_log_level"),
        (
            "application/merge-patch+json",
            json!({"reactions": [{"kind": "log", "id": "r", "queries": ["nope"]}]}),
            "unknown_query",
        ),
    ];
    for (ct, patch, code) in cases {
        let snapshot = app.snapshot().await;
        let raw = stored_config(&app, &id).await;
        assert!(raw.is_some());

        let res = app.send_body(Method::PATCH, &config_path(&id), ct, patch.to_string()).await;

        let (status, body) = problem(res).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{patch}: {body}");
        assert_eq!(stored_config(&app, &id).await, raw, "{patch}");
        assert_eq!(app.snapshot().await, snapshot, "{patch}");
    }
    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored, sample_config());
}

#[tokio::test]
async fn a_patch_naming_a_missing_source_points_at_the_faulty_field() {
    let app = spawn_app().await;
    let id = create(&app, "pointed", sample_config()).await;

    let res = app
        .send_body(
            Method::PATCH,
            &config_path(&id),
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/queries/0/sources/0/sourceId", "value": "missing"}]).to_string(),
        )
        .await;

    let (status, body) = problem(res).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["pointer"], "/queries/0/sources/0/sourceId");
    assert!(body["message"].as_str().unwrap().contains("missing"), "{body}");
}

#[tokio::test]
async fn stale_if_match_on_put_and_patch_is_refused_with_412_and_changes_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "stale", sample_config()).await;
    let stale = config_etag(&app, &id).await;
    let res = app
        .send_body(Method::PATCH, &config_path(&id), "application/merge-patch+json", r#"{"logLevel":"debug"}"#)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let snapshot = app.snapshot().await;

    let put = app
        .req(Method::PUT, &config_path(&id))
        .header(header::IF_MATCH, &stale)
        .json(&json!({"logLevel": "error"}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(put).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PRECONDITION_FAILED, Some("precondition_failed")));

    let patch = app
        .req(Method::PATCH, &config_path(&id))
        .header(header::IF_MATCH, &stale)
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(r#"{"logLevel":"error"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(patch).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PRECONDITION_FAILED, Some("precondition_failed")));

    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn current_if_match_on_put_and_patch_is_accepted() {
    let app = spawn_app().await;
    let id = create(&app, "current", sample_config()).await;

    let current = config_etag(&app, &id).await;
    let put = app
        .req(Method::PUT, &config_path(&id))
        .header(header::IF_MATCH, &current)
        .json(&json!({"logLevel": "error"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let after_put = etag(&put);
    assert_ne!(after_put, current);

    let patch = app
        .req(Method::PATCH, &config_path(&id))
        .header(header::IF_MATCH, &after_put)
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .body(r#"[{"op":"replace","path":"/logLevel","value":"trace"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::OK);

    let (_, stored) = app.get_json(&config_path(&id)).await;
    assert_eq!(stored["logLevel"], "trace");
}

#[tokio::test]
async fn wrong_content_types_are_refused_with_415_and_change_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "typed", sample_config()).await;
    let snapshot = app.snapshot().await;
    let merge = r#"{"logLevel":"debug"}"#;
    let cases = [
        (Method::PUT, Some("text/plain"), merge),
        (Method::PUT, Some("application/merge-patch+json"), merge),
        (Method::PUT, None, merge),
        (Method::PATCH, Some("application/json"), merge),
        (Method::PATCH, Some("text/plain"), merge),
        (Method::PATCH, Some("application/yaml"), "logLevel: debug"),
        (Method::PATCH, None, merge),
    ];
    for (method, ct, body) in cases {
        let mut req = app.req(method.clone(), &config_path(&id)).body(body);
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }

        let (status, problem) = problem(req.send().await.unwrap()).await;

        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")),
            "{method} {ct:?}"
        );
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn config_of_an_unknown_instance_is_404() {
    let app = spawn_app().await;
    app.create_instance("other", sample_config()).await;
    let snapshot = app.snapshot().await;
    let path = config_path("01aaaaaaaaaaaaaaaaaaaaaaaa");

    let get = app.req(Method::GET, &path).send().await.unwrap();
    let yaml = app.req(Method::GET, &path).header(header::ACCEPT, "application/yaml").send().await.unwrap();
    let put = app.req(Method::PUT, &path).json(&sample_config()).send().await.unwrap();
    let patch = app.send_body(Method::PATCH, &path, "application/merge-patch+json", r#"{"logLevel":"debug"}"#).await;

    for res in [get, yaml, put, patch] {
        let (status, body) = problem(res).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("instance_not_found")), "{body}");
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn unknown_query_parameters_on_get_config_are_refused() {
    let app = spawn_app().await;
    let id = create(&app, "queried", sample_config()).await;

    for q in ["effective=maybe", "bogus=1"] {
        let res = app.req(Method::GET, &format!("{}?{q}", config_path(&id))).send().await.unwrap();

        let (status, body) = problem(res).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{q}");
    }
}
