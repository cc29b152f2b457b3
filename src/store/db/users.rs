//! The `users` table: loading the rows a batch touches, writing back changed rows, and
//! the API's reads. Also the sealed session keys (`wx_sessions`).

use chrono::{DateTime, Utc};
use tokio_postgres::{types::Type, GenericClient, Row, Statement};
use uuid::Uuid;

use super::copy::{CopyRow, EncodeError, RowWriter};
use crate::core::{
    events::{BlindIndex, Sealed},
    fold::{BoundPhone, Keys, Phone, User},
};

const COLUMNS: &str =
    "user_id, openid, unionid, unionid_sealed, phone_country_code, phone_number, \
     phone_sealed, phone_key, phone_bound_at, nickname, avatar_url, profile_sealed, erased_at, \
     registered_at, last_login_at, login_count, last_seq";

/// A `users` row the fold cannot take back: a sealed column or a blind index that does
/// not parse (the row was altered by hand).
fn corrupt(column: &str, user_id: uuid::Uuid) -> ! {
    panic!("users.{column} of {user_id} is not in the form wxledger writes")
}

fn from_row(row: &Row) -> User {
    let user_id: Uuid = row.get("user_id");
    let country: Option<String> = row.get("phone_country_code");
    let number: Option<String> = row.get("phone_number");
    let sealed: Option<String> = row.get("phone_sealed");
    let key: Option<String> = row.get("phone_key");
    let phone = match (sealed, key) {
        (Some(sealed), Some(key)) => Some(BoundPhone::Sealed {
            phone: sealed
                .parse()
                .unwrap_or_else(|_| corrupt("phone_sealed", user_id)),
            bidx: key
                .strip_prefix("bidx:")
                .and_then(|hex| BlindIndex::try_from(hex.to_owned()).ok())
                .unwrap_or_else(|| corrupt("phone_key", user_id)),
        }),
        _ => country
            .zip(number)
            .map(|(c, n)| BoundPhone::Plain(Phone::new(&c, &n))),
    };
    let profile_sealed: Option<String> = row.get("profile_sealed");
    let unionid_sealed: Option<String> = row.get("unionid_sealed");
    User {
        user_id,
        openid: row.get("openid"),
        unionid: row.get("unionid"),
        unionid_sealed: unionid_sealed.map(|s| {
            s.parse::<Sealed>()
                .unwrap_or_else(|_| corrupt("unionid_sealed", user_id))
        }),
        phone,
        phone_bound_at: row.get("phone_bound_at"),
        nickname: row.get("nickname"),
        avatar_url: row.get("avatar_url"),
        profile_sealed: profile_sealed.map(|s| {
            s.parse::<Sealed>()
                .unwrap_or_else(|_| corrupt("profile_sealed", user_id))
        }),
        erased_at: row.get("erased_at"),
        registered_at: row.get("registered_at"),
        last_login_at: row.get("last_login_at"),
        login_count: row.get("login_count"),
        last_seq: row.get("last_seq"),
    }
}

/// The projector's load ([`load_for`]): the rows whose id or phone is among `$1`, `$2`.
pub fn load_sql() -> String {
    format!("SELECT {COLUMNS} FROM users WHERE user_id = ANY($1) OR phone_key = ANY($2)")
}

/// The rows whose id or phone is among `keys`, by `load` (prepared from [`load_sql`]);
/// no query when `keys` names no user.
pub async fn load_for(
    client: &impl GenericClient,
    load: &Statement,
    keys: &Keys,
) -> Result<Vec<User>, tokio_postgres::Error> {
    if keys.user_ids.is_empty() && keys.phones.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = keys.user_ids.iter().copied().collect();
    let phones: Vec<&str> = keys.phones.iter().map(String::as_str).collect();
    let rows = client.query(load, &[&ids, &phones]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// The phone columns of a row: country code and number (v1, in clear), the sealed
/// number (v2) and the owner key.
struct PhoneColumns {
    country: Option<String>,
    number: Option<String>,
    sealed: Option<String>,
    key: Option<String>,
}

fn phone_columns(phone: Option<&BoundPhone>) -> PhoneColumns {
    let (country, number, sealed) = match phone {
        Some(BoundPhone::Plain(p)) => (
            Some(p.country_code.clone()),
            Some(p.pure_phone_number.clone()),
            None,
        ),
        Some(BoundPhone::Sealed { phone, .. }) => (None, None, Some(phone.to_string())),
        None => (None, None, None),
    };
    PhoneColumns {
        country,
        number,
        sealed,
        key: phone.map(BoundPhone::owner_key),
    }
}

/// The projector's write ([`upsert`]): inserts or replaces the rows of the arrays.
pub const UPSERT: &str = "INSERT INTO users (user_id, openid, unionid, phone_country_code, \
         phone_number, phone_sealed, phone_key, phone_bound_at, nickname, avatar_url, \
         profile_sealed, erased_at, registered_at, last_login_at, login_count, last_seq, \
         unionid_sealed)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], \
         $11::text[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], \
         $15::int8[], $16::int8[], $17::text[])
     ON CONFLICT (user_id) DO UPDATE SET
         openid = EXCLUDED.openid, unionid = EXCLUDED.unionid,
         unionid_sealed = EXCLUDED.unionid_sealed,
         phone_country_code = EXCLUDED.phone_country_code,
         phone_number = EXCLUDED.phone_number, phone_sealed = EXCLUDED.phone_sealed,
         phone_key = EXCLUDED.phone_key,
         phone_bound_at = EXCLUDED.phone_bound_at, nickname = EXCLUDED.nickname,
         avatar_url = EXCLUDED.avatar_url, profile_sealed = EXCLUDED.profile_sealed,
         erased_at = EXCLUDED.erased_at, registered_at = EXCLUDED.registered_at,
         last_login_at = EXCLUDED.last_login_at, login_count = EXCLUDED.login_count,
         last_seq = EXCLUDED.last_seq";

/// Inserts or replaces `users` by `upsert` (prepared from [`UPSERT`]): one statement,
/// however many rows.
pub async fn upsert(
    client: &impl GenericClient,
    upsert: &Statement,
    users: &[User],
) -> Result<(), tokio_postgres::Error> {
    if users.is_empty() {
        return Ok(());
    }
    let n = users.len();
    let mut user_id = Vec::with_capacity(n);
    let mut openid = Vec::with_capacity(n);
    let mut unionid = Vec::with_capacity(n);
    let mut unionid_sealed = Vec::with_capacity(n);
    let mut country = Vec::with_capacity(n);
    let mut number = Vec::with_capacity(n);
    let mut phone_sealed = Vec::with_capacity(n);
    let mut phone_key = Vec::with_capacity(n);
    let mut bound_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut nickname = Vec::with_capacity(n);
    let mut avatar = Vec::with_capacity(n);
    let mut profile_sealed = Vec::with_capacity(n);
    let mut erased_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut registered_at = Vec::with_capacity(n);
    let mut last_login_at = Vec::with_capacity(n);
    let mut login_count = Vec::with_capacity(n);
    let mut last_seq = Vec::with_capacity(n);
    for u in users {
        let phone = phone_columns(u.phone.as_ref());
        user_id.push(u.user_id);
        openid.push(u.openid.as_str());
        unionid.push(u.unionid.as_deref());
        unionid_sealed.push(u.unionid_sealed.as_ref().map(ToString::to_string));
        country.push(phone.country);
        number.push(phone.number);
        phone_sealed.push(phone.sealed);
        phone_key.push(phone.key);
        bound_at.push(u.phone_bound_at);
        nickname.push(u.nickname.as_deref());
        avatar.push(u.avatar_url.as_deref());
        profile_sealed.push(u.profile_sealed.as_ref().map(ToString::to_string));
        erased_at.push(u.erased_at);
        registered_at.push(u.registered_at);
        last_login_at.push(u.last_login_at);
        login_count.push(u.login_count);
        last_seq.push(u.last_seq);
    }
    client
        .execute(
            upsert,
            &[
                &user_id,
                &openid,
                &unionid,
                &country,
                &number,
                &phone_sealed,
                &phone_key,
                &bound_at,
                &nickname,
                &avatar,
                &profile_sealed,
                &erased_at,
                &registered_at,
                &last_login_at,
                &login_count,
                &last_seq,
                &unionid_sealed,
            ],
        )
        .await?;
    Ok(())
}

impl CopyRow for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static str = "user_id, openid, unionid, phone_country_code, phone_number, \
         phone_sealed, phone_key, phone_bound_at, nickname, avatar_url, profile_sealed, \
         erased_at, registered_at, last_login_at, login_count, last_seq, unionid_sealed";
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        let phone = phone_columns(self.phone.as_ref());
        row.field(&self.user_id)?;
        row.field(&self.openid)?;
        row.field(&self.unionid)?;
        row.field(&phone.country)?;
        row.field(&phone.number)?;
        row.field(&phone.sealed)?;
        row.field(&phone.key)?;
        row.field(&self.phone_bound_at)?;
        row.field(&self.nickname)?;
        row.field(&self.avatar_url)?;
        row.field(&self.profile_sealed.as_ref().map(ToString::to_string))?;
        row.field(&self.erased_at)?;
        row.field(&self.registered_at)?;
        row.field(&self.last_login_at)?;
        row.field(&self.login_count)?;
        row.field(&self.last_seq)?;
        row.field(&self.unionid_sealed.as_ref().map(ToString::to_string))
    }
}

/// One user by id.
pub async fn get(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<Option<User>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE user_id = $1"),
            &[(&user_id, Type::UUID)],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The user a phone is bound to, under any of its owner keys (in clear by a v1 event,
/// by blind index by a v2 one: see [`BoundPhone::owner_key`]).
pub async fn phone_owner(
    client: &impl GenericClient,
    owner_keys: &[String],
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT user_id FROM users WHERE phone_key = ANY($1) LIMIT 1",
            &[(&owner_keys, Type::TEXT_ARRAY)],
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
        .query_typed_opt(
            "SELECT sealed_session_key FROM wx_sessions WHERE user_id = $1",
            &[(&user_id, Type::UUID)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
