//! One component at a time (`/api/v1/instances/{id}/config/{sources|queries|reactions}`)
//! against a real `draas api` and a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use draas_tests::{TestApp, problem, sample_config, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

async fn create(app: &TestApp, name: &str, config: Value) -> String {
    app.create_instance(name, config).await["id"].as_str().unwrap().to_owned()
}

async fn generation(app: &TestApp, id: &str) -> u64 {
    let (status, body) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["generation"].as_u64().unwrap()
}

fn postgres_source() -> Value {
    json!({
        "kind": "postgres",
        "id": "orders-db",
        "autoStart": false,
        "host": "db.internal",
        "port": 5432,
        "database": "orders",
        "user": "draas",
        "password": "${DB_PASSWORD}",
        "tables": ["public.orders", "public.order_items"],
        "slotName": "draas_orders",
        "publicationName": "draas_pub",
        "sslMode": "prefer",
        "tableKeys": [{"table": "public.order_items", "keyColumns": ["order_id", "line"]}]
    })
}

fn http_reaction() -> Value {
    json!({
        "kind": "http",
        "id": "webhook",
        "queries": ["hot"],
        "baseUrl": "https://hooks.example.test/api",
        "token": "${HOOK_TOKEN}",
        "timeoutMs": 5000,
        "routes": {
            "hot": {
                "added": {"url": "/added", "method": "POST", "body": "{\"id\": \"{{after.id}}\"}", "headers": {"X-Kind": "added: # yes"}},
                "deleted": {"url": "/deleted/{{before.id}}", "method": "DELETE"}
            }
        }
    })
}

/// Walk one collection through list, create, read, replace, create-by-PUT and delete.
async fn crud(kind: &str, first: Value, replacement: Value, second: Value) {
    let app = spawn_app().await;
    let id = create(&app, "crud", sample_config()).await;
    let base = format!("/api/v1/instances/{id}/config/{kind}");
    let existing = sample_config()[kind].clone();

    // list
    let (status, listed) = app.get_json(&base).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, existing);

    // create
    let gen_before = generation(&app, &id).await;
    let cid = first["id"].as_str().unwrap().to_owned();
    let res = app.req(Method::POST, &base).json(&first).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.headers()[header::LOCATION].to_str().unwrap(),
        format!("/api/v1/instances/{id}/config/{kind}/{cid}")
    );
    assert!(res.headers().contains_key(header::ETAG));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, first);
    assert_eq!(generation(&app, &id).await, gen_before + 1);

    // read one
    let one = format!("{base}/{cid}");
    let (status, got) = app.get_json(&one).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, first, "kind-specific properties are kept as written");
    let (_, listed) = app.get_json(&base).await;
    let mut expected = existing.as_array().unwrap().clone();
    expected.push(first.clone());
    assert_eq!(listed, Value::Array(expected.clone()));
    let (_, whole) = app.get_json(&format!("/api/v1/instances/{id}/config")).await;
    assert_eq!(whole[kind], Value::Array(expected.clone()));

    // replace
    let res = app.req(Method::PUT, &one).json(&replacement).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, got) = app.get_json(&one).await;
    assert_eq!(got, replacement);
    let (_, listed) = app.get_json(&base).await;
    assert_eq!(listed.as_array().unwrap().len(), expected.len());
    assert_eq!(generation(&app, &id).await, gen_before + 2);

    // create by PUT
    let cid2 = second["id"].as_str().unwrap().to_owned();
    let res = app.req(Method::PUT, &format!("{base}/{cid2}")).json(&second).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let (status, got) = app.get_json(&format!("{base}/{cid2}")).await;
    assert_eq!((status, got), (StatusCode::OK, second.clone()));

    // delete
    let res = app.req(Method::DELETE, &one).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    let (status, body) = app.get_json(&one).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("component_not_found")));
    let mut expected = existing.as_array().unwrap().clone();
    expected.push(second);
    let (_, listed) = app.get_json(&base).await;
    assert_eq!(listed, Value::Array(expected));
}

#[tokio::test]
async fn sources_can_be_listed_created_read_replaced_and_deleted() {
    let mut replacement = postgres_source();
    replacement["host"] = json!("db2.internal");
    replacement["tables"] = json!(["public.orders"]);
    crud(
        "sources",
        postgres_source(),
        replacement,
        json!({"kind": "mock", "id": "more", "dataType": "counter", "intervalMs": 250}),
    )
    .await;
}

#[tokio::test]
async fn queries_can_be_listed_created_read_replaced_and_deleted() {
    crud(
        "queries",
        json!({"id": "cold", "query": "MATCH (s:Sensor) WHERE s.value < 0 RETURN s.id", "queryLanguage": "Cypher",
               "sources": [{"sourceId": "sensors", "nodes": ["Sensor"], "pipeline": ["decoder"]}],
               "enableBootstrap": false, "middleware": [{"kind": "decoder", "name": "decoder", "encoding": "base64"}]}),
        json!({"id": "cold", "query": "MATCH (s:Sensor) WHERE s.value < -10 RETURN s.id",
               "sources": [{"sourceId": "sensors"}], "autoStart": false}),
        json!({"id": "graph", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "__component_graph__"}]}),
    )
    .await;
}

#[tokio::test]
async fn reactions_can_be_listed_created_read_replaced_and_deleted() {
    let mut replacement = http_reaction();
    replacement["baseUrl"] = json!("https://other.example.test");
    replacement["routes"]["hot"].as_object_mut().unwrap().remove("deleted");
    crud(
        "reactions",
        http_reaction(),
        replacement,
        json!({"kind": "log", "id": "audit", "queries": ["hot"], "autoStart": true}),
    )
    .await;
}

#[tokio::test]
async fn kind_specific_properties_reach_the_rendered_yaml_as_written() {
    let app = spawn_app().await;
    let id = create(&app, "rendered", sample_config()).await;
    let base = format!("/api/v1/instances/{id}/config");
    let (status, _) = app.send_json(Method::POST, &format!("{base}/sources"), &postgres_source()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.send_json(Method::POST, &format!("{base}/reactions"), &http_reaction()).await;
    assert_eq!(status, StatusCode::CREATED);

    let yaml = app
        .req(Method::GET, &base)
        .header(header::ACCEPT, "application/yaml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let parsed: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(parsed["sources"][1], postgres_source(), "YAML:\n{yaml}");
    assert_eq!(parsed["reactions"][1], http_reaction(), "YAML:\n{yaml}");
}

#[tokio::test]
async fn a_put_body_without_an_id_takes_the_id_of_the_path() {
    let app = spawn_app().await;
    let id = create(&app, "pathid", sample_config()).await;
    let path = format!("/api/v1/instances/{id}/config/sources/fresh");

    let res = app.req(Method::PUT, &path).json(&json!({"kind": "mock"})).send().await.unwrap();

    assert_eq!(res.status(), StatusCode::CREATED);
    let (_, got) = app.get_json(&path).await;
    assert_eq!(got, json!({"kind": "mock", "id": "fresh"}));
}

#[tokio::test]
async fn creating_a_duplicate_id_is_409_and_writes_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "dupes", sample_config()).await;
    let snapshot = app.snapshot().await;
    let cases = [
        ("sources", json!({"kind": "postgres", "id": "sensors"})),
        ("queries", json!({"id": "hot", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "sensors"}]})),
        ("reactions", json!({"kind": "log", "id": "out", "queries": ["hot"]})),
    ];
    for (kind, body) in cases {
        let res =
            app.req(Method::POST, &format!("/api/v1/instances/{id}/config/{kind}")).json(&body).send().await.unwrap();

        let (status, problem) = problem(res).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::CONFLICT, Some("component_exists")),
            "{kind}: {problem}"
        );
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn a_put_whose_body_id_differs_from_the_path_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "mismatch", sample_config()).await;
    let snapshot = app.snapshot().await;
    for body in [json!({"kind": "mock", "id": "other"}), json!({"kind": "mock", "id": 7})] {
        let res = app
            .req(Method::PUT, &format!("/api/v1/instances/{id}/config/sources/sensors"))
            .json(&body)
            .send()
            .await
            .unwrap();

        let (status, problem) = problem(res).await;
        assert_eq!(
            (status, problem["code"].as_str(), problem["pointer"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("id_mismatch"), Some("/id")),
            "{body}"
        );
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn missing_components_are_404_on_get_and_delete() {
    let app = spawn_app().await;
    let id = create(&app, "missing", sample_config()).await;
    let snapshot = app.snapshot().await;
    for kind in ["sources", "queries", "reactions"] {
        let path = format!("/api/v1/instances/{id}/config/{kind}/nothing-here");
        let get = app.req(Method::GET, &path).send().await.unwrap();
        let delete = app.req(Method::DELETE, &path).send().await.unwrap();

        for res in [get, delete] {
            let (status, body) = problem(res).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("component_not_found")),
                "{kind}: {body}"
            );
        }
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn an_unknown_collection_name_is_404() {
    let app = spawn_app().await;
    let id = create(&app, "widgets", sample_config()).await;
    let snapshot = app.snapshot().await;
    let base = format!("/api/v1/instances/{id}/config");
    let requests = [
        app.req(Method::GET, &format!("{base}/widgets")),
        app.req(Method::POST, &format!("{base}/widgets")).json(&json!({"kind": "mock", "id": "w"})),
        app.req(Method::GET, &format!("{base}/widgets/w")),
        app.req(Method::PUT, &format!("{base}/widgets/w")).json(&json!({"kind": "mock", "id": "w"})),
        app.req(Method::DELETE, &format!("{base}/widgets/w")),
        app.req(Method::GET, &format!("{base}/Sources")),
    ];
    for req in requests {
        let (status, body) = problem(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn components_of_an_unknown_instance_are_404() {
    let app = spawn_app().await;
    let base = "/api/v1/instances/01aaaaaaaaaaaaaaaaaaaaaaaa/config";
    let requests = [
        app.req(Method::GET, &format!("{base}/sources")),
        app.req(Method::POST, &format!("{base}/sources")).json(&json!({"kind": "mock", "id": "s"})),
        app.req(Method::GET, &format!("{base}/sources/s")),
        app.req(Method::PUT, &format!("{base}/sources/s")).json(&json!({"kind": "mock", "id": "s"})),
        app.req(Method::DELETE, &format!("{base}/sources/s")),
    ];
    for req in requests {
        let (status, body) = problem(req.send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("instance_not_found")), "{body}");
    }
    assert!(app.snapshot().await.is_empty());
}

#[tokio::test]
async fn deleting_a_source_a_query_uses_is_409_naming_the_query() {
    let app = spawn_app().await;
    let id = create(&app, "usedsource", sample_config()).await;
    let snapshot = app.snapshot().await;

    let res = app.req(Method::DELETE, &format!("/api/v1/instances/{id}/config/sources/sensors")).send().await.unwrap();

    let (status, body) = problem(res).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("component_in_use")));
    assert!(body["message"].as_str().unwrap().contains("queries/hot"), "{body}");
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn deleting_a_query_a_reaction_uses_is_409_naming_the_reaction() {
    let app = spawn_app().await;
    let id = create(&app, "usedquery", sample_config()).await;
    let snapshot = app.snapshot().await;

    let res = app.req(Method::DELETE, &format!("/api/v1/instances/{id}/config/queries/hot")).send().await.unwrap();

    let (status, body) = problem(res).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("component_in_use")));
    assert!(body["message"].as_str().unwrap().contains("reactions/out"), "{body}");
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn deleting_in_dependency_order_succeeds() {
    let app = spawn_app().await;
    let id = create(&app, "ordered", sample_config()).await;
    let base = format!("/api/v1/instances/{id}/config");

    for path in ["reactions/out", "queries/hot", "sources/sensors"] {
        let res = app.req(Method::DELETE, &format!("{base}/{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{path}");
    }

    let (_, config) = app.get_json(&base).await;
    assert_eq!(config, json!({"logLevel": "info", "sources": [], "queries": [], "reactions": []}));
}

#[tokio::test]
async fn a_query_naming_a_missing_source_is_422_with_a_pointer_into_the_component() {
    let app = spawn_app().await;
    let id = create(&app, "danglingq", sample_config()).await;
    let snapshot = app.snapshot().await;

    let res = app
        .req(Method::POST, &format!("/api/v1/instances/{id}/config/queries"))
        .json(&json!({"id": "q2", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "nope"}]}))
        .send()
        .await
        .unwrap();

    let (status, body) = problem(res).await;
    assert_eq!(
        (status, body["code"].as_str(), body["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_source"), Some("/sources/0/sourceId")),
        "{body}"
    );
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn a_reaction_naming_a_missing_query_is_422_with_a_pointer_into_the_component() {
    let app = spawn_app().await;
    let id = create(&app, "danglingr", sample_config()).await;
    let snapshot = app.snapshot().await;

    let res = app
        .req(Method::PUT, &format!("/api/v1/instances/{id}/config/reactions/out"))
        .json(&json!({"kind": "log", "queries": ["hot", "ghost"]}))
        .send()
        .await
        .unwrap();

    let (status, body) = problem(res).await;
    assert_eq!(
        (status, body["code"].as_str(), body["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_query"), Some("/queries/1")),
        "{body}"
    );
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn invalid_component_bodies_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "badbodies", sample_config()).await;
    let snapshot = app.snapshot().await;
    let base = format!("/api/v1/instances/{id}/config");
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        ("sources", json!([1, 2]), StatusCode::UNPROCESSABLE_ENTITY),
        ("sources", json!("source"), StatusCode::UNPROCESSABLE_ENTITY),
        ("sources", json!({"kind": "mock"}), StatusCode::UNPROCESSABLE_ENTITY),
        ("sources", json!({"id": "nokind"}), StatusCode::UNPROCESSABLE_ENTITY),
        ("sources", json!({"kind": "mock", "id": "../x"}), StatusCode::UNPROCESSABLE_ENTITY),
        ("sources", json!({"kind": "mock", "id": "a b"}), StatusCode::UNPROCESSABLE_ENTITY),
        ("sources", json!({"kind": "../../bin/sh", "id": "k"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "queries",
            json!({"id": "empty", "query": "  ", "sources": [{"sourceId": "sensors"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (kind, body, expected) in cases {
        let res = app.req(Method::POST, &format!("{base}/{kind}")).json(&body).send().await.unwrap();

        let (status, problem) = problem(res).await;
        assert_eq!(status, expected, "{body}: {problem}");
    }
    assert_eq!(app.snapshot().await, snapshot);
    let (_, config) = app.get_json(&base).await;
    assert_eq!(config, sample_config());
}

#[tokio::test]
async fn hostile_component_ids_in_the_path_are_refused() {
    let app = spawn_app().await;
    let id = create(&app, "hostileids", sample_config()).await;
    let snapshot = app.snapshot().await;
    let base = format!("/api/v1/instances/{id}/config/sources");
    for bad in ["a%20b", ".hidden", "a%2Fb", "-x", "a:b", &"s".repeat(64)] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let res =
                app.req(method.clone(), &format!("{base}/{bad}")).json(&json!({"kind": "mock"})).send().await.unwrap();

            let (status, body) = problem(res).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_component_id")),
                "{method} {bad}"
            );
        }
    }
    assert_eq!(app.snapshot().await, snapshot);
}

#[tokio::test]
async fn component_writes_honour_if_match() {
    let app = spawn_app().await;
    let id = create(&app, "matched", sample_config()).await;
    let base = format!("/api/v1/instances/{id}/config/sources");
    let res = app.req(Method::GET, &base).send().await.unwrap();
    let current = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    let res = app
        .req(Method::POST, &base)
        .header(header::IF_MATCH, &current)
        .json(&json!({"kind": "mock", "id": "one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let snapshot = app.snapshot().await;

    let requests = [
        app.req(Method::POST, &base).json(&json!({"kind": "mock", "id": "two"})),
        app.req(Method::PUT, &format!("{base}/one")).json(&json!({"kind": "mock", "id": "one", "x": 1})),
        app.req(Method::DELETE, &format!("{base}/one")),
    ];
    for req in requests {
        let res = req.header(header::IF_MATCH, &current).send().await.unwrap();
        let (status, body) = problem(res).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::PRECONDITION_FAILED, Some("precondition_failed")));
    }
    assert_eq!(app.snapshot().await, snapshot);
}
