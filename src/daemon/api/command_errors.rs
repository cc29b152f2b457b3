//! How a command's failure is answered: its status, stable code and message, in one
//! place. Infrastructure failures go through the `From` impls of [`super::error`].

use super::ErrorCode;
use axum::http::StatusCode;

use super::{user_view::user_erased, ApiError};
use crate::{core::fold::Refusal, daemon::commands::CommandError};

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        use CommandError as E;
        let conflict = |code: ErrorCode, message: String| {
            debug_assert_eq!(code.status(), StatusCode::CONFLICT);
            ApiError::from_code(code, message)
        };
        match e {
            E::OrderNotFound => ApiError::from_code(ErrorCode::OrderNotFound, "no such order"),
            E::OrderPaid => conflict(ErrorCode::OrderPaid, "the order is already paid".into()),
            E::OrderPaidMeanwhile => conflict(
                ErrorCode::OrderPaid,
                "the order was paid through WeChat Pay meanwhile".into(),
            ),
            E::OrderClosed => conflict(ErrorCode::OrderClosed, "the order is closed".into()),
            E::OrderExpired => conflict(
                ErrorCode::OrderExpired,
                "the order expired; place a new one".into(),
            ),
            E::NotPayableFromWallet => conflict(
                ErrorCode::NotPayableFromWallet,
                "a recharge cannot be paid from the wallet".into(),
            ),
            E::InsufficientBalance { balance, needed } => conflict(
                ErrorCode::InsufficientBalance,
                format!("the wallet holds {balance} fen; the order needs {needed}"),
            ),
            E::WalletPayRefused(refusal) => ApiError::internal(format!(
                "the fold refused a wallet payment the pre-checks allowed: {refusal}"
            )),
            E::IdempotencyKeyReused => ApiError::from_code(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different request",
            ),
            E::UnknownUser => ApiError::from_code(ErrorCode::UnknownUser, "log in again"),
            E::UserNotFound => {
                ApiError::from_code(ErrorCode::UserNotFound, "no such user; log in again")
            }
            E::UserErased => user_erased(),
            E::OutRefundNoTaken => ApiError::from_code(
                ErrorCode::OutRefundNoTaken,
                "this out_refund_no was used for a different refund",
            ),
            E::RefundTooLarge { left } => conflict(
                ErrorCode::RefundExceedsPaid,
                format!("at most {left} fen of this order can still be refunded"),
            ),
            E::RefundRefused(why) => refused(why),
            E::RefundRefusedEarlier => conflict(
                ErrorCode::RefundRefused,
                "the refund was refused (its reason was recorded before this version)".into(),
            ),
            E::RefundRejected { code, message } => conflict(
                ErrorCode::RefundRejected,
                format!("WeChat Pay refused the refund: {code}: {message}"),
            ),
            E::InvalidPhoneCode => ApiError::from_code(
                ErrorCode::InvalidPhoneCode,
                "the phone code is invalid, expired or already used",
            ),
            E::NoSession => ApiError::from_code(
                ErrorCode::SessionExpired,
                "no WeChat session for this user; log in again",
            ),
            E::SessionUnusable => ApiError::from_code(
                ErrorCode::SessionExpired,
                "the WeChat session cannot be used; log in again",
            ),
            E::InvalidEncryptedData => ApiError::from_code(
                ErrorCode::InvalidEncryptedData,
                "encrypted_data and iv do not decrypt to a phone number under this session",
            ),
            E::WatermarkMismatch => ApiError::from_code(
                ErrorCode::WatermarkMismatch,
                "the phone data was issued to another app",
            ),
            E::MalformedPhone => ApiError::from_code(
                ErrorCode::WechatError,
                "WeChat returned a phone number in an unexpected form",
            ),
            E::PhoneTaken => conflict(
                ErrorCode::PhoneTaken,
                "this phone number is bound to another user".into(),
            ),
            E::Log(e) => e.into(),
            E::Db(e) => e.into(),
            E::NotYetApplied(e) => e.into(),
            E::Wechat(e) => e.into(),
            E::Pay(e) => e.into(),
            E::Internal(why) => ApiError::internal(why),
        }
    }
}

/// A refund the fold (or the pre-check) refused, by its refusal.
fn refused(why: Refusal) -> ApiError {
    let conflict = |code: ErrorCode, message: String| {
        debug_assert_eq!(code.status(), StatusCode::CONFLICT);
        ApiError::from_code(code, message)
    };
    match why {
        Refusal::NotPaid => conflict(
            ErrorCode::OrderNotPaid,
            "only a paid order can be refunded".into(),
        ),
        Refusal::RefundExceedsPaid => conflict(
            ErrorCode::RefundExceedsPaid,
            "the refunds would exceed what was paid".into(),
        ),
        Refusal::InsufficientBalance { .. } => conflict(
            ErrorCode::InsufficientBalance,
            "the wallet no longer holds the amount to refund".into(),
        ),
        other => conflict(
            ErrorCode::RefundRefused,
            format!("the refund was refused: {other}"),
        ),
    }
}
