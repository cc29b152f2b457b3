//! Matching a trade bill against our books, line by line: pure, over plain data, so
//! every rule is a table test. Our side ([`OurBooks`]) is what [`super::books`] loads.
//!
//! Each bill line gets exactly one class; booked payments (and refunds) of the bill day
//! that no line names are `missing_in_bill`. Refund lines are checked against a refunds
//! source when [`OurBooks::refunds`] has one; until the refunds projection exists they are
//! `refund_unchecked` (but a refund of a payment the ledger never booked is still
//! `missing_in_ledger`).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::bill::{china, BillLine, TradeBill};

/// A booked WeChat transaction (a row of `payments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookedPayment {
    /// WeChat's transaction id.
    pub transaction_id: String,
    /// The order it was for.
    pub out_trade_no: String,
    /// Amount received, fen (the transaction's `amount.total`).
    pub amount: i64,
    /// How it was booked: `sale`, `recharge`, `suspense`, `not_credited`.
    pub booked_as: String,
    /// When wxledger recorded it. The bill files a payment under WeChat's success time,
    /// which the `payments` table does not keep: a payment that succeeded just before
    /// midnight and was recorded just after counts for the next day here, and shows as
    /// `missing_in_bill` when that day is reconciled.
    pub occurred_at: DateTime<Utc>,
}

/// An order as the ledger has it (a row of `orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookedOrder {
    /// Our order number.
    pub out_trade_no: String,
    /// Amount asked, fen.
    pub amount: i64,
    /// `created`, `prepay_issued`, `paid`, `closed`, `pay_error`, ...
    pub state: String,
}

/// A refund as a refunds source has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookedRefund {
    /// Our refund number (商户退款单号).
    pub out_refund_no: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// Amount refunded, fen (what the bill calls 申请退款金额).
    pub amount: i64,
    /// WeChat's refund status as the ledger knows it: `SUCCESS`, `PROCESSING`,
    /// `ABNORMAL`, `CLOSED`.
    pub status: String,
    /// When WeChat accepted the refund (the bill files it under that day).
    pub accepted_at: DateTime<Utc>,
}

/// Our side of the bill match (what the projection has booked), for one bill: the payments and orders the bill's lines name,
/// and every payment (and refund) of the bill day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OurBooks {
    /// Payments named by a line, or recorded during the bill day.
    pub payments: Vec<BookedPayment>,
    /// Orders named by a line.
    pub orders: Vec<BookedOrder>,
    /// Refunds named by a line or accepted during the bill day; `None` while there is no
    /// refunds source, and refund lines are then `refund_unchecked`.
    pub refunds: Option<Vec<BookedRefund>>,
}

/// How a bill line (or a ledger entry) compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The line and the ledger agree.
    Matched,
    /// WeChat has it, the ledger does not.
    MissingInLedger,
    /// The ledger has it (that day), the bill does not.
    MissingInBill,
    /// Both have it, with different amounts (or currency).
    AmountMismatch,
    /// Both have it, in different states (or under different keys).
    StateMismatch,
    /// A refund line that could not be checked: no refunds source yet.
    RefundUnchecked,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 6] = [
        Class::Matched,
        Class::MissingInLedger,
        Class::MissingInBill,
        Class::AmountMismatch,
        Class::StateMismatch,
        Class::RefundUnchecked,
    ];

    /// The class's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::MissingInLedger => "missing_in_ledger",
            Class::MissingInBill => "missing_in_bill",
            Class::AmountMismatch => "amount_mismatch",
            Class::StateMismatch => "state_mismatch",
            Class::RefundUnchecked => "refund_unchecked",
        }
    }

    /// True when the books and the bill disagree (the command then exits 1).
    /// `refund_unchecked` is reported but is not a disagreement.
    pub fn is_discrepancy(self) -> bool {
        !matches!(self, Class::Matched | Class::RefundUnchecked)
    }
}

/// One line or ledger entry that did not simply match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The class.
    pub class: Class,
    /// The bill line (1-based line number in the file); `None` for `missing_in_bill`.
    pub line: Option<usize>,
    /// WeChat's transaction id.
    pub transaction_id: Option<String>,
    /// Our order number.
    pub out_trade_no: Option<String>,
    /// Our refund number, for refunds.
    pub out_refund_no: Option<String>,
    /// What differs: `amount`, `currency`, `state`, `refund_status`, `out_trade_no`;
    /// `None` when the whole entry is missing on one side.
    pub field: Option<&'static str>,
    /// What the ledger says (amounts in fen; `null` when the ledger has nothing).
    pub expected: Value,
    /// What the bill says (amounts in fen; `null` when the bill has nothing).
    pub got: Value,
    /// A sentence for humans.
    pub note: String,
}

/// The verdict on one bill: what [`match_bill`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BillVerdict {
    /// How many lines (or ledger entries, for `missing_in_bill`) fell in each class;
    /// every class is present.
    pub counts: BTreeMap<&'static str, usize>,
    /// Everything but `matched`: bill lines in file order, then ledger entries.
    pub findings: Vec<Finding>,
}

impl BillVerdict {
    /// True when some finding is a discrepancy.
    pub fn has_discrepancies(&self) -> bool {
        self.findings.iter().any(|f| f.class.is_discrepancy())
    }
}

/// The UTC instants `[start, end)` of a bill day in China Standard Time.
pub fn day_window(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |d: NaiveDate| {
        china()
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .single()
            .expect("a fixed offset maps every local time once")
            .with_timezone(&Utc)
    };
    let next = day.succ_opt().unwrap_or(NaiveDate::MAX);
    (at(day), at(next))
}

fn finding(class: Class, line: &BillLine) -> Finding {
    Finding {
        class,
        line: Some(line.line),
        transaction_id: Some(line.transaction_id.clone()),
        out_trade_no: Some(line.out_trade_no.clone()),
        out_refund_no: line.out_refund_no.clone().filter(|_| line.is_refund()),
        field: None,
        expected: Value::Null,
        got: Value::Null,
        note: String::new(),
    }
}

struct Index<'a> {
    payments: HashMap<&'a str, &'a BookedPayment>,
    orders: HashMap<&'a str, &'a BookedOrder>,
    refunds: Option<HashMap<&'a str, &'a BookedRefund>>,
}

/// The class of a payment line, and the finding when it is not `matched`.
fn payment_line(line: &BillLine, ix: &Index<'_>, first: bool) -> Option<Finding> {
    let bill_side = json!({"amount": line.total, "state": line.trade_state});
    if !first {
        return Some(Finding {
            got: bill_side,
            note: "the bill lists this transaction twice; the ledger books it once".into(),
            ..finding(Class::MissingInLedger, line)
        });
    }
    let Some(payment) = ix.payments.get(line.transaction_id.as_str()) else {
        return match (
            line.trade_state.as_str(),
            ix.orders.get(line.out_trade_no.as_str()),
        ) {
            // Paid, then revoked: no money moved, and the ledger has none.
            ("REVOKED", _) => None,
            ("SUCCESS", Some(order)) if order.state != "paid" => Some(Finding {
                field: Some("state"),
                expected: json!(order.state),
                got: json!(line.trade_state),
                note: format!(
                    "WeChat says paid; the ledger's order is {} and has no payment {}",
                    order.state, line.transaction_id
                ),
                ..finding(Class::StateMismatch, line)
            }),
            _ => Some(Finding {
                got: bill_side,
                note: "no payment with this transaction_id in the ledger".into(),
                ..finding(Class::MissingInLedger, line)
            }),
        };
    };
    if payment.out_trade_no != line.out_trade_no {
        return Some(Finding {
            field: Some("out_trade_no"),
            expected: json!(payment.out_trade_no),
            got: json!(line.out_trade_no),
            note: "the ledger booked this transaction for another order".into(),
            ..finding(Class::StateMismatch, line)
        });
    }
    if line.trade_state != "SUCCESS" {
        return Some(Finding {
            field: Some("state"),
            expected: json!("SUCCESS"),
            got: json!(line.trade_state),
            note: format!("the ledger booked this payment as {}", payment.booked_as),
            ..finding(Class::StateMismatch, line)
        });
    }
    if line.currency != "CNY" {
        return Some(Finding {
            field: Some("currency"),
            expected: json!("CNY"),
            got: json!(line.currency),
            note: "the ledger books CNY only".into(),
            ..finding(Class::AmountMismatch, line)
        });
    }
    if line.total != payment.amount {
        return Some(Finding {
            field: Some("amount"),
            expected: json!(payment.amount),
            got: json!(line.total),
            note: "订单金额 differs from the amount booked".into(),
            ..finding(Class::AmountMismatch, line)
        });
    }
    None
}

/// The class of a refund line, and the finding when it is not `matched`.
fn refund_line(line: &BillLine, ix: &Index<'_>) -> Option<Finding> {
    let out_refund_no = line.out_refund_no.as_deref().unwrap_or_default();
    let bill_side = json!({"amount": line.refund_requested, "refund_status": line.refund_status});
    let Some(refunds) = &ix.refunds else {
        if !ix.payments.contains_key(line.transaction_id.as_str()) {
            return Some(Finding {
                got: bill_side,
                note: "a refund of a payment the ledger never booked".into(),
                ..finding(Class::MissingInLedger, line)
            });
        }
        return Some(Finding {
            got: bill_side,
            note: "no refunds source to check it against yet".into(),
            ..finding(Class::RefundUnchecked, line)
        });
    };
    let Some(refund) = refunds.get(out_refund_no) else {
        return Some(Finding {
            got: bill_side,
            note: "no refund with this out_refund_no in the ledger".into(),
            ..finding(Class::MissingInLedger, line)
        });
    };
    if refund.out_trade_no != line.out_trade_no {
        return Some(Finding {
            field: Some("out_trade_no"),
            expected: json!(refund.out_trade_no),
            got: json!(line.out_trade_no),
            note: "the ledger has this refund for another order".into(),
            ..finding(Class::StateMismatch, line)
        });
    }
    // The bill keeps the status of when it was made: a refund still processing then may
    // have succeeded since.
    let compatible = refund.status == line.refund_status
        || (line.refund_status == "PROCESSING" && refund.status == "SUCCESS");
    if !compatible {
        return Some(Finding {
            field: Some("refund_status"),
            expected: json!(refund.status),
            got: json!(line.refund_status),
            note: "the refund's status differs".into(),
            ..finding(Class::StateMismatch, line)
        });
    }
    if refund.amount != line.refund_requested {
        return Some(Finding {
            field: Some("amount"),
            expected: json!(refund.amount),
            got: json!(line.refund_requested),
            note: "申请退款金额 differs from the refund booked".into(),
            ..finding(Class::AmountMismatch, line)
        });
    }
    None
}

/// Matches every line of `bill` against `books`, and finds the booked entries of `day`
/// that the bill lacks.
pub fn match_bill(bill: &TradeBill, books: &OurBooks, day: NaiveDate) -> BillVerdict {
    let ix = Index {
        payments: books
            .payments
            .iter()
            .map(|p| (p.transaction_id.as_str(), p))
            .collect(),
        orders: books
            .orders
            .iter()
            .map(|o| (o.out_trade_no.as_str(), o))
            .collect(),
        refunds: books.refunds.as_ref().map(|refunds| {
            refunds
                .iter()
                .map(|r| (r.out_refund_no.as_str(), r))
                .collect()
        }),
    };
    let mut counts: BTreeMap<&'static str, usize> =
        Class::ALL.iter().map(|c| (c.as_str(), 0)).collect();
    let mut findings = Vec::new();
    let mut paid_lines: HashSet<&str> = HashSet::new();
    let mut refund_lines: HashSet<&str> = HashSet::new();
    for line in &bill.lines {
        let found = if line.is_refund() {
            let no = line.out_refund_no.as_deref().unwrap_or_default();
            if refund_lines.insert(no) {
                refund_line(line, &ix)
            } else {
                Some(Finding {
                    note: "the bill lists this refund twice".into(),
                    got: json!({"amount": line.refund_requested}),
                    ..finding(Class::MissingInLedger, line)
                })
            }
        } else {
            let first = paid_lines.insert(line.transaction_id.as_str());
            payment_line(line, &ix, first)
        };
        let class = found.as_ref().map_or(Class::Matched, |f| f.class);
        *counts.entry(class.as_str()).or_default() += 1;
        findings.extend(found);
    }

    let (start, end) = day_window(day);
    let in_day = |t: &DateTime<Utc>| *t >= start && *t < end;
    let mut absent: Vec<&BookedPayment> = books
        .payments
        .iter()
        // Another merchant's transaction (not credited) is not in our bill.
        .filter(|p| p.booked_as != "not_credited" && in_day(&p.occurred_at))
        .filter(|p| !paid_lines.contains(p.transaction_id.as_str()))
        .collect();
    absent.sort_by(|a, b| {
        (a.occurred_at, &a.transaction_id).cmp(&(b.occurred_at, &b.transaction_id))
    });
    for p in absent {
        *counts.entry(Class::MissingInBill.as_str()).or_default() += 1;
        findings.push(Finding {
            class: Class::MissingInBill,
            line: None,
            transaction_id: Some(p.transaction_id.clone()),
            out_trade_no: Some(p.out_trade_no.clone()),
            out_refund_no: None,
            field: None,
            expected: json!({"amount": p.amount, "state": "SUCCESS"}),
            got: Value::Null,
            note: format!(
                "booked as {} at {}; not in the bill",
                p.booked_as,
                p.occurred_at.with_timezone(&china()).to_rfc3339()
            ),
        });
    }
    let mut absent_refunds: Vec<&BookedRefund> = books
        .refunds
        .iter()
        .flatten()
        .filter(|r| in_day(&r.accepted_at) && !refund_lines.contains(r.out_refund_no.as_str()))
        .collect();
    absent_refunds
        .sort_by(|a, b| (a.accepted_at, &a.out_refund_no).cmp(&(b.accepted_at, &b.out_refund_no)));
    for r in absent_refunds {
        *counts.entry(Class::MissingInBill.as_str()).or_default() += 1;
        findings.push(Finding {
            class: Class::MissingInBill,
            line: None,
            transaction_id: None,
            out_trade_no: Some(r.out_trade_no.clone()),
            out_refund_no: Some(r.out_refund_no.clone()),
            field: None,
            expected: json!({"amount": r.amount, "refund_status": r.status}),
            got: Value::Null,
            note: "a refund of the day the bill does not list".into(),
        });
    }
    BillVerdict { counts, findings }
}

#[cfg(test)]
mod tests;
