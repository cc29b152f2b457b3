//! Stream identity: a projection built from one stream refuses another (the stream deleted
//! and recreated, or ending before the checkpoint after lost writes) loudly, instead of
//! skipping the new events that reuse sequences it passed; and the operator's way out
//! (README): rebuild into a new schema from the surviving stream, audit it, switch.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wxledger::{
    core::events::{Event, UserRegistered},
    daemon::metrics::Metrics,
    settings::DatabaseSettings,
    store::{
        db,
        identity::{self, BuiltFrom},
        projector::{ProjectionWatch, Projector},
        replay::{replay, AsOf},
        stream::{log::Draft, EventLog},
    },
    tools::audit,
};

use crate::common::{database_url, drop_schema, eventually, TestEnv};

async fn checkpoint_of(client: &tokio_postgres::Client) -> u64 {
    let row = client
        .query_one("SELECT last_seq FROM projector_checkpoints", &[])
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

async fn count_users(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0)
}

/// Appends a user's registration straight to the stream, as the daemon would.
async fn register(log: &EventLog, openid: &str) -> u64 {
    let event = Event::UserRegistered(UserRegistered {
        user_id: Uuid::new_v4(),
        openid: openid.into(),
        unionid: None,
    });
    log.append(Draft {
        event: &event,
        correlation_id: "test-identity",
        msg_id: &event.msg_id(None),
        occurred_at: chrono::Utc::now(),
    })
    .await
    .unwrap()
    .seq
}

/// The test's database settings, on `schema`.
fn db_settings(env: &TestEnv, schema: &str) -> DatabaseSettings {
    let mut settings = env.settings().database;
    settings.schema = schema.to_owned();
    settings
}

/// A projector on `schema` reporting to `metrics`, and its checkpoint's watch.
fn projector(env: &TestEnv, schema: &str, metrics: &Metrics) -> (Projector, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0);
    let projector = Projector::new(
        db::pg_config(&db_settings(env, schema)).unwrap(),
        schema,
        env.log.clone(),
        10,
        Duration::from_millis(1),
        tx,
    )
    .with_metrics(metrics.clone());
    (projector, rx)
}

#[tokio::test]
async fn a_recreated_stream_is_refused_until_the_projection_is_rebuilt_from_it() {
    let env = TestEnv::start_with(|s| {
        s.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        s.projector.read_your_writes_timeout = Duration::from_millis(500);
    })
    .await;
    let (token, _) = env.login("o-identity").await;
    for i in 0..2 {
        env.login(&format!("o-identity-{i}")).await;
    }
    env.wait_applied().await;
    let db = env.db().await;
    let before = checkpoint_of(&db).await;
    assert!(before >= 3, "{before}");
    // Recorded when the projector started, on the empty stream: its first event is
    // filled in on a later round (or by a rebuild).
    let built_from = identity::load(&**db).await.unwrap().expect("recorded");
    let stream = env.log.identity().await.unwrap();
    assert_eq!(built_from.created, stream.created);
    assert_eq!(env.gauge("wxledger_projector_stream_mismatch").await, 0);

    // The stream is deleted and recreated; new events reuse sequences the projection
    // passed.
    let nats = env.settings().nats;
    env.log.delete_stream().await.unwrap();
    env.log.ensure_stream(&nats).await.unwrap();
    let reused = register(&env.log, "o-after-the-recreation").await;
    assert_eq!(reused, 1);

    // The projector refuses, loudly: the gauge, and the API role's readiness says why.
    assert!(
        eventually(Duration::from_secs(20), || async {
            env.gauge("wxledger_projector_stream_mismatch").await == 1
        })
        .await,
        "the projector refuses the recreated stream"
    );
    let (status, body) = env.call(Method::GET, "/readyz/api", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["projector"], "refused", "{body}");
    let reason = body["reasons"][0].as_str().unwrap();
    assert!(reason.starts_with("stream identity changed"), "{reason}");
    // The webhooks still take notifies: they are kept on the stream for the rebuild.
    let (status, _) = env.call(Method::GET, "/readyz/webhooks", None, None).await;
    assert_eq!(status, StatusCode::OK);

    // A request waiting on its new event is told to retry, not answered from stale rows.
    let (status, body) = env
        .call(
            Method::PUT,
            "/v1/me/profile",
            Some(&token),
            Some(json!({"nickname": "waits on the new stream"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_yet_applied", "{body}");
    assert_eq!(checkpoint_of(&db).await, before, "nothing applied");
    let new_events = env.last_seq().await;
    assert_eq!(new_events, 2, "the profile was appended");

    // The audit refuses the old projection too, saying why.
    let refused = audit::run(&env.settings(), &audit::Options::default(), |_| {}).await;
    assert!(
        matches!(refused, Err(audit::AuditError::StreamIdentity(_))),
        "{:?}",
        refused.map(|r| r.to_text())
    );

    // The procedure. 1. Rebuild into a new schema from the surviving stream.
    let into = format!("{}_rebuilt", env.schema);
    let done = replay(&env.settings(), AsOf::Seq(u64::MAX), &into, false, |_| {})
        .await
        .unwrap();
    assert_eq!(done.checkpoint, new_events);
    let rebuilt = db::pool(&db_settings(&env, &into)).unwrap();
    let rebuilt_db = rebuilt.get().await.unwrap();
    assert_eq!(
        identity::load(&**rebuilt_db).await.unwrap(),
        Some(BuiltFrom::from(&env.log.identity().await.unwrap())),
        "the rebuild records the stream it was built from"
    );
    // 2. Audit it.
    let mut switched = env.settings();
    switched.database.schema = into.clone();
    let report = audit::run(&switched, &audit::Options::default(), |_| {})
        .await
        .expect("the audit runs");
    assert!(report.is_clean(), "{}", report.to_text());
    // 3. Switch: a projector on the new schema goes on from the rebuild.
    let metrics = Metrics::new();
    let (projector, mut applied) = projector(&env, &into, &metrics);
    let stop = CancellationToken::new();
    let task = tokio::spawn(projector.run(stop.clone()));
    let later = register(&env.log, "o-after-the-switch").await;
    tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|cp| *cp >= later))
        .await
        .expect("the switched projector applies new events")
        .unwrap();
    assert_eq!(metrics.projector_stream_mismatch(), None);
    assert_eq!(
        count_users(&rebuilt_db).await,
        2,
        "every user of the new stream"
    );
    let watch = ProjectionWatch::new(applied.clone(), rebuilt.clone()).with_metrics(metrics);
    watch
        .wait_for(later, Duration::from_secs(1))
        .await
        .expect("applied");
    stop.cancel();
    task.await.unwrap();
    drop(rebuilt_db);
    drop(rebuilt);
    // The old schema still refuses.
    assert_eq!(env.gauge("wxledger_projector_stream_mismatch").await, 1);
    drop_schema(&database_url(), &into).await;
}

#[tokio::test]
async fn a_stream_ending_before_the_checkpoint_is_refused() {
    let mut env = TestEnv::start().await;
    for i in 0..2 {
        env.login(&format!("o-lost-{i}")).await;
    }
    env.wait_applied().await;
    env.stop_daemon().await;
    // As after a single node lost its last writes: the projection applied events the
    // stream no longer has, and new ones will reuse their sequences.
    let db = env.db().await;
    db.execute(
        "UPDATE projector_checkpoints SET last_seq = last_seq + 5",
        &[],
    )
    .await
    .unwrap();
    let checkpoint = checkpoint_of(&db).await;

    let metrics = Metrics::new();
    let (projector, applied) = projector(&env, &env.schema, &metrics);
    let stop = CancellationToken::new();
    let task = tokio::spawn(projector.run(stop.clone()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            metrics.projector_stream_mismatch().is_some()
        })
        .await,
        "the projector refuses a stream that ends before its checkpoint"
    );
    let reason = metrics.projector_stream_mismatch().unwrap();
    assert!(
        reason.contains("before the projection's checkpoint"),
        "{reason}"
    );
    let reused = register(&env.log, "o-reuses-a-lost-seq").await;
    assert!(reused <= checkpoint);
    let watch = ProjectionWatch::new(applied, env.pool.clone()).with_metrics(metrics.clone());
    assert!(
        watch
            .wait_for(reused, Duration::from_millis(500))
            .await
            .is_err(),
        "an event at a sequence the projection passed is not called applied"
    );
    assert_eq!(checkpoint_of(&db).await, checkpoint, "nothing applied");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_standby_refuses_a_recreated_stream_as_the_active_projector_does() {
    let mut env = TestEnv::start().await;
    for i in 0..2 {
        env.login(&format!("o-standby-{i}")).await;
    }
    env.wait_applied().await;
    env.stop_daemon().await;
    // Another process leads (this test holds the projector's lock), so the projector
    // started here only ever stands by; its process's watch knows only the stored
    // checkpoint.
    let leader = env.db().await;
    leader
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&db::lock_key(
                &env.schema,
                wxledger::store::projector::PROJECTION,
            )],
        )
        .await
        .unwrap();
    let metrics = Metrics::new();
    let (standby, applied) = projector(&env, &env.schema, &metrics);
    let stop = CancellationToken::new();
    let task = tokio::spawn(standby.run(stop.clone()));
    let watch = ProjectionWatch::new(applied, env.pool.clone()).with_metrics(metrics.clone());
    let before = env.last_seq().await;
    watch
        .wait_for(before, Duration::from_secs(5))
        .await
        .expect("applied before the recreation");

    let nats = env.settings().nats;
    env.log.delete_stream().await.unwrap();
    env.log.ensure_stream(&nats).await.unwrap();
    let reused = register(&env.log, "o-standby-after-the-recreation").await;
    assert!(
        reused < before,
        "{reused} reuses a sequence the projection passed"
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            metrics.projector_stream_mismatch().is_some()
        })
        .await,
        "the standby refuses the recreated stream too"
    );
    assert!(
        watch
            .wait_for(reused, Duration::from_millis(500))
            .await
            .is_err(),
        "a waiter beside the standby is not told an event at a passed sequence is applied"
    );
    stop.cancel();
    task.await.unwrap();
    drop(leader);
}
