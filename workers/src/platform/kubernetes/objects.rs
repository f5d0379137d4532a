//! The Kubernetes objects of one instance — a ConfigMap with drasi-server's YAML, a Secret with
//! the instance's secrets (when it has any), a Deployment of one replica and a Service — built
//! from its start spec and the settings. Pure functions,
//! checked against golden files (`workers/tests/golden/`).
//!
//! Only `v1` ConfigMaps, Secrets, Services and Pods and `apps/v1` Deployments are used, with fields that
//! Kubernetes 1.20 serves.

use std::collections::BTreeMap;

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::{RuntimeOptions, parse_memory};
use draas_jobs::settings::{DataVolume, KubePlugins, KubeResources, KubernetesSettings};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::platform::StartSpec;
use crate::platform::error::{ErrorCode, PlatformError};

/// The one field manager of every write draas makes.
pub const MANAGER: &str = "draas";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_INSTANCE: &str = "draas.io/instance";
/// Which draas deployment (its key prefix) owns the object, so two never take each other's.
pub const LABEL_DEPLOYMENT: &str = "draas.io/deployment";
/// The deployment's id (not in selectors, which cannot change: objects made before ids keep
/// theirs, and are never taken for this deployment's by [`Layout::managed_selector`]).
pub const LABEL_DEPLOYMENT_ID: &str = "draas.io/deployment-id";
pub const ANNOTATION_SPEC_HASH: &str = "draas.io/spec-hash";
/// Name of the container, and of its port.
pub const CONTAINER: &str = "drasi-server";
const PORT_NAME: &str = "http";
const HEALTH_PATH: &str = "/health";
/// The `emptyDir` drasi-server reads (and may write) its configuration in.
const CONFIG_VOLUME: &str = "config";
/// The `emptyDir` at `/tmp`: the root filesystem is read-only.
const TMP_VOLUME: &str = "tmp";
/// The ConfigMap, mounted in the init container that copies it into [`CONFIG_VOLUME`].
const CONFIG_SOURCE_VOLUME: &str = "config-source";
/// Where the ConfigMap is mounted in that init container.
const CONFIG_STAGING: &str = "/draas-config";
const PLUGINS_VOLUME: &str = "plugins";
const DATA_VOLUME: &str = "data";
/// Where the init container copies plugins to (the `emptyDir` mounted in it).
const PLUGINS_STAGING: &str = "/draas-plugins";

/// Where an instance's objects go and what they look like beyond its spec.
#[derive(Debug, Clone)]
pub struct Layout {
    pub settings: KubernetesSettings,
    /// Value of the deployment label (a label-safe form of the key prefix).
    pub deployment: String,
    /// The deployment's id.
    pub deployment_id: String,
    /// Have drasi-server verify plugin signatures.
    pub verify_plugins: bool,
}

impl Layout {
    /// The layout of `deployment`.
    pub fn new(settings: KubernetesSettings, deployment: &crate::platform::Deployment) -> Self {
        Self {
            settings,
            deployment: deployment_label(&deployment.name),
            deployment_id: deployment_label(&deployment.id),
            verify_plugins: false,
        }
    }

    /// The instance's namespace.
    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// Labels of every object of the instance.
    pub fn labels(&self, id: &str) -> BTreeMap<String, String> {
        let mut l = self.selector(id);
        l.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
        l.insert(LABEL_DEPLOYMENT_ID.into(), self.deployment_id.clone());
        l
    }

    /// Labels that pick the instance's pods (Deployment selector, Service selector).
    pub fn selector(&self, id: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), CONTAINER.to_owned()),
            (LABEL_INSTANCE.to_owned(), id.to_owned()),
            (LABEL_DEPLOYMENT.to_owned(), self.deployment.clone()),
        ])
    }

    /// Label selector of the instance's objects and pods.
    pub fn instance_selector(&self, id: &str) -> String {
        format!("{},{LABEL_MANAGED_BY}={MANAGER}", to_selector(&self.selector(id)))
    }

    /// Label selector of everything this deployment of draas manages.
    pub fn managed_selector(&self) -> String {
        format!(
            "{LABEL_MANAGED_BY}={MANAGER},{LABEL_DEPLOYMENT}={},{LABEL_DEPLOYMENT_ID}={}",
            self.deployment, self.deployment_id
        )
    }

    /// Where the reconciler reaches drasi-server with `probe_via: service`.
    pub fn endpoint(&self, id: &InstanceId, port: u16) -> String {
        self.settings
            .endpoint
            .replace("{name}", &name(id))
            .replace("{namespace}", self.namespace())
            .replace("{port}", &port.to_string())
            .replace("{id}", id.as_str())
    }

    fn meta(&self, spec: &StartSpec) -> ObjectMeta {
        ObjectMeta {
            name: Some(name(&spec.instance_id)),
            namespace: Some(self.namespace().to_owned()),
            labels: Some(self.labels(spec.instance_id.as_str())),
            annotations: Some(BTreeMap::from([(ANNOTATION_SPEC_HASH.to_owned(), spec.shown_hash().to_owned())])),
            ..ObjectMeta::default()
        }
    }

    /// Directory the ConfigMap is mounted on, and the file's name in it (checked by `Settings`).
    fn config_file(&self) -> (&str, &str) {
        self.settings.config_path.rsplit_once('/').unwrap_or(("/config", "server.yaml"))
    }
}

/// Name of every object of an instance.
pub fn name(id: &InstanceId) -> String {
    format!("draas-{id}")
}

fn to_selector(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A label value naming the deployment: the key prefix when it is a valid label value, else
/// `x` and a hash of it (prefixes may hold `:`, labels may not).
pub fn deployment_label(prefix: &str) -> String {
    let b = prefix.as_bytes();
    let valid = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if valid { prefix.to_owned() } else { format!("x{}", draas_jobs::domain::render::spec_hash(prefix)) }
}

/// The ConfigMap holding drasi-server's configuration file.
pub fn config_map(spec: &StartSpec, layout: &Layout) -> ConfigMap {
    let (_, file) = layout.config_file();
    ConfigMap {
        metadata: layout.meta(spec),
        data: Some(BTreeMap::from([(file.to_owned(), spec.yaml.clone())])),
        ..ConfigMap::default()
    }
}

/// The Secret holding the instance's secrets, which the server's container gets as its
/// environment (`envFrom`); `None` when the instance has none.
pub fn secret(spec: &StartSpec, layout: &Layout) -> Option<Secret> {
    if spec.secrets.is_empty() {
        return None;
    }
    let data = spec
        .secrets
        .iter()
        .map(|(name, value)| {
            let bytes = secrecy::ExposeSecret::expose_secret(value).as_bytes().to_vec();
            (name.clone(), k8s_openapi::ByteString(bytes))
        })
        .collect();
    Some(Secret { metadata: layout.meta(spec), type_: Some("Opaque".into()), data: Some(data), ..Secret::default() })
}

/// The named ports of the pod: the server's (`http`) and one per listening component
/// (`c-<port>`).
fn ports(spec: &StartSpec) -> Vec<(String, u16)> {
    std::iter::once((PORT_NAME.to_owned(), spec.port))
        .chain(spec.listeners.iter().map(|(_, p)| (format!("c-{p}"), *p)))
        .collect()
}

/// The Service in front of the instance's pod.
pub fn service(spec: &StartSpec, layout: &Layout) -> Service {
    Service {
        metadata: layout.meta(spec),
        spec: Some(ServiceSpec {
            type_: Some(layout.settings.service_type.as_str().to_owned()),
            selector: Some(layout.selector(spec.instance_id.as_str())),
            ports: Some(
                ports(spec)
                    .into_iter()
                    .map(|(name, port)| ServicePort {
                        name: Some(name.clone()),
                        port: i32::from(port),
                        target_port: Some(IntOrString::String(name)),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Deployment running drasi-server with `replicas` (1 to run, 0 when stopped). The spec hash
/// is on the pod template too, so a new configuration rolls out a new pod.
pub fn deployment(spec: &StartSpec, layout: &Layout, replicas: i32) -> Deployment {
    let meta = layout.meta(spec);
    let id = spec.instance_id.as_str();
    Deployment {
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(layout.selector(id)), ..LabelSelector::default() },
            // Two servers of one instance would both react to every change: never overlap them.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), ..DeploymentStrategy::default() }),
            revision_history_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: meta.labels.clone(),
                    annotations: meta.annotations.clone(),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(spec, layout)),
            },
            ..DeploymentSpec::default()
        }),
        metadata: meta,
        ..Deployment::default()
    }
}

fn pod_spec(spec: &StartSpec, layout: &Layout) -> PodSpec {
    let (_, file) = layout.config_file();
    let mut volumes = vec![
        Volume {
            name: CONFIG_SOURCE_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name(&spec.instance_id),
                items: Some(vec![KeyToPath { key: file.to_owned(), path: file.to_owned(), mode: None }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume { name: CONFIG_VOLUME.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
        Volume { name: TMP_VOLUME.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    ];
    volumes.extend(plugins_volume(&layout.settings.plugins));
    if layout.settings.data_volume.is_some() {
        volumes.push(Volume {
            name: DATA_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data_claim_name(&name(&spec.instance_id)),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    let mut init = vec![config_init(spec, layout)];
    init.extend(plugins_init(&layout.settings.plugins));
    PodSpec {
        containers: vec![container(spec, layout)],
        init_containers: Some(init),
        volumes: Some(volumes),
        // drasi-server needs no Kubernetes API access, and Service variables in its environment
        // could shadow the `${VAR}` references of its configuration.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(pod_security(&layout.settings)),
        ..PodSpec::default()
    }
}

/// The init container copying the ConfigMap's file into the `emptyDir` drasi-server reads it
/// from: drasi-server takes changes through its API only when its file is writable, and a
/// ConfigMap volume never is. It runs the instance's image (as the same user as the server).
fn config_init(spec: &StartSpec, layout: &Layout) -> Container {
    let (dir, file) = layout.config_file();
    let command = if layout.settings.config_copy_command.is_empty() {
        vec!["cp".to_owned(), format!("{CONFIG_STAGING}/{file}"), layout.settings.config_path.clone()]
    } else {
        layout.settings.config_copy_command.clone()
    };
    Container {
        name: "config".into(),
        image: Some(spec.runtime.image.clone().unwrap_or_else(|| layout.settings.image.clone())),
        command: Some(command),
        volume_mounts: Some(vec![
            VolumeMount {
                name: CONFIG_SOURCE_VOLUME.into(),
                mount_path: CONFIG_STAGING.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount { name: CONFIG_VOLUME.into(), mount_path: dir.to_owned(), ..VolumeMount::default() },
        ]),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

/// No privilege escalation, no capabilities, nothing written outside the volumes.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        read_only_root_filesystem: Some(true),
        ..SecurityContext::default()
    }
}

/// The pod's: never root, the runtime's default seccomp profile, and the volumes writable by
/// the user it runs as.
fn pod_security(settings: &KubernetesSettings) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: settings.run_as_user,
        run_as_group: settings.run_as_user,
        fs_group: settings.run_as_user,
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

/// Name of the data claim of the instance whose objects are named `object`.
pub fn data_claim_name(object: &str) -> String {
    format!("{object}-data")
}

/// The PersistentVolumeClaim of drasi-server's data directory, when the settings ask for one.
pub fn data_claim(spec: &StartSpec, layout: &Layout) -> Option<PersistentVolumeClaim> {
    let DataVolume { size, storage_class, .. } = layout.settings.data_volume.as_ref()?;
    let mut metadata = layout.meta(spec);
    metadata.name = Some(data_claim_name(&name(&spec.instance_id)));
    // The hash names what ran; a claim outlives configurations.
    metadata.annotations = None;
    Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

fn container(spec: &StartSpec, layout: &Layout) -> Container {
    let health = |initial, period| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.into()),
            port: IntOrString::String(PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    Container {
        name: CONTAINER.into(),
        image: Some(spec.runtime.image.clone().unwrap_or_else(|| layout.settings.image.clone())),
        args: Some(args(layout)),
        ports: Some(
            ports(spec)
                .into_iter()
                .map(|(name, port)| ContainerPort {
                    name: Some(name),
                    container_port: i32::from(port),
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        readiness_probe: Some(health(1, 5)),
        liveness_probe: Some(health(10, 10)),
        resources: Some(resources(&spec.runtime, &layout.settings)),
        volume_mounts: Some(mounts(layout)),
        // drasi-server shuts down cleanly on SIGINT but dies at once on SIGTERM, the only
        // signal Kubernetes 1.20 sends: ask it for SIGINT first. Without a shell in the image
        // the hook fails and the kubelet goes on with SIGTERM.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["/bin/sh".into(), "-c".into(), "kill -INT 1; sleep 2".into()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(restricted()),
        env_from: (!spec.secrets.is_empty()).then(|| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: name(&spec.instance_id), optional: Some(false) }),
                ..EnvFromSource::default()
            }]
        }),
        ..Container::default()
    }
}

/// drasi-server's arguments: the configuration, the plugins when the settings give any, and
/// `--skip-verification` unless plugins are verified.
fn args(layout: &Layout) -> Vec<String> {
    let mut args = vec!["--config".to_owned(), layout.settings.config_path.clone()];
    if layout.settings.plugins.configured() {
        args.extend(["--plugins-dir".to_owned(), layout.settings.plugins.mount_path.clone()]);
    }
    if !layout.verify_plugins {
        args.push("--skip-verification".to_owned());
    }
    args
}

fn mounts(layout: &Layout) -> Vec<VolumeMount> {
    let mut mounts = vec![VolumeMount {
        name: CONFIG_VOLUME.into(),
        mount_path: layout.config_file().0.to_owned(),
        ..VolumeMount::default()
    }];
    mounts.push(VolumeMount { name: TMP_VOLUME.into(), mount_path: "/tmp".into(), ..VolumeMount::default() });
    if let Some(data) = &layout.settings.data_volume {
        mounts.push(VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: data.mount_path.clone(),
            ..VolumeMount::default()
        });
    }
    if layout.settings.plugins.configured() {
        mounts.push(VolumeMount {
            name: PLUGINS_VOLUME.into(),
            mount_path: layout.settings.plugins.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    mounts
}

/// Refuse plugin settings Kubernetes would refuse: a `volume` that is not a volume source.
pub fn check_plugins(p: &KubePlugins) -> Result<(), PlatformError> {
    let Some(source) = &p.volume else { return Ok(()) };
    let invalid = |why: String| {
        PlatformError::new(ErrorCode::KubeInvalid, format!("kubernetes.plugins.volume is not a volume source: {why}"))
    };
    let serde_json::Value::Object(fields) = source else { return Err(invalid("expected a map".into())) };
    if fields.len() != 1 || fields.contains_key("name") {
        return Err(invalid(
            "expected exactly one volume type, e.g. {persistentVolumeClaim: {claimName: plugins}}".into(),
        ));
    }
    let mut v = source.clone();
    v["name"] = serde_json::Value::from(PLUGINS_VOLUME);
    serde_json::from_value::<Volume>(v).map(drop).map_err(|e| invalid(e.to_string()))
}

/// The plugins volume: the one the settings give (read-only), or an `emptyDir` the init
/// container fills from the plugins image.
fn plugins_volume(p: &KubePlugins) -> Option<Volume> {
    if let Some(source) = &p.volume {
        let mut v = source.clone();
        v["name"] = serde_json::Value::from(PLUGINS_VOLUME);
        // Checked by `Settings`: a volume source that does not parse never gets here.
        return serde_json::from_value(v).ok();
    }
    p.image.as_ref().map(|_| Volume {
        name: PLUGINS_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    })
}

/// The init container copying the plugins image's files into the `emptyDir`.
fn plugins_init(p: &KubePlugins) -> Option<Container> {
    let image = p.image.as_ref().filter(|_| p.volume.is_none())?;
    Some(Container {
        name: "plugins".into(),
        image: Some(image.clone()),
        command: Some(copy_command(p)),
        volume_mounts: Some(vec![VolumeMount {
            name: PLUGINS_VOLUME.into(),
            mount_path: PLUGINS_STAGING.into(),
            ..VolumeMount::default()
        }]),
        security_context: Some(restricted()),
        ..Container::default()
    })
}

/// The init container's command: the settings', or `cp -r <image_path>/. <staging>/`.
fn copy_command(p: &KubePlugins) -> Vec<String> {
    if !p.copy_command.is_empty() {
        return p.copy_command.clone();
    }
    let from = format!("{}/.", p.image_path.trim_end_matches('/'));
    ["cp".to_owned(), "-r".to_owned(), from, format!("{PLUGINS_STAGING}/")].to_vec()
}

/// Requests and limits: the instance's runtime options over the settings; a request above its
/// limit (which Kubernetes refuses) is lowered to the limit.
pub fn resources(runtime: &RuntimeOptions, settings: &KubernetesSettings) -> ResourceRequirements {
    let limits = KubeResources {
        cpu: runtime.cpus.map(|c| format!("{}m", (c * 1000.0).round() as u64)).or_else(|| settings.limits.cpu.clone()),
        memory: runtime.memory.clone().or_else(|| settings.limits.memory.clone()),
    };
    let requests = KubeResources {
        cpu: capped(settings.requests.cpu.as_deref(), limits.cpu.as_deref(), cpu_millis),
        memory: capped(settings.requests.memory.as_deref(), limits.memory.as_deref(), parse_memory),
    };
    ResourceRequirements {
        requests: quantities(&requests),
        limits: quantities(&limits),
        ..ResourceRequirements::default()
    }
}

fn capped(request: Option<&str>, limit: Option<&str>, parse: fn(&str) -> Option<u64>) -> Option<String> {
    match (request, limit) {
        (Some(r), Some(l)) if matches!((parse(r), parse(l)), (Some(a), Some(b)) if a > b) => Some(l.to_owned()),
        (r, _) => r.map(str::to_owned),
    }
}

fn quantities(r: &KubeResources) -> Option<BTreeMap<String, Quantity>> {
    let map: BTreeMap<String, Quantity> = [("cpu", &r.cpu), ("memory", &r.memory)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), Quantity(v.clone()))))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// Millicores of a CPU quantity (`250m`, `0.5`, `2`).
pub fn cpu_millis(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().filter(|c| c.is_finite() && *c >= 0.0).map(|c| (c * 1000.0).round() as u64),
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
