//! The outcome stream: each decision the projector commits (order paid, recharge
//! credited, refund succeeded, failure recorded) is published once, after the commit,
//! in source order, with an id derived from its source; it waits out a NATS outage in the
//! outbox, and a repeat is not stored twice.

use std::{path::Path, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wxledger::{
    core::events::Envelope,
    daemon::metrics::Metrics,
    store::{
        outcomes::{OutcomeStream, Publisher},
        replay::{replay, AsOf},
    },
};

use crate::{
    common::{database_url, drop_schema, eventually, OutcomeMsg, SchemaSet, TestEnv},
    proxy::Proxy,
};

/// A notify for an order nobody placed: money to suspense and `unknown_order`.
fn stranger(transaction_id: &str) -> Value {
    json!({"transaction": {
        "appid": wxledger::settings::SIM_APPID, "mchid": wxledger::sim::devkeys::MCHID,
        "out_trade_no": "nobodysorder77", "transaction_id": transaction_id,
        "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "amount": {"total": 77, "currency": "CNY"}}})
}

fn ids(outcomes: &[OutcomeMsg]) -> Vec<String> {
    outcomes
        .iter()
        .map(|m| m.outcome["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every outcome well-formed: its subject, message id, schema, and a source event on the
/// event stream with that sequence, id and type; sources in order.
async fn check_outcomes(env: &TestEnv, outcomes: &[OutcomeMsg]) {
    let schemas = SchemaSet::load();
    let events = env.events().await;
    for (i, m) in outcomes.iter().enumerate() {
        let o = &m.outcome;
        schemas.check_outcome(o);
        assert_eq!(
            m.seq,
            i as u64 + 1,
            "one message per outcome: {:?}",
            ids(outcomes)
        );
        assert_eq!(
            m.subject,
            format!("{}_outcome.{}", env.prefix, o["type"].as_str().unwrap())
        );
        assert_eq!(
            m.msg_id.as_deref(),
            o["id"].as_str(),
            "Nats-Msg-Id is the id"
        );
        let seq = o["source"]["seq"].as_u64().unwrap();
        let (_, event) = events
            .iter()
            .find(|(s, _)| *s == seq)
            .unwrap_or_else(|| panic!("no event {seq} for {o}"));
        assert_eq!(o["source"]["event_id"], event["id"], "{o}");
        assert_eq!(o["source"]["type"], event["type"], "{o}");
        assert_eq!(o["occurred_at"], event["occurred_at"], "{o}");
    }
    assert!(
        outcomes
            .windows(2)
            .all(|w| w[0].outcome["source"]["seq"].as_u64()
                <= w[1].outcome["source"]["seq"].as_u64()),
        "in source order: {:?}",
        ids(outcomes)
    );
}

/// Waits until the publisher has sent everything committed.
async fn wait_outbox_empty(env: &TestEnv) {
    assert!(
        eventually(Duration::from_secs(20), || async {
            env.outbox_len().await == 0
        })
        .await,
        "the outbox drains"
    );
}

#[tokio::test]
async fn each_decision_is_one_outcome_with_its_derived_id_in_source_order() {
    let env = TestEnv::start().await;
    let (token, user_id) = env.login("o-outcomes-1").await;
    let paid = env.paid_order(&token, 300).await;
    let recharge = env.paid_recharge(&token, 500).await;
    let (_, placed) = env.place_order(&token, json!(200)).await;
    let from_wallet = placed["out_trade_no"].as_str().unwrap().to_owned();
    let (status, body) = env.balance_pay(&token, &from_wallet).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = env
        .refund(&paid, json!({"amount": 100, "out_refund_no": "R-out-1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("R-out-1", "success").await;
    env.wait_refund_state(&paid, "R-out-1", "succeeded").await;
    env.sim_post("/sim/pay/notify", stranger("4200000000000000000000000777"))
        .await;
    assert_eq!(env.failure_reasons_once(1).await, ["unknown_order"]);
    wait_outbox_empty(&env).await;

    let outcomes = env.wait_outcomes(5).await;
    let stranger_event = env
        .events()
        .await
        .into_iter()
        .find(|(_, e)| e["data"]["transaction"]["out_trade_no"] == "nobodysorder77")
        .unwrap()
        .1;
    assert_eq!(
        ids(&outcomes),
        [
            format!("order.paid:{paid}"),
            format!("recharge.credited:{recharge}"),
            format!("order.paid:{from_wallet}"),
            "refund.succeeded:R-out-1".to_owned(),
            format!(
                "failure.recorded:{}:unknown_order",
                stranger_event["id"].as_str().unwrap()
            ),
        ]
    );
    check_outcomes(&env, &outcomes).await;

    let data: Vec<&Value> = outcomes.iter().map(|m| &m.outcome["data"]).collect();
    assert_eq!(outcomes[0].outcome["source"]["type"], "payment.notified");
    assert_eq!(
        *data[0],
        json!({"out_trade_no": paid, "user_id": user_id, "amount": 300, "paid_with": "wechat",
               "transaction_id": order_of(&env, &token, &paid).await["transaction_id"]})
    );
    assert_eq!(
        *data[1],
        json!({"out_trade_no": recharge, "user_id": user_id, "amount": 500,
               "transaction_id": order_of(&env, &token, &recharge).await["transaction_id"],
               "wallet_balance": 500})
    );
    assert_eq!(
        outcomes[2].outcome["source"]["type"],
        "order.balance_pay_requested"
    );
    assert_eq!(
        *data[2],
        json!({"out_trade_no": from_wallet, "user_id": user_id, "amount": 200,
               "paid_with": "wallet", "wallet_balance": 300})
    );
    assert_eq!(data[3]["out_refund_no"], "R-out-1");
    assert_eq!(data[3]["out_trade_no"], json!(paid));
    assert_eq!(data[3]["amount"], 100);
    assert_eq!(data[3]["refunded_to"], "wechat");
    assert_eq!(data[3]["requested"], true);
    assert_eq!(data[3]["user_id"], json!(user_id));
    assert!(data[3]["refund_id"].is_string(), "{}", data[3]);
    assert_eq!(data[4]["reason"], "unknown_order");
    assert_eq!(data[4]["out_trade_no"], "nobodysorder77");
    assert_eq!(data[4]["amount"], 77);
    assert_eq!(data[4]["transaction_id"], "4200000000000000000000000777");
    // Decisions, not inputs: nothing of the payer's identity or WeChat's evidence.
    for m in &outcomes {
        let text = m.outcome.to_string();
        for secret in [
            "o-outcomes-1",
            "openid",
            "evidence",
            "signature",
            "ciphertext",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn a_redelivered_notify_or_a_query_of_a_booked_payment_adds_no_outcome() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-outcomes-2").await;
    let no = env.recharge(&token, 300).await;
    env.sim_faults(json!({"duplicates": 3, "concurrent": true}))
        .await;
    env.sim_pay(&no, json!({})).await;
    env.wait_order_state(&token, &no, "paid").await;
    env.wait_delivered(&no, 204).await;
    // WeChat's word again: a query, and the same notify appended once more as if it came
    // back after the duplicate window (a new envelope id, the same transaction).
    let (status, sync) = env
        .admin(Method::POST, &format!("/v1/admin/orders/{no}/sync"))
        .await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let (_, notified) = env
        .events()
        .await
        .into_iter()
        .find(|(_, e)| e["type"] == "payment.notified")
        .unwrap();
    let mut again: Envelope = serde_json::from_value(notified).unwrap();
    again.id = uuid::Uuid::new_v4();
    env.log
        .append_envelope(&again, "redelivered")
        .await
        .unwrap();
    assert_eq!(env.count_events("payment.notified").await, 2);
    assert_eq!(env.count_events("payment.queried").await, 1);
    env.wait_applied().await;
    wait_outbox_empty(&env).await;

    let outcomes = env.outcomes().await;
    assert_eq!(ids(&outcomes), [format!("recharge.credited:{no}")]);
    check_outcomes(&env, &outcomes).await;
    assert_eq!(env.balance(&token).await, 300);
}

/// Holds the projector's checkpoint write on a connection of its own (closing it lets
/// go): a batch then waits, uncommitted, just before its commit, with its rows and outbox
/// rows written. Reads go on.
pub(crate) async fn hold_checkpoint(env: &TestEnv) -> tokio_postgres::Client {
    let client = connect(&env.schema).await;
    client
        .batch_execute("BEGIN; LOCK TABLE projector_checkpoints IN EXCLUSIVE MODE")
        .await
        .unwrap();
    client
}

async fn connect(schema: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = database_url().parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn order_of(env: &TestEnv, token: &str, no: &str) -> Value {
    env.call(Method::GET, &format!("/v1/orders/{no}"), Some(token), None)
        .await
        .1
}

/// Waits until the projector is blocked on the held checkpoint.
pub(crate) async fn wait_projector_blocked(env: &TestEnv) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            let waiting: i64 = env
                .db()
                .await
                .query_one(
                    "SELECT count(*) FROM pg_locks \
                     WHERE relation = 'projector_checkpoints'::regclass AND NOT granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            waiting > 0
        })
        .await,
        "the projector reaches the held checkpoint"
    );
}

#[tokio::test]
async fn an_outcome_is_published_only_once_its_batch_committed() {
    let env = TestEnv::start_with(|s| s.outcomes.poll = Duration::from_millis(20)).await;
    let (token, _) = env.login("o-outcomes-3").await;
    let no = env.order_with_prepay(&token, 400).await;
    env.wait_applied().await;
    let hold = hold_checkpoint(&env).await;
    env.sim_pay(&no, json!({})).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count_events("payment.notified").await == 1
        })
        .await
    );
    wait_projector_blocked(&env).await;
    // The batch has decided and written its outbox row, uncommitted: nothing goes out,
    // however often the publisher looks.
    for _ in 0..10 {
        assert_eq!(
            env.outbox_len().await,
            0,
            "uncommitted rows are not visible"
        );
        assert!(env.outcomes().await.is_empty(), "published before commit");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    hold.batch_execute("COMMIT").await.unwrap();
    let outcomes = env.wait_outcomes(1).await;
    assert_eq!(ids(&outcomes), [format!("order.paid:{no}")]);
    assert_eq!(
        order_of(&env, &token, &no).await["state"],
        "paid",
        "an outcome read is in the projection"
    );
    check_outcomes(&env, &outcomes).await;
}

#[tokio::test]
async fn outcomes_wait_in_the_outbox_while_nats_is_away_and_go_out_once_it_is_back() {
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let env = TestEnv::start_with(|s| {
        s.nats.url = format!("nats://127.0.0.1:{}", proxy.port);
        s.outcomes.poll = Duration::from_millis(20);
    })
    .await;
    let (token, _) = env.login("o-outcomes-4").await;
    let no = env.order_with_prepay(&token, 500).await;
    env.wait_applied().await;
    let hold = hold_checkpoint(&env).await;
    env.sim_pay(&no, json!({})).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count_events("payment.notified").await == 1
        })
        .await
    );
    wait_projector_blocked(&env).await;
    proxy.cut();
    hold.batch_execute("COMMIT").await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.outbox_len().await == 1
        })
        .await,
        "the batch commits without NATS, its outcome in the outbox"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.outbox_len().await, 1, "kept while NATS is away");
    assert!(env.outcomes().await.is_empty());

    proxy.restore();
    wait_outbox_empty(&env).await;
    let outcomes = env.wait_outcomes(1).await;
    assert_eq!(ids(&outcomes), [format!("order.paid:{no}")]);
    check_outcomes(&env, &outcomes).await;
}

#[tokio::test]
async fn a_restarted_publisher_sends_what_is_left_and_a_repeat_is_stored_once() {
    let env = TestEnv::start_with(|s| s.outcomes.publish = false).await;
    let (token, _) = env.login("o-outcomes-5").await;
    let first = env.paid_order(&token, 100).await;
    let second = env.paid_recharge(&token, 200).await;
    env.sim_post("/sim/pay/notify", stranger("4200000000000000000000000555"))
        .await;
    assert_eq!(env.failure_reasons_once(1).await, ["unknown_order"]);
    assert_eq!(env.outbox_len().await, 3, "decided and kept");
    assert!(env.outcomes().await.is_empty(), "nobody publishes");

    let settings = env.settings();
    let stream = OutcomeStream::ensure(&env.log, &settings.nats)
        .await
        .unwrap();
    let start = |metrics: Metrics| {
        // No local projector: the publisher polls.
        let (_, applied) = tokio::sync::watch::channel(0);
        let publisher = Publisher::new(
            wxledger::store::db::pg_config(&settings.database).unwrap(),
            &settings.database.schema,
            stream.clone(),
            applied,
            Duration::from_millis(20),
            2,
            metrics,
        );
        let stop = CancellationToken::new();
        tokio::spawn(publisher.run(stop.clone()));
        stop
    };
    let metrics = Metrics::default();
    let stop = start(metrics.clone());
    wait_outbox_empty(&env).await;
    stop.cancel();
    let outcomes = env.wait_outcomes(3).await;
    assert_eq!(
        ids(&outcomes)[..2],
        [
            format!("order.paid:{first}"),
            format!("recharge.credited:{second}")
        ]
    );
    assert_eq!(outcomes.len(), 3);
    check_outcomes(&env, &outcomes).await;

    // A crash after publishing and before forgetting: the row is back in the outbox. It
    // goes out again under the same id, and the stream stores it once.
    let row = &outcomes[0].outcome;
    env.db()
        .await
        .execute(
            "INSERT INTO outbox (id, seq, kind, payload, occurred_at) \
             VALUES ($1, $2, $3, $4, now())",
            &[
                &row["id"].as_str().unwrap(),
                &row["source"]["seq"].as_i64().unwrap(),
                &row["type"].as_str().unwrap(),
                row,
            ],
        )
        .await
        .unwrap();
    let metrics = Metrics::default();
    let stop = start(metrics.clone());
    wait_outbox_empty(&env).await;
    stop.cancel();
    assert_eq!(
        metrics.outcomes_published("order.paid"),
        1,
        "the repeat was sent"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ids(&env.outcomes().await),
        ids(&outcomes),
        "and stored once"
    );
}

#[tokio::test]
async fn a_replay_into_another_schema_writes_no_outcomes() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-outcomes-6").await;
    env.paid_order(&token, 100).await;
    env.wait_applied().await;
    wait_outbox_empty(&env).await;
    let published = env.wait_outcomes(1).await.len();

    let into = format!("{}_asof", env.schema);
    replay(
        &env.settings(),
        AsOf::Seq(env.last_seq().await),
        &into,
        true,
        |_| {},
    )
    .await
    .unwrap();
    let client = connect(&into).await;
    let (orders, outbox): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM outbox)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    drop_schema(&database_url(), &into).await;
    assert_eq!(orders, 1, "the replay folded the order");
    assert_eq!(outbox, 0, "and wrote no outcome");
    assert_eq!(env.outcomes().await.len(), published);
}

#[test]
fn every_schema_file_is_in_the_consumer_guide() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let guide = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let mut outcome_types = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(guide.contains(&format!("({name})")), "{name} is not linked");
            outcome_types +=
                usize::from(name.starts_with("outcome.") && name != "outcome.envelope.v1.json");
        }
    }
    assert_eq!(
        outcome_types,
        wxledger::store::outcomes::OutcomeKind::ALL.len()
    );
}
