//! Why a replay stopped.

use crate::store::{db::DbError, projector::ProjectorError, stream::LogError};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target schema is not usable.
    #[error("--into {schema}: {problem}")]
    Target {
        /// The schema named.
        schema: String,
        /// What is wrong.
        problem: String,
    },
    /// Postgres.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stage of the full rebuild stopped without saying why (it panicked, or the
    /// fold ended early); nothing was committed.
    #[error("the rebuild stopped: {0}")]
    Stopped(String),
    /// The stream.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Folding or writing a batch.
    #[error(transparent)]
    Projector(#[from] ProjectorError),
}

impl From<tokio_postgres::Error> for ReplayError {
    fn from(e: tokio_postgres::Error) -> Self {
        ReplayError::Db(DbError::from(e))
    }
}
