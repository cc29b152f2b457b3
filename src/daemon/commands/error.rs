//! Why a command did not do what was asked: a business rejection (the caller can act on
//! it) or an infrastructure failure (retry later). The HTTP layer maps each to a status
//! and a stable code in one place (`daemon/api/command_errors.rs`).

use crate::{
    core::fold::Refusal,
    store::{
        db::DbError,
        privacy::KeyError,
        projector::{NotYetApplied, VerdictError},
        stream::LogError,
    },
    wechat::{PayError, WechatError},
};

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such order (or not the caller's).
    #[error("no such order")]
    OrderNotFound,
    /// The order is paid already.
    #[error("the order is already paid")]
    OrderPaid,
    /// While a wallet payment waited for the fold, the order was paid through WeChat Pay.
    #[error("the order was paid through WeChat Pay meanwhile")]
    OrderPaidMeanwhile,
    /// The order is closed.
    #[error("the order is closed")]
    OrderClosed,
    /// The order is past its `expires_at`.
    #[error("the order expired")]
    OrderExpired,
    /// A recharge cannot be paid from the wallet.
    #[error("a recharge cannot be paid from the wallet")]
    NotPayableFromWallet,
    /// The wallet holds less than the order needs.
    #[error("the wallet holds {balance} fen; the order needs {needed}")]
    InsufficientBalance {
        /// The wallet's balance, in fen.
        balance: i64,
        /// The order's amount, in fen.
        needed: i64,
    },
    /// The fold refused the wallet payment for another reason (its stable code).
    #[error("the wallet payment was refused: {0}")]
    WalletPayRefused(Refusal),
    /// The `Idempotency-Key` was used for a different request.
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// The caller's user is not (or no longer) in the projection: log in again.
    #[error("unknown user")]
    UnknownUser,
    /// No such user.
    #[error("no such user")]
    UserNotFound,
    /// The user was erased at their request.
    #[error("the user was erased")]
    UserErased,
    /// The `out_refund_no` was used for a different refund.
    #[error("the out_refund_no was used for a different refund")]
    OutRefundNoTaken,
    /// The refund asks for more than can still be refunded (checked before appending).
    #[error("at most {left} fen can still be refunded")]
    RefundTooLarge {
        /// What can still be refunded, in fen.
        left: i64,
    },
    /// The refund was refused, by the pre-check or by the fold (its verdict's refusal).
    #[error("the refund was refused: {0}")]
    RefundRefused(Refusal),
    /// The refund was refused by a projection built before verdicts were kept, so its
    /// reason is not on record (rebuilding the projection restores it).
    #[error("the refund was refused; its reason predates the verdicts table")]
    RefundRefusedEarlier,
    /// WeChat Pay refused the refund.
    #[error("WeChat Pay refused the refund: {code}: {message}")]
    RefundRejected {
        /// WeChat's code (`-` when none was recorded).
        code: String,
        /// WeChat's message (`-` when none was recorded).
        message: String,
    },
    /// The phone code is invalid, expired or already used.
    #[error("invalid phone code")]
    InvalidPhoneCode,
    /// No WeChat session key is stored for the user.
    #[error("no WeChat session for this user")]
    NoSession,
    /// The stored WeChat session key cannot be opened.
    #[error("the WeChat session cannot be used")]
    SessionUnusable,
    /// `encrypted_data` and `iv` do not decrypt to a phone number under the session.
    #[error("encrypted data does not decrypt to a phone number")]
    InvalidEncryptedData,
    /// The phone data was issued to another app.
    #[error("the phone data was issued to another app")]
    WatermarkMismatch,
    /// WeChat returned a phone number in an unexpected form.
    #[error("WeChat returned a phone number in an unexpected form")]
    MalformedPhone,
    /// The phone number is bound to another user.
    #[error("the phone number is bound to another user")]
    PhoneTaken,
    /// The event log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Postgres.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The event was recorded but not applied in time.
    #[error(transparent)]
    NotYetApplied(#[from] NotYetApplied),
    /// WeChat's mini program API.
    #[error(transparent)]
    Wechat(#[from] WechatError),
    /// WeChat Pay.
    #[error(transparent)]
    Pay(#[from] PayError),
    /// A bug: what should hold did not.
    #[error("{0}")]
    Internal(String),
}

impl CommandError {
    /// An invariant that did not hold.
    pub fn internal(why: impl std::fmt::Display) -> Self {
        Self::Internal(why.to_string())
    }
}

impl From<VerdictError> for CommandError {
    fn from(e: VerdictError) -> Self {
        match e {
            VerdictError::NotYetApplied(e) => e.into(),
            VerdictError::Db(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<deadpool_postgres::PoolError> for CommandError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(DbError::Pool(e))
    }
}

impl From<tokio_postgres::Error> for CommandError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl From<KeyError> for CommandError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Erased => Self::UserErased,
            KeyError::Unopenable(_) => Self::internal(e),
            KeyError::Db(e) => e.into(),
        }
    }
}
