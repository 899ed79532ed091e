//! `/healthz` (the process is alive) and `/readyz` (Postgres and Redis answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use streambank_telemetry::health::Readiness;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    Readiness::default()
        .check("postgres", state.bank.ping())
        .await
        .check("redis", state.redis.ping())
        .await
        .answer()
}
