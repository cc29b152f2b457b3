//! Operations: request metrics for every route, `GET /metrics` (Prometheus text) and
//! `GET /openapi.json` (the API's description, kept true by a test).

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::AppState;

/// The OpenAPI document of every endpoint and error code.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Counts and times every request by route template (or `unmatched`), method (a known
/// one or `other`) and status; the labels are bounded in [`crate::metrics::labels`].
pub async fn measure(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics.http_request(
        route.as_ref().map(MatchedPath::as_str),
        &method,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: refreshes the gauges that need NATS or Postgres (each under the scrape
/// timeout, at most once a second whoever asks), then renders every family as OpenMetrics
/// text.
pub async fn metrics(State(app): State<AppState>) -> Response {
    crate::metrics::scrape::refresh_shared(&crate::metrics::scrape::Sources {
        metrics: &app.metrics,
        log: &app.log,
        pool: &app.pool,
        keys: app.pay.keys(),
        projection: &app.projection,
        clock: &app.clock,
    })
    .await;
    let mut response = app.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
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
