//! What the stream says about itself: the sequences quarantined so far, and its identity
//! (creation time, first event, last sequence), read by subject and by sequence.

use async_nats::jetstream::stream;
use chrono::DateTime;

use super::{
    error::{js_err, LogError},
    EventLog,
};
use crate::{
    core::events::{Quarantine, Recorded},
    store::identity::StreamIdentity,
};

impl EventLog {
    /// The sequences quarantined so far: every `event.quarantined` on the stream, read by
    /// subject (there are few), so a reader knows them before it reaches the events they
    /// skip. One that does not decode is passed over here; the projector halts on it.
    pub async fn quarantine(&self) -> Result<Quarantine, LogError> {
        let stream = self
            .jetstream()
            .get_stream(self.stream_name())
            .await
            .map_err(js_err)?;
        let subject = self.subject("event.quarantined");
        let mut quarantine = Quarantine::default();
        let mut from = 1;
        loop {
            let found = stream
                .raw_message_builder()
                .sequence(from)
                .next_by_subject(subject.clone())
                .send()
                .await;
            let message = match found {
                Ok(m) => m,
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Ok(quarantine)
                }
                Err(e) => return Err(js_err(e)),
            };
            if let Ok(rec) = Recorded::from_payload(message.sequence, &message.payload) {
                quarantine.note(&rec);
            }
            from = message.sequence + 1;
        }
    }

    /// The stream's identity (its creation time and first event) and last sequence,
    /// against which the projector checks the stream its projection was built from.
    pub async fn identity(&self) -> Result<StreamIdentity, LogError> {
        // Getting the stream asks for its info: one request, not two.
        let stream = self
            .jetstream()
            .get_stream(self.stream_name())
            .await
            .map_err(js_err)?;
        let info = stream.cached_info();
        let created =
            DateTime::from_timestamp(info.created.unix_timestamp(), info.created.nanosecond())
                .expect("NATS tells a valid time");
        let first = if info.state.messages == 0 {
            None
        } else {
            let found = stream
                .raw_message_builder()
                .sequence(info.state.first_sequence)
                .send()
                .await;
            match found {
                Ok(m) => Some(m.payload),
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => None,
                Err(e) => return Err(js_err(e)),
            }
        };
        Ok(StreamIdentity::new(
            created,
            first.as_ref(),
            info.state.last_sequence,
        ))
    }
}
