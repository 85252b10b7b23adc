//! `POST /webhooks/alertmanager`: Alertmanager's webhook receiver.
//!
//! Answers 2xx only after the notification committed; 4xx (not retried by
//! Alertmanager) for a payload that can never be accepted; 503 (retried) for our own
//! transient faults, so that nothing is lost.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::RawBody;
use crate::app::AppState;
use crate::domain::TargetRef;
use crate::wire::alertmanager::AlertmanagerPayload;

const SOURCE: &str = "alertmanager";

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/alertmanager", post(receive_notification))
}

async fn receive_notification(
    State(state): State<AppState>,
    body: Result<RawBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let parsed = body.and_then(|RawBody(body)| {
        Ok(AlertmanagerPayload::parse(
            &body,
            &state.bounds,
            state.clock.now(),
        )?)
    });
    let notification = match parsed {
        Ok(n) => n,
        Err(err) => {
            state.metrics.notification(SOURCE, "rejected");
            tracing::info!(code = err.code, message = %err.message, "notification rejected");
            return Err(err);
        }
    };
    let alerts = notification.alerts.len();
    // Which targets the alerts are about, for the engine (only if the store took it).
    let touched: Vec<TargetRef> = match &state.engine {
        Some(_) => {
            let mut targets: Vec<TargetRef> = notification
                .alerts
                .iter()
                .filter_map(|a| state.classifier.target_for(&a.labels))
                .map(|t| t.target)
                .collect();
            targets.sort();
            targets.dedup();
            targets
        }
        None => Vec::new(),
    };
    match state.ingestor.submit(notification).await {
        Ok(outcome) => {
            let status = if outcome.duplicate {
                "duplicate"
            } else {
                "accepted"
            };
            state.metrics.notification(SOURCE, status);
            if let Some(engine) = state.engine.as_ref().filter(|_| !outcome.duplicate) {
                engine.touched(touched);
            }
            Ok(Json(json!({
                "status": status,
                "receipt_id": outcome.receipt_id,
                "alerts": alerts,
            })))
        }
        Err(err) => {
            state.metrics.notification(SOURCE, "failed");
            Err(err.into())
        }
    }
}
