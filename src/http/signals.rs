//! `POST /api/v1/signals`: observations that do not come from Alertmanager — customer
//! reports with a count, a manual SLA violation, data corruption, a degraded dependency.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::RawBody;
use crate::app::AppState;
use crate::wire::signal::SignalPayload;

const SOURCE: &str = "signal";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/signals", post(receive_signal))
}

/// 201 for a new signal, 200 for a repeat of a known one (same `id` and start), which
/// updates its value and end.
async fn receive_signal(
    State(state): State<AppState>,
    body: Result<RawBody, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = state.clock.now();
    let signal = body
        .and_then(|RawBody(body)| Ok(SignalPayload::parse(&body, &state.cluster, now)?))
        .inspect_err(|_| state.metrics.notification(SOURCE, "rejected"))?;
    let (id, created) = state
        .store
        .record_signal(&signal, now)
        .await
        .inspect_err(|err| {
            state.metrics.notification(SOURCE, "failed");
            state.metrics.store_error("record_signal", err);
        })?;
    state
        .metrics
        .notification(SOURCE, if created { "accepted" } else { "duplicate" });
    // A dependency signal concerns every target that depends on it: the next tick
    // evaluates those; a targeted one is evaluated now.
    if let (Some(engine), Some(target)) = (&state.engine, &signal.target) {
        engine.touched(vec![target.clone()]);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "id": id,
            "created": created,
            "kind": signal.kind.as_str(),
            "target": signal.target.as_ref().map(|t| t.key()),
            "inconclusive": signal.inconclusive,
        })),
    ))
}
