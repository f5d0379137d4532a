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
        superseded: Default::default(),
    }
}

fn layout() -> Layout {
    Layout::new(KubernetesSettings::default(), "draas")
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
    assert_eq!(Layout::new(settings, "draas").endpoint(&id, 1), "http://127.0.0.1:9000/drasi-instances/abc");
}

#[test]
fn cpu_quantities_are_read_in_millicores() {
    assert_eq!(cpu_millis("250m"), Some(250));
    assert_eq!(cpu_millis("0.5"), Some(500));
    assert_eq!(cpu_millis("2"), Some(2000));
    assert_eq!(cpu_millis("lots"), None);
}
