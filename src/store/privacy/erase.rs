//! Erasing a user (PIPL Art. 47): destroy their data key durably, then append
//! `user.erased`, which the fold applies (phone freed, personal columns cleared). Used by
//! `wxledger erase-user` and `POST /v1/admin/users/{user_id}/erase`; idempotent.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use super::keys;
use crate::{
    core::events::{Event, UserErased},
    store::{
        db::{users, DbError},
        stream::{log::Draft, Appended, EventLog, LogError},
    },
};

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// Who was erased.
    pub user_id: Uuid,
    /// The `user.erased` event, unless the projection already showed the user erased
    /// (then nothing was appended).
    pub appended: Option<Appended>,
    /// The data key had been destroyed before this call.
    pub key_already_destroyed: bool,
}

/// Why an erasure did not complete. Retrying is safe: each step is idempotent.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The users projection has no such user.
    #[error("no user {0}")]
    UnknownUser(Uuid),
    /// Postgres failed: the key may or may not be destroyed; nothing was appended.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The key is destroyed but `user.erased` was not acknowledged: retry.
    #[error("the data key is destroyed, but appending user.erased failed: {0}")]
    Log(#[from] LogError),
}

impl From<tokio_postgres::Error> for EraseError {
    fn from(e: tokio_postgres::Error) -> Self {
        EraseError::Db(DbError::Query(e))
    }
}

impl EraseError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            EraseError::UnknownUser(_) => "user_not_found",
            EraseError::Db(_) => "database_unavailable",
            EraseError::Log(_) => "event_log_unavailable",
        }
    }
}

/// Erases `user_id`: first destroys their data key and their WeChat session key in one
/// committed transaction (from then on nothing of theirs that was sealed can be read,
/// whatever happens next), then appends `user.erased` (message id
/// `user.erased:<user_id>`) so the fold frees their phone and clears the projections.
pub async fn erase_user(
    pool: &Pool,
    log: &EventLog,
    user_id: Uuid,
    correlation_id: &str,
    at: DateTime<Utc>,
) -> Result<Erasure, EraseError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let user = users::get(&**client, user_id)
        .await?
        .ok_or(EraseError::UnknownUser(user_id))?;
    let tx = client.transaction().await?;
    let key_already_destroyed = keys::destroy(&*tx, user_id, at).await?;
    tx.execute("DELETE FROM wx_sessions WHERE user_id = $1", &[&user_id])
        .await?;
    tx.commit().await?;
    drop(client);
    if user.erased_at.is_some() {
        return Ok(Erasure {
            user_id,
            appended: None,
            key_already_destroyed,
        });
    }
    let event = Event::UserErased(UserErased { user_id });
    let appended = log
        .append(Draft {
            event: &event,
            correlation_id,
            msg_id: &event.msg_id(None),
            occurred_at: at,
        })
        .await?;
    tracing::info!(%user_id, seq = appended.seq, "user erased");
    Ok(Erasure {
        user_id,
        appended: Some(appended),
        key_already_destroyed,
    })
}
