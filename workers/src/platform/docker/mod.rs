//! The docker platform: drasi-server in a container of one Docker engine (bollard), reached
//! by any worker.
//!
//! One container per instance, named `draas-<instance id>` and labelled `draas.managed=true`,
//! `draas.instance`, `draas.spec-hash` and `draas.deployment` (the key prefix, so deployments
//! sharing an engine never take each other's containers). The rendered YAML is copied into the
//! created container before it starts (`PUT /containers/{id}/archive`), as a root-owned 0444
//! file at `docker.config_path`: that works the same for a local and a remote engine, no host
//! file has to be readable by the container's user, and nothing is left on the worker's disk.
//! The container's port is published on the host port allocated from the engine's pool; its
//! restart policy is `no` (the reconciler decides), and it stops on SIGINT.

pub mod engine;
pub mod image;
pub mod spec;

use std::time::{Duration, Instant};

use bollard::body_full;
use bollard::models::{ContainerInspectResponse, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StopContainerOptions, UploadToContainerOptions,
};
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::RuntimeFacts;
use draas_jobs::settings::DockerSettings;
use futures::StreamExt;

use self::engine::{Engine, is_not_found};
use super::{Deployment, ErrorCode, Inspection, Managed, Platform, PlatformError, PortPool, StartSpec};

/// How much of a container's log goes into an error.
const LOG_TAIL_BYTES: usize = 4096;

/// Containers of one Docker engine.
pub struct DockerPlatform {
    engine: Engine,
    settings: DockerSettings,
    /// This deployment, labelled on its containers and volumes.
    deployment: Deployment,
    /// Host draas reaches published ports at.
    advertise: String,
    /// Have drasi-server verify plugin signatures.
    verify_plugins: bool,
    http: reqwest::Client,
}

impl DockerPlatform {
    /// The platform of the engine the settings name (no I/O: the engine is contacted on use).
    pub fn new(settings: DockerSettings, deployment: Deployment, verify_plugins: bool) -> Result<Self, PlatformError> {
        Ok(Self {
            verify_plugins,
            engine: Engine::connect(&settings)?,
            advertise: spec::advertise_host(&settings),
            settings,
            deployment,
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_default(),
        })
    }

    /// Start (or adopt) the container of `spec`.
    async fn start_container(&self, spec: &StartSpec) -> Result<RuntimeFacts, PlatformError> {
        let name = spec::container_name(&spec.instance_id);
        if let Some(c) = self.inspect_container(&name).await? {
            let seen = spec::inspection(&c, &self.advertise);
            if seen.alive && spec.runs(seen.spec_hash.as_deref()) && self.healthy(seen.endpoint.as_deref()).await {
                tracing::info!(instance = %spec.instance_id, container = %name, "adopted running container");
                return Ok(self.facts(spec, &c));
            }
            self.remove_container(&name).await?;
        }
        let image = spec.runtime.image.clone().unwrap_or_else(|| self.settings.image.clone());
        image::ensure(&self.engine, &image, self.settings.image_policy).await?;
        let body = spec::container_body(spec, &image, &self.settings, &self.deployment, self.verify_plugins)?;
        let docker = self.engine.client().await?;
        if !self.settings.data_path.is_empty() {
            // Labelled like the container; creating a volume that exists is a no-op.
            let labels = spec::deployment_labels(&self.deployment, &spec.instance_id);
            let volume = VolumeCreateRequest {
                name: Some(spec::volume_name(&spec.instance_id)),
                labels: Some(labels),
                ..Default::default()
            };
            docker.create_volume(volume).await.map_err(|e| self.engine.classify(e))?;
        }
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        docker.create_container(Some(options), body).await.map_err(|e| self.engine.classify(e))?;
        self.upload_config(&name, &spec.yaml).await?;
        if let Some(dir) = self.settings.plugins_dir.as_deref()
            && let Some(archive) = spec::plugins_archive(dir, &spec.plugins)?
        {
            self.upload(&name, &self.settings.plugins_path, archive).await?;
        }
        docker.start_container(&name, None).await.map_err(|e| self.engine.classify(e))?;
        tracing::info!(instance = %spec.instance_id, container = %name, %image, port = spec.port, "container started");
        let c = self.wait_healthy(spec, &name).await?;
        Ok(self.facts(spec, &c))
    }

    /// Unpack `archive` in `dir` of the container `name` (a volume: the root filesystem is
    /// read-only).
    async fn upload(&self, name: &str, dir: &str, archive: Vec<u8>) -> Result<(), PlatformError> {
        let upload = UploadToContainerOptions { path: dir.to_owned(), ..Default::default() };
        let docker = self.engine.client().await?;
        docker
            .upload_to_container(name, Some(upload), body_full(archive.into()))
            .await
            .map_err(|e| self.engine.classify(e))
    }

    /// Give the container `name` the configuration `yaml`.
    async fn upload_config(&self, name: &str, yaml: &str) -> Result<(), PlatformError> {
        let path = &self.settings.config_path;
        self.upload(name, spec::config_dir(path), spec::config_archive(path, yaml)?).await
    }

    fn endpoint(&self, port: u16) -> String {
        format!("http://{}:{port}", self.advertise)
    }

    fn facts(&self, spec: &StartSpec, c: &ContainerInspectResponse) -> RuntimeFacts {
        let port = spec::published_port(c).unwrap_or(spec.port);
        RuntimeFacts {
            listeners: spec.listeners.iter().map(|(name, p)| (name.clone(), self.endpoint(*p))).collect(),
            container_id: c.id.clone(),
            container_name: Some(spec::container_name(&spec.instance_id)),
            image: c.config.as_ref().and_then(|c| c.image.clone()),
            port: Some(port),
            endpoint: Some(self.endpoint(port)),
            ..RuntimeFacts::default()
        }
    }

    /// Wait for `/health` on the published port; fail with the log tail when the container
    /// exits first (`crashed_on_start`) or the deadline passes (`health_timeout`, container
    /// stopped).
    async fn wait_healthy(&self, spec: &StartSpec, name: &str) -> Result<ContainerInspectResponse, PlatformError> {
        let timeout = self.settings.health_timeout_secs;
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let endpoint = self.endpoint(spec.port);
        let started = Instant::now();
        loop {
            let c = self.inspect_container(name).await?;
            let Some(c) = c else {
                return Err(PlatformError::new(
                    ErrorCode::CrashedOnStart,
                    "the container was removed while it started",
                ));
            };
            let seen = spec::inspection(&c, &self.advertise);
            if !seen.alive {
                let how = seen.message.unwrap_or_default();
                return Err(PlatformError::new(
                    ErrorCode::CrashedOnStart,
                    format!("drasi-server {how} before it became healthy"),
                )
                .with_detail(self.tail(name).await));
            }
            if self.healthy(Some(&endpoint)).await {
                return Ok(c);
            }
            if Instant::now() > deadline {
                let tail = self.tail(name).await;
                let _ = self.stop_container(&spec.instance_id).await;
                return Err(PlatformError::new(
                    ErrorCode::HealthTimeout,
                    format!("drasi-server did not answer /health within {timeout} s"),
                )
                .with_detail(tail));
            }
            // Often while a server usually comes up, less after.
            let fast = started.elapsed() < Duration::from_secs(2);
            spec.pause(Duration::from_millis(if fast { 10 } else { 100 })).await?;
        }
    }

    async fn healthy(&self, endpoint: Option<&str>) -> bool {
        let Some(endpoint) = endpoint else { return false };
        matches!(self.http.get(format!("{endpoint}/health")).send().await, Ok(r) if r.status().is_success())
    }

    /// The container, or `None` when the engine has none of that name.
    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerInspectResponse>, PlatformError> {
        let docker = self.engine.client().await?;
        match docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.engine.classify(e)),
        }
    }

    /// Remove a container by force (gone already is fine).
    async fn remove_container(&self, name: &str) -> Result<(), PlatformError> {
        let docker = self.engine.client().await?;
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match docker.remove_container(name, Some(options)).await {
            Err(e) if !is_not_found(&e) => Err(self.engine.classify(e)),
            _ => Ok(()),
        }
    }

    /// Stop the instance's container: SIGINT, SIGKILL after the grace period.
    async fn stop_container(&self, id: &InstanceId) -> Result<(), PlatformError> {
        let docker = self.engine.client().await?;
        let t = i32::try_from(self.settings.stop_grace_secs).unwrap_or(i32::MAX);
        let options = StopContainerOptions { t: Some(t), signal: None };
        match docker.stop_container(&spec::container_name(id), Some(options)).await {
            Err(e) if !is_not_found(&e) => Err(self.engine.classify(e)),
            _ => Ok(()),
        }
    }

    /// The last lines the container wrote (stdout and stderr).
    async fn tail(&self, name: &str) -> String {
        let Ok(docker) = self.engine.client().await else { return String::new() };
        let options = LogsOptions { stdout: true, stderr: true, tail: "200".into(), ..Default::default() };
        let chunks: Vec<_> = docker.logs(name, Some(options)).collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flatten().flat_map(|c| c.into_bytes()).collect();
        let text = draas_jobs::domain::text::plain(&String::from_utf8_lossy(&bytes));
        let start = text.len().saturating_sub(LOG_TAIL_BYTES);
        let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text[start..].to_owned()
    }
}

#[async_trait::async_trait]
impl Platform for DockerPlatform {
    fn kind(&self) -> draas_jobs::domain::model::Platform {
        draas_jobs::domain::model::Platform::Docker
    }

    /// One pool per deployment for its docker instances, shared by every worker (the name
    /// cannot be a node id, so it never mixes with a node's process ports).
    fn port_pool(&self, _node: &str) -> Option<PortPool> {
        Some(PortPool {
            name: "docker:engine".into(),
            range: (self.settings.port_range_start, self.settings.port_range_end),
        })
    }

    async fn reachable(&self) -> Result<(), PlatformError> {
        self.engine.ping().await
    }

    fn catalog(&self) -> Option<draas_jobs::domain::plugins::Catalog> {
        draas_jobs::domain::plugins::scan(self.settings.plugins_dir.as_deref()?)
    }

    async fn start(&self, spec: &StartSpec) -> Result<RuntimeFacts, PlatformError> {
        self.start_container(spec).await
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError> {
        self.stop_container(id).await
    }

    async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError> {
        self.remove_container(&spec::container_name(id)).await?;
        let docker = self.engine.client().await?;
        match docker.remove_volume(&spec::volume_name(id), None::<RemoveVolumeOptions>).await {
            Err(e) if !is_not_found(&e) => Err(self.engine.classify(e)),
            _ => Ok(()),
        }
    }

    /// The container's file gets the new configuration, as writable as at its start.
    async fn reconfigured(&self, spec: &StartSpec) -> Result<(), PlatformError> {
        self.upload_config(&spec::container_name(&spec.instance_id), &spec.yaml).await
    }

    async fn inspect(&self, id: &InstanceId, _facts: &RuntimeFacts) -> Inspection {
        match self.inspect_container(&spec::container_name(id)).await {
            Ok(Some(c)) => spec::inspection(&c, &self.advertise),
            Ok(None) => Inspection { message: Some("the container is missing".into()), ..Default::default() },
            Err(e) => Inspection { message: Some(e.message), ..Default::default() },
        }
    }

    async fn managed(&self) -> Result<Vec<Managed>, PlatformError> {
        let docker = self.engine.client().await?;
        let options = ListContainersOptions {
            all: true,
            filters: Some(spec::deployment_filters(&self.deployment)),
            ..Default::default()
        };
        let list = docker.list_containers(Some(options)).await.map_err(|e| self.engine.classify(e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                Some(Managed {
                    instance: labels.get(spec::INSTANCE).cloned().unwrap_or_default(),
                    spec_hash: labels.get(spec::SPEC_HASH).cloned(),
                    handle: c.id?,
                })
            })
            .collect())
    }

    async fn remove(&self, m: &Managed) -> Result<(), PlatformError> {
        self.remove_container(&m.handle).await
    }

    async fn log_tail(&self, id: &InstanceId) -> String {
        self.tail(&spec::container_name(id)).await
    }

    /// The container's logs with the engine's timestamps, the cursor; from `since` the engine
    /// sends whole seconds, so the lines of that second already shipped are dropped here.
    async fn logs(&self, id: &InstanceId, since: Option<String>) -> Option<super::LogStream> {
        let docker = self.engine.client().await.ok()?;
        let after = since.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: after.map_or(0, |t| i32::try_from(t.timestamp()).unwrap_or(0)),
            tail: if after.is_some() { "all".into() } else { "200".into() },
            ..Default::default()
        };
        let chunks = docker.logs(&spec::container_name(id), Some(options));
        Some(
            chunks
                .take_while(|c| std::future::ready(c.is_ok()))
                .flat_map(move |chunk| {
                    let text = chunk.map(|c| String::from_utf8_lossy(&c.into_bytes()).into_owned()).unwrap_or_default();
                    let items: Vec<super::LogItem> =
                        text.lines().filter_map(|l| super::LogItem::timestamped(l, after)).collect();
                    futures::stream::iter(items)
                })
                .boxed(),
        )
    }

    /// Follow the engine's `die` events of this deployment's containers; reconnect (from the
    /// last event seen) whenever the stream ends or the engine goes away.
    async fn watch_exits(&self, tx: tokio::sync::mpsc::Sender<String>) {
        if !self.settings.follow_events {
            return;
        }
        let mut since = chrono::Utc::now().timestamp();
        loop {
            if let Ok(docker) = self.engine.client().await {
                let mut filters = spec::deployment_filters(&self.deployment);
                filters.insert("type".into(), vec!["container".into()]);
                filters.insert("event".into(), vec!["die".into()]);
                let options = EventsOptions { since: Some(since.to_string()), filters: Some(filters), until: None };
                let mut events = docker.events(Some(options));
                while let Some(Ok(event)) = events.next().await {
                    since = since.max(event.time.unwrap_or(since));
                    let Some(id) = event.actor.and_then(|a| a.attributes?.get(spec::INSTANCE).cloned()) else {
                        continue;
                    };
                    if tx.send(id).await.is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
