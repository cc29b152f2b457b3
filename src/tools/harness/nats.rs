//! Private nats-servers for fault runs: [`NatsNode`] is one `nats-server` with JetStream on
//! a fixed loopback port and its own store directory, so it can be killed, paused and
//! started again as the same server with the same streams; [`super::NatsCluster`] is three of
//! them routed into one JetStream cluster ([`super::cluster`]). Never the machine's shared
//! server.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::time::Instant;

/// The server binary (Debian's `nats-server` package, 2.9.10 on these machines).
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// The environment variable naming the pinned current nats-server (2.12+) that
/// `scripts/install-nats-server.sh` installs; `scripts/test.sh` sets it.
pub const PINNED_SERVER_VAR: &str = "WXLEDGER_NATS_SERVER";

/// Which nats-server a node runs and what its config adds.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The binary.
    pub binary: PathBuf,
    /// Lines added inside the config's `jetstream { }` block
    /// (`sync_interval: always`, ...).
    pub jetstream: Vec<String>,
}

impl Default for NodeSpec {
    /// Debian's server, JetStream's defaults.
    fn default() -> Self {
        Self {
            binary: PathBuf::from(NATS_SERVER),
            jetstream: Vec::new(),
        }
    }
}

impl NodeSpec {
    /// The pinned current server named by `WXLEDGER_NATS_SERVER`, or why there is none.
    pub fn pinned() -> Result<Self, String> {
        let binary = std::env::var_os(PINNED_SERVER_VAR).ok_or_else(|| {
            format!(
                "{PINNED_SERVER_VAR} is not set: this needs the pinned nats-server 2.15 \
                 (atomic batches). scripts/test.sh installs and sets it; by hand: \
                 export {PINNED_SERVER_VAR}=$(scripts/install-nats-server.sh)"
            )
        })?;
        let binary = PathBuf::from(binary);
        if !binary.is_file() {
            return Err(format!(
                "{PINNED_SERVER_VAR}={} is not a file: run scripts/install-nats-server.sh",
                binary.display()
            ));
        }
        Ok(Self {
            binary,
            jetstream: Vec::new(),
        })
    }

    /// Every write fsynced before it is acknowledged (`sync_interval: always`, 2.10+).
    pub fn sync_always(mut self) -> Self {
        self.jetstream.push("sync_interval: always".into());
        self
    }
}

/// A free loopback port (free when asked; the server binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a loopback port is free")
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wxl-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
    dir
}

/// One nats-server with JetStream: killed and its directory removed on drop (also when a
/// test panics, and also while it is stopped with SIGSTOP).
pub struct NatsNode {
    port: u16,
    dir: PathBuf,
    config: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
}

/// Cluster membership of a node: its server name, the cluster's name, its route port and
/// the route ports of every member.
pub(super) struct Member<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub route_port: u16,
    pub routes: &'a [u16],
}

impl NatsNode {
    /// A standalone Debian server on a free port; answers once it is spawned (see
    /// [`Self::wait_listening`]).
    pub fn start() -> Self {
        Self::start_with(&NodeSpec::default())
    }

    /// A standalone server as `spec` says, on a free port.
    pub fn start_with(spec: &NodeSpec) -> Self {
        Self::spawned(None, spec)
    }

    pub(super) fn spawned(member: Option<Member<'_>>, spec: &NodeSpec) -> Self {
        let dir = temp_dir("nats");
        let port = free_port();
        let store = dir.join("store");
        let jetstream: String = spec.jetstream.iter().map(|l| format!("  {l}\n")).collect();
        let mut config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n{jetstream}}}\n",
            store.display()
        );
        if let Some(m) = member {
            let routes: Vec<String> = m
                .routes
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            config.push_str(&format!(
                "server_name: \"{}\"\ncluster {{\n  name: \"{}\"\n  listen: \"127.0.0.1:{}\"\n  \
                 routes: [{}]\n}}\n",
                m.name,
                m.cluster,
                m.route_port,
                routes.join(", ")
            ));
        }
        let path = dir.join("nats.conf");
        std::fs::write(&path, config).expect("the config is written");
        let mut node = Self {
            port,
            dir,
            config: path,
            binary: spec.binary.clone(),
            child: None,
        };
        node.spawn();
        node
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log (stdout and stderr), for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("server.log"), lines)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("the log opens");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
    }

    /// Whether the process runs (it may be stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Freezes the server (SIGSTOP): its sockets stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts the killed server again (same port, config and store) and answers the
    /// moment it accepts connections.
    pub async fn restart(&mut self) -> Instant {
        assert!(self.child.is_none(), "the server still runs");
        self.spawn();
        self.wait_listening().await
    }

    /// Waits (up to 10 s) until the client port accepts connections.
    pub async fn wait_listening(&self) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "nats-server never listened on {}:\n{}",
                self.port,
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last `lines` lines of a text file ("" when it cannot be read).
pub fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
