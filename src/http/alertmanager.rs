//! `POST /webhooks/alertmanager`: Alertmanager's webhook receiver.
//!
//! Answers 2xx only after the notification committed; 4xx (not retried by
//! Alertmanager) for a payload that can never be accepted; 503 (retried) for our own
//! transient faults, so that nothing is lost.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use crate::app::AppState;
use crate::ingest::Sender;
use crate::wire::alertmanager::AlertmanagerPayload;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive_notification))
}

/// What became of a notification.
#[derive(Serialize, ToSchema)]
pub struct NotificationReceipt {
    /// `accepted`, or `duplicate` when the same content was received before (nothing
    /// changed but the receipt's duplicate count).
    #[schema(pattern = "^(accepted|duplicate)$")]
    pub status: &'static str,
    /// The kept receipt of the raw body.
    pub receipt_id: i64,
    /// Alerts in the notification.
    pub alerts: usize,
}

/// Receives an Alertmanager (v4) notification. Answered 200 only after it committed;
/// a redelivery is answered `duplicate` and changes nothing.
#[utoipa::path(post, path = "/webhooks/alertmanager", tag = "ingest",
    request_body(content = AlertmanagerPayload, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed (or a duplicate of a committed one)",
            body = NotificationReceipt),
        (status = 400, description = "Never acceptable: malformed JSON, another version, \
            a missing or mistyped field, over a `[limits]` bound; `details.field` names it",
            body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
        (status = 422, description = "Never acceptable either: a resolved alert without its \
            end, or an alert without its start (`inconsistent`)", body = ErrorBody),
    ))]
async fn receive_notification(
    State(state): State<AppState>,
    body: Result<RawBody, ApiError>,
) -> Result<Json<NotificationReceipt>, ApiError> {
    let parsed = body.and_then(|RawBody(body)| {
        Ok(AlertmanagerPayload::parse(
            &body,
            &state.bounds,
            state.clock.now(),
        )?)
    });
    let notification = parsed.inspect_err(|err| {
        state
            .ingestor
            .rejected(Sender::Alertmanager, err.code, &err.message)
    })?;
    let alerts = notification.alerts.len();
    let outcome = state.ingestor.notification(notification).await?;
    Ok(Json(NotificationReceipt {
        status: if outcome.duplicate {
            "duplicate"
        } else {
            "accepted"
        },
        receipt_id: outcome.receipt_id,
        alerts,
    }))
}
