//! `draas up`: everything on one machine. Without `DRAAS_REDIS_URL` it runs a private
//! `redis-server` (AOF on, unix socket only) under the data dir, installing Debian's
//! redis-server first when it is missing; without tokens it makes one and keeps it, and
//! without `secrets.keys` a key for the instances' secrets (`<data dir>/secrets.key`, 0600).
//!
//! It locks its data dir first (a second `up` there refuses, and so never starts a second
//! Redis on the same socket and AOF), then binds its listener, and only then starts anything
//! or says it is up: what it cannot do ends it at once, with the reason and a non-zero exit.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use draas_jobs::domain::model::{Platform, Status};
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::{Child, Command};

/// Pid of the private redis-server this process started, for an exit that cannot wait.
static PRIVATE_REDIS: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Stop the private redis-server at once (the process is exiting without its clean stop).
pub fn stop_private_redis_now() {
    if let Some(pid) = PRIVATE_REDIS.get() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGTERM);
    }
}

/// Run the all-in-one stack until SIGINT or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    let mut settings = load_settings_with_token()?;
    // Quiet by default: warnings and errors only (RUST_LOG=info shows every pass).
    draas_jobs::telemetry::init_with_default(settings.log_format, "warn");
    crate::bound_shutdown(settings.shutdown_grace_secs);
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    settings.data_dir = settings.data_dir.canonicalize()?;
    // Held until the process exits: the OS releases it however the process ends.
    let _lock = lock_data_dir(&settings.data_dir)?;
    if settings.secrets.keys.is_empty() {
        settings.secrets.keys = vec![ensure_secrets_key(&settings.data_dir)?];
    }
    // Bound before anything is announced or started: a taken port ends `up` at once, saying so.
    let listener = crate::bind_api(&settings).await?;
    settings.listen = listener.local_addr()?;
    let mut redis = None;
    let url = match settings.redis_url.clone() {
        Some(url) => url,
        None => {
            let (child, url) = start_private_redis(&settings.data_dir).await?;
            redis = Some(child);
            url
        }
    };
    // Client commands run beside it find it here (`DRAAS_LISTEN` may have moved it); written
    // before the banner, so that whoever reads the banner finds it.
    let url_file = settings.data_dir.join("api-url");
    let _ = std::fs::write(&url_file, format!("http://{}\n", settings.listen));
    print_banner(&settings, &url);
    let (api, worker) =
        tokio::join!(crate::serve_api(listener, settings.clone(), &url), crate::run_worker(settings.clone(), &url));
    let _ = std::fs::remove_file(&url_file);
    let result = api.and(worker);
    say_what_runs_on(&settings, &url).await;
    if let Some(mut child) = redis {
        stop_redis(&mut child).await;
    }
    result
}

/// Take `<data dir>/up.lock` for this process, or say who holds it.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<Flock<std::fs::File>> {
    let path = data_dir.join("up.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => bail!(
            "another `draas up` is running on the data directory {} (it holds {}): stop it first, \
             or give this one its own DRAAS_DATA_DIR",
            data_dir.display(),
            path.display()
        ),
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Settings, with a generated token (kept in `<data dir>/api-token`) when none is configured.
fn load_settings_with_token() -> anyhow::Result<Settings> {
    let settings = Settings::load()?;
    match settings.require_auth() {
        Ok(()) => Ok(settings),
        Err(_) => {
            let data_dir = std::env::var_os("DRAAS_DATA_DIR").map_or_else(|| PathBuf::from(".draas"), PathBuf::from);
            let token = ensure_token(&data_dir)?;
            let env = std::env::vars()
                .filter(|(k, _)| k != "DRAAS_API_TOKENS")
                .chain([("DRAAS_API_TOKENS".to_owned(), token)]);
            let dir = std::env::var_os("DRAAS_CONFIG_DIR")
                .map(PathBuf::from)
                .or_else(|| Some(PathBuf::from("deploy/config")).filter(|p| p.is_dir()));
            Ok(Settings::load_from(dir.as_deref(), env)?)
        }
    }
}

fn ensure_token(data_dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("api-token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_owned());
    }
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    std::io::Write::write_all(&mut f, token.as_bytes())?;
    Ok(token)
}

/// The key of `<data dir>/secrets.key`, made (random, 0600) when there is none.
fn ensure_secrets_key(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("secrets.key");
    if let Ok(k) = std::fs::read_to_string(&path)
        && !k.trim().is_empty()
    {
        let key = SecretString::from(k.trim().to_owned());
        draas_jobs::vault::Vault::new(std::slice::from_ref(&key))
            .with_context(|| format!("{} holds no usable key", path.display()))?;
        return Ok(key);
    }
    let key = draas_jobs::vault::generate_key();
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    std::io::Write::write_all(&mut f, key.expose_secret().as_bytes())?;
    Ok(key)
}

/// On the way out: the servers left running (they outlive draas) and who takes them up.
async fn say_what_runs_on(settings: &Settings, url: &SecretString) {
    let running = async {
        let store = Store::from_settings(url, settings).ok()?;
        let ids = store.instances().ids_after(None, 10_000).await.ok()?;
        let states = store.instances().load_many(&ids).await.ok()?;
        let names: Vec<String> = states
            .iter()
            .flatten()
            .filter(|s| s.instance.value.platform == Platform::Process)
            .filter(|s| {
                s.observed.as_ref().is_some_and(|o| matches!(o.value.status, Status::Running | Status::Degraded))
            })
            .map(|s| s.instance.value.name.to_string())
            .collect();
        Some(names)
    };
    match tokio::time::timeout(Duration::from_secs(2), running).await.ok().flatten() {
        Some(names) if names.is_empty() => println!("draas stopped; no drasi-server of it is left running"),
        Some(names) => println!(
            "draas stopped; {} drasi-server(s) keep running: {}; the next `draas up` in {} adopts them",
            names.len(),
            names.join(", "),
            settings.data_dir.display()
        ),
        None => println!(
            "draas stopped; the drasi-servers it ran keep running, and the next `draas up` in {} adopts them",
            settings.data_dir.display()
        ),
    }
}

fn print_banner(settings: &Settings, redis_url: &SecretString) {
    let base = format!("http://{}", settings.listen);
    println!("draas is up");
    println!("  API:     {base}/api/v1/instances");
    println!("  console: {base}/board");
    println!("  docs:    {base}/docs");
    println!("  redis:   {}", redis_url.expose_secret());
    if settings.dev {
        println!("  auth:    disabled (DRAAS_DEV=true)");
    } else if let Some(token) = settings.api_tokens.first() {
        println!("  token:   {}", token.expose_secret());
        println!("  try:     curl -H 'Authorization: Bearer {}' {base}/api/v1/instances", token.expose_secret());
    }
}

/// Start `redis-server` on a unix socket under `<data dir>/redis`, with AOF every second.
async fn start_private_redis(data_dir: &Path) -> anyhow::Result<(Child, SecretString)> {
    ensure_redis_installed().await?;
    let dir = data_dir.join("redis");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let socket = dir.join("redis.sock");
    let _ = std::fs::remove_file(&socket);
    let child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocketperm", "700", "--appendonly", "yes", "--appendfsync", "everysec"])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(&dir)
        .stdout(std::fs::File::create(dir.join("redis.log"))?)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start redis-server")?;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = PRIVATE_REDIS.set(pid);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "redis-server did not open {} within 10 s; see {}",
                socket.display(),
                dir.join("redis.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("redis+unix://{}", socket.display());
    tracing::info!(%url, "private redis-server started");
    Ok((child, SecretString::from(url)))
}

/// Install Debian's redis-server when it is missing (as root), or say how to.
async fn ensure_redis_installed() -> anyhow::Result<()> {
    if which("redis-server") {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!("redis-server is not installed: run `sudo apt-get install -y redis-server`, or set DRAAS_REDIS_URL");
    }
    eprintln!("redis-server is missing: installing Debian's redis-server with apt-get ...");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "redis-server"][..]] {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status().await?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

async fn stop_redis(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SIGTERM lets redis-server flush its AOF.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}
