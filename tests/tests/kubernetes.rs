//! The Kubernetes platform against a real kube-apiserver 1.20 (tests/src/kube.rs): real draas
//! processes, a worker speaking as its service account under the committed RBAC Role, and the
//! harness playing the deployment controller and kubelet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use draas_tests::kube::{self as harness, FakeController, KubeApiServer, TestNamespace, Who};
use draas_tests::{DraasProcess, TestApp, eventually, spawn_app};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// One test's world: draas (API, Redis, a worker), a namespace on the shared API server with the
/// worker's Role, an admin client and the fake deployment controller.
struct World {
    app: TestApp,
    worker: DraasProcess,
    ns: String,
    admin: Client,
    controller: FakeController,
    _kube: Arc<KubeApiServer>,
}

async fn world(extra: &[(&str, &str)]) -> World {
    let t = TestNamespace::new().await;
    let mut app = spawn_app().await;
    app.allow_images("registry.invalid/*");
    let base = t.worker_env();
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("DRAAS_KUBERNETES__START_TIMEOUT_SECS", "20"),
        ("DRAAS_KUBERNETES__DELETE_TIMEOUT_SECS", "20"),
        ("DRAAS_RECONCILE__INTERVAL_SECS", "1"),
    ]);
    env.extend_from_slice(extra);
    let worker = app.start_worker("node-a", &env);
    let controller = FakeController::spawn(t.admin.clone(), &t.ns);
    World { app, worker, ns: t.ns, admin: t.admin, controller, _kube: t.kube }
}

impl World {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn create(&self, name: &str, runtime: Value) -> String {
        let body = json!({"name": name, "platform": "kubernetes", "runtime": runtime,
                          "config": {"sources": [], "queries": [], "reactions": []}});
        let (status, i) = self.app.send_json(Method::POST, "/api/v1/instances", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{i}");
        i["id"].as_str().unwrap().to_owned()
    }

    async fn run(&self, id: &str, action: &str) -> Value {
        self.app.wait_op(&self.app.submit(id, action).await, LONG).await
    }

    /// The YAML drasi-server gets and its spec hash, from the API.
    async fn rendered(&self, id: &str) -> (String, String) {
        let res = self
            .app
            .req(Method::GET, &format!("/api/v1/instances/{id}/config"))
            .header("accept", "application/yaml")
            .send()
            .await
            .unwrap();
        let hash = res.headers()["x-draas-spec-hash"].to_str().unwrap().to_owned();
        (res.text().await.unwrap(), hash)
    }

    async fn gone(&self, name: &str) -> bool {
        let d = self.api::<Deployment>().get_opt(name).await.unwrap();
        let s = self.api::<Service>().get_opt(name).await.unwrap();
        let c = self.api::<ConfigMap>().get_opt(name).await.unwrap();
        d.is_none() && s.is_none() && c.is_none()
    }
}

fn annotation<K: ResourceExt>(o: &K) -> Option<String> {
    o.annotations().get("draas.io/spec-hash").cloned()
}

fn template_annotation(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()?.get("draas.io/spec-hash").cloned()
}

/// Every managed-fields entry that owns part of `spec` or `data` belongs to draas' apply.
fn owned_by_draas<K: ResourceExt>(o: &K) {
    let fields = o.managed_fields();
    assert!(fields.iter().any(|f| f.manager.as_deref() == Some("draas") && f.operation.as_deref() == Some("Apply")));
    for f in fields {
        let owns = f.fields_v1.as_ref().map(|v| serde_json::to_string(&v.0).unwrap()).unwrap_or_default();
        if owns.contains("\"f:spec\"") || owns.contains("\"f:data\"") {
            assert_eq!(f.manager.as_deref(), Some("draas"), "{}: {owns}", o.name_any());
        }
    }
}

#[tokio::test]
async fn an_instance_lives_as_three_labelled_objects_from_start_through_stop_and_change_to_delete() {
    let w = world(&[]).await;
    let id = w.create("kube-life", json!({"memory": "256Mi", "cpus": 0.5})).await;
    let name = format!("draas-{id}");

    let op = w.run(&id, "start").await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(op["result"]["endpoint"], format!("http://{name}.{}.svc:8080", w.ns));
    let (yaml, hash) = w.rendered(&id).await;
    let cm = w.api::<ConfigMap>().get(&name).await.unwrap();
    let d = w.api::<Deployment>().get(&name).await.unwrap();
    let svc = w.api::<Service>().get(&name).await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["server.yaml"], yaml);
    for labels in [cm.labels(), d.labels(), svc.labels()] {
        assert_eq!(labels["app.kubernetes.io/name"], "drasi-server");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "draas");
        assert_eq!(labels["draas.io/instance"], id);
        assert_eq!(labels["draas.io/deployment"], w.app.prefix);
        assert_eq!(labels["draas.io/deployment-id"], w.app.deployment_id().await);
    }
    assert_eq!((annotation(&d), template_annotation(&d)), (Some(hash.clone()), Some(hash.clone())));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.args.as_deref().unwrap(), ["--config", "/app/config/server.yaml", "--skip-verification"]);
    let init = spec.template.spec.as_ref().unwrap().init_containers.iter().flatten();
    assert_eq!(init.map(|c| c.name.as_str()).collect::<Vec<_>>(), ["config"], "no plugins configured, no plugins copy");
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    for probe in [&c.readiness_probe, &c.liveness_probe] {
        assert_eq!(probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    }
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/app/config", None), "a writable copy");
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!((limits["memory"].0.as_str(), limits["cpu"].0.as_str()), ("256Mi", "500m"));
    // Hardened, as the API server stored it: never root, the default seccomp profile, no
    // privilege gain, no capabilities, a read-only root filesystem.
    let pod_security = spec.template.spec.as_ref().unwrap().security_context.clone().unwrap();
    assert_eq!((pod_security.run_as_non_root, pod_security.run_as_user), (Some(true), Some(65532)));
    assert_eq!(pod_security.seccomp_profile.map(|p| p.type_).as_deref(), Some("RuntimeDefault"));
    let security = c.security_context.clone().unwrap();
    assert_eq!((security.allow_privilege_escalation, security.read_only_root_filesystem), (Some(false), Some(true)));
    assert_eq!(security.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
    let s = svc.spec.as_ref().unwrap();
    assert_eq!((s.type_.as_deref(), s.ports.as_ref().unwrap()[0].port), (Some("ClusterIP"), 8080));
    owned_by_draas(&cm);
    owned_by_draas(&d);
    owned_by_draas(&svc);
    w.app.wait_instance(&id, "running", LONG, |i| i["status"] == "running").await;

    let op = w.run(&id, "stop").await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let d = w.api::<Deployment>().get(&name).await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0));
    assert!(w.api::<ConfigMap>().get_opt(&name).await.unwrap().is_some(), "stop keeps the ConfigMap");
    assert!(w.api::<Service>().get_opt(&name).await.unwrap().is_some(), "stop keeps the Service");
    w.app.wait_instance(&id, "stopped", LONG, |i| i["status"] == "stopped").await;

    let op = w.run(&id, "start").await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let before = w.api::<Deployment>().get(&name).await.unwrap();
    let res = w
        .app
        .send_body(
            Method::PATCH,
            &format!("/api/v1/instances/{id}/config"),
            "application/merge-patch+json",
            r#"{"logLevel": "debug"}"#,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (yaml, new_hash) = w.rendered(&id).await;
    assert_ne!(new_hash, hash);
    let after = eventually("the config change rolled out", LONG, || async {
        let d = w.api::<Deployment>().get(&name).await.unwrap();
        (template_annotation(&d) == Some(new_hash.clone())).then_some(d)
    })
    .await;
    assert_eq!(annotation(&after), Some(new_hash.clone()));
    assert!(after.metadata.generation > before.metadata.generation, "a new pod template: a rollout");
    let cm = w.api::<ConfigMap>().get(&name).await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["server.yaml"], yaml);
    assert!(yaml.contains("logLevel: debug"));
    w.app.wait_instance(&id, "running the new config", LONG, |i| i["status"] == "running").await;

    let res = w.app.req(Method::DELETE, &format!("/api/v1/instances/{id}?wait=30")).send().await.unwrap();
    let op: Value = res.json().await.unwrap();
    assert_eq!(op["status"], "succeeded", "{op}");
    assert!(w.gone(&name).await, "delete leaves nothing behind");
    let (status, _) = w.app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn plugins_come_from_an_image_through_an_init_container_and_configs_are_checked_against_its_kinds() {
    let w = world(&[
        ("DRAAS_KUBERNETES__PLUGINS__IMAGE", "registry.example/drasi-plugins:0.2.2"),
        ("DRAAS_KUBERNETES__PLUGINS__KINDS", "source/http,reaction/sse"),
    ])
    .await;
    let catalog = eventually("the kubernetes catalog", LONG, || async {
        let (_, body) = w.app.get_json("/api/v1/plugins").await;
        body["catalogs"].as_array()?.iter().find(|c| c["platform"] == "kubernetes").cloned()
    })
    .await;
    assert_eq!(catalog["kinds"], json!(["reaction/sse", "source/http"]), "{catalog}");

    let lacking = json!({"name": "kube-lacking", "platform": "kubernetes",
        "config": {"sources": [{"kind": "postgres", "id": "db"}], "queries": [], "reactions": []}});
    let (status, body) = w.app.send_json(Method::POST, "/api/v1/instances", &lacking).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        (body["code"].as_str(), body["pointer"].as_str()),
        (Some("plugin_missing"), Some("/config/sources/0/kind"))
    );

    let config = json!({
        "sources": [{"kind": "http", "id": "ingest", "autoStart": true}],
        "queries": [{"id": "q", "query": "MATCH (n:Reading) RETURN n.id AS id", "sources": [{"sourceId": "ingest"}]}],
        "reactions": [{"kind": "sse", "id": "stream", "queries": ["q"]}]
    });
    let body = json!({"name": "kube-plugins", "platform": "kubernetes", "config": config});
    let (status, i) = w.app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{i}");
    let id = i["id"].as_str().unwrap();
    let name = format!("draas-{id}");
    let op = w.run(id, "start").await;
    assert_eq!(op["status"], "succeeded", "{op}");

    let d = w.api::<Deployment>().get(&name).await.unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let init = pod.init_containers.as_ref().unwrap().iter().find(|c| c.name == "plugins").unwrap();
    assert_eq!(init.image.as_deref(), Some("registry.example/drasi-plugins:0.2.2"));
    assert_eq!(init.command.as_deref().unwrap(), ["cp", "-r", "/plugins/.", "/draas-plugins/"]);
    let volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "plugins").unwrap();
    assert!(volume.empty_dir.is_some(), "the copy goes into an emptyDir: no node access");
    let c = &pod.containers[0];
    assert_eq!(
        c.args.as_deref().unwrap(),
        ["--config", "/app/config/server.yaml", "--plugins-dir", "/app/plugins", "--skip-verification"]
    );
    let mounted = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "plugins").unwrap();
    assert_eq!((mounted.mount_path.as_str(), mounted.read_only), ("/app/plugins", Some(true)));

    // The http source and the sse reaction listen: each has a port in the pod and the Service.
    let (yaml, _) = w.rendered(id).await;
    let rendered: Value = serde_norway::from_str(&yaml).unwrap();
    let ports = [rendered["sources"][0]["port"].as_u64().unwrap(), rendered["reactions"][0]["port"].as_u64().unwrap()];
    assert_ne!(ports[0], ports[1], "{yaml}");
    let in_pod: Vec<u64> = c.ports.as_ref().unwrap().iter().map(|p| p.container_port as u64).collect();
    let svc = w.api::<Service>().get(&name).await.unwrap();
    let in_service: Vec<u64> = svc.spec.unwrap().ports.unwrap().iter().map(|p| p.port as u64).collect();
    for port in ports {
        assert!(in_pod.contains(&port) && in_service.contains(&port), "{port}: pod {in_pod:?}, service {in_service:?}");
    }
    let (_, inst) = w.app.get_json(&format!("/api/v1/instances/{id}")).await;
    let listeners = inst["runtimeFacts"]["listeners"].to_string();
    for port in ports {
        assert!(listeners.contains(&format!("{name}.{}.svc:{port}", w.ns)), "{inst}");
    }

    // A change to a kind the image lacks is refused and leaves the instance as it was.
    let res = w
        .app
        .send_body(
            Method::PATCH,
            &format!("/api/v1/instances/{id}/config"),
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/reactions/0/kind", "value": "log"}]"#,
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        (problem["code"].as_str(), problem["pointer"].as_str()),
        (Some("plugin_missing"), Some("/reactions/0/kind"))
    );
    assert_eq!(w.rendered(id).await.0, yaml, "nothing was written");
}

/// drasi-server takes API changes only when its file is writable: the pod reads a copy of the
/// ConfigMap in an `emptyDir`; with `kubernetes.data_volume` its data directory is a claim of
/// the instance, kept while it is stopped, removed with it.
#[tokio::test]
async fn pods_read_a_writable_copy_of_their_config_and_keep_their_data_on_a_claim_of_the_instance() {
    let w = world(&[("DRAAS_KUBERNETES__DATA_VOLUME__SIZE", "2Gi")]).await;
    let id = w.create("kube-data", json!({})).await;
    let name = format!("draas-{id}");
    let op = w.run(&id, "start").await;
    assert_eq!(op["status"], "succeeded", "{op}");

    let pod = w.api::<Deployment>().get(&name).await.unwrap().spec.unwrap().template.spec.unwrap();
    let copy = pod.init_containers.as_ref().unwrap().iter().find(|c| c.name == "config").unwrap();
    assert_eq!(copy.command.as_deref().unwrap(), ["cp", "/draas-config/server.yaml", "/app/config/server.yaml"]);
    let volumes = pod.volumes.as_ref().unwrap();
    assert!(volumes.iter().any(|v| v.name == "config" && v.empty_dir.is_some()), "{volumes:?}");
    let mount = pod.containers[0].volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "config").unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/app/config", None));

    let claim_name = format!("{name}-data");
    let claim = w.api::<PersistentVolumeClaim>().get(&claim_name).await.unwrap();
    let requested = claim.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0.clone();
    assert_eq!(requested, "2Gi");
    assert_eq!(claim.metadata.labels.unwrap()["draas.io/instance"], id);
    let data = volumes.iter().find(|v| v.name == "data").unwrap();
    assert_eq!(data.persistent_volume_claim.as_ref().unwrap().claim_name, claim_name);

    let stopped = w.run(&id, "stop").await;
    assert_eq!(stopped["status"], "succeeded", "{stopped}");
    assert!(w.api::<PersistentVolumeClaim>().get_opt(&claim_name).await.unwrap().is_some(), "kept while stopped");
    let (_, deleted) = w.app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}?wait=30"), &Value::Null).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    eventually("the claim removed with the instance", LONG, || async {
        let claim = w.api::<PersistentVolumeClaim>().get_opt(&claim_name).await.ok()?;
        claim.is_none_or(|c| c.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn objects_deleted_by_hand_are_put_back_by_the_reconciler() {
    let w = world(&[]).await;
    let id = w.create("kube-drift", json!({})).await;
    let name = format!("draas-{id}");
    assert_eq!(w.run(&id, "start").await["status"], "succeeded");
    w.app.wait_instance(&id, "running", LONG, |i| i["status"] == "running").await;
    let uid = |o: Option<String>| o.unwrap_or_default();

    let svc = uid(w.api::<Service>().get(&name).await.unwrap().metadata.uid);
    w.api::<Service>().delete(&name, &Default::default()).await.unwrap();
    eventually("a new Service", LONG, || async {
        let s = w.api::<Service>().get_opt(&name).await.unwrap()?;
        (uid(s.metadata.uid) != svc).then_some(())
    })
    .await;

    let d = uid(w.api::<Deployment>().get(&name).await.unwrap().metadata.uid);
    w.api::<Deployment>().delete(&name, &Default::default()).await.unwrap();
    eventually("a new Deployment", LONG, || async {
        let d2 = w.api::<Deployment>().get_opt(&name).await.unwrap()?;
        (uid(d2.metadata.uid) != d).then_some(())
    })
    .await;
    w.app.wait_instance(&id, "running again", LONG, |i| i["status"] == "running").await;
}

/// Objects labelled as draas' for `instance`, of deployment `deployment` (name, id).
async fn plant(w: &World, instance: &str, (deployment, id): (&str, &str)) -> String {
    let name = format!("draas-{instance}");
    let labels = json!({"app.kubernetes.io/name": "drasi-server", "app.kubernetes.io/managed-by": "draas",
                        "draas.io/instance": instance, "draas.io/deployment": deployment,
                        "draas.io/deployment-id": id});
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    w.api::<ConfigMap>().create(&PostParams::default(), &cm).await.unwrap();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "drasi-server", "image": "drasi"}]}}},
    }))
    .unwrap();
    w.api::<Deployment>().create(&PostParams::default(), &d).await.unwrap();
    name
}

#[tokio::test]
async fn an_orphan_is_reported_and_removed_while_another_deployments_objects_are_left_alone() {
    let w = world(&[("DRAAS_RECONCILE__REMOVE_ORPHANS", "true")]).await;
    let ours = w.app.deployment_id().await;
    let orphan = plant(&w, "ghost", (&w.app.prefix, &ours)).await;
    let foreign = plant(&w, "neighbour", ("another-draas", &ours)).await;
    // Another deployment of the same name (its own Redis): the id tells them apart.
    let namesake = plant(&w, "namesake", (&w.app.prefix, "01namesake0000000000000000")).await;
    // Global passes (which find orphans) run while an instance is desired running.
    let id = w.create("kube-watched", json!({})).await;
    assert_eq!(w.run(&id, "start").await["status"], "succeeded");
    eventually("the orphan removed", LONG, || async { w.gone(&orphan).await.then_some(()) }).await;
    assert!(w.worker.logged(&["found a draas-managed object no instance owns", "ghost"]));
    assert!(w.api::<Deployment>().get_opt(&foreign).await.unwrap().is_some(), "not this draas' object");
    assert!(w.api::<ConfigMap>().get_opt(&foreign).await.unwrap().is_some(), "not this draas' object");
    assert!(w.api::<Deployment>().get_opt(&namesake).await.unwrap().is_some(), "a namesake deployment's object");
}

#[tokio::test]
async fn a_crash_loop_in_the_pod_shows_its_reasons_in_the_observed_status() {
    let w = world(&[("DRAAS_RECONCILE__REPAIR_ERROR", "false")]).await;
    let id = w.create("kube-crash", json!({})).await;
    let name = format!("draas-{id}");
    assert_eq!(w.run(&id, "start").await["status"], "succeeded");
    w.app.wait_instance(&id, "running", LONG, |i| i["status"] == "running").await;

    w.controller.pause().await;
    harness::set_unavailable(&w.admin, &w.ns, &name).await;
    let crash = json!({
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
    });
    harness::create_pod(&w.admin, &w.ns, &name, crash).await;
    let i = w.app.wait_instance(&id, "error", LONG, |i| i["status"] == "error").await;
    let text = i["statusMessage"].as_str().unwrap_or_default();
    for needle in ["CrashLoopBackOff", "OOMKilled", "code 137", "MinimumReplicasUnavailable", "0/1 replicas available"]
    {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}

#[tokio::test]
async fn a_start_whose_image_cannot_be_pulled_fails_at_once_with_image_pull_failed() {
    let w = world(&[]).await;
    w.controller.pause().await;
    let id = w.create("kube-pull", json!({"image": "registry.invalid/nothing:1"})).await;
    let name = format!("draas-{id}");
    let op = w.app.submit(&id, "start").await;
    eventually("the Deployment", LONG, || async { w.api::<Deployment>().get_opt(&name).await.unwrap() }).await;
    let pull = json!({"state": {"waiting": {"reason": "ImagePullBackOff",
                                            "message": "Back-off pulling image \"registry.invalid/nothing:1\""}}});
    harness::create_pod(&w.admin, &w.ns, &name, pull).await;
    let op = w.app.wait_op(&op, LONG).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "image_pull_failed", "{op}");
    assert!(op["error"]["message"].as_str().unwrap().contains("ImagePullBackOff"), "{op}");
    assert_eq!(op["attempt"], 1, "a permanent failure is not retried: {op}");
}

#[tokio::test]
async fn secrets_reach_the_pod_through_a_labelled_secret_that_goes_with_the_instance() {
    let w = world(&[]).await;
    let body = json!({"name": "kube-secrets", "platform": "kubernetes",
                      "config": {"sources": [], "queries": [], "reactions": []},
                      "secrets": {"APP_ID": "pod-secret"}});
    let (status, i) = w.app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{i}");
    let id = i["id"].as_str().unwrap().to_owned();
    let name = format!("draas-{id}");
    let op = w.run(&id, "start").await;
    assert_eq!(op["status"], "succeeded", "{op}");

    let secret = w.api::<Secret>().get(&name).await.unwrap();
    assert_eq!(secret.data.as_ref().unwrap()["APP_ID"].0, b"pod-secret");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "draas");
    assert_eq!(labels["draas.io/instance"], id);
    assert_eq!(labels["draas.io/deployment"], w.app.prefix);
    assert_eq!(labels["draas.io/deployment-id"], w.app.deployment_id().await);
    owned_by_draas(&secret);
    let d = w.api::<Deployment>().get(&name).await.unwrap();
    let c = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let from = c.env_from.as_ref().expect("envFrom");
    assert_eq!(from[0].secret_ref.as_ref().map(|r| r.name.as_str()), Some(name.as_str()), "{from:?}");
    let cm = w.api::<ConfigMap>().get(&name).await.unwrap();
    assert!(!cm.data.as_ref().unwrap()["server.yaml"].contains("pod-secret"), "the value is in the Secret only");

    // Deleted by hand, the Secret is put back by the reconciler (the pod cannot start without it).
    let before = w.api::<Secret>().get(&name).await.unwrap().metadata.uid;
    w.api::<Secret>().delete(&name, &Default::default()).await.unwrap();
    eventually("the Secret put back", LONG, || async {
        let back = w.api::<Secret>().get_opt(&name).await.unwrap()?;
        (back.metadata.uid != before).then_some(())
    })
    .await;

    // The last secret removed: the restart it submits leaves no Secret and no envFrom.
    let res =
        w.app.req(Method::DELETE, &format!("/api/v1/instances/{id}/secrets/APP_ID?wait=60")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let restart = res.headers()["x-draas-operation"].to_str().unwrap().to_owned();
    assert_eq!(w.app.wait_op(&json!({"id": restart}), LONG).await["status"], "succeeded");
    assert!(w.api::<Secret>().get_opt(&name).await.unwrap().is_none(), "no secrets, no Secret");
    let d = w.api::<Deployment>().get(&name).await.unwrap();
    assert!(d.spec.unwrap().template.spec.unwrap().containers[0].env_from.is_none());

    // Set again, then deleted with the instance.
    let res = w
        .app
        .req(Method::PUT, &format!("/api/v1/instances/{id}/secrets/APP_ID"))
        .json(&json!({"value": "v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    eventually("the Secret back", LONG, || async { w.api::<Secret>().get_opt(&name).await.unwrap().map(|_| ()) }).await;
    let (status, del) = w.app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}"), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{del}");
    assert_eq!(w.app.wait_op(&del, LONG).await["status"], "succeeded");
    assert!(w.api::<Secret>().get_opt(&name).await.unwrap().is_none(), "the Secret went with the instance");
}

#[tokio::test]
async fn the_worker_role_allows_the_workers_requests_and_refuses_the_rest() {
    let kube = KubeApiServer::shared().await;
    let admin = kube.client(Who::Admin).await;
    let (ns, other) = (harness::unique_namespace(), harness::unique_namespace());
    harness::prepare_namespace(&admin, &ns).await;
    let ns_other: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": other}})).unwrap();
    Api::all(admin.clone()).create(&PostParams::default(), &ns_other).await.unwrap();
    let worker = kube.client(Who::Worker).await;

    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "draas-probe"}, "data": {"a": "b"}}))
    .unwrap();
    let apply = PatchParams::apply("draas");
    let mine: Api<ConfigMap> = Api::namespaced(worker.clone(), &ns);
    mine.patch("draas-probe", &apply, &Patch::Apply(&cm)).await.expect("apply in its namespace");
    Api::<Pod>::namespaced(worker.clone(), &ns).list(&ListParams::default()).await.expect("list pods");
    let logs = Api::<Pod>::namespaced(worker.clone(), &ns).logs("no-such-pod", &LogParams::default()).await;
    assert!(matches!(&logs, Err(kube::Error::Api(s)) if s.code == 404), "pod logs may be read: {logs:?}");

    let refused = |r: kube::Result<()>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    let theirs: Api<ConfigMap> = Api::namespaced(worker.clone(), &other);
    let r = theirs.patch("draas-probe", &apply, &Patch::Apply(&cm)).await.map(|_| ());
    assert!(refused(r), "a write in another namespace is refused");
    Api::<Secret>::namespaced(worker.clone(), &ns).list(&ListParams::default()).await.expect("its instances' secrets");
    let r = Api::<Secret>::namespaced(worker.clone(), &other).list(&ListParams::default()).await.map(|_| ());
    assert!(refused(r), "secrets elsewhere are not the worker's");
    let r = Api::<ConfigMap>::all(worker.clone()).list(&ListParams::default()).await.map(|_| ());
    assert!(refused(r), "nothing cluster-wide");
    let r = Api::<Pod>::namespaced(worker, &ns).delete("x", &Default::default()).await.map(|_| ());
    assert!(refused(r), "pods are only read");
}
