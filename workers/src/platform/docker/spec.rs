//! What draas asks of the engine for one instance, and what it reads back: the container
//! body (labels, published port, limits, restart policy, stop signal), the config archive,
//! and the mapping from engine state to an [`Inspection`]. Pure functions, no engine calls.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, HealthConfig, HostConfig,
    Mount, MountType, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::Exit;
use draas_jobs::settings::DockerSettings;

use crate::platform::{Deployment, ErrorCode, Inspection, PlatformError, StartSpec};

/// Label every draas container carries.
pub const MANAGED: &str = "draas.managed";
/// Label naming the instance.
pub const INSTANCE: &str = "draas.instance";
/// Label with the spec hash of what runs.
pub const SPEC_HASH: &str = "draas.spec-hash";
/// Label naming the deployment (key prefix).
pub const DEPLOYMENT: &str = "draas.deployment";
/// Label with the deployment's id, so deployments sharing an engine keep apart even when they
/// share a name.
pub const DEPLOYMENT_ID: &str = "draas.deployment-id";
/// Label naming the server's own container port among the published ones (its listening
/// components are published too).
pub const SERVER_PORT: &str = "draas.port";

/// The container's name on the engine.
pub fn container_name(id: &InstanceId) -> String {
    format!("draas-{id}")
}

/// The named volume of an instance's data directory.
pub fn volume_name(id: &InstanceId) -> String {
    format!("draas-{id}-data")
}

/// The labels marking an object of `deployment` (with the instance's, `instance`).
pub fn deployment_labels(deployment: &Deployment, instance: &InstanceId) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_owned(), "true".to_owned()),
        (INSTANCE.to_owned(), instance.to_string()),
        (DEPLOYMENT.to_owned(), deployment.name.clone()),
        (DEPLOYMENT_ID.to_owned(), deployment.id.clone()),
    ])
}

/// The label filters that find this deployment's containers.
pub fn deployment_filters(deployment: &Deployment) -> HashMap<String, Vec<String>> {
    let labels = vec![
        format!("{MANAGED}=true"),
        format!("{DEPLOYMENT}={}", deployment.name),
        format!("{DEPLOYMENT_ID}={}", deployment.id),
    ];
    HashMap::from([("label".to_owned(), labels)])
}

/// The container of `spec`: image, labels, the config path on the command line, the port
/// published on the allocated host port, limits, no restart policy (the reconciler decides),
/// SIGINT to stop (drasi-server's clean shutdown), and the image's own health check off (it
/// probes a fixed port; draas probes the published one itself).
pub fn container_body(
    spec: &StartSpec,
    image: &str,
    settings: &DockerSettings,
    deployment: &Deployment,
    verify_plugins: bool,
) -> Result<ContainerCreateBody, PlatformError> {
    let mut labels = deployment_labels(deployment, &spec.instance_id);
    labels.insert(SPEC_HASH.to_owned(), spec.spec_hash.clone());
    labels.insert(SERVER_PORT.to_owned(), spec.port.to_string());
    // The server's port and those of its listening components, each published on the same
    // host port (the one allocated; the configuration inside names it).
    let ports: Vec<u16> = std::iter::once(spec.port).chain(spec.listeners.iter().map(|(_, p)| *p)).collect();
    let binding = |p: u16| PortBinding { host_ip: Some(settings.host_ip.clone()), host_port: Some(p.to_string()) };
    let bindings = ports.iter().map(|p| (format!("{p}/tcp"), Some(vec![binding(*p)]))).collect();
    let mut cmd = vec!["--config".to_owned(), settings.config_path.clone()];
    if settings.plugins_dir.is_some() {
        cmd.extend(["--plugins-dir".to_owned(), settings.plugins_path.clone()]);
    }
    if !verify_plugins {
        cmd.push("--skip-verification".to_owned());
    }
    // The root filesystem is read-only: what the server reads or may write lives in volumes
    // (anonymous ones go with the container), scratch space in a tmpfs.
    let volume = |source: Option<String>, target: &str| Mount {
        typ: Some(MountType::VOLUME),
        source,
        target: Some(target.to_owned()),
        ..Default::default()
    };
    let mut mounts = vec![volume(None, config_dir(&settings.config_path))];
    if settings.plugins_dir.is_some() {
        mounts.push(volume(None, &settings.plugins_path));
    }
    if !settings.data_path.is_empty() {
        mounts.push(volume(Some(volume_name(&spec.instance_id)), &settings.data_path));
    }
    let host_config = HostConfig {
        port_bindings: Some(bindings),
        mounts: Some(mounts),
        restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
        memory: memory_limit(spec)?,
        nano_cpus: spec.runtime.cpus.map(|c| (c * 1e9).round() as i64),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,size=64m".to_owned())])),
        pids_limit: Some(settings.pids_limit),
        ..Default::default()
    };
    // The instance's secrets, where drasi-server resolves `${NAME}` (the image's own
    // environment aside, nothing else: the worker's never reaches a container).
    let env = spec
        .secrets
        .iter()
        .map(|(name, value)| format!("{name}={}", secrecy::ExposeSecret::expose_secret(value)))
        .collect::<Vec<_>>();
    Ok(ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd),
        env: (!env.is_empty()).then_some(env),
        labels: Some(labels),
        exposed_ports: Some(ports.iter().map(|p| format!("{p}/tcp")).collect()),
        stop_signal: Some("SIGINT".to_owned()),
        stop_timeout: i64::try_from(settings.stop_grace_secs).ok(),
        healthcheck: Some(HealthConfig { test: Some(vec!["NONE".to_owned()]), ..Default::default() }),
        user: settings.user.clone(),
        host_config: Some(host_config),
        ..Default::default()
    })
}

fn memory_limit(spec: &StartSpec) -> Result<Option<i64>, PlatformError> {
    let Some(q) = spec.runtime.memory.as_deref() else { return Ok(None) };
    spec.runtime
        .memory_bytes()
        .and_then(|b| i64::try_from(b).ok())
        .map(Some)
        .ok_or_else(|| PlatformError::new(ErrorCode::DockerRejected, format!("memory limit '{q}' is not a quantity")))
}

/// The directory of the configuration file (a volume of its own in the container).
pub fn config_dir(config_path: &str) -> &str {
    match config_path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// A tar archive of the YAML, to unpack in [`config_dir`]: one file named as `config_path`'s,
/// owned by root and writable by all (0666): drasi-server answers changes through its API
/// only when its file is writable (it does not write it back: draas renders
/// `persistConfig: false`, and draas' desired configuration stays the truth), whichever user
/// the image runs it as.
pub fn config_archive(config_path: &str, yaml: &str) -> Result<Vec<u8>, PlatformError> {
    let name = config_path.rsplit('/').next().unwrap_or(config_path);
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, name, yaml.as_bytes(), 0o666).map_err(archive_error)?;
    builder.into_inner().map_err(archive_error)
}

/// A tar archive of the plugin files of `dir` that `needed` names, and the directory's
/// `plugins.lock` (0555), to unpack in the plugins directory; None when there are none.
pub fn plugins_archive(dir: &std::path::Path, needed: &[String]) -> Result<Option<Vec<u8>>, PlatformError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut any = false;
    for entry in std::fs::read_dir(dir).map_err(archive_error)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = draas_jobs::domain::plugins::from_file_name(&name).is_some_and(|p| needed.contains(&p));
        if !wanted && name != "plugins.lock" {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(archive_error)?;
        append(&mut builder, &name, &bytes, 0o555).map_err(archive_error)?;
        any = true;
    }
    any.then(|| builder.into_inner()).transpose().map_err(archive_error)
}

fn archive_error(e: std::io::Error) -> PlatformError {
    PlatformError::new(ErrorCode::IoError, format!("cannot build the config archive: {e}")).caused_by(e)
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_path(path.trim_start_matches('/'))?;
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(chrono::Utc::now().timestamp().max(0).unsigned_abs());
    header.set_cksum();
    builder.append(&header, bytes)
}

/// The engine's view of a container as an [`Inspection`]; `advertise` is the host its
/// published port is reached at.
pub fn inspection(c: &ContainerInspectResponse, advertise: &str) -> Inspection {
    let state = c.state.clone().unwrap_or_default();
    let alive = state.running == Some(true) && state.restarting != Some(true) && state.paused != Some(true);
    let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
    let exited = state.status == Some(ContainerStateStatusEnum::EXITED) && state.restarting != Some(true);
    Inspection {
        alive,
        spec_hash: labels.and_then(|l| l.get(SPEC_HASH)).cloned(),
        message: (!alive).then(|| describe(&state)),
        exit: (!alive && exited)
            .then(|| state.exit_code.and_then(|c| i32::try_from(c).ok()))
            .flatten()
            .map(|code| Exit::Code { code }),
        endpoint: published_port(c).map(|p| format!("http://{}:{p}", url_host(advertise))),
        healthy: None,
    }
}

/// How a container that is not running stands: `exited with code N` (with the OOM flag),
/// `restarting`, `paused`, `created, never started`.
pub fn describe(state: &ContainerState) -> String {
    let code = state.exit_code.unwrap_or_default();
    match state.status {
        _ if state.restarting == Some(true) => "restarting".into(),
        Some(ContainerStateStatusEnum::PAUSED) => "paused".into(),
        Some(ContainerStateStatusEnum::CREATED) => "created, never started".into(),
        Some(ContainerStateStatusEnum::REMOVING) => "being removed".into(),
        _ if state.oom_killed == Some(true) => format!("exited with code {code} (OOM-killed)"),
        _ => format!("exited with code {code}"),
    }
}

/// The host port the server's own port is published on: the one its `draas.port` label names
/// (a container of an older draas without the label publishes only that one).
pub fn published_port(c: &ContainerInspectResponse) -> Option<u16> {
    let ports = c.network_settings.as_ref()?.ports.as_ref()?;
    let server = c.config.as_ref().and_then(|c| c.labels.as_ref()?.get(SERVER_PORT)).map(|p| format!("{p}/tcp"));
    let host_port =
        |b: &Option<Vec<PortBinding>>| b.as_ref()?.iter().find_map(|b| b.host_port.as_deref()?.parse().ok());
    match server {
        Some(key) => ports.get(&key).and_then(host_port),
        None => ports.iter().filter(|(k, _)| k.ends_with("/tcp")).find_map(|(_, b)| host_port(b)),
    }
}

/// Where draas reaches published ports: the setting, else `host_ip` unless it is a wildcard,
/// else the engine's own host (tcp endpoints), else loopback.
pub fn advertise_host(settings: &DockerSettings) -> String {
    if let Some(h) = settings.advertise_host.as_deref().filter(|h| !h.is_empty()) {
        return h.to_owned();
    }
    match settings.host_ip.as_str() {
        "" | "0.0.0.0" | "::" | "[::]" => engine_host(&settings.endpoint).unwrap_or_else(|| "127.0.0.1".to_owned()),
        h => h.to_owned(),
    }
}

/// The host of a `tcp://`, `http://` or `https://` endpoint.
fn engine_host(endpoint: &str) -> Option<String> {
    let rest = ["tcp://", "http://", "https://"].iter().find_map(|p| endpoint.strip_prefix(p))?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() }
}

/// The reference to pull: the image with `:latest` when it names no tag or digest (an
/// untagged pull would fetch every tag).
pub fn pull_reference(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    if name.contains(':') || name.contains('@') { image.to_owned() } else { format!("{image}:latest") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bollard::models::{ContainerConfig, NetworkSettings};
    use draas_jobs::domain::model::RuntimeOptions;

    fn spec(runtime: RuntimeOptions) -> StartSpec {
        StartSpec {
            instance_id: "01jabcdefghjkmnpqrstvwxyz0".parse().unwrap(),
            yaml: "port: 9101\n".into(),
            spec_hash: "abc123".into(),
            host: "0.0.0.0".into(),
            port: 9101,
            runtime,
            listeners: Vec::new(),
            plugins: Vec::new(),
            runs_as: None,
            superseded: Default::default(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn the_container_body_carries_labels_port_limits_and_no_restart_policy() {
        let runtime = RuntimeOptions { image: None, memory: Some("512Mi".into()), cpus: Some(0.5) };
        let fleet = Deployment { name: "fleet".into(), id: "01jfleet".into() };
        let body = container_body(&spec(runtime), "img:1", &DockerSettings::default(), &fleet, false).unwrap();
        let labels = body.labels.unwrap();
        assert_eq!(labels[MANAGED], "true");
        assert_eq!(labels[SPEC_HASH], "abc123");
        assert_eq!(labels[DEPLOYMENT], "fleet");
        assert_eq!(labels[DEPLOYMENT_ID], "01jfleet");
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(512 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::NO));
        let binding = &host.port_bindings.unwrap()["9101/tcp"].clone().unwrap()[0];
        assert_eq!((binding.host_ip.as_deref(), binding.host_port.as_deref()), (Some("127.0.0.1"), Some("9101")));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.cmd.unwrap(), ["--config", "/app/config/server.yaml", "--skip-verification"]);
    }

    #[test]
    fn secrets_are_the_containers_environment_and_only_they() {
        let fleet = Deployment { name: "fleet".into(), id: "01jfleet".into() };
        let settings = DockerSettings::default();
        let plain = container_body(&spec(RuntimeOptions::default()), "img:1", &settings, &fleet, false).unwrap();
        assert_eq!(plain.env, None);
        let mut with = spec(RuntimeOptions::default());
        with.secrets = vec![("PG_PASSWORD".into(), secrecy::SecretString::from("hunter2"))];
        let body = container_body(&with, "img:1", &settings, &fleet, false).unwrap();
        assert_eq!(body.env, Some(vec!["PG_PASSWORD=hunter2".to_owned()]));
        assert!(!format!("{with:?}").contains("hunter2"), "a spec never prints a value");
    }

    #[test]
    fn engine_states_map_to_messages_with_exit_code_and_oom_flag() {
        let exited = |code, oom| ContainerState {
            status: Some(ContainerStateStatusEnum::EXITED),
            exit_code: Some(code),
            oom_killed: Some(oom),
            ..Default::default()
        };
        assert_eq!(describe(&exited(0, false)), "exited with code 0");
        assert_eq!(describe(&exited(137, true)), "exited with code 137 (OOM-killed)");
        let restarting = ContainerState { restarting: Some(true), running: Some(true), ..Default::default() };
        assert_eq!(describe(&restarting), "restarting");
        let c = ContainerInspectResponse { state: Some(restarting), ..Default::default() };
        assert!(!inspection(&c, "127.0.0.1").alive);
    }

    #[test]
    fn the_endpoint_comes_from_the_published_port() {
        let binding = PortBinding { host_ip: Some("0.0.0.0".into()), host_port: Some("9105".into()) };
        let c = ContainerInspectResponse {
            state: Some(ContainerState { running: Some(true), ..Default::default() }),
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([("9105/tcp".to_owned(), Some(vec![binding]))])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let i = inspection(&c, "127.0.0.1");
        assert!(i.alive);
        assert_eq!(i.endpoint.as_deref(), Some("http://127.0.0.1:9105"));
    }

    #[test]
    fn the_endpoint_is_the_servers_port_among_its_components_ports() {
        let bind = |p: &str| Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(p.into()) }]);
        let ports: HashMap<String, Option<Vec<PortBinding>>> =
            ["9105", "9106", "9107"].iter().map(|p| (format!("{p}/tcp"), bind(p))).collect();
        for server in ["9105", "9106", "9107"] {
            let labels = HashMap::from([(SERVER_PORT.to_owned(), server.to_owned())]);
            let c = ContainerInspectResponse {
                config: Some(ContainerConfig { labels: Some(labels), ..Default::default() }),
                network_settings: Some(NetworkSettings { ports: Some(ports.clone()), ..Default::default() }),
                ..Default::default()
            };
            assert_eq!(published_port(&c).map(|p| p.to_string()).as_deref(), Some(server));
        }
    }

    #[test]
    fn wildcard_host_ips_advertise_the_engine_host() {
        let mut s = DockerSettings { host_ip: "0.0.0.0".into(), ..Default::default() };
        assert_eq!(advertise_host(&s), "127.0.0.1");
        s.endpoint = "tcp://docker.internal:2376".into();
        assert_eq!(advertise_host(&s), "docker.internal");
        s.advertise_host = Some("10.1.2.3".into());
        assert_eq!(advertise_host(&s), "10.1.2.3");
    }

    #[test]
    fn untagged_images_are_pulled_as_latest() {
        assert_eq!(pull_reference("ghcr.io/drasi-project/drasi-server"), "ghcr.io/drasi-project/drasi-server:latest");
        assert_eq!(pull_reference("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(pull_reference("x:1.2"), "x:1.2");
        assert_eq!(pull_reference("x@sha256:ab"), "x@sha256:ab");
    }

    #[test]
    fn the_config_archive_holds_one_writable_file_for_the_config_directory() {
        let tar = config_archive("/app/config/server.yaml", "port: 1\n").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("server.yaml"));
        assert_eq!(entry.header().mode().unwrap(), 0o666);
        assert_eq!(config_dir("/app/config/server.yaml"), "/app/config");
        assert_eq!(config_dir("/server.yaml"), "/");
    }

    #[test]
    fn containers_run_hardened_with_their_directories_in_volumes() {
        let settings =
            DockerSettings { plugins_dir: Some("/p".into()), user: Some("65532:65532".into()), ..Default::default() };
        let d = Deployment { name: "d".into(), id: "1".into() };
        let body = container_body(&spec(RuntimeOptions::default()), "img", &settings, &d, false).unwrap();
        assert_eq!(body.user.as_deref(), Some("65532:65532"));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_owned()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert!(host.tmpfs.unwrap().contains_key("/tmp"));
        let targets: Vec<_> = host.mounts.unwrap().into_iter().filter_map(|m| m.target).collect();
        assert_eq!(targets, ["/app/config", "/app/plugins", "/app/data"]);
    }
}
