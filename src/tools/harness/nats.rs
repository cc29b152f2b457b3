//! Private nats-servers for fault runs: [`NatsNode`] is one `nats-server` with JetStream on
//! a fixed loopback port and its own store directory, so it can be killed, paused and
//! started again as the same server with the same streams; [`NatsCluster`] is three of
//! them routed into one JetStream cluster. Never the machine's shared server.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context};
use tokio::time::Instant;

/// The server binary (Debian's `nats-server` package).
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

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
    child: Option<Child>,
}

/// Cluster membership of a node: its server name, the cluster's name, its route port and
/// the route ports of every member.
struct Member<'a> {
    name: &'a str,
    cluster: &'a str,
    route_port: u16,
    routes: &'a [u16],
}

impl NatsNode {
    /// A standalone server on a free port; answers once it is spawned (see [`Self::wait_listening`]).
    pub fn start() -> Self {
        Self::spawned(None)
    }

    fn spawned(member: Option<Member<'_>>) -> Self {
        let dir = temp_dir("nats");
        let port = free_port();
        let store = dir.join("store");
        let mut config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n",
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
        let child = Command::new(NATS_SERVER)
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

/// Three nats-servers on loopback routed into one JetStream cluster, each with its own
/// store directory; node `i` is named `n<i>`.
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
}

impl NatsCluster {
    /// Starts three nodes and answers once the cluster has a JetStream meta leader and
    /// accepts an R3 stream (a probe stream is created and deleted).
    pub async fn start() -> anyhow::Result<Self> {
        let name = format!("wxl{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|i| {
                NatsNode::spawned(Some(Member {
                    name: &format!("n{i}"),
                    cluster: &name,
                    route_port: routes[i],
                    routes: &routes,
                }))
            })
            .collect();
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            node.wait_listening().await;
        }
        cluster
            .wait_ready(Duration::from_secs(30))
            .await
            .with_context(|| cluster.logs())?;
        Ok(cluster)
    }

    /// The client URLs of every node, comma-joined (what `nats.url` takes).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsNode::url).collect();
        urls.join(",")
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NatsNode {
        &self.nodes[i]
    }

    /// Node `i`, to kill, pause or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsNode {
        &mut self.nodes[i]
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again as the same server.
    pub async fn restart(&mut self, i: usize) -> Instant {
        self.nodes[i].restart().await
    }

    /// Every node's log tail, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!("--- nats n{i} ---\n{}\n", node.log_tail(15)));
        }
        out
    }

    /// A client of the running nodes.
    async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let urls = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.url().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(2)))
            .connect(urls)
            .await?;
        Ok(client)
    }

    /// The index of the node leading `stream`'s raft group, from `$JS.API.STREAM.INFO`'s
    /// `cluster.leader` (`None` while there is no leader, e.g. during an election).
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<Option<usize>> {
        let client = self.client().await?;
        let info = js_api(&client, &format!("STREAM.INFO.{stream}"), "").await?;
        Ok(info["cluster"]["leader"]
            .as_str()
            .and_then(|name| name.strip_prefix('n'))
            .and_then(|i| i.parse().ok()))
    }

    /// Waits until `stream` has a leader other than `not` (up to `within`); answers it.
    pub async fn wait_stream_leader(
        &self,
        stream: &str,
        not: Option<usize>,
        within: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(i)) = self.stream_leader(stream).await {
                if Some(i) != not {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("stream {stream} had no new leader within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let probe = format!("PROBE_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let config = serde_json::json!({
            "name": probe, "subjects": [format!("{}.>", probe.to_lowercase())],
            "num_replicas": 3, "storage": "memory",
        });
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.client().await {
                Ok(client) => {
                    match js_api(
                        &client,
                        &format!("STREAM.CREATE.{probe}"),
                        &config.to_string(),
                    )
                    .await
                    {
                        Ok(_) => {
                            js_api(&client, &format!("STREAM.DELETE.{probe}"), "").await?;
                            return Ok(());
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("the NATS cluster never accepted an R3 stream: {last}")
    }
}

/// One JetStream API request (`$JS.API.<what>`); an answer with `error` is an error.
async fn js_api(
    client: &async_nats::Client,
    what: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let answer = client
        .request(format!("$JS.API.{what}"), body.to_owned().into())
        .await
        .with_context(|| format!("$JS.API.{what}"))?;
    let value: serde_json::Value = serde_json::from_slice(&answer.payload)?;
    if let Some(error) = value.get("error") {
        bail!("$JS.API.{what}: {error}");
    }
    Ok(value)
}
