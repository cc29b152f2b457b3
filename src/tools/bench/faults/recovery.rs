//! The time to full recovery after a fault ended: until a probe through the balancer that
//! needs an append and the projector succeeds (`POST /v1/orders`, which answers only once
//! the projector applied the order's event), and every payment made before the fault
//! ended is booked (in the projection's `payments`), whichever comes last.

use std::{collections::HashSet, time::Duration};

use futures::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::tools::harness::{Deployment, NatsServers, Paid, Rig};

/// A new probe is sent this often (several may be in flight).
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// Probes in flight at most.
const PROBES_IN_FLIGHT: usize = 40;
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the recovery took, each part from the fault's end (`None`: not within the wait).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Recovered {
    /// Until the first probe sent after the end succeeded.
    pub probe: Option<Duration>,
    /// Until every payment made before the end was booked.
    pub booked: Option<Duration>,
}

impl Recovered {
    /// The later of the two: the time to full recovery.
    pub fn total(&self) -> Option<Duration> {
        Some(self.probe?.max(self.booked?))
    }
}

/// Measures both parts at once, waiting up to `within` from `end`.
pub async fn measure<N: NatsServers>(
    rig: &Rig<N>,
    token: &str,
    before: &[Paid],
    end: Instant,
    within: Duration,
) -> Recovered {
    let api = rig.balancer.base();
    let (probe, booked) = tokio::join!(
        probe(&rig.http, &api, token, end, within),
        booked(&rig.deployment, before, end, within),
    );
    Recovered { probe, booked }
}

/// Sends a probe every [`PROBE_EVERY`] until one succeeds; answers when it did, from `end`.
async fn probe(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    end: Instant,
    within: Duration,
) -> Option<Duration> {
    let deadline = end + within;
    let mut in_flight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick(), if in_flight.len() < PROBES_IN_FLIGHT && Instant::now() < deadline => {
                in_flight.push(one_probe(http, api, token));
            }
            Some(done) = in_flight.next() => {
                if let Some(at) = done {
                    return Some(at.saturating_duration_since(end));
                }
            }
            () = tokio::time::sleep_until(deadline + PROBE_TIMEOUT) => return None,
        }
    }
}

/// One `POST /v1/orders`; the moment it answered 2xx.
async fn one_probe(http: &reqwest::Client, api: &str, token: &str) -> Option<Instant> {
    let resp = http
        .post(format!("{api}/v1/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"amount": 1, "description": "probe"}))
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .ok()?;
    resp.status().is_success().then(Instant::now)
}

/// Polls the projection until every payment in `before` is booked; answers when, from `end`.
async fn booked(
    deployment: &Deployment,
    before: &[Paid],
    end: Instant,
    within: Duration,
) -> Option<Duration> {
    let deadline = end + within;
    let wanted: Vec<String> = before.iter().map(|p| p.out_trade_no.clone()).collect();
    let wanted_set: HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let mut db = None;
    while Instant::now() < deadline {
        if db.is_none() {
            db = deployment.db().await.ok();
        }
        if let Some(client) = &db {
            match client
                .query(
                    "SELECT DISTINCT out_trade_no FROM payments WHERE out_trade_no = ANY($1)",
                    &[&wanted],
                )
                .await
            {
                Ok(rows) => {
                    let found = rows
                        .iter()
                        .filter(|r| wanted_set.contains(r.get::<_, &str>(0)))
                        .count();
                    if found == wanted_set.len() {
                        return Some(Instant::now().saturating_duration_since(end));
                    }
                }
                Err(_) => db = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
