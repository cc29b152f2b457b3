//! `wxledger bench load`: the daemon measured as a user would. The daemon runs as a
//! separate process started exactly as `serve` starts it (the bench's own executable, so a
//! release build measures a release build: `wxledger --dev serve`, settings in the
//! environment, [`crate::tools::harness::Deployment`]), on a scratch schema and stream of the
//! machine's NATS and Postgres, or of a private nats-server ([`Options::private_nats`]), or
//! of any NATS named by URL (a `sync_interval: always` server, say). The load generator
//! runs in this process, another than the daemon's.
//!
//! The WeChat simulator runs in this process too: it answers the API's WeChat calls
//! (login, prepay) and delivers the few recharge notifies of the API phase, and its time
//! is subtracted from every API call through the daemon's `Server-Timing` header, so where
//! it runs does not change the daemon-added figure; the notify phases do not use it (the
//! bench signs WeChat's notifies itself, beforehand, with the development keys).
//!
//! In order: a warm-up; notifies in a closed loop at the most the daemon takes; in an open
//! loop at each fixed rate, with the projection lag ([`lag`]) of every phase; API latency
//! ([`api`]); then, the daemon stopped, the raw figures ([`raw`]). Progress goes to
//! stderr; [`Report`] has the tables and the JSON. CLI glue, so errors are `anyhow`.

pub mod api;
pub mod drive;
pub mod lag;
pub mod phase;
pub mod raw;
pub mod report;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;

pub use raw::RawSizes;
pub use report::Report;

use crate::{
    settings::{DatabaseSettings, NatsSettings, SimSettings},
    sim::Simulator,
    store::stream::EventLog,
    tools::{
        bench::signed::Notifier,
        harness::{daemon::drop_schema, nats::free_port, Deployment, NatsNode},
    },
};
use phase::{Mode, Phases};

/// What to run.
#[derive(Debug)]
pub struct Options {
    /// The `wxledger` binary the daemon runs (`std::env::current_exe()`).
    pub binary: PathBuf,
    /// The NATS the daemon appends to (ignored with `private_nats`).
    pub nats_url: String,
    /// Start a private nats-server (JetStream, a temporary directory) instead.
    pub private_nats: bool,
    /// The NATS fsyncs every write (`sync_interval: always`), as the caller says: the
    /// server does not tell. Chooses the ingest target.
    pub sync_always: bool,
    /// The Postgres (its `url`; the scratch schemas are the bench's own).
    pub database: DatabaseSettings,
    /// Notifies of the warm-up (closed loop), not judged.
    pub warmup: usize,
    /// Notifies of the closed loop.
    pub closed: usize,
    /// In flight in the closed loops.
    pub in_flight: usize,
    /// The open loops' rates, notifies per second.
    pub rates: Vec<f64>,
    /// Seconds of each open loop.
    pub seconds: f64,
    /// Users of the API phase, at once.
    pub api_users: usize,
    /// Rounds (login, place order, wallet pay, me) of each API user; 0: no API phase.
    pub api_rounds: usize,
    /// How much of each raw figure.
    pub raw: RawSizes,
    /// Settings of the daemon beyond the bench's own, as environment variables
    /// (`WXLEDGER__SECTION__KEY`, value); they win over the bench's.
    pub daemon_settings: Vec<(String, String)>,
    /// How long a phase waits for its accepted notifies to be booked (and for the
    /// projector to catch up before it starts).
    pub book_within: Duration,
}

impl Options {
    /// The defaults: a warm-up of 2,000, 20,000 notifies with 64 in flight, 10 s at
    /// 2,000/s and at 5,000/s, 4 API users of 100 rounds.
    pub fn new(binary: PathBuf, nats_url: String, database: DatabaseSettings) -> Self {
        Self {
            binary,
            nats_url,
            private_nats: false,
            sync_always: false,
            database,
            warmup: 2_000,
            closed: 20_000,
            in_flight: 64,
            rates: vec![2_000.0, 5_000.0],
            seconds: 10.0,
            api_users: 4,
            api_rounds: 100,
            raw: RawSizes {
                verifies: 5_000,
                publishes: 2_000,
                copy_rows: 200_000,
            },
            book_within: Duration::from_secs(120),
            daemon_settings: Vec::new(),
        }
    }
}

/// The daemon's settings beyond the deployment's: `serve`'s own pool size, a fixed port
/// (the simulator's notifies need it before the daemon starts), and no per-address or
/// per-user limits on the calls the bench repeats from one loopback address.
fn bench_env(port: u16) -> Vec<(String, String)> {
    let mut env = vec![
        ("HTTP__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        (
            "DATABASE__POOL_SIZE".to_owned(),
            DatabaseSettings::default().pool_size.to_string(),
        ),
    ];
    for limit in [
        "RECHARGE_PER_IP",
        "BALANCE_PAY_PER_IP",
        "BALANCE_PAY_PER_USER",
    ] {
        for part in ["PER_MINUTE", "BURST"] {
            env.push((format!("LIMITS__{limit}__{part}"), "0".to_owned()));
        }
    }
    env.into_iter()
        .map(|(k, v)| (format!("WXLEDGER__{k}"), v))
        .collect()
}

/// Runs the bench and answers its report; everything it made is removed afterwards.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut private = options.private_nats.then(NatsNode::start);
    if let Some(node) = &mut private {
        node.listening().await?;
    }
    let nats_url = private
        .as_ref()
        .map_or_else(|| options.nats_url.clone(), NatsNode::url);
    let sim_settings = SimSettings {
        listen: ([127, 0, 0, 1], 0).into(),
        ..Default::default()
    };
    let sim = Simulator::build(&sim_settings)
        .await
        .context("the simulator binds")?;
    let sim_base = format!("http://{}", sim.local_addr());
    let sim_stop = sim.stop_token();
    tokio::spawn(sim.run_until_stopped());

    let mut deployment = Deployment::new(
        options.binary.clone(),
        &nats_url,
        &options.database.url,
        "bench_load",
    );
    let port = free_port();
    deployment.wechat_base = sim_base.clone();
    deployment.notify_url = format!("http://127.0.0.1:{port}/webhooks/wechatpay");
    deployment.extra = bench_env(port);
    deployment
        .extra
        .extend(options.daemon_settings.iter().cloned());
    let raw_nats = NatsSettings {
        stream: format!("{}_RAW", deployment.stream),
        subject_prefix: format!("{}_raw", deployment.prefix),
        ..deployment.nats_settings()
    };
    let copy_schema = format!("{}_copy", deployment.schema);

    let result = measure(options, &deployment, &sim_base, &raw_nats, &copy_schema).await;
    sim_stop.cancel();
    if let Ok(log) = EventLog::connect(&deployment.nats_settings()).await {
        let _ = log.delete_stream().await;
    }
    deployment.drop_schema().await;
    drop_schema(&options.database.url, &copy_schema).await;
    let mut report = result?;
    report.nats_url = nats_url;
    report.private_nats = private.is_some();
    report.sync_always = options.sync_always;
    report.judge();
    Ok(report)
}

async fn measure(
    options: &Options,
    deployment: &Deployment,
    sim_base: &str,
    raw_nats: &NatsSettings,
    copy_schema: &str,
) -> anyhow::Result<Report> {
    let started_at = chrono::Utc::now().to_rfc3339();
    eprintln!(
        "[load] starting the daemon ({}) ...",
        deployment.binary.display()
    );
    let daemon = deployment.spawn("daemon").await?;
    daemon.ready(Duration::from_secs(30)).await?;
    let log = EventLog::connect(&deployment.nats_settings()).await?;
    let bookings = lag::Bookings::start(&deployment.database_url, &deployment.schema).await?;
    let mut phases = Phases {
        deployment,
        log: &log,
        bookings: &bookings,
        http: drive::client(),
        url: format!("{}/webhooks/wechatpay", daemon.base()),
        notifier: Notifier::new()?,
        next_transaction: 0,
        book_within: options.book_within,
    };
    let c = options.in_flight.max(1);
    let mut notifies = Vec::new();
    if options.warmup > 0 {
        let name = format!("warm-up, closed loop, {c} in flight");
        notifies.push(phases.run(name, Mode::Closed(c), options.warmup).await?);
    }
    let name = format!("closed loop, {c} in flight");
    notifies.push(phases.run(name, Mode::Closed(c), options.closed).await?);
    for &rate in &options.rates {
        let count = (rate * options.seconds).round() as usize;
        let name = format!("open loop, {rate}/s for {} s", options.seconds);
        notifies.push(phases.run(name, Mode::Open(rate), count).await?);
    }

    let api = if options.api_rounds == 0 {
        Vec::new()
    } else {
        eprintln!("[load] API calls ...");
        api::measure(
            &reqwest::Client::new(),
            &daemon.base(),
            sim_base,
            options.api_users,
            options.api_rounds,
        )
        .await
        .with_context(|| daemon.log_tail(20))?
    };

    let db = deployment.db().await?;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT out_trade_no) FROM payments",
            &[],
        )
        .await?;
    let (payments_rows, payments_orders): (i64, i64) = (row.get(0), row.get(1));
    drop(daemon);

    eprintln!("[load] raw figures ...");
    let last = log.last_seq().await?;
    let raw = raw::measure(
        options.raw,
        &log,
        last,
        raw_nats,
        &options.database,
        copy_schema,
    )
    .await?;
    Ok(Report {
        started_at,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        nats_url: String::new(),
        private_nats: false,
        sync_always: false,
        notifies,
        payments_rows: u64::try_from(payments_rows).unwrap_or(0),
        payments_orders: u64::try_from(payments_orders).unwrap_or(0),
        api,
        raw,
        targets: Vec::new(),
    })
}
