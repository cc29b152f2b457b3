//! Bearer tokens (HS256 JWT with expiry) bound to a user, and stable user ids.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "wxledger";

/// Namespace of user ids: `user_id = UUIDv5(NAMESPACE, "<appid>:<openid>")`, so the same
/// WeChat user always gets the same id, even when two first logins race.
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_8e2c_4b7a_4c35_9d0e_52a1_77c3_b1f4);

/// The stable id of the user behind `openid` in app `appid`.
pub fn user_id_for(appid: &str, openid: &str) -> Uuid {
    Uuid::new_v5(&USER_NAMESPACE, format!("{appid}:{openid}").as_bytes())
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// Not ours, altered, or not a token at all.
    #[error("token invalid")]
    Invalid,
}

/// Issues and checks bearer tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl_secs`.
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    /// A token for `user_id`, issued at `now`; returns it with its lifetime in seconds.
    pub fn issue(&self, user_id: Uuid, now: DateTime<Utc>) -> (String, i64) {
        let claims = Claims {
            sub: user_id,
            iss: ISSUER.into(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl_secs,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of small claims cannot fail");
        (token, self.ttl_secs)
    }

    /// The user a token was issued to.
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.sub)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_when_ours_and_fresh() {
        let tokens = Tokens::new(&[7u8; 32], 3600);
        let user = Uuid::new_v4();
        let (token, ttl) = tokens.issue(user, Utc::now());
        assert_eq!(ttl, 3600);
        assert_eq!(tokens.verify(&token), Ok(user));
        let other = Tokens::new(&[8u8; 32], 3600);
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        let (old, _) = tokens.issue(user, Utc::now() - chrono::Duration::hours(2));
        assert_eq!(tokens.verify(&old), Err(TokenError::Expired));
        assert_eq!(tokens.verify("not.a.token"), Err(TokenError::Invalid));
    }

    #[test]
    fn user_ids_are_stable_per_app_and_openid() {
        assert_eq!(user_id_for("wx1", "o1"), user_id_for("wx1", "o1"));
        assert_ne!(user_id_for("wx1", "o1"), user_id_for("wx2", "o1"));
        assert_ne!(user_id_for("wx1", "o1"), user_id_for("wx1", "o2"));
    }
}
