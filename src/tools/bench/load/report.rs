//! What `wxledger bench load` measured: exact percentiles, one row per notify phase, API
//! call and raw figure, issue 14's targets judged against them, the printed tables and the
//! JSON (`--json`).

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds (nearest rank over every sample:
/// exact, since a run keeps at most a few hundred thousand).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

impl Percentiles {
    /// Of `millis`; `None` when empty.
    pub fn of(mut millis: Vec<f64>) -> Option<Self> {
        if millis.is_empty() {
            return None;
        }
        millis.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = (q * millis.len() as f64).ceil() as usize;
            millis[rank.clamp(1, millis.len()) - 1]
        };
        Some(Self {
            count: millis.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: millis[millis.len() - 1],
        })
    }
}

/// One phase of notifies through the webhook.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyPhase {
    /// E.g. `closed loop, 64 in flight` or `open loop, 2000/s`.
    pub name: String,
    /// Notifies in flight (closed loop).
    pub in_flight: Option<usize>,
    /// Notifies sent per second, on schedule (open loop).
    pub rate: Option<f64>,
    /// Notifies sent.
    pub sent: usize,
    /// Answered 204 (appended, acknowledged by JetStream).
    pub accepted: usize,
    /// Answered otherwise.
    pub refused: usize,
    /// Not answered (connection error or the client's 10 s timeout).
    pub unanswered: usize,
    /// From the first send (scheduled, in open loop) to the last answer.
    pub seconds: f64,
    /// Accepted per second over `seconds`.
    pub per_second: f64,
    /// The webhook's answer time, from the send (the scheduled send in open loop).
    pub answer_ms: Option<Percentiles>,
    /// The phase's orders booked in `payments` (each at most once).
    pub booked: usize,
    /// Projection lag: the webhook's answer to the payment's row committed in Postgres.
    pub lag_ms: Option<Percentiles>,
}

/// One API call, timed by the client, with WeChat's (the simulator's) share from the
/// daemon's `Server-Timing: wechat;dur=` header.
#[derive(Debug, Clone, Serialize)]
pub struct ApiCall {
    /// `login`, `place order`, `wallet pay`, `me`.
    pub name: &'static str,
    /// Answered 2xx.
    pub ok: usize,
    /// Answered otherwise or not at all.
    pub failed: usize,
    /// Send to answer, as the client saw it.
    pub total_ms: Option<Percentiles>,
    /// Waiting on WeChat, as the daemon reported it (0 when it did not call WeChat).
    pub wechat_ms: Option<Percentiles>,
    /// Per call, the total less its WeChat wait: what the daemon (and loopback) added.
    pub daemon_ms: Option<Percentiles>,
}

/// One raw figure of the machine, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct RawFigure {
    /// What was measured.
    pub name: String,
    /// Operations done.
    pub count: u64,
    /// Their unit.
    pub unit: &'static str,
    /// Time taken.
    pub seconds: f64,
    /// Operations per second.
    pub per_second: f64,
}

/// One of issue 14's targets.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is judged.
    pub name: String,
    /// The figure measured (`None` when the run did not measure it).
    pub measured: Option<f64>,
    /// The target value.
    pub target: f64,
    /// `>=` or `<=`.
    pub comparison: &'static str,
    /// The unit of both.
    pub unit: &'static str,
    /// Whether it was met (`None` when not measured).
    pub met: Option<bool>,
}

impl Target {
    fn new(
        name: String,
        measured: Option<f64>,
        comparison: &'static str,
        target: f64,
        unit: &'static str,
    ) -> Self {
        let met = measured.map(|m| {
            if comparison == ">=" {
                m >= target
            } else {
                m <= target
            }
        });
        Self {
            name,
            measured,
            target,
            comparison,
            unit,
            met,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Logical CPUs of this machine.
    pub cores: usize,
    /// The NATS the daemon appended to.
    pub nats_url: String,
    /// Whether that was a private nats-server started for the run.
    pub private_nats: bool,
    /// Whether that NATS fsyncs every write (`sync_interval: always`), as the caller said.
    pub sync_always: bool,
    /// The notify phases, in order (the warm-up first).
    pub notifies: Vec<NotifyPhase>,
    /// `payments` rows at the end, and distinct orders among them (equal: none doubled).
    pub payments_rows: u64,
    /// Distinct out_trade_nos in `payments`.
    pub payments_orders: u64,
    /// The API calls.
    pub api: Vec<ApiCall>,
    /// The raw figures.
    pub raw: Vec<RawFigure>,
    /// Issue 14's targets.
    pub targets: Vec<Target>,
}

/// The ingest targets, notifies per second: with the server's default fsync, and with
/// `sync_interval: always` (through group commit).
const INGEST_DEFAULT_FSYNC: f64 = 12_000.0;
const INGEST_SYNC_ALWAYS: f64 = 10_000.0;
/// The notify-rate targets: (rate, answer p99 at most, ms) and (rate, lag p99 at most, ms).
const ANSWER_P99: (f64, f64) = (5_000.0, 20.0);
const LAG_P99: (f64, f64) = (2_000.0, 50.0);

impl Report {
    /// Judges issue 14's targets from the measured rows.
    pub fn judge(&mut self) {
        let closed = self
            .notifies
            .iter()
            .rfind(|p| p.in_flight.is_some() && !p.name.starts_with("warm-up"));
        let at_rate = |rate: f64| self.notifies.iter().find(|p| p.rate == Some(rate));
        let (fsync, ingest) = if self.sync_always {
            ("sync_interval: always", INGEST_SYNC_ALWAYS)
        } else {
            ("default fsync", INGEST_DEFAULT_FSYNC)
        };
        let mut targets = vec![Target::new(
            format!(
                "webhook ingest, closed loop ({} in flight), {fsync}",
                closed.and_then(|p| p.in_flight).unwrap_or(0)
            ),
            closed.map(|p| p.per_second),
            ">=",
            ingest,
            "notifies/s",
        )];
        targets.push(Target::new(
            format!("webhook answer p99 at {}/s open loop", ANSWER_P99.0),
            at_rate(ANSWER_P99.0).and_then(|p| p.answer_ms.map(|a| a.p99)),
            "<=",
            ANSWER_P99.1,
            "ms",
        ));
        targets.push(Target::new(
            format!("projection lag p99 at {}/s", LAG_P99.0),
            at_rate(LAG_P99.0).and_then(|p| p.lag_ms.map(|l| l.p99)),
            "<=",
            LAG_P99.1,
            "ms",
        ));
        for name in ["place order", "wallet pay", "me"] {
            let call = self.api.iter().find(|c| c.name == name);
            targets.push(Target::new(
                format!("API daemon-added p99, {name}"),
                call.and_then(|c| c.daemon_ms.map(|d| d.p99)),
                "<=",
                5.0,
                "ms",
            ));
        }
        self.targets = targets;
    }

    /// Whether the counts add up: every phase's answers sum to what it sent, every
    /// accepted notify was booked, and no order was booked twice.
    pub fn counts_add_up(&self) -> bool {
        self.notifies.iter().all(|p| {
            p.accepted + p.refused + p.unanswered == p.sent
                && p.booked >= p.accepted
                && p.booked <= p.sent
        }) && self.payments_rows == self.payments_orders
    }

    /// The tables, as Markdown.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let mut out = String::new();
        out.push_str("| target | measured | target value | met? |\n|---|---:|---:|---|\n");
        for t in &self.targets {
            let measured = t
                .measured
                .map_or("not measured".to_owned(), |m| format!("{m:.1} {}", t.unit));
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            out.push_str(&format!(
                "| {} | {measured} | {} {} {} | {met} |\n",
                t.name, t.comparison, t.target, t.unit
            ));
        }
        out.push_str(
            "\n| notify phase | sent | 204 | refused | no answer | s | per s | answer p50 | p90 | \
             p99 | p99.9 | max | booked | lag p50 | lag p99 |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for p in &self.notifies {
            let a = p.answer_ms;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                p.name,
                p.sent,
                p.accepted,
                p.refused,
                p.unanswered,
                p.seconds,
                p.per_second,
                ms(a.map(|a| a.p50)),
                ms(a.map(|a| a.p90)),
                ms(a.map(|a| a.p99)),
                ms(a.map(|a| a.p999)),
                ms(a.map(|a| a.max)),
                p.booked,
                ms(p.lag_ms.map(|l| l.p50)),
                ms(p.lag_ms.map(|l| l.p99)),
            ));
        }
        out.push_str(&format!(
            "\npayments rows {}, distinct orders {}\n",
            self.payments_rows, self.payments_orders
        ));
        if !self.api.is_empty() {
            out.push_str(
                "\n| API call (ms) | ok | failed | total p50 | total p99 | WeChat p50 | WeChat p99 | \
                 daemon-added p50 | daemon-added p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
        }
        for c in &self.api {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.ok,
                c.failed,
                ms(c.total_ms.map(|p| p.p50)),
                ms(c.total_ms.map(|p| p.p99)),
                ms(c.wechat_ms.map(|p| p.p50)),
                ms(c.wechat_ms.map(|p| p.p99)),
                ms(c.daemon_ms.map(|p| p.p50)),
                ms(c.daemon_ms.map(|p| p.p99)),
            ));
        }
        out.push_str("\n| raw figure | count | s | per s |\n|---|---:|---:|---:|\n");
        for r in &self.raw {
            out.push_str(&format!(
                "| {} | {} {} | {:.2} | {:.0} |\n",
                r.name, r.count, r.unit, r.seconds, r.per_second
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{NotifyPhase, Percentiles, Report};

    fn closed_loop_at(per_second: f64, sync_always: bool) -> Report {
        let mut report = Report {
            started_at: String::new(),
            cores: 2,
            nats_url: String::new(),
            private_nats: false,
            sync_always,
            notifies: vec![NotifyPhase {
                name: "closed loop, 64 in flight".into(),
                in_flight: Some(64),
                rate: None,
                sent: 1,
                accepted: 1,
                refused: 0,
                unanswered: 0,
                seconds: 1.0,
                per_second,
                answer_ms: None,
                booked: 1,
                lag_ms: None,
            }],
            payments_rows: 1,
            payments_orders: 1,
            api: Vec::new(),
            raw: Vec::new(),
            targets: Vec::new(),
        };
        report.judge();
        report
    }

    #[test]
    fn the_ingest_target_follows_the_servers_fsync() {
        let default = closed_loop_at(11_000.0, false);
        let ingest = &default.targets[0];
        assert!(ingest.name.ends_with("default fsync"), "{}", ingest.name);
        assert_eq!((ingest.target, ingest.met), (12_000.0, Some(false)));
        let always = closed_loop_at(11_000.0, true);
        let ingest = &always.targets[0];
        assert!(
            ingest.name.ends_with("sync_interval: always"),
            "{}",
            ingest.name
        );
        assert_eq!((ingest.target, ingest.met), (10_000.0, Some(true)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=1000).map(f64::from).collect()).unwrap();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max),
            (500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        let one = Percentiles::of(vec![7.0]).unwrap();
        assert_eq!((one.p50, one.p999), (7.0, 7.0));
        assert!(Percentiles::of(Vec::new()).is_none());
    }
}
