//! The `users` table: loading the rows a batch touches, writing back changed rows, and
//! the API's reads. Also the sealed session keys (`wx_sessions`).

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::copy::{CopyRow, EncodeError, RowWriter};
use crate::fold::{Keys, Phone, User};

const COLUMNS: &str = "user_id, openid, unionid, phone_country_code, phone_number, \
     phone_bound_at, nickname, avatar_url, registered_at, last_login_at, login_count, last_seq";

fn from_row(row: &Row) -> User {
    let country: Option<String> = row.get("phone_country_code");
    let number: Option<String> = row.get("phone_number");
    User {
        user_id: row.get("user_id"),
        openid: row.get("openid"),
        unionid: row.get("unionid"),
        phone: country.zip(number).map(|(c, n)| Phone {
            country_code: c,
            pure_phone_number: n,
        }),
        phone_bound_at: row.get("phone_bound_at"),
        nickname: row.get("nickname"),
        avatar_url: row.get("avatar_url"),
        registered_at: row.get("registered_at"),
        last_login_at: row.get("last_login_at"),
        login_count: row.get("login_count"),
        last_seq: row.get("last_seq"),
    }
}

/// The rows whose id or phone is among `keys`.
pub async fn load_for(
    client: &impl GenericClient,
    keys: &Keys,
) -> Result<Vec<User>, tokio_postgres::Error> {
    let ids: Vec<Uuid> = keys.user_ids.iter().copied().collect();
    let phones: Vec<String> = keys.phones.iter().cloned().collect();
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM users WHERE user_id = ANY($1) OR phone_key = ANY($2)"),
            &[&ids, &phones],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts or replaces `users` (one statement, however many rows).
pub async fn upsert(
    client: &impl GenericClient,
    users: &[User],
) -> Result<(), tokio_postgres::Error> {
    if users.is_empty() {
        return Ok(());
    }
    let mut user_id = Vec::with_capacity(users.len());
    let mut openid = Vec::with_capacity(users.len());
    let mut unionid = Vec::with_capacity(users.len());
    let mut country = Vec::with_capacity(users.len());
    let mut number = Vec::with_capacity(users.len());
    let mut phone_key = Vec::with_capacity(users.len());
    let mut bound_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(users.len());
    let mut nickname = Vec::with_capacity(users.len());
    let mut avatar = Vec::with_capacity(users.len());
    let mut registered_at = Vec::with_capacity(users.len());
    let mut last_login_at = Vec::with_capacity(users.len());
    let mut login_count = Vec::with_capacity(users.len());
    let mut last_seq = Vec::with_capacity(users.len());
    for u in users {
        user_id.push(u.user_id);
        openid.push(u.openid.as_str());
        unionid.push(u.unionid.as_deref());
        country.push(u.phone.as_ref().map(|p| p.country_code.as_str()));
        number.push(u.phone.as_ref().map(|p| p.pure_phone_number.as_str()));
        phone_key.push(u.phone.as_ref().map(Phone::key));
        bound_at.push(u.phone_bound_at);
        nickname.push(u.nickname.as_deref());
        avatar.push(u.avatar_url.as_deref());
        registered_at.push(u.registered_at);
        last_login_at.push(u.last_login_at);
        login_count.push(u.login_count);
        last_seq.push(u.last_seq);
    }
    client
        .execute(
            "INSERT INTO users (user_id, openid, unionid, phone_country_code, phone_number, \
                 phone_key, phone_bound_at, nickname, avatar_url, registered_at, last_login_at, \
                 login_count, last_seq)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[], \
                 $11::timestamptz[], $12::int8[], $13::int8[])
             ON CONFLICT (user_id) DO UPDATE SET
                 openid = EXCLUDED.openid, unionid = EXCLUDED.unionid,
                 phone_country_code = EXCLUDED.phone_country_code,
                 phone_number = EXCLUDED.phone_number, phone_key = EXCLUDED.phone_key,
                 phone_bound_at = EXCLUDED.phone_bound_at, nickname = EXCLUDED.nickname,
                 avatar_url = EXCLUDED.avatar_url, registered_at = EXCLUDED.registered_at,
                 last_login_at = EXCLUDED.last_login_at, login_count = EXCLUDED.login_count,
                 last_seq = EXCLUDED.last_seq",
            &[
                &user_id,
                &openid,
                &unionid,
                &country,
                &number,
                &phone_key,
                &bound_at,
                &nickname,
                &avatar,
                &registered_at,
                &last_login_at,
                &login_count,
                &last_seq,
            ],
        )
        .await?;
    Ok(())
}

impl CopyRow for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static str = "user_id, openid, unionid, phone_country_code, phone_number, \
         phone_key, phone_bound_at, nickname, avatar_url, registered_at, last_login_at, \
         login_count, last_seq";
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.user_id)?;
        row.field(&self.openid)?;
        row.field(&self.unionid)?;
        row.field(&self.phone.as_ref().map(|p| p.country_code.as_str()))?;
        row.field(&self.phone.as_ref().map(|p| p.pure_phone_number.as_str()))?;
        row.field(&self.phone.as_ref().map(Phone::key))?;
        row.field(&self.phone_bound_at)?;
        row.field(&self.nickname)?;
        row.field(&self.avatar_url)?;
        row.field(&self.registered_at)?;
        row.field(&self.last_login_at)?;
        row.field(&self.login_count)?;
        row.field(&self.last_seq)
    }
}

/// One user by id.
pub async fn get(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<Option<User>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE user_id = $1"),
            &[&user_id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The user a phone is bound to.
pub async fn phone_owner(
    client: &impl GenericClient,
    phone: &Phone,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT user_id FROM users WHERE phone_key = $1",
            &[&phone.key()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Stores the user's latest sealed session key.
pub async fn put_session_key(
    client: &impl GenericClient,
    user_id: Uuid,
    sealed: &[u8],
    at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO wx_sessions (user_id, sealed_session_key, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE
             SET sealed_session_key = EXCLUDED.sealed_session_key, updated_at = EXCLUDED.updated_at",
            &[&user_id, &sealed, &at],
        )
        .await?;
    Ok(())
}

/// The user's sealed session key, if they logged in since sessions were kept.
pub async fn session_key(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT sealed_session_key FROM wx_sessions WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
