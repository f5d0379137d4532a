//! A real Kubernetes API server for tests: Debian's `etcd` and a `kube-apiserver` 1.20 on
//! loopback ports, with a temp dir holding the certificates (made with `openssl`), static tokens
//! and kubeconfigs. `--authorization-mode=RBAC`: the admin token is in `system:masters`, the
//! worker token is the service account `draas/draas-worker`, which may do only what the
//! worker Role grants.
//!
//! The binary comes from `DRAAS_KUBE_APISERVER`, else from the cache `scripts/kube-apiserver`
//! fills (`$DRAAS_CI_CACHE/kube-apiserver-*/kube-apiserver`); a missing one fails the test.
//! Tests of one binary that run at the same time share one server; the last to let go of it
//! kills both processes. Nothing moves a Deployment's status without controllers:
//! [`FakeController`] plays the deployment controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use kube::Client;

/// User name of the worker's token: the service account `draas-worker` in namespace `draas`.
pub const WORKER_USER: &str = "system:serviceaccount:draas:draas-worker";

/// Who a client or kubeconfig speaks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// `system:masters`: anything.
    Admin,
    /// The worker's service account: what its Role allows.
    Worker,
}

/// A running etcd + kube-apiserver pair (both killed on drop).
pub struct KubeApiServer {
    etcd: Child,
    apiserver: Child,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
}

static SHARED: tokio::sync::Mutex<Weak<KubeApiServer>> = tokio::sync::Mutex::const_new(Weak::new());

impl KubeApiServer {
    /// The server the running tests share, started when none runs.
    pub async fn shared() -> Arc<Self> {
        let mut slot = SHARED.lock().await;
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(Self::start().await);
        *slot = Arc::downgrade(&s);
        s
    }

    /// Start etcd and kube-apiserver in a fresh temp dir and wait until the API server is ready.
    pub async fn start() -> Self {
        let binary = apiserver_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        make_credentials(dir.path());
        let [port, etcd_port, peer_port] = [free_port(), free_port(), free_port()];
        let etcd = spawn(
            Command::new("etcd")
                .args(["--name", "draas", "--data-dir"])
                .arg(dir.path().join("etcd"))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
                .arg(format!("--initial-cluster=draas=http://127.0.0.1:{peer_port}")),
            &dir.path().join("etcd.log"),
            "etcd (Debian: apt-get install etcd-server; scripts/kube-apiserver installs it)",
        );
        let d = dir.path().display();
        let apiserver = spawn(
            Command::new(&binary).args([
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                "--insecure-port=0".into(),
                format!("--tls-cert-file={d}/apiserver.crt"),
                format!("--tls-private-key-file={d}/apiserver.key"),
                format!("--cert-dir={d}/certs"),
                format!("--token-auth-file={d}/tokens.csv"),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-key-file={d}/sa.pub"),
                format!("--service-account-signing-key-file={d}/sa.key"),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                // No controller manager creates the `default` service accounts this admission
                // plugin would demand of every Pod the tests create.
                "--disable-admission-plugins=ServiceAccount".into(),
                "--profiling=false".into(),
            ]),
            &dir.path().join("kube-apiserver.log"),
            "kube-apiserver",
        );
        let mut server = Self { etcd, apiserver, dir, url: format!("https://127.0.0.1:{port}") };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let client = self.client(Who::Admin).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let readyz = http::Request::get("/readyz").body(Vec::new()).expect("request");
            let ns = http::Request::get("/api/v1/namespaces/default").body(Vec::new()).expect("request");
            if client.request_text(readyz).await.is_ok() && client.request_text(ns).await.is_ok() {
                return;
            }
            let exited = [("etcd", self.etcd.try_wait()), ("kube-apiserver", self.apiserver.try_wait())]
                .into_iter()
                .find_map(|(name, s)| s.ok().flatten().map(|s| (name, s)));
            if let Some((name, status)) = exited {
                panic!("{name} exited ({status}) while starting:\n{}", self.log_tail(name));
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready after 120 s:\n{}",
                self.log_tail("kube-apiserver")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A kubeconfig file speaking as `who` (written once, kept with the server).
    pub fn kubeconfig(&self, who: Who) -> PathBuf {
        let (user, token) = match who {
            Who::Admin => ("admin", "admin-token"),
            Who::Worker => ("draas-worker", "worker-token"),
        };
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        if !path.exists() {
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
                 certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n\
                 - name: test\n  context:\n    cluster: test\n    user: {user}\ncurrent-context: test\n",
                url = self.url,
                ca = self.dir.path().join("ca.crt").display(),
            );
            // A temporary file of this writer's own: tests starting at once all write it, and a
            // shared temporary name let one rename away another's file ("NotFound").
            let tmp = path.with_extension(format!("{}.tmp", ulid::Ulid::new()));
            std::fs::write(&tmp, text).expect("kubeconfig");
            std::fs::rename(&tmp, &path).expect("kubeconfig");
        }
        path
    }

    /// A client speaking as `who` (bound to the calling test's runtime).
    pub async fn client(&self, who: Who) -> Client {
        let file = kube::config::Kubeconfig::read_from(self.kubeconfig(who)).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The kube-apiserver binary: `DRAAS_KUBE_APISERVER`, else the newest in the CI cache.
pub fn apiserver_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DRAAS_KUBE_APISERVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "DRAAS_KUBE_APISERVER={} is not a file", p.display());
        return p;
    }
    let cache = std::env::var_os("DRAAS_CI_CACHE").map_or_else(|| PathBuf::from("/var/cache/draas-ci"), PathBuf::from);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kube-apiserver-"))
        .map(|e| e.path().join("kube-apiserver"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no kube-apiserver: set DRAAS_KUBE_APISERVER or run scripts/kube-apiserver (builds it into {}/kube-apiserver-<version>/)",
            cache.display()
        )
    })
}

fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A CA, a serving certificate for 127.0.0.1 signed by it, the service-account key pair and
/// the static tokens.
fn make_credentials(dir: &Path) {
    std::fs::write(
        dir.join("apiserver.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=draas-test-ca -keyout ca.key -out ca.crt",
        "req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key -out apiserver.csr",
        "x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile apiserver.ext -out apiserver.crt",
        "genrsa -out sa.key 2048",
        "rsa -in sa.key -pubout -out sa.pub",
    ] {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let tokens = format!(
        "admin-token,admin,admin,\"system:masters\"\nworker-token,{WORKER_USER},draas-worker,\"system:serviceaccounts,system:serviceaccounts:draas\"\n"
    );
    std::fs::write(dir.join("tokens.csv"), tokens).expect("tokens");
}

mod fake;
mod setup;

pub use self::fake::{CONTROLLER_MANAGER, FakeController, create_pod, set_unavailable};
pub use self::setup::{TestNamespace, prepare_namespace, rbac_manifest, unique_namespace};
