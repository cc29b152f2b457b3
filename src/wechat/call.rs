//! One outbound call to WeChat, as every client makes it: the request sent and its whole
//! answer read, and the call timed and counted under a fixed endpoint name. The time a
//! request spent waiting on WeChat's answers adds up per request ([`waits_of`]), for the
//! API's `Server-Timing` header.

use std::{
    cell::Cell,
    future::Future,
    time::{Duration, Instant},
};

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

tokio::task_local! {
    /// The time spent waiting on WeChat by the request whose handling runs in [`waits_of`].
    static WAITED: Cell<Option<Duration>>;
}

/// Runs `handling` (one request's) and answers, beside its output, the time it spent
/// waiting on WeChat's answers in [`send`], or `None` when it called WeChat not once.
/// Calls made from tasks it spawns are not counted (a task-local does not follow them).
pub(crate) async fn waits_of<T>(handling: impl Future<Output = T>) -> (T, Option<Duration>) {
    WAITED
        .scope(Cell::new(None), async {
            let output = handling.await;
            (output, WAITED.with(Cell::get))
        })
        .await
}

/// Sends `request` and reads its answer to the end; a transport failure (no connection,
/// a timeout, a body cut short) is the error. The wait counts toward [`waits_of`].
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Received, reqwest::Error> {
    let started = Instant::now();
    let received = exchange(request).await;
    // Outside a request's handling (a background sweep, a tool) nobody asks.
    let _ = WAITED.try_with(|waited| {
        waited.set(Some(waited.get().unwrap_or_default() + started.elapsed()));
    });
    received
}

async fn exchange(request: reqwest::RequestBuilder) -> Result<Received, reqwest::Error> {
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
