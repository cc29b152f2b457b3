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
    free_ports(1)[0]
}

/// `n` distinct free loopback ports. They are bound all at once and then released: ports
/// asked for one at a time may repeat, since a port released is free to be handed out
/// again (a node once got its own client port as its route port).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port is free"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound socket has an address")
                .port()
        })
        .collect()
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
    /// Where the running process's lines start in `server.log` (appended to across
    /// restarts).
    log_from: u64,
    /// A standalone server that never listened yet: nobody knows its client port, which
    /// may still change.
    movable: bool,
}

/// Cluster membership of a node: its server name, the cluster's name, its client and
/// route ports, and the route ports of every member.
pub(super) struct Member<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub client_port: u16,
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
        let movable = member.is_none();
        let port = member.as_ref().map_or_else(free_port, |m| m.client_port);
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
            log_from: 0,
            movable,
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
        self.log_from = log.metadata().map_or(0, |m| m.len());
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

    /// Waits (up to 10 s) until the client port accepts connections; panics with the
    /// server's log when it does not (see [`Self::listening`]).
    pub async fn wait_listening(&mut self) -> Instant {
        self.listening().await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Waits (up to 10 s) until the client port accepts connections, or says why not (the
    /// server exited, or never listened) with its log. A standalone server that exits
    /// before it ever listened because its port was taken meanwhile (another test picked
    /// it too) is started again on a fresh port, up to three times; a cluster member or a
    /// restarted server is not, as others know its port.
    pub async fn listening(&mut self) -> anyhow::Result<Instant> {
        let mut deadline = Instant::now() + Duration::from_secs(10);
        let mut moved = 0;
        loop {
            // Its own log says so: a connection alone may reach whoever took the port.
            if self.says_listening()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            {
                self.movable = false;
                return Ok(Instant::now());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = self.log_tail(20);
                if self.movable && moved < 3 && log.contains("address already in use") {
                    moved += 1;
                    self.move_to(free_port());
                    self.spawn();
                    deadline = Instant::now() + Duration::from_secs(10);
                    continue;
                }
                anyhow::bail!(
                    "nats-server on {} exited ({status}) before listening:\n{log}",
                    self.port
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "nats-server never listened on {}:\n{}",
                    self.port,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether the running process logged that it listens for clients on its port.
    fn says_listening(&self) -> bool {
        let Ok(log) = std::fs::read(self.dir.join("server.log")) else {
            return false;
        };
        let from = usize::try_from(self.log_from).unwrap_or(usize::MAX);
        let line = format!(
            "Listening for client connections on 127.0.0.1:{}",
            self.port
        );
        log.get(from..)
            .is_some_and(|new| String::from_utf8_lossy(new).contains(&line))
    }

    /// Rewrites the config to listen for clients on `port`.
    fn move_to(&mut self, port: u16) {
        let config = std::fs::read_to_string(&self.config).expect("the config reads");
        let moved = config.replacen(
            &format!("listen: \"127.0.0.1:{}\"", self.port),
            &format!("listen: \"127.0.0.1:{port}\""),
            1,
        );
        std::fs::write(&self.config, moved).expect("the config is written");
        self.port = port;
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
