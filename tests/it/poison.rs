//! Poison events: an event the projector cannot read (garbage, or a version this build
//! does not know) halts it at that sequence with an alarm; `wxledger quarantine` appends
//! `event.quarantined`, after which the projector goes on without a restart, the failure
//! log has one row per skipped event, and a replay (and the audit) of the stream gives the
//! same tables.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;
use wxledger::{
    core::events::{Envelope, Event, UserRegistered},
    store::{
        quarantine::{quarantine, QuarantineError, Quarantined},
        replay::{replay_with, AsOf, Sink},
        stream::log::Draft,
    },
    tools::audit,
};

use crate::{
    common::{database_url, drop_schema, eventually, nats_url, SchemaSet, TestEnv},
    replay::{connect, snapshot},
};

/// `wxledger_projector_halted_seq` as the daemon's `/metrics` says it.
async fn halted_at(env: &TestEnv) -> u64 {
    u64::try_from(env.gauge("wxledger_projector_halted_seq").await).expect("not negative")
}

async fn checkpoint(env: &TestEnv) -> u64 {
    let row = env
        .db()
        .await
        .query_one("SELECT last_seq FROM projector_checkpoints", &[])
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

async fn users(env: &TestEnv) -> i64 {
    let db = env.db().await;
    db.query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the projector reports it is halted on `seq`, and checks it stays there.
async fn assert_halted_on(env: &TestEnv, seq: u64) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            halted_at(env).await == seq
        })
        .await,
        "the projector halts on {seq}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(checkpoint(env).await, seq - 1, "nothing at or after {seq}");
    assert_eq!(halted_at(env).await, seq);
}

#[tokio::test]
async fn a_poison_event_halts_the_projector_until_quarantined_and_replays_skip_it_too() {
    let env =
        TestEnv::start_with(|s| s.metrics.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let (token, _) = env.login("o-poison").await;
    let recharge = env.recharge(&token, 500).await;
    env.sim_pay(&recharge, json!({})).await;
    env.wait_order_state(&token, &recharge, "paid").await;
    env.wait_applied().await;
    assert_eq!(halted_at(&env).await, 0);
    let users_before = users(&env).await;

    // Garbage, then an order.placed of a version no build knows, then a good event.
    let garbage = env
        .log
        .publish(
            env.log.subject("order.placed"),
            "poison-garbage",
            None,
            Bytes::from_static(b"\xff not an envelope"),
        )
        .await
        .unwrap()
        .seq;
    let unknown = Envelope {
        id: Uuid::new_v4(),
        kind: "order.placed".into(),
        version: 9,
        occurred_at: chrono::Utc::now(),
        correlation_id: "test-poison".into(),
        data: json!({"from": "the future"}),
    };
    let unknown = env
        .log
        .append_envelope(&unknown, "poison-v9")
        .await
        .unwrap()
        .seq;
    let late = Event::UserRegistered(UserRegistered {
        user_id: Uuid::new_v4(),
        openid: "o-after-the-poison".into(),
        unionid: None,
    });
    let late_seq = env
        .log
        .append(Draft {
            event: &late,
            correlation_id: "test-poison",
            msg_id: &late.msg_id(None),
            occurred_at: chrono::Utc::now(),
        })
        .await
        .unwrap()
        .seq;
    assert_eq!((unknown, late_seq), (garbage + 1, garbage + 2));

    assert_halted_on(&env, garbage).await;
    assert_eq!(users(&env).await, users_before, "events after it wait");

    // Only an unreadable event that exists is quarantined.
    let now = chrono::Utc::now();
    let refused = quarantine(&env.log, late_seq, "no", "test", now).await;
    assert!(
        matches!(refused, Err(QuarantineError::Readable { .. })),
        "{refused:?}"
    );
    let refused = quarantine(&env.log, late_seq + 100, "no", "test", now).await;
    assert!(
        matches!(refused, Err(QuarantineError::NoSuchEvent(_))),
        "{refused:?}"
    );
    let refused = quarantine(&env.log, garbage, "  ", "test", now).await;
    assert!(matches!(refused, Err(QuarantineError::NoReason)));

    // The library call the command makes: the projector goes on, to the next poison.
    let done = quarantine(&env.log, garbage, "INC-1: written by hand", "test", now)
        .await
        .unwrap();
    let Quarantined::Appended { appended, .. } = done else {
        panic!("appended: {done:?}")
    };
    assert_halted_on(&env, unknown).await;
    assert_eq!(
        quarantine(&env.log, garbage, "again", "test", now)
            .await
            .unwrap(),
        Quarantined::Already
    );

    // The command itself.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"))
        .args([
            "quarantine",
            &unknown.to_string(),
            "--reason",
            "INC-2: canary",
        ])
        .env_remove("WXLEDGER_CONFIG")
        .env("WXLEDGER__NATS__URL", nats_url())
        .env("WXLEDGER__NATS__STREAM", &env.stream)
        .env("WXLEDGER__NATS__SUBJECT_PREFIX", &env.prefix)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the wxledger binary runs");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("event {unknown} quarantined")),
        "{said}"
    );

    env.wait_applied().await;
    assert_eq!(halted_at(&env).await, 0, "the alarm is off");
    assert_eq!(users(&env).await, users_before + 1, "the rest is applied");
    let db = env.db().await;
    let rows: Vec<(i64, Value)> = db
        .query(
            "SELECT seq, detail FROM failure_log WHERE reason = 'event_quarantined' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0 as u64, appended.seq);
    assert_eq!(
        rows[0].1,
        json!({"quarantined_seq": garbage, "kind": null, "version": null,
               "reason": "INC-1: written by hand"})
    );
    assert_eq!(
        rows[1].1,
        json!({"quarantined_seq": unknown, "kind": "order.placed", "version": 9,
               "reason": "INC-2: canary"})
    );
    let total: i64 = db
        .query_one("SELECT count(*) FROM failure_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 2, "one row per skipped event, nothing else");
    drop(db);

    // The quarantine events follow their schema.
    let schemas = SchemaSet::load();
    for seq in [appended.seq, env.last_seq().await] {
        let payload = env.log.payload_at(seq).await.unwrap().unwrap();
        schemas.check(seq, &serde_json::from_slice(&payload).unwrap());
    }

    // Consumers of the outcome stream hear of each skip, in the outcome's schema.
    let mut heard = Vec::new();
    for _ in 0..200 {
        heard = env
            .outcomes()
            .await
            .into_iter()
            .map(|m| m.outcome)
            .filter(|o| o["data"]["reason"] == "event_quarantined")
            .collect();
        if heard.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(heard.len(), 2, "{heard:?}");
    for outcome in &heard {
        schemas.check_outcome(outcome);
    }
    assert_eq!(heard[1]["data"]["detail"]["quarantined_seq"], unknown);

    // A replay decides as the live projector did, with either sink.
    let live = snapshot(&connect(&env.schema).await).await;
    let into = format!("{}_poison", env.schema);
    for sink in [Sink::Copy, Sink::Batches] {
        replay_with(
            &env.settings(),
            AsOf::Seq(u64::MAX),
            &into,
            true,
            sink,
            |_| {},
        )
        .await
        .unwrap();
        let replayed = snapshot(&connect(&into).await).await;
        assert_eq!(replayed, live, "{sink:?}");
    }
    drop_schema(&database_url(), &into).await;

    // The audit skips it too, and finds the books clean.
    let report = audit::run(&env.settings(), &audit::Options::default(), |_| {})
        .await
        .expect("the audit runs");
    assert!(report.is_clean(), "{}", report.to_text());
}
