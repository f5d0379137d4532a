//! What a cluster's controllers and kubelet would do, done by hand: with only an API server,
//! nothing writes a Deployment's status or creates its pods.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// Field manager of the status writes, so tests can tell them from draas' own.
pub const CONTROLLER_MANAGER: &str = "fake-deployment-controller";

/// Plays the deployment controller in one namespace: every Deployment's status follows its
/// spec (the wanted replicas updated, ready and available), unless paused.
pub struct FakeController {
    task: tokio::task::JoinHandle<()>,
    /// Paused? Held while a round of writes runs, so none is in flight once `pause` returns.
    paused: Arc<tokio::sync::Mutex<bool>>,
}

impl FakeController {
    /// Start it on `client` (the admin's) for `namespace`.
    pub fn spawn(client: Client, namespace: &str) -> Self {
        let api: Api<Deployment> = Api::namespaced(client, namespace);
        let paused = Arc::new(tokio::sync::Mutex::new(false));
        let p = paused.clone();
        let task = tokio::spawn(async move {
            loop {
                let paused = p.lock().await;
                if !*paused && let Ok(list) = api.list(&ListParams::default()).await {
                    for d in list.items.iter().filter(|d| behind(d)) {
                        let _ = write_status(&api, &d.name_any(), available(d)).await;
                    }
                }
                drop(paused);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { task, paused }
    }

    /// Stop writing statuses (a test writes its own).
    pub async fn pause(&self) {
        *self.paused.lock().await = true;
    }
}

impl Drop for FakeController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Has the controller not yet reported this Deployment's current spec?
fn behind(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation != d.metadata.generation
        || s.replicas.unwrap_or(0) != want
        || s.available_replicas.unwrap_or(0) != want
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status the deployment controller writes once the wanted replicas are available.
fn available(d: &Deployment) -> Value {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let t = now();
    json!({
        "observedGeneration": d.metadata.generation,
        "replicas": want, "updatedReplicas": want, "readyReplicas": want, "availableReplicas": want,
        "unavailableReplicas": 0,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"{}-7d4b9c\" has successfully progressed.", d.name_any()),
             "lastUpdateTime": t, "lastTransitionTime": t},
        ],
    })
}

async fn write_status(api: &Api<Deployment>, name: &str, status: Value) -> kube::Result<Deployment> {
    let params = PatchParams { field_manager: Some(CONTROLLER_MANAGER.into()), ..PatchParams::default() };
    api.patch_status(name, &params, &Patch::Merge(json!({ "status": status }))).await
}

/// Write what the controller reports when the replica is not available (its pod crashes).
pub async fn set_unavailable(client: &Client, namespace: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = api.get(name).await.expect("deployment");
    let t = now();
    let status = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "message": "Deployment does not have minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
             "message": format!("ReplicaSet \"{name}-7d4b9c\" is progressing."), "lastUpdateTime": t, "lastTransitionTime": t},
        ],
    });
    write_status(&api, name, status).await.expect("status");
}

/// Create the pod the Deployment's ReplicaSet would (its template's labels and annotations)
/// and give it `container` as the status of its drasi-server container, like a kubelet.
pub async fn create_pod(client: &Client, namespace: &str, deployment: &str, container: Value) -> Pod {
    let d: Deployment = Api::namespaced(client.clone(), namespace).get(deployment).await.expect("deployment");
    let template = d.spec.expect("spec").template;
    let meta = template.metadata.expect("template metadata");
    let name = format!("{deployment}-7d4b9c-{}", &ulid::Ulid::new().to_string().to_ascii_lowercase()[20..]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": meta.labels, "annotations": meta.annotations},
        "spec": template.spec,
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let mut status =
        json!({"name": "drasi-server", "image": "drasi", "imageID": "", "ready": false, "restartCount": 3});
    status.as_object_mut().unwrap().extend(container.as_object().cloned().unwrap_or_default());
    let patch = json!({"status": {"phase": "Running", "containerStatuses": [status]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("pod status")
}
