//! One outbound call to WeChat, as every client makes it: the request sent and its whole
//! answer read, and the call timed and counted under a fixed endpoint name.

use std::{future::Future, time::Instant};

use bytes::Bytes;
use reqwest::{header::HeaderMap, StatusCode};

use crate::daemon::metrics::{labels, Metrics};

/// A whole answer, whatever its status.
pub(crate) struct Received {
    /// The HTTP status.
    pub status: StatusCode,
    /// The headers (WeChat Pay signs its answers in them).
    pub headers: HeaderMap,
    /// The body, as sent.
    pub body: Bytes,
}

/// Sends `request` and reads its answer to the end; a transport failure (no connection,
/// a timeout, a body cut short) is the error.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Received, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Received {
        status,
        headers,
        body,
    })
}

/// Awaits `call` and, when `metrics` is set, records its latency and the label
/// `outcome` gives its result under `service` and `endpoint` (a fixed name, never a URL:
/// URLs carry ids and secrets).
pub(crate) async fn measured<T, E>(
    metrics: Option<&Metrics>,
    service: &'static str,
    endpoint: &'static str,
    call: impl Future<Output = Result<T, E>>,
    outcome: impl FnOnce(&Result<T, E>) -> &'static str,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    if let Some(metrics) = metrics {
        let call = labels::Call { service, endpoint };
        metrics.call(call, outcome(&result), started.elapsed().as_secs_f64());
    }
    result
}
