//! `wxledger events tail`: the stream as a consumer sees it, through an ordered consumer
//! (the same kind the projector reads with), one JSON line per event. Read-only: it
//! never creates or changes the stream. Phone numbers that old events
//! (`user.phone_bound` v1) carry in clear are printed masked: an operator's terminal is
//! no place for personal data. New events carry them sealed and are printed as they are.

use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer},
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::settings::NatsSettings;

/// What to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailOptions {
    /// Subject filter, e.g. `wxledger.>` or `wxledger.order.>`.
    pub subject: String,
    /// First stream sequence to print (1 = the beginning).
    pub from_seq: u64,
    /// Keep waiting for new events after the end of the stream.
    pub follow: bool,
    /// Stop after this many events.
    pub limit: Option<u64>,
}

/// Why the tail stopped short. Each variant has a stable [`code`](TailError::code).
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// NATS could not be reached.
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// The stream does not exist (tail never creates it).
    #[error("stream {0} not found")]
    NoStream(String),
    /// The consumer could not be made (e.g. a filter outside the stream's subjects) or
    /// reading failed.
    #[error("jetstream: {0}")]
    Read(String),
    /// The output could not be written (e.g. a closed pipe).
    #[error("output: {0}")]
    Write(#[from] std::io::Error),
}

impl TailError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            TailError::Unavailable(_) => "nats_unavailable",
            TailError::NoStream(_) => "stream_not_found",
            TailError::Read(_) => "read_failed",
            TailError::Write(_) => "output_failed",
        }
    }
}

/// One event as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TailLine {
    /// Stream sequence: the event's position in the one total order.
    pub seq: u64,
    /// The subject it was published on.
    pub subject: String,
    /// The `Nats-Msg-Id` header (the append's idempotency key), if any.
    pub msg_id: Option<String>,
    /// The payload: the envelope `{id, type, version, occurred_at, correlation_id, data}`
    /// (`null` if the payload is not JSON).
    pub envelope: Value,
    /// The payload as text, only when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

fn read_err(e: impl std::fmt::Display) -> TailError {
    TailError::Read(e.to_string())
}

/// Masks the number of a `user.phone_bound` v1 envelope (`138****8000`), as wxledger
/// shows a phone everywhere else.
fn mask_plain_phone(envelope: &mut Value) {
    if envelope["type"] != "user.phone_bound" || envelope["version"] != 1 {
        return;
    }
    let data = &mut envelope["data"];
    if let (Some(cc), Some(number)) = (
        data["country_code"].as_str(),
        data["pure_phone_number"].as_str(),
    ) {
        let masked = crate::core::fold::Phone::new(cc, number).masked();
        data["pure_phone_number"] = Value::String(masked);
    }
}

/// Reads the events of `settings.stream` matching `options`, in stream order, and hands
/// each to `emit`; answers how many were emitted. Without `follow` it stops at the end
/// of the stream as it was when the tail started.
pub async fn tail(
    settings: &NatsSettings,
    options: &TailOptions,
    mut emit: impl FnMut(&TailLine) -> std::io::Result<()>,
) -> Result<u64, TailError> {
    let client = crate::store::stream::connect::connect(settings, "wxledger-tail")
        .await
        .map_err(|e| TailError::Unavailable(e.to_string()))?;
    let js = jetstream::new(client.clone());
    let mut stream = js
        .get_stream(&settings.stream)
        .await
        .map_err(|_| TailError::NoStream(settings.stream.clone()))?;
    let end = stream.info().await.map_err(read_err)?.state.last_sequence;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: options.subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: options.from_seq.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(read_err)?;
    let mut emitted = 0;
    let reached_limit = |n: u64| options.limit.is_some_and(|limit| n >= limit);
    if reached_limit(0)
        || (!options.follow && (consumer.cached_info().num_pending == 0 || options.from_seq > end))
    {
        return Ok(0);
    }
    let mut messages = consumer.messages().await.map_err(read_err)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(read_err)?;
        let info = message.info().map_err(read_err)?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let (envelope, payload) = match serde_json::from_slice::<Value>(&message.payload) {
            Ok(mut value) => {
                mask_plain_phone(&mut value);
                (value, None)
            }
            Err(_) => (
                Value::Null,
                Some(String::from_utf8_lossy(&message.payload).into_owned()),
            ),
        };
        let line = TailLine {
            seq,
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .as_ref()
                .and_then(|h| h.get(NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned()),
            envelope,
            payload,
        };
        emit(&line)?;
        emitted += 1;
        if reached_limit(emitted) || (!options.follow && (pending == 0 || seq >= end)) {
            break;
        }
    }
    let _ = client.flush().await;
    Ok(emitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_phones_of_old_events_are_masked_and_nothing_else_changes() {
        let mut v1 = serde_json::json!({"type": "user.phone_bound", "version": 1, "data": {
            "user_id": "u", "country_code": "86", "pure_phone_number": "13800138000",
            "source": "phone_code"}});
        mask_plain_phone(&mut v1);
        assert_eq!(v1["data"]["pure_phone_number"], "138****8000");
        let v2 = serde_json::json!({"type": "user.phone_bound", "version": 2, "data": {
            "user_id": "u", "phone": {"key_id": "k", "ciphertext": "AA"}}});
        let mut same = v2.clone();
        mask_plain_phone(&mut same);
        assert_eq!(same, v2);
    }
}
