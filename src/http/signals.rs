//! `POST /api/v1/signals`: observations that do not come from Alertmanager — customer
//! reports with a count, a manual SLA violation, data corruption, a degraded dependency.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use super::query::{ApiQuery, NoQuery};
use crate::app::AppState;
use crate::domain::SignalKind;
use crate::ingest::Sender;
use crate::wire::signal::SignalPayload;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive_signal))
}

/// What became of a posted signal.
#[derive(Serialize, ToSchema)]
pub struct SignalAccepted {
    /// The signal's row id.
    pub id: i64,
    /// New, or a repeat of a known one.
    pub created: bool,
    pub kind: SignalKind,
    /// The target key it is about; `null` for a dependency.
    pub target: Option<String>,
    /// Why the value cannot be trusted, if it cannot (it never rolls back on its own).
    pub inconclusive: Option<String>,
}

/// A signal that is not an alert: customer reports with a count, an SLA violation,
/// data corruption, a degraded dependency. 201 for a new signal, 200 for a repeat of a
/// known one (same `id` and start), which updates its value and end.
#[utoipa::path(post, path = "/api/v1/signals", tag = "ingest",
    request_body(content = SignalPayload, content_type = "application/json"),
    responses(
        (status = 201, description = "A new signal", body = SignalAccepted),
        (status = 200, description = "A known signal, updated", body = SignalAccepted),
        (status = 400, description = "A field is missing, unknown or invalid (`details.field` \
            names it), or a query parameter was given", body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
        (status = 422, description = "A rule between fields or against our clock \
            (`inconsistent`): see the request body", body = ErrorBody),
    ))]
async fn receive_signal(
    State(state): State<AppState>,
    query: Result<ApiQuery<NoQuery>, ApiError>,
    body: Result<RawBody, ApiError>,
) -> Result<(StatusCode, Json<SignalAccepted>), ApiError> {
    let now = state.clock.now();
    let signal = query
        .and(body)
        .and_then(|RawBody(body)| Ok(SignalPayload::parse(&body, &state.cluster, now)?))
        .inspect_err(|err| {
            state
                .ingestor
                .rejected(Sender::Signal, err.code, &err.message)
        })?;
    let (id, created) = state.ingestor.signal(&signal, now).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SignalAccepted {
            id,
            created,
            kind: signal.kind,
            target: signal.target.as_ref().map(|t| t.key()),
            inconclusive: signal.inconclusive.clone(),
        }),
    ))
}
