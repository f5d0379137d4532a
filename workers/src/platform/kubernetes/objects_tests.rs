//! Golden-file tests of the object builders: `UPDATE_GOLDEN=1 cargo test -p draas-workers`
//! rewrites `workers/tests/golden/*.yaml` from what the builders produce now.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use draas_jobs::domain::model::RuntimeOptions;
use draas_jobs::settings::KubernetesSettings;

use super::*;

fn spec(runtime: RuntimeOptions) -> StartSpec {
    StartSpec {
        instance_id: "01jabcdefghjkmnpqrstvwxyz0".parse().unwrap(),
        yaml: "id: 01jabcdefghjkmnpqrstvwxyz0\nhost: 0.0.0.0\nport: 8080\nlogLevel: info\npersistConfig: false\nsources: []\nqueries: []\nreactions: []\n".into(),
        spec_hash: "0123456789abcdef0123456789abcdef".into(),
        host: "0.0.0.0".into(),
        port: 8080,
        runtime,
        listeners: Vec::new(),
        plugins: Vec::new(),
        runs_as: None,
        superseded: Default::default(),
        secrets: Vec::new(),
    }
}

fn test_deployment() -> crate::platform::Deployment {
    crate::platform::Deployment { name: "draas".into(), id: "01jtestdeployment000000000".into() }
}

fn layout() -> Layout {
    Layout::new(KubernetesSettings::default(), &test_deployment())
}

/// Compare `value` as YAML with the golden file `name`, or rewrite it with `UPDATE_GOLDEN=1`.
fn golden(name: &str, value: &impl serde::Serialize) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let actual = serde_norway::to_string(value).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(actual == expected, "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it):\n{actual}");
}

#[test]
fn the_config_map_holds_the_exact_yaml_under_the_config_file_name() {
    golden("configmap.yaml", &config_map(&spec(RuntimeOptions::default()), &layout()));
}

#[test]
fn the_deployment_runs_one_probed_replica_with_the_config_mounted_read_only() {
    golden("deployment.yaml", &deployment(&spec(RuntimeOptions::default()), &layout(), 1));
}

#[test]
fn runtime_options_override_the_image_and_limits_and_cap_the_requests() {
    let runtime = RuntimeOptions {
        image: Some("registry.example/drasi:1.2".into()),
        memory: Some("64Mi".into()),
        cpus: Some(0.05),
    };
    golden("deployment-runtime.yaml", &deployment(&spec(runtime), &layout(), 0));
}

#[test]
fn the_service_selects_the_pod_on_the_config_port() {
    golden("service.yaml", &service(&spec(RuntimeOptions::default()), &layout()));
}

#[test]
fn a_stopped_deployment_differs_only_in_its_replica_count() {
    let (s, l) = (spec(RuntimeOptions::default()), layout());
    let mut stopped = deployment(&s, &l, 0);
    assert_eq!(stopped.spec.as_ref().unwrap().replicas, Some(0));
    stopped.spec.as_mut().unwrap().replicas = Some(1);
    assert_eq!(stopped, deployment(&s, &l, 1));
}

#[test]
fn every_object_carries_the_labels_and_the_spec_hash() {
    let (s, l) = (spec(RuntimeOptions::default()), layout());
    let d = deployment(&s, &l, 1);
    let metas = [config_map(&s, &l).metadata, service(&s, &l).metadata, d.metadata.clone()];
    for m in metas.iter().chain(d.spec.as_ref().unwrap().template.metadata.as_ref()) {
        let labels = m.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "draas");
        assert_eq!(labels[LABEL_NAME], "drasi-server");
        assert_eq!(labels[LABEL_INSTANCE], "01jabcdefghjkmnpqrstvwxyz0");
        assert_eq!(labels[LABEL_DEPLOYMENT], "draas");
        assert_eq!(m.annotations.as_ref().unwrap()[ANNOTATION_SPEC_HASH], "0123456789abcdef0123456789abcdef");
    }
    assert_eq!(d.metadata.name.as_deref(), Some("draas-01jabcdefghjkmnpqrstvwxyz0"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("drasi-instances"));
}

#[test]
fn secrets_go_in_a_secret_the_container_reads_whole_and_nowhere_else() {
    let mut with = spec(RuntimeOptions::default());
    with.secrets = vec![("PG_PASSWORD".into(), secrecy::SecretString::from("hunter2"))];
    let object = secret(&with, &layout()).expect("a Secret");
    assert_eq!(object.metadata.name.as_deref(), Some("draas-01jabcdefghjkmnpqrstvwxyz0"));
    assert_eq!(object.data.as_ref().expect("data")["PG_PASSWORD"].0, b"hunter2");
    assert_eq!(object.metadata.labels, Some(layout().labels("01jabcdefghjkmnpqrstvwxyz0")));
    let d = deployment(&with, &layout(), 1);
    let pod = d.spec.expect("spec").template.spec.expect("pod");
    let from = pod.containers[0].env_from.clone().expect("envFrom");
    assert_eq!(from[0].secret_ref.as_ref().map(|r| r.name.as_str()), Some("draas-01jabcdefghjkmnpqrstvwxyz0"));
    assert!(!serde_json::to_string(&pod).expect("json").contains("hunter2"), "the value is in the Secret only");
    let without = spec(RuntimeOptions::default());
    assert!(secret(&without, &layout()).is_none());
    assert!(
        deployment(&without, &layout(), 1).spec.expect("spec").template.spec.expect("pod").containers[0]
            .env_from
            .is_none()
    );
}

#[test]
fn deployment_labels_are_label_safe_whatever_the_key_prefix() {
    assert_eq!(deployment_label("fleet-a"), "fleet-a");
    for prefix in ["a:b", "-x", "x_", &"y".repeat(64)] {
        let l = deployment_label(prefix);
        assert!(l.len() <= 63 && l.starts_with('x') && l.bytes().all(|b| b.is_ascii_alphanumeric()), "{l}");
    }
    assert_ne!(deployment_label("a:b"), deployment_label("a:c"));
}

#[test]
fn the_probe_endpoint_is_the_service_by_default_and_a_template_otherwise() {
    let id = "abc".parse().unwrap();
    assert_eq!(layout().endpoint(&id, 8080), "http://draas-abc.drasi-instances.svc:8080");
    let settings = KubernetesSettings {
        endpoint: "http://127.0.0.1:9000/{namespace}/{id}".into(),
        ..KubernetesSettings::default()
    };
    assert_eq!(Layout::new(settings, &test_deployment()).endpoint(&id, 1), "http://127.0.0.1:9000/drasi-instances/abc");
}

#[test]
fn cpu_quantities_are_read_in_millicores() {
    assert_eq!(cpu_millis("250m"), Some(250));
    assert_eq!(cpu_millis("0.5"), Some(500));
    assert_eq!(cpu_millis("2"), Some(2000));
    assert_eq!(cpu_millis("lots"), None);
}

#[test]
fn a_plugins_volume_from_the_settings_is_mounted_read_only_without_a_plugins_init_container() {
    let mut settings = KubernetesSettings::default();
    settings.plugins.volume = Some(serde_json::json!({"persistentVolumeClaim": {"claimName": "drasi-plugins"}}));
    check_plugins(&settings.plugins).unwrap();
    let d = deployment(&spec(RuntimeOptions::default()), &Layout::new(settings, &test_deployment()), 1);
    let pod = d.spec.unwrap().template.spec.unwrap();
    let init: Vec<&str> = pod.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["config"], "only the config copy");
    let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "plugins").unwrap();
    assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "drasi-plugins");
    let c = &pod.containers[0];
    assert!(c.args.as_ref().unwrap().windows(2).any(|w| w == ["--plugins-dir", "/app/plugins"]));
}

#[test]
fn a_plugins_volume_that_is_not_a_volume_source_is_refused() {
    for bad in [
        serde_json::json!("pvc"),
        serde_json::json!({}),
        serde_json::json!({"name": "x", "emptyDir": {}}),
        serde_json::json!({"persistentVolumeClaim": {"claimName": 7}}),
    ] {
        let plugins = KubePlugins { volume: Some(bad.clone()), ..KubePlugins::default() };
        let e = check_plugins(&plugins).unwrap_err();
        assert!(e.message.contains("kubernetes.plugins.volume"), "{bad}: {}", e.message);
    }
}

#[test]
fn the_server_reads_a_writable_copy_of_the_config_map() {
    let d = deployment(&spec(RuntimeOptions::default()), &layout(), 1);
    let pod = d.spec.unwrap().template.spec.unwrap();
    let copy = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(copy.command.as_ref().unwrap(), &["cp", "/draas-config/server.yaml", "/app/config/server.yaml"]);
    assert_eq!(copy.image, pod.containers[0].image, "the server's own image");
    let mount = pod.containers[0].volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "config").unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/app/config", None), "writable");
    let volumes = pod.volumes.unwrap();
    let config = volumes.iter().find(|v| v.name == "config").unwrap();
    assert!(config.empty_dir.is_some() && config.config_map.is_none());
    assert!(volumes.iter().any(|v| v.name == "config-source" && v.config_map.is_some()));
}

#[test]
fn a_data_volume_is_a_claim_of_the_instance_mounted_at_the_data_path() {
    let mut settings = KubernetesSettings::default();
    assert!(
        data_claim(&spec(RuntimeOptions::default()), &Layout::new(settings.clone(), &test_deployment())).is_none(),
        "off by default"
    );
    settings.data_volume = Some(draas_jobs::settings::DataVolume { size: "5Gi".into(), ..Default::default() });
    let layout = Layout::new(settings, &test_deployment());
    let claim = data_claim(&spec(RuntimeOptions::default()), &layout).unwrap();
    golden("data-claim.yaml", &claim);
    let pod = deployment(&spec(RuntimeOptions::default()), &layout, 1).spec.unwrap().template.spec.unwrap();
    let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "data").unwrap();
    assert_eq!(Some(volume.persistent_volume_claim.unwrap().claim_name), claim.metadata.name);
    let mount = pod.containers[0].volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "data").unwrap();
    assert_eq!(mount.mount_path, "/app/data");
}
