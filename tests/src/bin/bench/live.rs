//! Time from a configuration write to the change being live on a running PostgreSQL pipeline
//! (the real drasi-server and a real PostgreSQL): adding a reaction through the live path
//! beside the restart path (a top-level change: a new server, the source bootstrapping the
//! table again before the query has its results back).

use std::time::{Duration, Instant};

use draas_tests::postgres::TestPostgres;
use draas_tests::{RealServer, TestRedis};
use serde_json::{Value, json};

use super::summary;

/// The README's pipeline with the database's port written in.
fn pipeline(port: u16) -> Value {
    let source = |extra: Value| {
        let mut s = json!({"host": "127.0.0.1", "port": port, "database": "shop", "user": "postgres",
            "password": "trust", "sslMode": "disable", "tables": ["orders"], "slotName": "drasi_slot",
            "publicationName": "drasi_pub", "tableKeys": [{"table": "orders", "keyColumns": ["id"]}]});
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    };
    json!({
        "logLevel": "info",
        "sources": [source(json!({"kind": "postgres", "id": "shop", "bootstrapProvider": source(json!({"kind": "postgres"}))}))],
        "queries": [{"id": "big-orders", "sources": [{"sourceId": "shop"}],
                     "query": "MATCH (o:orders) WHERE o.qty > 10 RETURN o.id AS id, o.item AS item, o.qty AS qty"}],
        "reactions": [{"kind": "log", "id": "out", "queries": ["big-orders"]}]
    })
}

pub async fn figures(redis: &TestRedis, server: &RealServer, cycles: usize) {
    let pg = TestPostgres::start();
    pg.shop(&[]);
    pg.sql("shop", "INSERT INTO orders SELECT g, 'item-' || g, g % 50 FROM generate_series(1, 1000) g");
    let d = super::RealDeployment::start(redis, "live", server).await;
    let (base, http) = (d.base.clone(), d.http.clone());
    let id = d.create("live", pipeline(pg.port)).await;
    let op: Value =
        http.post(format!("{base}/api/v1/instances/{id}/start?wait=60")).send().await.unwrap().json().await.unwrap();
    assert_eq!(op["status"], "succeeded", "{op}");
    let config = format!("{base}/api/v1/instances/{id}/config");
    // One write, held until its reconfigure ended; how it was applied.
    let write = |req: reqwest::RequestBuilder| async move {
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        let op = res.headers()["x-draas-operation"].to_str().unwrap().to_owned();
        assert_eq!(res.headers()["x-draas-operation-status"], "succeeded");
        op
    };
    let how = |op: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let op: Value =
                http.get(format!("{base}/api/v1/operations/{op}")).send().await.unwrap().json().await.unwrap();
            (op["result"]["applied"]["how"].as_str().unwrap_or_default().to_owned(), op["result"]["endpoint"].clone())
        }
    };
    let (mut live, mut restart, mut back) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..cycles {
        let t = Instant::now();
        let reaction = json!({"kind": "log", "id": format!("r{i}"), "queries": ["big-orders"]});
        let op = write(http.post(format!("{config}/reactions?wait=30")).json(&reaction)).await;
        live.push(t.elapsed());
        assert_eq!(how(op).await.0, "live");
    }
    for i in 0..cycles {
        let level = if i % 2 == 0 { "debug" } else { "info" };
        let t = Instant::now();
        let op = write(
            http.patch(format!("{config}?wait=60"))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"logLevel": level}).to_string()),
        )
        .await;
        restart.push(t.elapsed());
        let (applied, endpoint) = how(op).await;
        assert_eq!(applied, "restart");
        let url = format!("{}/api/v1/queries/big-orders/results", endpoint.as_str().unwrap());
        loop {
            let body: Option<Value> = match http.get(&url).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            if body.as_ref().and_then(|b| b["data"].as_array()).is_some_and(|d| !d.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        back.push(t.elapsed());
    }
    println!("config write -> change live, real drasi-server, postgres pipeline (1,000 rows), {cycles} cycles:");
    println!("  add a reaction, live (same server):            {}", summary(live));
    println!("  top-level change, restart (op ended):          {}", summary(restart));
    println!("  top-level change, restart (results back):      {}", summary(back));
}
