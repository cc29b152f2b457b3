//! Liveness and readiness per role. `/healthz` says the process answers. The webhook
//! role (`/readyz/webhooks`) is ready while NATS answers a JetStream request about the
//! stream, the path every append takes; the API role (`/readyz/api`, and `/readyz`, which
//! needs everything this daemon serves) also needs Postgres and a projection at most
//! `projector.ready_max_lag_events` behind the stream's end. A not-ready answer is a 503
//! whose `reasons` say why.

use std::time::{Duration, Instant};

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use super::AppState;

/// How long each server has to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness of the API role: NATS, Postgres, migrations and the projector's lag.
pub async fn readyz_api(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let facts = app.readiness.facts(&app).await;
    answer(api(&facts, app.migrated, app.readiness.max_lag))
}

/// Readiness of the webhook role: NATS answers.
pub async fn readyz_webhooks(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let facts = app.readiness.facts(&app).await;
    answer(webhooks(&facts))
}

/// The readiness checks' bounds and their last result.
pub struct Readiness {
    /// Answers within this long of a check share it.
    cache: Duration,
    /// The API role's largest projector lag, in events.
    max_lag: u64,
    /// The last check and when it ended; held while checking, so concurrent requests
    /// wait for one check instead of each making their own.
    last: tokio::sync::Mutex<Option<(Instant, Facts)>>,
}

impl Readiness {
    /// Checks shared for `cache`; the API role ready up to `max_lag` events behind.
    pub fn new(cache: Duration, max_lag: u64) -> Self {
        Self {
            cache,
            max_lag,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The last check's facts, or a new check's when they are older than the cache.
    async fn facts(&self, app: &AppState) -> Facts {
        self.shared(|| Facts::check(app)).await
    }

    /// The last check's facts while younger than the cache, else `check`'s (remembered).
    async fn shared<F: std::future::Future<Output = Facts>>(
        &self,
        check: impl FnOnce() -> F,
    ) -> Facts {
        let mut last = self.last.lock().await;
        if let Some((at, facts)) = last.as_ref() {
            if at.elapsed() < self.cache {
                return facts.clone();
            }
        }
        let facts = check().await;
        *last = Some((Instant::now(), facts.clone()));
        facts
    }
}

/// What one check found. The reasons are fixed phrases: the endpoints are anonymous, so
/// the servers' own errors (which may name users and hosts) go to the debug log only.
#[derive(Clone)]
struct Facts {
    /// The stream's newest sequence, or why NATS did not tell it.
    stream_end: Result<u64, &'static str>,
    /// The projection's checkpoint, or why Postgres did not tell it.
    checkpoint: Result<u64, &'static str>,
    /// The local projector's checkpoint.
    applied: u64,
    /// The sequence of an event the local projector cannot read and stopped at.
    halted: Option<u64>,
    /// Why the local projector refuses the stream (not the one the projection was built from).
    refused: Option<String>,
}

impl Facts {
    /// Asks NATS and Postgres at once, each within [`CHECK_TIMEOUT`].
    async fn check(app: &AppState) -> Self {
        let (stream_end, checkpoint) = tokio::join!(
            tokio::time::timeout(CHECK_TIMEOUT, app.log.last_seq()),
            tokio::time::timeout(CHECK_TIMEOUT, app.projection.checkpoint()),
        );
        Self {
            stream_end: fact(
                stream_end,
                "nats: the stream info request failed",
                "nats: no answer within 1s",
            ),
            checkpoint: fact(
                checkpoint,
                "postgres: the checkpoint query failed",
                "postgres: no answer within 1s",
            ),
            applied: app.projection.applied(),
            halted: app.metrics.projector_halted_at(),
            refused: app.metrics.projector_stream_mismatch(),
        }
    }
}

/// A sequence a server told within [`CHECK_TIMEOUT`], or the reason it did not: `failed`
/// when it answered with an error (logged at debug, being no client's business), `silent`
/// when it did not answer in time.
fn fact<E: std::fmt::Display>(
    answer: Result<Result<u64, E>, tokio::time::error::Elapsed>,
    failed: &'static str,
    silent: &'static str,
) -> Result<u64, &'static str> {
    match answer {
        Ok(Ok(seq)) => Ok(seq),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "readiness: {failed}");
            Err(failed)
        }
        Err(_) => Err(silent),
    }
}

/// A role's answer: ready or not, and why not.
struct Verdict {
    role: &'static str,
    reasons: Vec<String>,
    checks: Value,
    /// Fields besides `role`, `ready`, `status`, `reasons` and `checks`.
    extra: serde_json::Map<String, Value>,
}

fn up(check: &Result<u64, &'static str>) -> &'static str {
    if check.is_ok() {
        "up"
    } else {
        "down"
    }
}

fn webhooks(facts: &Facts) -> Verdict {
    Verdict {
        role: "webhooks",
        reasons: facts
            .stream_end
            .err()
            .map(str::to_owned)
            .into_iter()
            .collect(),
        checks: json!({"nats": up(&facts.stream_end)}),
        extra: serde_json::Map::new(),
    }
}

fn api(facts: &Facts, migrated: bool, max_lag: u64) -> Verdict {
    let lag = match (facts.stream_end, facts.checkpoint) {
        (Ok(end), Ok(checkpoint)) => Some(end.saturating_sub(checkpoint)),
        _ => None,
    };
    let mut reasons: Vec<String> = [facts.stream_end.err(), facts.checkpoint.err()]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    if !migrated {
        reasons.push("migrations: pending".to_owned());
    }
    let projector = match lag {
        _ if facts.refused.is_some() => {
            reasons.extend(facts.refused.clone());
            "refused"
        }
        _ if facts.halted.is_some() => {
            let seq = facts.halted.expect("matched");
            reasons.push(format!(
                "projector halted at seq {seq}: an event it cannot read (wxledger quarantine)"
            ));
            "halted"
        }
        Some(lag) if lag > max_lag => {
            reasons.push(format!("projector lag {lag} > {max_lag}"));
            "behind"
        }
        Some(_) => "within_lag",
        None => "unknown",
    };
    let mut extra = serde_json::Map::new();
    // Without Postgres, the local projector's checkpoint is all there is to show.
    let checkpoint = facts.checkpoint.unwrap_or(facts.applied);
    extra.insert("projector_checkpoint".into(), checkpoint.into());
    extra.insert("projector_lag".into(), lag.into());
    Verdict {
        role: "api",
        reasons,
        checks: json!({
            "nats": up(&facts.stream_end),
            "postgres": up(&facts.checkpoint),
            "migrations": if migrated { "applied" } else { "pending" },
            "projector": projector,
        }),
        extra,
    }
}

fn answer(verdict: Verdict) -> (StatusCode, Json<Value>) {
    let ready = verdict.reasons.is_empty();
    let mut body = serde_json::Map::new();
    body.insert("role".into(), verdict.role.into());
    body.insert("ready".into(), ready.into());
    body.insert(
        "status".into(),
        if ready { "ready" } else { "not_ready" }.into(),
    );
    body.insert("reasons".into(), verdict.reasons.into());
    body.insert("checks".into(), verdict.checks);
    body.extend(verdict.extra);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Value::Object(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        stream_end: Result<u64, &'static str>,
        checkpoint: Result<u64, &'static str>,
    ) -> Facts {
        Facts {
            stream_end,
            checkpoint,
            applied: 3,
            halted: None,
            refused: None,
        }
    }

    #[test]
    fn the_api_role_is_held_to_the_lag_and_the_webhooks_are_not() {
        let behind = facts(Ok(1500), Ok(400));
        let (status, Json(body)) = answer(api(&behind, true, 1000));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reasons"], json!(["projector lag 1100 > 1000"]));
        assert_eq!(body["projector_lag"], 1100);
        assert_eq!(answer(webhooks(&behind)).0, StatusCode::OK);
        assert_eq!(
            answer(api(&facts(Ok(1400), Ok(400)), true, 1000)).0,
            StatusCode::OK
        );
    }

    #[test]
    fn a_halted_projector_stops_the_api_role_and_names_the_seq() {
        let halted = Facts {
            halted: Some(41),
            ..facts(Ok(50), Ok(40))
        };
        let (status, Json(body)) = answer(api(&halted, true, 1000));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["projector"], "halted");
        assert!(body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("projector halted at seq 41"));
        assert_eq!(answer(webhooks(&halted)).0, StatusCode::OK);
    }

    #[test]
    fn a_projector_refusing_the_stream_stops_the_api_role_and_says_why() {
        let refused = Facts {
            refused: Some("stream identity changed: the stream ends at seq 3, …".into()),
            ..facts(Ok(3), Ok(9))
        };
        let (status, Json(body)) = answer(api(&refused, true, 1000));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["projector"], "refused");
        assert!(body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("stream identity changed"));
        // The events are kept on the stream: a rebuild from it books them.
        assert_eq!(answer(webhooks(&refused)).0, StatusCode::OK);
    }

    #[test]
    fn without_postgres_only_the_api_role_is_down() {
        let down = facts(Ok(7), Err("postgres: no answer within 1s"));
        let (status, Json(body)) = answer(api(&down, true, 1000));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["role"], "api");
        assert_eq!(body["ready"], false);
        assert_eq!(body["reasons"], json!(["postgres: no answer within 1s"]));
        assert_eq!(body["checks"]["projector"], "unknown");
        assert_eq!(body["projector_lag"], Value::Null);
        assert_eq!(body["projector_checkpoint"], 3, "the local projector's");
        let (status, Json(body)) = answer(webhooks(&down));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"role": "webhooks", "ready": true, "status": "ready", "reasons": [], "checks": {"nats": "up"}})
        );
    }

    #[tokio::test]
    async fn checks_within_the_cache_are_shared_and_after_it_made_again() {
        let checks = std::sync::atomic::AtomicU64::new(0);
        let check = || async {
            let n = checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            facts(Ok(n), Ok(0))
        };
        let cached = Readiness::new(Duration::from_secs(60), 1000);
        let (a, b) = tokio::join!(cached.shared(check), cached.shared(check));
        assert_eq!((a.stream_end, b.stream_end), (Ok(0), Ok(0)), "one check");
        assert_eq!(cached.shared(check).await.stream_end, Ok(0));
        let fresh = Readiness::new(Duration::ZERO, 1000);
        assert_eq!(fresh.shared(check).await.stream_end, Ok(1));
        assert_eq!(fresh.shared(check).await.stream_end, Ok(2), "a new check");
    }

    #[test]
    fn without_nats_neither_role_is_ready() {
        let down = facts(Err("nats: no answer within 1s"), Ok(7));
        assert_eq!(answer(webhooks(&down)).0, StatusCode::SERVICE_UNAVAILABLE);
        let (status, Json(body)) = answer(api(&down, true, 1000));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["nats"], "down");
        assert_eq!(body["reasons"], json!(["nats: no answer within 1s"]));
    }
}
