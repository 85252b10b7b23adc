//! Decisions and their evidence: what rollwarden decided, why, and why not.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::actions::{ActionView, with_timelines};
use super::error::{ApiError, ErrorBody};
use super::query::{self, DEFAULT_LIMIT, IdPage, Page, TimeRange};
use crate::app::AppState;
use crate::domain::report::{self, Evidence};
use crate::domain::{Decision, Verdict};
use crate::store::{DecisionQuery, NotificationRecord, StoredDecision};

const VERDICTS: [&str; 6] = ["ok", "monitor", "investigate", "hold", "rollback", "freeze"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_decisions))
        .routes(routes!(get_decision))
        .routes(routes!(get_evidence))
        .routes(routes!(get_report))
}

/// Filters of the decision list; every one narrows (AND).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DecisionFilters {
    /// A target key, `cluster/namespace/kind/name`.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$",
        example = "default/prod/Deployment/checkout"
    )]
    target: Option<String>,
    verdict: Option<Verdict>,
}

/// The decision id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DecisionId {
    /// A decision's `id`.
    #[param(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    id: i64,
}

/// Decisions, newest first; `since`/`until` apply to `decided_at`.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "decisions",
    params(DecisionFilters, TimeRange, IdPage),
    responses(
        (status = 200, description = "One page of decisions", body = Page<StoredDecision>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_decisions(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<StoredDecision>>, ApiError> {
    let mut q = DecisionQuery {
        limit: DEFAULT_LIMIT,
        ..DecisionQuery::default()
    };
    for (key, value) in query::pairs(raw.as_deref()) {
        match key.as_str() {
            "target" => q.target = Some(query::text("target", value)?),
            "verdict" => q.verdict = Some(query::one_of("verdict", value, &VERDICTS)?),
            "since" => q.since = Some(query::time("since", &value)?),
            "until" => q.until = Some(query::time("until", &value)?),
            "limit" => q.limit = query::limit(&value)?,
            "after" => q.before_id = Some(query::id_cursor(&value)?),
            other => {
                return Err(query::unknown(
                    other,
                    "target, verdict, since, until, limit, after",
                ));
            }
        }
    }
    query::check_range(q.since, q.until)?;
    let limit = q.limit;
    q.limit = limit + 1;
    let items = state
        .store
        .list_decisions(&q)
        .await
        .inspect_err(|err| state.metrics.store_error("list_decisions", err))?;
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next }))
}

async fn load(
    state: &AppState,
    id: &str,
    raw: Option<&str>,
) -> Result<(StoredDecision, Decision), ApiError> {
    query::none(raw)?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid_path", "id", "must be a decision id"))?;
    let stored = state
        .store
        .decision(id)
        .await
        .inspect_err(|err| state.metrics.store_error("decision", err))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no decision {id}"),
            )
        })?;
    let decision: Decision = serde_json::from_value(stored.decision.clone()).map_err(|err| {
        tracing::error!(decision = id, error = %err, "stored decision does not decode");
        ApiError::internal()
    })?;
    Ok((stored, decision))
}

/// A decision with what came of it: its actions with their timelines, and the
/// notifications sent about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    #[serde(flatten)]
    stored: StoredDecision,
    actions: Vec<ActionView>,
    notifications: Vec<NotificationRecord>,
}

/// One decision: verdict, reason, every fired rule with threshold, observed value and
/// baseline, holds, suspect deploy, rollback target, recommended commands; its actions
/// with their timelines, and the notifications sent about it.
#[utoipa::path(get, path = "/api/v1/decisions/{id}", tag = "decisions",
    params(DecisionId),
    responses(
        (status = 200, description = "The decision", body = DecisionView),
        (status = 400, description = "Not a decision id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
    ))]
async fn get_decision(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DecisionView>, ApiError> {
    let stored = load(&state, &id, raw.as_deref()).await?.0;
    let actions = state
        .store
        .decision_actions(stored.id)
        .await
        .inspect_err(|err| state.metrics.store_error("decision_actions", err))?;
    let actions = with_timelines(&*state.store, actions)
        .await
        .inspect_err(|err| state.metrics.store_error("audit_trail", err))?;
    let notifications = state
        .store
        .decision_notifications(stored.id)
        .await
        .inspect_err(|err| state.metrics.store_error("decision_notifications", err))?;
    Ok(Json(DecisionView {
        stored,
        actions,
        notifications,
    }))
}

/// The evidence record the control-plane runbook requires for every rollback.
#[utoipa::path(get, path = "/api/v1/decisions/{id}/evidence", tag = "decisions",
    params(DecisionId),
    responses(
        (status = 200, description = "The evidence record", body = Evidence),
        (status = 400, description = "Not a decision id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
    ))]
async fn get_evidence(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Evidence>, ApiError> {
    let (stored, decision) = load(&state, &id, raw.as_deref()).await?;
    // The runbook's DEPLOYMENT_LOG_URL: the suspect deploy's pipeline run, when known.
    let log_link = decision
        .suspect
        .as_ref()
        .and_then(|d| d.deploy.link.clone());
    Ok(Json(report::evidence_record(
        &decision,
        stored.decided_at,
        stored.id,
        log_link.as_deref(),
    )))
}

/// The incident report (Markdown) in the multi-region runbook's template.
#[utoipa::path(get, path = "/api/v1/decisions/{id}/report", tag = "decisions",
    params(DecisionId),
    responses(
        (status = 200, description = "The incident report", body = String,
            content_type = "text/markdown; charset=utf-8"),
        (status = 400, description = "Not a decision id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
    ))]
async fn get_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let (stored, decision) = load(&state, &id, raw.as_deref()).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        report::incident_report(&decision, stored.decided_at, stored.id),
    ))
}
