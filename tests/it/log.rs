//! The event log itself: the stream ensured idempotently from settings, appends
//! deduplicated by `Nats-Msg-Id`, reads from any sequence and of a closed range.

use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;
use wxledger::{
    core::events::{Event, Recorded, UserRegistered},
    settings::NatsSettings,
    store::stream::{log::Draft, EventLog},
};

use crate::common::nats_url;

fn settings(id: &str, window: u64) -> NatsSettings {
    NatsSettings {
        url: nats_url(),
        stream: format!("T_LOG_{id}"),
        subject_prefix: format!("t_log_{id}"),
        duplicate_window: Duration::from_secs(window),
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn registered(n: u128) -> Event {
    Event::UserRegistered(UserRegistered {
        user_id: Uuid::from_u128(n),
        openid: format!("o-{n}"),
        unionid: None,
    })
}

async fn append(log: &EventLog, event: &Event, msg_id: &str) -> wxledger::store::stream::Appended {
    log.append(Draft {
        event,
        correlation_id: "test",
        msg_id,
        occurred_at: chrono::Utc::now(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_stream_is_ensured_idempotently_and_appends_dedupe_by_msg_id() {
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let log = EventLog::connect(&settings(&id, 120)).await.unwrap();
    // Connecting again, with another duplicate window, updates the same stream.
    let again = EventLog::connect(&settings(&id, 60)).await.unwrap();

    let first = append(&log, &registered(1), "k-1").await;
    assert_eq!((first.seq, first.duplicate), (1, false));
    let repeat = append(&again, &registered(1), "k-1").await;
    assert_eq!(
        (repeat.seq, repeat.duplicate),
        (1, true),
        "same msg id: nothing new"
    );
    let second = append(&log, &registered(2), "k-2").await;
    assert_eq!(second.seq, 2);
    append(&log, &registered(3), "k-3").await;
    assert_eq!(log.last_seq().await.unwrap(), 3);

    let mut from_two = log.read_from(2).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (seq, payload) = tokio::time::timeout(Duration::from_secs(5), from_two.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let rec = Recorded::from_payload(seq, &payload).unwrap();
        seen.push((rec.seq, rec.event));
    }
    assert_eq!(seen, vec![(2, registered(2)), (3, registered(3))]);
    log.delete_stream().await.unwrap();
}

#[tokio::test]
async fn a_range_read_ends_after_its_last_sequence_and_an_empty_one_reads_nothing() {
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let log = EventLog::connect(&settings(&id, 120)).await.unwrap();
    for n in 1..=4 {
        append(&log, &registered(n), &format!("k-{n}")).await;
    }
    let read = |seqs| {
        let log = log.clone();
        async move {
            let messages = log.read_range(seqs).await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), messages.collect::<Vec<_>>())
                .await
                .expect("a range read ends by itself")
                .into_iter()
                .map(|m| m.unwrap().0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read(2..=3).await, vec![2, 3]);
    assert_eq!(read(0..=1).await, vec![1], "sequences start at 1");
    // An empty stream's range, as replay asks for it (`1..=head`).
    let head = 0;
    assert_eq!(read(1..=head).await, Vec::<u64>::new());
    assert_eq!(read(4..=4).await, vec![4]);
    log.delete_stream().await.unwrap();
}
