//! A private PostgreSQL server for the fault tests and `wxledger bench faults`: its own
//! data directory under the temporary directory, its own loopback port, trust auth, and
//! the faults a test or the bench injects (kill -9, fast stop, pause). Never the machine's
//! shared server. The directory is removed and the server killed on drop.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
//! (the data directory is handed to it). The binaries come from `WXLEDGER_PG_BIN` or the
//! newest `/usr/lib/postgresql/<version>/bin`.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::time::Instant;
use uuid::Uuid;

/// Why the private server could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No PostgreSQL binaries were found.
    #[error("no PostgreSQL server binaries: set WXLEDGER_PG_BIN to the directory holding initdb and postgres")]
    NoBinaries,
    /// A command or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// `initdb` failed (its output is in the message).
    #[error("initdb failed: {0}")]
    Initdb(String),
    /// The server did not accept queries in time (the log's tail is in the message).
    #[error("the private PostgreSQL did not start within {0:?}: {1}")]
    NotReady(Duration, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// A private PostgreSQL server; see the module documentation.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The user id and group id the server runs as (set when we are root).
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Creates a data directory (`initdb`), starts the server and answers once it
    /// accepts queries.
    pub async fn start() -> Result<Self, PgError> {
        let bin = binaries()?;
        let dir = std::env::temp_dir().join(format!("wxl-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(io("create the data directory"))?;
        let run_as = postgres_user()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(io("hand the data directory to postgres"))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("pick a port"))?
            .port();
        let mut pg = Self {
            bin,
            dir,
            port,
            run_as,
            child: None,
        };
        pg.initdb()?;
        pg.restart().await?;
        Ok(pg)
    }

    /// A libpq URL for the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn initdb(&self) -> Result<(), PgError> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(io("run initdb"))?;
        if !out.status.success() {
            return Err(PgError::Initdb(String::from_utf8_lossy(&out.stderr).into()));
        }
        Ok(())
    }

    /// Starts the server (again, after [`kill`](Self::kill) or [`stop`](Self::stop)) on
    /// the same port and data, and answers once it accepts queries (crash recovery
    /// included).
    pub async fn restart(&mut self) -> Result<Instant, PgError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io("open the server log"))?;
        let err = log.try_clone().map_err(io("open the server log"))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io("start postgres"))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await
    }

    async fn wait_ready(&self, within: Duration) -> Result<Instant, PgError> {
        let deadline = Instant::now() + within;
        let url = self.url();
        loop {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                if client.simple_query("SELECT 1").await.is_ok() {
                    return Ok(Instant::now());
                }
            }
            if Instant::now() > deadline {
                return Err(PgError::NotReady(within, self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server and all its backends with SIGKILL (a crash) and waits for them
    /// to be gone.
    pub fn kill(&mut self) {
        let pids = self.pids();
        for pid in &pids {
            signal(pid, "KILL");
        }
        self.reap(&pids);
    }

    /// Stops the server with a fast shutdown (SIGINT: backends are ended, the data is
    /// checkpointed) and waits for it to exit.
    pub fn stop(&mut self) {
        let pids = self.pids();
        if let Some(postmaster) = pids.first() {
            signal(postmaster, "INT");
        }
        self.reap(&pids);
    }

    /// Pauses (`STOP`) or resumes (`CONT`) the server and its backends: connections stay
    /// open and nothing answers, as on a frozen machine.
    pub fn signal_all(&self, name: &str) {
        for pid in self.pids() {
            signal(&pid, name);
        }
    }

    /// The postmaster's pid, then its children's (each backend is its own session, so
    /// a process group would not reach them).
    fn pids(&self) -> Vec<String> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let postmaster = child.id().to_string();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        std::iter::once(postmaster)
            .chain(children.split_whitespace().map(str::to_owned))
            .collect()
    }

    fn reap(&mut self, pids: &[String]) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        // Until the last backend has gone, a new server would refuse the shared memory
        // still in use.
        for _ in 0..500 {
            if !pids.iter().any(|pid| signal(pid, "0")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last lines of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.signal_all("CONT");
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `kill -<name> <pid>`; answers whether the process received it.
fn signal(pid: &str, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The directory with `initdb` and `postgres`.
fn binaries() -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os("WXLEDGER_PG_BIN") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| PgError::NoBinaries)?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(PgError::NoBinaries)
}

/// The `postgres` user's ids when we run as root (the server refuses root), else `None`.
fn postgres_user() -> Result<Option<(u32, u32)>, PgError> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    Ok(Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?)))
}

fn id(args: &[&str]) -> Result<u32, PgError> {
    let out = Command::new("id")
        .args(args)
        .output()
        .map_err(io("run id"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| PgError::Io {
            what: format!("id {}", args.join(" ")),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
}
