//! The facts of refunds and wallet payments, and the API v2 (legacy XML) forms of
//! WeChat's word on a payment.
//!
//! A refund is requested by us (`refund.requested`), answered by WeChat's refund API
//! (`refund.accepted` with its `refund_id`, or `refund.rejected` with WeChat's code), and
//! settled by WeChat's word: a verified notify (`refund.notified`) or a signed query answer
//! (`refund.queried`), handled alike. An API v2 refund notify is not signed: it is
//! recorded only with the signed query answer it made us ask for (`refund.queried` v2).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::pay::{Evidence, QueryReason, Transaction};

/// An API v2 message, kept verbatim so that its `sign` (or, for a refund notify, its
/// `req_info` encryption) can be checked again later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyEvidence {
    /// The XML exactly as received (UTF-8).
    pub body: String,
    /// `MD5` or `HMAC-SHA256`: how `sign` was made; absent for a refund notify, which has
    /// no `sign` but an encrypted `req_info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_type: Option<String>,
    /// A refund notify's decrypted `req_info` (XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypted: Option<String>,
}

/// The signed message a refund fact came from: API v3 headers and body, or API v2 XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RefundEvidence {
    /// API v3: `Wechatpay-*` headers and the raw body.
    V3(Evidence),
    /// API v2: the XML.
    V2(LegacyEvidence),
}

/// A refund's amounts, in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    /// The order's total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// This refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<i64>,
    /// What the payer paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    /// What the payer gets back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_refund: Option<i64>,
    /// `CNY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// WeChat's refund resource, as the refund API's answer, a refund query or a refund
/// notify's decrypted resource gives it; the fields wxledger reads (the evidence keeps
/// everything WeChat sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// Merchant (present in notifies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    /// The order refunded.
    pub out_trade_no: String,
    /// The payment refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Our refund number.
    pub out_refund_no: String,
    /// WeChat's refund id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// SUCCESS, CLOSED, PROCESSING or ABNORMAL (a notify calls it `refund_status`; API v2's
    /// REFUNDCLOSE and CHANGE are recorded as CLOSED and ABNORMAL).
    #[serde(alias = "refund_status")]
    pub status: String,
    /// When the money went back, RFC 3339 as WeChat wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// Where the money went back to, e.g. `支付用户零钱`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_received_account: Option<String>,
    /// How much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<RefundAmount>,
}

/// An admin asked to refund part or all of a paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequested {
    /// Our refund number (the key; WeChat treats a repeat as the same refund).
    pub out_refund_no: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// Fen to give back, positive.
    pub amount: i64,
    /// Shown to the payer.
    pub reason: String,
}

/// WeChat's refund API accepted a request: its signed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundAccepted {
    /// The answer (status usually PROCESSING).
    pub refund: Refund,
    /// The signed response.
    pub evidence: RefundEvidence,
}

/// WeChat's refund API refused a request; nothing will be refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRejected {
    /// Our refund number.
    pub out_refund_no: String,
    /// The order.
    pub out_trade_no: String,
    /// WeChat's error code, e.g. `NOT_ENOUGH`.
    pub code: String,
    /// WeChat's message.
    pub message: String,
}

/// WeChat Pay called a webhook with a verified refund notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundNotified {
    /// The notify's `id` (API v3; API v2 notifies have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_id: Option<String>,
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL` or `REFUND.CLOSED`.
    pub event_type: String,
    /// The decrypted refund.
    pub refund: Refund,
    /// The signed (v3) or encrypted (v2) request.
    pub evidence: RefundEvidence,
}

/// WeChat's signed answer to a refund query by `out_refund_no`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundQueried {
    /// Why we asked.
    pub reason: QueryReason,
    /// The answer.
    pub refund: Refund,
    /// The signed response.
    pub evidence: RefundEvidence,
    /// The API v2 refund notify that made us ask (reason `notify`, version 2): a claim the
    /// answer confirms or not. Only the answer moves money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Box<RefundNotifyClaim>>,
}

/// An API v2 refund notify: what its `req_info` decrypted to, and the XML. AES-256-ECB
/// under the API key's MD5 authenticates nothing (blocks of two recorded notifies can be
/// spliced, a recorded notify replayed), so this is a claim to check with a signed
/// `refundquery`, never WeChat's word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundNotifyClaim {
    /// The refund as the notify's `req_info` states it.
    pub refund: Refund,
    /// The notify's XML and its decrypted `req_info`.
    pub evidence: LegacyEvidence,
}

/// A user asked to pay an order from their wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancePayRequested {
    /// The order.
    pub out_trade_no: String,
    /// Who asked (must be the order's owner).
    pub user_id: Uuid,
    /// The amount the user saw, in fen (must be the order's).
    pub amount: i64,
}

/// WeChat Pay called the API v2 webhook with a payment notify whose `sign` verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyPaymentNotified {
    /// The notify, in the shape of an API v3 transaction (`total_fee` → `amount.total`,
    /// `time_end` → `success_time`, ...).
    pub transaction: Transaction,
    /// The XML.
    pub evidence: LegacyEvidence,
}

/// WeChat's signed API v2 answer to an order query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyPaymentQueried {
    /// Why we asked.
    pub reason: QueryReason,
    /// The answer, in the shape of an API v3 transaction.
    pub transaction: Transaction,
    /// The XML.
    pub evidence: LegacyEvidence,
}
