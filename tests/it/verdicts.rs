//! The fold's verdict on an event reaches whoever waits on it: from the `verdicts` row the
//! applying batch stored, also when the projector runs in another process (here: the
//! daemon's own projector is off, and a projector of the test's applies).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wxledger::{
    core::{
        events::{BalancePayRequested, Event},
        fold::{Decision, Refusal, Verdict},
    },
    settings::DatabaseSettings,
    store::{
        db,
        projector::{ProjectionWatch, Projector, VerdictError},
        stream::log::Draft,
    },
};

use crate::common::{database_url, TestEnv};

/// A projector on the env's schema, as another process would run it: its progress reaches
/// no watch of the daemon's or the test's.
fn other_process(env: &TestEnv) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let settings = DatabaseSettings {
        url: database_url(),
        schema: env.schema.clone(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let (applied, _) = watch::channel(0);
    let projector = Projector::new(
        db::pg_config(&settings).unwrap(),
        &env.schema,
        env.log.clone(),
        50,
        Duration::from_millis(1),
        applied,
    );
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(projector.run(stop)))
}

/// A watch with no local projector: only the stored checkpoint and verdicts can tell.
fn remote_watch(env: &TestEnv) -> ProjectionWatch {
    let (_, applied) = watch::channel(0);
    ProjectionWatch::new(applied, env.pool.clone())
}

async fn append(env: &TestEnv, event: &Event, msg_id: &str) -> u64 {
    env.log
        .append(Draft {
            event,
            correlation_id: "verdicts-test",
            msg_id,
            occurred_at: chrono::Utc::now(),
        })
        .await
        .unwrap()
        .seq
}

fn pay(no: &str, user_id: Uuid, amount: i64) -> Event {
    Event::BalancePayRequested(BalancePayRequested {
        out_trade_no: no.to_owned(),
        user_id,
        amount,
    })
}

async fn placed(env: &TestEnv, token: &str, amount: i64) -> String {
    let (status, order) = env.place_order(token, json!(amount)).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order["out_trade_no"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_waiter_in_another_process_reads_the_verdict_the_projector_stored() {
    let env = TestEnv::start_with(|s| s.projector.enabled = false).await;
    let (stop, task) = other_process(&env);
    let (token, user_id) = env.login("o-verdict-1").await;
    let user_id: Uuid = user_id.parse().unwrap();
    env.paid_recharge(&token, 500).await;
    let first = placed(&env, &token, 300).await;
    let second = placed(&env, &token, 300).await;
    stop.cancel();
    task.await.unwrap();

    // Two payments for one balance of 500, appended as the handler does: the fold decides.
    let a = append(&env, &pay(&first, user_id, 300), "verdict-pay-1").await;
    let b = append(&env, &pay(&second, user_id, 300), "verdict-pay-2").await;
    let watch = remote_watch(&env);
    match watch.wait_for_verdict(b, Duration::from_millis(300)).await {
        Err(VerdictError::NotYetApplied(_)) => {}
        other => panic!("no projector ran, yet {other:?}"),
    }

    let (stop, task) = other_process(&env);
    let verdict = watch
        .wait_for_verdict(a, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Applied(vec![Decision::PaidFromWallet {
            out_trade_no: first.clone(),
            amount: 300,
            balance: 200,
        }])
    );
    let verdict = watch
        .wait_for_verdict(b, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Refused(Refusal::InsufficientBalance {
            balance: 200,
            needed: 300
        })
    );
    // The same payment asked again: the fold refuses it, saying how it was paid.
    let again = append(&env, &pay(&first, user_id, 300), "verdict-pay-3").await;
    assert_eq!(
        watch
            .wait_for_verdict(again, Duration::from_secs(10))
            .await
            .unwrap(),
        Verdict::Refused(Refusal::AlreadyPaid {
            paid_with: Some(wxledger::core::fold::PaidWith::Wallet)
        })
    );
    // An event that keeps no verdict is told apart from one not applied yet.
    let events = env.events().await;
    let (order_placed, _) = events
        .iter()
        .find(|(_, e)| e["type"] == "order.placed")
        .unwrap();
    match watch
        .wait_for_verdict(*order_placed, Duration::from_secs(10))
        .await
    {
        Err(VerdictError::NotKept(seq)) => assert_eq!(seq, *order_placed),
        other => panic!("order.placed keeps no verdict, yet {other:?}"),
    }
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn wallet_pay_answers_from_the_verdict_while_another_process_projects() {
    let env = TestEnv::start_with(|s| s.projector.enabled = false).await;
    let (stop, task) = other_process(&env);
    let (token, _) = env.login("o-verdict-2").await;
    env.paid_recharge(&token, 500).await;
    let nos = [
        placed(&env, &token, 300).await,
        placed(&env, &token, 300).await,
    ];
    // Both pass the handler's check against the same balance of 500: the fold refuses the
    // second, and its verdict is the answer.
    let [a, b] = env.balance_pay_racing(&token, &nos[0], &nos[1]).await;
    let (won, lost) = if a.0 == StatusCode::OK {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(won.0, StatusCode::OK, "{}", won.1);
    assert_eq!(
        (won.1["state"].as_str(), won.1["paid_with"].as_str()),
        (Some("paid"), Some("wallet"))
    );
    assert_eq!(lost.0, StatusCode::CONFLICT, "{}", lost.1);
    assert_eq!(lost.1["error"]["code"], "insufficient_balance");
    // The balance the fold decided on, not one read afterwards.
    assert_eq!(
        lost.1["error"]["message"],
        "the wallet holds 200 fen; the order needs 300"
    );
    let (status, ledger) = env
        .call(Method::GET, "/v1/me/ledger", Some(&token), None)
        .await;
    assert_eq!(
        (status, ledger["balance"].as_i64()),
        (StatusCode::OK, Some(200))
    );
    stop.cancel();
    task.await.unwrap();
}
