//! Group commit on real servers: a private nats-server 2.15 (the pinned one of
//! `scripts/nats-server.txt`, named by `WXLEDGER_NATS_SERVER`) for atomic batches, and a
//! private Debian 2.9.10 for the path without them. Every answer is checked against what
//! the stream holds: an append answered success has its own event at its sequence.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use uuid::Uuid;
use wxledger::{
    core::events::Envelope,
    daemon::metrics::Metrics,
    settings::{GroupCommit, NatsSettings},
    store::stream::{Appended, EventLog, LogError},
    tools::harness::{NatsNode, NodeSpec},
};

/// A private server of the pinned release, listening.
async fn current_server(spec: impl FnOnce(NodeSpec) -> NodeSpec) -> NatsNode {
    let pinned = NodeSpec::pinned().unwrap_or_else(|why| panic!("{why}"));
    let mut node = NatsNode::start_with(&spec(pinned));
    node.wait_listening().await;
    node
}

fn settings(url: &str, change: impl FnOnce(&mut NatsSettings)) -> NatsSettings {
    let id = &Uuid::new_v4().simple().to_string()[..10];
    let mut s = NatsSettings {
        url: url.to_owned(),
        stream: format!("T_GC_{id}"),
        subject_prefix: format!("t_gc_{id}"),
        connect_timeout: Duration::from_secs(5),
        ack_timeout: Duration::from_secs(2),
        // Off by default; these tests are of `auto` unless they say otherwise.
        group_commit: GroupCommit::Auto,
        ..Default::default()
    };
    change(&mut s);
    s
}

/// The log as the daemon opens it, counting group commit in its own metrics.
async fn open(settings: &NatsSettings) -> (EventLog, Metrics) {
    let log = EventLog::dial(settings).await.unwrap();
    let metrics = Metrics::new();
    log.record_group_commit_into(&metrics);
    log.ensure_stream(settings).await.unwrap();
    (log, metrics)
}

/// An event whose payload says which append it came from.
fn envelope(n: usize) -> Envelope {
    Envelope {
        id: Uuid::new_v4(),
        kind: "test.appended".into(),
        version: 1,
        occurred_at: chrono::Utc::now(),
        correlation_id: format!("append-{n}"),
        data: serde_json::json!({ "n": n }),
    }
}

/// The id of the envelope stored at `seq`.
async fn stored_id(log: &EventLog, seq: u64) -> Uuid {
    let payload = log
        .payload_at(seq)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("nothing stored at {seq}"));
    serde_json::from_slice::<Envelope>(&payload).unwrap().id
}

/// Appends every `(msg id, envelope)` at once, each from its own task, and returns them
/// with their answers, in the order given.
async fn append_all(
    log: &EventLog,
    appends: Vec<(String, Envelope)>,
) -> Vec<(String, Envelope, Result<Appended, LogError>)> {
    let tasks: Vec<_> = appends
        .into_iter()
        .map(|(msg_id, env)| {
            let log = log.clone();
            tokio::spawn(async move {
                let answer = log.append_envelope(&env, &msg_id).await;
                (msg_id, env, answer)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Checks answers of distinct msg ids: all stored, sequences `1..=n`, each holding its
/// caller's event.
async fn assert_each_stored_at_its_sequence(
    log: &EventLog,
    answers: &[(String, Envelope, Result<Appended, LogError>)],
) {
    let mut seqs = BTreeSet::new();
    for (msg_id, env, answer) in answers {
        let appended = answer.as_ref().unwrap_or_else(|e| panic!("{msg_id}: {e}"));
        assert!(!appended.duplicate, "{msg_id} is new");
        assert!(
            seqs.insert(appended.seq),
            "{msg_id}: sequence {} twice",
            appended.seq
        );
        assert_eq!(
            stored_id(log, appended.seq).await,
            env.id,
            "{msg_id}'s event at {}",
            appended.seq
        );
    }
    let n = answers.len() as u64;
    assert_eq!(seqs, (1..=n).collect(), "contiguous from 1");
    assert_eq!(log.last_seq().await.unwrap(), n, "nothing else stored");
}

#[tokio::test]
async fn concurrent_appends_get_their_own_contiguous_sequences_in_atomic_batches() {
    let nats = current_server(|s| s).await;
    let (log, metrics) = open(&settings(&nats.url(), |_| {})).await;
    assert!(log.group_commit_active(), "auto, on 2.15: grouped");

    let appends = (0..400).map(|n| (format!("m-{n}"), envelope(n))).collect();
    let answers = append_all(&log, appends).await;
    assert_each_stored_at_its_sequence(&log, &answers).await;

    let (batches, batched) = metrics.group_commit_batches();
    assert!(batches > 0, "atomic batches were committed");
    assert!(
        batched > batches,
        "batches of more than one ({batched} in {batches})"
    );
    assert_eq!(metrics.group_commit_fallbacks("duplicate"), 0);
}

#[tokio::test]
async fn one_msg_id_twice_in_a_batch_is_stored_once_and_answered_as_single_publishes_are() {
    let nats = current_server(|s| s).await;
    // One batch in flight, open 10 ms for more: the appends below make one batch.
    let s = settings(&nats.url(), |s| {
        s.group_commit_in_flight = 1;
        s.group_commit_max_wait = Duration::from_millis(10);
    });
    let (log, metrics) = open(&s).await;

    let mut appends: Vec<_> = (0..8).map(|n| (format!("d-{n}"), envelope(n))).collect();
    appends.push(("d-same".into(), envelope(100)));
    appends.push(("d-same".into(), envelope(101)));
    let answers = append_all(&log, appends).await;

    let same: Vec<_> = answers.iter().filter(|(id, ..)| id == "d-same").collect();
    let first = same
        .iter()
        .find(|(_, _, a)| !a.as_ref().unwrap().duplicate)
        .expect("one of the two is stored");
    let repeat = same
        .iter()
        .find(|(_, _, a)| a.as_ref().unwrap().duplicate)
        .expect("the other is its duplicate");
    let seq = first.2.as_ref().unwrap().seq;
    assert_eq!(
        repeat.2.as_ref().unwrap().seq,
        seq,
        "the duplicate answers the original's sequence"
    );
    assert_eq!(
        stored_id(&log, seq).await,
        first.1.id,
        "the stored one's event"
    );

    let mut seqs = BTreeSet::from([seq]);
    for (msg_id, env, answer) in answers.iter().filter(|(id, ..)| id != "d-same") {
        let appended = answer.as_ref().unwrap_or_else(|e| panic!("{msg_id}: {e}"));
        assert!(!appended.duplicate && seqs.insert(appended.seq), "{msg_id}");
        assert_eq!(stored_id(&log, appended.seq).await, env.id, "{msg_id}");
    }
    assert_eq!(seqs, (1..=9).collect(), "nine events, one per msg id");
    assert_eq!(log.last_seq().await.unwrap(), 9);
    assert_eq!(metrics.group_commit_batches().0, 1, "all in one batch");
    assert_eq!(
        metrics.group_commit_fallbacks("duplicate"),
        0,
        "sent once inside the batch, so the server did not refuse it"
    );
}

#[tokio::test]
async fn a_batch_refused_for_a_stored_msg_id_is_sent_again_as_single_publishes() {
    let nats = current_server(|s| s).await;
    let s = settings(&nats.url(), |s| {
        s.group_commit_in_flight = 1;
        s.group_commit_max_wait = Duration::from_millis(10);
    });
    let (log, metrics) = open(&s).await;
    let original = envelope(0);
    let stored = log.append_envelope(&original, "x-1").await.unwrap();
    assert_eq!((stored.seq, stored.duplicate), (1, false));

    // One batch again holding x-1: the server refuses it whole (err_code 10201).
    let mut appends: Vec<_> = (1..6)
        .map(|n| (format!("x-new-{n}"), envelope(n)))
        .collect();
    appends.insert(2, ("x-1".into(), envelope(99)));
    let answers = append_all(&log, appends).await;

    let again = answers.iter().find(|(id, ..)| id == "x-1").unwrap();
    let again = again.2.as_ref().unwrap();
    assert_eq!(
        (again.seq, again.duplicate),
        (1, true),
        "deduplicated to the original"
    );
    assert_eq!(stored_id(&log, 1).await, original.id, "the original stays");
    let mut seqs = BTreeSet::new();
    for (msg_id, env, answer) in answers.iter().filter(|(id, ..)| id != "x-1") {
        let appended = answer.as_ref().unwrap();
        assert!(!appended.duplicate && seqs.insert(appended.seq), "{msg_id}");
        assert_eq!(stored_id(&log, appended.seq).await, env.id, "{msg_id}");
    }
    assert_eq!(seqs, (2..=6).collect());
    assert_eq!(log.last_seq().await.unwrap(), 6);
    assert_eq!(
        metrics.group_commit_fallbacks("duplicate"),
        6,
        "the refused batch of six went out as single publishes"
    );
    assert!(
        log.group_commit_active(),
        "a duplicate does not turn grouping off"
    );
}

#[tokio::test]
async fn a_stream_that_stops_allowing_atomic_batches_gets_single_publishes_for_good() {
    let nats = current_server(|s| s).await;
    let s = settings(&nats.url(), |s| {
        s.group_commit_in_flight = 1;
        s.group_commit_max_wait = Duration::from_millis(10);
    });
    let (log, metrics) = open(&s).await;
    // async-nats' stream config has no `allow_atomic`: writing it back turns it off.
    let mut stream = log.jetstream().get_stream(&s.stream).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    log.jetstream().update_stream(&config).await.unwrap();

    let appends = (0..20).map(|n| (format!("u-{n}"), envelope(n))).collect();
    let answers = append_all(&log, appends).await;
    assert_each_stored_at_its_sequence(&log, &answers).await;
    assert_eq!(metrics.group_commit_fallbacks("unsupported"), 20);
    assert!(!log.group_commit_active(), "off for good");
}

#[tokio::test]
async fn nats_killed_mid_batch_leaves_no_success_answered_without_its_event_stored() {
    let mut nats = current_server(NodeSpec::sync_always).await;
    let s = settings(&nats.url(), |s| s.ack_timeout = Duration::from_millis(500));
    let (log, metrics) = open(&s).await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..128)
        .map(|w| {
            let (log, stop) = (log.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let env = envelope(w * 1_000_000 + n);
                    let msg_id = format!("k-{w}-{n}");
                    let answer = log.append_envelope(&env, &msg_id).await;
                    if answer.is_err() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    answers.push((msg_id, env, answer));
                    n += 1;
                }
                answers
            })
        })
        .collect();
    // Kill it while batches are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metrics.group_commit_batches().0 < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no batches: {}",
            nats.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    nats.restart().await;

    let (ok, failed): (Vec<_>, Vec<_>) = answers.iter().partition(|(_, _, a)| a.is_ok());
    let log = EventLog::open(&s).await.unwrap();
    let mut holders: HashMap<u64, &str> = HashMap::new();
    for (msg_id, env, answer) in &ok {
        let seq = answer.as_ref().unwrap().seq;
        assert!(
            holders.insert(seq, msg_id).is_none(),
            "{msg_id}: sequence {seq} answered twice"
        );
        assert_eq!(
            stored_id(&log, seq).await,
            env.id,
            "{msg_id} answered {seq}"
        );
    }
    // The kill came while appends were in flight: some were answered, some refused.
    assert!(
        !ok.is_empty() && !failed.is_empty(),
        "{} ok, {} failed",
        ok.len(),
        failed.len()
    );
    eprintln!(
        "{} answered success, {} failed, {} batches before the kill",
        ok.len(),
        failed.len(),
        metrics.group_commit_batches().0
    );
}

#[tokio::test]
async fn on_the_debian_server_auto_appends_with_single_publishes_and_on_is_refused() {
    let mut nats = NatsNode::start();
    nats.wait_listening().await;
    let (log, metrics) = open(&settings(&nats.url(), |_| {})).await;
    assert!(!log.group_commit_active(), "2.9.10 has no atomic batches");

    let appends: Vec<_> = (0..200).map(|n| (format!("o-{n}"), envelope(n))).collect();
    let again = appends[7].clone();
    let answers = append_all(&log, appends).await;
    assert_each_stored_at_its_sequence(&log, &answers).await;
    let repeat = log.append_envelope(&again.1, &again.0).await.unwrap();
    assert!(repeat.duplicate, "deduplicated");
    assert_eq!(repeat.seq, answers[7].2.as_ref().unwrap().seq);
    assert_eq!(metrics.group_commit_batches(), (0, 0), "no batch sent");

    let on = settings(&nats.url(), |s| s.group_commit = GroupCommit::On);
    let log = EventLog::dial(&on).await.unwrap();
    let refused = log.ensure_stream(&on).await.unwrap_err().to_string();
    assert!(
        refused.contains("nats.group_commit") && refused.contains("2.12"),
        "{refused}"
    );
}
