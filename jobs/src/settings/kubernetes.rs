//! Settings of the Kubernetes platform (`kubernetes` section).

use std::path::PathBuf;

use serde::Deserialize;

/// Kubernetes platform: each instance is a ConfigMap, a Deployment and a Service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KubernetesSettings {
    /// Run Kubernetes jobs on this worker.
    pub enabled: bool,
    /// Kubeconfig file (`DRAAS_KUBECONFIG`); none: the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (none: its current context).
    pub context: Option<String>,
    /// Namespace of the instances' objects (`DRAAS_KUBE_NAMESPACE`).
    pub namespace: String,
    /// drasi-server image of instances that name none.
    pub image: String,
    /// Where the configuration file is mounted (read-only) in the container.
    pub config_path: String,
    /// Type of each instance's Service.
    pub service_type: ServiceType,
    /// Time allowed for a started Deployment to report its replica available.
    pub start_timeout_secs: u64,
    /// Time allowed for deleted objects to be gone.
    pub delete_timeout_secs: u64,
    /// Container resource requests.
    pub requests: KubeResources,
    /// Container resource limits; an instance's runtime options override them.
    pub limits: KubeResources,
    /// How the reconciler learns whether drasi-server is healthy.
    pub probe_via: ProbeVia,
    /// URL the reconciler probes with `probe_via: service`, with `{name}`, `{namespace}`,
    /// `{port}` and `{id}` filled in.
    pub endpoint: String,
    /// Where the pods' plugins come from (nothing on the nodes is needed).
    pub plugins: KubePlugins,
    /// The init container's command copying the ConfigMap's file (mounted at
    /// `/draas-config`) to where drasi-server reads it, in an `emptyDir` it may write (its API
    /// is read-only otherwise). Empty: `cp /draas-config/<file> <config_path>`; it runs in the
    /// instance's image, which must then have `cp`.
    pub config_copy_command: Vec<String>,
    /// A PersistentVolumeClaim per instance for drasi-server's data directory (indexes, WAL),
    /// kept across new pods and removed with the instance. None (the default): the data lives
    /// and dies with the pod.
    pub data_volume: Option<DataVolume>,
    /// User (and group, and fsGroup) the pod runs as. Pods always run with `runAsNonRoot`,
    /// the runtime's default seccomp profile, no privilege escalation, no capabilities and a
    /// read-only root filesystem (with an `emptyDir` at `/tmp`); unset: the image's own user,
    /// which must then not be root.
    pub run_as_user: Option<i64>,
}

/// The data volume of Kubernetes instances.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct DataVolume {
    /// The claim's storage request.
    pub size: String,
    /// Its storage class (None: the cluster's default).
    pub storage_class: Option<String>,
    /// Where it is mounted in drasi-server's container (its `./data`).
    pub mount_path: String,
}

impl Default for DataVolume {
    fn default() -> Self {
        Self { size: "1Gi".into(), storage_class: None, mount_path: "/app/data".into() }
    }
}

/// The plugins of Kubernetes instances: copied from an image by an init container into an
/// `emptyDir`, or mounted from a volume; either way at `mount_path`, passed as `--plugins-dir`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct KubePlugins {
    /// An image holding the plugin files under `image_path`; an init container copies them.
    pub image: Option<String>,
    /// Where the files are in `image`.
    pub image_path: String,
    /// The init container's command; empty: `cp -r <image_path>/. /draas-plugins/` (the
    /// image must then have `cp`), the `emptyDir` being mounted at `/draas-plugins` in it.
    pub copy_command: Vec<String>,
    /// Instead of an image: a volume source as Kubernetes writes it, e.g.
    /// `{persistentVolumeClaim: {claimName: drasi-plugins}}`, mounted read-only.
    pub volume: Option<serde_json::Value>,
    /// Where the plugins are in drasi-server's container.
    pub mount_path: String,
    /// What the image or volume provides (`type/kind`, e.g. `source/postgres`): the catalog
    /// configurations are checked against (the worker cannot look inside them).
    pub kinds: Vec<String>,
}

impl Default for KubePlugins {
    fn default() -> Self {
        Self {
            image: None,
            image_path: "/plugins".into(),
            copy_command: Vec::new(),
            volume: None,
            mount_path: "/app/plugins".into(),
            kinds: Vec::new(),
        }
    }
}

impl KubePlugins {
    /// Are plugins given to the pods at all?
    pub fn configured(&self) -> bool {
        self.image.is_some() || self.volume.is_some()
    }
}

/// CPU and memory quantities in Kubernetes notation (`250m`, `512Mi`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct KubeResources {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// Type of an instance's Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// How the reconciler learns whether a Kubernetes instance is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProbeVia {
    /// Trust the kubelet's readiness probe on `/health`: healthy while the Deployment has an
    /// available replica. Works wherever the worker runs.
    #[default]
    Readiness,
    /// `GET /health` through the instance's Service (`endpoint`): the worker must be able to
    /// reach Services, e.g. run in the cluster.
    Service,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            kubeconfig: None,
            context: None,
            namespace: "drasi-instances".into(),
            image: "ghcr.io/drasi-project/drasi-server:latest".into(),
            config_path: "/app/config/server.yaml".into(),
            service_type: ServiceType::ClusterIP,
            start_timeout_secs: 180,
            delete_timeout_secs: 60,
            requests: KubeResources { cpu: Some("100m".into()), memory: Some("128Mi".into()) },
            limits: KubeResources { cpu: None, memory: Some("1Gi".into()) },
            probe_via: ProbeVia::Readiness,
            endpoint: "http://{name}.{namespace}.svc:{port}".into(),
            plugins: KubePlugins::default(),
            config_copy_command: Vec::new(),
            data_volume: None,
            run_as_user: Some(65532),
        }
    }
}

impl KubernetesSettings {
    /// Names and durations Kubernetes would refuse, refused at start-up instead.
    pub(super) fn check(&self) -> Result<(), String> {
        if !crate::domain::ids::is_dns_label(&self.namespace, 63) {
            return Err(format!("kubernetes.namespace '{}' is not a Kubernetes namespace name", self.namespace));
        }
        if self.start_timeout_secs == 0 || self.delete_timeout_secs == 0 {
            return Err("kubernetes start and delete timeouts must be at least 1 s".into());
        }
        // The ConfigMap is mounted over the file's directory, which must not be `/`.
        let dir = self.config_path.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
        if !self.config_path.starts_with('/') || self.config_path.ends_with('/') || dir.is_empty() {
            return Err(format!(
                "kubernetes.config_path '{}' must be an absolute file path below a directory",
                self.config_path
            ));
        }
        Ok(())
    }
}
