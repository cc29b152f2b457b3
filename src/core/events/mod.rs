//! Events: the envelope every fact is recorded in, and the typed facts themselves.
//!
//! An event's type (`user.phone_bound`) and version (`1`) name its JSON Schema in
//! `schema/`; [`Event::decode`] is the one place that reads old versions (upcasting).

mod msg_id;
pub mod pay;
pub mod personal;
pub mod quarantine;
pub mod refund;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

pub use pay::{
    CloseReason, Evidence, OrderAmount, OrderClosed, OrderKind, OrderPlaced, OrderPlacedV2, Payer,
    PaymentNotified, PaymentQueried, PrepayIssued, QueryReason, Transaction, TransactionAmount,
};
pub use personal::{
    BlindIndex, LoggedInSealed, PhoneSealed, ProfileSealed, RegisteredSealed, Sealed, UserErased,
};
pub use quarantine::{EventQuarantined, Quarantine};
pub use refund::{
    BalancePayRequested, LegacyEvidence, LegacyPaymentNotified, LegacyPaymentQueried, Refund,
    RefundAccepted, RefundAmount, RefundEvidence, RefundNotified, RefundNotifyClaim, RefundQueried,
    RefundRejected, RefundRequested,
};

/// The JSON that goes on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Unique id of this event.
    pub id: Uuid,
    /// Event type, e.g. `user.registered`; the subject is `<prefix>.<type>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version of that type.
    pub version: u32,
    /// When wxledger accepted the fact.
    pub occurred_at: DateTime<Utc>,
    /// The request id or WeChat notify id that caused it.
    pub correlation_id: String,
    /// The fact itself, shaped by `schema/<type>.v<version>.json`.
    pub data: serde_json::Value,
}

/// `user.registered` v1: the unionid in clear. No longer written (new registrations are
/// [`RegisteredSealed`], v2) but still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    /// Stable id, derived from the app id and openid.
    pub user_id: Uuid,
    /// The user's openid under our app id.
    pub openid: String,
    /// The user's unionid, when the app is bound to an open platform account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

/// `user.logged_in` v1: the unionid in clear. No longer written ([`LoggedInSealed`], v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLoggedIn {
    /// Who logged in.
    pub user_id: Uuid,
    /// The unionid WeChat returned this time, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

/// How a phone number reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneSource {
    /// `getuserphonenumber` with a phone code.
    PhoneCode,
    /// Legacy `encryptedData` + `iv`, decrypted with the session key.
    EncryptedData,
}

/// `user.phone_bound` v1: a phone bound in clear. No longer written (new bindings are
/// [`PhoneSealed`], v2) but still read: its number stays in the stream as residue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneBound {
    /// Whose phone.
    pub user_id: Uuid,
    /// Country calling code without `+`, e.g. `86`.
    pub country_code: String,
    /// The number without country code.
    pub pure_phone_number: String,
    /// Which WeChat path vouched for it.
    pub source: PhoneSource,
}

/// `user.profile_updated` v1: a profile in clear. No longer written (new profiles are
/// [`ProfileSealed`], v2) but still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdated {
    /// Whose profile.
    pub user_id: Uuid,
    /// Display name.
    pub nickname: String,
    /// Avatar URL; `None` clears it.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// Every fact wxledger records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `user.registered` v1 (read only: the unionid in clear).
    UserRegistered(UserRegistered),
    /// `user.registered` v2 (the unionid sealed).
    RegisteredSealed(RegisteredSealed),
    /// `user.logged_in` v1 (read only: the unionid in clear).
    UserLoggedIn(UserLoggedIn),
    /// `user.logged_in` v2 (the unionid sealed).
    LoggedInSealed(LoggedInSealed),
    /// `user.phone_bound` v1 (read only: the number in clear).
    PhoneBound(PhoneBound),
    /// `user.phone_bound` v2 (the number sealed, with its blind index).
    PhoneSealed(PhoneSealed),
    /// `user.profile_updated` v1 (read only: the profile in clear).
    ProfileUpdated(ProfileUpdated),
    /// `user.profile_updated` v2 (the profile sealed).
    ProfileSealed(ProfileSealed),
    /// `user.erased` v1.
    UserErased(UserErased),
    /// `order.placed` v2 (v1 still read).
    OrderPlaced(OrderPlaced),
    /// `order.prepay_issued` v1.
    PrepayIssued(PrepayIssued),
    /// `order.closed` v1.
    OrderClosed(OrderClosed),
    /// `payment.notified` v1.
    PaymentNotified(PaymentNotified),
    /// `payment.queried` v1.
    PaymentQueried(PaymentQueried),
    /// `order.balance_pay_requested` v1.
    BalancePayRequested(BalancePayRequested),
    /// `payment.legacy_notified` v1.
    LegacyPaymentNotified(LegacyPaymentNotified),
    /// `payment.legacy_queried` v1.
    LegacyPaymentQueried(LegacyPaymentQueried),
    /// `refund.requested` v1.
    RefundRequested(RefundRequested),
    /// `refund.accepted` v1.
    RefundAccepted(RefundAccepted),
    /// `refund.rejected` v1.
    RefundRejected(RefundRejected),
    /// `refund.notified` v1.
    RefundNotified(RefundNotified),
    /// `refund.queried` v2 (v1 still read).
    RefundQueried(RefundQueried),
    /// `event.quarantined` v1.
    Quarantined(EventQuarantined),
}

/// An event that cannot be read: an unknown type or version, or data off its schema.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON of the envelope's shape.
    #[error("not an event envelope: {0}")]
    Envelope(serde_json::Error),
    /// A type or version this build does not know (written by a newer wxledger?).
    #[error("unknown event {kind} v{version}")]
    Unknown {
        /// The envelope's type.
        kind: String,
        /// The envelope's version.
        version: u32,
    },
    /// The data does not fit the type.
    #[error("{kind} v{version}: {source}")]
    Data {
        /// The envelope's type.
        kind: String,
        /// The envelope's version.
        version: u32,
        /// What serde said.
        source: serde_json::Error,
    },
}

impl Event {
    /// The event's type, which is also the tail of its subject.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::UserRegistered(_) | Event::RegisteredSealed(_) => "user.registered",
            Event::UserLoggedIn(_) | Event::LoggedInSealed(_) => "user.logged_in",
            Event::PhoneBound(_) | Event::PhoneSealed(_) => "user.phone_bound",
            Event::ProfileUpdated(_) | Event::ProfileSealed(_) => "user.profile_updated",
            Event::UserErased(_) => "user.erased",
            Event::OrderPlaced(_) => "order.placed",
            Event::PrepayIssued(_) => "order.prepay_issued",
            Event::OrderClosed(_) => "order.closed",
            Event::PaymentNotified(_) => "payment.notified",
            Event::PaymentQueried(_) => "payment.queried",
            Event::BalancePayRequested(_) => "order.balance_pay_requested",
            Event::LegacyPaymentNotified(_) => "payment.legacy_notified",
            Event::LegacyPaymentQueried(_) => "payment.legacy_queried",
            Event::RefundRequested(_) => "refund.requested",
            Event::RefundAccepted(_) => "refund.accepted",
            Event::RefundRejected(_) => "refund.rejected",
            Event::RefundNotified(_) => "refund.notified",
            Event::RefundQueried(_) => "refund.queried",
            Event::Quarantined(_) => "event.quarantined",
        }
    }

    /// The schema version this build writes.
    pub fn version(&self) -> u32 {
        match self {
            Event::OrderPlaced(_)
            | Event::RefundQueried(_)
            | Event::RegisteredSealed(_)
            | Event::LoggedInSealed(_)
            | Event::PhoneSealed(_)
            | Event::ProfileSealed(_) => 2,
            _ => 1,
        }
    }

    /// The `data` of the envelope.
    pub fn to_data(&self) -> serde_json::Value {
        let v = match self {
            Event::UserRegistered(e) => serde_json::to_value(e),
            Event::RegisteredSealed(e) => serde_json::to_value(e),
            Event::UserLoggedIn(e) => serde_json::to_value(e),
            Event::LoggedInSealed(e) => serde_json::to_value(e),
            Event::PhoneBound(e) => serde_json::to_value(e),
            Event::PhoneSealed(e) => serde_json::to_value(e),
            Event::ProfileUpdated(e) => serde_json::to_value(e),
            Event::ProfileSealed(e) => serde_json::to_value(e),
            Event::UserErased(e) => serde_json::to_value(e),
            Event::OrderPlaced(e) => serde_json::to_value(OrderPlacedV2::from(e)),
            Event::PrepayIssued(e) => serde_json::to_value(e),
            Event::OrderClosed(e) => serde_json::to_value(e),
            Event::PaymentNotified(e) => serde_json::to_value(e),
            Event::PaymentQueried(e) => serde_json::to_value(e),
            Event::BalancePayRequested(e) => serde_json::to_value(e),
            Event::LegacyPaymentNotified(e) => serde_json::to_value(e),
            Event::LegacyPaymentQueried(e) => serde_json::to_value(e),
            Event::RefundRequested(e) => serde_json::to_value(e),
            Event::RefundAccepted(e) => serde_json::to_value(e),
            Event::RefundRejected(e) => serde_json::to_value(e),
            Event::RefundNotified(e) => serde_json::to_value(e),
            Event::RefundQueried(e) => serde_json::to_value(e),
            Event::Quarantined(e) => serde_json::to_value(e),
        };
        v.expect("event data are plain structs that always serialize")
    }

    /// Reads `data` of the given type and version, upcasting older versions. `data` is a
    /// parsed JSON value, or the raw JSON text as read from the stream (no intermediate
    /// value is built then).
    pub fn decode(kind: &str, version: u32, data: impl EventData) -> Result<Self, DecodeError> {
        fn parse<T: serde::de::DeserializeOwned>(
            kind: &str,
            version: u32,
            data: impl EventData,
        ) -> Result<T, DecodeError> {
            data.parse().map_err(|source| DecodeError::Data {
                kind: kind.to_owned(),
                version,
                source,
            })
        }
        Ok(match (kind, version) {
            // v1 carried the unionid, the number and the profile in clear; still read.
            ("user.registered", 1) => Event::UserRegistered(parse(kind, version, data)?),
            ("user.registered", 2) => Event::RegisteredSealed(parse(kind, version, data)?),
            ("user.logged_in", 1) => Event::UserLoggedIn(parse(kind, version, data)?),
            ("user.logged_in", 2) => Event::LoggedInSealed(parse(kind, version, data)?),
            ("user.phone_bound", 1) => Event::PhoneBound(parse(kind, version, data)?),
            ("user.phone_bound", 2) => Event::PhoneSealed(parse(kind, version, data)?),
            ("user.profile_updated", 1) => Event::ProfileUpdated(parse(kind, version, data)?),
            ("user.profile_updated", 2) => Event::ProfileSealed(parse(kind, version, data)?),
            ("user.erased", 1) => Event::UserErased(parse(kind, version, data)?),
            ("order.placed", 1) => Event::OrderPlaced(parse(kind, version, data)?),
            // v2 moved `amount` and `currency` into `amount: {total, currency}`.
            ("order.placed", 2) => {
                Event::OrderPlaced(parse::<OrderPlacedV2>(kind, version, data)?.into())
            }
            ("order.prepay_issued", 1) => Event::PrepayIssued(parse(kind, version, data)?),
            ("order.closed", 1) => Event::OrderClosed(parse(kind, version, data)?),
            ("payment.notified", 1) => Event::PaymentNotified(parse(kind, version, data)?),
            ("payment.queried", 1) => Event::PaymentQueried(parse(kind, version, data)?),
            ("order.balance_pay_requested", 1) => {
                Event::BalancePayRequested(parse(kind, version, data)?)
            }
            ("payment.legacy_notified", 1) => {
                Event::LegacyPaymentNotified(parse(kind, version, data)?)
            }
            ("payment.legacy_queried", 1) => {
                Event::LegacyPaymentQueried(parse(kind, version, data)?)
            }
            ("refund.requested", 1) => Event::RefundRequested(parse(kind, version, data)?),
            ("refund.accepted", 1) => Event::RefundAccepted(parse(kind, version, data)?),
            ("refund.rejected", 1) => Event::RefundRejected(parse(kind, version, data)?),
            ("refund.notified", 1) => Event::RefundNotified(parse(kind, version, data)?),
            // v2 added `reason: notify` with the notify it answers; v1 has neither.
            ("refund.queried", 1 | 2) => {
                let queried: RefundQueried = parse(kind, version, data)?;
                let asked_by_notify = queried.reason == QueryReason::Notify;
                let fits = match version {
                    1 => !asked_by_notify && queried.notify.is_none(),
                    _ => asked_by_notify == queried.notify.is_some(),
                };
                if !fits {
                    return Err(DecodeError::Data {
                        kind: kind.to_owned(),
                        version,
                        source: serde::de::Error::custom(
                            "`notify` comes with reason `notify` (v2), and only with it",
                        ),
                    });
                }
                Event::RefundQueried(queried)
            }
            ("event.quarantined", 1) => Event::Quarantined(parse(kind, version, data)?),
            _ => {
                return Err(DecodeError::Unknown {
                    kind: kind.to_owned(),
                    version,
                })
            }
        })
    }
}

/// An event as read back from the stream, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Stream sequence: the event's place in the one total order.
    pub seq: u64,
    /// The envelope's id.
    pub id: Uuid,
    /// When it was accepted.
    pub occurred_at: DateTime<Utc>,
    /// What caused it.
    pub correlation_id: String,
    /// The fact.
    pub event: Event,
}

impl Recorded {
    /// Parses a stream message's payload. `occurred_at` is read to the microsecond, the
    /// precision Postgres keeps: a time the fold copies into a row (a close time in a
    /// failure's detail, ...) must be the same whether the fold had it from the event or
    /// from a row it loaded, or a rebuild would differ from the live tables with the
    /// batch boundaries.
    pub fn from_payload(seq: u64, payload: &[u8]) -> Result<Self, DecodeError> {
        let envelope: RawEnvelope<'_> =
            serde_json::from_slice(payload).map_err(DecodeError::Envelope)?;
        Ok(Self {
            seq,
            id: envelope.id,
            occurred_at: to_micros(envelope.occurred_at),
            correlation_id: envelope.correlation_id,
            event: Event::decode(&envelope.kind, envelope.version, envelope.data)?,
        })
    }
}

/// [`Envelope`] as read from a payload: the same fields, with `data` left as the JSON
/// text it is (read once, straight into its typed event) and the type borrowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope<'a> {
    id: Uuid,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    version: u32,
    occurred_at: DateTime<Utc>,
    correlation_id: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// What an event's `data` is read from: [`Event::decode`] takes either.
pub trait EventData {
    /// Deserializes the data as `T`.
    fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error>;
}

impl EventData for serde_json::Value {
    fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self)
    }
}

impl EventData for &RawValue {
    fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

/// `t` without its nanoseconds below the microsecond. New events are written so
/// (`EventLog::append`); older ones are read so.
pub(crate) fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("a smaller nanosecond of a valid time is valid")
}

#[cfg(test)]
mod tests;
