//! `wxledger reconcile`: orders paid through the simulator, discrepancies planted in the
//! simulator's trade bill, and each planted line found in its class, by the library and
//! by the real binary (`--date` downloads through the signed v3 API, `--bill` reads a
//! file).

use std::{collections::HashMap, process::Output};

use chrono::NaiveDate;
use serde_json::{json, Value};
use wxledger::{
    tools::finance::{
        bill::china,
        matcher::Class,
        reconcile::{self, BillSource},
    },
    Settings,
};

use crate::common::{database_url, TestEnv};

/// Settings that reach this test's schema and simulator.
fn settings_of(env: &TestEnv) -> Settings {
    env.settings()
}

/// Today in China Standard Time: the day of the simulator's bill of what the test pays.
/// Within a minute of midnight it waits for the new day, so that a test's payments and
/// its bill fall on one day.
async fn bill_day() -> NaiveDate {
    let now = chrono::Utc::now().with_timezone(&china());
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_local_timezone(china())
        .unwrap();
    let left = midnight - now;
    if left < chrono::TimeDelta::seconds(60) {
        tokio::time::sleep(left.to_std().unwrap_or_default() + std::time::Duration::from_secs(1))
            .await;
    }
    chrono::Utc::now().with_timezone(&china()).date_naive()
}

/// Runs the real `wxledger` binary against this test's schema and simulator.
async fn wxledger(env: &TestEnv, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"))
        // The simulator's merchant: its keys are development ones.
        .arg("--dev")
        .args(args)
        .env_remove("WXLEDGER_CONFIG")
        .env("WXLEDGER__DATABASE__URL", database_url())
        .env("WXLEDGER__DATABASE__SCHEMA", &env.schema)
        .env("WXLEDGER__PAY__API_BASE", &env.sim)
        .env("WXLEDGER__WECHAT__API_BASE", &env.sim)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the wxledger binary runs")
}

/// Places and pays orders of `amounts` fen; answers their out_trade_nos once paid.
async fn paid_orders(env: &TestEnv, token: &str, amounts: &[i64]) -> Vec<String> {
    let mut nos = Vec::new();
    for &amount in amounts {
        let no = env.order_with_prepay(token, amount).await;
        env.sim_pay(&no, json!({})).await;
        env.wait_order_state(token, &no, "paid").await;
        nos.push(no);
    }
    env.wait_applied().await;
    nos
}

/// The transaction the ledger booked for an order.
async fn booked_transaction(env: &TestEnv, out_trade_no: &str) -> String {
    env.db()
        .await
        .query_one(
            "SELECT transaction_id FROM payments WHERE out_trade_no = $1",
            &[&out_trade_no],
        )
        .await
        .unwrap()
        .get(0)
}

/// A class's count line in the text report.
fn count_line(class: &str, n: usize) -> String {
    format!("  {class:<18} {n}\n")
}

/// The class of each finding, by out_refund_no or else out_trade_no.
fn classes(report: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for list in ["discrepancies", "unchecked"] {
        for f in report[list].as_array().unwrap() {
            let key = f["out_refund_no"]
                .as_str()
                .or(f["out_trade_no"].as_str())
                .unwrap()
                .to_owned();
            out.insert(key, f["class"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[tokio::test]
async fn each_planted_discrepancy_is_found_in_its_class() {
    let today = bill_day().await;
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-reconcile").await;
    let nos = paid_orders(&env, &token, &[1800, 2500, 999, 1, 12_345]).await;
    let [matched, dropped, repriced, restated, refunded] = <[String; 5]>::try_from(nos).unwrap();
    // Paid at WeChat, but the notify is lost: the ledger's order still waits.
    let unnotified = env.order_with_prepay(&token, 700).await;
    env.sim_faults(json!({"lost": true})).await;
    env.sim_pay(&unnotified, json!({})).await;
    env.wait_applied().await;
    let refunded_tx = booked_transaction(&env, &refunded).await;
    refund_settled(&env, &refunded, "rf-reconcile-1", 300).await;

    env.sim_post(
        "/sim/pay/bill/faults",
        json!({
            "drop": [dropped],
            "amount": {repriced.clone(): 1000},
            "state": {restated.clone(): "REFUND"},
            "extra": [
                {"transaction_id": "4200000000000000000000009999",
                 "out_trade_no": "not-our-order-1", "amount": 4200},
                {"transaction_id": refunded_tx,
                 "out_trade_no": refunded, "out_refund_no": "rf-reconcile-1", "refund": 300},
            ],
        }),
    )
    .await;

    let settings = settings_of(&env);
    let report = reconcile::reconcile_bill(&settings, BillSource::Download, Some(today))
        .await
        .expect("the bill downloads and the ledger reads");
    let json = report.to_json();
    let found = classes(&json);
    assert_eq!(
        found.get(&dropped).map(String::as_str),
        Some("missing_in_bill"),
        "{json:#}"
    );
    assert_eq!(
        found.get(&repriced).map(String::as_str),
        Some("amount_mismatch"),
        "{json:#}"
    );
    assert_eq!(
        found.get(&restated).map(String::as_str),
        Some("state_mismatch"),
        "{json:#}"
    );
    assert_eq!(
        found.get(&unnotified).map(String::as_str),
        Some("state_mismatch"),
        "{json:#}"
    );
    assert_eq!(
        found.get("not-our-order-1").map(String::as_str),
        Some("missing_in_ledger"),
        "{json:#}"
    );
    // The refund line matches the ledger's refund.
    assert!(!found.contains_key("rf-reconcile-1"), "{json:#}");
    assert!(
        !found.contains_key(&matched) && !found.contains_key(&refunded),
        "{json:#}"
    );
    assert_eq!(json["counts"]["matched"], 3, "{json:#}");
    assert_eq!(json["counts"]["missing_in_bill"], 1);
    assert_eq!(json["counts"]["amount_mismatch"], 1);
    assert_eq!(json["counts"]["state_mismatch"], 2);
    assert_eq!(json["counts"]["missing_in_ledger"], 1);
    assert_eq!(json["counts"]["refund_unchecked"], 0);
    assert_eq!(json["ok"], false);
    assert_eq!(report.exit_code(), 1);

    let amount = json["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == "amount_mismatch")
        .unwrap();
    assert_eq!(
        (&amount["expected"], &amount["got"]),
        (&json!(999), &json!(1000))
    );
    assert_eq!(amount["field"], "amount");

    // The real binary, downloading the same bill: exit 1 and the same counts.
    let date = today.to_string();
    let out = wxledger(&env, &["reconcile", "--date", &date, "--format", "json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let printed: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(printed["counts"], json["counts"]);
    assert_eq!(printed["bill_date"], date.as_str());

    // And from a file: the downloaded bill saved as WeChat sends it, in the text report.
    let client = wxledger::wechat::PayClient::new(
        &settings.pay,
        &settings.wechat.appid,
        wxledger::core::clock::system(),
    )
    .unwrap();
    let file = reconcile::download(&client, today).await.unwrap().unwrap();
    assert!(
        file.starts_with(b"\xEF\xBB\xBF"),
        "WeChat's bills start with a BOM"
    );
    let path = std::env::temp_dir().join(format!("wxledger-bill-{}.csv", env.schema));
    std::fs::write(&path, &file).unwrap();
    let out = wxledger(&env, &["reconcile", "--bill", path.to_str().unwrap()]).await;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        count_line("matched", 3),
        count_line("missing_in_bill", 1),
        count_line("amount_mismatch", 1),
        count_line("state_mismatch", 2),
        count_line("missing_in_ledger", 1),
        "amount: expected 9.99 yuan (ledger), got 10.00 yuan (bill)".into(),
        "result: 5 discrepancies".into(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in:\n{text}");
    }
    assert!(
        text.contains(&dropped) && text.contains(&unnotified),
        "{text}"
    );
}

#[tokio::test]
async fn a_clean_bill_with_a_refund_exits_0() {
    let today = bill_day().await;
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-reconcile-clean").await;
    let nos = paid_orders(&env, &token, &[1, 1230]).await;
    // A refund the ledger booked, and its line on the bill.
    refund_settled(&env, &nos[0], "rf-clean-1", 1).await;
    let booked = booked_transaction(&env, &nos[0]).await;
    env.sim_post(
        "/sim/pay/bill/faults",
        json!({"extra": [{"transaction_id": booked, "out_trade_no": nos[0],
                          "out_refund_no": "rf-clean-1", "refund": 1}]}),
    )
    .await;

    let out = wxledger(&env, &["reconcile", "--date", &today.to_string()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&count_line("matched", 3)), "{text}");
    assert!(text.contains("result: everything matched"), "{text}");

    let report = reconcile::reconcile_bill(&settings_of(&env), BillSource::Download, Some(today))
        .await
        .unwrap();
    assert!(report.is_clean());
    assert_eq!(report.bill.summary.total, 1231);
    assert!(
        report.verdict.findings.is_empty(),
        "{:?}",
        report.verdict.findings
    );
}

/// Refunds `amount` of `no` through the admin API and lets WeChat pay it out.
async fn refund_settled(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) {
    let (status, body) = env
        .refund(
            no,
            json!({"amount": amount, "out_refund_no": out_refund_no}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    env.settle(out_refund_no, "success").await;
    env.wait_refund_state(no, out_refund_no, "succeeded").await;
}

#[tokio::test]
async fn a_tampered_bill_or_unreadable_input_exits_2() {
    let today = bill_day().await;
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-reconcile-tampered").await;
    paid_orders(&env, &token, &[500]).await;
    let settings = settings_of(&env);
    let date = today.to_string();

    env.sim_post("/sim/pay/bill/faults", json!({"bad_hash": true}))
        .await;
    let err = reconcile::reconcile_bill(&settings, BillSource::Download, Some(today))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bill_hash_mismatch", "{err}");
    let out = wxledger(&env, &["reconcile", "--date", &date, "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(2));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["error"]["code"], "bill_hash_mismatch");

    env.sim_post("/sim/pay/bill/faults", json!({"bad_summary": true}))
        .await;
    let err = reconcile::reconcile_bill(&settings, BillSource::Download, Some(today))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bill_summary", "{err}");
    let out = wxledger(&env, &["reconcile", "--date", &date]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bill_summary"));

    let out = wxledger(&env, &["reconcile", "--bill", "/nonexistent/bill.csv"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bill_unreadable"));
}

#[tokio::test]
async fn a_day_without_a_bill_shows_the_ledger_payments_as_missing() {
    let today = bill_day().await;
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-reconcile-nobill").await;
    let nos = paid_orders(&env, &token, &[321]).await;
    let settings = settings_of(&env);
    // The simulator lists nothing for the day: WeChat answers NO_STATEMENT_EXIST.
    env.sim_post("/sim/pay/bill/faults", json!({"drop": [nos[0]]}))
        .await;
    let report = reconcile::reconcile_bill(&settings, BillSource::Download, Some(today))
        .await
        .unwrap();
    assert!(
        report.source.contains("NO_STATEMENT_EXIST"),
        "{}",
        report.source
    );
    assert_eq!(report.verdict.findings.len(), 1);
    assert_eq!(report.verdict.findings[0].class, Class::MissingInBill);
    assert_eq!(
        report.verdict.findings[0].out_trade_no.as_deref(),
        Some(nos[0].as_str())
    );

    // A day long ago: nothing in the bill, nothing in the ledger.
    let old = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let report = reconcile::reconcile_bill(&settings, BillSource::Download, Some(old))
        .await
        .unwrap();
    assert!(report.is_clean() && report.verdict.findings.is_empty());
}
