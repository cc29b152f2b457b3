//! What a scrape asks before rendering: NATS and Postgres up, the pool, the stream's end
//! and the projector's lag, the outbox, the suspense balance and the failure log.
//!
//! NATS and Postgres are asked at once, each under `metrics.scrape_timeout_ms`, so a
//! scrape never hangs: what does not answer in time is reported down, and its gauges keep
//! their last value. The stream's end is remembered, so the lag is still reported (from
//! the last end read, with its age) while NATS is away.

use chrono::{DateTime, Utc};

use super::{clamp, labels, Metrics};
use crate::{
    core::{clock::Clock, fold::SUSPENSE},
    store::{projector::ProjectionWatch, stream::EventLog},
    wechat::pay::keys::KeyStore,
};

/// What a scrape reads: the metrics it sets and the servers and state it asks.
pub struct Sources<'a> {
    /// The metrics to refresh.
    pub metrics: &'a Metrics,
    /// The event log (NATS up, the stream's end).
    pub log: &'a EventLog,
    /// The projections' database (pool gauges, outbox, suspense, failures).
    pub pool: &'a deadpool_postgres::Pool,
    /// WeChat Pay's platform certificates (their expiry).
    pub keys: &'a KeyStore,
    /// The projector's checkpoint.
    pub projection: &'a ProjectionWatch,
    /// Now.
    pub clock: &'a Clock,
}

/// What one Postgres round of the scrape read.
struct DbFacts {
    outbox_depth: i64,
    outbox_oldest: Option<DateTime<Utc>>,
    suspense: i64,
    failures: Vec<(String, i64)>,
}

/// Scrapes closer together than this share one refresh.
pub const REFRESH_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// [`refresh`], unless another scrape refreshed less than [`REFRESH_GAP`] ago: concurrent
/// scrapes wait for the one refreshing and use its values, so however many clients ask,
/// Postgres answers at most one scrape query a second.
pub async fn refresh_shared(sources: &Sources<'_>) {
    let mut refreshed = sources.metrics.refresh_gate().lock().await;
    if refreshed.is_some_and(|at| at.elapsed() < REFRESH_GAP) {
        return;
    }
    refresh(sources).await;
    *refreshed = Some(std::time::Instant::now());
}

/// Refreshes the gauges of `sources.metrics`, waiting at most the scrape timeout for
/// each server.
pub async fn refresh(sources: &Sources<'_>) {
    let m: &Metrics = sources.metrics;
    let timeout = m.scrape_timeout();
    let g = m.gauges();
    let now = (sources.clock)();
    let unix = |t: DateTime<Utc>| t.timestamp_micros() as f64 / 1e6;

    g.nats_up.set(i64::from(sources.log.is_connected()));
    let pool = sources.pool.status();
    g.pool_max.set(clamp(pool.max_size as u64));
    g.pool_size.set(clamp(pool.size as u64));
    g.pool_available.set(clamp(pool.available as u64));
    g.pool_waiting.set(clamp(pool.waiting as u64));

    let (head, db) = tokio::join!(
        tokio::time::timeout(timeout, sources.log.last_seq()),
        tokio::time::timeout(timeout, read_db(sources.pool)),
    );
    if let Ok(Ok(head)) = head {
        m.stream_head_read(head, unix(now));
    }
    match db {
        Ok(Ok(facts)) => {
            g.postgres_up.set(1);
            g.outbox_depth.set(facts.outbox_depth);
            g.outbox_oldest_seconds.set(
                facts
                    .outbox_oldest
                    .map_or(0.0, |t| (unix(now) - unix(t)).max(0.0)),
            );
            g.suspense_fen.set(facts.suspense);
            set_failures(m, facts.failures);
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metrics: Postgres did not answer the scrape");
            g.postgres_up.set(0);
        }
        Err(_) => {
            g.postgres_up.set(0);
        }
    }

    // Rebuilt each time: an evicted certificate leaves no series behind.
    g.certificate_expiry.clear();
    for certificate in sources.keys.certificates() {
        g.certificate_expiry
            .get_or_create(&labels::Serial {
                serial: certificate.serial,
            })
            .set((certificate.not_after - now).num_seconds());
    }

    let applied = sources.projection.applied();
    g.checkpoint.set(clamp(applied));
    if let Some((head, read_at)) = m.stream_head() {
        let lag = head.saturating_sub(applied);
        g.lag_events.set(clamp(lag));
        g.stream_last_seq_age.set((unix(now) - read_at).max(0.0));
        // Caught up: no lag. Behind: how long since the projector last committed, which
        // grows without bound when it is stuck and stays small while it keeps pace.
        let seconds = if lag == 0 {
            0.0
        } else {
            m.committed_at().map_or(0.0, |at| (unix(now) - at).max(0.0))
        };
        g.lag_seconds.set(seconds);
    }
}

async fn read_db(pool: &deadpool_postgres::Pool) -> Result<DbFacts, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let outbox = client
        .query_one("SELECT count(*), min(occurred_at) FROM outbox", &[])
        .await
        .map_err(|e| e.to_string())?;
    let suspense = client
        .query_opt(
            "SELECT balance FROM balances WHERE account = $1",
            &[&SUSPENSE],
        )
        .await
        .map_err(|e| e.to_string())?;
    let failures = client
        .query(
            "SELECT reason, count(*) FROM failure_log GROUP BY reason ORDER BY 2 DESC, 1",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(DbFacts {
        outbox_depth: outbox.get(0),
        outbox_oldest: outbox.get(1),
        suspense: suspense.map_or(0, |r| r.get(0)),
        failures: failures.iter().map(|r| (r.get(0), r.get(1))).collect(),
    })
}

/// Sets `wxledger_failure_log_rows`: the biggest reasons each in their own series, the
/// rest (and any reason that is not plain snake_case) under `other`.
fn set_failures(m: &Metrics, rows: Vec<(String, i64)>) {
    let mut other = 0;
    let family = &m.gauges().failures;
    // Rebuilt each time, so a reason that fell behind the biggest leaves its own series.
    family.clear();
    for (i, (reason, n)) in rows.into_iter().enumerate() {
        let label = labels::failure_reason(&reason);
        if i >= labels::MAX_REASONS || label == "other" {
            other += n;
        } else {
            family
                .get_or_create(&labels::Reason {
                    reason: label.to_owned(),
                })
                .set(n);
        }
    }
    if other > 0 {
        family
            .get_or_create(&labels::Reason {
                reason: "other".to_owned(),
            })
            .set(other);
    }
}
