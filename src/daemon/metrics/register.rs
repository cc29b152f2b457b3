//! Registers every family of [`super::Metrics`] under its name and help text.

use prometheus_client::{metrics::info::Info, registry::Registry};

use super::{process, Inner};

/// Registers `i`'s families, the build info and the process collector in `r`.
pub(super) fn all(r: &mut Registry, i: &Inner) {
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    r.register("wxledger_build", "The running build", Info::new(version));
    r.register_collector(Box::new(process::ProcessCollector));
    r.register(
        "wxledger_http_requests",
        "HTTP requests, by route template, method and status",
        i.http_requests.clone(),
    );
    r.register(
        "wxledger_http_request_duration_seconds",
        "HTTP request latency, by route template, method and status class",
        i.http_latency.clone(),
    );
    r.register(
        "wxledger_events_appended",
        "Events appended to the stream (not duplicates), by type",
        i.events_appended.clone(),
    );
    r.register(
        "wxledger_append_duration_seconds",
        "Time to append one event until JetStream acknowledged it",
        i.append_latency.clone(),
    );
    r.register(
        "wxledger_group_commit_batches",
        "Atomic batches committed by group commit",
        i.group_batches.clone(),
    );
    r.register(
        "wxledger_group_commit_batched_events",
        "Appends committed inside atomic batches",
        i.group_batched_events.clone(),
    );
    r.register(
        "wxledger_group_commit_batch_events",
        "Appends in each atomic batch committed",
        i.group_batch_events.clone(),
    );
    r.register(
        "wxledger_group_commit_fallbacks",
        "Appends group commit sent as single publishes instead of in a batch, by reason \
         (duplicate, busy, incomplete, unsupported)",
        i.group_fallbacks.clone(),
    );
    r.register(
        "wxledger_notifies",
        "WeChat Pay API v3 notifies received, by outcome",
        i.notifies.clone(),
    );
    r.register(
        "wxledger_notifies_v2",
        "WeChat Pay API v2 notifies received, by outcome",
        i.notifies_v2.clone(),
    );
    r.register(
        "wxledger_outcomes_published",
        "Outcomes acknowledged by the outcome stream, by type",
        i.outcomes_published.clone(),
    );
    r.register("wxledger_outbound_calls", "Calls to WeChat and WeChat Pay, by service, endpoint and outcome (ok, unavailable, unverified, malformed, or WeChat's errcode/code)", i.calls.clone());
    r.register(
        "wxledger_outbound_call_duration_seconds",
        "Latency of calls to WeChat and WeChat Pay, by service and endpoint",
        i.call_latency.clone(),
    );
    r.register(
        "wxledger_projector_batch_events",
        "Events in each batch the projector committed",
        i.batch_events.clone(),
    );
    r.register(
        "wxledger_projector_batch_duration_seconds",
        "Time to fold and commit one projector batch",
        i.batch_latency.clone(),
    );
    r.register(
        "wxledger_sweep_runs",
        "Background sweep runs, by sweep (expiry, reconcile) and result (ok, error)",
        i.sweep_runs.clone(),
    );
    r.register(
        "wxledger_sweep_items",
        "Orders and refunds a sweep acted on, by sweep and result (handled, failed)",
        i.sweep_items.clone(),
    );
    r.register(
        "wxledger_projector_halted_seq",
        "The sequence of the event the projector cannot read and is halted on (0 while it \
         runs): quarantine it with `wxledger quarantine`",
        i.projector_halted_seq.clone(),
    );
    r.register(
        "wxledger_projector_stream_mismatch",
        "1 while the projector refuses the stream because it is not the one the projection \
         was built from (recreated, or ending before the checkpoint): rebuild into a new \
         schema with `wxledger replay` and switch to it",
        i.projector_stream_mismatch.clone(),
    );
    r.register(
        "wxledger_leader",
        "1 while this instance holds the role's advisory lock (projector, publisher) and is \
         the active one of the instances on its schema; 0 while it stands by",
        i.leader.clone(),
    );
    let g = &i.gauges;
    r.register(
        "wxledger_nats_up",
        "1 while the connection to NATS is up",
        g.nats_up.clone(),
    );
    r.register(
        "wxledger_postgres_up",
        "1 when Postgres answered the last scrape in time",
        g.postgres_up.clone(),
    );
    r.register(
        "wxledger_db_pool_max",
        "Most connections the Postgres pool opens",
        g.pool_max.clone(),
    );
    r.register(
        "wxledger_db_pool_size",
        "Connections the Postgres pool holds open",
        g.pool_size.clone(),
    );
    r.register(
        "wxledger_db_pool_available",
        "Idle connections in the Postgres pool",
        g.pool_available.clone(),
    );
    r.register(
        "wxledger_db_pool_waiting",
        "Callers waiting for a Postgres connection",
        g.pool_waiting.clone(),
    );
    r.register(
        "wxledger_outbox_depth",
        "Outcomes decided but not yet published",
        g.outbox_depth.clone(),
    );
    r.register(
        "wxledger_outbox_oldest_seconds",
        "Age of the oldest unpublished outcome's event (0 when the outbox is empty)",
        g.outbox_oldest_seconds.clone(),
    );
    r.register(
        "wxledger_suspense_balance_fen",
        "Balance of the suspense account (money received nobody could be credited with), in fen",
        g.suspense_fen.clone(),
    );
    r.register(
        "wxledger_failure_log_rows",
        "Rows in the failure log, by reason",
        g.failures.clone(),
    );
    r.register(
        "wxledger_certificate_expiry_seconds",
        "Seconds until each WeChat Pay platform certificate held expires (negative: expired, about to be evicted)",
        g.certificate_expiry.clone(),
    );
    r.register(
        "wxledger_projector_checkpoint",
        "Sequence of the last event the local projector applied",
        g.checkpoint.clone(),
    );
    r.register(
        "wxledger_stream_last_seq",
        "Sequence of the newest event on the stream, as last read",
        g.stream_last_seq.clone(),
    );
    r.register(
        "wxledger_stream_last_seq_age_seconds",
        "Seconds since wxledger_stream_last_seq was read (grows while NATS is away)",
        g.stream_last_seq_age.clone(),
    );
    r.register(
        "wxledger_projector_lag_events",
        "Events on the stream (as last read) the projector has not applied yet",
        g.lag_events.clone(),
    );
    r.register(
        "wxledger_projector_lag_seconds",
        "0 when caught up; else seconds since the projector last committed a batch",
        g.lag_seconds.clone(),
    );
}
