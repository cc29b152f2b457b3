//! Operations: request metrics for every route, `GET /metrics` (Prometheus text) and
//! `GET /openapi.json` (the API's description, kept true by a test).

use std::time::{Duration, Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::AppState;

/// The OpenAPI document of every endpoint and error code.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Counts and times every request by route template, method and status.
pub async fn measure(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("route", route.as_str()),
        ("method", method.as_str()),
        ("status", status.as_str()),
    ];
    app.metrics.inc(
        "wxledger_http_requests_total",
        "HTTP requests, by route, method and status.",
        &labels,
    );
    app.metrics.observe(
        "wxledger_http_request_duration_seconds",
        "HTTP request latency, by route, method and status.",
        &labels,
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Name of the value the projector sets after each commit (Unix seconds, fractional).
pub const PROJECTOR_COMMITTED_AT: &str = "projector_committed_at";

/// `GET /metrics`.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let applied = app.projection.applied();
    let head = tokio::time::timeout(Duration::from_secs(1), app.log.last_seq())
        .await
        .ok()
        .and_then(Result::ok);
    let mut gauges = vec![(
        "wxledger_projector_checkpoint",
        "Sequence of the last event the local projector applied.",
        applied as f64,
    )];
    if let Some(head) = head {
        let lag = head.saturating_sub(applied);
        // Caught up: no lag. Behind: how long since the projector last committed, which
        // grows without bound when it is stuck and stays small while it keeps pace.
        let seconds = if lag == 0 {
            0.0
        } else {
            let now = (app.clock)().timestamp_micros() as f64 / 1e6;
            app.metrics
                .get(PROJECTOR_COMMITTED_AT)
                .map_or(0.0, |at| (now - at).max(0.0))
        };
        gauges.push((
            "wxledger_stream_last_seq",
            "Sequence of the newest event on the stream.",
            head as f64,
        ));
        gauges.push((
            "wxledger_projector_lag_events",
            "Events on the stream the projector has not applied yet.",
            lag as f64,
        ));
        gauges.push((
            "wxledger_projector_lag_seconds",
            "0 when caught up; else seconds since the projector last committed a batch.",
            seconds,
        ));
    }
    let mut response = app.metrics.render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
