//! The trade bill parser against hand-made bills in WeChat Pay's documented format.

use super::*;

const BOM: &str = "\u{feff}";

fn header() -> String {
    ALL_COLUMNS.join(",")
}

fn summary_header() -> String {
    SUMMARY_COLUMNS.join(",")
}

/// A payment line paid `total` yuan (as text), with every cell backticked.
fn payment(tx: &str, no: &str, total: &str) -> String {
    [
        "2024-05-01 13:51:31",
        "wx00000000simulator",
        "1900000109",
        "0",
        "",
        tx,
        no,
        "o-payer",
        "JSAPI",
        "SUCCESS",
        "OTHERS",
        "CNY",
        total,
        "0.00",
        "0",
        "0",
        "0.00",
        "0.00",
        "",
        "",
        "一杯咖啡",
        "",
        "0.00000",
        "0.60%",
        total,
        "0.00",
        "",
    ]
    .map(|c| format!("`{c}"))
    .join(",")
}

fn refund(tx: &str, no: &str, out_refund_no: &str, amount: &str) -> String {
    [
        "2024-05-01 18:00:00",
        "wx00000000simulator",
        "1900000109",
        "0",
        "",
        tx,
        no,
        "o-payer",
        "JSAPI",
        "REFUND",
        "OTHERS",
        "CNY",
        "0.00",
        "0.00",
        "50300000000000000000000001",
        out_refund_no,
        amount,
        "0.00",
        "ORIGINAL",
        "SUCCESS",
        "一杯咖啡",
        "",
        "0.00000",
        "0.60%",
        "0.00",
        amount,
        "",
    ]
    .map(|c| format!("`{c}"))
    .join(",")
}

fn totals(
    count: u64,
    settlement: &str,
    refund: &str,
    fee: &str,
    total: &str,
    asked: &str,
) -> String {
    format!("`{count},`{settlement},`{refund},`0.00,`{fee},`{total},`{asked}")
}

fn bill(lines: &[String], totals: &str) -> Vec<u8> {
    let mut text = String::from(BOM);
    text.push_str(&header());
    text.push_str("\r\n");
    for l in lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    text.push_str(&summary_header());
    text.push_str("\r\n");
    text.push_str(totals);
    text.push_str("\r\n");
    text.into_bytes()
}

#[test]
fn the_documented_line_reads() {
    // The payment line of WeChat's documented ALL bill sample (one cent, JSAPI).
    let line = "`2022-03-21 13:51:31,`wxfdc955f7104ad557,`180023671,`176531292,`,\
                `420000612032130748613220688,`2021WERUN1647840687637,\
                `oZWaCKXip5njeEiloC4oeOV1TTsk,`JSAPI,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,\
                `0.00,`0.00,`,`,`微信云托管支付测试,`,`0.00000,`0.90%,`0.01,`0.00,`";
    let parsed = parse(&bill(
        &[line.to_owned()],
        &totals(1, "0.01", "0.00", "0.00000", "0.01", "0.00"),
    ))
    .unwrap();
    assert_eq!(parsed.lines.len(), 1);
    let l = &parsed.lines[0];
    assert_eq!(l.line, 2);
    assert_eq!(l.transaction_id, "420000612032130748613220688");
    assert_eq!(l.out_trade_no, "2021WERUN1647840687637");
    assert_eq!(l.mchid, "180023671");
    assert_eq!(l.trade_state, "SUCCESS");
    assert_eq!((l.total, l.settlement_total, l.refund, l.fee), (1, 1, 0, 0));
    assert_eq!(
        (l.refund_id.as_deref(), l.out_refund_no.as_deref()),
        (None, None)
    );
    assert!(!l.is_refund());
    assert_eq!(l.trade_time.to_rfc3339(), "2022-03-21T13:51:31+08:00");
    assert_eq!(l.description, "微信云托管支付测试");
    assert_eq!(l.fee_rate, "0.90%");
    assert_eq!(parsed.summary.count, 1);
}

#[test]
fn yuan_amounts_become_exact_fen() {
    let lines = [
        payment("4200000001", "no-1", "0.01"),
        payment("4200000002", "no-2", "12.30"),
        payment("4200000003", "no-3", "1234567.89"),
    ];
    let parsed = parse(&bill(
        &lines,
        &totals(3, "1234580.20", "0.00", "0.00000", "1234580.20", "0.00"),
    ))
    .unwrap();
    let totals: Vec<i64> = parsed.lines.iter().map(|l| l.total).collect();
    assert_eq!(totals, [1, 1230, 123_456_789]);
    assert_eq!(parsed.summary.total, 123_458_020);
    assert_eq!(parsed.summary.settlement_total, 123_458_020);
}

#[test]
fn bom_and_crlf_are_optional() {
    let lines = [payment("4200000001", "no-1", "0.01")];
    let with_bom = bill(
        &lines,
        &totals(1, "0.01", "0.00", "0.00000", "0.01", "0.00"),
    );
    let plain = String::from_utf8(with_bom.clone())
        .unwrap()
        .trim_start_matches(BOM)
        .replace("\r\n", "\n");
    assert_eq!(parse(&with_bom).unwrap(), parse(plain.as_bytes()).unwrap());
}

#[test]
fn refund_lines_are_told_apart() {
    let lines = [
        payment("4200000001", "no-1", "18.00"),
        refund("4200000001", "no-1", "rf-1", "5.00"),
    ];
    let parsed = parse(&bill(
        &lines,
        &totals(2, "18.00", "5.00", "0.00000", "18.00", "5.00"),
    ))
    .unwrap();
    let r = &parsed.lines[1];
    assert!(r.is_refund());
    assert_eq!(r.out_refund_no.as_deref(), Some("rf-1"));
    assert_eq!((r.refund, r.refund_requested), (500, 500));
    assert_eq!(parsed.summary.refund, 500);
}

#[test]
fn a_description_with_a_comma_stays_one_cell() {
    let line = payment("4200000001", "no-1", "1.00").replace("一杯咖啡", "咖啡, 大杯");
    let parsed = parse(&bill(
        &[line],
        &totals(1, "1.00", "0.00", "0.00000", "1.00", "0.00"),
    ))
    .unwrap();
    assert_eq!(parsed.lines[0].description, "咖啡, 大杯");
}

#[test]
fn a_summary_that_does_not_add_up_is_refused() {
    let lines = [
        payment("4200000001", "no-1", "0.01"),
        payment("4200000002", "no-2", "12.30"),
    ];
    let wrong_count = parse(&bill(
        &lines,
        &totals(3, "12.31", "0.00", "0.00000", "12.31", "0.00"),
    ));
    assert!(
        matches!(&wrong_count, Err(BillError::Summary(m)) if m.contains("总交易单数")),
        "{wrong_count:?}"
    );
    let wrong_total = parse(&bill(
        &lines,
        &totals(2, "12.31", "0.00", "0.00000", "12.32", "0.00"),
    ));
    assert!(
        matches!(&wrong_total, Err(BillError::Summary(m)) if m.contains("订单总金额 says 12.32")),
        "{wrong_total:?}"
    );
    let wrong_fee = parse(&bill(
        &lines,
        &totals(2, "12.31", "0.00", "0.00001", "12.31", "0.00"),
    ));
    assert!(matches!(wrong_fee, Err(BillError::Summary(_))));
    assert_eq!(wrong_fee.unwrap_err().code(), "bill_summary");
}

#[test]
fn a_missing_summary_is_refused() {
    let mut text = format!("{BOM}{}\r\n", header());
    text.push_str(&payment("4200000001", "no-1", "0.01"));
    text.push_str("\r\n");
    assert!(matches!(parse(text.as_bytes()), Err(BillError::Summary(_))));
    // A summary header without its row.
    text.push_str(&summary_header());
    assert!(matches!(parse(text.as_bytes()), Err(BillError::Summary(_))));
}

#[test]
fn a_wrong_header_is_refused() {
    let lines = [payment("4200000001", "no-1", "0.01")];
    let good = String::from_utf8(bill(
        &lines,
        &totals(1, "0.01", "0.00", "0.00000", "0.01", "0.00"),
    ))
    .unwrap();
    // The old format's 总金额 instead of 应结订单金额.
    let old = good.replacen("应结订单金额", "总金额", 1);
    let err = parse(old.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, BillError::Header { line: 1, problem } if problem.contains("column 13")),
        "{err}"
    );
    assert_eq!(err.code(), "bill_header");
    // A SUCCESS bill's header (fewer columns).
    let success = good.replacen(
        &header(),
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注",
        1,
    );
    assert!(matches!(
        parse(success.as_bytes()),
        Err(BillError::Header { .. })
    ));
    assert!(matches!(parse(b""), Err(BillError::Header { .. })));
    assert!(matches!(
        parse(BOM.as_bytes()),
        Err(BillError::Header { .. })
    ));
}

#[test]
fn malformed_lines_are_refused_with_their_number() {
    let summary = totals(1, "0.01", "0.00", "0.00000", "0.01", "0.00");
    let cases = [
        (
            payment("4200000001", "no-1", "0.01").replacen('`', "", 1),
            "backtick",
        ),
        (
            payment("4200000001", "no-1", "0.01").replace(",`0.60%", ""),
            "cells",
        ),
        (payment("4200000001", "no-1", "0.001"), "订单金额"),
        (
            payment("4200000001", "no-1", "0.01").replace("2024-05-01 13:51:31", "2024/05/01"),
            "交易时间",
        ),
        (payment("", "no-1", "0.01"), "微信订单号"),
    ];
    for (line, what) in cases {
        let err = parse(&bill(&[line], &summary)).unwrap_err();
        assert!(
            matches!(&err, BillError::Line { line: 2, problem } if problem.contains(what)),
            "{what}: {err}"
        );
    }
}

#[test]
fn text_after_the_summary_and_bad_bytes_are_refused() {
    let lines = [payment("4200000001", "no-1", "0.01")];
    let mut bytes = bill(
        &lines,
        &totals(1, "0.01", "0.00", "0.00000", "0.01", "0.00"),
    );
    bytes.extend_from_slice(b"`extra\r\n");
    assert!(matches!(
        parse(&bytes),
        Err(BillError::Line { line: 5, .. })
    ));
    assert_eq!(parse(b"\xEF\xBB\xBF\xff\xfe"), Err(BillError::NotUtf8));
}

#[test]
fn an_empty_day_has_a_zero_summary() {
    let parsed = parse(&bill(
        &[],
        &totals(0, "0.00", "0.00", "0.00000", "0.00", "0.00"),
    ))
    .unwrap();
    assert!(parsed.lines.is_empty());
    assert_eq!(parsed.summary, BillSummary::default());
}

#[test]
fn a_time_at_the_edge_of_the_calendar_is_refused_not_a_panic() {
    // Found while writing the trade_bill fuzz target (fuzz/): chrono reads years down to
    // -262143, and 交易时间 at +08:00 before 08:00 on that year's first day has no UTC
    // instant; the parser panicked on it.
    let line = payment("4200000001", "no-1", "0.01")
        .replace("2024-05-01 13:51:31", "-262143-01-01 00:00:00");
    let summary = totals(1, "0.01", "0.00", "0.00000", "0.01", "0.00");
    let err = parse(&bill(&[line], &summary)).unwrap_err();
    assert!(
        matches!(&err, BillError::Line { line: 2, problem } if problem.contains("交易时间")),
        "{err}"
    );
}
