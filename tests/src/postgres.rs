//! A private PostgreSQL for one test: Debian's server binaries (`apt-get install postgresql`;
//! `DRAAS_TEST_PG_BIN` names another bin directory), a fresh cluster in a temp dir, listening
//! on a free loopback port with `wal_level=logical` (what the postgres source's CDC needs),
//! trust authentication, stopped (fast shutdown) on drop. PostgreSQL refuses to run as root:
//! as root, the cluster belongs to the `postgres` user the package creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

/// A running PostgreSQL server.
pub struct TestPostgres {
    child: Child,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/<version>/bin`, or `DRAAS_TEST_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DRAAS_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL's server binaries are missing: apt-get install -y postgresql (scripts/test does), or set DRAAS_TEST_PG_BIN")
    })
}

impl TestPostgres {
    /// Initialise and start a cluster; returns once it accepts connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        let user = Uid::effective().is_root().then(|| {
            User::from_name("postgres")
                .ok()
                .flatten()
                .expect("running as root needs the postgres user (apt-get install postgresql)")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(u) = &user {
            std::os::unix::fs::chown(dir.path(), Some(u.uid.as_raw()), Some(u.gid.as_raw())).expect("chown");
        }
        let data = dir.path().join("data");
        let out = as_owner(Command::new(bin.join("initdb")), user.as_ref())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = crate::free_port();
        let child = as_owner(Command::new(bin.join("postgres")), user.as_ref())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical", "-c", "fsync=off"])
            .args(["-c", "max_replication_slots=10", "-c", "max_wal_senders=10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("postgres.log")).expect("log file")))
            .spawn()
            .expect("start postgres");
        let pg = Self { child, bin, dir, port };
        let end = Instant::now() + Duration::from_secs(30);
        while !pg.try_sql("postgres", "SELECT 1").is_ok_and(|o| o == "1") {
            assert!(Instant::now() < end, "postgres did not accept connections within 30 s:\n{}", pg.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    /// Run `sql` in `database` with psql; its unaligned output, or psql's error.
    pub fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-q", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`TestPostgres::try_sql`] that must succeed.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        self.try_sql(database, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Where its binaries are (`psql` among them).
    pub fn bin_dir(&self) -> &std::path::Path {
        &self.bin
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The database `shop` of the postgres CDC example: `orders(id, item, qty)` with
    /// `REPLICA IDENTITY FULL`, the rows given, and the publication `drasi_pub` for it.
    pub fn shop(&self, rows: &[(i32, &str, i32)]) {
        self.sql("postgres", "CREATE DATABASE shop");
        self.sql("shop", "CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL)");
        self.sql("shop", "ALTER TABLE orders REPLICA IDENTITY FULL");
        for (id, item, qty) in rows {
            self.sql("shop", &format!("INSERT INTO orders VALUES ({id}, '{item}', {qty})"));
        }
        self.sql("shop", "CREATE PUBLICATION drasi_pub FOR TABLE orders");
    }
}

/// `cmd` run as the cluster's owner when the tests run as root.
fn as_owner(mut cmd: Command, user: Option<&User>) -> Command {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    cmd
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (ends sessions, including replication connections).
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `draas up` running the real drasi-server with its plugins, reconciling every second, with
/// `${PGPORT}` and `${PGPASSWORD}` of `pg` in its environment for configurations to reference.
pub async fn up_with(real: &crate::RealServer, pg: &TestPostgres) -> crate::TestApp {
    let port = pg.port.to_string();
    let mut env = real.worker_env().to_vec();
    env.extend([
        ("DRAAS_RECONCILE__INTERVAL_SECS", "1"),
        ("PGPORT", port.as_str()),
        ("PGPASSWORD", "unused-with-trust-auth"),
    ]);
    crate::spawn_up(&env).await
}
