//! [`ProjectionWatch`]: a caller waits until its event is applied and reads the fold's
//! verdict on it, whichever process applied it.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{watch, Notify};

use super::error::{load_checkpoint, ProjectorError};
use crate::{
    core::fold::Verdict,
    daemon::metrics::Metrics,
    store::db::{verdicts, DbError},
};

/// Who is waiting for the projector in this process: the highest sequence a caller
/// waits for, and a wake-up. The projector lingers for more events only while nobody
/// waits (batches grow under a load of notifies, and a caller reading its own write is
/// not held by the linger). Shared by a [`ProjectionWatch`] and the
/// [`super::Projector`] of one process ([`ProjectionWatch::with_demand`],
/// [`super::Projector::with_demand`]); unshared, the projector always lingers.
#[derive(Clone, Default)]
pub struct Demand(Arc<Wanted>);

#[derive(Default)]
struct Wanted {
    seq: AtomicU64,
    woken: Notify,
}

impl Demand {
    /// A caller waits for `seq`: wakes a lingering projector.
    fn want(&self, seq: u64) {
        if self.0.seq.fetch_max(seq, Ordering::AcqRel) < seq {
            self.0.woken.notify_one();
        }
    }

    /// Whether a caller waits for an event after `checkpoint`.
    pub(super) fn waits_beyond(&self, checkpoint: u64) -> bool {
        self.0.seq.load(Ordering::Acquire) > checkpoint
    }

    /// Returns when a caller starts waiting (at once if one did since the last call).
    pub(super) async fn woken(&self) {
        self.0.woken.notified().await;
    }
}

/// Lets handlers wait until the projection has applied a given event.
#[derive(Clone)]
pub struct ProjectionWatch {
    applied: watch::Receiver<u64>,
    pool: deadpool_postgres::Pool,
    metrics: Option<Metrics>,
    demand: Demand,
}

/// The projection did not reach the event in time.
#[derive(Debug, thiserror::Error)]
#[error("projection has not applied event {0} yet")]
pub struct NotYetApplied(pub u64);

/// Why [`ProjectionWatch::wait_for_verdict`] has no verdict to give.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// The projection did not reach the event in time; it will (retry later).
    #[error(transparent)]
    NotYetApplied(#[from] NotYetApplied),
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The event was applied but keeps no verdict (a bug in the caller: it waits on an
    /// event [`crate::core::fold::keeps_verdict`] does not name).
    #[error("event {0} keeps no verdict")]
    NotKept(u64),
    /// The stored verdict does not read as one (written by another build?).
    #[error("{0}")]
    Unreadable(String),
}

impl ProjectionWatch {
    /// A watch fed by a local projector, falling back to the stored checkpoint (which a
    /// projector in another process advances).
    pub fn new(applied: watch::Receiver<u64>, pool: deadpool_postgres::Pool) -> Self {
        Self {
            applied,
            pool,
            metrics: None,
            demand: Demand::default(),
        }
    }

    /// Tells the local projector, sharing `demand`, when a caller waits.
    pub fn with_demand(mut self, demand: Demand) -> Self {
        self.demand = demand;
        self
    }

    /// Never says an event is applied while the local projector refuses the stream
    /// ([`crate::store::identity`]): its sequences may be ones the projection passed
    /// on another stream.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Waits until event `seq` is applied, or `timeout` passes.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> Result<(), NotYetApplied> {
        let mut applied = self.applied.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let metrics = self.metrics.as_ref();
        let refused = || metrics.is_some_and(|m| m.projector_stream_mismatch().is_some());
        if *applied.borrow() < seq {
            self.demand.want(seq);
        }
        loop {
            if *applied.borrow_and_update() >= seq && !refused() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(NotYetApplied(seq)),
                changed = applied.changed() => {
                    if changed.is_ok() {
                        continue;
                    }
                    // No local projector: only the stored checkpoint can tell.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // The local projector may be standing by while another process applies.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            // Ask Postgres only when the local projector has not answered promptly.
            if let Ok(client) = self.pool.get().await {
                if load_checkpoint(&client).await.is_ok_and(|cp| cp >= seq) && !refused() {
                    return Ok(());
                }
            }
        }
    }

    /// Waits until event `seq` is applied, or `timeout` passes, and reads the fold's
    /// verdict on it: stored with the batch that applied it, so this works whichever
    /// process applied it (a local projector may be standing by). Only events that keep
    /// their verdict ([`crate::core::fold::keeps_verdict`]) have one.
    pub async fn wait_for_verdict(
        &self,
        seq: u64,
        timeout: Duration,
    ) -> Result<Verdict, VerdictError> {
        self.wait_for(seq, timeout).await?;
        let client = self.pool.get().await.map_err(DbError::from)?;
        Self::verdict(&**client, seq).await
    }

    /// The fold's verdict on the applied event at `seq` (one that keeps its verdict).
    pub async fn verdict(
        client: &impl tokio_postgres::GenericClient,
        seq: u64,
    ) -> Result<Verdict, VerdictError> {
        let at = i64::try_from(seq).expect("sequences fit in i64");
        match verdicts::get(client, at).await {
            Ok(Some(verdict)) => Ok(verdict),
            Ok(None) => Err(VerdictError::NotKept(seq)),
            Err(verdicts::ReadError::Query(e)) => Err(DbError::Query(e).into()),
            Err(e @ verdicts::ReadError::Unreadable { .. }) => {
                Err(VerdictError::Unreadable(e.to_string()))
            }
        }
    }

    /// The checkpoint the local projector reported last.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The projection's checkpoint as Postgres stores it, which whichever process is
    /// applying advances (the local projector may be standing by), or the local one when
    /// that is newer.
    pub async fn checkpoint(&self) -> Result<u64, ProjectorError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        Ok(load_checkpoint(&client).await?.max(self.applied()))
    }
}
