//! The cluster tests' rig: a private 3-node NATS cluster, the simulator in-process, a
//! balancer, and `wxledger serve` processes on one schema and an R3 stream behind it,
//! all from [`wxledger::tools::harness`]. One rig at a time (a static mutex): the
//! cluster tests are heavy for a 2-core machine and must not race each other.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::{sync::MutexGuard, time::Instant};
use tokio_util::sync::CancellationToken;
use wxledger::{
    sim::Simulator,
    tools::harness::{
        self, Balancer, Daemon, Deployment, Load, LoadConfig, NatsCluster, Paid, Verdict,
    },
};

use crate::common::{blocking, database_url, drop_schema, sim_settings};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Rig {
    pub nats: NatsCluster,
    pub sim: String,
    pub balancer: Balancer,
    pub deployment: Deployment,
    pub daemons: Vec<Daemon>,
    pub http: reqwest::Client,
    sim_stop: CancellationToken,
    _serial: MutexGuard<'static, ()>,
}

impl Rig {
    /// A 3-node cluster and `n` instances on one schema and R3 stream, all ready.
    pub async fn start(n: usize) -> Self {
        let serial = SERIAL.lock().await;
        let nats = NatsCluster::start().await.expect("the NATS cluster starts");
        let sim = Simulator::build(&sim_settings())
            .await
            .expect("simulator binds");
        let sim_base = format!("http://{}", sim.local_addr());
        let sim_stop = sim.stop_token();
        tokio::spawn(sim.run_until_stopped());
        let balancer = Balancer::start(Vec::new()).await.unwrap();
        let mut deployment = Deployment::new(
            env!("CARGO_BIN_EXE_wxledger"),
            &nats.urls(),
            &database_url(),
            "cl",
        );
        deployment.replicas = 3;
        deployment.wechat_base = sim_base.clone();
        deployment.notify_url = format!("{}/webhooks/wechatpay", balancer.base());
        let mut daemons = Vec::new();
        for i in 0..n {
            match deployment.spawn(&format!("d{i}")).await {
                Ok(d) => daemons.push(d),
                Err(e) => panic!("instance d{i} did not start: {e:#}\n{}", nats.logs()),
            }
        }
        let rig = Self {
            nats,
            sim: sim_base,
            balancer,
            deployment,
            daemons,
            http: reqwest::Client::new(),
            sim_stop,
            _serial: serial,
        };
        for d in &rig.daemons {
            if let Err(e) = d.ready(Duration::from_secs(30)).await {
                panic!("{e:#}\n{}", rig.logs());
            }
        }
        rig.balancer
            .set_backends(rig.daemons.iter().map(Daemon::addr).collect());
        rig
    }

    /// Every instance's and node's log tail, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out: String = self.daemons.iter().map(|d| d.log_tail(25)).collect();
        out.push_str(&self.nats.logs());
        out
    }

    /// A load of `users` through the balancer.
    pub fn load(&self, users: usize) -> Load {
        Load::start(LoadConfig {
            api: self.balancer.base(),
            sim: self.sim.clone(),
            users,
            amount: 100,
            pause: Duration::from_millis(20),
            give_up_after: Duration::from_secs(30),
        })
    }

    /// The instances leading `role` by their `wxledger_leader` gauge (the killed ones
    /// are not asked).
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
    pub async fn wait_leader(&self, role: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let leaders = self.leaders(role).await;
            if let [one] = leaders[..] {
                return one;
            }
            assert!(
                Instant::now() < deadline,
                "no single {role} leader within {within:?} (leading: {leaders:?})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The projection's checkpoint.
    pub async fn checkpoint(&self) -> i64 {
        let db = self.deployment.db().await.unwrap();
        db.query_opt("SELECT last_seq FROM projector_checkpoints", &[])
            .await
            .unwrap()
            .map_or(0, |r| r.get(0))
    }

    /// `n` orders of one user, placed and given their prepay through the balancer,
    /// not paid yet.
    pub async fn unpaid_orders(&self, n: usize) -> Vec<String> {
        let api = self.balancer.base();
        let sim = |path: &str, body: Value| {
            let req = self.http.post(format!("{}{path}", self.sim)).json(&body);
            async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let code = sim(
            "/sim/mini/login-codes",
            json!({"openid": "o-cluster-unpaid"}),
        )
        .await;
        let post = |path: String, token: Option<&str>, body: Value| {
            let mut req = self.http.post(format!("{api}{path}")).json(&body);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let login = post("/v1/auth/login".into(), None, json!({"code": code["code"]})).await;
        let token = login["token"].as_str().expect("logged in").to_owned();
        let mut out = Vec::new();
        for _ in 0..n {
            let body = json!({"amount": 100, "description": "held"});
            let order = post("/v1/orders".into(), Some(&token), body).await;
            let no = order["out_trade_no"].as_str().expect("placed").to_owned();
            let prepay = post(
                format!("/v1/orders/{no}/wechat-pay"),
                Some(&token),
                json!({}),
            )
            .await;
            assert!(prepay.is_object(), "prepay: {prepay}");
            out.push(no);
        }
        out
    }

    /// The simulated users pay `orders` (WeChat sends the notifies).
    pub async fn pay(&self, orders: &[String]) -> Vec<Paid> {
        let mut out = Vec::new();
        for no in orders {
            let paid: Value = self
                .http
                .post(format!("{}/sim/pay/pay", self.sim))
                .json(&json!({"out_trade_no": no}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.push(Paid {
                out_trade_no: no.clone(),
                transaction_id: paid["transaction_id"].as_str().unwrap().to_owned(),
                amount: 100,
            });
        }
        out
    }

    /// Stops the load and checks its payments: none lost, none doubled, audit clean.
    pub async fn verdict(&self, load: Load, also: Vec<Paid>) -> (harness::LoadReport, Verdict) {
        let mut report = load.stop().await;
        report.paid.extend(also);
        let verdict = harness::check(&self.deployment, &report.paid, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("the check runs: {e:#}\n{}", self.logs()));
        assert!(
            verdict.is_clean(),
            "lost or doubled: {verdict:#?}\n{:?}\n{}",
            report.tally,
            self.logs()
        );
        (report, verdict)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.sim_stop.cancel();
        for d in &mut self.daemons {
            d.kill();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let (url, schema) = (database_url(), self.deployment.schema.clone());
        blocking(async move { drop_schema(&url, &schema).await });
    }
}

/// Holds the cluster tests' lock, for a test that starts its own servers.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}
