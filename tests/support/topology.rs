//! PostgreSQL topologies made inside a test, never touching the machine's own
//! cluster: a cluster of its own (`initdb` on a free port, fsync off) and
//! Debian's PgBouncer in transaction mode in front of it. Run as root (as CI
//! does), both run as the `postgres` user, which they require.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

fn required() -> bool {
    std::env::var("LATCHKEY_REQUIRE_TOPOLOGY").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program` with `args`, as the `postgres` user when this runs as root.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A directory the `postgres` user owns.
fn owned_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if running_as_root() {
        let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
        assert!(status.success(), "chown {}", dir.path().display());
    }
    dir
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a cluster acknowledges commits. Every cluster runs with
/// `fsync = off` (the operating system keeps what a killed server wrote;
/// these tests kill servers, not machines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commits {
    /// `synchronous_commit = off`: fastest, for tests that kill nothing.
    Asynchronous,
    /// `synchronous_commit = on` with `synchronous_standby_names = '*'`: a
    /// commit is acknowledged once a standby has it, as the operations guide
    /// recommends for failover (no acknowledged change is lost when the
    /// standby is promoted). Commits wait while no standby streams.
    SynchronousStandby,
}

impl Commits {
    fn settings(self) -> &'static str {
        match self {
            Commits::Asynchronous => "-c synchronous_commit=off",
            Commits::SynchronousStandby => "-c synchronous_commit=on -c synchronous_standby_names='*'",
        }
    }
}

/// A PostgreSQL cluster of the test's own, stopped (immediately) on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    commits: Commits,
}

impl Cluster {
    /// A new cluster on a free port; `None` (reported loudly) when
    /// PostgreSQL's programs are not installed and not required (`.ci/run`
    /// sets `LATCHKEY_REQUIRE_TOPOLOGY=1`).
    pub fn start() -> Option<Cluster> {
        Self::start_with(Commits::Asynchronous)
    }

    /// [`Cluster::start`], acknowledging commits as `commits` says.
    pub fn start_with(commits: Commits) -> Option<Cluster> {
        let Some(bin) = postgres_bin() else {
            assert!(!required(), "LATCHKEY_REQUIRE_TOPOLOGY=1 but PostgreSQL's initdb is not installed");
            eprintln!("\n*** SKIPPED: topology test — install Debian's postgresql to run it. ***\n");
            return None;
        };
        let dir = owned_dir();
        let data = dir.path().join("data");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
        run(initdb, "initdb");
        let port = crate::smtp::free_port().port();
        let cluster = Cluster { bin, dir, port, commits };
        cluster.pg_ctl_start();
        Some(cluster)
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {} -c max_connections=200",
            self.port,
            self.dir.path().display(),
            self.commits.settings()
        );
        let mut pg_ctl = as_postgres(&self.bin.join("pg_ctl"));
        pg_ctl.arg("-D").arg(self.dir.path().join("data")).args(["-w", "-t", "60", "-o", &options, "-l"]);
        pg_ctl.arg(self.dir.path().join("postgres.log")).arg("start").stdout(Stdio::null());
        run(pg_ctl, "pg_ctl start");
    }

    /// A hot standby of this cluster, streaming from it (`pg_basebackup -R`),
    /// on a free port; it acknowledges its own commits asynchronously (once
    /// promoted it has no standby to wait for).
    pub fn standby(&self) -> Cluster {
        let dir = owned_dir();
        let data = dir.path().join("data");
        let mut backup = as_postgres(&self.bin.join("pg_basebackup"));
        backup.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-X", "stream", "-R", "-D"]);
        backup.arg(&data);
        run(backup, "pg_basebackup");
        let port = crate::smtp::free_port().port();
        let standby = Cluster { bin: self.bin.clone(), dir, port, commits: Commits::Asynchronous };
        standby.pg_ctl_start();
        standby
    }

    /// Runs `sql` with psql on its `postgres` database; what it printed.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops it (fast shutdown).
    pub fn stop(&self) {
        let mut pg_ctl = as_postgres(&self.bin.join("pg_ctl"));
        pg_ctl.arg("-D").arg(self.dir.path().join("data")).args(["-m", "fast", "-w", "stop"]).stdout(Stdio::null());
        run(pg_ctl, "pg_ctl stop");
    }

    /// Kills it as a crash would (`pg_ctl stop -m immediate`): no shutdown
    /// checkpoint, every connection cut.
    pub fn kill(&self) {
        let mut pg_ctl = as_postgres(&self.bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null());
        run(pg_ctl, "pg_ctl stop -m immediate");
    }

    /// Promotes this standby to a primary and waits until it takes writes.
    pub fn promote(&self) {
        let mut pg_ctl = as_postgres(&self.bin.join("pg_ctl"));
        pg_ctl.arg("-D").arg(self.dir.path().join("data")).args(["-w", "-t", "60", "promote"]).stdout(Stdio::null());
        run(pg_ctl, "pg_ctl promote");
    }

    /// Its address on loopback.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL of its `postgres` database, as `postgres` (trusted).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut pg_ctl = as_postgres(&self.bin.join("pg_ctl"));
        pg_ctl.arg("-D").arg(self.dir.path().join("data")).args(["-m", "immediate", "stop"]);
        let _ = pg_ctl.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// PgBouncer (Debian's, 1.18) in `pool_mode = transaction` in front of a
/// cluster, stopped on drop.
pub struct PgBouncer {
    process: Child,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PgBouncer {
    /// PgBouncer for `cluster`, configured as the issue names it
    /// (`pool_mode = transaction`, `ignore_startup_parameters =
    /// extra_float_digits,options`); `None` when it is not installed and not
    /// required.
    pub fn start(cluster: &Cluster) -> Option<PgBouncer> {
        if !Path::new(PGBOUNCER).exists() {
            assert!(!required(), "LATCHKEY_REQUIRE_TOPOLOGY=1 but {PGBOUNCER} is missing");
            eprintln!("\n*** SKIPPED: PgBouncer test — install Debian's pgbouncer to run it. ***\n");
            return None;
        }
        let dir = owned_dir();
        let port = crate::smtp::free_port().port();
        let d = dir.path().display();
        let config = format!(
            "[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {d}/users.txt\npool_mode = transaction\n\
             ignore_startup_parameters = extra_float_digits,options\nmax_client_conn = 500\n\
             default_pool_size = 20\nlogfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n",
            cluster.port
        );
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(&ini, config).expect("write pgbouncer.ini");
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").expect("write users.txt");
        if running_as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg("postgres:postgres").arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let process = as_postgres(Path::new(PGBOUNCER))
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(PgBouncer { process, dir, port })
    }

    /// The URL of the cluster's `postgres` database through PgBouncer.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Run through runuser, the child is runuser: signal PgBouncer by its pid file.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
