//! Decisions and their evidence: what rollwarden decided, why, and why not.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::actions::{ActionView, DecisionPath, with_timelines};
use super::error::{ApiError, ErrorBody};
use super::query::{self, ApiPath, ApiQuery, Id, IdCursor, Limit, NoQuery, Page, Text, Time};
use crate::app::AppState;
use crate::domain::report::{self, Evidence};
use crate::domain::{Decision, Verdict};
use crate::store::{DecisionLine, DecisionQuery, NotificationRecord, StoredDecision};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_decisions))
        .routes(routes!(get_decision))
        .routes(routes!(get_evidence))
        .routes(routes!(get_report))
}

/// The decision list's query; every filter narrows (AND).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DecisionListQuery {
    /// A target key, `cluster/namespace/kind/name`.
    #[param(inline, example = "default/prod/Deployment/checkout")]
    target: Option<Text>,
    verdict: Option<Verdict>,
    /// Decisions made at or after this instant (RFC 3339); none when it is not before
    /// `until`.
    #[param(inline)]
    since: Option<Time>,
    /// Decisions made before this instant (RFC 3339).
    #[param(inline)]
    until: Option<Time>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page.
    #[param(inline)]
    after: Option<IdCursor>,
}

/// Decisions, newest first; `since`/`until` apply to `decided_at`.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "decisions",
    params(DecisionListQuery),
    responses(
        (status = 200, description = "One page of decisions", body = Page<StoredDecision>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
pub(crate) async fn list_decisions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DecisionListQuery>,
) -> Result<Json<Page<StoredDecision>>, ApiError> {
    let (query, limit) = q.to_query();
    let items = state
        .store
        .list_decisions(&query)
        .await
        .inspect_err(|err| state.metrics.store_error("list_decisions", err))?;
    Ok(Json(page(items, limit, |d| d.id)))
}

/// [`list_decisions`] without the evidence, for the console's decisions page (which
/// shows five columns of each): not a route of the API.
pub(crate) async fn list_decision_lines(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DecisionListQuery>,
) -> Result<Json<Page<DecisionLine>>, ApiError> {
    let (query, limit) = q.to_query();
    let items = state
        .store
        .list_decision_lines(&query)
        .await
        .inspect_err(|err| state.metrics.store_error("list_decision_lines", err))?;
    Ok(Json(page(items, limit, |d| d.id)))
}

impl DecisionListQuery {
    /// The store's query, asking one row more than the page's `limit` (returned): it
    /// says whether another page exists.
    fn to_query(&self) -> (DecisionQuery, u32) {
        let limit = self.limit.unwrap_or_default().0;
        let query = DecisionQuery {
            target: self.target.as_ref().map(|t| t.0.clone()),
            verdict: self.verdict.map(|v| v.as_str().to_string()),
            since: self.since.map(|t| t.0),
            until: self.until.map(|t| t.0),
            before_id: self.after.as_ref().map(|a| a.0),
            limit: limit + 1,
        };
        (query, limit)
    }
}

/// One page of `items` (read with one more than `limit`), its `next` the last id.
fn page<T>(items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Page<T> {
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|d| id(d).to_string()))
        .flatten();
    Page { items, next }
}

pub(crate) async fn load(
    state: &AppState,
    id: i64,
) -> Result<(StoredDecision, Decision), ApiError> {
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
    pub stored: StoredDecision,
    pub actions: Vec<ActionView>,
    pub notifications: Vec<NotificationRecord>,
}

/// One decision: verdict, reason, every fired rule with threshold, observed value and
/// baseline, holds, suspect deploy, rollback target, recommended commands; its actions
/// with their timelines, and the notifications sent about it.
#[utoipa::path(get, path = "/api/v1/decisions/{id}", tag = "decisions",
    params(DecisionPath),
    responses(
        (status = 200, description = "The decision", body = DecisionView),
        (status = 400, description = "Not a decision id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
    ))]
async fn get_decision(
    State(state): State<AppState>,
    ApiPath(DecisionPath { id: Id(id) }): ApiPath<DecisionPath>,
    _: ApiQuery<NoQuery>,
) -> Result<Json<DecisionView>, ApiError> {
    Ok(Json(view(&state, load(&state, id).await?.0).await?))
}

/// A stored decision with its actions (and their timelines) and notifications.
pub(crate) async fn view(
    state: &AppState,
    stored: StoredDecision,
) -> Result<DecisionView, ApiError> {
    let actions = state
        .store
        .decision_actions(&[stored.id])
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
    Ok(DecisionView {
        stored,
        actions,
        notifications,
    })
}

/// The evidence record the control-plane runbook requires for every rollback.
#[utoipa::path(get, path = "/api/v1/decisions/{id}/evidence", tag = "decisions",
    params(DecisionPath),
    responses(
        (status = 200, description = "The evidence record", body = Evidence),
        (status = 400, description = "Not a decision id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
    ))]
async fn get_evidence(
    State(state): State<AppState>,
    ApiPath(DecisionPath { id: Id(id) }): ApiPath<DecisionPath>,
    _: ApiQuery<NoQuery>,
) -> Result<Json<Evidence>, ApiError> {
    let (stored, decision) = load(&state, id).await?;
    Ok(Json(evidence(&stored, &decision)))
}

/// The decision's evidence record.
pub(crate) fn evidence(stored: &StoredDecision, decision: &Decision) -> Evidence {
    // The runbook's DEPLOYMENT_LOG_URL: the suspect deploy's pipeline run, when known.
    let log_link = decision
        .suspect
        .as_ref()
        .and_then(|d| d.deploy.link.clone());
    report::evidence_record(decision, stored.decided_at, stored.id, log_link.as_deref())
}

/// The incident report (Markdown) in the multi-region runbook's template.
#[utoipa::path(get, path = "/api/v1/decisions/{id}/report", tag = "decisions",
    params(DecisionPath),
    responses(
        (status = 200, description = "The incident report", body = String,
            content_type = "text/markdown; charset=utf-8"),
        (status = 400, description = "Not a decision id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
    ))]
async fn get_report(
    State(state): State<AppState>,
    ApiPath(DecisionPath { id: Id(id) }): ApiPath<DecisionPath>,
    _: ApiQuery<NoQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (stored, decision) = load(&state, id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        report::incident_report(&decision, stored.decided_at, stored.id),
    ))
}
