//! The test environment: the machine's real NATS and Postgres, a fresh schema and stream
//! per test, the simulator and the daemon started in-process on free ports, spoken to
//! over HTTP. Everything is removed when the environment drops.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wxledger::{sim::Simulator, store::stream::EventLog, App, Settings};

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
pub const SEALING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

pub fn nats_url() -> String {
    std::env::var("WXLEDGER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn database_url() -> String {
    std::env::var("WXLEDGER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Settings for one isolated test: own schema, stream and subject prefix.
pub fn isolated_settings(sim_base: &str) -> Settings {
    let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut s = Settings::development();
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.sim.listen = "127.0.0.1:0".parse().unwrap();
    s.nats.url = nats_url();
    s.nats.stream = format!("T_{id}");
    s.nats.subject_prefix = format!("t_{id}");
    s.nats.connect_timeout = Duration::from_secs(5);
    s.database.url = database_url();
    s.database.schema = format!("t_{id}");
    s.database.pool_size = 4;
    s.database.connect_timeout = Duration::from_secs(5);
    s.wechat.api_base = sim_base.to_owned();
    s.wechat.busy_backoff = Duration::from_millis(10);
    s.auth.jwt_secret = Some(JWT_SECRET.into());
    s.auth.session_key_encryption_key = Some(SEALING_KEY.into());
    s.projector.batch_linger = Duration::from_millis(2);
    s.auth.admin_token = Some(ADMIN_TOKEN.into());
    s.pay.api_base = sim_base.to_owned();
    s.pay.expiry_sweep = Duration::from_millis(100);
    s
}

/// A running daemon and simulator with their own schema and stream.
pub struct TestEnv {
    pub api: String,
    /// The `metrics.listen` base URL, when the test set one.
    pub metrics: Option<String>,
    pub sim: String,
    pub http: reqwest::Client,
    pub schema: String,
    pub stream: String,
    pub prefix: String,
    pub pool: deadpool_postgres::Pool,
    pub log: EventLog,
    /// Seconds added to the daemon's clock (tests move time with it).
    pub clock_offset: Arc<AtomicI64>,
    app_stop: CancellationToken,
    sim_stop: CancellationToken,
    app_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestEnv {
    /// Starts with default test settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts after `adjust` changed the settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        Self::start_full(|_| {}, adjust).await
    }

    /// Starts after `adjust_sim` changed the simulator's settings and `adjust` the daemon's.
    pub async fn start_full(
        adjust_sim: impl FnOnce(&mut wxledger::settings::SimSettings),
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut sim_settings = sim_settings();
        adjust_sim(&mut sim_settings);
        let sim = Simulator::build(&sim_settings)
            .await
            .expect("simulator binds");
        let sim_base = format!("http://{}", sim.local_addr());
        let sim_stop = sim.stop_token();
        tokio::spawn(sim.run_until_stopped());

        let mut settings = isolated_settings(&sim_base);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        settings.pay.notify_url = format!(
            "http://{}/webhooks/wechatpay",
            listener.local_addr().unwrap()
        );
        adjust(&mut settings);
        settings.validate().expect("test settings are valid");
        let (schema, stream, prefix) = (
            settings.database.schema.clone(),
            settings.nats.stream.clone(),
            settings.nats.subject_prefix.clone(),
        );
        let pool = wxledger::store::db::pool(&settings.database).unwrap();
        // A reader of our own, straight to NATS (the daemon's URL may be a proxy).
        let mut reader_settings = wxledger::settings::NatsSettings {
            url: nats_url(),
            ..Default::default()
        };
        reader_settings.stream = stream.clone();
        reader_settings.subject_prefix = prefix.clone();

        let clock_offset = Arc::new(AtomicI64::new(0));
        let offset = clock_offset.clone();
        let clock: wxledger::core::clock::Clock = Arc::new(move || {
            chrono::Utc::now() + chrono::Duration::seconds(offset.load(Ordering::Relaxed))
        });
        let app = App::build_on(settings, clock, listener)
            .await
            .expect("daemon starts");
        let api = format!("http://{}", app.local_addr());
        let metrics = app.metrics_addr().map(|a| format!("http://{a}"));
        let app_stop = app.stop_token();
        let app_task = tokio::spawn(app.run_until_stopped());
        let log = EventLog::connect(&reader_settings)
            .await
            .expect("reader connects");
        Self {
            api,
            metrics,
            sim: sim_base,
            http: reqwest::Client::new(),
            schema,
            stream,
            prefix,
            pool,
            log,
            clock_offset,
            app_stop,
            sim_stop,
            app_task: Some(app_task),
        }
    }

    /// Stops the daemon and waits for it (the projector finishes its batch).
    pub async fn stop_daemon(&mut self) {
        self.app_stop.cancel();
        if let Some(task) = self.app_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// Calls the daemon; answers status and JSON body (Null when none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("daemon answers");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Calls a simulator control endpoint.
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        sim_control(&self.http, &self.sim, path, body).await
    }

    pub async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn login_code(&self, openid: &str) -> String {
        self.sim_post("/sim/mini/login-codes", json!({"openid": openid}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn phone_code(&self, phone: &str) -> String {
        self.sim_post("/sim/mini/phone-codes", json!({"phone_number": phone}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `POST /v1/auth/login {code}`.
    pub async fn post_login(&self, code: impl serde::Serialize) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "code": code })),
        )
        .await
    }

    /// Logs `openid` in; returns (token, user_id).
    pub async fn login(&self, openid: &str) -> (String, String) {
        let code = self.login_code(openid).await;
        let (status, body) = self.post_login(code).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["token"].as_str().unwrap().to_owned(),
            body["user_id"].as_str().unwrap().to_owned(),
        )
    }

    /// The newest stream sequence (0 when empty).
    pub async fn last_seq(&self) -> u64 {
        self.log.last_seq().await.expect("stream info")
    }

    /// Every event on the stream, as `(seq, subject-less envelope JSON)`.
    pub async fn events(&self) -> Vec<(u64, Value)> {
        let last = self.last_seq().await;
        let mut out = Vec::new();
        if last == 0 {
            return out;
        }
        let mut messages = self.log.read_from(1).await.unwrap();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        {
            let (seq, payload) = m.unwrap();
            out.push((seq, serde_json::from_slice(&payload).unwrap()));
            if seq >= last {
                break;
            }
        }
        assert_eq!(out.last().map(|e| e.0), Some(last), "read every event");
        out
    }

    /// Every event's type, in order.
    pub async fn event_types(&self) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .map(|(_, e)| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Checks every event on the stream against `schema/`.
    pub async fn assert_events_match_schemas(&self) {
        let validators = SchemaSet::load();
        for (seq, event) in self.events().await {
            validators.check(seq, &event);
        }
    }

    /// A connection to the test's schema.
    pub async fn db(&self) -> deadpool_postgres::Object {
        self.pool.get().await.unwrap()
    }

    /// The users table as text, in a stable order: for byte-for-byte comparisons.
    pub async fn users_dump(&self) -> String {
        dump_table(&**self.db().await, "users", "user_id").await
    }
}

/// POSTs to a simulator control endpoint at `base`, which must answer 2xx with JSON.
pub async fn sim_control(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let resp = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "sim {path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// A table as text (every column, `ORDER BY key`).
pub async fn dump_table(client: &tokio_postgres::Client, table: &str, key: &str) -> String {
    let rows = client
        .query(
            &format!("SELECT t::text FROM {table} t ORDER BY {key}"),
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.app_stop.cancel();
        self.sim_stop.cancel();
        let (schema, url, stream, prefix) = (
            self.schema.clone(),
            database_url(),
            self.stream.clone(),
            self.prefix.clone(),
        );
        blocking(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop_schema(&url, &schema).await;
            let settings = wxledger::settings::NatsSettings {
                url: nats_url(),
                stream,
                subject_prefix: prefix,
                connect_timeout: Duration::from_secs(3),
                ..Default::default()
            };
            if let Ok(log) = EventLog::connect(&settings).await {
                // The outcome stream with it.
                let _ = log.delete_stream().await;
            }
        });
    }
}

/// Runs `work` to completion on a thread with its own runtime: for clean-up in `Drop`,
/// which cannot await.
pub fn blocking(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join();
}

/// Drops a test schema, ignoring failures (the test's verdict is already in). Never waits
/// long: a connection of the stopped daemon, parked on the test's runtime (which this drop
/// blocks), may hold a lock on the schema's tables; it is terminated after a short wait.
pub async fn drop_schema(url: &str, schema: &str) {
    let work = wxledger::tools::harness::daemon::drop_schema(url, schema);
    let _ = tokio::time::timeout(Duration::from_secs(30), work).await;
}

/// The JSON Schemas of `schema/`, compiled.
pub struct SchemaSet {
    envelope: jsonschema::Validator,
    outcome_envelope: jsonschema::Validator,
    data: HashMap<String, jsonschema::Validator>,
}

impl SchemaSet {
    pub fn load() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let compile = |file: &Path| {
            let text = std::fs::read_to_string(file).unwrap();
            let schema: Value = serde_json::from_str(&text).unwrap();
            jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        };
        let mut data = HashMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.ends_with(".json") && !name.ends_with("envelope.v1.json") {
                data.insert(name.trim_end_matches(".json").to_owned(), compile(&path));
            }
        }
        Self {
            envelope: compile(&dir.join("envelope.v1.json")),
            outcome_envelope: compile(&dir.join("outcome.envelope.v1.json")),
            data,
        }
    }

    /// Checks an outcome against `outcome.envelope.v1.json` and its data schema.
    pub fn check_outcome(&self, outcome: &Value) {
        let errors: Vec<String> = self
            .outcome_envelope
            .iter_errors(outcome)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "outcome envelope: {errors:?}\n{outcome}");
        let key = format!(
            "outcome.{}.v{}",
            outcome["type"].as_str().unwrap(),
            outcome["version"].as_u64().unwrap()
        );
        let validator = self
            .data
            .get(&key)
            .unwrap_or_else(|| panic!("no schema/{key}.json for {outcome}"));
        let errors: Vec<String> = validator
            .iter_errors(&outcome["data"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "outcome data: {errors:?}\n{outcome}");
    }

    pub fn check(&self, seq: u64, event: &Value) {
        let errors: Vec<String> = self
            .envelope
            .iter_errors(event)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "event {seq} envelope: {errors:?}\n{event}"
        );
        let key = format!(
            "{}.v{}",
            event["type"].as_str().unwrap(),
            event["version"].as_u64().unwrap()
        );
        let validator = self
            .data
            .get(&key)
            .unwrap_or_else(|| panic!("no schema/{key}.json for event {seq}"));
        let errors: Vec<String> = validator
            .iter_errors(&event["data"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "event {seq} data: {errors:?}\n{event}");
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Simulator settings on a free port.
pub fn sim_settings() -> wxledger::settings::SimSettings {
    wxledger::settings::SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        // WeChat's retry schedule (15 s, 15 s, 30 s, ...) in milliseconds.
        time_factor: 0.001,
        notify_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

impl TestEnv {
    /// Settings that reach this test's schema, stream and simulator (for commands run
    /// as a library, e.g. reconcile or replay).
    pub fn settings(&self) -> Settings {
        let mut s = isolated_settings(&self.sim);
        s.database.schema = self.schema.clone();
        s.nats.stream = self.stream.clone();
        s.nats.subject_prefix = self.prefix.clone();
        s
    }
}

/// Payments: placing, paying in the simulator, reading the books.
impl TestEnv {
    /// `POST /v1/orders`.
    pub async fn place_order(&self, token: &str, amount: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/v1/orders",
            Some(token),
            Some(json!({"amount": amount, "description": "一杯咖啡 coffee"})),
        )
        .await
    }

    /// Places an order of `amount` fen and gets its prepay; returns its out_trade_no.
    pub async fn order_with_prepay(&self, token: &str, amount: i64) -> String {
        let (status, order) = self.place_order(token, json!(amount)).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        let (status, params) = self
            .call(
                Method::POST,
                &format!("/v1/orders/{no}/wechat-pay"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{params}");
        no
    }

    /// `POST /v1/recharges`; returns its out_trade_no.
    pub async fn recharge(&self, token: &str, amount: i64) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/recharges",
                Some(token),
                Some(json!({"amount": amount})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["order"]["out_trade_no"].as_str().unwrap().to_owned()
    }

    /// The user pays in the simulator (`extra` adds fields such as `amount`).
    pub async fn sim_pay(&self, out_trade_no: &str, extra: Value) -> Value {
        let mut body = json!({"out_trade_no": out_trade_no});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.sim_post("/sim/pay/pay", body).await
    }

    /// Arms simulator faults for the next notify.
    pub async fn sim_faults(&self, faults: Value) {
        self.sim_post("/sim/pay/faults", faults).await;
    }

    /// Delivery attempts the simulator made for an order.
    pub async fn deliveries(&self, out_trade_no: &str) -> Vec<Value> {
        self.sim_get(&format!("/sim/pay/deliveries?out_trade_no={out_trade_no}"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the simulator saw an answer with `status` for the order's notify.
    pub async fn wait_delivered(&self, out_trade_no: &str, status: u16) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen = self.deliveries(out_trade_no).await;
            if seen.iter().any(|d| d["status"] == json!(status)) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no delivery answered {status} for {out_trade_no}: {seen:?}");
    }

    /// Waits until the user's order is in `state`; returns it.
    pub async fn wait_order_state(&self, token: &str, no: &str, state: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (_, order) = self
                .call(Method::GET, &format!("/v1/orders/{no}"), Some(token), None)
                .await;
            if order["state"] == state {
                return order;
            }
            last = order;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order {no} never reached {state}: {last}");
    }

    /// The wallet balance from `GET /v1/me`.
    pub async fn balance(&self, token: &str) -> i64 {
        let (status, me) = self.call(Method::GET, "/v1/me", Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        me["balance"].as_i64().unwrap()
    }

    /// Calls an admin endpoint with the admin token.
    pub async fn admin(&self, method: Method, path: &str) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_TOKEN), None).await
    }

    /// The failure log's reasons, once the projector applied everything appended.
    pub async fn failure_reasons(&self) -> Vec<String> {
        self.wait_applied().await;
        let (status, body) = self.admin(Method::GET, "/v1/admin/failures").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["reason"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The failure log's reasons once it holds at least `n` (at most 10 s): a notify the
    /// simulator sends is delivered in the background, after `/sim/pay/notify` answered.
    pub async fn failure_reasons_once(&self, n: usize) -> Vec<String> {
        let mut reasons = Vec::new();
        for _ in 0..200 {
            reasons = self.failure_reasons().await;
            if reasons.len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        reasons
    }

    /// Waits until the projection's checkpoint reached the stream's last event.
    pub async fn wait_applied(&self) {
        let head = self.last_seq().await;
        for _ in 0..400 {
            let row = self
                .db()
                .await
                .query_opt("SELECT last_seq FROM projector_checkpoints", &[])
                .await
                .unwrap();
            if row.is_some_and(|r| r.get::<_, i64>(0) as u64 >= head) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("projection never reached event {head}");
    }

    /// Every posting group sums to zero, and returns (account, balance) pairs.
    pub async fn books(&self) -> Vec<(String, i64)> {
        self.wait_applied().await;
        let db = self.db().await;
        let unbalanced: i64 = db
            .query_one(
                "SELECT count(*) FROM (SELECT group_id FROM ledger_entries GROUP BY group_id \
                 HAVING sum(amount) <> 0) g",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(unbalanced, 0, "every posting group sums to zero");
        db.query(
            "SELECT account, balance FROM balances ORDER BY account",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    /// How many events of `kind` the stream holds.
    pub async fn count_events(&self, kind: &str) -> usize {
        self.event_types()
            .await
            .iter()
            .filter(|t| *t == kind)
            .count()
    }

    /// Pays `first` and `second` from the wallet at once, holding the projector's writes
    /// to `balances` (reads go on) until both requests are appended, so that both pass the
    /// handler's check against the same balance and the fold decides. The two answers.
    pub async fn balance_pay_racing(
        &self,
        token: &str,
        first: &str,
        second: &str,
    ) -> [(StatusCode, Value); 2] {
        let mut db = self.db().await;
        let hold = db.transaction().await.unwrap();
        hold.batch_execute("LOCK TABLE balances IN EXCLUSIVE MODE")
            .await
            .unwrap();
        let before = self.count_events("order.balance_pay_requested").await;
        let pay = |no: &str| {
            let (http, token) = (self.http.clone(), token.to_owned());
            let url = format!("{}/v1/orders/{no}/balance-pay", self.api);
            tokio::spawn(async move {
                let r = http.post(url).bearer_auth(token).send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        };
        let (a, b) = (pay(first), pay(second));
        assert!(
            eventually(Duration::from_secs(5), || async {
                self.count_events("order.balance_pay_requested").await == before + 2
            })
            .await,
            "both requests were appended"
        );
        hold.commit().await.unwrap();
        [a.await.unwrap(), b.await.unwrap()]
    }
}

/// An account's balance in `books` (0 when it has none).
pub fn books_of(books: &[(String, i64)], account: &str) -> i64 {
    books
        .iter()
        .find(|(a, _)| a == account)
        .map_or(0, |(_, b)| *b)
}

/// Refunds and wallet payments.
impl TestEnv {
    /// `POST /v1/admin/orders/{no}/refunds`.
    pub async fn refund(&self, no: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/v1/admin/orders/{no}/refunds"),
            Some(ADMIN_TOKEN),
            Some(body),
        )
        .await
    }

    /// An order of `amount` fen, paid through the simulator and booked.
    pub async fn paid_order(&self, token: &str, amount: i64) -> String {
        let no = self.order_with_prepay(token, amount).await;
        self.sim_pay(&no, json!({})).await;
        self.wait_order_state(token, &no, "paid").await;
        no
    }

    /// A recharge of `amount` fen, paid and credited.
    pub async fn paid_recharge(&self, token: &str, amount: i64) -> String {
        let no = self.recharge(token, amount).await;
        self.sim_pay(&no, json!({})).await;
        self.wait_order_state(token, &no, "paid").await;
        no
    }

    /// WeChat settles a refund (and sends its notify).
    pub async fn settle(&self, out_refund_no: &str, outcome: &str) {
        self.sim_post(
            "/sim/pay/refund",
            json!({"out_refund_no": out_refund_no, "outcome": outcome}),
        )
        .await;
    }

    /// Waits until the refund is in `state`; returns it.
    pub async fn wait_refund_state(&self, no: &str, out_refund_no: &str, state: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (_, list) = self
                .admin(Method::GET, &format!("/v1/admin/orders/{no}/refunds"))
                .await;
            if let Some(r) = list["refunds"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["out_refund_no"] == out_refund_no))
            {
                if r["state"] == state {
                    return r.clone();
                }
                last = r.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("refund {out_refund_no} never reached {state}: {last}");
    }

    pub async fn balance_pay(&self, token: &str, no: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/v1/orders/{no}/balance-pay"),
            Some(token),
            None,
        )
        .await
    }
}

/// One message of the outcome stream.
#[derive(Debug, Clone)]
pub struct OutcomeMsg {
    /// Its sequence on the outcome stream.
    pub seq: u64,
    pub subject: String,
    /// Its `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// The payload.
    pub outcome: Value,
}

/// The outcome stream.
impl TestEnv {
    /// The outcome stream's name.
    pub fn outcome_stream(&self) -> String {
        self.settings().nats.outcome_stream()
    }

    /// Every message on the outcome stream, in its order (read directly from NATS, as a
    /// consumer would).
    pub async fn outcomes(&self) -> Vec<OutcomeMsg> {
        let mut settings = wxledger::settings::NatsSettings {
            url: nats_url(),
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        settings.stream = self.outcome_stream();
        let options = wxledger::tools::tail::TailOptions {
            subject: format!("{}_outcome.>", self.prefix),
            from_seq: 1,
            follow: false,
            limit: None,
        };
        let mut out = Vec::new();
        wxledger::tools::tail::tail(&settings, &options, |line| {
            out.push(OutcomeMsg {
                seq: line.seq,
                subject: line.subject.clone(),
                msg_id: line.msg_id.clone(),
                outcome: line.envelope.clone(),
            });
            Ok(())
        })
        .await
        .expect("the outcome stream reads");
        out
    }

    /// Waits until the outcome stream holds at least `n` messages; returns them all.
    pub async fn wait_outcomes(&self, n: usize) -> Vec<OutcomeMsg> {
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen = self.outcomes().await;
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the outcome stream never held {n} outcomes: {:?}",
            seen.iter().map(|m| &m.outcome["id"]).collect::<Vec<_>>()
        );
    }

    /// Outcomes committed and not yet published.
    pub async fn outbox_len(&self) -> i64 {
        wxledger::store::outcomes::outbox::pending(&**self.db().await)
            .await
            .unwrap()
    }
}

impl TestEnv {
    /// A gauge as the daemon's `/metrics` (on `metrics.listen`) says it.
    pub async fn gauge(&self, name: &str) -> i64 {
        let base = self.metrics.as_deref().expect("metrics.listen was set");
        let text = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("{name} is exposed"))
            .trim()
            .parse()
            .unwrap()
    }
}
