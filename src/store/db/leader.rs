//! One active worker per schema: a session advisory lock on a dedicated connection, and
//! the loop that tries for it again and again. The projector and the outcome publisher
//! each lead this way; whoever does not hold the lock stands by.

use std::{
    fmt::Display,
    future::Future,
    time::{Duration, Instant},
};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{connect_dedicated, lock_key, DbError, PgConfig};

/// The first pause after a failed round, doubled after each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause after failed rounds: short, so work resumes within a second of
/// Postgres or NATS returning. A failed round costs a connection attempt, no more.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A dedicated connection holding the advisory lock `name` of `schema`, or `None` when
/// another session holds it. The lock lasts as long as the connection: drop the client
/// to give it up.
pub async fn lead(
    pg: &PgConfig,
    schema: &str,
    name: &str,
) -> Result<Option<tokio_postgres::Client>, DbError> {
    Ok(match try_lead(pg, schema, name).await? {
        Lead::Leading(client) => Some(client),
        Lead::Standby(_) => None,
    })
}

/// What [`try_lead`] got: the connection either way.
pub enum Lead {
    /// The connection holds the lock (as long as it lives).
    Leading(tokio_postgres::Client),
    /// Another session holds the lock; the connection holds nothing.
    Standby(tokio_postgres::Client),
}

/// [`lead`], keeping the connection when another session leads (a standby may look at
/// the schema with it).
pub async fn try_lead(pg: &PgConfig, schema: &str, name: &str) -> Result<Lead, DbError> {
    let client = connect_dedicated(pg).await?;
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&lock_key(schema, name)],
        )
        .await?
        .get(0);
    Ok(if locked {
        Lead::Leading(client)
    } else {
        Lead::Standby(client)
    })
}

/// A worker that leads: each round takes the lock (see [`lead`]) and works while it
/// holds it, returning `Ok` once stopped or when another session holds the lock.
pub trait Round {
    /// Why a round failed.
    type Error: Display;
    /// One attempt; the lock is given up when it returns.
    fn round(
        &mut self,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// While rounds keep failing, a WARN at most this often (with the count so far).
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Runs `worker`'s rounds until `stop` is cancelled. After a round that ended well
/// (stopped, or standing by) it pauses `idle`; after a failed one it logs `failed` with
/// the error (at WARN once per `WARN_EVERY` of failing, at DEBUG between) and pauses
/// about 100 ms, doubling up to [`MAX_BACKOFF`] while rounds keep failing, each pause
/// between half and all of that (so standbys do not retry in step).
pub async fn run(worker: &mut impl Round, stop: &CancellationToken, idle: Duration, failed: &str) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u64;
    let mut warned: Option<Instant> = None;
    while !stop.is_cancelled() {
        let pause = match worker.round(stop).await {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                (failures, warned) = (0, None);
                idle
            }
            Err(e) => {
                failures += 1;
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(error = %e, failures, "{failed}");
                } else {
                    tracing::debug!(error = %e, failures, "{failed}");
                }
                let pause = jittered(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// A pause between half of `pause` and all of it.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}
