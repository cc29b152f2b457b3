//! `wxledger bench faults`: the fault matrix against private servers (never the machine's
//! shared NATS or Postgres), under a load that behaves like WeChat and a mini program
//! through a balancer ([`crate::tools::harness`]). Each run gets fresh servers: a private
//! PostgreSQL, a private nats-server (or a 3-node cluster), the simulator in-process with a
//! short retry scale, and `wxledger --dev serve` processes of the bench's own binary.
//!
//! Per run: warm up, inject the fault ([`Kind`]), measure the time to full recovery
//! ([`recovery`]), let the load go on, stop it and check that nothing was lost or doubled
//! (`tools::harness::check`, the audit included). The runs of a kind make one row
//! of the table ([`report`]). Progress goes to stderr. CLI glue, so errors are `anyhow`.

mod inject;
pub mod recovery;
pub mod report;

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::bail;
use serde::Serialize;

pub use report::{Report, Row, RunResult};

/// A fault the bench injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// kill -9 the only instance; a new one starts ~2 s later and takes the balancer.
    DaemonKill,
    /// kill -9 the nats-server; started again ~2 s later.
    NatsKill,
    /// SIGSTOP the nats-server for ~3 s, then SIGCONT.
    NatsPause,
    /// kill -9 PostgreSQL (postmaster and backends); started again ~2 s later.
    PostgresKill,
    /// Fast stop of PostgreSQL; started again ~2 s later.
    PostgresStop,
    /// kill -9 the nats-server leading the R3 stream of a 3-node cluster (restarted after
    /// the recovery); measured from the kill.
    ClusterNodeKill,
    /// kill -9 the instance (of three) whose projector is active, not restarted; measured
    /// from the kill.
    ActiveDaemonKill,
}

impl Kind {
    /// Every kind, in the table's order.
    pub const ALL: [Kind; 7] = [
        Kind::DaemonKill,
        Kind::NatsKill,
        Kind::NatsPause,
        Kind::PostgresKill,
        Kind::PostgresStop,
        Kind::ClusterNodeKill,
        Kind::ActiveDaemonKill,
    ];

    /// Its name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DaemonKill => "daemon-kill",
            Kind::NatsKill => "nats-kill",
            Kind::NatsPause => "nats-pause",
            Kind::PostgresKill => "postgres-kill",
            Kind::PostgresStop => "postgres-stop",
            Kind::ClusterNodeKill => "cluster-node-kill",
            Kind::ActiveDaemonKill => "active-daemon-kill",
        }
    }

    /// Whether the fault ends only once NATS elected a new stream leader (a killed
    /// leader): the time until then is the engine's, drawn by its raft from 4–9 s
    /// (`minElectionTimeout`..`maxElectionTimeout` in nats-server's raft.go, not
    /// configurable), and the recovery is judged from that election.
    pub fn waits_for_election(self) -> bool {
        self == Kind::ClusterNodeKill
    }

    /// The target for the time to full recovery: 2 s from the end of a
    /// single-node fault or from the election after a killed stream leader, 5 s from
    /// the kill of the active daemon (a standby takes over).
    pub fn target(self) -> Duration {
        Duration::from_secs(if self == Kind::ActiveDaemonKill { 5 } else { 2 })
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind {s:?} (one of {})", names.join(", "))
            })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `wxledger` binary the instances run (`std::env::current_exe()`).
    pub binary: PathBuf,
    /// Runs per kind.
    pub runs: usize,
    /// The kinds to run (every kind when empty).
    pub only: Vec<Kind>,
    /// Users of the load.
    pub users: usize,
    /// Payments made before the fault is injected.
    pub warmup: usize,
    /// Payments made after the recovery, before the load stops.
    pub after: usize,
    /// The simulator's notify retry scale (WeChat's 15 s, 15 s, 30 s, 3 min, ... times it).
    pub time_factor: f64,
}

impl Options {
    /// The defaults for `binary`: one run of each kind, 6 users, 10 payments on either
    /// side of the fault, WeChat's retry schedule at 1/2000 (15 s → 7.5 ms, 30 min → 0.9 s).
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            runs: 1,
            only: Vec::new(),
            users: 6,
            warmup: 10,
            after: 10,
            time_factor: 0.0005,
        }
    }
}

/// Runs the matrix and answers the report (a failed run is a row's error, not the
/// bench's). Everything a run started is torn down before the next.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let kinds = if options.only.is_empty() {
        Kind::ALL.to_vec()
    } else {
        options.only.clone()
    };
    let mut results = Vec::new();
    for kind in kinds {
        for i in 1..=options.runs {
            eprintln!("[faults] {} run {i}/{}", kind.name(), options.runs);
            let result = inject::run_once(kind, options).await;
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("[faults] {} run {i} failed: {e:#}", kind.name());
                    RunResult::failed(kind, format!("{e:#}"))
                }
            };
            eprintln!("[faults] {}", result.summary());
            results.push(result);
        }
    }
    Ok(Report::from_runs(results))
}
