//! [`NatsCluster`]: three private nats-servers on loopback routed into one JetStream
//! cluster, each with its own store directory; which node leads a stream, from the
//! JetStream API; kill and restart a node.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use super::nats::{free_ports, Member, NatsNode, NodeSpec};

/// Three nats-servers on loopback routed into one JetStream cluster, each with its own
/// store directory; node `i` is named `n<i>`.
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
}

impl NatsCluster {
    /// Starts three nodes and answers once the cluster has a JetStream meta leader and
    /// accepts an R3 stream (a probe stream is created and deleted). A cluster that does
    /// not get there (a node that exits, seen on a loaded machine when a port picked free
    /// was taken before its node bound it, or no leader within 30 s) is removed and
    /// started again on fresh ports, once.
    pub async fn start() -> anyhow::Result<Self> {
        match Self::start_once().await {
            Ok(cluster) => Ok(cluster),
            Err(first) => {
                eprintln!("the NATS cluster did not form; starting it again: {first:#}");
                Self::start_once().await
            }
        }
    }

    async fn start_once() -> anyhow::Result<Self> {
        let name = format!("wxl{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let ports = free_ports(6);
        let (clients, routes) = ports.split_at(3);
        let nodes = (0..3)
            .map(|i| {
                NatsNode::spawned(
                    Some(Member {
                        name: &format!("n{i}"),
                        cluster: &name,
                        client_port: clients[i],
                        route_port: routes[i],
                        routes,
                    }),
                    &NodeSpec::default(),
                )
            })
            .collect();
        let mut cluster = Self { nodes };
        for node in &mut cluster.nodes {
            node.listening().await?;
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
        self.client_timing_out(Duration::from_secs(2)).await
    }

    /// A client of the running nodes whose requests wait `timeout` for an answer.
    async fn client_timing_out(&self, timeout: Duration) -> anyhow::Result<async_nats::Client> {
        let urls = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.url().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(timeout))
            .connect(urls)
            .await?;
        Ok(client)
    }

    /// The index of the node leading `stream`'s raft group, from `$JS.API.STREAM.INFO`'s
    /// `cluster.leader` (`None` while there is no leader, e.g. during an election).
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<Option<usize>> {
        Self::leader_of(&self.client().await?, stream).await
    }

    async fn leader_of(client: &async_nats::Client, stream: &str) -> anyhow::Result<Option<usize>> {
        let info = js_api(client, &format!("STREAM.INFO.{stream}"), "").await?;
        Ok(info["cluster"]["leader"]
            .as_str()
            .and_then(|name| name.strip_prefix('n'))
            .and_then(|i| i.parse().ok()))
    }

    /// Waits until `stream` has a leader other than `not` (up to `within`); answers it.
    /// Asks every `LEADER_POLL`, each ask waiting at most `LEADER_ASK` (an ask sent
    /// during the election goes unanswered), so it learns of a new leader soon after it
    /// is elected: the fault bench times elections with it.
    pub async fn wait_stream_leader(
        &self,
        stream: &str,
        not: Option<usize>,
        within: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        let client = self.client_timing_out(LEADER_ASK).await?;
        loop {
            if let Ok(Some(i)) = Self::leader_of(&client, stream).await {
                if Some(i) != not {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("stream {stream} had no new leader within {within:?}");
            }
            tokio::time::sleep(LEADER_POLL).await;
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
/// How often [`NatsCluster::wait_stream_leader`] asks.
const LEADER_POLL: Duration = Duration::from_millis(50);
/// How long one of its asks may take.
const LEADER_ASK: Duration = Duration::from_millis(250);

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
