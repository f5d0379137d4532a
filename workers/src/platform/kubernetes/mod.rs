//! The Kubernetes platform: each instance is a ConfigMap (drasi-server's YAML), a Secret (its
//! secrets, the server's environment through `envFrom`; only while it has any), a Deployment
//! of one replica and a Service, all named `draas-<id>` in one namespace and written with
//! server-side apply under the field manager `draas`.
//!
//! Start applies the objects and waits until the Deployment reports its replica available;
//! stop scales the Deployment to 0 and keeps the rest; delete removes them all and waits until
//! they are gone. Any worker may act: nothing is kept outside the cluster.

pub mod client;
mod inspect;
pub mod objects;
pub mod status;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::RuntimeFacts;
use draas_jobs::settings::KubernetesSettings;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use self::client::{api_error, is_not_found};
use self::objects::{ANNOTATION_SPEC_HASH, CONTAINER, LABEL_INSTANCE, Layout, MANAGER, name};
use self::status::Rollout;
use super::{ErrorCode, Inspection, Managed, Platform, PlatformError, StartSpec};

/// Pause between two looks at a rollout or a deletion.
const POLL: Duration = Duration::from_millis(250);

/// Log lines of drasi-server attached to a failed start.
const LOG_TAIL_LINES: i64 = 40;

/// drasi-server instances as Kubernetes objects.
#[derive(Clone)]
pub struct KubernetesPlatform {
    client: Client,
    layout: Layout,
}

impl KubernetesPlatform {
    /// The platform of the cluster the settings name, marking `deployment`'s objects.
    pub async fn connect(
        settings: &KubernetesSettings,
        deployment: &crate::platform::Deployment,
        verify_plugins: bool,
    ) -> Result<Self, PlatformError> {
        objects::check_plugins(&settings.plugins)?;
        let client = client::connect(settings).await?;
        let mut layout = Layout::new(settings.clone(), deployment);
        layout.verify_plugins = verify_plugins;
        Ok(Self { client, layout })
    }

    fn settings(&self) -> &KubernetesSettings {
        &self.layout.settings
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), self.layout.namespace())
    }

    /// Server-side apply of one object under draas' field manager.
    async fn apply<K>(&self, obj: &K, force: bool) -> Result<(), PlatformError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let name = obj.name_any();
        let mut params = PatchParams::apply(MANAGER);
        params.force = force;
        self.api::<K>()
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .map(|_| ())
            .map_err(|e| api_error(&format!("apply {} {name}", K::kind(&K::DynamicType::default())), e))
    }

    /// Delete one object; gone already is fine.
    async fn delete_one<K>(&self, name: &str) -> Result<(), PlatformError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        // Background: the garbage collector removes the Deployment's ReplicaSets and pods; with
        // foreground deletion the Deployment would stay until they are gone.
        match self.api::<K>().delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_error(&format!("delete {} {name}", K::kind(&K::DynamicType::default())), e)),
        }
    }

    async fn get<K>(&self, name: &str) -> Result<Option<K>, PlatformError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| api_error(&format!("read {} {name}", K::kind(&K::DynamicType::default())), e))
    }

    /// The instance's pods.
    async fn pods(&self, id: &str) -> Result<Vec<Pod>, PlatformError> {
        let params = ListParams::default().labels(&self.layout.instance_selector(id));
        let list = self.api::<Pod>().list(&params).await.map_err(|e| api_error("list pods", e))?;
        Ok(list.items)
    }

    /// Wait until the Deployment reports its replica of `spec` available, or fails.
    async fn wait_available(&self, spec: &StartSpec) -> Result<RuntimeFacts, PlatformError> {
        let name = name(&spec.instance_id);
        let timeout = Duration::from_secs(self.settings().start_timeout_secs);
        let deadline = Instant::now() + timeout;
        loop {
            let d: Deployment = self
                .get(&name)
                .await?
                .ok_or_else(|| PlatformError::new(ErrorCode::KubeNotFound, format!("Deployment {name} vanished")))?;
            let pods = self.pods(spec.instance_id.as_str()).await?;
            match status::rollout(&d, &pods, spec.shown_hash()) {
                Rollout::Available => return Ok(self.facts(spec, &pods)),
                Rollout::Failed(e) => return Err(e.with_detail(self.tail(&pods).await)),
                Rollout::Pending(why) if Instant::now() >= deadline => {
                    return Err(PlatformError::new(
                        ErrorCode::StartTimeout,
                        format!("the Deployment was not available within {} s: {why}", timeout.as_secs()),
                    )
                    .with_detail(self.tail(&pods).await));
                }
                Rollout::Pending(_) => spec.pause(POLL).await?,
            }
        }
    }

    fn facts(&self, spec: &StartSpec, pods: &[Pod]) -> RuntimeFacts {
        let name = name(&spec.instance_id);
        let ready = pods.iter().find(|p| {
            p.annotations().get(ANNOTATION_SPEC_HASH).map(String::as_str) == Some(spec.shown_hash())
                && p.metadata.deletion_timestamp.is_none()
        });
        let host = format!("{name}.{}.svc", self.layout.namespace());
        RuntimeFacts {
            listeners: spec.listeners.iter().map(|(c, p)| (c.clone(), format!("http://{host}:{p}"))).collect(),
            namespace: Some(self.layout.namespace().to_owned()),
            deployment: Some(name.clone()),
            service: Some(name),
            port: Some(spec.port),
            endpoint: Some(self.layout.endpoint(&spec.instance_id, spec.port)),
            pod_name: ready.map(ResourceExt::name_any),
            ..RuntimeFacts::default()
        }
    }

    /// The last lines of drasi-server in the newest of `pods` (its previous run when it
    /// crashed), or nothing.
    async fn tail(&self, pods: &[Pod]) -> String {
        let Some(p) = pods.iter().max_by_key(|p| p.creation_timestamp()) else { return String::new() };
        for previous in [false, true] {
            let params = LogParams {
                container: Some(CONTAINER.into()),
                tail_lines: Some(LOG_TAIL_LINES),
                previous,
                ..LogParams::default()
            };
            if let Ok(text) = self.api::<Pod>().logs(&p.name_any(), &params).await
                && !text.trim().is_empty()
            {
                return text;
            }
        }
        String::new()
    }

    /// Wait until `check` says the instance's objects are as wanted, or the delete deadline.
    async fn wait_until<F, Fut>(&self, what: &str, mut check: F) -> Result<(), PlatformError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, PlatformError>>,
    {
        let timeout = Duration::from_secs(self.settings().delete_timeout_secs);
        let deadline = Instant::now() + timeout;
        while !check().await? {
            if Instant::now() >= deadline {
                return Err(PlatformError::new(
                    ErrorCode::KubeTimeout,
                    format!("{what} within {} s", timeout.as_secs()),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    async fn delete_all(&self, name: &str) -> Result<(), PlatformError> {
        self.delete_one::<Deployment>(name).await?;
        self.delete_one::<Service>(name).await?;
        self.delete_one::<ConfigMap>(name).await?;
        self.delete_one::<Secret>(name).await?;
        if self.settings().data_volume.is_some() {
            self.delete_one::<PersistentVolumeClaim>(&objects::data_claim_name(name)).await?;
        }
        Ok(())
    }

    /// Names and marks of every object of one kind this deployment of draas manages.
    async fn list_managed<K>(&self, into: &mut BTreeMap<String, Managed>) -> Result<(), PlatformError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        let params = ListParams::default().labels(&self.layout.managed_selector());
        let list = self
            .api::<K>()
            .list_metadata(&params)
            .await
            .map_err(|e| api_error(&format!("list {}s", K::kind(&K::DynamicType::default())), e))?;
        for o in list.items {
            let handle = o.name_any();
            let entry = into.entry(handle.clone()).or_insert_with(|| Managed {
                instance: o.labels().get(LABEL_INSTANCE).cloned().unwrap_or_default(),
                spec_hash: None,
                handle,
            });
            if entry.spec_hash.is_none() {
                entry.spec_hash = o.annotations().get(ANNOTATION_SPEC_HASH).cloned();
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Platform for KubernetesPlatform {
    fn kind(&self) -> draas_jobs::domain::model::Platform {
        draas_jobs::domain::model::Platform::Kubernetes
    }

    fn port_pool(&self, _node: &str) -> Option<super::PortPool> {
        None
    }

    fn catalog(&self) -> Option<draas_jobs::domain::plugins::Catalog> {
        let kinds = &self.settings().plugins.kinds;
        (!kinds.is_empty()).then(|| draas_jobs::domain::plugins::Catalog { kinds: kinds.iter().cloned().collect() })
    }

    async fn start(&self, spec: &StartSpec) -> Result<RuntimeFacts, PlatformError> {
        // The pod mounts the ConfigMap: it goes first. The Deployment is applied with force:
        // `stop` writes its replica count with a merge patch (an update, not an apply, so a
        // different owner of that field), and a hand-made `kubectl scale` or edit owns fields
        // too; draas' desired state is the truth for these objects, so it takes them back.
        self.apply(&objects::config_map(spec, &self.layout), false).await?;
        match objects::secret(spec, &self.layout) {
            Some(secret) => self.apply(&secret, false).await?,
            None => self.delete_one::<Secret>(&name(&spec.instance_id)).await?,
        }
        if let Some(claim) = objects::data_claim(spec, &self.layout) {
            self.apply(&claim, false).await?;
        }
        self.apply(&objects::service(spec, &self.layout), false).await?;
        self.apply(&objects::deployment(spec, &self.layout, 1), true).await?;
        self.wait_available(spec).await
    }

    /// The ConfigMap gets the new configuration (the running pod keeps its copy; a new pod
    /// starts with what draas applied). The Deployment is left alone: changing it would roll
    /// out a new pod.
    async fn reconfigured(&self, spec: &StartSpec) -> Result<(), PlatformError> {
        self.apply(&objects::config_map(spec, &self.layout), false).await
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError> {
        let name = name(id);
        // A merge patch of the replica count alone (an update, still as `draas`): an apply
        // would have to restate the whole Deployment, which `stop` does not know.
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
        let scale = Patch::Merge(json!({"spec": {"replicas": 0}}));
        match self.api::<Deployment>().patch(&name, &params, &scale).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(api_error(&format!("scale Deployment {name} to 0"), e)),
            Ok(_) => {}
        }
        self.wait_until(&format!("the pods of {name} did not stop"), || async {
            let d: Option<Deployment> = self.get(&name).await?;
            Ok(d.is_none_or(|d| d.status.and_then(|s| s.replicas).unwrap_or(0) == 0))
        })
        .await
    }

    async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError> {
        let name = name(id);
        self.delete_all(&name).await?;
        self.wait_until(&format!("the objects {name} were not gone"), || async {
            let (d, s, c, k) = tokio::try_join!(
                self.get::<Deployment>(&name),
                self.get::<Service>(&name),
                self.get::<ConfigMap>(&name),
                self.get::<Secret>(&name)
            )?;
            Ok(d.is_none() && s.is_none() && c.is_none() && k.is_none())
        })
        .await
    }

    async fn inspect(&self, id: &InstanceId, _facts: &RuntimeFacts) -> Inspection {
        // An API that does not answer says nothing about the pods: count it as an unhealthy
        // probe (the reconciler acts only after several in a row), not as a crash.
        self.look(id).await.unwrap_or_else(|e| Inspection {
            alive: true,
            healthy: Some(false),
            message: Some(format!("{}: {}", e.code, e.message)),
            ..Inspection::default()
        })
    }

    async fn managed(&self) -> Result<Vec<Managed>, PlatformError> {
        let mut found = BTreeMap::new();
        self.list_managed::<Deployment>(&mut found).await?;
        self.list_managed::<ConfigMap>(&mut found).await?;
        self.list_managed::<Service>(&mut found).await?;
        self.list_managed::<Secret>(&mut found).await?;
        Ok(found.into_values().collect())
    }

    async fn remove(&self, m: &Managed) -> Result<(), PlatformError> {
        if !m.handle.starts_with("draas-") {
            return Err(PlatformError::new(
                ErrorCode::InvalidHandle,
                format!("'{}' is not a draas object name", m.handle),
            ));
        }
        self.delete_all(&m.handle).await
    }

    async fn log_tail(&self, id: &InstanceId) -> String {
        match self.pods(id.as_str()).await {
            Ok(pods) => self.tail(&pods).await,
            Err(_) => String::new(),
        }
    }

    /// The newest pod's logs through the API server (`pods/log`), with its timestamps as the
    /// cursor; from `since` the lines at or before it are dropped.
    async fn logs(&self, id: &InstanceId, since: Option<String>) -> Option<super::LogStream> {
        use futures::{AsyncBufReadExt, StreamExt};

        let pods = self.pods(id.as_str()).await.ok()?;
        let pod = pods.iter().max_by_key(|p| p.creation_timestamp())?.name_any();
        let after = since.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        let params = LogParams {
            container: Some(CONTAINER.into()),
            follow: true,
            timestamps: true,
            since_time: after.and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).ok()),
            tail_lines: after.is_none().then_some(LOG_TAIL_LINES),
            ..LogParams::default()
        };
        let lines = self.api::<Pod>().log_stream(&pod, &params).await.ok()?.lines();
        Some(
            lines
                .take_while(|l| std::future::ready(l.is_ok()))
                .filter_map(move |l| std::future::ready(l.ok().and_then(|l| super::LogItem::timestamped(&l, after))))
                .boxed(),
        )
    }
}
