//! Actions: `GET /api/v1/actions` (viewer) and the approval gate,
//! `POST /api/v1/decisions/{id}/approve` and `/reject` (operator, actor and comment
//! recorded).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use super::query::{self, DEFAULT_LIMIT, IdPage, Page, invalid};
use crate::app::AppState;
use crate::store::{ActionQuery, ActionRecord, ActionTransition, AuditEvent, Store, StoreError};

/// The states an action goes through.
pub const STATES: [&str; 15] = [
    "recorded",
    "recommended",
    "awaiting_approval",
    "approved",
    "rejected",
    "expired",
    "pending",
    "running",
    "succeeded",
    "verifying",
    "verified",
    "escalated",
    "failed",
    "dry_run",
    "cancelled",
];

/// The longest approval comment kept.
const MAX_COMMENT: usize = 1024;

pub fn read_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_actions))
        .routes(routes!(get_action))
}

pub fn write_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// Filters of the action list; every one narrows (AND).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ActionFilters {
    /// A target key, `cluster/namespace/kind/name`.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$",
        example = "default/prod/Deployment/checkout"
    )]
    target: Option<String>,
    /// `recorded`, `recommended`, `awaiting_approval`, `approved`, `rejected`,
    /// `expired`, `pending`, `running`, `succeeded`, `verifying`, `verified`,
    /// `escalated`, `failed`, `dry_run`.
    #[param(
        pattern = "^(recorded|recommended|awaiting_approval|approved|rejected|expired|pending|running|succeeded|verifying|verified|escalated|failed|dry_run|cancelled)$"
    )]
    state: Option<String>,
    /// `rollout_undo`, `helm_rollback`, `workflow_dispatch`, `freeze`, `command:NAME`,
    /// `webhook:NAME`.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    kind: Option<String>,
    /// A decision id.
    #[param(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    decision: Option<i64>,
}

/// An id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ActionId {
    /// An action's `id`.
    #[param(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    id: i64,
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

/// An action with its audit trail, oldest event first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionView {
    #[serde(flatten)]
    pub action: ActionRecord,
    pub timeline: Vec<AuditEvent>,
}

/// Every action with its timeline.
pub async fn with_timelines(
    store: &dyn Store,
    actions: Vec<ActionRecord>,
) -> Result<Vec<ActionView>, StoreError> {
    let subjects: Vec<String> = actions.iter().map(|a| format!("action:{}", a.id)).collect();
    let mut events = store.audit_trail(&subjects).await?;
    Ok(actions
        .into_iter()
        .map(|action| {
            let subject = format!("action:{}", action.id);
            let (timeline, rest) = events.drain(..).partition(|e| e.subject == subject);
            events = rest;
            ActionView { action, timeline }
        })
        .collect())
}

/// Actions (rollbacks, approvals, freezes), newest first.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions",
    params(ActionFilters, IdPage),
    responses(
        (status = 200, description = "One page of actions", body = Page<ActionRecord>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_actions(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<ActionRecord>>, ApiError> {
    let mut q = ActionQuery {
        limit: DEFAULT_LIMIT,
        ..ActionQuery::default()
    };
    for (key, value) in query::pairs(raw.as_deref()) {
        match key.as_str() {
            "target" => q.target = Some(query::text("target", value)?),
            "state" => q.state = Some(query::one_of("state", value, &STATES)?),
            "kind" => q.kind = Some(query::text("kind", value)?),
            "decision" => {
                let id = value.parse().ok().filter(|id| *id > 0);
                q.decision_id =
                    Some(id.ok_or_else(|| invalid("decision", "must be a decision id"))?);
            }
            "limit" => q.limit = query::limit(&value)?,
            "after" => q.before_id = Some(query::id_cursor(&value)?),
            other => {
                return Err(query::unknown(
                    other,
                    "target, state, kind, decision, limit, after",
                ));
            }
        }
    }
    let limit = q.limit;
    q.limit = limit + 1;
    let items = state
        .store
        .list_actions(&q)
        .await
        .inspect_err(|err| state.metrics.store_error("list_actions", err))?;
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next }))
}

/// One action with its timeline (every audit event, oldest first).
#[utoipa::path(get, path = "/api/v1/actions/{id}", tag = "actions",
    params(ActionId),
    responses(
        (status = 200, description = "The action", body = ActionView),
        (status = 400, description = "Not an action id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such action", body = ErrorBody),
    ))]
async fn get_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActionView>, ApiError> {
    query::none(raw.as_deref())?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid_path", "id", "must be an action id"))?;
    let found = state
        .store
        .list_actions(&ActionQuery {
            before_id: Some(id + 1),
            limit: 1,
            ..ActionQuery::default()
        })
        .await
        .inspect_err(|err| state.metrics.store_error("list_actions", err))?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {id}"),
            )
        })?;
    let mut views = with_timelines(&*state.store, vec![found])
        .await
        .inspect_err(|err| state.metrics.store_error("audit_trail", err))?;
    Ok(Json(views.remove(0)))
}

/// The optional body of an approval or rejection.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Why, in the operator's words (at most 1024 bytes); kept on the action.
    comment: Option<String>,
}

/// What an approval or rejection changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    pub decision_id: i64,
    /// The actions moved, with the operator's name and comment.
    pub actions: Vec<ActionRecord>,
}

/// Approves the decision's actions awaiting approval; the workers run them at once.
/// Recorded with the token's name and the comment.
#[utoipa::path(post, path = "/api/v1/decisions/{id}/approve", tag = "actions",
    params(DecisionId),
    request_body(content = Option<ApprovalRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Approved", body = Decided),
        (status = 400, description = "Not a decision id, a malformed body, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
        (status = 409, description = "Nothing awaits approval, or the approval window has passed",
            body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
    ))]
async fn approve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: RawBody,
) -> Result<Json<Decided>, ApiError> {
    query::none(raw.as_deref())?;
    decide(state, principal, id, body, "approved").await
}

/// Rejects the decision's actions awaiting approval: nothing is done. Recorded with
/// the token's name and the comment.
#[utoipa::path(post, path = "/api/v1/decisions/{id}/reject", tag = "actions",
    params(DecisionId),
    request_body(content = Option<ApprovalRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rejected", body = Decided),
        (status = 400, description = "Not a decision id, a malformed body, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
        (status = 409, description = "Nothing awaits approval, or the approval window has passed",
            body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
    ))]
async fn reject(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: RawBody,
) -> Result<Json<Decided>, ApiError> {
    query::none(raw.as_deref())?;
    decide(state, principal, id, body, "rejected").await
}

async fn decide(
    state: AppState,
    principal: Principal,
    id: String,
    RawBody(body): RawBody,
    to: &'static str,
) -> Result<Json<Decided>, ApiError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid_path", "id", "must be a decision id"))?;
    let request: ApprovalRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApprovalRequest::default()
    } else {
        crate::wire::from_json(&body)?
    };
    let comment = request.comment.map(|c| c.trim().to_string());
    if let Some(c) = &comment
        && (c.len() > MAX_COMMENT || c.chars().any(|ch| ch.is_control() && ch != '\n'))
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            "comment",
            format!("must be at most {MAX_COMMENT} bytes of text"),
        ));
    }
    let now = state.clock.now();
    state
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
    let actions = state
        .store
        .decision_actions(id)
        .await
        .inspect_err(|err| state.metrics.store_error("decision_actions", err))?;
    let waiting: Vec<&ActionRecord> = actions
        .iter()
        .filter(|a| a.state == "awaiting_approval")
        .collect();
    if waiting.is_empty() {
        let states: Vec<String> = actions
            .iter()
            .map(|a| format!("#{} {}", a.id, a.state))
            .collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_awaiting_approval",
            format!(
                "decision {id} has no action awaiting approval{}",
                if states.is_empty() {
                    String::new()
                } else {
                    format!(" (its actions: {})", states.join(", "))
                }
            ),
        ));
    }
    let mut changed = Vec::new();
    let mut expired = Vec::new();
    for action in waiting {
        // Past its expiry it is expired, whether or not a worker got to it yet.
        let past = action.expires_at.is_some_and(|at| at <= now);
        let change = ActionTransition {
            from: &["awaiting_approval"],
            to: if past { "expired" } else { to },
            actor: if past { "rollwarden" } else { &principal.name },
            comment: comment.as_deref(),
            details: json!({ "by": principal.name, "comment": comment }),
        };
        let moved = state
            .store
            .transition_action(action.id, &change, now)
            .await
            .inspect_err(|err| state.metrics.store_error("transition_action", err))?;
        match moved {
            Some(a) if past => expired.push(a.id),
            Some(a) => {
                state
                    .metrics
                    .action(a.kind.split(':').next().unwrap_or(&a.kind), to);
                changed.push(a);
            }
            None => {}
        }
    }
    if changed.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "approval_expired",
            format!("the approval window of decision {id} has passed; nothing was {to}"),
        )
        .with_details(json!({ "expired_actions": expired })));
    }
    tracing::info!(decision = id, by = %principal.name, to, actions = changed.len(), "approval gate");
    state.actions_wake.notify_waiters();
    Ok(Json(Decided {
        decision_id: id,
        actions: changed,
    }))
}
