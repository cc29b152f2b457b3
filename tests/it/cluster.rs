//! Failover on real engines: a private 3-node NATS JetStream cluster with an R3 stream and
//! two or three `wxledger serve` processes on one Postgres schema behind a round-robin
//! balancer, under a load that behaves like WeChat and a mini program. Killing the active
//! daemon or the stream leader's nats-server loses and doubles nothing; a token issued by
//! one instance works on the others; the outcome stream's fencing holds on the cluster.

mod bench;
mod rig;

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;
use wxledger::{
    store::{
        outcomes::OutcomeStream,
        stream::{EventLog, LogError},
    },
    tools::harness::{notify_tally, NatsCluster},
};

use self::rig::Rig;

/// kill -9 the instance whose projector is active, under load: another instance's
/// projector takes over and applies the next event within 5 s of the kill, its publisher
/// too; every payment is booked once.
#[tokio::test]
async fn killing_the_active_daemon_hands_over_within_5s_losing_nothing() {
    let mut rig = Rig::start(3).await;
    let load = rig.load(6);
    assert!(
        load.wait_paid(10, Duration::from_secs(30)).await,
        "the load pays: {:?}\n{}",
        load.tally(),
        rig.logs()
    );
    let active = rig.wait_leader("projector", Duration::from_secs(10)).await;
    let paid_before = load.paid();
    rig.daemons[active].kill();
    let killed = Instant::now();

    let next = rig.wait_leader("projector", Duration::from_secs(10)).await;
    assert_ne!(next, active);
    // The first event the new leader applies: the checkpoint passes what it was when the
    // new leader was seen (the dead one commits nothing more).
    let seen = rig.checkpoint().await;
    rig.wait_checkpoint_past(seen, killed + Duration::from_secs(15))
        .await;
    let takeover = killed.elapsed();
    let publisher = rig.wait_leader("publisher", Duration::from_secs(10)).await;
    assert_ne!(publisher, active, "the publisher moved too");
    assert!(
        load.wait_paid(paid_before + 10, Duration::from_secs(30))
            .await,
        "the load goes on after the kill: {:?}\n{}",
        load.tally(),
        rig.logs()
    );
    let (report, verdict) = rig.verdict(load, Vec::new()).await;
    eprintln!(
        "active daemon d{active} killed: d{next} applied within {takeover:?}; {} paid, {} booked; \
         load {:?}; notifies {:?}; balancer {:?} (refused {})",
        verdict.paid,
        verdict.booked,
        report.tally,
        notify_tally(&rig.http, &rig.sim).await.unwrap(),
        rig.balancer.served(),
        rig.balancer.skipped(),
    );
    assert!(
        takeover < Duration::from_secs(5),
        "a standby took {takeover:?} to take over\n{}",
        rig.logs()
    );
    outcomes_published(&rig).await;
}

/// kill -9 the nats-server leading the stream, under load: a new leader is elected,
/// appends resume, notifies answered 5xx meanwhile are retried by WeChat and booked once.
/// The node is started again afterwards and the run goes on with all three.
#[tokio::test]
async fn killing_the_stream_leader_loses_and_doubles_nothing() {
    let mut rig = Rig::start(2).await;
    let stream = rig.deployment.stream.clone();
    let load = rig.load(6);
    assert!(
        load.wait_paid(10, Duration::from_secs(30)).await,
        "the load pays: {:?}\n{}",
        load.tally(),
        rig.logs()
    );
    let leader = rig
        .nats
        .wait_stream_leader(&stream, None, Duration::from_secs(10))
        .await
        .unwrap();
    // Orders whose users pay the moment the leader dies: their notifies arrive during
    // the election, when no append can be acknowledged.
    let held = rig.unpaid_orders(5).await;
    let paid_before = load.paid();
    let seq_before = rig.checkpoint().await;
    rig.nats.kill(leader);
    let killed = Instant::now();
    let paid_in_election = rig.pay(&held).await;
    let elected = rig
        .nats
        .wait_stream_leader(&stream, Some(leader), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let election = killed.elapsed();
    // Appends resume: new payments are booked past the kill.
    assert!(
        load.wait_paid(paid_before + 10, Duration::from_secs(40))
            .await,
        "appends never resumed: {:?}\n{}",
        load.tally(),
        rig.logs()
    );
    rig.wait_checkpoint_past(seq_before, Instant::now() + Duration::from_secs(20))
        .await;
    let recovered = killed.elapsed();
    rig.nats.restart(leader).await;
    let paid_now = load.paid();
    assert!(
        load.wait_paid(paid_now + 5, Duration::from_secs(30)).await,
        "the load goes on with the node back: {:?}\n{}",
        load.tally(),
        rig.logs()
    );
    let (report, verdict) = rig.verdict(load, paid_in_election).await;
    let notifies = notify_tally(&rig.http, &rig.sim).await.unwrap();
    eprintln!(
        "stream leader n{leader} killed: n{elected} elected after {election:?}, payments booked \
         again after {recovered:?}; {} paid, {} booked; load {:?}; notifies {:?}",
        verdict.paid, verdict.booked, report.tally, notifies,
    );
    assert!(
        notifies.server_errors + notifies.unanswered > 0 && notifies.retries > 0,
        "notifies during the election were refused and retried: {notifies:?}"
    );
    outcomes_published(&rig).await;
}

/// A token issued by one instance works on the others (same `auth.jwt_secret`), and what
/// one instance appended the others read.
#[tokio::test]
async fn a_token_from_one_instance_works_on_the_others() {
    let rig = Rig::start(3).await;
    let base = |i: usize| rig.daemons[i].base();
    let code: Value = rig
        .http
        .post(format!("{}/sim/mini/login-codes", rig.sim))
        .json(&serde_json::json!({"openid": "o-cluster-token"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login: Value = rig
        .http
        .post(format!("{}/v1/auth/login", base(0)))
        .json(&serde_json::json!({"code": code["code"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("logged in").to_owned();
    let order: Value = rig
        .http
        .post(format!("{}/v1/orders", base(1)))
        .bearer_auth(&token)
        .json(&serde_json::json!({"amount": 100, "description": "cluster"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let no = order["out_trade_no"]
        .as_str()
        .expect("placed on d1")
        .to_owned();
    for i in 0..3 {
        let me = rig
            .http
            .get(format!("{}/v1/me", base(i)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK, "d{i}\n{}", rig.logs());
        let me: Value = me.json().await.unwrap();
        assert_eq!(me["user_id"], login["user_id"], "d{i}");
        let read = rig
            .http
            .get(format!("{}/v1/orders/{no}", base(i)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            read.status(),
            StatusCode::OK,
            "d{i} reads the order d1 placed"
        );
    }
}

/// The outcome stream's fencing on an R3 stream of the cluster: a publish conditioned on
/// a last sequence the stream has passed is refused, also the first one (expected 0).
#[tokio::test]
async fn outcome_fencing_holds_on_an_r3_stream() {
    let _serial = rig::serial().await;
    let nats = NatsCluster::start().await.unwrap();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let settings = wxledger::settings::NatsSettings {
        url: nats.urls(),
        stream: format!("F_{id}"),
        subject_prefix: format!("f_{id}"),
        replicas: 3,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let log = EventLog::connect(&settings).await.unwrap();
    let outcomes = OutcomeStream::ensure(&log, &settings).await.unwrap();
    let body = || Bytes::from_static(b"{}");
    let first = outcomes.publish("a", "t", 0, body()).await.unwrap();
    assert_eq!(first.seq, 1);
    let stale = outcomes.publish("b", "t", 0, body()).await;
    assert!(
        matches!(stale, Err(LogError::Overtaken { expected: 0 })),
        "a stale first publish was stored: {stale:?}"
    );
    let second = outcomes.publish("c", "t", 1, body()).await.unwrap();
    assert_eq!(second.seq, 2);
    let stale = outcomes.publish("d", "t", 1, body()).await;
    assert!(
        matches!(stale, Err(LogError::Overtaken { expected: 1 })),
        "{stale:?}"
    );
    assert_eq!(outcomes.last_seq().await.unwrap(), 2);
}

/// The outbox drains onto the R3 outcome stream, each outcome once.
async fn outcomes_published(rig: &Rig) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let db = rig.deployment.db().await.unwrap();
    loop {
        let pending = wxledger::store::outcomes::outbox::pending(&**db)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} outcomes never published\n{}",
            rig.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut settings = rig.deployment.nats_settings();
    settings.stream = settings.outcome_stream();
    let options = wxledger::tools::tail::TailOptions {
        subject: format!("{}_outcome.>", rig.deployment.prefix),
        from_seq: 1,
        follow: false,
        limit: None,
    };
    let mut ids = Vec::new();
    wxledger::tools::tail::tail(&settings, &options, |line| {
        ids.push(line.envelope["id"].as_str().unwrap_or_default().to_owned());
        Ok(())
    })
    .await
    .expect("the outcome stream reads");
    assert!(!ids.is_empty(), "outcomes were published");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "each outcome once");
}

/// `nats.url` as a comma list connects, and to a server that answers when the first one
/// listed does not (it was parsed as one URL: "invalid port number").
#[tokio::test]
async fn a_comma_list_of_servers_connects() {
    let dead = wxledger::tools::harness::nats::free_port();
    let settings = wxledger::settings::NatsSettings {
        url: format!("nats://127.0.0.1:{dead},{}", crate::common::nats_url()),
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let client = wxledger::store::stream::connect::connect(&settings, "comma-list")
        .await
        .expect("connects through the list");
    client.flush().await.unwrap();
}
