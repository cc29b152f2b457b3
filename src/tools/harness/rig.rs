//! [`Rig`]: everything a fault run stands on, started together: private nats-servers (a
//! [`NatsNode`] or a [`NatsCluster`]), the WeChat simulator in-process, a [`Balancer`], and
//! `wxledger serve` processes of one [`Deployment`] behind it, all ready. Used by the
//! cluster tests (which panic on its errors) and `wxledger bench faults`. The Postgres it
//! points at is the caller's (a [`super::PrivatePostgres`] or a test database); the caller
//! removes the schema when it is shared.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    check, Balancer, Daemon, Deployment, Load, LoadConfig, LoadReport, NatsCluster, NatsNode, Paid,
    Verdict,
};
use crate::{settings::SimSettings, sim::Simulator};

/// The private NATS a rig runs on: one node or a cluster.
pub trait NatsServers {
    /// The client URLs, comma-joined (what `nats.url` takes).
    fn urls(&self) -> String;
    /// The servers' log tails, for a failure message.
    fn logs(&self) -> String;
    /// The stream's replicas it supports (`nats.replicas`).
    fn replicas(&self) -> usize;
}

impl NatsServers for NatsNode {
    fn urls(&self) -> String {
        self.url()
    }
    fn logs(&self) -> String {
        format!("--- nats ---\n{}\n", self.log_tail(15))
    }
    fn replicas(&self) -> usize {
        1
    }
}

impl NatsServers for NatsCluster {
    fn urls(&self) -> String {
        NatsCluster::urls(self)
    }
    fn logs(&self) -> String {
        NatsCluster::logs(self)
    }
    fn replicas(&self) -> usize {
        3
    }
}

/// What a rig is made of besides its NATS.
#[derive(Debug)]
pub struct RigOptions {
    /// The `wxledger` binary the instances run.
    pub binary: PathBuf,
    /// The Postgres the instances use (`database.url`).
    pub database_url: String,
    /// The schema/stream/prefix tag (see [`Deployment::new`]).
    pub tag: String,
    /// Instances started (named `d0`, `d1`, ...).
    pub instances: usize,
    /// The simulator's settings (its retry schedule's `time_factor` above all).
    pub sim: SimSettings,
}

/// The servers, the simulator, the balancer and the instances; the instances are killed
/// and the simulator stopped on drop.
pub struct Rig<N> {
    /// The private NATS.
    pub nats: N,
    /// The simulator's base URL.
    pub sim: String,
    /// The balancer in front of the instances (also `pay.notify_url`'s host).
    pub balancer: Balancer,
    /// What every instance shares.
    pub deployment: Deployment,
    /// The instances, killed ones included (in start order).
    pub daemons: Vec<Daemon>,
    /// A plain HTTP client.
    pub http: reqwest::Client,
    sim_stop: CancellationToken,
}

impl<N: NatsServers> Rig<N> {
    /// Starts the simulator, the balancer and `options.instances` instances on `nats`,
    /// and answers once every instance is ready and behind the balancer.
    pub async fn start(nats: N, options: RigOptions) -> anyhow::Result<Self> {
        let sim = Simulator::build(&options.sim)
            .await
            .context("the simulator binds")?;
        let sim_base = format!("http://{}", sim.local_addr());
        let sim_stop = sim.stop_token();
        tokio::spawn(sim.run_until_stopped());
        let balancer = Balancer::start(Vec::new()).await?;
        let mut deployment = Deployment::new(
            options.binary,
            &nats.urls(),
            &options.database_url,
            &options.tag,
        );
        deployment.replicas = nats.replicas();
        deployment.wechat_base = sim_base.clone();
        deployment.notify_url = format!("{}/webhooks/wechatpay", balancer.base());
        let mut rig = Self {
            nats,
            sim: sim_base,
            balancer,
            deployment,
            daemons: Vec::new(),
            http: reqwest::Client::new(),
            sim_stop,
        };
        for i in 0..options.instances {
            if let Err(e) = rig.add_instance(&format!("d{i}")).await {
                return Err(e.context(rig.nats.logs()));
            }
        }
        for d in &rig.daemons {
            d.ready(Duration::from_secs(30))
                .await
                .with_context(|| rig.logs())?;
        }
        Ok(rig)
    }

    /// Starts one more instance and, the moment it serves (not waiting for `/readyz`),
    /// puts the running instances behind the balancer, as a supervisor would.
    pub async fn add_instance(&mut self, name: &str) -> anyhow::Result<&Daemon> {
        let daemon = self.deployment.spawn(name).await?;
        self.daemons.push(daemon);
        self.balancer.set_backends(self.running());
        Ok(self.daemons.last().expect("just pushed"))
    }

    /// The running instances' addresses.
    pub fn running(&self) -> Vec<SocketAddr> {
        self.daemons
            .iter()
            .filter(|d| d.is_running())
            .map(Daemon::addr)
            .collect()
    }

    /// Every instance's and server's log tail, for a failure message.
    pub fn logs(&self) -> String {
        let mut out: String = self.daemons.iter().map(|d| d.log_tail(25)).collect();
        out.push_str(&self.nats.logs());
        out
    }

    /// The load's settings: `users` through the balancer, 1 yuan orders.
    pub fn load_config(&self, users: usize) -> LoadConfig {
        LoadConfig {
            api: self.balancer.base(),
            sim: self.sim.clone(),
            users,
            amount: 100,
            pause: Duration::from_millis(20),
            give_up_after: Duration::from_secs(30),
        }
    }

    /// A load of `users` through the balancer.
    pub fn load(&self, users: usize) -> Load {
        Load::start(self.load_config(users))
    }

    /// The running instances leading `role` by their `wxledger_leader` gauge.
    pub async fn leaders(&self, role: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, d) in self.daemons.iter().enumerate() {
            if d.is_running() && d.leads(&self.http, role).await {
                out.push(i);
            }
        }
        out
    }

    /// Waits (up to `within`) until exactly one running instance leads `role`; answers it.
    pub async fn wait_leader(&self, role: &str, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            let leaders = self.leaders(role).await;
            if let [one] = leaders[..] {
                return Ok(one);
            }
            if Instant::now() > deadline {
                bail!("no single {role} leader within {within:?} (leading: {leaders:?})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The projection's checkpoint (0 before the first event).
    pub async fn checkpoint(&self) -> anyhow::Result<i64> {
        let db = self.deployment.db().await?;
        let row = db
            .query_opt("SELECT last_seq FROM projector_checkpoints", &[])
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// A simulator control call.
    async fn sim_call(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.sim))
            .json(&body)
            .send()
            .await?;
        Ok(resp.error_for_status()?.json().await?)
    }

    /// A POST through the balancer; its answer's body when 2xx.
    async fn api_post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.balancer.base()))
            .json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {body}");
        }
        Ok(body)
    }

    /// Logs `openid` in through the balancer; answers the bearer token.
    pub async fn login(&self, openid: &str) -> anyhow::Result<String> {
        let code = self
            .sim_call("/sim/mini/login-codes", json!({"openid": openid}))
            .await?;
        let login = self
            .api_post("/v1/auth/login", None, json!({"code": code["code"]}))
            .await?;
        login["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no token in {login}"))
    }

    /// `n` orders of one user, placed and given their prepay through the balancer, not
    /// paid yet.
    pub async fn unpaid_orders(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let token = self.login("o-rig-unpaid").await?;
        let mut out = Vec::new();
        for _ in 0..n {
            let body = json!({"amount": 100, "description": "held"});
            let order = self.api_post("/v1/orders", Some(&token), body).await?;
            let no = order["out_trade_no"]
                .as_str()
                .with_context(|| format!("no out_trade_no in {order}"))?
                .to_owned();
            let path = format!("/v1/orders/{no}/wechat-pay");
            self.api_post(&path, Some(&token), json!({})).await?;
            out.push(no);
        }
        Ok(out)
    }

    /// The simulated users pay `orders` (WeChat sends the notifies).
    pub async fn pay(&self, orders: &[String]) -> anyhow::Result<Vec<Paid>> {
        let mut out = Vec::new();
        for no in orders {
            let paid = self
                .sim_call("/sim/pay/pay", json!({"out_trade_no": no}))
                .await?;
            out.push(Paid {
                out_trade_no: no.clone(),
                transaction_id: paid["transaction_id"]
                    .as_str()
                    .with_context(|| format!("no transaction_id in {paid}"))?
                    .to_owned(),
                amount: 100,
            });
        }
        Ok(out)
    }

    /// Stops the load and checks its payments and `also` (waiting up to 30 s for them to
    /// be booked); the caller judges the verdict.
    pub async fn verdict(
        &self,
        load: Load,
        also: Vec<Paid>,
    ) -> anyhow::Result<(LoadReport, Verdict)> {
        let mut report = load.stop().await;
        report.paid.extend(also);
        let verdict = check(&self.deployment, &report.paid, Duration::from_secs(30)).await?;
        Ok((report, verdict))
    }
}

impl<N> Drop for Rig<N> {
    fn drop(&mut self) {
        self.sim_stop.cancel();
        for d in &mut self.daemons {
            d.kill();
        }
    }
}
