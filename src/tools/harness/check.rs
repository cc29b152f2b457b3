//! The verdict on a fault run: every payment the simulator made is booked exactly once
//! (compared with the projection's `payments` and the stream's payment events), and the
//! audit of the books against the stream is clean.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::{daemon::Deployment, load::Paid};
use crate::{
    settings::{NatsSettings, Settings},
    store::stream::EventLog,
    tools::audit,
};

/// What the check found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Payments the simulator made.
    pub paid: usize,
    /// Of them, booked in `payments`.
    pub booked: usize,
    /// Paid but never booked (by out_trade_no).
    pub lost: Vec<String>,
    /// Booked more than once (by out_trade_no), or a transaction booked that nobody paid.
    pub doubled: Vec<String>,
    /// Paid, but no payment event on the stream carries the transaction.
    pub missing_on_stream: Vec<String>,
    /// Transactions with more than one payment event on the stream (a notify appended twice).
    pub repeated_on_stream: Vec<String>,
    /// The audit's breaches, as text (empty when clean).
    pub audit_breaches: Vec<String>,
}

impl Verdict {
    /// Nothing lost, nothing doubled, and the audit is clean.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.doubled.is_empty()
            && self.missing_on_stream.is_empty()
            && self.repeated_on_stream.is_empty()
            && self.audit_breaches.is_empty()
    }
}

impl Deployment {
    /// NATS settings reaching this deployment's stream.
    pub fn nats_settings(&self) -> NatsSettings {
        NatsSettings {
            url: self.nats_url.clone(),
            stream: self.stream.clone(),
            subject_prefix: self.prefix.clone(),
            replicas: self.replicas,
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }

    /// Settings reaching this deployment's schema and stream (for the audit).
    pub fn settings(&self) -> Settings {
        let mut s = Settings::development();
        s.nats = self.nats_settings();
        s.database.url = self.database_url.clone();
        s.database.schema = self.schema.clone();
        s.database.connect_timeout = Duration::from_secs(5);
        s
    }

    /// A client of the deployment's schema.
    pub async fn db(&self) -> anyhow::Result<deadpool_postgres::Object> {
        let pool = crate::store::db::pool(&self.settings().database)?;
        Ok(pool.get().await?)
    }
}

/// `payments` rows per out_trade_no, and their transaction ids.
async fn booked(deployment: &Deployment) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let db = deployment.db().await?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for row in db
        .query("SELECT out_trade_no, transaction_id FROM payments", &[])
        .await?
    {
        out.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(out)
}

/// Waits (up to `within`) until every payment in `paid` is booked, then checks.
pub async fn check(
    deployment: &Deployment,
    paid: &[Paid],
    within: Duration,
) -> anyhow::Result<Verdict> {
    let deadline = Instant::now() + within;
    let mut rows = booked(deployment).await?;
    while Instant::now() < deadline && !paid.iter().all(|p| rows.contains_key(&p.out_trade_no)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = booked(deployment).await?;
    }
    let lost: Vec<String> = paid
        .iter()
        .filter(|p| !rows.contains_key(&p.out_trade_no))
        .map(|p| p.out_trade_no.clone())
        .collect();
    let known: HashMap<&str, &Paid> = paid.iter().map(|p| (p.out_trade_no.as_str(), p)).collect();
    let mut doubled: Vec<String> = rows
        .iter()
        .filter(|(no, txs)| {
            txs.len() > 1
                || known
                    .get(no.as_str())
                    .is_none_or(|p| txs.first() != Some(&p.transaction_id))
        })
        .map(|(no, _)| no.clone())
        .collect();
    doubled.sort();

    let nats = deployment.nats_settings();
    let on_stream = settled(|| stream_payments(&nats)).await?;
    let missing_on_stream = paid
        .iter()
        .filter(|p| !on_stream.contains_key(&p.transaction_id))
        .map(|p| p.out_trade_no.clone())
        .collect();
    let mut repeated_on_stream: Vec<String> = on_stream
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(tx, _)| tx.clone())
        .collect();
    repeated_on_stream.sort();

    let settings = deployment.settings();
    let report =
        settled(|| async { Ok(audit::run(&settings, &audit::Options::default(), |_| {}).await?) })
            .await?;
    let audit_breaches = report.breaches.iter().map(|b| format!("{b:?}")).collect();
    Ok(Verdict {
        paid: paid.len(),
        booked: paid.len() - lost.len(),
        lost,
        doubled,
        missing_on_stream,
        repeated_on_stream,
        audit_breaches,
    })
}

/// How often [`settled`] tries.
const ATTEMPTS: u32 = 5;

/// Runs `step` until it succeeds, up to [`ATTEMPTS`] times a second apart: right after a
/// fault a cluster may still be settling (a restarted node catching up, the meta group
/// electing) and a request to NATS times out. The check only reads; a read that keeps
/// failing is still an error.
async fn settled<T, F, Fut>(mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(e) if attempt < ATTEMPTS => {
                eprintln!("[check] attempt {attempt} failed, trying again: {e:#}");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Payment events on the stream, counted per transaction id.
async fn stream_payments(settings: &NatsSettings) -> anyhow::Result<HashMap<String, usize>> {
    let log = EventLog::connect(settings).await?;
    let last = log.last_seq().await?;
    let mut out = HashMap::new();
    if last == 0 {
        return Ok(out);
    }
    let mut events = log.read_from(1).await?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(10), events.next()).await? {
        let (seq, payload) = next?;
        let event: Value = serde_json::from_slice(&payload)?;
        let kind = event["type"].as_str().unwrap_or_default();
        if kind.starts_with("payment.") {
            if let Some(tx) = event["data"]["transaction"]["transaction_id"].as_str() {
                *out.entry(tx.to_owned()).or_default() += 1;
            }
        }
        if seq >= last {
            break;
        }
    }
    Ok(out)
}
