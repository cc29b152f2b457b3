//! `wxledger audit`: a history with payments, a recharge, a wallet payment, a refund and a
//! failure audits clean, with each day's money to the fen; each kind of breach planted by
//! hand in the live tables is found with the event that causes it (by the library and by
//! the real binary, whose exit status says so); `--as-of` audits the books as they stood;
//! `--verify-signatures` passes genuine evidence and catches events forged onto the stream.

use std::process::Output;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use reqwest::StatusCode;
use serde_json::{json, Value};
use wxledger::{
    core::events::Envelope,
    store::replay::AsOf,
    tools::audit::{self, AuditReport, Options},
};

use crate::common::{database_url, nats_url, TestEnv};

/// The history every test audits, with the keys of what it made.
struct History {
    user_id: String,
    order: String,
    order_tx: String,
    wallet_order: String,
    unpaid: String,
    recharge: String,
}

/// A recharge of 5.00, an order of 18.00 paid through WeChat, an order of 2.00 paid from
/// the wallet, 3.00 of the 18.00 refunded, an order left unpaid, and 0.50 paid for an
/// order nobody placed (suspense and the failure log).
async fn history(env: &TestEnv) -> History {
    let (token, user_id) = env.login("o-audit").await;
    let recharge = env.paid_recharge(&token, 500).await;
    let order = env.paid_order(&token, 1800).await;
    let (_, placed) = env.place_order(&token, json!(200)).await;
    let wallet_order = placed["out_trade_no"].as_str().unwrap().to_owned();
    let (status, body) = env.balance_pay(&token, &wallet_order).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = env
        .refund(
            &order,
            json!({"amount": 300, "out_refund_no": "rf-audit-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("rf-audit-1", "success").await;
    env.wait_refund_state(&order, "rf-audit-1", "succeeded")
        .await;
    let unpaid = env.order_with_prepay(&token, 700).await;
    env.sim_post(
        "/sim/pay/notify",
        json!({"notify_url": format!("{}/webhooks/wechatpay", env.api),
               "transaction": {
                   "appid": wxledger::settings::SIM_APPID, "mchid": wxledger::sim::devkeys::MCHID,
                   "out_trade_no": "nobodysorder02", "transaction_id": "4200000000000000000000000555",
                   "trade_type": "JSAPI", "trade_state": "SUCCESS",
                   "amount": {"total": 50, "currency": "CNY"}}}),
    )
    .await;
    assert_eq!(env.failure_reasons_once(1).await, ["unknown_order"]);
    env.wait_applied().await;
    let order_tx = env
        .db()
        .await
        .query_one(
            "SELECT transaction_id FROM payments WHERE out_trade_no = $1",
            &[&order],
        )
        .await
        .unwrap()
        .get(0);
    History {
        user_id,
        order,
        order_tx,
        wallet_order,
        unpaid,
        recharge,
    }
}

async fn run(env: &TestEnv, options: Options) -> AuditReport {
    let mut steps = 0;
    let report = audit::run(&env.settings(), &options, |_| steps += 1)
        .await
        .expect("the audit runs");
    assert!(steps >= 4, "progress is reported");
    report
}

/// A number the test reads from the live tables.
async fn number(
    env: &TestEnv,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    env.db().await.query_one(sql, params).await.unwrap().get(0)
}

/// The report holds a breach of `kind` about `key` that names event `seq`.
fn assert_breach(report: &AuditReport, kind: &str, key: &str, seq: i64) {
    assert!(!report.is_clean() && report.exit_code() == 1);
    assert!(
        report
            .breaches
            .iter()
            .any(|b| b.kind.as_str() == kind && b.key == key && b.seqs.contains(&seq)),
        "no {kind} breach of {key} at event {seq}:\n{}",
        report.to_text()
    );
}

/// Runs the real `wxledger audit` against this test's schema, stream and simulator.
async fn wxledger_audit(env: &TestEnv, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"))
        // The simulator's merchant: its keys are development ones.
        .arg("--dev")
        .arg("audit")
        .args(args)
        .env_remove("WXLEDGER_CONFIG")
        .env("WXLEDGER__DATABASE__URL", database_url())
        .env("WXLEDGER__DATABASE__SCHEMA", &env.schema)
        .env("WXLEDGER__NATS__URL", nats_url())
        .env("WXLEDGER__NATS__STREAM", &env.stream)
        .env("WXLEDGER__NATS__SUBJECT_PREFIX", &env.prefix)
        .env("WXLEDGER__PAY__API_BASE", &env.sim)
        .env("WXLEDGER__WECHAT__API_BASE", &env.sim)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the wxledger binary runs")
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The projection's tables, saved to put back after a plant.
const TABLES: [&str; 7] = [
    "users",
    "orders",
    "refunds",
    "payments",
    "ledger_entries",
    "balances",
    "failure_log",
];

async fn save(env: &TestEnv) -> Vec<Value> {
    let db = env.db().await;
    let mut saved = Vec::new();
    for table in TABLES {
        let rows: Value = db
            .query_one(
                &format!("SELECT coalesce(jsonb_agg(t), '[]') FROM {table} t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        saved.push(rows);
    }
    saved
}

async fn restore(env: &TestEnv, saved: &[Value]) {
    let mut db = env.db().await;
    let tx = db.transaction().await.unwrap();
    for (table, rows) in TABLES.iter().zip(saved) {
        tx.execute(&format!("DELETE FROM {table}"), &[])
            .await
            .unwrap();
        tx.execute(
            &format!(
                "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1)"
            ),
            &[rows],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_clean_history_audits_clean_with_each_days_money_to_the_fen() {
    let env = TestEnv::start().await;
    history(&env).await;
    let before = chrono::Utc::now()
        .with_timezone(&wxledger::tools::finance::bill::china())
        .date_naive();

    let report = run(
        &env,
        Options {
            verify_signatures: true,
            ..Options::default()
        },
    )
    .await;
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.exit_code(), 0);
    let head = env.last_seq().await;
    assert_eq!(
        (report.checkpoint, report.point, report.head),
        (head, head, head)
    );
    assert_eq!(report.rebuild.events, head);
    assert!(!report.rebuild.kept);
    let tables: Vec<(&str, u64, u64, u64)> = report
        .tables
        .iter()
        .map(|t| (t.table, t.live_rows, t.rebuilt_rows, t.differing))
        .collect();
    assert_eq!(tables.len(), 9, "every projection table is compared");
    for (table, live, rebuilt, differing) in tables {
        assert_eq!((live, differing), (rebuilt, 0), "{table}");
        assert!(live > 0, "{table} has rows");
    }
    // The money, to the fen: one day (or two, across midnight), and in total.
    let totals = report.totals();
    assert_eq!(
        (
            totals.paid,
            totals.refunded,
            totals.recharged,
            totals.wallet_spend,
            totals.suspense
        ),
        (1800, 300, 500, 200, 50),
        "{}",
        report.to_text()
    );
    let after = chrono::Utc::now()
        .with_timezone(&wxledger::tools::finance::bill::china())
        .date_naive();
    assert!(
        report.days.keys().all(|d| (before..=after).contains(d)),
        "{:?}",
        report.days
    );
    // Every event with evidence was verified again: notifies, and WeChat's refund answer.
    let with_evidence = env
        .event_types()
        .await
        .iter()
        .filter(|t| {
            ["payment.notified", "refund.accepted", "refund.notified"].contains(&t.as_str())
        })
        .count() as u64;
    let signatures = report.signatures.expect("asked for");
    assert_eq!((signatures.checked, signatures.failed), (with_evidence, 0));
    assert!(with_evidence >= 5);
    // The scratch schema is gone.
    let left = number(
        &env,
        "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
        &[&report.rebuild.schema],
    )
    .await;
    assert_eq!(left, 0);

    // The binary: exit 0, one JSON document, progress on stderr.
    let output = wxledger_audit(&env, &["--format", "json", "--verify-signatures"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let json = json_of(&output);
    assert_eq!(json["ok"], true);
    assert_eq!(json["totals"]["paid"], 1800);
    assert_eq!(json["totals"]["wallet_spend"], 200);
    assert_eq!(json["breaches"], json!([]));
    assert!(
        stderr.contains("events/s") && stderr.contains("ETA"),
        "{stderr}"
    );
    // And the human report.
    let output = wxledger_audit(&env, &[]).await;
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("result: clean"), "{text}");
    assert!(text.contains("18.00") && text.contains("total"), "{text}");
}

#[tokio::test]
async fn each_breach_planted_in_the_live_tables_is_found_with_its_event() {
    let env = TestEnv::start().await;
    let h = history(&env).await;
    let saved = save(&env).await;
    let db = env.db().await;
    let sale_group = format!("payment:{}", h.order_tx);
    let sale_seq = number(
        &env,
        "SELECT seq FROM payments WHERE out_trade_no = $1",
        &[&h.order],
    )
    .await;
    let wallet = format!("wallet:{}", h.user_id);

    // A posting group that does not sum to zero.
    db.execute(
        "UPDATE ledger_entries SET amount = amount + 1 WHERE group_id = $1 AND account = 'sales'",
        &[&sale_group],
    )
    .await
    .unwrap();
    assert_breach(
        &run(&env, Options::default()).await,
        "unbalanced_group",
        &sale_group,
        sale_seq,
    );
    restore(&env, &saved).await;

    // The wallet payment moved before the recharge that funds it: the wallet ends fine
    // but goes below zero at that earlier event.
    let recharge_seq = number(
        &env,
        "SELECT seq FROM payments WHERE out_trade_no = $1",
        &[&h.recharge],
    )
    .await;
    let earlier = recharge_seq - 1;
    db.execute(
        "UPDATE ledger_entries SET seq = $2 WHERE group_id = $1",
        &[&format!("wallet_pay:{}", h.wallet_order), &earlier],
    )
    .await
    .unwrap();
    let report = run(&env, Options::default()).await;
    assert_breach(&report, "negative_wallet", &wallet, earlier);
    // The binary says so too, and exits 1.
    let output = wxledger_audit(&env, &["--format", "json"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = json_of(&output);
    assert_eq!(json["ok"], false);
    assert!(json["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["kind"] == "negative_wallet"
            && b["key"] == wallet
            && b["seqs"] == json!([earlier])));
    restore(&env, &saved).await;

    // A credit no event backs: a sale booked at the user's registration.
    let forged = "payment:4200000000000000000000000999";
    db.execute(
        "INSERT INTO ledger_entries (seq, group_id, line, account, amount, kind, out_trade_no,
                                     transaction_id, occurred_at)
         VALUES (1, $1, 0, 'wechat_clearing', -100, 'sale', $2, '4200000000000000000000000999', now()),
                (1, $1, 1, 'sales', 100, 'sale', $2, '4200000000000000000000000999', now())",
        &[&forged, &h.order],
    )
    .await
    .unwrap();
    assert_breach(
        &run(&env, Options::default()).await,
        "untraced_credit",
        forged,
        1,
    );
    restore(&env, &saved).await;

    // An unpaid order set paid without any money.
    db.execute(
        "UPDATE orders SET state = 'paid', paid_with = 'wallet' WHERE out_trade_no = $1",
        &[&h.unpaid],
    )
    .await
    .unwrap();
    let unpaid_seq = number(
        &env,
        "SELECT last_seq FROM orders WHERE out_trade_no = $1",
        &[&h.unpaid],
    )
    .await;
    assert_breach(
        &run(&env, Options::default()).await,
        "illegal_order_state",
        &h.unpaid,
        unpaid_seq,
    );
    restore(&env, &saved).await;

    // A closed order with a sale booked.
    db.execute(
        "UPDATE orders SET state = 'closed', paid_with = NULL, refunded = 0, closed_at = now()
         WHERE out_trade_no = $1",
        &[&h.order],
    )
    .await
    .unwrap();
    assert_breach(
        &run(&env, Options::default()).await,
        "illegal_order_state",
        &h.order,
        sale_seq,
    );
    restore(&env, &saved).await;

    // A refund larger than what was paid (the orders table's own check would refuse it
    // there, so it is planted in the refunds table).
    let refund_seq = number(
        &env,
        "SELECT last_seq FROM refunds WHERE out_refund_no = 'rf-audit-1'",
        &[],
    )
    .await;
    db.execute(
        "UPDATE refunds SET amount = 2000 WHERE out_refund_no = 'rf-audit-1'",
        &[],
    )
    .await
    .unwrap();
    assert_breach(
        &run(&env, Options::default()).await,
        "refund_exceeds_paid",
        &h.order,
        refund_seq,
    );
    restore(&env, &saved).await;

    // WeChat's clearing balance tampered with.
    let clearing_seq = number(
        &env,
        "SELECT last_seq FROM balances WHERE account = 'wechat_clearing'",
        &[],
    )
    .await;
    db.execute(
        "UPDATE balances SET balance = balance + 100 WHERE account = 'wechat_clearing'",
        &[],
    )
    .await
    .unwrap();
    let report = run(&env, Options::default()).await;
    assert_breach(
        &report,
        "clearing_mismatch",
        "wechat_clearing",
        clearing_seq,
    );
    assert_breach(&report, "balance_mismatch", "wechat_clearing", clearing_seq);
    restore(&env, &saved).await;

    // A row changed where no invariant looks: only the comparison with the rebuild sees it.
    let user_seq = number(
        &env,
        "SELECT last_seq FROM users WHERE user_id::text = $1",
        &[&h.user_id],
    )
    .await;
    db.execute(
        "UPDATE users SET nickname = 'mallory' WHERE user_id::text = $1",
        &[&h.user_id],
    )
    .await
    .unwrap();
    let report = run(&env, Options::default()).await;
    assert_breach(&report, "diff", &format!("users {}", h.user_id), user_seq);
    assert_eq!(report.breaches.len(), 1, "{}", report.to_text());
    assert!(report.breaches[0].message.contains("mallory"));
    restore(&env, &saved).await;

    // Put back, the books audit clean again.
    let report = run(&env, Options::default()).await;
    assert!(report.is_clean(), "{}", report.to_text());
}

#[tokio::test]
async fn as_of_an_earlier_point_audits_the_books_as_they_stood() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-audit-asof").await;
    let recharge = env.paid_recharge(&token, 500).await;
    let order = env.paid_order(&token, 1800).await;
    env.wait_applied().await;
    let mark = env.last_seq().await;
    let (status, body) = env
        .refund(
            &order,
            json!({"amount": 300, "out_refund_no": "rf-audit-2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("rf-audit-2", "success").await;
    env.wait_refund_state(&order, "rf-audit-2", "succeeded")
        .await;
    env.wait_applied().await;
    let head = env.last_seq().await;
    assert!(head > mark);

    let report = run(
        &env,
        Options {
            as_of: Some(AsOf::Seq(mark)),
            keep: Some(format!("{}_kept", env.schema)),
            ..Options::default()
        },
    )
    .await;
    assert!(report.is_clean(), "{}", report.to_text());
    assert!(report.is_partial());
    assert_eq!((report.point, report.checkpoint), (mark, head));
    let compared: Vec<&str> = report.tables.iter().map(|t| t.table).collect();
    assert_eq!(
        compared,
        ["payments", "ledger_entries", "failure_log", "verdicts"]
    );
    // The money as it stood: nothing refunded yet.
    let totals = report.totals();
    assert_eq!(
        (totals.paid, totals.recharged, totals.refunded),
        (1800, 500, 0)
    );
    // The rebuild was kept, as asked, and holds the books as of the mark.
    assert!(report.rebuild.kept);
    let kept = &report.rebuild.schema;
    let refunded = number(&env, &format!("SELECT count(*) FROM {kept}.refunds"), &[]).await;
    assert_eq!(refunded, 0);
    // A kept schema is never overwritten: the audit refuses to start.
    let again = audit::run(
        &env.settings(),
        &Options {
            keep: Some(kept.clone()),
            ..Options::default()
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(again.code(), "keep_schema_unusable", "{again}");
    // Nor the live schema, nor a name that is not a plain identifier.
    for name in [env.schema.as_str(), "1bad"] {
        let err = audit::run(
            &env.settings(),
            &Options {
                keep: Some(name.to_owned()),
                ..Options::default()
            },
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "keep_schema_unusable", "{name}: {err}");
    }
    crate::common::drop_schema(&database_url(), kept).await;

    // As of a time: the last event accepted by then.
    let events = env.events().await;
    let at = events
        .iter()
        .find(|(s, _)| *s == mark)
        .map(|(_, e)| e["occurred_at"].as_str().unwrap().to_owned())
        .unwrap();
    let time = AsOf::parse(&at).unwrap();
    let AsOf::Time(t) = time else { unreachable!() };
    let expected = events
        .iter()
        .filter(|(_, e)| {
            chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap() <= t
        })
        .map(|(s, _)| *s)
        .max()
        .unwrap();
    let report = run(
        &env,
        Options {
            as_of: Some(time),
            ..Options::default()
        },
    )
    .await;
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.point, expected);

    // A posting up to the point, changed: the comparison of the append-only tables sees it.
    let group = number(
        &env,
        "SELECT seq FROM payments WHERE out_trade_no = $1",
        &[&recharge],
    )
    .await;
    env.db()
        .await
        .execute(
            "UPDATE ledger_entries SET occurred_at = occurred_at - interval '1 day' WHERE seq = $1",
            &[&group],
        )
        .await
        .unwrap();
    let report = run(
        &env,
        Options {
            as_of: Some(AsOf::Seq(mark)),
            ..Options::default()
        },
    )
    .await;
    assert!(
        report.breaches.iter().any(|b| b.kind.as_str() == "diff"
            && b.key.starts_with("ledger_entries payment:")
            && b.seqs == [group]),
        "{}",
        report.to_text()
    );
}

/// The first envelope of type `kind` on the stream.
async fn envelope(env: &TestEnv, kind: &str) -> Envelope {
    let (_, e) = env
        .events()
        .await
        .into_iter()
        .find(|(_, e)| e["type"] == kind)
        .unwrap_or_else(|| panic!("a {kind} on the stream"));
    serde_json::from_value(e).unwrap()
}

#[tokio::test]
async fn verify_signatures_passes_genuine_evidence_and_catches_forgeries() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-audit-sig").await;
    env.paid_order(&token, 1200).await;
    let target = env.order_with_prepay(&token, 900).await;
    let other = env.order_with_prepay(&token, 800).await;
    env.wait_applied().await;
    let genuine = envelope(&env, "payment.notified").await;
    let clean = run(
        &env,
        Options {
            verify_signatures: true,
            ..Options::default()
        },
    )
    .await;
    assert!(clean.is_clean(), "{}", clean.to_text());
    assert_eq!(
        clean.signatures.map(|s| (s.checked, s.failed)),
        Some((1, 0))
    );

    // Forged: a notify paying `target`, its evidence signed by someone else.
    let mut forged = genuine.clone();
    forged.id = uuid::Uuid::new_v4();
    let tx = &mut forged.data["transaction"];
    tx["out_trade_no"] = json!(target);
    tx["transaction_id"] = json!("4200000000000000000000000666");
    tx["amount"]["total"] = json!(900);
    tx["amount"]["payer_total"] = json!(900);
    forged.data["notify_id"] = json!("forged-notify-1");
    forged.data["evidence"]["signature"] = json!(B64.encode([7u8; 256]));
    let bad = env
        .log
        .append_envelope(&forged, "forged-1")
        .await
        .unwrap()
        .seq;
    // Genuine evidence, but the event says another order was paid than WeChat signed.
    let mut altered = genuine.clone();
    altered.id = uuid::Uuid::new_v4();
    let tx = &mut altered.data["transaction"];
    tx["out_trade_no"] = json!(other);
    tx["transaction_id"] = json!("4200000000000000000000000667");
    tx["amount"]["total"] = json!(800);
    tx["amount"]["payer_total"] = json!(800);
    let mismatched = env
        .log
        .append_envelope(&altered, "forged-2")
        .await
        .unwrap()
        .seq;
    env.wait_order_state(&token, &target, "paid").await;
    env.wait_order_state(&token, &other, "paid").await;
    env.wait_applied().await;

    // Without --verify-signatures the books are consistent: the fold believed the events.
    let report = run(&env, Options::default()).await;
    assert!(report.is_clean(), "{}", report.to_text());
    let report = run(
        &env,
        Options {
            verify_signatures: true,
            ..Options::default()
        },
    )
    .await;
    assert_breach(
        &report,
        "bad_signature",
        "4200000000000000000000000666",
        bad as i64,
    );
    assert_breach(
        &report,
        "evidence_mismatch",
        "4200000000000000000000000667",
        mismatched as i64,
    );
    assert_eq!(
        report.signatures.map(|s| (s.checked, s.failed)),
        Some((3, 2))
    );
    assert_eq!(report.breaches.len(), 2, "{}", report.to_text());

    let output = wxledger_audit(&env, &["--verify-signatures"]).await;
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("bad_signature") && text.contains("result: 2 breaches"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_signatures_checks_api_v2_signs_and_encrypted_refund_notifies() {
    let env = TestEnv::start_with(|s| {
        s.pay.api = wxledger::settings::PayApi::V2;
        s.pay.v2.sign_type = wxledger::settings::V2SignType::Md5;
    })
    .await;
    let (token, _) = env.login("o-audit-v2").await;
    let no = env.order_with_prepay(&token, 1000).await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    env.wait_order_state(&token, &no, "paid").await;
    // WeChat's signed answer to an order query, recorded though nothing changes.
    let (status, body) = env
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/orders/{no}/sync"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = env
        .refund(&no, json!({"amount": 400, "out_refund_no": "rf-audit-v2"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.sim_post(
        "/sim/pay/v2/refund-notify",
        json!({"out_refund_no": "rf-audit-v2", "status": "SUCCESS"}),
    )
    .await;
    env.wait_order_state(&token, &no, "partially_refunded")
        .await;
    env.wait_applied().await;
    let types = env.event_types().await;
    for kind in [
        "payment.legacy_notified",
        "payment.legacy_queried",
        "refund.accepted",
        "refund.queried",
    ] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    let verify = Options {
        verify_signatures: true,
        ..Options::default()
    };
    let report = run(&env, verify.clone()).await;
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(
        report.signatures.map(|s| (s.checked, s.failed)),
        Some((4, 0))
    );

    // The notify again, said to be signed with HMAC-SHA256: its MD5 sign does not verify
    // that way (the fold books nothing new: the transaction is booked).
    let mut forged = envelope(&env, "payment.legacy_notified").await;
    forged.id = uuid::Uuid::new_v4();
    forged.data["evidence"]["sign_type"] = json!("HMAC-SHA256");
    let bad = env
        .log
        .append_envelope(&forged, "forged-v2")
        .await
        .unwrap()
        .seq;
    // The refund notify (the claim a refundquery answer confirmed) with a plaintext that
    // its req_info does not decrypt to.
    let mut refund = envelope(&env, "refund.queried").await;
    refund.id = uuid::Uuid::new_v4();
    let plain = refund.data["notify"]["evidence"]["decrypted"]
        .as_str()
        .unwrap()
        .to_owned();
    refund.data["notify"]["evidence"]["decrypted"] = json!(plain.replace("400", "900"));
    let altered = env
        .log
        .append_envelope(&refund, "forged-v2-refund")
        .await
        .unwrap()
        .seq;
    env.wait_applied().await;
    let report = run(&env, verify).await;
    let tx = forged.data["transaction"]["transaction_id"]
        .as_str()
        .unwrap();
    assert_breach(&report, "bad_signature", tx, bad as i64);
    assert_breach(&report, "evidence_mismatch", "rf-audit-v2", altered as i64);
    assert_eq!(report.breaches.len(), 2, "{}", report.to_text());
}

/// A payment after the order closed, in a later batch than the close: the failure's
/// detail names the close time, which must read the same whether the fold took the
/// order from the table (microseconds) or from the event (as written).
#[tokio::test]
async fn a_late_payment_after_a_close_audits_clean() {
    let env = TestEnv::start_with(|s| s.pay.order_ttl = std::time::Duration::from_secs(60)).await;
    let (token, _) = env.login("o-audit-late").await;
    let no = env.recharge(&token, 400).await;
    env.clock_offset
        .store(120, std::sync::atomic::Ordering::Relaxed);
    env.wait_order_state(&token, &no, "closed").await;
    env.wait_applied().await;
    env.sim_pay(&no, json!({})).await;
    env.wait_delivered(&no, 204).await;
    assert_eq!(env.failure_reasons_once(1).await, ["paid_after_close"]);
    let report = run(&env, Options::default()).await;
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.totals().suspense, 400);
}

/// Platform certificates only, rotated between two payments: the verifier downloads the
/// certificates for the serials it does not know, as the webhook does.
#[tokio::test]
async fn verify_signatures_in_certificate_mode_follows_a_rotation() {
    let env = TestEnv::start_full(
        |sim| sim.pay_signing = wxledger::settings::SimSigning::Certificate,
        |s| s.pay.public_key_id = None,
    )
    .await;
    let (token, _) = env.login("o-audit-cert").await;
    env.paid_recharge(&token, 100).await;
    env.sim_post("/sim/pay/rotate-certificate", json!({})).await;
    // The daemon's key store downloads at most once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    env.paid_recharge(&token, 100).await;
    env.wait_applied().await;
    let serials: std::collections::BTreeSet<String> = env
        .events()
        .await
        .iter()
        .filter(|(_, e)| e["type"] == "payment.notified")
        .map(|(_, e)| e["data"]["evidence"]["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(serials.len(), 2, "signed before and after the rotation");
    let mut settings = env.settings();
    settings.pay.public_key_id = None;
    let report = audit::run(
        &settings,
        &Options {
            verify_signatures: true,
            ..Options::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(
        report.signatures.map(|s| (s.checked, s.failed)),
        Some((2, 0))
    );
}
