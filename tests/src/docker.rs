//! Docker test support: a client of the real engine (a test fails loudly when dockerd does
//! not answer; it never skips), the stand-in image built `FROM scratch` around a statically
//! linked stand-in (once per test binary, reused while the binary's hash is the same), the
//! real drasi-server's image built `FROM scratch` the same way from its binary and the shared
//! libraries `ldd` names, and a guard that removes a test's containers however the test ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bollard::Docker;
use bollard::body_full;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{CreateImageOptions, ListContainersOptions, RemoveContainerOptions};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

/// The stand-in image (healthy at once).
pub const IMAGE: &str = "draas-standin:test";
/// The same stand-in, taking 2 s before it binds its port (for "killed mid-start" tests).
pub const SLOW_IMAGE: &str = "draas-standin:slow";
/// The stand-in image whose `/health` never answers 200.
pub const UNHEALTHY_IMAGE: &str = "draas-standin:unhealthy";
/// The real drasi-server (with no plugins inside: the docker platform copies them in).
pub const REAL_IMAGE: &str = "draas-drasi-server:test";
/// Label of the test images holding the hash of the binary inside.
const HASH_LABEL: &str = "draas.standin-sha256";

/// The engine every test talks to.
pub const ENDPOINT: &str = "unix:///var/run/docker.sock";

/// A client of the local engine, version-negotiated; panics (fails the test) when dockerd
/// does not answer.
pub async fn docker() -> Docker {
    let path = ENDPOINT.trim_start_matches("unix://");
    let docker = Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION).expect("docker client");
    match docker.negotiate_version().await {
        Ok(d) => d,
        Err(e) => panic!(
            "dockerd does not answer at {ENDPOINT} ({e}); the docker tests need a real engine: \
             run scripts/test (it installs docker.io and starts dockerd) or start dockerd yourself"
        ),
    }
}

/// Make sure the stand-in images exist (built once per test binary run) and return [`IMAGE`].
pub fn standin_images() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Its own thread and runtime: each test has a runtime of its own, and a client must
        // not outlive the runtime it was used on.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(build_images());
        })
        .join()
        .expect("building the stand-in image failed");
    });
    IMAGE
}

async fn build_images() {
    let binary = static_standin();
    let bytes = std::fs::read(&binary).expect("read the static stand-in");
    let hash = sha256(&bytes);
    let docker = docker().await;
    let files = [("usr/local/bin/drasi-server".to_owned(), bytes)];
    for (image, env) in [
        (IMAGE, None),
        (SLOW_IMAGE, Some("DRASI_STANDIN_STARTUP_DELAY_MS=2000")),
        (UNHEALTHY_IMAGE, Some("DRASI_STANDIN_NEVER_HEALTHY=1")),
    ] {
        let current = docker.inspect_image(image).await.ok().and_then(|i| i.config?.labels?.get(HASH_LABEL).cloned());
        if current.as_deref() == Some(hash.as_str()) {
            continue;
        }
        import(&docker, image, &files, &hash, env).await;
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Make sure [`REAL_IMAGE`] holds the real drasi-server at `bin` (built once per test binary
/// run, reused while the binary is the same) and return it.
pub fn real_server_image(bin: &Path) -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    let bin = bin.to_owned();
    BUILT.get_or_init(|| {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(build_real_image(&bin));
        })
        .join()
        .expect("building the drasi-server image failed");
    });
    REAL_IMAGE
}

/// The binary at `/usr/local/bin/drasi-server` and every library `ldd` names at its own path.
async fn build_real_image(bin: &Path) {
    let bytes = std::fs::read(bin).expect("read drasi-server");
    let hash = sha256(&bytes);
    let docker = docker().await;
    let current = docker.inspect_image(REAL_IMAGE).await.ok().and_then(|i| i.config?.labels?.get(HASH_LABEL).cloned());
    if current.as_deref() == Some(hash.as_str()) {
        return;
    }
    let ldd = Command::new("ldd").arg(bin).output().expect("run ldd");
    assert!(ldd.status.success(), "ldd {}: {}", bin.display(), String::from_utf8_lossy(&ldd.stderr));
    let mut files = vec![("usr/local/bin/drasi-server".to_owned(), bytes)];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libjq.so.1 => /lib/x86_64-linux-gnu/libjq.so.1 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = line.split("=>").last().and_then(|r| r.split_whitespace().next()).filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            let lib = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
            files.push((path.trim_start_matches('/').to_owned(), lib));
        }
    }
    import(&docker, REAL_IMAGE, &files, &hash, None).await;
}

/// Import a root filesystem holding only the stand-in as `image`.
async fn import(docker: &Docker, image: &str, files: &[(String, Vec<u8>)], hash: &str, env: Option<&str>) {
    let (repo, tag) = image.split_once(':').expect("image with a tag");
    let mut changes = vec![
        r#"ENTRYPOINT ["/usr/local/bin/drasi-server"]"#.to_owned(),
        "WORKDIR /app".to_owned(),
        format!("LABEL {HASH_LABEL}={hash}"),
    ];
    changes.extend(env.map(|e| format!("ENV {e}")));
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        changes,
        ..Default::default()
    };
    docker
        .create_image(Some(options), Some(body_full(rootfs(files).into())), None)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap_or_else(|e| panic!("cannot import {image}: {e}"));
}

/// `app/`, `tmp/` and `files` (executable, each under its directories).
fn rootfs(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut dirs: Vec<String> = vec!["app/".into(), "tmp/".into()];
    for (path, _) in files {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.push(format!("{}/", p.display()));
            parent = p.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut tar = tar::Builder::new(Vec::new());
    for dir in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(dir).expect("path");
        h.set_mode(if dir == "tmp/" { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_cksum();
        tar.append(&h, std::io::empty()).expect("tar dir");
    }
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        h.set_cksum();
        tar.append(&h, bytes.as_slice()).expect("tar file");
    }
    tar.into_inner().expect("tar")
}

/// The stand-in built statically (`+crt-static` on the gnu target: pure Rust, no DNS), in a
/// target directory of its own beside the workspace's (a nested cargo must not wait on the
/// lock of the build that runs these tests). A no-op once built.
fn static_standin() -> PathBuf {
    let target_dir = crate::bin_dir().parent().expect("target dir").join("standin-static");
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--locked", "-q", "-p", "drasi-server-standin", "--target", &triple])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run cargo to build the static stand-in");
    assert!(status.success(), "building the static stand-in failed");
    target_dir.join(triple).join("debug").join("drasi-server-standin")
}

/// Every container (running or not) of a test's deployment.
pub async fn containers(docker: &Docker, prefix: &str) -> Vec<ContainerSummary> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec!["draas.managed=true".to_owned(), format!("draas.deployment={prefix}")],
    )]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    docker.list_containers(Some(options)).await.expect("list containers")
}

/// Removes every container of a deployment when dropped, however the test ended.
pub struct ContainerGuard {
    pub prefix: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let docker = docker().await;
                for c in containers(&docker, &prefix).await {
                    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                    let _ = docker.remove_container(c.id.as_deref().unwrap_or_default(), Some(options)).await;
                }
            });
        })
        .join();
    }
}

/// Environment of a worker that runs this test's docker instances with the stand-in image.
pub fn worker_env(ports: (u16, u16)) -> Vec<(String, String)> {
    [
        ("DRAAS_DOCKER__ENDPOINT", ENDPOINT.to_owned()),
        ("DRAAS_DOCKER_IMAGE", standin_images().to_owned()),
        ("DRAAS_DOCKER__IMAGE_POLICY", "never".to_owned()),
        ("DRAAS_DOCKER__PORT_RANGE_START", ports.0.to_string()),
        ("DRAAS_DOCKER__PORT_RANGE_END", ports.1.to_string()),
        ("DRAAS_DOCKER__STOP_GRACE_SECS", "3".to_owned()),
        ("DRAAS_DOCKER__HEALTH_TIMEOUT_SECS", "15".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
