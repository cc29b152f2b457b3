//! The outcome stream on JetStream (`<stream>_OUTCOMES`): ensured beside the event stream,
//! and published to only on the condition that its last sequence is the one the
//! publisher knows, so a stale publisher cannot put an older outcome after a newer one.

use async_nats::jetstream::stream;
use bytes::Bytes;

use crate::{
    settings::{NatsSettings, Storage},
    store::stream::{Appended, EventLog, LogError},
};

fn js_err(e: impl std::fmt::Display) -> LogError {
    LogError::Jetstream(e.to_string())
}

/// The outcome stream (`<stream>_OUTCOMES`, subjects `<prefix>_outcome.<type>`), on the
/// event log's connection. Cheap to clone.
#[derive(Clone)]
pub struct OutcomeStream {
    log: EventLog,
    name: String,
    prefix: String,
}

impl OutcomeStream {
    /// The outcome stream of `settings`, without touching the server.
    pub fn new(log: &EventLog, settings: &NatsSettings) -> Self {
        Self {
            log: log.clone(),
            name: settings.outcome_stream(),
            prefix: settings.outcome_subject_prefix(),
        }
    }

    /// Creates the stream with the event stream's storage, replicas and duplicate window,
    /// or brings those of an existing one in line (its other limits, e.g. a `max_age` an
    /// operator set, are kept).
    pub async fn ensure(log: &EventLog, settings: &NatsSettings) -> Result<Self, LogError> {
        let this = Self::new(log, settings);
        let js = log.jetstream();
        let storage = match settings.storage {
            Storage::Memory => stream::StorageType::Memory,
            Storage::File => stream::StorageType::File,
        };
        let subjects = vec![format!("{}.>", this.prefix)];
        let window = settings.duplicate_window;
        match js.get_stream(&this.name).await {
            Ok(mut existing) => {
                let mut config = existing.info().await.map_err(js_err)?.config.clone();
                if config.storage != storage {
                    return Err(LogError::Jetstream(format!(
                        "stream {} exists with {:?} storage but nats.storage says {:?}; \
                         storage cannot change in place",
                        this.name, config.storage, storage
                    )));
                }
                if config.subjects != subjects
                    || config.duplicate_window != window
                    || config.num_replicas != settings.replicas
                {
                    config.subjects = subjects;
                    config.duplicate_window = window;
                    config.num_replicas = settings.replicas;
                    js.update_stream(&config).await.map_err(js_err)?;
                }
            }
            Err(_) => {
                js.create_stream(stream::Config {
                    name: this.name.clone(),
                    subjects,
                    storage,
                    num_replicas: settings.replicas,
                    duplicate_window: window,
                    retention: stream::RetentionPolicy::Limits,
                    // An outcome once published is never changed.
                    deny_delete: true,
                    deny_purge: true,
                    allow_direct: true,
                    description: Some(format!(
                        "wxledger outcomes: decisions folded from {}",
                        settings.stream
                    )),
                    ..Default::default()
                })
                .await
                .map_err(js_err)?;
            }
        }
        Ok(this)
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subject an outcome type is published on: `<prefix>_outcome.<type>`.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}", self.prefix)
    }

    /// The sequence of the newest outcome stored (0 for an empty stream): the condition
    /// of a publisher's first publish.
    pub async fn last_seq(&self) -> Result<u64, LogError> {
        let mut stream = self
            .log
            .jetstream()
            .get_stream(&self.name)
            .await
            .map_err(js_err)?;
        Ok(stream.info().await.map_err(js_err)?.state.last_sequence)
    }

    /// Publishes one message with `Nats-Msg-Id` = `id` if the stream's last sequence is
    /// still `expected_last`, and waits for the acknowledgement; otherwise it is refused
    /// with [`LogError::Overtaken`] and nothing is stored. A repeat of `id` inside the
    /// duplicate window is answered as a duplicate, whatever the condition.
    pub async fn publish(
        &self,
        id: &str,
        kind: &str,
        expected_last: u64,
        payload: Bytes,
    ) -> Result<Appended, LogError> {
        self.log
            .publish(self.subject(kind), id, Some(expected_last), payload)
            .await
    }
}
