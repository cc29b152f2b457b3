//! The matching rules, one table per class.

use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::tools::finance::bill::{BillLine, BillSummary, TradeBill};

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn line(n: usize, tx: &str, no: &str, total: i64, state: &str) -> BillLine {
    BillLine {
        line: n + 1,
        trade_time: DateTime::parse_from_rfc3339("2024-05-01T12:00:00+08:00").unwrap(),
        appid: "wx00000000simulator".into(),
        mchid: "1900000109".into(),
        sub_mchid: "0".into(),
        device_info: String::new(),
        transaction_id: tx.into(),
        out_trade_no: no.into(),
        openid: "o-payer".into(),
        trade_type: "JSAPI".into(),
        trade_state: state.into(),
        bank_type: "OTHERS".into(),
        currency: "CNY".into(),
        settlement_total: total,
        coupon: 0,
        refund_id: None,
        out_refund_no: None,
        refund: 0,
        recharge_coupon_refund: 0,
        refund_type: String::new(),
        refund_status: String::new(),
        description: "coffee".into(),
        attach: String::new(),
        fee: 0,
        fee_rate: "0.60%".into(),
        total,
        refund_requested: 0,
        fee_note: String::new(),
    }
}

fn refund_line(
    n: usize,
    tx: &str,
    no: &str,
    out_refund_no: &str,
    amount: i64,
    status: &str,
) -> BillLine {
    BillLine {
        refund_id: Some("5030000001".into()),
        out_refund_no: Some(out_refund_no.into()),
        refund: amount,
        refund_requested: amount,
        refund_status: status.into(),
        refund_type: "ORIGINAL".into(),
        ..line(n, tx, no, 0, "REFUND")
    }
}

fn bill(lines: Vec<BillLine>) -> TradeBill {
    let summary = BillSummary::of(&lines).unwrap();
    TradeBill { lines, summary }
}

fn paid(tx: &str, no: &str, amount: i64, when: &str) -> BookedPayment {
    BookedPayment {
        transaction_id: tx.into(),
        out_trade_no: no.into(),
        amount,
        booked_as: "sale".into(),
        occurred_at: at(when),
    }
}

fn order(no: &str, amount: i64, state: &str) -> BookedOrder {
    BookedOrder {
        out_trade_no: no.into(),
        amount,
        state: state.into(),
    }
}

const NOON: &str = "2024-05-01T12:00:01+08:00";

fn classes(verdict: &BillVerdict) -> Vec<(Class, Option<&str>)> {
    verdict
        .findings
        .iter()
        .map(|f| (f.class, f.transaction_id.as_deref()))
        .collect()
}

#[test]
fn a_clean_day_matches_line_by_line() {
    let b = bill(vec![
        line(1, "tx1", "no1", 1800, "SUCCESS"),
        line(2, "tx2", "no2", 1, "SUCCESS"),
    ]);
    let books = OurBooks {
        payments: vec![paid("tx1", "no1", 1800, NOON), paid("tx2", "no2", 1, NOON)],
        ..Default::default()
    };
    let verdict = match_bill(&b, &books, day());
    assert!(verdict.findings.is_empty(), "{:?}", verdict.findings);
    assert_eq!(verdict.counts["matched"], 2);
    assert_eq!(verdict.counts.len(), Class::ALL.len());
    assert!(!verdict.has_discrepancies());
}

#[test]
fn each_payment_discrepancy_gets_its_class() {
    let b = bill(vec![
        line(1, "tx-ok", "no-ok", 100, "SUCCESS"),
        line(2, "tx-unknown", "no-unknown", 100, "SUCCESS"),
        line(3, "tx-closed", "no-closed", 100, "SUCCESS"),
        line(4, "tx-amount", "no-amount", 101, "SUCCESS"),
        line(5, "tx-refund", "no-refund", 100, "REFUND"),
        line(6, "tx-ok", "no-ok", 100, "SUCCESS"),
        line(7, "tx-other", "no-wrong", 100, "SUCCESS"),
    ]);
    let books = OurBooks {
        payments: vec![
            paid("tx-ok", "no-ok", 100, NOON),
            paid("tx-amount", "no-amount", 100, NOON),
            paid("tx-refund", "no-refund", 100, NOON),
            paid("tx-other", "no-other", 100, NOON),
            paid("tx-absent", "no-absent", 700, NOON),
            // Recorded the day before and the day after: not this bill's business.
            paid("tx-yesterday", "no-y", 1, "2024-04-30T23:59:59+08:00"),
            paid("tx-tomorrow", "no-t", 1, "2024-05-02T00:00:00+08:00"),
        ],
        orders: vec![order("no-closed", 100, "closed")],
        refunds: None,
    };
    let verdict = match_bill(&b, &books, day());
    assert_eq!(
        classes(&verdict),
        [
            (Class::MissingInLedger, Some("tx-unknown")),
            (Class::StateMismatch, Some("tx-closed")),
            (Class::AmountMismatch, Some("tx-amount")),
            (Class::StateMismatch, Some("tx-refund")),
            (Class::MissingInLedger, Some("tx-ok")),
            (Class::StateMismatch, Some("tx-other")),
            (Class::MissingInBill, Some("tx-absent")),
        ]
    );
    let f = &verdict.findings;
    assert_eq!(f[1].field, Some("state"));
    assert_eq!(
        (&f[1].expected, &f[1].got),
        (&json!("closed"), &json!("SUCCESS"))
    );
    assert_eq!(f[2].field, Some("amount"));
    assert_eq!((&f[2].expected, &f[2].got), (&json!(100), &json!(101)));
    assert_eq!(
        (&f[3].expected, &f[3].got),
        (&json!("SUCCESS"), &json!("REFUND"))
    );
    assert_eq!(f[5].field, Some("out_trade_no"));
    assert_eq!(f[6].line, None);
    assert_eq!(f[6].expected, json!({"amount": 700, "state": "SUCCESS"}));
    assert_eq!(f[6].got, Value::Null);
    assert_eq!(verdict.counts["matched"], 1);
    assert_eq!(verdict.counts["missing_in_ledger"], 2);
    assert_eq!(verdict.counts["state_mismatch"], 3);
    assert_eq!(verdict.counts["missing_in_bill"], 1);
    assert!(verdict.has_discrepancies());
}

#[test]
fn uncredited_and_revoked_are_not_discrepancies() {
    let b = bill(vec![line(1, "tx-revoked", "no-r", 100, "REVOKED")]);
    let mut foreign = paid("tx-foreign", "no-f", 100, NOON);
    foreign.booked_as = "not_credited".into();
    let books = OurBooks {
        payments: vec![foreign],
        ..Default::default()
    };
    let verdict = match_bill(&b, &books, day());
    assert!(verdict.findings.is_empty(), "{:?}", verdict.findings);
}

#[test]
fn refund_lines_without_a_refunds_source_are_unchecked() {
    let b = bill(vec![
        line(1, "tx1", "no1", 1800, "SUCCESS"),
        refund_line(2, "tx1", "no1", "rf1", 500, "SUCCESS"),
        refund_line(3, "tx-unknown", "no9", "rf9", 500, "SUCCESS"),
    ]);
    let books = OurBooks {
        payments: vec![paid("tx1", "no1", 1800, NOON)],
        ..Default::default()
    };
    let verdict = match_bill(&b, &books, day());
    assert_eq!(
        classes(&verdict),
        [
            (Class::RefundUnchecked, Some("tx1")),
            (Class::MissingInLedger, Some("tx-unknown")),
        ]
    );
    assert_eq!(verdict.findings[0].out_refund_no.as_deref(), Some("rf1"));
    assert!(!verdict.findings[0].class.is_discrepancy());
    assert_eq!(verdict.counts["refund_unchecked"], 1);
}

#[test]
fn refund_lines_match_a_refunds_source_when_there_is_one() {
    let refund = |no: &str, rf: &str, amount: i64, status: &str, when: &str| BookedRefund {
        out_refund_no: rf.into(),
        out_trade_no: no.into(),
        amount,
        status: status.into(),
        accepted_at: at(when),
    };
    let b = bill(vec![
        refund_line(1, "tx1", "no1", "rf-ok", 500, "SUCCESS"),
        refund_line(2, "tx1", "no1", "rf-processing", 100, "PROCESSING"),
        refund_line(3, "tx1", "no1", "rf-amount", 300, "SUCCESS"),
        refund_line(4, "tx1", "no1", "rf-closed", 200, "SUCCESS"),
        refund_line(5, "tx1", "no1", "rf-unknown", 200, "SUCCESS"),
    ]);
    let books = OurBooks {
        payments: vec![paid("tx1", "no1", 1800, "2024-04-20T10:00:00+08:00")],
        orders: vec![],
        refunds: Some(vec![
            refund("no1", "rf-ok", 500, "SUCCESS", NOON),
            refund("no1", "rf-processing", 100, "SUCCESS", NOON),
            refund("no1", "rf-amount", 301, "SUCCESS", NOON),
            refund("no1", "rf-closed", 200, "CLOSED", NOON),
            refund("no1", "rf-absent", 50, "SUCCESS", NOON),
            refund(
                "no1",
                "rf-yesterday",
                50,
                "SUCCESS",
                "2024-04-30T12:00:00+08:00",
            ),
        ]),
    };
    let verdict = match_bill(&b, &books, day());
    let got: Vec<(Class, Option<&str>)> = verdict
        .findings
        .iter()
        .map(|f| (f.class, f.out_refund_no.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (Class::AmountMismatch, Some("rf-amount")),
            (Class::StateMismatch, Some("rf-closed")),
            (Class::MissingInLedger, Some("rf-unknown")),
            (Class::MissingInBill, Some("rf-absent")),
        ]
    );
    assert_eq!(verdict.counts["matched"], 2);
    assert_eq!(verdict.findings[1].field, Some("refund_status"));
}

#[test]
fn a_bill_day_is_china_standard_time() {
    let (start, end) = day_window(day());
    assert_eq!(start.to_rfc3339(), "2024-04-30T16:00:00+00:00");
    assert_eq!(end.to_rfc3339(), "2024-05-01T16:00:00+00:00");
}
