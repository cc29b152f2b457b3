//! `user_keys`: each user's data key, sealed under the key-encryption key. Not a
//! projection (the stream never holds a key): rebuilds and replays leave it alone. A
//! destroyed key leaves a tombstone row (no key, `erased_at` set), so no new key can be
//! made for an erased user.

use chrono::{DateTime, Utc};
use tokio_postgres::{types::Type, GenericClient};
use uuid::Uuid;

use super::{DataKey, Vault};

/// A user's data key as `user_keys` holds it.
pub enum UserKey {
    /// The key, opened (boxed: an AES key schedule is large).
    Live(Box<DataKey>),
    /// Destroyed: the user was erased.
    Erased,
    /// None yet: the user never sealed anything.
    Missing,
}

/// A data key that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The user was erased; nothing personal can be sealed for them again.
    #[error("the user was erased")]
    Erased,
    /// The stored key does not open under `privacy.data_key_encryption_key` (another key
    /// was configured, or the row was altered).
    #[error("the data key of user {0} does not open under privacy.data_key_encryption_key")]
    Unopenable(Uuid),
    /// Postgres failed.
    #[error("user_keys: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// The user's data key, if any.
pub async fn load(
    client: &impl GenericClient,
    vault: &Vault,
    user_id: Uuid,
) -> Result<UserKey, KeyError> {
    let row = client
        .query_typed_opt(
            "SELECT key_id, sealed_key FROM user_keys WHERE user_id = $1",
            &[(&user_id, Type::UUID)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(UserKey::Missing);
    };
    let sealed: Option<Vec<u8>> = row.get("sealed_key");
    match sealed {
        None => Ok(UserKey::Erased),
        Some(sealed) => vault
            .open_data_key(user_id, row.get("key_id"), &sealed)
            .map(|key| UserKey::Live(Box::new(key)))
            .map_err(|_| KeyError::Unopenable(user_id)),
    }
}

/// The user's data key, made and stored first if they have none; refused once erased.
pub async fn for_writing(
    client: &impl GenericClient,
    vault: &Vault,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<DataKey, KeyError> {
    if let UserKey::Missing = load(client, vault, user_id).await? {
        let (fresh, sealed) = vault.new_data_key(user_id);
        // A racing request may have stored its key first: then that one is used.
        client
            .execute(
                "INSERT INTO user_keys (user_id, key_id, sealed_key, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING",
                &[&user_id, &fresh.key_id(), &sealed, &at],
            )
            .await?;
    }
    match load(client, vault, user_id).await? {
        UserKey::Live(key) => Ok(*key),
        UserKey::Erased => Err(KeyError::Erased),
        UserKey::Missing => unreachable!("a key row was just inserted or already there"),
    }
}

/// Destroys the user's data key (or records that they have none and never will) and
/// answers whether it was already destroyed. The caller commits before it appends
/// `user.erased`, so no event says "erased" while the key still exists.
pub async fn destroy(
    client: &impl GenericClient,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    let already = client
        .query_opt(
            "SELECT 1 FROM user_keys WHERE user_id = $1 AND sealed_key IS NULL",
            &[&user_id],
        )
        .await?
        .is_some();
    client
        .execute(
            "INSERT INTO user_keys (user_id, key_id, sealed_key, created_at, erased_at)
             VALUES ($1, $2, NULL, $3, $3)
             ON CONFLICT (user_id) DO UPDATE
             SET sealed_key = NULL, erased_at = COALESCE(user_keys.erased_at, EXCLUDED.erased_at)",
            &[&user_id, &Uuid::new_v4(), &at],
        )
        .await?;
    Ok(already)
}
