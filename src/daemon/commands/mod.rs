//! Commands: the decisions a request (or a sweep) starts. Each checks what it can before
//! appending, appends its event with its `Nats-Msg-Id`, waits until the projector has
//! applied it, and reads the outcome back; some also talk to WeChat Pay. The HTTP layer
//! parses into the commands' inputs and renders their outputs; the sweeps in
//! [`crate::daemon::jobs`] call the same steps.

pub mod erasure;
mod error;
pub mod orders;
mod pay_api;
pub mod refunds;
pub mod settle;
pub mod users;
mod wallet_pay;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;

pub use error::CommandError;
pub use pay_api::QueryAnswer;
pub use wallet_pay::wallet_pay;

use crate::{
    core::{clock::Clock, crypto::Sealer, events::Event, fold::Verdict},
    daemon::metrics::Metrics,
    settings::PayApi,
    store::{
        privacy::Vault,
        projector::ProjectionWatch,
        stream::{log::Draft, Appended, EventLog, LogError},
    },
    wechat::{pay::v2::V2Client, MiniProgram, PayClient},
};

/// What every command works with: the event log, the projections, WeChat, the clock.
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Ctx(Arc<Parts>);

/// The parts of a [`Ctx`].
pub struct Parts {
    /// The event log.
    pub log: EventLog,
    /// The projections' database.
    pub pool: Pool,
    /// WeChat's mini program API.
    pub wechat: MiniProgram,
    /// Seals session keys at rest.
    pub sealer: Sealer,
    /// Seals personal data under each user's data key; blind indexes.
    pub vault: Vault,
    /// Read-your-writes.
    pub projection: ProjectionWatch,
    /// Now.
    pub clock: Clock,
    /// How long a command waits for its event to be applied.
    pub read_your_writes: Duration,
    /// WeChat Pay.
    pub pay: PayClient,
    /// WeChat Pay API v2 (legacy merchants), when its key is configured.
    pub pay_v2: Option<V2Client>,
    /// Which API new prepays, queries and closes use (`pay.api`).
    pub pay_api: PayApi,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Largest order or recharge, in fen.
    pub max_amount_fen: i64,
    /// How long an order stays payable.
    pub order_ttl: chrono::Duration,
}

impl Ctx {
    /// Wraps the parts.
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }

    /// Appends `event` durably under `msg_id`, stamped with the clock's time.
    pub async fn record(
        &self,
        event: &Event,
        correlation_id: &str,
        msg_id: &str,
    ) -> Result<Appended, LogError> {
        let started = std::time::Instant::now();
        let appended = self
            .log
            .append(Draft {
                event,
                correlation_id,
                msg_id,
                occurred_at: (self.clock)(),
            })
            .await?;
        // DEBUG: one line per event on the hot path would cost more than the append; the
        // stream itself and `wxledger_events_appended_total` are the record.
        tracing::debug!(
            seq = appended.seq,
            kind = event.kind(),
            duplicate = appended.duplicate,
            "event appended"
        );
        self.metrics.appended(
            event.kind(),
            appended.duplicate,
            started.elapsed().as_secs_f64(),
        );
        Ok(appended)
    }

    /// [`Ctx::record`], then waits until the projector has applied the event.
    pub async fn record_and_wait(
        &self,
        event: &Event,
        correlation_id: &str,
        msg_id: &str,
    ) -> Result<Appended, CommandError> {
        let appended = self.record(event, correlation_id, msg_id).await?;
        self.wait_for(appended.seq).await?;
        Ok(appended)
    }

    /// Waits until the projector has applied `seq`, at most `read_your_writes`.
    pub async fn wait_for(&self, seq: u64) -> Result<(), CommandError> {
        Ok(self.projection.wait_for(seq, self.read_your_writes).await?)
    }

    /// Waits until the projector has applied `seq`, at most `read_your_writes`, and reads
    /// the fold's verdict on it (an event [`crate::core::fold::keeps_verdict`] names).
    pub async fn wait_for_verdict(&self, seq: u64) -> Result<Verdict, CommandError> {
        Ok(self
            .projection
            .wait_for_verdict(seq, self.read_your_writes)
            .await?)
    }

    /// Now, by the context's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }
}

impl std::ops::Deref for Ctx {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}
