//! The projector: a rebuild from sequence 1 gives byte-identical rows, and a projector
//! killed mid-batch (or racing another) leaves exactly the rows a clean run gives.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wxledger::{
    core::events::{Event, PhoneBound, PhoneSource, ProfileUpdated, UserLoggedIn, UserRegistered},
    settings::DatabaseSettings,
    store::{
        db,
        projector::{Demand, ProjectionWatch, Projector},
        stream::{log::Draft, EventLog},
    },
};

use crate::common::{blocking, database_url, drop_schema, dump_table, TestEnv};

fn db_settings(schema: &str) -> DatabaseSettings {
    DatabaseSettings {
        url: database_url(),
        schema: schema.to_owned(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Runs a projector on `schema` until it has applied `until`, then stops it.
async fn project_until(schema: &str, log: &EventLog, until: u64, batch: usize) {
    let (tx, mut rx) = watch::channel(0);
    let projector = Projector::new(
        db::pg_config(&db_settings(schema)).unwrap(),
        schema,
        log.clone(),
        batch,
        Duration::from_millis(1),
        tx,
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(projector.run(stop.clone()));
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|cp| *cp >= until))
        .await
        .expect("projector catches up")
        .unwrap();
    stop.cancel();
    task.await.unwrap();
}

/// A scratch schema, migrated, dropped on drop.
struct Scratch {
    schema: String,
    pool: deadpool_postgres::Pool,
}

impl Scratch {
    async fn new() -> Self {
        let schema = format!("t_ref_{}", &Uuid::new_v4().simple().to_string()[..10]);
        let pool = db::pool(&db_settings(&schema)).unwrap();
        db::migrate(&pool, &schema).await.unwrap();
        Self { schema, pool }
    }

    async fn users(&self) -> String {
        dump_table(&self.pool.get().await.unwrap(), "users", "user_id").await
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        blocking(async move { drop_schema(&database_url(), &schema).await });
    }
}

#[tokio::test]
async fn dropping_users_and_replaying_from_one_gives_byte_identical_rows() {
    let mut env = TestEnv::start().await;
    for i in 0..5 {
        let (token, _) = env.login(&format!("o-rb-{i}")).await;
        let code = env.phone_code(&format!("1310000000{i}")).await;
        env.call(
            Method::POST,
            "/v1/me/phone",
            Some(&token),
            Some(json!({"code": code})),
        )
        .await;
        env.call(
            Method::PUT,
            "/v1/me/profile",
            Some(&token),
            Some(json!({"nickname": format!("user {i}"), "avatar_url": null})),
        )
        .await;
        env.login(&format!("o-rb-{i}")).await;
    }
    let last = env.last_seq().await;
    assert_eq!(last, 20);
    env.stop_daemon().await;
    let before = env.users_dump().await;
    assert_eq!(before.lines().count(), 5);

    {
        let client = env.db().await;
        client
            .batch_execute(
                "DROP TABLE users;
                 DELETE FROM projection_migrations
                     WHERE name IN ('0002_users.sql', '0007_erasure.sql');
                 DELETE FROM projector_checkpoints;",
            )
            .await
            .unwrap();
    }
    db::migrate(&env.pool, &env.schema).await.unwrap();
    assert_eq!(env.users_dump().await, "");
    project_until(&env.schema, &env.log, last, 3).await;
    assert_eq!(env.users_dump().await, before);
}

/// A history with races built in: repeated registrations, phones moving between users,
/// conflicting binds, events for users who do not exist.
fn random_history(seed: u64, n: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let user = |i: u32| Uuid::from_u128(0xabc0_0000 + u128::from(i));
    (0..n)
        .map(|_| {
            let u = rng.gen_range(0..60u32);
            match rng.gen_range(0..10) {
                0..=2 => Event::UserRegistered(UserRegistered {
                    user_id: user(u),
                    openid: format!("o-{u}"),
                    unionid: None,
                }),
                3..=4 => Event::UserLoggedIn(UserLoggedIn {
                    user_id: user(u),
                    unionid: rng.gen_bool(0.3).then(|| format!("un-{u}")),
                }),
                5..=7 => Event::PhoneBound(PhoneBound {
                    user_id: user(u),
                    country_code: "86".into(),
                    pure_phone_number: format!("1380000{:04}", rng.gen_range(0..40)),
                    source: PhoneSource::PhoneCode,
                }),
                _ => Event::ProfileUpdated(ProfileUpdated {
                    user_id: user(u),
                    nickname: format!("n{}", rng.gen_range(0..100)),
                    avatar_url: None,
                }),
            }
        })
        .collect()
}

async fn append_all(log: &EventLog, events: &[Event]) -> u64 {
    let mut last = 0;
    let at = chrono::Utc::now();
    for (i, event) in events.iter().enumerate() {
        let msg_id = format!("hist-{i}");
        last = log
            .append(Draft {
                event,
                correlation_id: "test",
                msg_id: &msg_id,
                occurred_at: at + chrono::Duration::milliseconds(i as i64),
            })
            .await
            .unwrap()
            .seq;
    }
    last
}

#[tokio::test]
async fn a_projector_killed_mid_batch_and_restarted_leaves_exactly_the_clean_rows() {
    let env = TestEnv::start_with(|s| s.projector.enabled = false).await;
    let events = random_history(7, 3000);
    let last = append_all(&env.log, &events).await;
    assert_eq!(last, 3000);

    let mut rng = StdRng::seed_from_u64(11);
    let mut killed_midway = 0;
    for _ in 0..12 {
        let (tx, rx) = watch::channel(0);
        let projector = Projector::new(
            db::pg_config(&db_settings(&env.schema)).unwrap(),
            &env.schema,
            env.log.clone(),
            rng.gen_range(20..200),
            Duration::from_millis(1),
            tx,
        );
        let task = tokio::spawn(projector.run(CancellationToken::new()));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..60))).await;
        // A hard kill: the future is dropped wherever it is, mid-transaction included.
        task.abort();
        let _ = task.await;
        let reached = *rx.borrow();
        if reached < last {
            killed_midway += 1;
        }
    }
    assert!(
        killed_midway > 0,
        "the kills landed before the end of the history"
    );
    project_until(&env.schema, &env.log, last, 100).await;

    let reference = Scratch::new().await;
    project_until(&reference.schema, &env.log, last, 500).await;
    let clean = reference.users().await;
    assert!(clean.lines().count() > 30);
    assert_eq!(env.users_dump().await, clean);

    let checkpoint: i64 = env
        .db()
        .await
        .query_one("SELECT last_seq FROM projector_checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(checkpoint, 3000);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn two_projectors_on_one_schema_give_the_clean_rows() {
    let env = TestEnv::start_with(|s| s.projector.enabled = false).await;
    let events = random_history(99, 1500);
    let last = append_all(&env.log, &events).await;
    let (a, b) = tokio::join!(
        project_until(&env.schema, &env.log, last, 37),
        project_until(&env.schema, &env.log, last, 53),
    );
    let _ = (a, b);
    let reference = Scratch::new().await;
    project_until(&reference.schema, &env.log, last, 500).await;
    assert_eq!(env.users_dump().await, reference.users().await);
}

/// Recharges for 40 users, each paid, about a third of them notified twice more (later
/// sequences, as WeChat's retries and a query would be); returns the events and each
/// wallet's expected balance.
fn credit_history(seed: u64) -> (Vec<Event>, std::collections::BTreeMap<Uuid, i64>) {
    use wxledger::core::events::{
        Evidence, OrderKind, OrderPlaced, PaymentNotified, Transaction, TransactionAmount,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    let mut pending = Vec::new();
    for u in 0..40u32 {
        let user_id = Uuid::from_u128(0x00C0_FFEE_0000 + u128::from(u));
        for r in 0..8u32 {
            let no = format!("rc{u:04}x{r:04}{seed}");
            let amount = rng.gen_range(1..100_000);
            events.push(Event::OrderPlaced(OrderPlaced {
                out_trade_no: no.clone(),
                user_id,
                openid: format!("o-{u}"),
                kind: OrderKind::Recharge,
                amount,
                currency: "CNY".into(),
                description: "recharge".into(),
                appid: wxledger::settings::SIM_APPID.into(),
                mchid: wxledger::sim::devkeys::MCHID.into(),
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            }));
            *expected.entry(user_id).or_insert(0) += amount;
            let notify = Event::PaymentNotified(PaymentNotified {
                notify_id: format!("n-{no}"),
                event_type: "TRANSACTION.SUCCESS".into(),
                transaction: Transaction {
                    appid: wxledger::settings::SIM_APPID.into(),
                    mchid: wxledger::sim::devkeys::MCHID.into(),
                    out_trade_no: no.clone(),
                    transaction_id: Some(format!("42{u:08}{r:08}{seed:010}")),
                    trade_type: Some("JSAPI".into()),
                    trade_state: "SUCCESS".into(),
                    trade_state_desc: None,
                    bank_type: None,
                    attach: None,
                    success_time: Some("2026-11-21T10:00:00+08:00".into()),
                    payer: None,
                    amount: Some(TransactionAmount {
                        total: Some(amount),
                        payer_total: Some(amount),
                        currency: Some("CNY".into()),
                        payer_currency: Some("CNY".into()),
                    }),
                },
                evidence: Evidence {
                    serial: "PUB_KEY_ID_TEST".into(),
                    signature: "c2lnbmF0dXJl".into(),
                    timestamp: "1795000000".into(),
                    nonce: "nonce".into(),
                    signature_type: None,
                    body: "{}".into(),
                },
            });
            pending.push(notify.clone());
            if rng.gen_bool(0.35) {
                pending.push(notify.clone());
                pending.push(notify);
            }
        }
        // Notifies interleave with later users' orders.
        while pending.len() > 6 {
            let i = rng.gen_range(0..pending.len());
            events.push(pending.swap_remove(i));
        }
    }
    events.append(&mut pending);
    (events, expected)
}

async fn dump_books(pool: &deadpool_postgres::Pool) -> String {
    let client = pool.get().await.unwrap();
    let mut out = String::new();
    for (table, key) in [
        ("orders", "out_trade_no"),
        ("payments", "transaction_id"),
        ("ledger_entries", "seq, line"),
        ("balances", "account"),
        ("failure_log", "seq, reason"),
    ] {
        out.push_str(&dump_table(&client, table, key).await);
    }
    out
}

#[tokio::test]
async fn a_projector_killed_during_credits_neither_loses_nor_doubles_one() {
    let env = TestEnv::start_with(|s| s.projector.enabled = false).await;
    let (events, expected) = credit_history(5);
    let last = append_all(&env.log, &events).await;

    let mut rng = StdRng::seed_from_u64(13);
    let mut killed_midway = 0;
    for _ in 0..10 {
        let (tx, rx) = watch::channel(0);
        let projector = Projector::new(
            db::pg_config(&db_settings(&env.schema)).unwrap(),
            &env.schema,
            env.log.clone(),
            rng.gen_range(5..60),
            Duration::from_millis(1),
            tx,
        );
        let task = tokio::spawn(projector.run(CancellationToken::new()));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
        task.abort();
        let _ = task.await;
        if *rx.borrow() < last {
            killed_midway += 1;
        }
    }
    assert!(killed_midway > 0, "the kills landed inside the history");
    project_until(&env.schema, &env.log, last, 50).await;

    let client = env.db().await;
    for (user_id, want) in &expected {
        let account = wxledger::core::fold::wallet_account(*user_id);
        let got = db::orders::balance(&**client, &account).await.unwrap();
        assert_eq!(got, *want, "wallet of {user_id}");
    }
    let groups: i64 = client
        .query_one("SELECT count(DISTINCT group_id) FROM ledger_entries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(groups, 40 * 8, "one posting group per transaction");
    drop(client);

    let reference = Scratch::new().await;
    project_until(&reference.schema, &env.log, last, 500).await;
    assert_eq!(
        dump_books(&env.pool).await,
        dump_books(&reference.pool).await
    );
    env.assert_events_match_schemas().await;
}

/// The projector lingers for more events only while nobody waits: a caller waiting for
/// its own event is answered with what was delivered, while the same projector without
/// the shared demand holds a lone event for its whole linger.
#[tokio::test]
async fn a_waiting_caller_is_not_held_by_the_linger() {
    let env = TestEnv::start_with(|s| s.projector.enabled = false).await;
    let linger = Duration::from_secs(30);
    let run = |demand: Option<Demand>| {
        let (tx, rx) = watch::channel(0);
        let mut projector = Projector::new(
            db::pg_config(&db_settings(&env.schema)).unwrap(),
            &env.schema,
            env.log.clone(),
            500,
            linger,
            tx,
        );
        let mut watch = ProjectionWatch::new(rx, env.pool.clone());
        if let Some(demand) = demand {
            projector = projector.with_demand(demand.clone());
            watch = watch.with_demand(demand);
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(projector.run(stop.clone()));
        (watch, stop, task)
    };
    let events = random_history(3, 2);

    // Unshared: the lone event waits out the linger.
    let (watch, stop, task) = run(None);
    let first = append_all(&env.log, &events[..1]).await;
    let held = watch.wait_for(first, Duration::from_secs(2)).await;
    assert!(
        held.is_err(),
        "applied within 2 s of a 30 s linger: {held:?}"
    );
    stop.cancel();
    task.abort();

    // Shared: a caller waits, so the batch is committed at once (before and after the
    // projector has the event in hand).
    let (watch, stop, task) = run(Some(Demand::default()));
    watch
        .wait_for(first, Duration::from_secs(10))
        .await
        .expect("the held event applied at once by a projector that sees the waiter");
    let second = env
        .log
        .append(Draft {
            event: &events[1],
            correlation_id: "test",
            msg_id: "linger-second",
            occurred_at: chrono::Utc::now(),
        })
        .await
        .unwrap()
        .seq;
    tokio::time::sleep(Duration::from_millis(200)).await;
    watch
        .wait_for(second, Duration::from_secs(10))
        .await
        .expect("a lingering batch committed when a caller starts waiting");
    stop.cancel();
    let _ = task.await;
}
