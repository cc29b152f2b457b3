//! Every error code the API answers with, in one table: its HTTP status and what it
//! means. The OpenAPI document lists, per operation and status, codes from this table;
//! a test checks that every code the handlers hand to [`super::ApiError`] is in it.

use axum::http::StatusCode;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $code:literal, $status:ident;)*) => {
        /// An error code with its status. A code answered with two statuses (`timeout`)
        /// has one variant per status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable code, as in `{"error":{"code"}}`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            /// What it means, for the OpenAPI document.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+).trim_ascii(),)*
                }
            }
        }
    };
}

error_codes! {
    /// A field is missing, malformed, of the wrong type, unknown, or out of range (the
    /// message names it).
    InvalidField = "invalid_field", BAD_REQUEST;
    /// The body is not JSON.
    MalformedJson = "malformed_json", BAD_REQUEST;
    /// The query string does not parse (the message names the parameter).
    InvalidQuery = "invalid_query", BAD_REQUEST;
    /// The body is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// The body is over `http.max_body_bytes` (by its `Content-Length`, or as read).
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE;
    /// `Idempotency-Key` is not 1 to 128 visible ASCII characters.
    InvalidIdempotencyKey = "invalid_idempotency_key", BAD_REQUEST;
    /// The `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY;
    /// No bearer token.
    MissingToken = "missing_token", UNAUTHORIZED;
    /// The bearer token is not valid.
    InvalidToken = "invalid_token", UNAUTHORIZED;
    /// The bearer token expired; log in again.
    TokenExpired = "token_expired", UNAUTHORIZED;
    /// The token's user is not known; log in again.
    UnknownUser = "unknown_user", UNAUTHORIZED;
    /// The user is not known.
    UserNotFound = "user_not_found", NOT_FOUND;
    /// The user was erased at their request (crypto-shredding): nothing personal can be
    /// set or shown.
    UserErased = "user_erased", FORBIDDEN;
    /// The `wx.login` code is invalid, expired or used.
    InvalidCode = "invalid_code", UNAUTHORIZED;
    /// The phone code is invalid, expired or used.
    InvalidPhoneCode = "invalid_phone_code", BAD_REQUEST;
    /// `encrypted_data` does not decrypt under the user's session key.
    InvalidEncryptedData = "invalid_encrypted_data", BAD_REQUEST;
    /// No usable WeChat session key on file: log in again first.
    SessionExpired = "session_expired", UNAUTHORIZED;
    /// The phone data was issued to another app.
    WatermarkMismatch = "watermark_mismatch", BAD_REQUEST;
    /// The phone number is bound to another user.
    PhoneTaken = "phone_taken", CONFLICT;
    /// Too many requests: over a `limits.*` rate of wxledger (with `Retry-After`; nothing
    /// was called or recorded), or WeChat's (45011).
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    /// The body did not arrive within `limits.body_read_timeout_ms`; nothing was recorded.
    BodyTimeout = "timeout", REQUEST_TIMEOUT;
    /// The request took longer than `limits.request_timeout_ms`; it may have been
    /// recorded: retry with the same `Idempotency-Key`.
    Timeout = "timeout", SERVICE_UNAVAILABLE;
    /// WeChat refused the user as risky.
    RiskyUser = "risky_user", FORBIDDEN;
    /// WeChat answered -1 (busy) after every retry.
    WechatBusy = "wechat_busy", SERVICE_UNAVAILABLE;
    /// WeChat could not be reached.
    WechatUnavailable = "wechat_unavailable", SERVICE_UNAVAILABLE;
    /// WeChat answered another errcode, or a phone number in an unexpected form.
    WechatError = "wechat_error", BAD_GATEWAY;
    /// No such order for this caller (also another user's order: no probing).
    OrderNotFound = "order_not_found", NOT_FOUND;
    /// The order is already paid.
    OrderPaid = "order_paid", CONFLICT;
    /// The order is closed.
    OrderClosed = "order_closed", CONFLICT;
    /// The order is past its expiry; place a new one.
    OrderExpired = "order_expired", CONFLICT;
    /// WeChat Pay refused the request, or answered something unreadable.
    WechatPayError = "wechat_pay_error", BAD_GATEWAY;
    /// WeChat Pay could not be reached.
    WechatPayUnavailable = "wechat_pay_unavailable", SERVICE_UNAVAILABLE;
    /// WeChat Pay's answer failed signature verification; nothing was recorded.
    WechatPayUnverified = "wechat_pay_unverified", BAD_GATEWAY;
    /// The wallet does not hold the amount (a wallet payment, or the refund of a recharge
    /// already spent); nothing moved.
    InsufficientBalance = "insufficient_balance", CONFLICT;
    /// A recharge cannot be paid from the wallet.
    NotPayableFromWallet = "not_payable_from_wallet", CONFLICT;
    /// Only a paid order can be refunded.
    OrderNotPaid = "order_not_paid", CONFLICT;
    /// The refunds (settled and in flight) would exceed what was paid.
    RefundExceedsPaid = "refund_exceeds_paid", CONFLICT;
    /// WeChat Pay refused the refund (the message has its code); the amount set aside
    /// went back.
    RefundRejected = "refund_rejected", CONFLICT;
    /// The fold refused the refund (the message has its code); nothing moved.
    RefundRefused = "refund_refused", CONFLICT;
    /// This `out_refund_no` names a different refund.
    OutRefundNoTaken = "out_refund_no_taken", UNPROCESSABLE_ENTITY;
    /// `auth.admin_token` is not set: the admin endpoints are off.
    AdminDisabled = "admin_disabled", FORBIDDEN;
    /// The admin credential is missing or wrong.
    InvalidAdminToken = "invalid_admin_token", UNAUTHORIZED;
    /// Recorded, but the projection did not apply it within the timeout: read it back
    /// later.
    NotYetApplied = "not_yet_applied", SERVICE_UNAVAILABLE;
    /// NATS or Postgres is down; nothing was recorded; retry.
    Unavailable = "unavailable", SERVICE_UNAVAILABLE;
    /// No such route.
    NotFound = "not_found", NOT_FOUND;
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// A bug; the message names the request id.
    Internal = "internal", INTERNAL_SERVER_ERROR;
}

impl ErrorCode {
    /// The codes answered by the router itself, for a request that matches no operation:
    /// documented once in the document's description, not per operation.
    pub const FALLBACK: &'static [ErrorCode] = &[ErrorCode::NotFound, ErrorCode::MethodNotAllowed];
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn a_code_has_one_variant_per_status() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(
                seen.insert((code.as_str(), code.status())),
                "{code:?} repeats"
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(!code.meaning().is_empty());
        }
    }
}
