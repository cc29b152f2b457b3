//! Publisher fencing: a publisher paused mid-page while its Postgres connection, and with
//! it the lock, is taken away cannot publish its older outcomes after the newer ones the
//! next publisher sent; the outcome stream keeps source order.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wxledger::{
    daemon::metrics::Metrics,
    store::outcomes::{OutcomeStream, PublishError, Publisher},
    Settings,
};

use crate::common::{eventually, OutcomeMsg, TestEnv};

/// The duplicate window of the outcome stream here: short, so the stale publisher's
/// repeats are not simply absorbed as duplicates (as after a pause longer than the
/// production window).
const WINDOW: Duration = Duration::from_secs(1);

fn ids(outcomes: &[OutcomeMsg]) -> Vec<String> {
    outcomes
        .iter()
        .map(|m| m.outcome["id"].as_str().unwrap().to_owned())
        .collect()
}

fn publisher(settings: &Settings, stream: &OutcomeStream) -> Publisher {
    // No local projector: the publisher polls.
    let (_, applied) = tokio::sync::watch::channel(0);
    Publisher::new(
        wxledger::store::db::pg_config(&settings.database).unwrap(),
        &settings.database.schema,
        stream.clone(),
        applied,
        Duration::from_millis(20),
        2,
        Metrics::default(),
    )
}

/// Runs `publisher` until the outbox is empty, then stops it.
async fn run_until_drained(env: &TestEnv, publisher: Publisher) {
    let stop = CancellationToken::new();
    let running = tokio::spawn(publisher.run(stop.clone()));
    assert!(
        eventually(Duration::from_secs(20), || async {
            env.outbox_len().await == 0
        })
        .await,
        "the publisher drains the outbox"
    );
    stop.cancel();
    running.await.unwrap();
}

/// Terminates the Postgres session holding the publisher's advisory lock of `schema`, as
/// a failover or a dropped connection would.
async fn kill_lock_holder(env: &TestEnv) {
    let key = wxledger::store::db::lock_key(&env.schema, "outcomes") as u64;
    let (classid, objid) = ((key >> 32) as u32, key as u32);
    let killed: i64 = env
        .db()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 \
               AND objsubid = 1",
            &[&classid, &objid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one session held the lock");
}

#[tokio::test]
async fn a_stale_publisher_cannot_publish_older_outcomes_after_newer_ones() {
    let env = TestEnv::start_with(|s| {
        s.outcomes.publish = false;
        s.nats.duplicate_window = WINDOW;
    })
    .await;
    let (token, _) = env.login("o-fencing-1").await;
    let mut orders = Vec::new();
    for amount in [100, 200, 300] {
        orders.push(env.paid_order(&token, amount).await);
    }
    assert_eq!(env.outbox_len().await, 3);
    let mut settings = env.settings();
    settings.nats.duplicate_window = WINDOW;
    let stream = OutcomeStream::ensure(&env.log, &settings.nats)
        .await
        .unwrap();

    // The stale one: it leads, reads a page of two, publishes the first, and pauses.
    let stale = publisher(&settings, &stream);
    let mut lease = stale.lead().await.unwrap().expect("nobody else leads");
    assert_eq!(lease.last_seq(), 0, "an empty outcome stream");
    let page = stale.page(&lease).await.unwrap();
    assert_eq!(page.len(), 2);
    stale.send(&mut lease, &page[0]).await.unwrap();
    // Meanwhile its connection goes, and the lock with it.
    kill_lock_holder(&env).await;

    // Newer outcomes, and another publisher that sends them all.
    orders.push(env.paid_order(&token, 400).await);
    run_until_drained(&env, publisher(&settings, &stream)).await;
    let expected: Vec<String> = orders.iter().map(|no| format!("order.paid:{no}")).collect();
    assert_eq!(ids(&env.wait_outcomes(4).await), expected);

    // The stale one wakes after the duplicate window and goes on with its page.
    tokio::time::sleep(WINDOW * 3).await;
    let refused = stale.send(&mut lease, &page[1]).await;
    assert!(
        matches!(refused, Err(PublishError::Overtaken { expected: 1 })),
        "the stale publish is refused: {refused:?}"
    );
    assert!(
        stale.forget(&lease, &[&page[0].id]).await.is_err(),
        "and its session is gone"
    );
    drop(lease);

    let outcomes = env.outcomes().await;
    assert_eq!(ids(&outcomes), expected, "source order, nothing repeated");
    assert!(outcomes.windows(2).all(|w| {
        w[0].outcome["source"]["seq"].as_u64() < w[1].outcome["source"]["seq"].as_u64()
    }));
}

#[tokio::test]
async fn a_publisher_fenced_out_by_a_stale_one_stands_down_and_goes_on_from_the_stream() {
    let env = TestEnv::start_with(|s| s.outcomes.publish = false).await;
    let (token, _) = env.login("o-fencing-2").await;
    let mut orders = Vec::new();
    for amount in [100, 200, 300] {
        orders.push(env.paid_order(&token, amount).await);
    }
    let settings = env.settings();
    let stream = OutcomeStream::ensure(&env.log, &settings.nats)
        .await
        .unwrap();

    // The stale one reads its page and loses its session; the next one leads and reads
    // the same page; then the stale one publishes first.
    let stale = publisher(&settings, &stream);
    let mut stale_lease = stale.lead().await.unwrap().expect("nobody else leads");
    let stale_page = stale.page(&stale_lease).await.unwrap();
    kill_lock_holder(&env).await;
    let next = publisher(&settings, &stream);
    let mut lease = next.lead().await.unwrap().expect("the lock is free again");
    let page = next.page(&lease).await.unwrap();
    stale
        .send(&mut stale_lease, &stale_page[0])
        .await
        .expect("in order, so stored");
    drop(stale_lease);

    // The leader's copy of it is a duplicate; its next publish is refused, as it cannot
    // know whether the stale one went further.
    next.send(&mut lease, &page[0]).await.unwrap();
    let refused = next.send(&mut lease, &page[1]).await;
    assert!(
        matches!(refused, Err(PublishError::Overtaken { expected: 0 })),
        "{refused:?}"
    );
    drop(lease);

    // Running, it starts over from the stream as it now is, and drains the outbox.
    run_until_drained(&env, next).await;
    let expected: Vec<String> = orders.iter().map(|no| format!("order.paid:{no}")).collect();
    assert_eq!(ids(&env.outcomes().await), expected);
}
