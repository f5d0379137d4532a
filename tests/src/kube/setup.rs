//! What a cluster admin does before draas runs: a namespace for the instances and the worker's
//! Role and RoleBinding in it, from the committed manifest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

/// The worker RBAC manifest: `deploy/k8s/worker-rbac.yaml` when the repository has it, else the
/// test fixture that mirrors it.
pub fn rbac_manifest() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let deployed = root.join("../deploy/k8s/worker-rbac.yaml");
    if deployed.is_file() { deployed } else { root.join("fixtures/k8s/worker-rbac.yaml") }
}

/// A namespace name no other test uses.
pub fn unique_namespace() -> String {
    format!("t-{}", ulid::Ulid::new().to_string().to_ascii_lowercase())
}

/// A namespace of its own on the shared API server, prepared (see [`prepare_namespace`]),
/// with an admin client, and the environment of a worker running Kubernetes instances there
/// as its service account.
pub struct TestNamespace {
    pub kube: std::sync::Arc<super::KubeApiServer>,
    pub admin: Client,
    pub ns: String,
}

impl TestNamespace {
    pub async fn new() -> Self {
        let kube = super::KubeApiServer::shared().await;
        let admin = kube.client(super::Who::Admin).await;
        let ns = unique_namespace();
        prepare_namespace(&admin, &ns).await;
        Self { kube, admin, ns }
    }

    /// `DRAAS_KUBERNETES__ENABLED`, the worker's kubeconfig and this namespace.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        let kubeconfig = self.kube.kubeconfig(super::Who::Worker);
        vec![
            ("DRAAS_KUBERNETES__ENABLED", "true".to_owned()),
            ("DRAAS_KUBECONFIG", kubeconfig.to_string_lossy().into_owned()),
            ("DRAAS_KUBE_NAMESPACE", self.ns.clone()),
        ]
    }
}

/// Create namespace `ns` and grant the worker's service account its Role there (the manifest's
/// Role and RoleBinding, moved into `ns`).
pub async fn prepare_namespace(admin: &Client, ns: &str) {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");
    let path = rbac_manifest();
    let text = std::fs::read_to_string(&path).expect("rbac manifest");
    let (mut roles, mut bindings) = (0, 0);
    for doc in serde_norway::Deserializer::from_str(&text) {
        let mut v = Value::deserialize(doc).expect("manifest yaml");
        let kind = v["kind"].as_str().unwrap_or_default().to_owned();
        v["metadata"]["namespace"] = json!(ns);
        match kind.as_str() {
            "Role" => {
                let role: Role = serde_json::from_value(v).expect("role");
                Api::<Role>::namespaced(admin.clone(), ns).create(&PostParams::default(), &role).await.expect("role");
                roles += 1;
            }
            "RoleBinding" => {
                let b: RoleBinding = serde_json::from_value(v).expect("role binding");
                let subject = b.subjects.iter().flatten().find(|s| s.kind == "ServiceAccount");
                let user = subject
                    .map(|s| format!("system:serviceaccount:{}:{}", s.namespace.as_deref().unwrap_or(""), s.name));
                assert_eq!(user.as_deref(), Some(super::WORKER_USER), "{}: the binding's subject", path.display());
                Api::<RoleBinding>::namespaced(admin.clone(), ns)
                    .create(&PostParams::default(), &b)
                    .await
                    .expect("binding");
                bindings += 1;
            }
            _ => {}
        }
    }
    assert!(roles == 1 && bindings == 1, "{}: want one Role and one RoleBinding", path.display());
}
