//! `wxledger replay --as-of`: folding the stream up to a sequence or a time into a schema
//! of its own gives exactly the tables the live projector had at that point.

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::json;
use wxledger::store::replay::{build_schema, replay, replay_lock, replay_with, AsOf, Sink};

use crate::common::{database_url, drop_schema, dump_table, TestEnv};

/// The projection's tables (without the checkpoint row's wall-clock time), as text.
pub(crate) async fn snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("users", "user_id"),
        ("orders", "out_trade_no"),
        ("refunds", "out_refund_no"),
        ("payments", "transaction_id"),
        ("ledger_entries", "group_id, line"),
        ("balances", "account"),
        ("failure_log", "seq, reason"),
        ("verdicts", "seq"),
    ] {
        out.push(format!(
            "{table}:\n{}",
            dump_table(client, table, key).await
        ));
    }
    let checkpoint: i64 = client
        .query_one("SELECT last_seq FROM projector_checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    out.push(format!("checkpoint {checkpoint}"));
    out
}

pub(crate) async fn connect(schema: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = database_url().parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn replay_as_of_a_sequence_or_a_time_equals_the_live_tables_then() {
    let env = TestEnv::start().await;
    let live = connect(&env.schema).await;
    let mut points = Vec::new();
    let mut mark = |seq: u64, tables: Vec<String>| points.push((seq, tables));

    // A: a recharge and an order paid.
    let (token, _) = env.login("o-replay").await;
    let recharge = env.recharge(&token, 500).await;
    env.sim_pay(&recharge, json!({})).await;
    env.wait_order_state(&token, &recharge, "paid").await;
    let order = env.order_with_prepay(&token, 300).await;
    env.sim_pay(&order, json!({})).await;
    env.wait_order_state(&token, &order, "paid").await;
    env.wait_applied().await;
    mark(env.last_seq().await, snapshot(&live).await);

    // B: a partial refund settled, and a wallet payment.
    let (status, body) = env
        .refund(
            &order,
            json!({"amount": 100, "out_refund_no": "R-replay-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("R-replay-1", "success").await;
    env.wait_order_state(&token, &order, "partially_refunded")
        .await;
    let (_, placed) = env.place_order(&token, json!(200)).await;
    let no = placed["out_trade_no"].as_str().unwrap();
    let (status, _) = env.balance_pay(&token, no).await;
    assert_eq!(status, StatusCode::OK);
    env.wait_applied().await;
    mark(env.last_seq().await, snapshot(&live).await);

    // C: a payment for an unknown order, in the failure log.
    env.sim_post(
        "/sim/pay/notify",
        json!({"transaction": {
            "appid": wxledger::settings::SIM_APPID, "mchid": wxledger::sim::devkeys::MCHID,
            "out_trade_no": "nobodysorder01", "transaction_id": "4200000000000000000000000888",
            "trade_type": "JSAPI", "trade_state": "SUCCESS",
            "amount": {"total": 50, "currency": "CNY"}}}),
    )
    .await;
    assert_eq!(env.failure_reasons_once(1).await, ["unknown_order"]);
    mark(env.last_seq().await, snapshot(&live).await);

    // D: a refund WeChat refuses and one it closes: both amounts go back.
    env.sim_post(
        "/sim/pay/refund-reject",
        json!({"code": "NOT_ENOUGH", "message": "基本账户余额不足"}),
    )
    .await;
    let (status, body) = env
        .refund(&order, json!({"amount": 50, "out_refund_no": "R-replay-2"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = env
        .refund(&order, json!({"amount": 70, "out_refund_no": "R-replay-3"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("R-replay-3", "closed").await;
    env.wait_refund_state(&order, "R-replay-3", "closed").await;
    env.wait_applied().await;
    mark(env.last_seq().await, snapshot(&live).await);
    assert!(points
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 != w[1].1));

    let settings = env.settings();
    let into = format!("{}_asof", env.schema);
    // Both sinks: the full rebuild (fold in memory, COPY) and the live projector's
    // batches give the tables the live projector had.
    for (seq, tables) in &points {
        for sink in [Sink::Copy, Sink::Batches] {
            let mut reports = 0;
            let (done, loaded) = replay_with(&settings, AsOf::Seq(*seq), &into, true, sink, |_| {
                reports += 1
            })
            .await
            .unwrap();
            assert_eq!((done.seq, done.applied), (*seq, *seq));
            assert_eq!(
                done.checkpoint, *seq,
                "{sink:?}: stopped at the point asked"
            );
            assert!(reports >= 1, "progress reported at the end at least");
            assert_eq!(loaded.is_some(), sink == Sink::Copy);
            let replayed = snapshot(&connect(&into).await).await;
            assert_eq!(&replayed, tables, "{sink:?} as of sequence {seq}");
            // The indexes and constraints the full rebuild drops while loading are back.
            assert_eq!(
                indexes_and_keys(&into).await,
                indexes_and_keys(&env.schema).await,
                "{sink:?}: the live schema's indexes and constraints"
            );
        }
    }
    // As of a time: the moment event B was accepted.
    let (_, at_b) = env
        .events()
        .await
        .into_iter()
        .find(|(s, _)| *s == points[1].0)
        .unwrap();
    let time = at_b["occurred_at"].as_str().unwrap();
    for sink in [Sink::Copy, Sink::Batches] {
        let (done, _) = replay_with(
            &settings,
            AsOf::parse(time).unwrap(),
            &into,
            true,
            sink,
            |_| {},
        )
        .await
        .unwrap();
        // Every event is read (a later one could be older), but the books stop at B.
        assert_eq!(done.seq, points[3].0, "{sink:?}: read to the head");
        assert_eq!(
            done.checkpoint, points[1].0,
            "{sink:?}: reports the sequence it stopped at, not the last one read"
        );
    }
    assert_eq!(
        snapshot(&connect(&into).await).await,
        points[1].1,
        "as of {time}"
    );
    // An existing schema is not overwritten without --replace; the live one never.
    assert!(replay(&settings, AsOf::Seq(1), &into, false, |_| {})
        .await
        .is_err());
    assert!(replay(&settings, AsOf::Seq(1), &env.schema, true, |_| {})
        .await
        .is_err());
    // Nor the live one spelled in capitals, which Postgres would fold to the live name.
    let folded = env.schema.to_uppercase();
    let err = replay(&settings, AsOf::Seq(1), &folded, true, |_| {})
        .await
        .expect_err("a name Postgres folds to the live schema is refused")
        .to_string();
    assert!(
        err.contains(&folded) && err.contains("lower-case"),
        "a clear message: {err}"
    );
    assert_eq!(
        snapshot(&live).await,
        points[3].1,
        "the live tables are untouched"
    );
    drop_schema(&database_url(), &into).await;
}

/// Every index and constraint definition of `schema`, with its name taken out.
async fn indexes_and_keys(schema: &str) -> Vec<String> {
    let client = connect("public").await;
    let rows = client
        .query(
            "SELECT replace(indexdef, $1 || '.', '') FROM pg_indexes WHERE schemaname = $1
             UNION ALL
             SELECT c.conrelid::regclass::text || ' ' || c.conname || ' '
                    || pg_get_constraintdef(c.oid)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname = $1
             ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0).replace(&format!("{schema}."), ""))
        .collect()
}

async fn schema_exists(client: &tokio_postgres::Client, schema: &str) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0)
}

/// The tables are built in a schema of their own that takes the target's name only in
/// the last transaction: a replay that fails midway leaves no target (or the replaced
/// one untouched), never a schema a projector could go on from.
#[tokio::test]
async fn a_replay_that_fails_midway_leaves_no_target_and_the_replaced_one_untouched() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-replay-fails").await;
    let recharge = env.recharge(&token, 500).await;
    env.sim_pay(&recharge, json!({})).await;
    env.wait_order_state(&token, &recharge, "paid").await;
    env.wait_applied().await;
    let settings = env.settings();
    let into = format!("{}_fails", env.schema);
    let build = build_schema(&into);
    let admin = connect("public").await;
    // A build an earlier replay left behind is dropped, not reused.
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {build}; CREATE TABLE {build}.leftover (x int)"
        ))
        .await
        .unwrap();
    // While another replay into it runs (its lock held), a replay is refused and leaves
    // that one's build alone.
    let other = connect("public").await;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&replay_lock(&into)])
        .await
        .unwrap();
    let refused = replay(&settings, AsOf::Seq(u64::MAX), &into, false, |_| {})
        .await
        .expect_err("a second replay into one schema is refused");
    assert!(refused.to_string().contains("another replay"), "{refused}");
    assert!(
        schema_exists(&admin, &build).await,
        "the running one's build kept"
    );
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&replay_lock(&into)])
        .await
        .unwrap();
    replay(&settings, AsOf::Seq(u64::MAX), &into, false, |_| {})
        .await
        .unwrap();
    assert!(
        !schema_exists(&admin, &build).await,
        "the build was renamed"
    );
    let good = snapshot(&connect(&into).await).await;
    let leftover: Option<String> = admin
        .query_one(&format!("SELECT to_regclass('{into}.leftover')::text"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftover, None, "the leftover build was dropped, not reused");

    // An event no build can read stops every replay after its tables were migrated
    // and part of the stream folded.
    env.log
        .publish(
            env.log.subject("order.placed"),
            "replay-garbage",
            None,
            Bytes::from_static(b"\xff not an envelope"),
        )
        .await
        .unwrap();
    for sink in [Sink::Copy, Sink::Batches] {
        let failed = replay_with(&settings, AsOf::Seq(u64::MAX), &into, true, sink, |_| {}).await;
        assert!(failed.is_err(), "{sink:?}: the garbage stops it");
        assert_eq!(
            snapshot(&connect(&into).await).await,
            good,
            "{sink:?}: the replaced schema is untouched"
        );
    }
    drop_schema(&database_url(), &into).await;
    for sink in [Sink::Copy, Sink::Batches] {
        let failed = replay_with(&settings, AsOf::Seq(u64::MAX), &into, false, sink, |_| {}).await;
        assert!(failed.is_err(), "{sink:?}: the garbage stops it");
        assert!(
            !schema_exists(&admin, &into).await,
            "{sink:?}: no target schema after a failed replay"
        );
    }
    drop_schema(&database_url(), &build).await;
}
