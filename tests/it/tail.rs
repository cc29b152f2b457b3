//! `wxledger events tail`: events appended through the API, read back as a consumer sees
//! them, with a subject filter, a start sequence, a limit and --follow.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wxledger::{
    settings::NatsSettings,
    tools::tail::{tail, TailLine, TailOptions},
};

use crate::common::{nats_url, TestEnv};

fn nats_of(env: &TestEnv) -> NatsSettings {
    NatsSettings {
        url: nats_url(),
        stream: env.stream.clone(),
        subject_prefix: env.prefix.clone(),
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn collect(env: &TestEnv, options: TailOptions) -> Vec<TailLine> {
    let mut lines = Vec::new();
    let settings = nats_of(env);
    let emitted = tokio::time::timeout(
        Duration::from_secs(20),
        tail(&settings, &options, |l| {
            lines.push(l.clone());
            Ok(())
        }),
    )
    .await
    .expect("tail without --follow ends by itself")
    .expect("tail reads the stream");
    assert_eq!(emitted, lines.len() as u64);
    lines
}

fn options(subject: String, from_seq: u64) -> TailOptions {
    TailOptions {
        subject,
        from_seq,
        follow: false,
        limit: None,
    }
}

#[tokio::test]
async fn tail_prints_the_filtered_events_from_a_sequence() {
    let env = TestEnv::start().await;
    env.login("o-tail-1").await;
    let (token, _) = env.login("o-tail-2").await;
    env.login("o-tail-1").await;
    let (status, _) = env
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"amount": 100, "description": "tea"})),
        )
        .await;
    assert!(status.is_success());
    let events = env.events().await;
    let types: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "user.registered",
            "user.registered",
            "user.logged_in",
            "order.placed"
        ]
    );

    // User events from the second on: the filter drops the order, the start the first.
    let from = events[1].0;
    let lines = collect(&env, options(format!("{}.user.>", env.prefix), from)).await;
    let expected: Vec<&(u64, Value)> = events[1..3].iter().collect();
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for (line, (seq, envelope)) in lines.iter().zip(expected) {
        assert_eq!(line.seq, *seq);
        assert_eq!(
            line.subject,
            format!("{}.{}", env.prefix, envelope["type"].as_str().unwrap())
        );
        assert_eq!(&line.envelope, envelope);
        assert!(
            line.msg_id.as_deref().is_some_and(|id| !id.is_empty()),
            "{line:?}"
        );
        for field in [
            "id",
            "type",
            "version",
            "occurred_at",
            "correlation_id",
            "data",
        ] {
            assert!(line.envelope.get(field).is_some(), "{field} in {line:?}");
        }
        let printed = serde_json::to_value(line).unwrap();
        assert_eq!(printed["seq"], json!(seq));
        assert!(printed.get("payload").is_none());
    }

    // Everything, limited; and a filter nothing matches ends at once with nothing.
    let all = collect(&env, options(format!("{}.>", env.prefix), 1)).await;
    assert_eq!(all.len(), 4);
    let limited = collect(
        &env,
        TailOptions {
            limit: Some(2),
            ..options(format!("{}.>", env.prefix), 1)
        },
    )
    .await;
    assert_eq!(
        limited.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [events[0].0, events[1].0]
    );
    assert!(
        collect(&env, options(format!("{}.refund.>", env.prefix), 1))
            .await
            .is_empty()
    );
    assert!(collect(&env, options(format!("{}.>", env.prefix), 99))
        .await
        .is_empty());
}

#[tokio::test]
async fn tail_follow_waits_for_new_events() {
    let env = TestEnv::start().await;
    env.login("o-follow").await;
    let head = env.last_seq().await;
    let settings = nats_of(&env);
    let options = TailOptions {
        subject: format!("{}.user.logged_in", env.prefix),
        from_seq: head + 1,
        follow: true,
        limit: Some(2),
    };
    let follower = tokio::spawn(async move {
        let mut lines = Vec::new();
        tail(&settings, &options, |l| {
            lines.push(l.clone());
            Ok(())
        })
        .await
        .map(|_| lines)
    });
    // The stream has nothing new yet: a follower waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!follower.is_finished());
    env.login("o-follow").await;
    env.login("o-follow").await;
    let lines = tokio::time::timeout(Duration::from_secs(20), follower)
        .await
        .expect("the follower sees both logins")
        .unwrap()
        .unwrap();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].seq > head && lines[1].seq > lines[0].seq);
    assert!(lines.iter().all(|l| l.envelope["type"] == "user.logged_in"));
}

/// Runs `wxledger events tail ARGS` against `stream`.
async fn run_tail(stream: String, prefix: String, args: Vec<String>) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"))
        .arg("events")
        .arg("tail")
        .args(args)
        .env_remove("WXLEDGER_CONFIG")
        .env("WXLEDGER__NATS__URL", nats_url())
        .env("WXLEDGER__NATS__STREAM", stream)
        .env("WXLEDGER__NATS__SUBJECT_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the wxledger binary runs")
}

#[tokio::test]
async fn the_binary_prints_json_lines_and_never_creates_a_stream() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-tail-bin").await;
    env.order_with_prepay(&token, 250).await;
    let events = env.events().await;
    let run = |stream: String, args: Vec<String>| run_tail(stream, env.prefix.clone(), args);
    // The default filter is every event under the configured prefix.
    let out = run(env.stream.clone(), vec![]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), events.len());
    for (line, (seq, envelope)) in lines.iter().zip(&events) {
        assert_eq!(line["seq"], json!(seq));
        assert_eq!(&line["envelope"], envelope);
        assert!(line["msg_id"].is_string());
    }

    let out = run(
        env.stream.clone(),
        vec![
            "--subject".into(),
            format!("{}.order.>", env.prefix),
            "--from-seq".into(),
            "2".into(),
            "--limit".into(),
            "1".into(),
        ],
    )
    .await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["envelope"]["type"], "order.placed");
    assert_eq!(line["subject"], format!("{}.order.placed", env.prefix));

    // A stream that does not exist is an error, and tail does not create it.
    let missing = format!("{}_MISSING", env.stream);
    let out = run(missing.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream_not_found"));
    let client = async_nats::connect(nats_url()).await.unwrap();
    assert!(async_nats::jetstream::new(client)
        .get_stream(&missing)
        .await
        .is_err());
}
