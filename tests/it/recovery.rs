//! Recovery once a fault ends, against private servers: after a NATS restart (kill -9,
//! then a new server on the same port and store) and after Postgres comes back, a new
//! event is applied within 2 s, so `POST /v1/auth/login` answers 200 again instead of
//! 503 `not_yet_applied`; outcomes kept in the outbox while NATS was away go out within
//! 2 s of its return.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;
use wxledger::{
    core::events::{Event, UserRegistered},
    store::stream::log::Draft,
    tools::harness::NatsNode,
};

use crate::{
    common::{eventually, TestEnv},
    outcomes::{hold_checkpoint, wait_projector_blocked},
    proxy::Proxy,
};

/// The bound is 2 s; the answer also carries a login's own round trips.
const RECOVERED_WITHIN: Duration = Duration::from_millis(2_500);

/// How long a test waits for recovery at all (main took 16–22 s after a NATS restart).
const GIVE_UP_AFTER: Duration = Duration::from_secs(25);

/// When `check` first holds, polling from `since`; `None` after [`GIVE_UP_AFTER`].
async fn first_time<F, Fut>(since: Instant, mut check: F) -> Option<Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while since.elapsed() < GIVE_UP_AFTER {
        if check().await {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// When a login of `openid` first answers 200 (its event appended and applied).
async fn logged_in_again(env: &TestEnv, openid: &str, since: Instant) -> Option<Instant> {
    first_time(since, || async {
        let code = env.login_code(openid).await;
        env.post_login(code).await.0 == StatusCode::OK
    })
    .await
}

/// How long after `back` the work named `what` was done (`done`); panics naming the
/// figure when it is over [`RECOVERED_WITHIN`].
fn assert_recovered(what: &str, back: Instant, done: Option<Instant>) {
    let Some(done) = done else {
        panic!("{what}: not within {GIVE_UP_AFTER:?}");
    };
    let took = done - back;
    eprintln!("{what} {} ms after", took.as_millis());
    assert!(
        took < RECOVERED_WITHIN,
        "{what} only {took:?} after (want under {RECOVERED_WITHIN:?})"
    );
}

#[tokio::test]
async fn events_are_applied_within_2_s_of_a_restarted_nats_accepting_connections() {
    let mut nats = NatsNode::start();
    nats.wait_listening().await;
    let env = TestEnv::start_with(|s| s.nats.url = nats.url()).await;
    env.login("o-rec-0").await;

    nats.kill();
    // Down long enough for the client's own reconnection pauses to grow to 4 s.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let back = nats.restart().await;

    let applied = logged_in_again(&env, "o-rec-1", back).await;
    assert_recovered("an event applied: NATS restarted", back, applied);
}

#[tokio::test]
async fn events_are_applied_within_2_s_of_postgres_returning() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let env = TestEnv::start_with(|s| {
        s.database.url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    })
    .await;
    env.login("o-rec-0").await;

    proxy.cut();
    // An event to apply while Postgres is away: the projector's rounds fail one after
    // another (main's pauses grew to 5 s by the time it returned).
    let registered = Event::UserRegistered(UserRegistered {
        user_id: Uuid::new_v4(),
        openid: "o-rec-away".into(),
        unionid: None,
    });
    env.log
        .append(Draft {
            event: &registered,
            correlation_id: "test-recovery",
            msg_id: "recovery-away",
            occurred_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    proxy.restore();
    let back = Instant::now();

    let applied = logged_in_again(&env, "o-rec-2", back).await;
    assert_recovered("an event applied: Postgres returned", back, applied);
}

#[tokio::test]
async fn outcomes_waiting_in_the_outbox_go_out_within_2_s_of_nats_returning() {
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let env =
        TestEnv::start_with(|s| s.nats.url = format!("nats://127.0.0.1:{}", proxy.port)).await;
    let (token, _) = env.login("o-rec-outcome").await;
    let no = env.order_with_prepay(&token, 500).await;
    env.wait_applied().await;
    // The payment's batch waits at its commit until NATS is gone.
    let hold = hold_checkpoint(&env).await;
    env.sim_pay(&no, json!({})).await;
    let notified = eventually(Duration::from_secs(10), || async {
        env.count_events("payment.notified").await == 1
    });
    assert!(notified.await);
    wait_projector_blocked(&env).await;
    proxy.cut();
    hold.batch_execute("COMMIT").await.unwrap();
    let kept = eventually(Duration::from_secs(10), || async {
        env.outbox_len().await == 1
    });
    assert!(kept.await, "the outcome waits in the outbox");
    // The publisher's attempts fail meanwhile (main's pauses grew to 5 s, and its NATS
    // client's to 4 s).
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    proxy.restore();
    let back = Instant::now();

    let sent = first_time(back, || async { env.outbox_len().await == 0 }).await;
    assert_recovered("the outbox drained: NATS returned", back, sent);
    assert_eq!(env.wait_outcomes(1).await.len(), 1);
}
