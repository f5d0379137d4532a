//! A private `redis-server` for one test: unix socket only, in a temp dir, killed on drop.
//! Set `DRAAS_TEST_REDIS_BIN` to use another redis-server binary.
//!
//! For outage tests a server can run with AOF persistence (`appendfsync everysec`), be stopped
//! ([`TestRedis::kill`] or [`TestRedis::terminate`]) and started again with
//! [`TestRedis::restart`] on the same socket and directory, so it reloads what it persisted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct TestRedis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    aof: bool,
    /// `redis+unix:///…/redis.sock`.
    pub url: String,
}

impl TestRedis {
    /// Start a fresh server without persistence.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Start a fresh server with AOF persistence (`appendonly yes`, `appendfsync everysec`):
    /// a write acknowledged more than a second before the server dies survives a restart.
    pub fn start_with_aof() -> Self {
        Self::start_with(true)
    }

    fn start_with(aof: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("redis+unix://{}", dir.path().join("redis.sock").display());
        let mut r = Self { child: None, dir, aof, url };
        r.launch();
        r
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The server's directory (socket, and the AOF files when persistence is on).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Is the server process running (started and not stopped by this handle)?
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn launch(&mut self) {
        let bin = std::env::var("DRAAS_TEST_REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
        let _ = std::fs::remove_file(self.socket());
        let mut cmd = Command::new(bin);
        cmd.args(["--port", "0", "--save", "", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", if self.aof { "yes" } else { "no" }, "--appendfsync", "everysec"])
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

    /// Start the server again after [`kill`](Self::kill) or [`terminate`](Self::terminate): same
    /// socket, same directory, same persistence setting (with AOF it reloads its data). Returns
    /// once the socket accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the server is still running");
        self.launch();
    }

    /// A connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// Kill the server (SIGKILL): no shutdown work, so only what the AOF policy already wrote
    /// survives. The directory is kept for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop the server gracefully (SIGTERM: Redis flushes its AOF and exits) and wait up to 10 s
    /// for it, then SIGKILL. The directory is kept for [`restart`](Self::restart).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
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
