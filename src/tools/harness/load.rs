//! A load that behaves like WeChat and a mini program in front of a balancer: users log
//! in, place orders and ask for their prepay, retrying 5xx answers and connection errors
//! as a client would (same `Idempotency-Key`), and pay in the simulator, which delivers
//! the notifies (to the deployment's `pay.notify_url`, the balancer) with its own
//! time-scaled retry schedule. Every answer is counted by kind; every payment the
//! simulator made is remembered for `super::check`.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The balancer's base URL (the API and webhooks behind it).
    pub api: String,
    /// The simulator's base URL (its `/sim/...` controls).
    pub sim: String,
    /// Users, each placing and paying one order after another.
    pub users: usize,
    /// Each order's amount, in fen.
    pub amount: i64,
    /// A user's pause between two orders.
    pub pause: Duration,
    /// How long a client keeps retrying one request before it gives up.
    pub give_up_after: Duration,
}

/// Answers by kind, as the clients saw them.
#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    connection_errors: AtomicU64,
    retries: AtomicU64,
    gave_up: AtomicU64,
}

/// A snapshot of `Counts`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// Requests that got no answer (refused, reset, timed out).
    pub connection_errors: u64,
    /// Requests sent again after a 5xx or a connection error.
    pub retries: u64,
    /// Requests given up after [`LoadConfig::give_up_after`] of retrying.
    pub gave_up: u64,
}

impl Counts {
    fn tally(&self) -> Tally {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Tally {
            ok: get(&self.ok),
            client_errors: get(&self.client_errors),
            server_errors: get(&self.server_errors),
            connection_errors: get(&self.connection_errors),
            retries: get(&self.retries),
            gave_up: get(&self.gave_up),
        }
    }
}

/// One payment the simulator made (the user paid; WeChat now owes a notify).
#[derive(Debug, Clone, Serialize)]
pub struct Paid {
    /// The order.
    pub out_trade_no: String,
    /// WeChat's transaction id.
    pub transaction_id: String,
    /// Fen.
    pub amount: i64,
}

struct Shared {
    config: LoadConfig,
    http: reqwest::Client,
    counts: Counts,
    paid: Mutex<Vec<Paid>>,
    stop: CancellationToken,
}

/// A running load.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Answers by kind.
    pub tally: Tally,
    /// Every payment the simulator made.
    pub paid: Vec<Paid>,
}

impl Load {
    /// Starts `config.users` users.
    pub fn start(config: LoadConfig) -> Self {
        // A connection per request: the balancer spreads connections, not requests.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client builds");
        let shared = Arc::new(Shared {
            config,
            http,
            counts: Counts::default(),
            paid: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        });
        let tasks = (0..shared.config.users)
            .map(|i| tokio::spawn(user(shared.clone(), i)))
            .collect();
        Self { shared, tasks }
    }

    /// Answers so far.
    pub fn tally(&self) -> Tally {
        self.shared.counts.tally()
    }

    /// Payments the simulator made so far.
    pub fn paid(&self) -> usize {
        self.shared.paid.lock().expect("never poisoned").len()
    }

    /// The payments the simulator made so far.
    pub fn paid_list(&self) -> Vec<Paid> {
        self.shared.paid.lock().expect("never poisoned").clone()
    }

    /// Waits until the simulator made at least `n` payments (up to `within`).
    pub async fn wait_paid(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.paid() < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Lets every user finish the order in hand, then stops.
    pub async fn stop(mut self) -> LoadReport {
        self.shared.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        LoadReport {
            tally: self.shared.counts.tally(),
            paid: self.shared.paid.lock().expect("never poisoned").clone(),
        }
    }
}

impl Drop for Load {
    /// A load dropped without [`Load::stop`] (a run that failed) stops too.
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// One user: logs in, then orders, gets the prepay and pays, until stopped.
async fn user(shared: Arc<Shared>, i: usize) {
    let openid = format!(
        "o-load-{i}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let Some(token) = login(&shared, &openid).await else {
        return;
    };
    while !shared.stop.is_cancelled() {
        if let Some(paid) = order(&shared, &token).await {
            shared.paid.lock().expect("never poisoned").push(paid);
        }
        tokio::select! {
            _ = shared.stop.cancelled() => {}
            _ = tokio::time::sleep(shared.config.pause) => {}
        }
    }
}

async fn login(shared: &Shared, openid: &str) -> Option<String> {
    let code = sim(shared, "/sim/mini/login-codes", json!({"openid": openid})).await?;
    let body = json!({"code": code["code"]});
    let (status, answer) = call(shared, Method::POST, "/v1/auth/login", None, Some(body)).await?;
    (status == 200).then(|| answer["token"].as_str().map(str::to_owned))?
}

/// One order placed, its prepay asked for and paid in the simulator.
async fn order(shared: &Shared, token: &str) -> Option<Paid> {
    let body = json!({"amount": shared.config.amount, "description": "load"});
    let (status, order) = call(shared, Method::POST, "/v1/orders", Some(token), Some(body)).await?;
    let no = order["out_trade_no"]
        .as_str()
        .filter(|_| status / 100 == 2)?
        .to_owned();
    let path = format!("/v1/orders/{no}/wechat-pay");
    let (status, _) = call(shared, Method::POST, &path, Some(token), None).await?;
    if status != 200 {
        return None;
    }
    let paid = sim(shared, "/sim/pay/pay", json!({"out_trade_no": no})).await?;
    Some(Paid {
        out_trade_no: no,
        transaction_id: paid["transaction_id"].as_str()?.to_owned(),
        amount: shared.config.amount,
    })
}

/// A simulator control call (not through the balancer; never faulted).
async fn sim(shared: &Shared, path: &str, body: Value) -> Option<Value> {
    let url = format!("{}{path}", shared.config.sim);
    let resp = shared.http.post(url).json(&body).send().await.ok()?;
    resp.json().await.ok()
}

/// A request through the balancer, sent again with the same `Idempotency-Key` after a
/// 5xx or a connection error (50 ms, doubling to 1 s) until it is answered otherwise or
/// [`LoadConfig::give_up_after`] passed. `None` when given up.
async fn call(
    shared: &Shared,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let key = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + shared.config.give_up_after;
    let mut backoff = Duration::from_millis(50);
    let counts = &shared.counts;
    loop {
        let mut req = shared
            .http
            .request(method.clone(), format!("{}{path}", shared.config.api))
            .header("Idempotency-Key", &key);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = &body {
            req = req.json(body);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_server_error() => {
                counts.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let counter = if status / 100 == 2 {
                    &counts.ok
                } else {
                    &counts.client_errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let value = resp.json().await.unwrap_or(Value::Null);
                return Some((status, value));
            }
            Err(_) => {
                counts.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if Instant::now() + backoff > deadline {
            counts.gave_up.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        counts.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The simulator's notify deliveries by the answer they got.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct NotifyTally {
    /// Attempts answered 2xx.
    pub ok: u64,
    /// Attempts answered 5xx.
    pub server_errors: u64,
    /// Attempts answered otherwise (4xx).
    pub other: u64,
    /// Attempts with no answer (refused, reset, timed out).
    pub unanswered: u64,
    /// Attempts after the first, WeChat's retries.
    pub retries: u64,
}

/// Every notify attempt the simulator at `sim` made so far, counted by answer.
pub async fn notify_tally(http: &reqwest::Client, sim: &str) -> anyhow::Result<NotifyTally> {
    let deliveries: Vec<Value> = http
        .get(format!("{sim}/sim/pay/deliveries"))
        .send()
        .await?
        .json()
        .await?;
    let mut tally = NotifyTally::default();
    for d in &deliveries {
        match d["status"].as_u64() {
            Some(s) if s / 100 == 2 => tally.ok += 1,
            Some(s) if s / 100 == 5 => tally.server_errors += 1,
            Some(_) => tally.other += 1,
            None => tally.unanswered += 1,
        }
        if d["attempt"].as_u64().is_some_and(|a| a > 1) {
            tally.retries += 1;
        }
    }
    Ok(tally)
}
