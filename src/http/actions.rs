//! Actions: `GET /api/v1/actions` (viewer) and the approval gate,
//! `POST /api/v1/decisions/{id}/approve` and `/reject` (operator, actor and comment
//! recorded).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use super::query::{self, ApiPath, ApiQuery, Id, IdCursor, Limit, NoQuery, Page, Text};
use crate::actions::{Channels, Worker};
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

/// The action list's query; every filter narrows (AND).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActionListQuery {
    /// A target key, `cluster/namespace/kind/name`.
    #[param(inline, example = "default/prod/Deployment/checkout")]
    target: Option<Text>,
    #[param(inline)]
    state: Option<ActionState>,
    /// `rollout_undo`, `helm_rollback`, `workflow_dispatch`, `freeze`, `command:NAME`,
    /// `webhook:NAME`.
    #[param(inline)]
    kind: Option<Text>,
    /// A decision id.
    #[param(inline)]
    decision: Option<Id>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page.
    #[param(inline)]
    after: Option<IdCursor>,
}

/// One of [`STATES`].
struct ActionState(String);

query::text_newtype!(
    ActionState(String),
    |s| STATES.contains(&s).then(|| s.to_string()),
    format!("must be one of {}", STATES.join(", ")),
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(STATES))
);

/// An action in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ActionPath {
    /// An action's `id`.
    #[param(inline)]
    id: Id,
}

/// A decision in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DecisionPath {
    /// A decision's `id`.
    #[param(inline)]
    pub id: Id,
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
    params(ActionListQuery),
    responses(
        (status = 200, description = "One page of actions", body = Page<ActionRecord>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
pub(crate) async fn list_actions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ActionListQuery>,
) -> Result<Json<Page<ActionRecord>>, ApiError> {
    let limit = q.limit.unwrap_or_default().0;
    let items = state
        .store
        .list_actions(&ActionQuery {
            target: q.target.map(|t| t.0),
            state: q.state.map(|s| s.0),
            kind: q.kind.map(|k| k.0),
            decision_id: q.decision.map(|d| d.0),
            before_id: q.after.map(|a| a.0),
            // One row more than asked says whether another page exists.
            limit: limit + 1,
        })
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
    params(ActionPath),
    responses(
        (status = 200, description = "The action", body = ActionView),
        (status = 400, description = "Not an action id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such action", body = ErrorBody),
    ))]
async fn get_action(
    State(state): State<AppState>,
    ApiPath(ActionPath { id: Id(id) }): ApiPath<ActionPath>,
    _: ApiQuery<NoQuery>,
) -> Result<Json<ActionView>, ApiError> {
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

/// The optional body of an approval or rejection (none, `null` or an object).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Why, in the operator's words: at most 1024 characters, no control characters
    /// but line breaks; kept on the action, trimmed.
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
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
    params(DecisionPath),
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
    ApiPath(DecisionPath { id: Id(id) }): ApiPath<DecisionPath>,
    _: ApiQuery<NoQuery>,
    body: RawBody,
) -> Result<Json<Decided>, ApiError> {
    decide(state, principal, id, body, "approved").await
}

/// Rejects the decision's actions awaiting approval: nothing is done. Recorded with
/// the token's name and the comment.
#[utoipa::path(post, path = "/api/v1/decisions/{id}/reject", tag = "actions",
    params(DecisionPath),
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
    ApiPath(DecisionPath { id: Id(id) }): ApiPath<DecisionPath>,
    _: ApiQuery<NoQuery>,
    body: RawBody,
) -> Result<Json<Decided>, ApiError> {
    decide(state, principal, id, body, "rejected").await
}

async fn decide(
    state: AppState,
    principal: Principal,
    id: i64,
    RawBody(body): RawBody,
    to: &'static str,
) -> Result<Json<Decided>, ApiError> {
    let request: ApprovalRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApprovalRequest::default()
    } else {
        crate::wire::from_json::<Option<ApprovalRequest>>(&body)?.unwrap_or_default()
    };
    if let Some(c) = &request.comment
        && (c.chars().count() > MAX_COMMENT || c.chars().any(|ch| ch.is_control() && ch != '\n'))
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            "comment",
            format!(
                "must be at most {MAX_COMMENT} characters, no control characters but line breaks"
            ),
        ));
    }
    let comment = request.comment.map(|c| c.trim().to_string());
    gate(&state, &principal.name, id, comment, to)
        .await
        .map(Json)
}

/// Moves decision `id`'s actions awaiting approval to `to` (`approved` or
/// `rejected`), recorded as `by` with `comment`, and announces it on every channel;
/// those past their expiry become `expired` instead, announced as the workers' sweep
/// does. 404 without the decision, 409 when nothing was moved.
pub(crate) async fn gate(
    state: &AppState,
    by: &str,
    id: i64,
    comment: Option<String>,
    to: &'static str,
) -> Result<Decided, ApiError> {
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
        .decision_actions(&[id])
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
    let fallback;
    let channels = match &state.evaluator.planner {
        Some(planner) => &planner.channels,
        None => {
            fallback = Channels::default();
            &fallback
        }
    };
    let mut changed = Vec::new();
    let mut expired = Vec::new();
    for action in waiting {
        // Past its expiry it is expired, whether or not a worker got to it yet, and
        // announced as the workers' sweep announces it.
        if action.expires_at.is_some_and(|at| at <= now) {
            let details = json!({ "expires_at": action.expires_at, "by": by, "comment": comment });
            let moved = Worker::expire_approval(
                &*state.store,
                channels,
                &state.metrics,
                action,
                "rollwarden",
                details,
                now,
            )
            .await
            .inspect_err(|err| state.metrics.store_error("expire_approval", err))?;
            expired.extend(moved.map(|a| a.id));
            continue;
        }
        let change = ActionTransition {
            from: &["awaiting_approval"],
            to,
            actor: by,
            comment: comment.as_deref(),
            details: json!({ "by": by, "comment": comment }),
        };
        let moved = state
            .store
            .transition_action(action.id, &change, now)
            .await
            .inspect_err(|err| state.metrics.store_error("transition_action", err))?;
        if let Some(a) = moved {
            state
                .metrics
                .action(a.kind.split(':').next().unwrap_or(&a.kind), to);
            changed.push(a);
        }
    }
    // Told wherever the request was: Slack's message loses its buttons and names the
    // person, whether they pressed there or decided in the console or the API. The
    // decision is made: news that cannot be written is logged, not a failed request.
    if let Err(err) = channels
        .announce_decided(&*state.store, &changed, now)
        .await
    {
        state.metrics.store_error("announce_decided", &err);
        tracing::error!(decision = id, error = %err, "the approval gate's news was not enqueued");
    }
    if !changed.is_empty() || !expired.is_empty() {
        state.actions_wake.notify_waiters();
    }
    if changed.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "approval_expired",
            format!("the approval window of decision {id} has passed; nothing was {to}"),
        )
        .with_details(json!({ "expired_actions": expired })));
    }
    tracing::info!(
        decision = id,
        by,
        to,
        actions = changed.len(),
        "approval gate"
    );
    Ok(Decided {
        decision_id: id,
        actions: changed,
    })
}
