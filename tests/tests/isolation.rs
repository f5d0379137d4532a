//! Two deployments on one host (issue: "a second `draas up` in another directory, with its own
//! Redis and port, logged 'killing a drasi-server no instance on this node owns' every 5 s and
//! killed the first one's servers"; both call themselves `draas` on node = host name): each
//! has an id of its own in its Redis, every server carries it, and a worker only ever kills
//! servers that carry its own. A server marked with the deployment's name alone (started
//! before ids) is never killed as an orphan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{TestApp, eventually, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};

const FAST: [(&str, &str); 1] = [("DRAAS_RECONCILE__INTERVAL_SECS", "1")];
const DEADLINE: Duration = Duration::from_secs(30);

/// A running instance of `app`: its id and its server's pid.
async fn running(app: &TestApp, name: &str) -> (String, i64) {
    let id = app.create_instance(name, json!({})).await["id"].as_str().unwrap().to_owned();
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=30"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let (_, instance) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    let pid = instance["runtimeFacts"]["pid"].as_i64().unwrap_or_else(|| panic!("a pid: {instance}"));
    (id, pid)
}

/// Wait until `app` probed instance `id` `n` more times (each probe is one node pass, whose
/// end looks for orphans).
async fn passes(app: &TestApp, id: &str, n: usize) {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let path = format!("/api/v1/instances/{id}");
    eventually("node passes", DEADLINE, || async {
        let (_, instance) = app.get_json(&path).await;
        let at = instance["lastProbe"]["at"].as_str().unwrap_or_default().to_owned();
        let mut seen = seen.borrow_mut();
        if !at.is_empty() && seen.last() != Some(&at) {
            seen.push(at);
        }
        (seen.len() > n).then_some(())
    })
    .await;
}

/// Is `pid` a live process (not gone, not a zombie)?
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// A process standing in for a drasi-server, in a process group of its own (as draas starts
/// servers), under `dir`, with `env`.
fn stand_in(dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sleep")
        .arg("300")
        .current_dir(dir)
        .envs(env.iter().copied())
        .process_group(0)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn deployments_of_one_name_on_one_host_leave_each_others_servers_alone() {
    let first = spawn_app().await;
    // Another Redis, the same key prefix and node name: what a second `draas up` elsewhere is.
    let mut second = spawn_app().await;
    second.prefix = first.prefix.clone();
    second.api.kill();
    second.api = second.start_api(&[]);
    let w1 = first.start_worker("node-a", &FAST);
    let w2 = second.start_worker("node-a", &FAST);

    let (a, pid_a) = running(&first, "first").await;
    let (b, pid_b) = running(&second, "second").await;
    assert_ne!(first.deployment_id().await, second.deployment_id().await, "an id per Redis");
    // Several node passes of each deployment after both servers run.
    passes(&second, &b, 3).await;
    passes(&first, &a, 3).await;
    assert!(alive(pid_a) && alive(pid_b), "both servers live");
    for (app, id, pid) in [(&first, &a, pid_a), (&second, &b, pid_b)] {
        let (_, instance) = app.get_json(&format!("/api/v1/instances/{id}")).await;
        assert_eq!(
            (instance["status"].as_str(), instance["runtimeFacts"]["pid"].as_i64()),
            (Some("running"), Some(pid))
        );
    }
    assert!(!w1.logged(&["killing a drasi-server"]) && !w2.logged(&["killing a drasi-server"]));
}

#[tokio::test]
async fn a_server_marked_with_the_name_alone_is_never_killed_as_an_orphan() {
    let app = spawn_app().await;
    let worker = app.start_worker("node-a", &FAST);
    let (watched, _) = running(&app, "watched").await;
    // A server of this deployment's name without an id, whose instance this Redis does not
    // know: one started before deployment ids, or by a namesake deployment.
    let dir = app.data.path().join("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    let mut legacy =
        stand_in(&dir, &[("DRAAS_DEPLOYMENT", &app.prefix), ("DRAAS_INSTANCE_ID", "01legacy000000000000000000")]);
    let pid = i64::from(legacy.id());
    eventually("the legacy server reported", DEADLINE, || async {
        worker.logged(&["no id is left alone", "01legacy"]).then_some(())
    })
    .await;
    passes(&app, &watched, 2).await;
    assert!(alive(pid), "left alone");
    // One of this deployment's own (marked with its id) is killed as an orphan.
    let id = app.deployment_id().await;
    let mut orphan = stand_in(
        &dir,
        &[
            ("DRAAS_DEPLOYMENT", &app.prefix),
            ("DRAAS_DEPLOYMENT_ID", &id),
            ("DRAAS_INSTANCE_ID", "01orphan000000000000000000"),
        ],
    );
    let orphan_pid = i64::from(orphan.id());
    eventually("the orphan killed", DEADLINE, || async { (!alive(orphan_pid)).then_some(()) }).await;
    assert!(orphan.wait().is_ok_and(|s| !s.success()), "killed, not ended");
    assert!(alive(pid), "the legacy server still");
    let _ = legacy.kill();
    let _ = legacy.wait();
}
