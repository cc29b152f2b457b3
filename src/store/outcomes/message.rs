//! The outcome messages: the envelope and each type's `data`, as `schema/outcome.*.json`
//! describe them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version of every outcome type so far.
pub const VERSION: u32 = 1;

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeKind {
    /// An order was paid, through WeChat Pay or from the wallet.
    OrderPaid,
    /// A paid recharge was credited to the wallet.
    RechargeCredited,
    /// A refund went back to the payer (through WeChat, or to the wallet).
    RefundSucceeded,
    /// The failure log got a row.
    FailureRecorded,
}

impl OutcomeKind {
    /// Every kind.
    pub const ALL: [OutcomeKind; 4] = [
        OutcomeKind::OrderPaid,
        OutcomeKind::RechargeCredited,
        OutcomeKind::RefundSucceeded,
        OutcomeKind::FailureRecorded,
    ];

    /// The type name: the envelope's `type` and the subject's tail.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::OrderPaid => "order.paid",
            OutcomeKind::RechargeCredited => "recharge.credited",
            OutcomeKind::RefundSucceeded => "refund.succeeded",
            OutcomeKind::FailureRecorded => "failure.recorded",
        }
    }
}

/// The event whose folding made the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Its stream sequence on the event stream.
    pub seq: u64,
    /// Its envelope id.
    pub event_id: Uuid,
    /// Its type, e.g. `payment.notified`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One outcome: the JSON published on the outcome stream (and kept in the outbox until
/// then), shaped by `schema/outcome.envelope.v1.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Derived from the source, e.g. `order.paid:<out_trade_no>`: the same decision always
    /// has the same id. Also the message's `Nats-Msg-Id`.
    pub id: String,
    /// The outcome type, e.g. `order.paid`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version of `data` for that type.
    pub version: u32,
    /// When the source event was accepted (not when the outcome was published).
    pub occurred_at: DateTime<Utc>,
    /// The event that made the decision.
    pub source: Source,
    /// The decision's facts, shaped by `schema/outcome.<type>.v<version>.json`.
    pub data: serde_json::Value,
}

/// `order.paid`: an order is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPaid {
    /// The order.
    pub out_trade_no: String,
    /// Who placed it.
    pub user_id: Uuid,
    /// Fen paid.
    pub amount: i64,
    /// `wechat` or `wallet`.
    pub paid_with: String,
    /// WeChat's transaction (paid with WeChat Pay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The wallet's balance right after the payment, in fen (paid from the wallet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<i64>,
}

/// `recharge.credited`: a paid recharge is in the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RechargeCredited {
    /// The recharge order.
    pub out_trade_no: String,
    /// Whose wallet.
    pub user_id: Uuid,
    /// Fen credited.
    pub amount: i64,
    /// WeChat's transaction.
    pub transaction_id: String,
    /// The wallet's balance right after the credit, in fen.
    pub wallet_balance: i64,
}

/// `refund.succeeded`: a refund went back to the payer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSucceeded {
    /// The refund.
    pub out_refund_no: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// Fen refunded (for a refund through WeChat: what WeChat reports it paid out).
    pub amount: i64,
    /// `wechat` (back to the payer through WeChat Pay) or `wallet`.
    pub refunded_to: String,
    /// Whether wxledger asked for it; `false` for a refund WeChat reported that nobody
    /// asked wxledger for (also recorded as the failure `unknown_refund`).
    pub requested: bool,
    /// Who paid the order (requested refunds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// WeChat's transaction that paid the order (requested refunds of orders paid with
    /// WeChat Pay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// WeChat's refund id, when WeChat reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// The wallet's balance right after the refund, in fen (refunded to the wallet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<i64>,
}

/// `failure.recorded`: a row of the failure log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRecorded {
    /// Stable snake_case code, e.g. `unknown_order`.
    pub reason: String,
    /// The order concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// WeChat's transaction, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The money concerned, in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// Context for a human, as in the failure log; its fields vary by reason.
    pub detail: serde_json::Value,
}
