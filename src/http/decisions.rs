//! Decisions and their evidence: what rollwarden decided, why, and why not.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::actions::{ActionView, with_timelines};
use super::alerts::Page;
use super::error::ApiError;
use super::query::{self, DEFAULT_LIMIT, invalid};
use crate::app::AppState;
use crate::domain::Decision;
use crate::domain::report;
use crate::store::{DecisionQuery, NotificationRecord, StoredDecision};
use serde::Serialize;

const VERDICTS: [&str; 6] = ["ok", "monitor", "investigate", "hold", "rollback", "freeze"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/decisions", get(list_decisions))
        .route("/api/v1/decisions/{id}", get(get_decision))
        .route("/api/v1/decisions/{id}/evidence", get(get_evidence))
        .route("/api/v1/decisions/{id}/report", get(get_report))
}

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
            "verdict" => {
                if !VERDICTS.contains(&value.as_str()) {
                    return Err(invalid(
                        "verdict",
                        format!("must be one of {}", VERDICTS.join(", ")),
                    ));
                }
                q.verdict = Some(value);
            }
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

async fn load(state: &AppState, id: &str) -> Result<(StoredDecision, Decision), ApiError> {
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
#[derive(Debug, Serialize)]
struct DecisionView {
    #[serde(flatten)]
    stored: StoredDecision,
    actions: Vec<ActionView>,
    notifications: Vec<NotificationRecord>,
}

async fn get_decision(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DecisionView>, ApiError> {
    let stored = load(&state, &id).await?.0;
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
async fn get_evidence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (stored, decision) = load(&state, &id).await?;
    // The runbook's DEPLOYMENT_LOG_URL: the suspect deploy's pipeline run, when known.
    let log_link = decision
        .suspect
        .as_ref()
        .and_then(|d| d.deploy.link.clone());
    Ok(Json(report::evidence(
        &decision,
        stored.decided_at,
        stored.id,
        log_link.as_deref(),
    )))
}

/// The incident report (Markdown) in the multi-region runbook's template.
async fn get_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (stored, decision) = load(&state, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        report::incident_report(&decision, stored.decided_at, stored.id),
    ))
}
