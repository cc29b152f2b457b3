//! Erasing a user at their request (crypto-shredding, see
//! [`crate::store::privacy::erase_user`]): the data key goes first, then `user.erased` is
//! recorded and applied.

use uuid::Uuid;

use super::{CommandError, Ctx};
use crate::{
    core::fold::User,
    store::{
        db::users,
        privacy::{erase_user, EraseError},
    },
};

/// A user erased (or found erased already).
pub struct Erased {
    /// The `user.erased` event's sequence; `None` when the projection already showed the
    /// user erased (nothing was appended).
    pub seq: Option<u64>,
    /// The data key had been destroyed before this call.
    pub key_already_destroyed: bool,
    /// The user after the erasure applied.
    pub user: User,
}

/// Erases `user_id`: destroys their data key, then records `user.erased` and waits until
/// the projection applied it. Idempotent: a repeat finds the user erased and appends
/// nothing. `UserNotFound` when there is no such user.
pub async fn erase(ctx: &Ctx, user_id: Uuid, request_id: &str) -> Result<Erased, CommandError> {
    let started = std::time::Instant::now();
    let erasure = erase_user(&ctx.pool, &ctx.log, user_id, request_id, ctx.now())
        .await
        .map_err(|e| match e {
            EraseError::UnknownUser(_) => CommandError::UserNotFound,
            EraseError::Db(e) => e.into(),
            EraseError::Log(e) => e.into(),
        })?;
    if let Some(appended) = erasure.appended {
        ctx.metrics.appended(
            "user.erased",
            appended.duplicate,
            started.elapsed().as_secs_f64(),
        );
        ctx.wait_for(appended.seq).await?;
    }
    let user = users::get(&**ctx.pool.get().await?, user_id)
        .await?
        .ok_or(CommandError::UserNotFound)?;
    Ok(Erased {
        seq: erasure.appended.map(|a| a.seq),
        key_already_destroyed: erasure.key_already_destroyed,
        user,
    })
}
