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

/// The next event of `read` (up to 10 s): its sequence and event.
async fn next_event(
    read: &mut (impl futures::Stream<Item = Result<(u64, bytes::Bytes), wxledger::store::stream::LogError>>
              + Unpin),
) -> (u64, Event) {
    let (seq, payload) = tokio::time::timeout(Duration::from_secs(10), read.next())
        .await
        .expect("an event within 10 s")
        .expect("the read goes on")
        .expect("no error");
    (seq, Recorded::from_payload(seq, &payload).unwrap().event)
}

/// The names of `stream`'s consumers.
async fn consumer_names(client: &async_nats::Client, stream: &str) -> Vec<String> {
    let answer = client
        .request(format!("$JS.API.CONSUMER.NAMES.{stream}"), "".into())
        .await
        .unwrap();
    let names: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    serde_json::from_value(names["consumers"].clone()).unwrap_or_default()
}

/// While no consumer can be made (in a cluster: no meta leader yet after a node died;
/// here: the stream's consumer limit is full once the read's consumer is gone), a read
/// goes on event by event with direct gets, and takes a consumer again once it can.
#[tokio::test]
async fn a_read_goes_on_event_by_event_while_no_consumer_can_be_made() {
    use async_nats::jetstream::{consumer::pull, stream};
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let settings = settings(&id, 120);
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let limited = js
        .create_stream(stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.>", settings.subject_prefix)],
            max_consumers: 2,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let log = EventLog::open(&settings).await.unwrap();
    append(&log, &registered(1), "k-1").await;
    let mut read = log.read_from(1).await.unwrap();
    assert_eq!(next_event(&mut read).await, (1, registered(1)));

    // The read's consumer gone and the limit full: no new one can be made.
    let reads = consumer_names(&client, &settings.stream).await;
    assert_eq!(reads.len(), 1, "the read's consumer: {reads:?}");
    let durable = |name: &str| pull::Config {
        durable_name: Some(name.into()),
        ..Default::default()
    };
    limited.create_consumer(durable("a")).await.unwrap();
    limited.delete_consumer(&reads[0]).await.unwrap();
    limited.create_consumer(durable("b")).await.unwrap();
    append(&log, &registered(2), "k-2").await;
    append(&log, &registered(3), "k-3").await;
    assert_eq!(next_event(&mut read).await, (2, registered(2)));
    assert_eq!(next_event(&mut read).await, (3, registered(3)));

    // Room again: the read takes a consumer and goes on with it.
    limited.delete_consumer("b").await.unwrap();
    append(&log, &registered(4), "k-4").await;
    assert_eq!(next_event(&mut read).await, (4, registered(4)));
    // (The read makes it while someone waits on it, as the projector always does.)
    let (fifth, again) = tokio::join!(next_event(&mut read), async {
        let again = crate::common::eventually(Duration::from_secs(8), || async {
            consumer_names(&client, &settings.stream).await.len() == 2
        })
        .await;
        append(&log, &registered(5), "k-5").await;
        again
    });
    assert!(again, "the read made a consumer again");
    assert_eq!(fifth, (5, registered(5)));
    drop(read);
    log.delete_stream().await.unwrap();
}
