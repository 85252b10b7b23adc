//! Liveness, readiness and metrics: unauthenticated, for kubelets and Prometheus.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up and serving.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The store answers; otherwise 503 so that no traffic is routed here.
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if let Err(err) = state.store.ping().await {
        state.metrics.store_error("ping", &err);
        tracing::warn!(error = %err, "readiness check failed");
        return Err(ApiError::unavailable("the store is unreachable"));
    }
    Ok(Json(
        json!({ "status": "ready", "store": state.store.backend() }),
    ))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
