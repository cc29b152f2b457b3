//! `wxledger bench appends`: durable appends per second, single publishes against group
//! commit, on private nats-servers started for the run (the pinned current release, with
//! `sync_interval: always` and with the default fsync; and the Debian 2.9.10 for the
//! single-publish baseline), never the machine's shared one. C tasks append N events in
//! all, each waiting for its acknowledgement as the API does. Prints a table. CLI glue, so
//! errors are `anyhow`.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::Context;
use uuid::Uuid;

use crate::{
    core::events::Envelope,
    daemon::metrics::Metrics,
    settings::{GroupCommit, NatsSettings},
    store::stream::EventLog,
    tools::harness::{NatsNode, NodeSpec},
};

/// What to run.
pub struct Options {
    /// Appends per row.
    pub count: usize,
    /// Appends in flight.
    pub concurrency: usize,
    /// Group commit on, off, or both (`None`).
    pub group_commit: Option<bool>,
    /// `nats.group_commit_max_messages` of the grouped rows.
    pub max_batch: usize,
    /// The current nats-server (2.12+).
    pub server: PathBuf,
}

/// One measured row.
struct Row {
    server: &'static str,
    fsync: &'static str,
    grouped: bool,
    appends: usize,
    seconds: f64,
    batches: u64,
    batched: u64,
    fallbacks: u64,
}

/// Runs every row and prints the table.
pub async fn run(options: &Options) -> anyhow::Result<()> {
    let current = NodeSpec {
        binary: options.server.clone(),
        jetstream: Vec::new(),
    };
    let modes: Vec<bool> = match options.group_commit {
        Some(on) => vec![on],
        None => vec![false, true],
    };
    let mut rows = Vec::new();
    for (fsync, spec) in [
        ("always", current.clone().sync_always()),
        ("default", current.clone()),
    ] {
        for &grouped in &modes {
            rows.push(row("2.15", fsync, &spec, grouped, options).await?);
        }
    }
    if modes.contains(&false) {
        rows.push(row("2.9.10", "default", &NodeSpec::default(), false, options).await?);
    }
    println!(
        "| nats-server | fsync | publish | concurrency | appends | seconds | appends/s | batches | events/batch | fallbacks |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let per_batch = if r.batches == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", r.batched as f64 / r.batches as f64)
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} |",
            r.server,
            r.fsync,
            if r.grouped { "group commit" } else { "single" },
            options.concurrency,
            r.appends,
            r.seconds,
            r.appends as f64 / r.seconds,
            r.batches,
            per_batch,
            r.fallbacks,
        );
    }
    Ok(())
}

/// One row on a fresh server.
async fn row(
    server: &'static str,
    fsync: &'static str,
    spec: &NodeSpec,
    grouped: bool,
    options: &Options,
) -> anyhow::Result<Row> {
    let mut node = NatsNode::start_with(spec);
    node.listening().await?;
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let settings = NatsSettings {
        url: node.url(),
        stream: format!("BENCH_{id}"),
        subject_prefix: format!("bench_{id}"),
        group_commit: if grouped {
            GroupCommit::On
        } else {
            GroupCommit::Off
        },
        group_commit_max_messages: options.max_batch,
        // A thousand single publishes in flight under `sync_interval: always` wait seconds
        // for their turn: the bench measures throughput, not the API's timeout.
        ack_timeout: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    settings.validate().context("bench settings")?;
    let log = EventLog::dial(&settings).await?;
    let metrics = Metrics::new();
    log.record_group_commit_into(&metrics);
    log.ensure_stream(&settings)
        .await
        .with_context(|| format!("nats-server {}", spec.binary.display()))?;

    // Warm-up: connections, the stream's first block.
    append_n(
        &log,
        options.concurrency.min(100),
        options.concurrency,
        "warm",
    )
    .await?;
    let before = metrics.group_commit_batches();
    let fallbacks_before = fallbacks(&metrics);
    let started = Instant::now();
    append_n(&log, options.count, options.concurrency, "load").await?;
    let seconds = started.elapsed().as_secs_f64();
    let after = metrics.group_commit_batches();
    log.close().await;
    Ok(Row {
        server,
        fsync,
        grouped,
        appends: options.count,
        seconds,
        batches: after.0 - before.0,
        batched: after.1 - before.1,
        fallbacks: fallbacks(&metrics) - fallbacks_before,
    })
}

fn fallbacks(metrics: &Metrics) -> u64 {
    ["duplicate", "busy", "incomplete", "unsupported"]
        .into_iter()
        .map(|reason| metrics.group_commit_fallbacks(reason))
        .sum()
}

/// `count` appends of distinct events from `concurrency` tasks, each waiting for its
/// acknowledgement before the next.
async fn append_n(
    log: &EventLog,
    count: usize,
    concurrency: usize,
    tag: &'static str,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (log, next) = (log.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let envelope = Envelope {
                        id: Uuid::new_v4(),
                        kind: "bench.appended".into(),
                        version: 1,
                        occurred_at: chrono::Utc::now(),
                        correlation_id: format!("{tag}-{n}"),
                        data: serde_json::json!({ "n": n, "amount_fen": 100 }),
                    };
                    let msg_id = format!("{tag}-{n}");
                    log.append_envelope(&envelope, &msg_id)
                        .await
                        .with_context(|| format!("append {msg_id}"))?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}
