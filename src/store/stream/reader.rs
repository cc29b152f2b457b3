//! Reading the stream: an ordered consumer from any sequence, kept going through
//! reconnections, dead consumers and cluster elections (see `Reader`).

use std::{ops::RangeInclusive, sync::atomic::Ordering, time::Duration};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::{future::BoxFuture, stream::BoxStream, Stream, StreamExt};

use super::{
    connect::Reconnections,
    error::{js_err, LogError},
    EventLog,
};

impl EventLog {
    /// Every event from `start_seq` on, in stream order, as `(seq, payload)`; it waits
    /// for new events at the end (the live projector's read).
    pub async fn read_from(
        &self,
        start_seq: u64,
    ) -> Result<impl Stream<Item = Result<(u64, Bytes), LogError>> + Send + Unpin, LogError> {
        self.read_range(start_seq..=u64::MAX).await
    }

    /// The events of `seqs`, in stream order, as `(seq, payload)`: an ordered consumer
    /// from the range's start that ends after its last sequence (or the first one past
    /// it), waiting at the stream's end meanwhile. An empty range reads nothing and makes
    /// no consumer. The one reader of the stream: the projector, replay, rebuild, audit
    /// and the benches all read through it. An error is passed on; the caller stops.
    ///
    /// The consumer lives in the server's memory, so a restarted server has forgotten it:
    /// after every reconnection the read makes a new one from the next sequence at once,
    /// and a consumer lost otherwise shows as missed idle heartbeats (see
    /// [`PULL_EXPIRES`]).
    pub async fn read_range(
        &self,
        seqs: RangeInclusive<u64>,
    ) -> Result<impl Stream<Item = Result<(u64, Bytes), LogError>> + Send + Unpin, LogError> {
        let (start, end) = (seqs.start().max(&1).to_owned(), *seqs.end());
        if start > end {
            return Ok(futures::stream::empty().boxed());
        }
        let mut reconnections = self.reconnections.clone();
        reconnections.borrow_and_update();
        let reader = Reader {
            messages: self.ordered_from(start).await?,
            log: self.clone(),
            next: start,
            reconnections,
            direct: false,
            renewing: None,
        };
        // Dropping the consumer once the range is read stops its deliveries.
        Ok(
            futures::stream::unfold(Some(reader), move |reader| async move {
                let mut reader = reader?;
                match reader.next().await? {
                    Ok((seq, _)) if seq > end => None,
                    Ok((seq, payload)) if seq == end => Some((Ok((seq, payload)), None)),
                    next => Some((next, Some(reader))),
                }
            })
            .boxed(),
        )
    }

    /// An ordered consumer from `start_seq` on, without end.
    async fn ordered_from(&self, start_seq: u64) -> Result<Messages, LogError> {
        self.ordered_from_with(&self.js, start_seq).await
    }

    /// [`EventLog::ordered_from`], asking through `js` (with its timeout).
    async fn ordered_from_with(
        &self,
        js: &jetstream::Context,
        start_seq: u64,
    ) -> Result<Messages, LogError> {
        let stream = js.get_stream(&self.stream).await.map_err(js_err)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start_seq,
                },
                max_expires: PULL_EXPIRES,
                ..Default::default()
            })
            .await
            .map_err(js_err)?;
        let messages = consumer.messages().await.map_err(js_err)?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(js_err)?;
                let seq = m.info().map_err(js_err)?.stream_sequence;
                Ok((seq, m.payload.clone()))
            })
            .boxed())
    }

    /// [`EventLog::last_seq`] with the [`super::log::QUICK_TIMEOUT`].
    async fn quick_last_seq(&self) -> Result<u64, LogError> {
        Self::last_seq_with(&self.quick, &self.stream).await
    }

    /// The payload of the event at `seq` from any replica (a direct get, with the
    /// [`super::log::QUICK_TIMEOUT`]), or `None` when the one that answered has no such event (yet).
    async fn direct_at(&self, seq: u64) -> Result<Option<Bytes>, LogError> {
        let stream = self
            .quick
            .get_stream_no_info(&self.stream)
            .await
            .map_err(js_err)?;
        match stream.direct_get(seq).await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(js_err(e)),
        }
    }
}

/// The longest a read's pull request waits at the stream's end; the server sends an idle
/// heartbeat every half of it, and a consumer that misses two heartbeats is made again
/// from where it was (a frozen or restarted server), within about twice this.
pub const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// How long a read waits for its next event before it looks whether the stream holds
/// it: at once in this process's own appends, and every [`STALL_ASK`] by asking the
/// stream. If the stream holds it, the consumer is stuck (its server died in a cluster,
/// and async-nats' own recreation backs off to 10 s a try, or hangs) and a new one is
/// made from the next sequence. Found by the cluster tests: a killed stream leader left
/// the projector without events for over 30 s, then (with a 4 s look) for up to 4 s
/// after the new leader was elected.
pub const STALL: Duration = Duration::from_millis(250);

/// How often a waiting read asks the stream for its last sequence, and how often a
/// read going event by event tries for a consumer again.
pub const STALL_ASK: Duration = Duration::from_secs(1);

/// What an ordered consumer delivers.
type Messages = BoxStream<'static, Result<(u64, Bytes), LogError>>;

/// One read of the stream: the consumer in hand, the next sequence it owes, and the
/// client's reconnections, watched to make the consumer again after each one.
///
/// A consumer cannot be made while the cluster has no meta leader (a killed node may have
/// led both the stream and the meta group, and each elects on its own, 4–9 s apart).
/// Meanwhile the read goes event by event with direct gets, which any replica answers
/// (the stream allows them), and keeps trying for a consumer in the background.
struct Reader {
    messages: Messages,
    log: EventLog,
    next: u64,
    reconnections: Reconnections,
    /// Reading event by event: no consumer could be made.
    direct: bool,
    /// A new consumer being made (from the sequence next was when it began).
    renewing: Option<BoxFuture<'static, Result<Messages, LogError>>>,
}

impl Reader {
    /// The next event, or an error; `None` once the consumer ends.
    async fn next(&mut self) -> Option<Result<(u64, Bytes), LogError>> {
        let mut watching = true;
        let mut looks = tokio::time::interval_at(tokio::time::Instant::now() + STALL, STALL);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut asked = tokio::time::Instant::now();
        loop {
            if self.direct {
                // Not there yet, or NATS away: the next look tries again.
                if let Ok(Some(payload)) = self.log.direct_at(self.next).await {
                    let seq = self.next;
                    self.next += 1;
                    return Some(Ok((seq, payload)));
                }
            }
            tokio::select! {
                // An event in hand first: the looks and their timer only matter while
                // none comes.
                biased;
                next = self.messages.next(), if !self.direct => {
                    match &next {
                        // A consumer made before direct reads went further: already read.
                        Some(Ok((seq, _))) if *seq < self.next => continue,
                        Some(Ok((seq, _))) => self.next = seq + 1,
                        _ => {}
                    }
                    return next;
                }
                _ = looks.tick() => {
                    if asked.elapsed() >= STALL_ASK && self.direct {
                        asked = tokio::time::Instant::now();
                        self.renew(false);
                        continue;
                    }
                    if self.direct || self.renewing.is_some() {
                        continue;
                    }
                    // Nothing delivered for a while: fine at the stream's end, a stuck
                    // consumer if the stream holds what we wait for.
                    let held = if self.log.appended.load(Ordering::Relaxed) >= self.next {
                        true
                    } else if asked.elapsed() >= STALL_ASK {
                        asked = tokio::time::Instant::now();
                        // A failed look proves nothing: NATS may be electing a leader.
                        matches!(self.log.quick_last_seq().await, Ok(last) if last >= self.next)
                    } else {
                        false
                    };
                    if held {
                        tracing::warn!(from = self.next, "the stream holds events its consumer does not deliver; reading on with a new consumer");
                        self.renew(false);
                    }
                }
                renewed = renewal(&mut self.renewing) => {
                    self.renewing = None;
                    match renewed {
                        Ok(messages) => {
                            if self.direct {
                                tracing::info!(from = self.next, "a consumer again after reading event by event");
                            }
                            self.messages = messages;
                            self.direct = false;
                        }
                        Err(e) => {
                            if !self.direct {
                                tracing::warn!(from = self.next, error = %e, "no new consumer yet; reading event by event meanwhile");
                            }
                            self.messages = futures::stream::pending().boxed();
                            self.direct = true;
                        }
                    }
                }
                changed = self.reconnections.changed(), if watching => {
                    if changed.is_err() {
                        // The client is gone; its consumer ends on its own.
                        watching = false;
                        continue;
                    }
                    tracing::info!(from = self.next, "NATS reconnected; reading on with a new consumer");
                    self.renew(true);
                }
            }
        }
    }

    /// Starts making a new consumer from the next sequence, unless one is being made
    /// (`again`: even then, as after a reconnection, which lost the request in flight).
    fn renew(&mut self, again: bool) {
        if self.renewing.is_some() && !again {
            return;
        }
        let log = self.log.clone();
        let from = self.next;
        self.renewing = Some(Box::pin(async move {
            log.ordered_from_with(&log.quick, from).await
        }));
    }
}

/// The consumer being made, once made; never while none is.
async fn renewal(
    renewing: &mut Option<BoxFuture<'static, Result<Messages, LogError>>>,
) -> Result<Messages, LogError> {
    match renewing {
        Some(making) => making.await,
        None => std::future::pending().await,
    }
}
