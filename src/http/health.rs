//! Liveness, readiness and metrics: unauthenticated, for kubelets and Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is up.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(pattern = "^ok$")]
    pub status: &'static str,
}

/// The store answers.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(pattern = "^ready$")]
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
}

/// The process is up and serving (liveness).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The store answers (readiness); otherwise 503 so that no traffic is routed here.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Ready)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if let Err(err) = state.store.ping().await {
        state.metrics.store_error("ping", &err);
        tracing::warn!(error = %err, "readiness check failed");
        return Err(ApiError::unavailable("the store is unreachable"));
    }
    Ok(Json(Ready {
        status: "ready",
        store: state.store.backend(),
    }))
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
