//! The fault bench's results: one [`RunResult`] per run, one [`Row`] per kind (its runs
//! summed), printed as a markdown table or written as JSON.

use std::time::Duration;

use serde::Serialize;

use super::{recovery::Recovered, Kind};
use crate::tools::harness::{NotifyTally, Tally, Verdict};

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The fault.
    pub kind: Kind,
    /// The clients' answers (the load, not the probes).
    pub load: Tally,
    /// WeChat's notify attempts.
    pub notifies: NotifyTally,
    /// Payments the simulator made.
    pub paid: usize,
    /// Paid and never booked, or missing on the stream.
    pub lost: usize,
    /// Booked twice, or appended twice.
    pub doubled: usize,
    /// The audit's breaches.
    pub audit_breaches: usize,
    /// Until the probe succeeded, in ms from the fault's end.
    pub probe_ms: Option<u128>,
    /// Until the payments made before the end were booked, in ms from the fault's end.
    pub booked_ms: Option<u128>,
    /// The later of the two: the time to full recovery.
    pub recovery_ms: Option<u128>,
    /// For a killed stream leader: until the cluster elected the next one, in ms from
    /// the kill (NATS's own part of `recovery_ms`, which its raft draws from 4–9 s).
    pub election_ms: Option<u128>,
    /// Why the run could not be made.
    pub error: Option<String>,
}

fn ms(d: Option<Duration>) -> Option<u128> {
    d.map(|d| d.as_millis())
}

impl RunResult {
    /// A run that was made.
    pub fn new(
        kind: Kind,
        load: Tally,
        notifies: NotifyTally,
        verdict: &Verdict,
        recovered: Recovered,
        elected: Option<Duration>,
    ) -> Self {
        Self {
            kind,
            load,
            notifies,
            paid: verdict.paid,
            lost: verdict.lost.len().max(verdict.missing_on_stream.len()),
            doubled: verdict.doubled.len() + verdict.repeated_on_stream.len(),
            audit_breaches: verdict.audit_breaches.len(),
            probe_ms: ms(recovered.probe),
            booked_ms: ms(recovered.booked),
            recovery_ms: ms(recovered.total()),
            election_ms: ms(elected),
            error: None,
        }
    }

    /// A run that failed before its verdict.
    pub fn failed(kind: Kind, error: String) -> Self {
        Self {
            kind,
            load: Tally::default(),
            notifies: NotifyTally::default(),
            paid: 0,
            lost: 0,
            doubled: 0,
            audit_breaches: 0,
            probe_ms: None,
            booked_ms: None,
            recovery_ms: None,
            election_ms: None,
            error: Some(error),
        }
    }

    /// The recovery the target is judged on: from the fault's end, which for a killed
    /// stream leader is the next one's election (the cluster stores again), else
    /// [`RunResult::recovery_ms`].
    pub fn judged_ms(&self) -> Option<u128> {
        let total = self.recovery_ms?;
        Some(match (self.kind.waits_for_election(), self.election_ms) {
            (false, _) => total,
            (true, Some(election)) => total.saturating_sub(election),
            (true, None) => return None,
        })
    }

    /// Whether the run was made, lost and doubled nothing, and recovered within target.
    pub fn met(&self) -> bool {
        self.error.is_none()
            && self.lost == 0
            && self.doubled == 0
            && self.audit_breaches == 0
            && self
                .judged_ms()
                .is_some_and(|t| t <= self.kind.target().as_millis())
    }

    /// The recovery as the table shows it: the total, and for a killed stream leader
    /// how much of it the election took.
    fn recovery_cell(&self) -> String {
        match (self.recovery_ms, self.election_ms) {
            (Some(total), Some(election)) if self.kind.waits_for_election() => {
                format!("{total} ({election} + {})", total.saturating_sub(election))
            }
            (total, _) => opt(total),
        }
    }

    /// One line for the progress log.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: failed: {e}", self.kind.name());
        }
        format!(
            "{}: recovery {} ms (probe {} ms, booked {} ms, election {} ms); paid {}, lost {}, doubled {}, \
             audit breaches {}; load {:?}; notifies {:?}",
            self.kind.name(),
            opt(self.recovery_ms),
            opt(self.probe_ms),
            opt(self.booked_ms),
            opt(self.election_ms),
            self.paid,
            self.lost,
            self.doubled,
            self.audit_breaches,
            self.load,
            self.notifies,
        )
    }
}

fn opt(v: Option<u128>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A row's target as the table shows it.
fn target(r: &Row) -> String {
    if r.kind.waits_for_election() {
        format!("{} after the election", r.target_ms)
    } else {
        r.target_ms.to_string()
    }
}

/// One kind's runs, summed.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The fault.
    pub kind: Kind,
    /// Faults injected (runs made).
    pub injected: usize,
    /// 2xx answers: the clients' and the notifies'.
    pub ok: u64,
    /// 5xx answers: the clients' and the notifies'.
    pub server_errors: u64,
    /// Requests and notifies that got no answer (refused, reset, timed out).
    pub unanswered: u64,
    /// Requests sent again: the clients' retries and WeChat's notify retries.
    pub retries: u64,
    /// Payments lost.
    pub lost: usize,
    /// Payments doubled.
    pub doubled: usize,
    /// Audit breaches.
    pub audit_breaches: usize,
    /// Each run's time to full recovery, in ms (`None`: not recovered within the wait).
    pub recovery_ms: Vec<Option<u128>>,
    /// Each run's election of a new stream leader, in ms from the kill
    /// (cluster-node-kill only).
    pub election_ms: Vec<Option<u128>>,
    /// Each run's recovery as the table shows it.
    #[serde(skip)]
    cells: Vec<String>,
    /// The target, in ms (for cluster-node-kill, from the election).
    pub target_ms: u128,
    /// Whether every run was made, lost and doubled nothing, and recovered within target.
    pub met: bool,
    /// Runs that could not be made, and why.
    pub errors: Vec<String>,
}

/// The whole bench.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One row per kind.
    pub rows: Vec<Row>,
    /// Every run.
    pub runs: Vec<RunResult>,
}

impl Report {
    /// Sums the runs by kind.
    pub fn from_runs(runs: Vec<RunResult>) -> Self {
        let mut rows: Vec<Row> = Vec::new();
        for kind in Kind::ALL {
            let of: Vec<&RunResult> = runs.iter().filter(|r| r.kind == kind).collect();
            if of.is_empty() {
                continue;
            }
            let sum = |f: &dyn Fn(&RunResult) -> u64| of.iter().map(|r| f(r)).sum::<u64>();
            let target_ms = kind.target().as_millis();
            let recovery_ms: Vec<Option<u128>> = of.iter().map(|r| r.recovery_ms).collect();
            let errors: Vec<String> = of.iter().filter_map(|r| r.error.clone()).collect();
            let row = Row {
                kind,
                injected: of.iter().filter(|r| r.error.is_none()).count(),
                ok: sum(&|r| r.load.ok + r.notifies.ok),
                server_errors: sum(&|r| r.load.server_errors + r.notifies.server_errors),
                unanswered: sum(&|r| r.load.connection_errors + r.notifies.unanswered),
                retries: sum(&|r| r.load.retries + r.notifies.retries),
                lost: of.iter().map(|r| r.lost).sum(),
                doubled: of.iter().map(|r| r.doubled).sum(),
                audit_breaches: of.iter().map(|r| r.audit_breaches).sum(),
                met: of.iter().all(|r| r.met()),
                recovery_ms,
                election_ms: of.iter().map(|r| r.election_ms).collect(),
                cells: of.iter().map(|r| r.recovery_cell()).collect(),
                target_ms,
                errors,
            };
            rows.push(row);
        }
        Self { rows, runs }
    }

    /// Whether every row met its targets.
    pub fn met(&self) -> bool {
        self.rows.iter().all(|r| r.met)
    }

    /// The markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| fault kind | injected | 2xx | 5xx | no answer | retries | lost | doubled | \
             recovery, ms (each run) | target, ms |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
        );
        for r in &self.rows {
            let mut doubled = r.doubled.to_string();
            if r.audit_breaches > 0 {
                doubled.push_str(&format!(" (audit: {} breaches)", r.audit_breaches));
            }
            let mut injected = r.injected.to_string();
            if !r.errors.is_empty() {
                injected.push_str(&format!(" ({} failed)", r.errors.len()));
            }
            out.push_str(&format!(
                "| {} | {injected} | {} | {} | {} | {} | {} | {doubled} | {} | {} |\n",
                r.kind.name(),
                r.ok,
                r.server_errors,
                r.unanswered,
                r.retries,
                r.lost,
                r.cells.join(", "),
                target(r),
            ));
        }
        out
    }
}
