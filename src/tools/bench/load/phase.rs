//! One phase of notifies: its recharge orders appended to the run's stream, the projector
//! let catch up (so each phase starts from an idle daemon), the notifies signed beforehand
//! (signing is WeChat's work, not the load generator's), then posted in a closed or an
//! open loop, and waited for until every accepted one is booked. Answers the phase's row.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::{
    drive::{self, Outcome},
    lag::Bookings,
    report::{NotifyPhase, Percentiles},
};
use crate::{
    store::stream::EventLog,
    tools::{
        bench::signed::{self, Notifier},
        harness::Deployment,
    },
};

/// How the notifies of a phase are sent.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// This many in flight.
    Closed(usize),
    /// This many per second, on schedule.
    Open(f64),
}

/// What every phase of a run uses.
pub struct Phases<'a> {
    pub deployment: &'a Deployment,
    pub log: &'a EventLog,
    pub bookings: &'a Bookings,
    pub http: reqwest::Client,
    /// The daemon's `/webhooks/wechatpay`.
    pub url: String,
    pub notifier: Notifier,
    /// The next WeChat transaction number (unique across the run's phases).
    pub next_transaction: usize,
    /// How long to wait for bookings (see [`super::Options::book_within`]).
    pub book_within: Duration,
}

impl Phases<'_> {
    /// Runs `count` notifies as `name` in `mode`.
    pub async fn run(
        &mut self,
        name: String,
        mode: Mode,
        count: usize,
    ) -> anyhow::Result<NotifyPhase> {
        eprintln!("[load] {name}: placing {count} orders ...");
        let orders: Vec<String> = (0..count)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let last = signed::place_recharges(self.log, &orders).await?;
        self.caught_up(last, self.book_within).await?;
        eprintln!("[load] {name}: signing {count} notifies ...");
        let notifies = Arc::new(self.notifier.sign_all(&orders, self.next_transaction));
        self.next_transaction += count;
        eprintln!("[load] {name}: posting ...");
        let samples = match mode {
            Mode::Closed(in_flight) => {
                drive::closed_loop(&self.http, &self.url, notifies, in_flight).await
            }
            Mode::Open(rate) => drive::open_loop(&self.http, &self.url, notifies, rate).await,
        };
        let count_of = |f: fn(&Outcome) -> bool| samples.iter().filter(|s| f(&s.outcome)).count();
        let accepted = count_of(|o| *o == Outcome::Accepted);
        let refused = count_of(|o| matches!(o, Outcome::Refused(_)));
        let unanswered = count_of(|o| *o == Outcome::Unanswered);
        let first = samples.iter().map(|s| s.sent).min();
        let end = samples.iter().map(|s| s.answered).max();
        let seconds = match (first, end) {
            (Some(first), Some(end)) => end.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let answer_ms = Percentiles::of(
            samples
                .iter()
                .filter(|s| s.outcome == Outcome::Accepted)
                .map(drive::Sample::millis)
                .collect(),
        );
        let booked = self
            .bookings
            .wait_booked(&orders, accepted, self.book_within)
            .await;
        let lag_ms = Percentiles::of(self.bookings.lags(&orders, &samples));
        let phase = NotifyPhase {
            name,
            in_flight: match mode {
                Mode::Closed(n) => Some(n),
                Mode::Open(_) => None,
            },
            rate: match mode {
                Mode::Open(r) => Some(r),
                Mode::Closed(_) => None,
            },
            sent: samples.len(),
            accepted,
            refused,
            unanswered,
            seconds,
            per_second: accepted as f64 / seconds.max(1e-9),
            answer_ms,
            booked,
            lag_ms,
        };
        eprintln!(
            "[load] {}: {} accepted, {:.0}/s, answer p99 {:.1} ms, lag p99 {:.1} ms",
            phase.name,
            phase.accepted,
            phase.per_second,
            answer_ms.map_or(f64::NAN, |a| a.p99),
            lag_ms.map_or(f64::NAN, |l| l.p99)
        );
        Ok(phase)
    }

    /// Waits until the projector's checkpoint reached `seq`.
    async fn caught_up(&self, seq: u64, within: Duration) -> anyhow::Result<()> {
        let db = self.deployment.db().await?;
        let deadline = Instant::now() + within;
        loop {
            let row = db
                .query_opt("SELECT last_seq FROM projector_checkpoints", &[])
                .await?;
            let at = row.map_or(0, |r| r.get::<_, i64>(0));
            if u64::try_from(at).unwrap_or(0) >= seq {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the projector did not reach {seq} within {within:?} (at {at})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
