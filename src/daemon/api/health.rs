//! Liveness and readiness.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use super::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: migrations ran, NATS is connected and Postgres answers.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let nats = app.log.is_connected();
    let postgres = tokio::time::timeout(Duration::from_secs(1), async {
        let client = app.pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    let ready = nats && postgres && app.migrated;
    let word = |ok: bool| if ok { "up" } else { "down" };
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": {
                "nats": word(nats),
                "postgres": word(postgres),
                "migrations": if app.migrated { "applied" } else { "pending" },
            },
            "projector_checkpoint": app.projection.applied(),
        })),
    )
}
