//! The log's vocabulary below the handle: what can go wrong ([`LogError`]), what an append
//! is answered ([`Appended`]), and the one single publish every path ends in.

use async_nats::{
    header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID},
    jetstream::{self, context::PublishErrorKind},
    HeaderMap,
};
use bytes::Bytes;

/// What can go wrong talking to the log. All of it is infrastructure: retry later.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Not connected to NATS right now.
    #[error("NATS is not connected")]
    Disconnected,
    /// The append was not acknowledged (in time); it may or may not be stored, and a retry
    /// with the same message id is deduplicated.
    #[error("append not acknowledged: {0}")]
    NotAcknowledged(String),
    /// No connection could be had at start (the cause and URL named).
    #[error(transparent)]
    Connect(#[from] super::connect::ConnectError),
    /// Any other NATS or JetStream failure.
    #[error("jetstream: {0}")]
    Jetstream(String),
    /// A conditional publish was refused: the stream's last sequence was not the one
    /// expected, so someone else published meanwhile. Nothing was stored.
    #[error("refused: the stream moved past the expected last sequence {expected}")]
    Overtaken {
        /// The last sequence the publisher expected.
        expected: u64,
    },
}

pub(super) fn js_err(e: impl std::fmt::Display) -> LogError {
    LogError::Jetstream(e.to_string())
}

/// The acknowledgement of a durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's stream sequence (the original's, when this was a duplicate).
    pub seq: u64,
    /// The message id was seen inside the duplicate window: nothing new was stored.
    pub duplicate: bool,
}

/// One publish on `js` with `Nats-Msg-Id` (and `Nats-Expected-Last-Sequence`), waiting for
/// its acknowledgement: [`EventLog::publish`] once connected, and group commit's single
/// publishes.
pub(super) async fn publish_single(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    expected_last: Option<u64>,
    payload: Bytes,
) -> Result<Appended, LogError> {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, msg_id);
    if let Some(seq) = expected_last {
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, seq.to_string().as_str());
    }
    let refused = |e: jetstream::context::PublishError| match (e.kind(), expected_last) {
        (PublishErrorKind::WrongLastSequence, Some(expected)) => LogError::Overtaken { expected },
        _ => LogError::NotAcknowledged(e.to_string()),
    };
    let ack = js
        .publish_with_headers(subject, headers, payload)
        .await
        .map_err(refused)?
        .await
        .map_err(refused)?;
    Ok(Appended {
        seq: ack.sequence,
        duplicate: ack.duplicate,
    })
}
