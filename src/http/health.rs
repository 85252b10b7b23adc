//! Liveness, readiness and metrics: unauthenticated, for kubelets and Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
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
    /// Each configured Kubernetes cluster as this replica sees it (empty without
    /// `kubernetes.enabled`). An unreachable cluster does not make the replica unready:
    /// the others, the API and the decisions still work.
    pub clusters: Vec<crate::k8s::clusters::ClusterState>,
}

/// The process is up and serving (liveness).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// How long readiness waits for the store. Kubelet's probe gives up after
/// `timeoutSeconds` (1 s by default) and a pool waiting for a connection to a down
/// PostgreSQL would take its own `acquire_timeout`: answer 503 before either.
pub const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// The store answers (readiness) within 0.8 s; otherwise 503 at once, so that no
/// traffic is routed here.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The store did not answer within 0.8 s", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    match tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            state.metrics.store_error("ping", &err);
            tracing::warn!(error = %err, "readiness check failed");
            return Err(ApiError::unavailable("the store is unreachable"));
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READINESS_TIMEOUT.as_millis() as u64,
                "readiness check timed out"
            );
            return Err(ApiError::unavailable(
                "the store did not answer within the readiness timeout",
            ));
        }
    }
    Ok(Json(Ready {
        status: "ready",
        store: state.store.backend(),
        clusters: state.clusters.snapshot(),
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
