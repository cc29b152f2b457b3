//! Atomic batch publish (ADR-50; nats-server 2.12+, stream option `allow_atomic`): the
//! wire protocol of one batch, the stream setting that allows it, and what the server's
//! refusals mean.
//!
//! A batch is ordinary publishes carrying `Nats-Batch-Id` and `Nats-Batch-Sequence` (1..n);
//! the last also carries `Nats-Batch-Commit: 1` and is a request. The server stages the
//! batch and stores all of it or none under one lock, then answers the commit with one
//! PubAck: `{"stream","seq","batch","count"}`, `seq` being the last message's sequence and
//! the others the ones just before it. Checked against nats-server 2.15.1: a batch that
//! holds a msg id already in the duplicate window, or one msg id twice, is refused whole
//! with err_code 10201; a stream without `allow_atomic` answers 10174; more than 1000
//! messages 10199; a batch id longer than 64 characters 10179.

use std::time::Duration;

use async_nats::{header::NATS_MESSAGE_ID, HeaderMap};
use bytes::Bytes;
use serde::Deserialize;

use super::error::{js_err, LogError};

const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// The first nats-server release with atomic batch publish.
const FIRST_VERSION: (u64, u64) = (2, 12);

/// One message of a batch.
#[derive(Debug, Clone)]
pub(super) struct Message {
    /// Its subject (one of the stream's).
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// The payload.
    pub payload: Bytes,
}

/// Why a batch was refused; in every case nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// A msg id of the batch is already in the duplicate window (err_code 10201).
    Duplicate,
    /// The server has too many batches open (10210), or found the batch incomplete or too
    /// large (10176, 10199): this batch cannot be committed, the next may.
    Busy(&'static str),
    /// The stream or server refuses atomic batches as sent: `allow_atomic` is off (10174)
    /// or a header is not accepted in a batch (10177).
    Unsupported,
    /// Anything else the server answered (JetStream unavailable, a stream limit, ...).
    Other(String),
}

impl Refused {
    fn from_code(err_code: u64, description: String) -> Self {
        match err_code {
            10201 => Self::Duplicate,
            10210 => Self::Busy("busy"),
            10176 | 10199 => Self::Busy("incomplete"),
            10174 | 10177 => Self::Unsupported,
            _ => Self::Other(format!("{description} (err_code {err_code})")),
        }
    }
}

/// What became of a batch that was not committed.
#[derive(Debug)]
pub(super) enum BatchError {
    /// The server refused it: nothing of it was stored.
    Refused(Refused),
    /// No answer (in time): it may or may not be stored, as with an unacknowledged
    /// single publish.
    NotAcknowledged(LogError),
    /// The commit was acknowledged as one message, not as the batch (a server that took
    /// the batch headers for unknown ones and stored each message alone): which sequences
    /// the others got is unknown, so none is answered from it; a retry with the same msg
    /// id is answered by deduplication.
    NotBatched(String),
}

/// The server's answer to a commit (or to any JetStream publish).
#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    batch: Option<String>,
    #[serde(default)]
    count: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// Publishes `messages` (at most 1000, at least 1) as one atomic batch and waits up to
/// `timeout` for the commit's acknowledgement: the stream sequence of the last message;
/// message `i` of `n` has `last - (n - 1 - i)`.
pub(super) async fn publish(
    client: &async_nats::Client,
    messages: &[Message],
    timeout: Duration,
) -> Result<u64, BatchError> {
    let (last, rest) = messages.split_last().expect("a batch has a message");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let headers = |sequence: usize, msg_id: &str| {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, msg_id);
        h.insert(BATCH_ID, id.as_str());
        h.insert(BATCH_SEQUENCE, sequence.to_string().as_str());
        h
    };
    let lost = |e: &dyn std::fmt::Display| {
        BatchError::NotAcknowledged(LogError::NotAcknowledged(e.to_string()))
    };
    // No reply asked before the commit: the server answers only the commit, and a batch
    // with a gap (a message lost on the way) is refused whole.
    for (i, m) in rest.iter().enumerate() {
        client
            .publish_with_headers(
                m.subject.clone(),
                headers(i + 1, &m.msg_id),
                m.payload.clone(),
            )
            .await
            .map_err(|e| lost(&e))?;
    }
    let mut commit = headers(messages.len(), &last.msg_id);
    commit.insert(BATCH_COMMIT, "1");
    let request = async_nats::Request::new()
        .headers(commit)
        .payload(last.payload.clone())
        .timeout(Some(timeout));
    let reply = client
        .send_request(last.subject.clone(), request)
        .await
        .map_err(|e| lost(&e))?;
    let ack: PubAck = serde_json::from_slice(&reply.payload).map_err(|e| lost(&e))?;
    if let Some(e) = ack.error {
        return Err(BatchError::Refused(Refused::from_code(
            e.err_code,
            e.description,
        )));
    }
    if ack.batch.as_deref() != Some(id.as_str()) || ack.count != Some(messages.len() as u64) {
        return Err(BatchError::NotBatched(format!(
            "the commit was acknowledged as batch {:?} of {:?} messages, not {id} of {}",
            ack.batch,
            ack.count,
            messages.len()
        )));
    }
    Ok(ack.seq)
}

/// Whether nats-server `version` (`2.15.1`, `2.12.0-RC.1`) has atomic batch publish.
pub(super) fn server_supports(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.trim_start_matches('v').parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= FIRST_VERSION,
        _ => false,
    }
}

/// Sets `allow_atomic` on `stream` unless it is set. async-nats' stream config knows the
/// option only with its `server_2_12` feature, which also switches consumers to an API
/// nats-server 2.9 lacks; so the stream's config is read and written back as the server
/// gave it (every field kept), with the one option changed.
pub(super) async fn allow_on_stream(
    client: &async_nats::Client,
    stream: &str,
    timeout: Duration,
) -> Result<(), LogError> {
    let api = |verb: &'static str, body: Bytes| {
        let request = async_nats::Request::new()
            .payload(body)
            .timeout(Some(timeout));
        let subject = format!("$JS.API.STREAM.{verb}.{stream}");
        async move {
            let reply = client
                .send_request(subject, request)
                .await
                .map_err(js_err)?;
            let answer: serde_json::Value =
                serde_json::from_slice(&reply.payload).map_err(js_err)?;
            match answer.get("error") {
                Some(e) => Err(LogError::Jetstream(format!("stream {stream}: {verb}: {e}"))),
                None => Ok(answer),
            }
        }
    };
    let info = api("INFO", Bytes::new()).await?;
    let mut config = info
        .get("config")
        .cloned()
        .ok_or_else(|| LogError::Jetstream(format!("stream {stream}: INFO without config")))?;
    if config.get("allow_atomic") == Some(&serde_json::Value::Bool(true)) {
        return Ok(());
    }
    config["allow_atomic"] = serde_json::Value::Bool(true);
    let body = serde_json::to_vec(&config).expect("a JSON value serializes");
    api("UPDATE", Bytes::from(body)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_batches_start_at_2_12() {
        for (version, supported) in [
            ("2.9.10", false),
            ("2.10.22", false),
            ("2.11.9", false),
            ("2.12.0", true),
            ("2.12.0-RC.1", true),
            ("2.15.1", true),
            ("3.0.0", true),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(server_supports(version), supported, "{version}");
        }
    }

    #[test]
    fn refusals_are_read_by_err_code() {
        let read = |code| Refused::from_code(code, "d".into());
        assert_eq!(read(10201), Refused::Duplicate);
        assert_eq!(read(10174), Refused::Unsupported);
        assert_eq!(read(10177), Refused::Unsupported);
        assert_eq!(read(10210), Refused::Busy("busy"));
        assert_eq!(read(10176), Refused::Busy("incomplete"));
        assert!(matches!(read(10008), Refused::Other(m) if m.contains("10008")));
    }
}
