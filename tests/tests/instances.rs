//! Instance endpoints against a real `draas api` and a real Redis.

use draas_tests::{DraasProcess, sample_config, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

#[tokio::test]
async fn create_then_get_round_trips_every_field() {
    let app = spawn_app().await;
    let res = app
        .req(Method::POST, "/api/v1/instances")
        .json(&json!({"name": "orders", "description": "order watcher", "config": sample_config()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/instances/{id}"));
    assert!(id.len() <= 40 && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert_eq!(created["name"], "orders");
    assert_eq!(created["platform"], "process");
    assert_eq!(created["desiredState"], "stopped");
    assert_eq!(created["status"], "created");
    assert_eq!(created["generation"], 1);
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let (status, got) = app.get_json(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);
    let (_, config) = app.get_json(&format!("{location}/config")).await;
    assert_eq!(config, sample_config());
}

#[tokio::test]
async fn duplicate_names_are_refused_on_create_and_on_rename() {
    let app = spawn_app().await;
    app.create_instance("alpha", json!({})).await;
    let beta = app.create_instance("beta", json!({})).await;
    let (status, body) = app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "alpha"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("name_taken")));
    let path = format!("/api/v1/instances/{}", beta["id"].as_str().unwrap());
    let (status, body) = app.send_json(Method::PATCH, &path, &json!({"name": "alpha"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("name_taken")));
}

#[tokio::test]
async fn rename_frees_the_old_name_and_keeps_the_generation() {
    let app = spawn_app().await;
    let a = app.create_instance("first", json!({})).await;
    let path = format!("/api/v1/instances/{}", a["id"].as_str().unwrap());
    let (status, renamed) = app.send_json(Method::PATCH, &path, &json!({"name": "second", "description": "d"})).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!((renamed["name"].as_str(), renamed["description"].as_str()), (Some("second"), Some("d")));
    assert_eq!(renamed["generation"], 1, "a rename is not a change of desired state or config");
    app.create_instance("first", json!({})).await;
}

#[tokio::test]
async fn stale_if_match_is_refused_with_412_and_changes_nothing() {
    let app = spawn_app().await;
    let a = app.create_instance("etagged", json!({})).await;
    let path = format!("/api/v1/instances/{}", a["id"].as_str().unwrap());
    let res = app.req(Method::GET, &path).send().await.unwrap();
    let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    let ok = app
        .req(Method::PATCH, &path)
        .header(header::IF_MATCH, &etag)
        .json(&json!({"description": "one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_ne!(ok.headers()[header::ETAG].to_str().unwrap(), etag);
    let before = app.snapshot().await;
    let stale = app
        .req(Method::PATCH, &path)
        .header(header::IF_MATCH, &etag)
        .json(&json!({"description": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["code"], "precondition_failed");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn list_pages_with_a_cursor_and_filters_by_platform() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_instance(&format!("p{i}"), json!({})).await;
    }
    let (status, body) =
        app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "dock", "platform": "docker"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (status, page) = app.get_json(&format!("/api/v1/instances?limit=2{q}")).await;
        assert_eq!(status, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|i| i["name"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "dock"]);

    let (_, docker) = app.get_json("/api/v1/instances?platform=docker").await;
    let docker: Vec<&str> = docker["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(docker, ["dock"]);
    let (_, created) = app.get_json("/api/v1/instances?status=created&limit=500").await;
    assert_eq!(created["items"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn list_refuses_bad_limits_cursors_and_filters() {
    let app = spawn_app().await;
    for q in ["limit=0", "limit=501", "limit=x", "cursor=../../etc", "platform=vm", "status=bogus", "unknown=1"] {
        let (status, body) = app.get_json(&format!("/api/v1/instances?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body["code"].is_string(), "{q}: {body}");
    }
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_404_and_400() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/instances/01aaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("instance_not_found")));
    for bad in ["UPPER", "a%20b", "..%2F..%2Fetc", "x;rm", &"a".repeat(41)] {
        let (status, body) = app.get_json(&format!("/api/v1/instances/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_id", "{bad}");
    }
}

#[tokio::test]
async fn an_api_restarted_mid_test_still_serves_the_data() {
    let mut app = spawn_app().await;
    let a = app.create_instance("survivor", sample_config()).await;
    app.api.kill();
    app.api = app.start_api(&[]);
    let (status, got) = app.get_json(&format!("/api/v1/instances/{}", a["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, a);
}

#[tokio::test]
async fn two_api_processes_on_one_redis_agree_at_once() {
    let app = spawn_app().await;
    let other: DraasProcess = app.start_api(&[]);
    let a = app.create_instance("shared", json!({})).await;
    let path = format!("/api/v1/instances/{}", a["id"].as_str().unwrap());
    let res =
        app.req_to(&other, Method::PATCH, &path).json(&json!({"description": "from the other"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, seen) = app.get_json(&path).await;
    assert_eq!(seen["description"], "from the other");
    let page: Value = app.req_to(&other, Method::GET, "/api/v1/instances").send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"][0]["id"], a["id"]);
}

#[tokio::test]
async fn runtime_options_are_validated_stored_and_bump_the_generation() {
    let mut app = spawn_app().await;
    app.allow_images("drasi/server:*");
    let body = json!({"name": "boxed", "platform": "docker", "runtime": {"image": "drasi/server:1", "memory": "512Mi", "cpus": 0.5}});
    let (status, created) = app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["runtime"], json!({"image": "drasi/server:1", "memory": "512Mi", "cpus": 0.5}));
    let path = format!("/api/v1/instances/{}", created["id"].as_str().unwrap());

    for (bad, pointer) in [
        (json!({"image": "$(reboot)"}), "/runtime/image"),
        (json!({"image": "-flag"}), "/runtime/image"),
        (json!({"memory": "lots"}), "/runtime/memory"),
        (json!({"memory": "1Ki"}), "/runtime/memory"),
        (json!({"cpus": 0}), "/runtime/cpus"),
    ] {
        let (status, problem) = app.send_json(Method::PATCH, &path, &json!({"runtime": bad})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let (status, problem) = app.send_json(Method::PATCH, &path, &json!({"runtime": {"gpu": 1}})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_field")),
        "{problem}"
    );
    let (_, unchanged) = app.get_json(&path).await;
    assert_eq!(unchanged["generation"], 1, "refused changes write nothing");

    let (status, changed) = app.send_json(Method::PATCH, &path, &json!({"runtime": {"image": "drasi/server:2"}})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["runtime"], json!({"image": "drasi/server:2"}));
    assert_eq!(changed["generation"], 2, "new runtime options are a new generation");
}
