//! A private `redis-server` for one test: unix socket only, in a temp dir, killed on drop.
//! Set `DRAAS_TEST_REDIS_BIN` to use another redis-server binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct TestRedis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `redis+unix:///…/redis.sock`.
    pub url: String,
}

impl TestRedis {
    /// Start a fresh server (no persistence unless `with_aof`).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("redis+unix://{}", dir.path().join("redis.sock").display());
        let mut r = Self { child: None, dir, url };
        r.launch(false);
        r
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn launch(&mut self, aof: bool) {
        let bin = std::env::var("DRAAS_TEST_REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
        let _ = std::fs::remove_file(self.socket());
        let mut cmd = Command::new(bin);
        cmd.args(["--port", "0", "--save", "", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", if aof { "yes" } else { "no" }, "--appendfsync", "everysec"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// Kill the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
