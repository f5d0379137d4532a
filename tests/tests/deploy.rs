//! deploy/: every Kubernetes manifest and the compose file parse as YAML with the expected
//! kinds and wiring, their environments load as draas `Settings`, and the KEDA ScaledObject
//! reads the API's backlog with a token the API accepts; the backlog counts every unfinished
//! job with no worker and with a busy one (against a real redis-server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::pending;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use draas_jobs::queue::{InstanceJob, SHARED_QUEUE, queue_config, queue_name, shared_backlog};
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use draas_tests::{TestRedis, eventually};
use secrecy::SecretString;
use serde::Deserialize;
use serde_norway::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of a YAML file.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or_else(|| panic!("{path:?} is not a string in {v:?}"))
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// The objects of the kustomize base (files named in kustomization.yaml).
fn base_objects() -> Vec<Value> {
    let dir = deploy_dir().join("k8s");
    let kustomization = &yaml_docs(&dir.join("kustomization.yaml"))[0];
    let resources = at(kustomization, &["resources"]).as_sequence().expect("resources");
    resources.iter().flat_map(|r| yaml_docs(&dir.join(r.as_str().expect("resource path")))).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("selector labels");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The environment a container gets, with values from Secrets replaced by placeholders.
fn container_env(container: &Value) -> Vec<(String, String)> {
    let env = container["env"].as_sequence().cloned().unwrap_or_default();
    env.iter()
        .map(|e| {
            let value = match e["value"].as_str() {
                Some(v) => v.to_owned(),
                None => format!("from-{}", str_at(e, &["valueFrom", "secretKeyRef", "key"])),
            };
            (str_at(e, &["name"]).to_owned(), value)
        })
        .collect()
}

fn settings_for(env: Vec<(String, String)>) -> Settings {
    Settings::load_from(Some(&deploy_dir().join("config")), env).expect("the environment loads as Settings")
}

#[test]
fn every_kubernetes_manifest_is_yaml_of_the_expected_kinds_in_explicit_namespaces() {
    let dir = deploy_dir().join("k8s");
    let mut on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    for f in &on_disk {
        assert!(!yaml_docs(&dir.join(f)).is_empty(), "{f} is empty");
    }
    let kustomization = &yaml_docs(&dir.join("kustomization.yaml"))[0];
    assert_eq!(kustomization["kind"], "Kustomization");
    assert!(kustomization.get("namespace").is_none(), "objects live in two namespaces");
    let listed: BTreeSet<String> = at(kustomization, &["resources"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    on_disk.remove("kustomization.yaml");
    on_disk.remove("keda-scaledobject.yaml");
    assert_eq!(listed, on_disk, "every manifest but the KEDA one is in the base");

    let objects = base_objects();
    let found: BTreeSet<(String, String, String)> = objects
        .iter()
        .map(|o| {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
            (str_at(o, &["kind"]).to_owned(), ns, str_at(o, &["metadata", "name"]).to_owned())
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("Namespace", "", "draas"),
        ("Namespace", "", "drasi-instances"),
        ("Secret", "draas", "draas-redis"),
        ("PersistentVolumeClaim", "draas", "redis-data"),
        ("Deployment", "draas", "redis"),
        ("Service", "draas", "redis"),
        ("Deployment", "draas", "draas-api"),
        ("Service", "draas", "draas-api"),
        ("Deployment", "draas", "draas-worker"),
        ("ServiceAccount", "draas", "draas-worker"),
        ("Role", "drasi-instances", "draas-worker"),
        ("RoleBinding", "drasi-instances", "draas-worker"),
        ("PodDisruptionBudget", "draas", "draas-api"),
        ("PodDisruptionBudget", "draas", "draas-worker"),
    ]
    .into_iter()
    .map(|(k, n, m)| (k.to_owned(), n.to_owned(), m.to_owned()))
    .collect();
    assert_eq!(found, expected);
    for o in &objects {
        assert!(o["apiVersion"].is_string(), "{o:?}");
    }
}

#[test]
fn deployments_services_and_budgets_select_the_pods_they_mean() {
    let objects = base_objects();
    for name in ["draas-api", "draas-worker", "redis"] {
        let d = find(&objects, "Deployment", name);
        let labels = at(d, &["spec", "template", "metadata", "labels"]);
        assert!(labels_match(at(d, &["spec", "selector", "matchLabels"]), labels), "{name} selector");
        let spec = at(d, &["spec", "template", "spec"]);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name} runs as non-root");
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
    }
    for (service, deployment) in [("draas-api", "draas-api"), ("redis", "redis")] {
        let labels = at(find(&objects, "Deployment", deployment), &["spec", "template", "metadata", "labels"]);
        assert!(labels_match(at(find(&objects, "Service", service), &["spec", "selector"]), labels), "{service}");
    }
    for name in ["draas-api", "draas-worker"] {
        let labels = at(find(&objects, "Deployment", name), &["spec", "template", "metadata", "labels"]);
        let pdb = find(&objects, "PodDisruptionBudget", name);
        assert!(labels_match(at(pdb, &["spec", "selector", "matchLabels"]), labels), "{name} budget");
    }
    let api = &at(find(&objects, "Deployment", "draas-api"), &["spec", "template", "spec", "containers"])[0];
    assert_eq!(str_at(api, &["livenessProbe", "httpGet", "path"]), "/healthz");
    assert_eq!(str_at(api, &["readinessProbe", "httpGet", "path"]), "/readyz");
    let redis = &at(find(&objects, "Deployment", "redis"), &["spec", "template", "spec", "containers"])[0];
    let args: Vec<&str> = redis["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--appendonly", "yes"]), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--appendfsync", "everysec"]), "{args:?}");
}

#[test]
fn the_worker_role_grants_only_instance_objects_in_the_instances_namespace() {
    let objects = base_objects();
    let worker = at(find(&objects, "Deployment", "draas-worker"), &["spec", "template", "spec"]);
    let sa = str_at(worker, &["serviceAccountName"]);
    let binding = find(&objects, "RoleBinding", "draas-worker");
    assert_eq!(str_at(binding, &["roleRef", "kind"]), "Role");
    let subject = &binding["subjects"][0];
    assert_eq!((str_at(subject, &["name"]), str_at(subject, &["namespace"])), (sa, "draas"));
    let role = find(&objects, "Role", str_at(binding, &["roleRef", "name"]));
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for group in rule["apiGroups"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                for verb in rule["verbs"].as_sequence().unwrap() {
                    granted.insert(format!(
                        "{}/{}:{}",
                        group.as_str().unwrap(),
                        resource.as_str().unwrap(),
                        verb.as_str().unwrap()
                    ));
                }
            }
        }
    }
    let write = ["get", "list", "create", "patch", "delete"];
    let mut expected: BTreeSet<String> = ["/configmaps", "/secrets", "/services", "apps/deployments"]
        .iter()
        .flat_map(|r| write.iter().map(move |v| format!("{r}:{v}")))
        .collect();
    expected.extend(["/pods:list".to_owned(), "/pods/log:get".to_owned()]);
    // Data claims (kubernetes.data_volume): applied, read back, removed; never listed.
    expected.extend(["get", "create", "patch", "delete"].map(|v| format!("/persistentvolumeclaims:{v}")));
    assert_eq!(granted, expected);
    let api = at(find(&objects, "Deployment", "draas-api"), &["spec", "template", "spec"]);
    assert_eq!(api["automountServiceAccountToken"], false, "the API never calls Kubernetes");
}

#[test]
fn the_manifests_environment_is_the_settings_contract() {
    let objects = base_objects();
    let container =
        |name| at(find(&objects, "Deployment", name), &["spec", "template", "spec", "containers"])[0].clone();
    let api = settings_for(container_env(&container("draas-api")));
    api.require_auth().expect("the API has tokens");
    assert_eq!(api.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(api.default_platform.as_str(), "kubernetes");
    let worker = settings_for(container_env(&container("draas-worker")));
    assert!(worker.redis_url.is_some());
    let secret = find(&objects, "Secret", "draas-redis");
    assert!(secret["stringData"]["url"].is_string(), "draas-redis has url");
}

#[test]
fn the_compose_file_runs_redis_with_aof_and_a_scalable_worker() {
    let compose = &yaml_docs(&deploy_dir().join("compose.yaml"))[0];
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["redis", "api", "worker"]));
    let svc = |n: &str| &compose["services"][n];
    let redis_cmd: Vec<&str> =
        svc("redis")["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(redis_cmd.windows(2).any(|w| w == ["--appendonly", "yes"]), "{redis_cmd:?}");
    assert!(redis_cmd.windows(2).any(|w| w == ["--appendfsync", "everysec"]), "{redis_cmd:?}");
    assert!(svc("redis")["healthcheck"]["test"].is_sequence());
    let api_check = format!("{:?}", svc("api")["healthcheck"]["test"]);
    assert!(api_check.contains("/healthz"), "{api_check}");
    assert_eq!(svc("api")["command"][0], "api");
    assert_eq!(svc("worker")["command"][0], "worker");
    for key in ["container_name", "ports", "hostname"] {
        assert!(svc("worker").get(key).is_none(), "a worker with {key} cannot be scaled");
    }
    for (name, needs_tokens) in [("api", true), ("worker", false)] {
        let env: Vec<(String, String)> = svc(name)["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().unwrap();
                // `${VAR:?message}` is filled in from the caller's environment.
                let v = if v.starts_with("${") { "placeholder" } else { v };
                (k.as_str().unwrap().to_owned(), v.to_owned())
            })
            .collect();
        let s = settings_for(env);
        assert!(s.redis_url.is_some(), "{name} has DRAAS_REDIS_URL");
        assert_eq!(s.require_auth().is_ok(), needs_tokens, "{name}");
    }
}

#[test]
fn the_image_builds_the_locked_binary_and_runs_it_as_the_user_the_manifests_expect() {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "build stage and runtime stage: {stages:?}");
    assert!(dockerfile.contains("cargo build --release --locked -p draas"));
    let user = dockerfile.lines().find_map(|l| l.strip_prefix("USER ")).expect("a USER line");
    let uid: u64 = user.split(':').next().unwrap().parse().expect("a numeric uid");
    assert_ne!(uid, 0);
    assert!(dockerfile.lines().any(|l| l == r#"ENTRYPOINT ["draas"]"#));
    let objects = base_objects();
    for name in ["draas-api", "draas-worker"] {
        let pod = at(find(&objects, "Deployment", name), &["spec", "template", "spec"]);
        assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(uid), "{name}");
    }
}

/// The ScaledObject and the TriggerAuthentication of keda-scaledobject.yaml.
fn scaler() -> (Value, Value) {
    let docs = yaml_docs(&deploy_dir().join("k8s/keda-scaledobject.yaml"));
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).cloned().unwrap_or_else(|| panic!("a {k}"));
    (kind("ScaledObject"), kind("TriggerAuthentication"))
}

#[test]
fn the_scaled_object_scales_the_workers_from_zero_on_the_apis_backlog_with_a_token_the_api_accepts() {
    let (so, auth) = scaler();
    let objects = base_objects();
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(str_at(&so, &["metadata", "namespace"]), "draas");
    let target = find(&objects, "Deployment", str_at(&so, &["spec", "scaleTargetRef", "name"]));
    assert_eq!(
        (str_at(target, &["metadata", "namespace"]), str_at(target, &["metadata", "name"])),
        ("draas", "draas-worker")
    );
    assert_eq!(so["spec"]["minReplicaCount"].as_u64(), Some(0), "the backlog is exact with no worker running");
    let triggers = so["spec"]["triggers"].as_sequence().unwrap();
    assert_eq!(triggers.len(), 1);
    let t = &triggers[0];
    assert_eq!(t["type"], "metrics-api");
    assert_eq!(str_at(t, &["metadata", "authMode"]), "bearer");
    let target_value: u64 = str_at(t, &["metadata", "targetValue"]).parse().expect("targetValue is a number");
    assert!(target_value > 0);

    // The URL is the API's Service, and the path and field are in the API's OpenAPI document.
    let url = reqwest::Url::parse(str_at(t, &["metadata", "url"])).expect("a URL");
    let service = find(&objects, "Service", "draas-api");
    let host =
        format!("{}.{}.svc", str_at(service, &["metadata", "name"]), str_at(service, &["metadata", "namespace"]));
    assert_eq!(url.host_str(), Some(host.as_str()));
    assert_eq!(url.port_or_known_default().map(u64::from), service["spec"]["ports"][0]["port"].as_u64());
    let openapi: serde_json::Value = serde_json::from_str(&draas_api::openapi::json()).unwrap();
    assert!(openapi["paths"][url.path()]["get"].is_object(), "{} is an API route", url.path());
    let field = str_at(t, &["metadata", "valueLocation"]);
    assert_eq!(openapi["components"]["schemas"]["BacklogDto"]["properties"][field]["type"], "integer");

    // The token KEDA sends is a key of the Secret the API takes its tokens from.
    assert_eq!(str_at(t, &["authenticationRef", "name"]), str_at(&auth, &["metadata", "name"]));
    assert_eq!(str_at(&auth, &["metadata", "namespace"]), "draas");
    let secret = &auth["spec"]["secretTargetRef"][0];
    assert_eq!(str_at(secret, &["parameter"]), "token");
    let api_env = at(find(&objects, "Deployment", "draas-api"), &["spec", "template", "spec", "containers"])[0]["env"]
        .as_sequence()
        .unwrap()
        .clone();
    let tokens = api_env.iter().find(|e| e["name"] == "DRAAS_API_TOKENS").expect("DRAAS_API_TOKENS");
    assert_eq!(str_at(tokens, &["valueFrom", "secretKeyRef", "name"]), str_at(secret, &["name"]));
    let setup = std::fs::read_to_string(deploy_dir().join("k8s/kustomization.yaml")).unwrap();
    let key = str_at(secret, &["key"]);
    assert!(setup.contains(&format!("--from-literal={key}=\"$scaler\"")), "the setup creates {key}");
    assert!(setup.contains(",$scaler\""), "the setup makes {key} one of the API tokens");
}

async fn count(redis: &TestRedis, cmd: &str, key: &str) -> u64 {
    redis::cmd(cmd).arg(key).query_async(&mut redis.connection().await).await.expect(cmd)
}

/// Ids a busy worker holds (all `…:inflight:*` sets of the queue).
async fn inflight(redis: &TestRedis, queue: &str) -> u64 {
    let mut c = redis.connection().await;
    let sets: Vec<String> = redis::cmd("KEYS").arg(format!("{queue}:inflight:*")).query_async(&mut c).await.unwrap();
    let mut n = 0;
    for s in sets {
        n += count(redis, "SCARD", &s).await;
    }
    n
}

#[tokio::test]
async fn the_backlog_counts_every_unfinished_shared_job_with_no_worker_and_with_a_busy_one() {
    const JOBS: u64 = 12;
    const CONCURRENCY: usize = 2;
    let redis = TestRedis::start();
    let prefix = Settings::default().key_prefix;
    let store = Store::open(&SecretString::from(redis.url.clone()), &prefix).unwrap();
    let queue = queue_name(store.keys(), SHARED_QUEUE);
    for _ in 0..JOBS {
        draas_tests::sample_job().push(&store, SHARED_QUEUE).await.unwrap();
    }

    // No worker: apalis-redis parks every push in the scheduled ZSET; its list stays empty,
    // which is why a list-length trigger cannot scale from zero. The backlog sees them all.
    assert_eq!(count(&redis, "ZCARD", &format!("{queue}:scheduled")).await, JOBS);
    assert_eq!(count(&redis, "LLEN", &format!("{queue}:active")).await, 0);
    let idle = shared_backlog(&store).await.unwrap();
    assert_eq!((idle.pending(), idle.waiting, idle.running), (JOBS, JOBS, 0));

    // One worker, as `draas worker` configures its shared queue, whose jobs never finish: its
    // first poll moves every due id into the list and takes one batch from it.
    let config = queue_config(store.keys(), SHARED_QUEUE, Duration::from_secs(5), 3).batch_size(CONCURRENCY);
    let backend = RedisStorage::<InstanceJob>::new(store.connection()).with_config(config);
    let worker = WorkerBuilder::new(format!("busy-{}", ulid::Ulid::new()))
        .backend(backend.poll_with_interval(Duration::from_millis(20)))
        .concurrency(CONCURRENCY)
        .build(|_: InstanceJob| async { pending::<Result<(), BoxDynError>>().await });
    let running = tokio::spawn(worker.run());
    let taken = eventually("the worker to take its first batch", Duration::from_secs(10), || async {
        let n = inflight(&redis, &queue).await;
        (n > 0 && count(&redis, "ZCARD", &format!("{queue}:scheduled")).await == 0).then_some(n)
    })
    .await;

    assert_eq!(taken, CONCURRENCY as u64, "the worker holds one batch");
    let busy = shared_backlog(&store).await.unwrap();
    assert_eq!((busy.pending(), busy.waiting, busy.running), (JOBS, JOBS - taken, taken), "each job once");
    assert_eq!(count(&redis, "LLEN", &format!("{queue}:active")).await, busy.waiting);
    assert_eq!(store.queues().depth(SHARED_QUEUE).await.unwrap(), busy.waiting, "admission control counts the waiting");
    running.abort();
}
