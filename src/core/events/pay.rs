//! The facts of orders and payments: placed, prepay issued, WeChat's word on a payment
//! (a verified notify or a signed query answer), closed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an order buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// Goods or services: a paid order books sales.
    Order,
    /// Wallet top-up (充值): a paid recharge credits the user's wallet.
    Recharge,
}

impl OrderKind {
    /// The name used in the API, the tables and the events.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Order => "order",
            OrderKind::Recharge => "recharge",
        }
    }
}

/// A user placed an order or a recharge. This is the fold's model and `order.placed` v1's
/// wire shape; v2 ([`OrderPlacedV2`]) is what this build writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    /// The merchant's order number, as sent to WeChat (6 to 32 of `[A-Za-z0-9_-]`).
    pub out_trade_no: String,
    /// Who placed it.
    pub user_id: Uuid,
    /// The payer's openid under `appid` (WeChat Pay JSAPI needs it).
    pub openid: String,
    /// Order or recharge.
    pub kind: OrderKind,
    /// Amount in fen, positive.
    pub amount: i64,
    /// Always `CNY`.
    pub currency: String,
    /// What the user sees in WeChat's payment sheet.
    pub description: String,
    /// The app id the order is paid under.
    pub appid: String,
    /// The merchant id the order is paid to.
    pub mchid: String,
    /// After this the order is closed if still unpaid.
    pub expires_at: DateTime<Utc>,
}

/// An order's amount as `order.placed` v2 writes it: WeChat Pay's own shape, so that a
/// consumer reads an order's amount and a transaction's the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAmount {
    /// Fen, positive.
    pub total: i64,
    /// Always `CNY`.
    pub currency: String,
}

/// `order.placed` v2 on the wire: v1 with `amount` and `currency` as one `amount` object.
/// [`OrderPlaced`] stays the model the fold reads; both versions convert into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlacedV2 {
    /// See [`OrderPlaced::out_trade_no`].
    pub out_trade_no: String,
    /// See [`OrderPlaced::user_id`].
    pub user_id: Uuid,
    /// See [`OrderPlaced::openid`].
    pub openid: String,
    /// See [`OrderPlaced::kind`].
    pub kind: OrderKind,
    /// The amount and its currency.
    pub amount: OrderAmount,
    /// See [`OrderPlaced::description`].
    pub description: String,
    /// See [`OrderPlaced::appid`].
    pub appid: String,
    /// See [`OrderPlaced::mchid`].
    pub mchid: String,
    /// See [`OrderPlaced::expires_at`].
    pub expires_at: DateTime<Utc>,
}

impl From<OrderPlacedV2> for OrderPlaced {
    fn from(v2: OrderPlacedV2) -> Self {
        Self {
            out_trade_no: v2.out_trade_no,
            user_id: v2.user_id,
            openid: v2.openid,
            kind: v2.kind,
            amount: v2.amount.total,
            currency: v2.amount.currency,
            description: v2.description,
            appid: v2.appid,
            mchid: v2.mchid,
            expires_at: v2.expires_at,
        }
    }
}

impl From<&OrderPlaced> for OrderPlacedV2 {
    fn from(e: &OrderPlaced) -> Self {
        Self {
            out_trade_no: e.out_trade_no.clone(),
            user_id: e.user_id,
            openid: e.openid.clone(),
            kind: e.kind,
            amount: OrderAmount {
                total: e.amount,
                currency: e.currency.clone(),
            },
            description: e.description.clone(),
            appid: e.appid.clone(),
            mchid: e.mchid.clone(),
            expires_at: e.expires_at,
        }
    }
}

/// WeChat issued a prepay id for an order (JSAPI prepay answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepayIssued {
    /// The order.
    pub out_trade_no: String,
    /// WeChat's prepay id (valid two hours).
    pub prepay_id: String,
}

/// The signed message a fact came from, kept so that anyone can verify WeChat's
/// signature again later: `Wechatpay-*` headers and the raw body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// `Wechatpay-Serial`: the platform certificate serial or public key id.
    pub serial: String,
    /// `Wechatpay-Signature` (base64).
    pub signature: String,
    /// `Wechatpay-Timestamp` (Unix seconds, as sent).
    pub timestamp: String,
    /// `Wechatpay-Nonce`.
    pub nonce: String,
    /// `Wechatpay-Signature-Type`, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_type: Option<String>,
    /// The body exactly as received (UTF-8).
    pub body: String,
}

/// The payer of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    /// The payer's openid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
}

/// A transaction's amounts, in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    /// Order total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// What the payer paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    /// Currency of `total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Currency the payer paid in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// A WeChat Pay transaction as a notify's decrypted resource or a query answer gives
/// it; the fields wxledger reads (the evidence keeps everything WeChat sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// App id the payment was made under.
    pub appid: String,
    /// Merchant paid.
    pub mchid: String,
    /// Our order number.
    pub out_trade_no: String,
    /// WeChat's transaction id (absent while unpaid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// `JSAPI`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    /// SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR.
    pub trade_state: String,
    /// WeChat's words for the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_state_desc: Option<String>,
    /// Paying bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<String>,
    /// Merchant data echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// When the payment succeeded, RFC 3339 as WeChat wrote it (`+08:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// Who paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    /// How much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<TransactionAmount>,
}

/// WeChat Pay called the webhook with a verified, decrypted payment notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentNotified {
    /// The notify's `id` (the same across WeChat's retries).
    pub notify_id: String,
    /// `TRANSACTION.SUCCESS`.
    pub event_type: String,
    /// The decrypted `resource`.
    pub transaction: Transaction,
    /// The signed request.
    pub evidence: Evidence,
}

/// Why wxledger asked WeChat about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryReason {
    /// An admin asked (`POST /v1/admin/orders/{no}/sync`).
    Sync,
    /// The order expired and closing it showed WeChat had an answer.
    Expiry,
    /// The background reconciliation sweep.
    Sweep,
    /// An API v2 refund notify claimed a status (`refund.queried` v2 only).
    Notify,
}

/// WeChat's signed answer to a query by `out_trade_no`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentQueried {
    /// Why we asked.
    pub reason: QueryReason,
    /// The answer.
    pub transaction: Transaction,
    /// The signed response.
    pub evidence: Evidence,
}

/// Why an order was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Unpaid past `expires_at`; closed at WeChat first when it had a prepay.
    Expired,
}

/// An unpaid order was closed (at WeChat too, when it had a prepay id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderClosed {
    /// The order.
    pub out_trade_no: String,
    /// Why.
    pub reason: CloseReason,
}
