//! How a command's failure is answered: its status, stable code and message, in one
//! place. Infrastructure failures go through the `From` impls of [`super::error`].

use axum::http::StatusCode;

use super::{user_view::user_erased, ApiError};
use crate::commands::{CommandError, RefundRefusal};

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        use CommandError as E;
        let conflict = |code, message: String| ApiError::new(StatusCode::CONFLICT, code, message);
        match e {
            E::OrderNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "order_not_found", "no such order")
            }
            E::OrderPaid => conflict("order_paid", "the order is already paid".into()),
            E::OrderPaidMeanwhile => conflict(
                "order_paid",
                "the order was paid through WeChat Pay meanwhile".into(),
            ),
            E::OrderClosed => conflict("order_closed", "the order is closed".into()),
            E::OrderExpired => {
                conflict("order_expired", "the order expired; place a new one".into())
            }
            E::NotPayableFromWallet => conflict(
                "not_payable_from_wallet",
                "a recharge cannot be paid from the wallet".into(),
            ),
            E::InsufficientBalance { balance, needed } => conflict(
                "insufficient_balance",
                format!("the wallet holds {balance} fen; the order needs {needed}"),
            ),
            E::WalletPayRefused(refusal) => conflict(
                refusal.as_str(),
                format!("the wallet payment was refused: {refusal}"),
            ),
            E::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ),
            E::UnknownUser => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unknown_user", "log in again")
            }
            E::UserNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                "no such user; log in again",
            ),
            E::UserErased => user_erased(),
            E::OutRefundNoTaken => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "out_refund_no_taken",
                "this out_refund_no was used for a different refund",
            ),
            E::RefundTooLarge { left } => conflict(
                "refund_exceeds_paid",
                format!("at most {left} fen of this order can still be refunded"),
            ),
            E::RefundRefused(why) => refused(why),
            E::RefundRejected { code, message } => conflict(
                "refund_rejected",
                format!("WeChat Pay refused the refund: {code}: {message}"),
            ),
            E::InvalidPhoneCode => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_phone_code",
                "the phone code is invalid, expired or already used",
            ),
            E::NoSession => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "no WeChat session for this user; log in again",
            ),
            E::SessionUnusable => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the WeChat session cannot be used; log in again",
            ),
            E::InvalidEncryptedData => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_encrypted_data",
                "encrypted_data and iv do not decrypt to a phone number under this session",
            ),
            E::WatermarkMismatch => ApiError::new(
                StatusCode::BAD_REQUEST,
                "watermark_mismatch",
                "the phone data was issued to another app",
            ),
            E::MalformedPhone => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "wechat_error",
                "WeChat returned a phone number in an unexpected form",
            ),
            E::PhoneTaken => conflict(
                "phone_taken",
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

/// A refund the fold (or the pre-check) refused.
fn refused(why: RefundRefusal) -> ApiError {
    let conflict = |code, message: String| ApiError::new(StatusCode::CONFLICT, code, message);
    match why {
        RefundRefusal::NotPaid => {
            conflict("order_not_paid", "only a paid order can be refunded".into())
        }
        RefundRefusal::ExceedsPaid => conflict(
            "refund_exceeds_paid",
            "the refunds would exceed what was paid".into(),
        ),
        RefundRefusal::InsufficientBalance => conflict(
            "insufficient_balance",
            "the wallet no longer holds the amount to refund".into(),
        ),
        RefundRefusal::Other(code) => conflict(
            "refund_refused",
            format!("the refund was refused: {}", code.as_deref().unwrap_or("-")),
        ),
    }
}
