//! Bearer tokens (HS256 JWT with expiry and a key id) bound to a user, and stable user ids.

use std::collections::HashMap;

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

/// Issues and checks bearer tokens. Every token names its key in the `kid` header: the
/// current key signs, and during a rotation the previous key still verifies the tokens it
/// signed until they expire.
#[derive(Clone)]
pub struct Tokens {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    ttl_secs: i64,
}

impl Tokens {
    /// Tokens signed with `secret` under key id `kid`, valid for `ttl_secs`.
    pub fn new(kid: &str, secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_secret(secret),
            decoding: HashMap::from([(kid.to_owned(), DecodingKey::from_secret(secret))]),
            validation,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    /// Also accepts tokens signed with the key before a rotation, named `kid`.
    pub fn with_previous(mut self, kid: &str, secret: &[u8]) -> Self {
        self.decoding
            .entry(kid.to_owned())
            .or_insert_with(|| DecodingKey::from_secret(secret));
        self
    }

    /// A token for `user_id`, issued at `now`; returns it with its lifetime in seconds.
    pub fn issue(&self, user_id: Uuid, now: DateTime<Utc>) -> (String, i64) {
        let claims = Claims {
            sub: user_id,
            iss: ISSUER.into(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl_secs,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .expect("HS256 signing of small claims cannot fail");
        (token, self.ttl_secs)
    }

    /// The user a token was issued to.
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // The key is the one the token names; a token without a kid (issued before key
        // ids) can only be the current key's.
        let key = match &header.kid {
            Some(kid) => self.decoding.get(kid),
            None => self.decoding.get(&self.kid),
        }
        .ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
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
        let tokens = Tokens::new("1", &[7u8; 32], 3600);
        let user = Uuid::new_v4();
        let (token, ttl) = tokens.issue(user, Utc::now());
        assert_eq!(ttl, 3600);
        assert_eq!(tokens.verify(&token), Ok(user));
        let other = Tokens::new("1", &[8u8; 32], 3600);
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        let (old, _) = tokens.issue(user, Utc::now() - chrono::Duration::hours(2));
        assert_eq!(tokens.verify(&old), Err(TokenError::Expired));
        assert_eq!(tokens.verify("not.a.token"), Err(TokenError::Invalid));
    }

    #[test]
    fn a_rotation_keeps_the_previous_keys_tokens_until_they_expire() {
        let user = Uuid::new_v4();
        let before = Tokens::new("2026-10", &[7u8; 32], 3600);
        let (old, _) = before.issue(user, Utc::now());
        let header = jsonwebtoken::decode_header(&old).unwrap();
        assert_eq!(header.kid.as_deref(), Some("2026-10"));

        let after = Tokens::new("2026-11", &[9u8; 32], 3600).with_previous("2026-10", &[7u8; 32]);
        assert_eq!(
            after.verify(&old),
            Ok(user),
            "the previous key still verifies"
        );
        let (new, _) = after.issue(user, Utc::now());
        assert_eq!(
            jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
            Some("2026-11"),
            "new tokens are signed with the current key"
        );
        assert_eq!(after.verify(&new), Ok(user));
        assert_eq!(
            before.verify(&new),
            Err(TokenError::Invalid),
            "an unknown kid is refused"
        );

        // Rotated once more: the oldest key is gone, and so are its tokens.
        let later = Tokens::new("2026-12", &[11u8; 32], 3600).with_previous("2026-11", &[9u8; 32]);
        assert_eq!(later.verify(&old), Err(TokenError::Invalid));
        assert_eq!(later.verify(&new), Ok(user));

        // A token naming the previous kid but signed with another secret is refused.
        let forger = Tokens::new("2026-10", &[1u8; 32], 3600);
        let (forged, _) = forger.issue(user, Utc::now());
        assert_eq!(after.verify(&forged), Err(TokenError::Invalid));
        let (expired, _) = before.issue(user, Utc::now() - chrono::Duration::hours(2));
        assert_eq!(after.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn user_ids_are_stable_per_app_and_openid() {
        assert_eq!(user_id_for("wx1", "o1"), user_id_for("wx1", "o1"));
        assert_ne!(user_id_for("wx1", "o1"), user_id_for("wx2", "o1"));
        assert_ne!(user_id_for("wx1", "o1"), user_id_for("wx1", "o2"));
    }
}
