//! The raw figures of this machine, measured in the same run as the daemon's: RSA-2048
//! SHA-256 verify on one core ([`crate::tools::bench::rsa_verify_rate`]), JetStream publish
//! awaiting each acknowledgement and with 64 in flight (production-shaped events, to a
//! scratch stream on the daemon's NATS), the ordered read of the run's own stream, and a
//! Postgres binary COPY (the last two are the rebuild bench's own functions).

use std::time::{Duration, Instant};

use super::report::RawFigure;
use crate::{
    settings::{DatabaseSettings, NatsSettings},
    store::stream::EventLog,
    tools::bench::{
        rebuild::{raw_copy, raw_read, History, Measured},
        rsa_verify_rate,
    },
};

/// How much of each.
#[derive(Debug, Clone, Copy)]
pub struct RawSizes {
    /// RSA verifications.
    pub verifies: u32,
    /// Publishes awaiting each acknowledgement; ten times as many with 64 in flight.
    pub publishes: usize,
    /// Rows of the COPY.
    pub copy_rows: u64,
}

fn figure(name: impl Into<String>, count: u64, unit: &'static str, elapsed: Duration) -> RawFigure {
    let seconds = elapsed.as_secs_f64();
    RawFigure {
        name: name.into(),
        count,
        unit,
        seconds,
        per_second: count as f64 / seconds.max(1e-9),
    }
}

fn from_measured(m: Measured) -> RawFigure {
    figure(m.path, m.count, m.unit, m.elapsed)
}

/// Measures every raw figure. `run_log` is the run's stream (read up to `last`); the
/// publishes go to a scratch stream beside it (`nats` names it), the COPY to the scratch
/// schema `copy_schema`; the caller removes both.
pub async fn measure(
    sizes: RawSizes,
    run_log: &EventLog,
    last: u64,
    nats: &NatsSettings,
    database: &DatabaseSettings,
    copy_schema: &str,
) -> anyhow::Result<Vec<RawFigure>> {
    let mut out = Vec::new();
    let verifies = sizes.verifies;
    let started = Instant::now();
    let per_sec = tokio::task::spawn_blocking(move || rsa_verify_rate(verifies)).await?;
    out.push(RawFigure {
        name: "RSA-2048 SHA-256 verify (ring), one core".into(),
        count: u64::from(verifies),
        unit: "verifies",
        seconds: started.elapsed().as_secs_f64(),
        per_second: per_sec,
    });

    let scratch = EventLog::connect(nats).await?;
    let publishes = async {
        let mut rows = Vec::new();
        for (in_flight, n) in [(1, sizes.publishes), (64, sizes.publishes * 10)] {
            let started = Instant::now();
            scratch
                .append_pipelined(History::new().take(n), in_flight)
                .await?;
            rows.push(figure(
                format!("JetStream publish, {in_flight} in flight (production-shaped events)"),
                n as u64,
                "messages",
                started.elapsed(),
            ));
        }
        anyhow::Ok(rows)
    }
    .await;
    let _ = scratch.delete_stream().await;
    out.extend(publishes?);

    out.push(from_measured(raw_read(run_log, last).await?.0));
    out.push(from_measured(
        raw_copy(database, copy_schema, sizes.copy_rows).await?,
    ));
    Ok(out)
}
