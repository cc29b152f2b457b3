//! Prometheus metrics, on `prometheus-client` (the Prometheus project's Rust client): the
//! families wxledger records into, and their OpenMetrics text for `GET /metrics`.
//!
//! Each [`Metrics`] owns its registry (no process-global recorder), so every daemon in a
//! test process keeps its own numbers. Labels come only from the bounded sets of
//! [`labels`]; gauges that need NATS or Postgres are refreshed by [`scrape`] with a timeout.

pub mod labels;
pub mod leader;
pub mod process;
mod register;
pub mod scrape;
mod settings;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

pub use settings::MetricsSettings;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histograms, in seconds (1 ms to 5 s).
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, AtomicU64>;

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The gauges a scrape refreshes (see [`scrape`]).
#[derive(Default)]
pub struct Gauges {
    /// 1 while the NATS connection is up.
    pub nats_up: Gauge,
    /// 1 when Postgres answered the scrape's query in time.
    pub postgres_up: Gauge,
    /// Pool: most connections.
    pub pool_max: Gauge,
    /// Pool: connections open.
    pub pool_size: Gauge,
    /// Pool: connections idle.
    pub pool_available: Gauge,
    /// Pool: callers waiting for a connection.
    pub pool_waiting: Gauge,
    /// Outcomes in the outbox, not yet published.
    pub outbox_depth: Gauge,
    /// Age of the oldest outbox row's event, in seconds (0 when empty).
    pub outbox_oldest_seconds: FloatGauge,
    /// Balance of the `suspense` account, in fen.
    pub suspense_fen: Gauge,
    /// Failure-log rows, by reason.
    pub failures: Family<labels::Reason, Gauge>,
    /// Seconds until each platform certificate held stops being valid.
    pub certificate_expiry: Family<labels::Serial, Gauge>,
    /// The local projector's checkpoint.
    pub checkpoint: Gauge,
    /// The stream's last sequence, as last seen.
    pub stream_last_seq: Gauge,
    /// Seconds since the stream's last sequence was read.
    pub stream_last_seq_age: FloatGauge,
    /// Events on the stream (as last seen) not yet applied.
    pub lag_events: Gauge,
    /// 0 when caught up; else seconds since the projector last committed.
    pub lag_seconds: FloatGauge,
}

struct Inner {
    registry: Registry,
    http_requests: Family<labels::HttpRequest, Counter>,
    http_latency: Latencies<labels::HttpLatency>,
    events_appended: Family<labels::Type, Counter>,
    append_latency: Histogram,
    notifies: Family<labels::OutcomeLabel, Counter>,
    notifies_v2: Family<labels::OutcomeLabel, Counter>,
    outcomes_published: Family<labels::Type, Counter>,
    calls: Family<labels::CallOutcome, Counter>,
    call_latency: Latencies<labels::Call>,
    batch_events: Histogram,
    batch_latency: Histogram,
    group_batches: Counter,
    group_batched_events: Counter,
    group_batch_events: Histogram,
    group_fallbacks: Family<labels::Fallback, Counter>,
    sweep_runs: Family<labels::Sweep, Counter>,
    sweep_items: Family<labels::Sweep, Counter>,
    /// The sequence of the event that halted the projector; 0 while it runs.
    projector_halted_seq: Gauge,
    /// 1 while the projector refuses the stream (not the one its projection was built from).
    projector_stream_mismatch: Gauge,
    /// 1 per role this instance leads (see [`leader`]).
    leader: Family<labels::Role, Gauge>,
    /// Why it refuses, for readiness.
    stream_mismatch_reason: std::sync::Mutex<Option<String>>,
    gauges: Gauges,
    /// Unix seconds (f64 bits) of the projector's last commit; 0 = none yet.
    committed_at: AtomicU64,
    /// Unix seconds (f64 bits) when `stream_last_seq` was last read; 0 = never.
    head_read_at: AtomicU64,
    /// How long a scrape waits for each server, in milliseconds.
    scrape_timeout_ms: AtomicU64,
    /// When the scrape-time gauges were last refreshed: scrapes share one refresh a
    /// second, so anonymous clients cannot turn `/metrics` into Postgres load.
    refreshed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// The registry and its families; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let gauges = Gauges::default();
        let inner = Inner {
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency),
            events_appended: Family::default(),
            append_latency: latency(),
            notifies: Family::default(),
            notifies_v2: Family::default(),
            outcomes_published: Family::default(),
            calls: Family::default(),
            call_latency: Family::new_with_constructor(latency),
            batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 7)),
            batch_latency: latency(),
            group_batches: Counter::default(),
            group_batched_events: Counter::default(),
            // 1 to 1024: the server takes at most 1000 events in a batch.
            group_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            group_fallbacks: Family::default(),
            sweep_runs: Family::default(),
            sweep_items: Family::default(),
            projector_halted_seq: Gauge::default(),
            projector_stream_mismatch: Gauge::default(),
            stream_mismatch_reason: std::sync::Mutex::new(None),
            leader: leader::family(),
            committed_at: AtomicU64::new(0),
            head_read_at: AtomicU64::new(0),
            scrape_timeout_ms: AtomicU64::new(millis(MetricsSettings::default().scrape_timeout)),
            refreshed: tokio::sync::Mutex::new(None),
            registry: Registry::default(),
            gauges,
        };
        register::all(&mut r, &inner);
        // The sweeps' series exist from the start (at 0), so a rate over them works from
        // the first scrape and the exposition does not change shape when a sweep first runs.
        for sweep in ["expiry", "reconcile"] {
            for result in ["ok", "error"] {
                inner
                    .sweep_runs
                    .get_or_create_owned(&labels::Sweep { sweep, result });
            }
            for result in ["handled", "failed"] {
                inner
                    .sweep_items
                    .get_or_create_owned(&labels::Sweep { sweep, result });
            }
        }
        Self(Arc::new(Inner {
            registry: r,
            ..inner
        }))
    }

    /// The OpenMetrics text of every family (serve with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.0.registry).expect("writing to a String cannot fail");
        out
    }

    /// Uses `settings` (the scrape timeout).
    pub fn configure(&self, settings: &MetricsSettings) {
        self.0
            .scrape_timeout_ms
            .store(millis(settings.scrape_timeout), Ordering::Relaxed);
    }

    /// When the scrape-time gauges were last refreshed (see `scrape::refresh_shared`).
    pub fn refresh_gate(&self) -> &tokio::sync::Mutex<Option<std::time::Instant>> {
        &self.0.refreshed
    }

    /// How long a scrape waits for each server.
    pub fn scrape_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.scrape_timeout_ms.load(Ordering::Relaxed))
    }

    /// The gauges a scrape refreshes.
    pub fn gauges(&self) -> &Gauges {
        &self.0.gauges
    }

    /// One HTTP request: `route` is the matched template, `None` when nothing matched.
    pub fn http_request(
        &self,
        route: Option<&str>,
        method: &axum::http::Method,
        status: axum::http::StatusCode,
        seconds: f64,
    ) {
        let route = route.unwrap_or("unmatched").to_owned();
        let method = labels::method(method);
        self.0
            .http_requests
            .get_or_create(&labels::HttpRequest {
                route: route.clone(),
                method,
                status: labels::status(status),
            })
            .inc();
        self.0
            .http_latency
            .get_or_create(&labels::HttpLatency {
                route,
                method,
                class: labels::status_class(status),
            })
            .observe(seconds);
    }

    /// One append of an event of type `kind` that took `seconds`; a duplicate (already in
    /// the stream) is timed but not counted as appended.
    pub fn appended(&self, kind: &'static str, duplicate: bool, seconds: f64) {
        self.0.append_latency.observe(seconds);
        if !duplicate {
            self.0
                .events_appended
                .get_or_create(&labels::Type { r#type: kind })
                .inc();
        }
    }

    /// One notify of API `v2` (else v3) with its `outcome`.
    pub fn notify(&self, v2: bool, outcome: &'static str) {
        let family = if v2 {
            &self.0.notifies_v2
        } else {
            &self.0.notifies
        };
        family
            .get_or_create(&labels::OutcomeLabel { outcome })
            .inc();
    }

    /// One outcome of type `kind` published.
    pub fn outcome_published(&self, kind: &'static str) {
        self.0
            .outcomes_published
            .get_or_create(&labels::Type { r#type: kind })
            .inc();
    }

    /// How many outcomes of type `kind` were published (tests read it).
    pub fn outcomes_published(&self, kind: &'static str) -> u64 {
        self.0
            .outcomes_published
            .get(&labels::Type { r#type: kind })
            .map_or(0, |c| c.get())
    }

    /// One outbound call to `service`'s `endpoint`, with what came of it.
    pub fn call(&self, call: labels::Call, outcome: &'static str, seconds: f64) {
        self.0.call_latency.get_or_create(&call).observe(seconds);
        self.0
            .calls
            .get_or_create(&labels::CallOutcome {
                service: call.service,
                endpoint: call.endpoint,
                outcome,
            })
            .inc();
    }

    /// One projector batch of `events`, folded and committed in `seconds`.
    pub fn projector_batch(&self, events: usize, seconds: f64) {
        self.0.batch_events.observe(events as f64);
        self.0.batch_latency.observe(seconds);
    }

    /// One atomic batch of `events` appends committed by group commit.
    pub fn group_commit_batch(&self, events: usize) {
        self.0.group_batches.inc();
        self.0.group_batched_events.inc_by(events as u64);
        self.0.group_batch_events.observe(events as f64);
    }

    /// A batch of `events` appends group commit sent as single publishes instead, for
    /// `reason` (see [`labels::Fallback`]).
    pub fn group_commit_fallback(&self, reason: &'static str, events: usize) {
        self.0
            .group_fallbacks
            .get_or_create(&labels::Fallback { reason })
            .inc_by(events as u64);
    }

    /// Atomic batches committed and the appends in them, so far (the bench and tests read
    /// it).
    pub fn group_commit_batches(&self) -> (u64, u64) {
        (
            self.0.group_batches.get(),
            self.0.group_batched_events.get(),
        )
    }

    /// Appends sent as single publishes instead of in a batch, for `reason`, so far.
    pub fn group_commit_fallbacks(&self, reason: &'static str) -> u64 {
        self.0
            .group_fallbacks
            .get(&labels::Fallback { reason })
            .map_or(0, |c| c.get())
    }

    /// The projector committed at Unix time `now`.
    pub fn projector_committed(&self, now: f64) {
        self.0.committed_at.store(now.to_bits(), Ordering::Relaxed);
    }

    /// When the projector last committed (Unix seconds), if it has.
    pub fn committed_at(&self) -> Option<f64> {
        let bits = self.0.committed_at.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// The projector halted on the event at `seq` (it cannot read it), or, with `None`,
    /// passed it.
    pub fn projector_halted(&self, seq: Option<u64>) {
        self.0.projector_halted_seq.set(seq.map_or(0, clamp));
    }

    /// The sequence of the event the projector is halted on, if it is: an alarm that
    /// needs a person (`wxledger quarantine`, or a build that reads the event).
    pub fn projector_halted_at(&self) -> Option<u64> {
        u64::try_from(self.0.projector_halted_seq.get())
            .ok()
            .filter(|seq| *seq > 0)
    }

    /// The projector refuses the stream for `reason` (see [`crate::store::identity`]), or,
    /// with `None`, accepts it.
    pub fn projector_stream_refused(&self, reason: Option<String>) {
        self.0
            .projector_stream_mismatch
            .set(i64::from(reason.is_some()));
        *self
            .0
            .stream_mismatch_reason
            .lock()
            .expect("the lock is never held across a panic") = reason;
    }

    /// Why the projector refuses the stream, if it does: an alarm that needs a person
    /// (rebuild into a new schema from the surviving stream and switch to it).
    pub fn projector_stream_mismatch(&self) -> Option<String> {
        self.0
            .stream_mismatch_reason
            .lock()
            .expect("the lock is never held across a panic")
            .clone()
    }

    /// The stream's last sequence was read at Unix time `now`.
    pub fn stream_head_read(&self, seq: u64, now: f64) {
        self.0.gauges.stream_last_seq.set(clamp(seq));
        self.0.head_read_at.store(now.to_bits(), Ordering::Relaxed);
    }

    /// The stream's last sequence as last read, and when (Unix seconds).
    pub fn stream_head(&self) -> Option<(u64, f64)> {
        let bits = self.0.head_read_at.load(Ordering::Relaxed);
        (bits != 0).then(|| {
            (
                self.0.gauges.stream_last_seq.get() as u64,
                f64::from_bits(bits),
            )
        })
    }

    /// One run of `sweep` (`expiry`, `reconcile`): the items it handled, or `None` when
    /// the run failed.
    pub fn sweep_run(&self, sweep: &'static str, handled: Option<usize>) {
        let result = if handled.is_some() { "ok" } else { "error" };
        self.0
            .sweep_runs
            .get_or_create(&labels::Sweep { sweep, result })
            .inc();
        let items = self.0.sweep_items.get_or_create(&labels::Sweep {
            sweep,
            result: "handled",
        });
        items.inc_by(handled.unwrap_or(0) as u64);
    }

    /// One item `sweep` could not handle this round.
    pub fn sweep_item_failed(&self, sweep: &'static str) {
        self.0
            .sweep_items
            .get_or_create(&labels::Sweep {
                sweep,
                result: "failed",
            })
            .inc();
    }
}

/// A duration in whole milliseconds, as the scrape timeout is kept.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A count or sequence as a gauge value.
pub fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use super::*;

    #[test]
    fn renders_openmetrics_with_bounded_labels() {
        let m = Metrics::new();
        m.http_request(Some("/r/{id}"), &Method::GET, StatusCode::OK, 0.003);
        m.http_request(
            None,
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::NOT_FOUND,
            0.001,
        );
        m.appended("order.placed", false, 0.002);
        m.appended("order.placed", true, 0.002);
        m.notify(false, "recorded");
        let text = m.render();
        for needle in [
            "wxledger_build_info{version=\"",
            "wxledger_http_requests_total{route=\"/r/{id}\",method=\"GET\",status=\"200\"} 1\n",
            "wxledger_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1\n",
            "wxledger_http_request_duration_seconds_bucket{le=\"0.0025\",route=\"/r/{id}\",method=\"GET\",class=\"2xx\"} 0\n",
            "wxledger_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/r/{id}\",method=\"GET\",class=\"2xx\"} 1\n",
            "wxledger_events_appended_total{type=\"order.placed\"} 1\n",
            "wxledger_append_duration_seconds_count 2\n",
            "wxledger_notifies_total{outcome=\"recorded\"} 1\n",
            "wxledger_leader{role=\"projector\"} 0\n",
            "wxledger_leader{role=\"publisher\"} 0\n",
            "# EOF\n",
        ] {
            assert!(text.contains(needle), "missing {needle}\n{text}");
        }
        assert!(!text.contains("BREW"), "{text}");
    }
}
