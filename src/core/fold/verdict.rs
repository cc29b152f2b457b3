//! What the fold decided on one event: a [`Verdict`], with the [`Decision`]s it made or
//! the [`Refusal`] that stopped it. Callers waiting on an event read it (kept in the
//! `verdicts` table for the events in [`keeps_verdict`]) instead of inferring it from rows.

use serde::{Deserialize, Serialize};

use super::{BookedAs, PaidWith};
use crate::core::events::Event;

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The event changed the state, making these decisions (none for an event that only
    /// updates rows, such as a login).
    Applied(Vec<Decision>),
    /// Already applied (its sequence is not newer than the row's): nothing changed.
    AlreadyApplied,
    /// Recorded but refused by the rules.
    Refused(Refusal),
}

impl Verdict {
    /// Applied, whatever it decided.
    pub fn is_applied(&self) -> bool {
        matches!(self, Verdict::Applied(_))
    }

    /// Applied with no decision to tell.
    pub(super) fn applied() -> Self {
        Verdict::Applied(Vec::new())
    }

    /// `applied`, `already_applied` or `refused`: the `verdicts.verdict` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Applied(_) => "applied",
            Verdict::AlreadyApplied => "already_applied",
            Verdict::Refused(_) => "refused",
        }
    }
}

/// Something the fold did that a caller may want to know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// An order was paid from its payer's wallet.
    PaidFromWallet {
        /// The order.
        out_trade_no: String,
        /// Fen debited.
        amount: i64,
        /// The wallet's balance right after, in fen.
        balance: i64,
    },
    /// A payment WeChat vouched for was booked, once for its transaction.
    PaymentBooked {
        /// The order WeChat named.
        out_trade_no: String,
        /// WeChat's transaction id.
        transaction_id: String,
        /// Fen received.
        amount: i64,
        /// Where the money went.
        booked_as: BookedAs,
        /// The wallet's balance right after, in fen, when the payment credited one (a
        /// recharge).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wallet_balance: Option<i64>,
    },
    /// A requested refund's amount was set aside until WeChat pays it out.
    RefundReserved {
        /// The refund.
        out_refund_no: String,
        /// Fen set aside.
        amount: i64,
    },
    /// A refund of an order paid from the wallet went back to the wallet at once.
    RefundedToWallet {
        /// The refund.
        out_refund_no: String,
        /// Fen credited back.
        amount: i64,
        /// The wallet's balance right after, in fen.
        balance: i64,
    },
}

/// Why the fold refused an event. Each reason has one stable code ([`Refusal::as_str`]),
/// which is also its `code` when stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case", deny_unknown_fields)]
pub enum Refusal {
    /// No such user.
    UnknownUser,
    /// The user was erased.
    UserErased,
    /// Another user holds the phone number.
    PhoneTaken,
    /// No such order.
    UnknownOrder,
    /// Another order has this out_trade_no.
    OutTradeNoTaken,
    /// An amount that is not positive.
    InvalidAmount,
    /// The order cannot be paid this way (or at all) any more.
    NotPayable,
    /// The order is paid already.
    AlreadyPaid {
        /// How it was paid.
        paid_with: Option<PaidWith>,
    },
    /// The order is closed.
    OrderClosed,
    /// WeChat reported a payment error already.
    AlreadyPayError,
    /// WeChat's trade state is not final (NOTPAY, USERPAYING).
    NotFinal,
    /// The order is someone else's.
    NotOwner,
    /// The amount asked is not the order's.
    AmountMismatch,
    /// The account to debit holds too little.
    InsufficientBalance {
        /// What it holds, in fen.
        balance: i64,
        /// What was needed, in fen.
        needed: i64,
    },
    /// A balance would leave the range of `i64`.
    LedgerOverflow,
    /// Only a paid order can be refunded.
    NotPaid,
    /// The refunds would exceed what was paid.
    RefundExceedsPaid,
    /// Another refund has this out_refund_no.
    OutRefundNoTaken,
    /// WeChat named another order for the refund.
    RefundOrderMismatch,
    /// WeChat's word does not follow from the refund's state.
    RefundStateConflict,
    /// WeChat reported a refund without a positive amount.
    MalformedRefund,
    /// A refund notify's claim that WeChat's signed answer does not confirm.
    RefundNotifyUnconfirmed,
}

impl Refusal {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::UserErased => "user_erased",
            Refusal::PhoneTaken => "phone_taken",
            Refusal::UnknownOrder => "unknown_order",
            Refusal::OutTradeNoTaken => "out_trade_no_taken",
            Refusal::InvalidAmount => "invalid_amount",
            Refusal::NotPayable => "not_payable",
            Refusal::AlreadyPaid { .. } => "already_paid",
            Refusal::OrderClosed => "order_closed",
            Refusal::AlreadyPayError => "already_pay_error",
            Refusal::NotFinal => "not_final",
            Refusal::NotOwner => "not_owner",
            Refusal::AmountMismatch => "amount_mismatch",
            Refusal::InsufficientBalance { .. } => "insufficient_balance",
            Refusal::LedgerOverflow => "ledger_overflow",
            Refusal::NotPaid => "not_paid",
            Refusal::RefundExceedsPaid => "refund_exceeds_paid",
            Refusal::OutRefundNoTaken => "out_refund_no_taken",
            Refusal::RefundOrderMismatch => "refund_order_mismatch",
            Refusal::RefundStateConflict => "refund_state_conflict",
            Refusal::MalformedRefund => "malformed_refund",
            Refusal::RefundNotifyUnconfirmed => "refund_notify_unconfirmed",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the verdict on `event` is kept (see [`super::State::take_verdicts`]; so in the
/// `verdicts` table): the events a request appends and then waits on for the fold's
/// decision. Others only change rows, which the caller reads.
pub fn keeps_verdict(event: &Event) -> bool {
    matches!(
        event,
        Event::BalancePayRequested(_)
            | Event::RefundRequested(_)
            | Event::PhoneBound(_)
            | Event::PhoneSealed(_)
    )
}

/// The verdict on one event, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptVerdict {
    /// The event's stream sequence.
    pub seq: i64,
    /// The event's type, e.g. `order.balance_pay_requested`.
    pub event: &'static str,
    /// What the fold decided.
    pub verdict: Verdict,
}

impl KeptVerdict {
    /// The `detail` stored with the verdict: the decisions of an applied event, the
    /// refusal (with its `code`) of a refused one, `null` otherwise.
    pub fn detail(&self) -> serde_json::Value {
        match &self.verdict {
            Verdict::Applied(decisions) => {
                serde_json::to_value(decisions).expect("decisions always serialize")
            }
            Verdict::AlreadyApplied => serde_json::Value::Null,
            Verdict::Refused(refusal) => {
                serde_json::to_value(refusal).expect("refusals always serialize")
            }
        }
    }

    /// The verdict stored as `verdict` with `detail` (see [`KeptVerdict::detail`]).
    pub fn parse_verdict(
        verdict: &str,
        detail: serde_json::Value,
    ) -> Result<Verdict, serde_json::Error> {
        use serde::de::Error;
        Ok(match verdict {
            "applied" => Verdict::Applied(serde_json::from_value(detail)?),
            "already_applied" => Verdict::AlreadyApplied,
            "refused" => Verdict::Refused(serde_json::from_value(detail)?),
            other => {
                return Err(serde_json::Error::custom(format!(
                    "unknown verdict {other:?}"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_refusal() -> Vec<Refusal> {
        use Refusal::*;
        vec![
            UnknownUser,
            UserErased,
            PhoneTaken,
            UnknownOrder,
            OutTradeNoTaken,
            InvalidAmount,
            NotPayable,
            AlreadyPaid {
                paid_with: Some(PaidWith::Wallet),
            },
            AlreadyPaid { paid_with: None },
            OrderClosed,
            AlreadyPayError,
            NotFinal,
            NotOwner,
            AmountMismatch,
            InsufficientBalance {
                balance: 5,
                needed: 7,
            },
            LedgerOverflow,
            NotPaid,
            RefundExceedsPaid,
            OutRefundNoTaken,
            RefundOrderMismatch,
            RefundStateConflict,
            MalformedRefund,
            RefundNotifyUnconfirmed,
        ]
    }

    #[test]
    fn a_stored_refusal_carries_its_code_and_reads_back_the_same() {
        for refusal in every_refusal() {
            let kept = KeptVerdict {
                seq: 1,
                event: "x",
                verdict: Verdict::Refused(refusal),
            };
            let detail = kept.detail();
            assert_eq!(detail["code"], refusal.as_str(), "{refusal:?}");
            let back = KeptVerdict::parse_verdict("refused", detail).unwrap();
            assert_eq!(back, Verdict::Refused(refusal));
        }
    }

    #[test]
    fn stored_decisions_read_back_the_same() {
        let decisions = vec![
            Decision::PaidFromWallet {
                out_trade_no: "o1".into(),
                amount: 300,
                balance: 200,
            },
            Decision::PaymentBooked {
                out_trade_no: "o2".into(),
                transaction_id: "42".into(),
                amount: 1,
                booked_as: BookedAs::NotCredited,
                wallet_balance: None,
            },
            Decision::PaymentBooked {
                out_trade_no: "o3".into(),
                transaction_id: "43".into(),
                amount: 5,
                booked_as: BookedAs::Recharge,
                wallet_balance: Some(5),
            },
            Decision::RefundReserved {
                out_refund_no: "r1".into(),
                amount: 2,
            },
            Decision::RefundedToWallet {
                out_refund_no: "r2".into(),
                amount: 3,
                balance: 4,
            },
        ];
        let kept = KeptVerdict {
            seq: 1,
            event: "x",
            verdict: Verdict::Applied(decisions.clone()),
        };
        let detail = kept.detail();
        assert_eq!(detail[1]["booked_as"], BookedAs::NotCredited.as_str());
        assert_eq!(
            KeptVerdict::parse_verdict("applied", detail).unwrap(),
            Verdict::Applied(decisions)
        );
        assert_eq!(
            KeptVerdict::parse_verdict("already_applied", serde_json::Value::Null).unwrap(),
            Verdict::AlreadyApplied
        );
        assert!(KeptVerdict::parse_verdict("maybe", serde_json::Value::Null).is_err());
    }

    #[test]
    fn a_stored_paid_with_is_named_as_in_the_orders_table() {
        for with in [PaidWith::Wechat, PaidWith::Wallet] {
            assert_eq!(serde_json::to_value(with).unwrap(), with.as_str());
        }
    }
}
