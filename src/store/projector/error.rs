//! The projection's name in `projector_checkpoints`, its checkpoint, and why a projector
//! round ends. A leaf: the projector, its watch and the stream-identity check share it.

use crate::{
    core::events::DecodeError,
    store::{db::DbError, stream::LogError},
};

/// The name of the projection in `projector_checkpoints`.
pub const PROJECTION: &str = "wxledger";

/// Why a projector round ended; it starts over from the checkpoint after a pause.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// NATS failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An event this build cannot read; the projector waits rather than skip it.
    #[error("event {seq} cannot be read: {source}")]
    Decode {
        /// Its sequence.
        seq: u64,
        /// Why.
        source: DecodeError,
    },
    /// Another writer moved the checkpoint under us.
    #[error("checkpoint moved by another projector")]
    CheckpointMoved,
}

impl From<tokio_postgres::Error> for ProjectorError {
    fn from(e: tokio_postgres::Error) -> Self {
        ProjectorError::Db(DbError::Query(e))
    }
}

/// The projection's checkpoint: the last sequence applied (0 before any).
pub async fn load_checkpoint(client: &tokio_postgres::Client) -> Result<u64, ProjectorError> {
    let row = client
        .query_typed_opt(
            "SELECT last_seq FROM projector_checkpoints WHERE projection = $1",
            &[(&PROJECTION, tokio_postgres::types::Type::TEXT)],
        )
        .await?;
    Ok(row.map_or(0, |r| {
        u64::try_from(r.get::<_, i64>(0)).expect("checkpoints are not negative")
    }))
}
