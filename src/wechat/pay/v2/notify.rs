//! The checks that make an API v2 message or notify WeChat's: a `sign` verifying under
//! our API key, or for a refund notify (which has none) our merchant's ids and a
//! `req_info` decrypting under the key. The webhook checks notifies as they arrive; the
//! audit checks recorded ones again, with these same functions.

use super::{
    crypto::{self, ReqInfoError},
    sign::{self, BadSign},
    xml::Fields,
    SignType, V2Client,
};

/// Why a v2 message or notify is not believed. The webhook and the audit word each their
/// own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doubt {
    /// No (or an empty) `sign`.
    NoSign,
    /// The `sign` does not verify.
    BadSign(BadSign),
    /// A refund notify whose `appid` or `mch_id` is not ours.
    NotOurs,
    /// A refund notify without (or with an empty) `req_info`.
    NoReqInfo,
    /// The `req_info` does not decrypt or read.
    ReqInfo(ReqInfoError),
}

/// The message's `sign`, if it has one.
pub fn sign(fields: &Fields) -> Result<&str, Doubt> {
    fields.non_empty("sign").ok_or(Doubt::NoSign)
}

/// The message's `sign` verifies under our key and `sign_type`.
pub fn signed(v2: &V2Client, fields: &Fields, sign_type: SignType) -> Result<(), Doubt> {
    let given = sign(fields)?;
    sign::verify(fields.iter(), v2.key(), sign_type, given).map_err(Doubt::BadSign)
}

/// A refund notify opened: our merchant's, its `req_info` decrypted under our key (at
/// most `limit` bytes of plaintext). Answers the plaintext XML and its fields.
pub fn open_refund(
    v2: &V2Client,
    fields: &Fields,
    limit: usize,
) -> Result<(String, Fields), Doubt> {
    if fields.get("appid") != Some(v2.appid()) || fields.get("mch_id") != Some(v2.mchid()) {
        return Err(Doubt::NotOurs);
    }
    let req_info = fields.non_empty("req_info").ok_or(Doubt::NoReqInfo)?;
    crypto::decrypt_refund(req_info, v2.key(), limit).map_err(Doubt::ReqInfo)
}
