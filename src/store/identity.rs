//! Stream identity: which stream a projection was built from (the stream's creation time
//! and its first event's id, in `stream_identity`), and the projector's refusal to go on
//! from another. A stream deleted and recreated (or a single node that lost its last
//! writes) reuses sequences at or below the checkpoint; the projector reads only past the
//! checkpoint, so it would skip those events without a word. Instead it holds, loudly: an
//! ERROR, the `wxledger_projector_stream_mismatch` gauge, a readiness reason, and
//! [`crate::store::projector::ProjectionWatch::wait_for`] refusing to say "applied".
//! The way out is the operator's (README, "When the stream is not the one the projection
//! was built from"): rebuild into a new schema from the surviving stream and switch.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio_postgres::GenericClient;
use tokio_util::sync::CancellationToken;

use crate::{
    daemon::metrics::Metrics,
    store::{
        projector::error::{ProjectorError, PROJECTION},
        stream::{EventLog, LogError},
    },
};

/// How often a holding projector looks at the stream again, and how often a running one
/// checks that the stream is still the one it started on.
pub const RECHECK: Duration = Duration::from_secs(2);

/// The stream as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIdentity {
    /// When the stream was created (to the microsecond, as Postgres keeps it).
    pub created: DateTime<Utc>,
    /// The first event's envelope id (`sha256:<hex>` of its payload when that is not an
    /// envelope); `None` while the stream is empty.
    pub first_event: Option<String>,
    /// The stream's last sequence (0 when empty).
    pub last_seq: u64,
}

impl StreamIdentity {
    /// The identity of a stream created at `created` whose first message carries
    /// `first` (none when empty) and whose last sequence is `last_seq`.
    pub fn new(created: DateTime<Utc>, first: Option<&Bytes>, last_seq: u64) -> Self {
        Self {
            created: crate::core::events::to_micros(created),
            first_event: first.map(|payload| first_event_id(payload)),
            last_seq,
        }
    }
}

/// The envelope id of a payload, or a digest of it when it is not an envelope.
fn first_event_id(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: uuid::Uuid,
    }
    match serde_json::from_slice::<IdOnly>(payload) {
        Ok(envelope) => envelope.id.to_string(),
        Err(_) => {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(payload)))
        }
    }
}

/// The identity a projection recorded: the stream it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltFrom {
    /// The stream's creation time.
    pub created: DateTime<Utc>,
    /// Its first event's id, once it had one.
    pub first_event: Option<String>,
}

impl From<&StreamIdentity> for BuiltFrom {
    fn from(stream: &StreamIdentity) -> Self {
        Self {
            created: stream.created,
            first_event: stream.first_event.clone(),
        }
    }
}

/// Why the projector refuses the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The stream was created after (or before) the one the projection was built from.
    #[error(
        "stream identity changed: the stream was created at {now}, the projection was \
         built from one created at {recorded}; rebuild into a new schema (wxledger replay)"
    )]
    Recreated {
        /// The recorded creation time.
        recorded: DateTime<Utc>,
        /// The stream's.
        now: DateTime<Utc>,
    },
    /// The stream's first event is not the one the projection was built from.
    #[error(
        "stream identity changed: its first event is not the one the projection was built \
         from; rebuild into a new schema (wxledger replay)"
    )]
    FirstEvent,
    /// The stream ends before the checkpoint: it lost writes the projection applied.
    #[error(
        "stream identity changed: the stream ends at seq {last_seq}, before the projection's \
         checkpoint {checkpoint} (lost writes); rebuild into a new schema (wxledger replay)"
    )]
    Behind {
        /// The stream's last sequence.
        last_seq: u64,
        /// The projection's checkpoint.
        checkpoint: u64,
    },
}

/// Whether a projection at `checkpoint` that recorded `recorded` may go on reading
/// `stream`: `Ok` with the identity to record (none when the recorded one stands), or why
/// not. A projection with no identity yet (new, or built before identities were kept)
/// takes the stream's.
pub fn judge(
    recorded: Option<&BuiltFrom>,
    stream: &StreamIdentity,
    checkpoint: u64,
) -> Result<Option<BuiltFrom>, Mismatch> {
    let current = BuiltFrom::from(stream);
    let update = match recorded {
        None => Some(current),
        Some(recorded) if recorded.created != stream.created => {
            return Err(Mismatch::Recreated {
                recorded: recorded.created,
                now: stream.created,
            })
        }
        Some(recorded) => match (&recorded.first_event, &stream.first_event) {
            (Some(was), Some(is)) if was == is => None,
            (Some(_), _) => return Err(Mismatch::FirstEvent),
            // Recorded while the stream was empty: its first event is known now.
            (None, Some(_)) => Some(current),
            (None, None) => None,
        },
    };
    if stream.last_seq < checkpoint {
        return Err(Mismatch::Behind {
            last_seq: stream.last_seq,
            checkpoint,
        });
    }
    Ok(update)
}

/// The identity the schema's projection recorded, if any.
pub async fn load(client: &impl GenericClient) -> Result<Option<BuiltFrom>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT stream_created, first_event FROM stream_identity WHERE projection = $1",
            &[&PROJECTION],
        )
        .await?;
    Ok(row.map(|r| BuiltFrom {
        created: r.get(0),
        first_event: r.get(1),
    }))
}

/// Records `identity` as the one the schema's projection is built from.
pub async fn record(
    client: &impl GenericClient,
    identity: &BuiltFrom,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO stream_identity (projection, stream_created, first_event)
             VALUES ($1, $2, $3)
             ON CONFLICT (projection) DO UPDATE
             SET stream_created = $2, first_event = $3, recorded_at = now()",
            &[&PROJECTION, &identity.created, &identity.first_event],
        )
        .await?;
    Ok(())
}

/// Before a projector round applies anything: checks the stream against the identity
/// the projection at `checkpoint` recorded (recording it when there is none) and, while
/// they differ, holds (nothing applied, checked again every [`RECHECK`]) with an ERROR
/// once per change, the mismatch gauge and its reason in `metrics`. Returns the stream's
/// identity once they agree, or `None` when stopped.
pub async fn hold(
    client: &tokio_postgres::Client,
    log: &EventLog,
    checkpoint: u64,
    metrics: Option<&Metrics>,
    stop: &CancellationToken,
) -> Result<Option<StreamIdentity>, ProjectorError> {
    let mut alarmed = metrics.and_then(Metrics::projector_stream_mismatch);
    loop {
        let stream = log.identity().await?;
        let recorded = load(client).await?;
        match judge(recorded.as_ref(), &stream, checkpoint) {
            Ok(update) => {
                if let Some(update) = update {
                    if recorded.is_none() && checkpoint > 0 {
                        tracing::info!(
                            checkpoint,
                            "the projection has no stream identity yet (built before they \
                             were kept): recording the current stream's"
                        );
                    }
                    record(client, &update).await?;
                }
                if alarmed.is_some() {
                    tracing::info!("the stream is the one the projection was built from again");
                }
                if let Some(m) = metrics {
                    m.projector_stream_refused(None);
                }
                return Ok(Some(stream));
            }
            Err(mismatch) => {
                let reason = mismatch.to_string();
                if alarmed.as_deref() != Some(reason.as_str()) {
                    tracing::error!(
                        checkpoint,
                        stream_last_seq = stream.last_seq,
                        "projector refuses the stream: {reason}. Events at sequences it has \
                         passed would be skipped; it applies nothing until the projection \
                         is rebuilt from the surviving stream and the daemon switched to it"
                    );
                    if let Some(m) = metrics {
                        m.projector_stream_refused(Some(reason.clone()));
                    }
                    alarmed = Some(reason);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// For a projector standing by (another process applies): judges the stream against the
/// identity the projection at `checkpoint` recorded, without recording anything, and
/// sets or clears the mismatch in `metrics` as [`hold`] does, so that this process's
/// [`crate::store::projector::ProjectionWatch`] and readiness refuse a stream the active
/// projector refuses (a waiter here would otherwise take the stored checkpoint for its
/// new event's). A WARN once per change; the active projector logs the ERROR.
pub async fn judge_standing_by(
    client: &tokio_postgres::Client,
    log: &EventLog,
    checkpoint: u64,
    metrics: &Metrics,
) -> Result<(), ProjectorError> {
    let stream = log.identity().await?;
    let recorded = load(client).await?;
    let now = judge(recorded.as_ref(), &stream, checkpoint)
        .err()
        .map(|m| m.to_string());
    let was = metrics.projector_stream_mismatch();
    if now != was {
        match &now {
            Some(reason) => tracing::warn!(
                checkpoint,
                "standing by, and the stream is not the one the projection was built \
                 from: {reason}"
            ),
            None => tracing::info!("the stream is the one the projection was built from again"),
        }
        metrics.projector_stream_refused(now);
    }
    Ok(())
}

/// `messages`, which also ends in an error as soon as the stream stops being `known`
/// (recreated, or ending before `checkpoint`), looked at every [`RECHECK`]: the
/// round then starts over and [`hold`] refuses. An ordered consumer follows a recreated
/// stream from where it was and would wait, silently, past events it never sees.
pub fn watched<S>(
    log: &EventLog,
    known: StreamIdentity,
    checkpoint: u64,
    messages: S,
) -> impl Stream<Item = Result<(u64, Bytes), LogError>> + Send + Unpin
where
    S: Stream<Item = Result<(u64, Bytes), LogError>> + Send + Unpin,
{
    let log = log.clone();
    let recorded = BuiltFrom::from(&known);
    let watch = futures::stream::once(async move {
        loop {
            tokio::time::sleep(RECHECK).await;
            // A failed look proves nothing: the read itself fails if NATS does.
            let Ok(now) = log.identity().await else {
                continue;
            };
            if let Err(mismatch) = judge(Some(&recorded), &now, checkpoint) {
                return Err(LogError::Jetstream(mismatch.to_string()));
            }
        }
    });
    futures::stream::select(messages, Box::pin(watch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn stream(created: i64, first: Option<&str>, last_seq: u64) -> StreamIdentity {
        StreamIdentity {
            created: at(created),
            first_event: first.map(str::to_owned),
            last_seq,
        }
    }

    fn recorded(created: i64, first: Option<&str>) -> BuiltFrom {
        BuiltFrom {
            created: at(created),
            first_event: first.map(str::to_owned),
        }
    }

    #[test]
    fn the_same_stream_goes_on_and_a_new_projection_takes_the_streams_identity() {
        let s = stream(100, Some("e1"), 9);
        assert_eq!(judge(Some(&recorded(100, Some("e1"))), &s, 9), Ok(None));
        assert_eq!(judge(None, &s, 0), Ok(Some(recorded(100, Some("e1")))));
        // The upgrade: a checkpoint but no identity yet.
        assert_eq!(judge(None, &s, 5), Ok(Some(recorded(100, Some("e1")))));
        // Recorded while empty: the first event is filled in.
        assert_eq!(
            judge(Some(&recorded(100, None)), &s, 0),
            Ok(Some(recorded(100, Some("e1"))))
        );
        assert_eq!(
            judge(Some(&recorded(100, None)), &stream(100, None, 0), 0),
            Ok(None)
        );
    }

    #[test]
    fn a_recreated_stream_is_refused() {
        let was = recorded(100, Some("e1"));
        assert_eq!(
            judge(Some(&was), &stream(200, Some("e1"), 20), 9),
            Err(Mismatch::Recreated {
                recorded: at(100),
                now: at(200)
            })
        );
        assert_eq!(
            judge(Some(&was), &stream(100, Some("e2"), 20), 9),
            Err(Mismatch::FirstEvent)
        );
        assert_eq!(
            judge(Some(&recorded(100, None)), &stream(200, None, 0), 0),
            Err(Mismatch::Recreated {
                recorded: at(100),
                now: at(200)
            })
        );
    }

    #[test]
    fn a_stream_that_ends_before_the_checkpoint_is_refused() {
        let was = recorded(100, Some("e1"));
        let lost = judge(Some(&was), &stream(100, Some("e1"), 7), 9);
        assert_eq!(
            lost,
            Err(Mismatch::Behind {
                last_seq: 7,
                checkpoint: 9
            })
        );
        assert!(lost
            .unwrap_err()
            .to_string()
            .starts_with("stream identity changed: the stream ends at seq 7"));
        // Also without an identity recorded: the upgrade records nothing then.
        assert!(judge(None, &stream(100, Some("e1"), 3), 9).is_err());
    }

    #[test]
    fn the_first_event_is_its_envelope_id_or_a_digest() {
        let id = uuid::Uuid::new_v4();
        let envelope = Bytes::from(format!(r#"{{"id":"{id}","type":"x"}}"#));
        let garbage = Bytes::from_static(b"\xff not an envelope");
        let s = StreamIdentity::new(at(1), Some(&envelope), 1);
        assert_eq!(s.first_event, Some(id.to_string()));
        let g = StreamIdentity::new(at(1), Some(&garbage), 1);
        assert!(g.first_event.unwrap().starts_with("sha256:"));
        assert_eq!(StreamIdentity::new(at(1), None, 0).first_event, None);
    }
}
