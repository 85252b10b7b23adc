//! `GET /api/v1/targets`: every target rollwarden has decided about, with its standing
//! decision (role viewer). What `rollwarden ctl targets` prints, and where an operator
//! looks first.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::query::{self, ApiQuery, Limit, Page};
use crate::app::AppState;
use crate::domain::TargetRef;
use crate::store::StandingDecision;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_targets))
}

/// A target and where it stands: its latest decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetStatus {
    /// `cluster/namespace/kind/name`.
    #[schema(example = "default/prod/Deployment/checkout")]
    pub target: String,
    /// The standing decision's id (`GET /api/v1/decisions/{id}`).
    pub decision_id: i64,
    #[schema(value_type = crate::domain::Verdict)]
    pub verdict: String,
    pub reason: String,
    /// The rule ids that fired (`M2`, `G3`…).
    pub rules: Vec<String>,
    pub decided_at: DateTime<Utc>,
}

impl From<StandingDecision> for TargetStatus {
    fn from(d: StandingDecision) -> Self {
        Self {
            target: d.target_key,
            decision_id: d.id,
            verdict: d.verdict,
            reason: d.reason,
            rules: d.brief.fired.into_iter().map(|r| r.rule_id).collect(),
            decided_at: d.decided_at,
        }
    }
}

/// The target list's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TargetListQuery {
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page (a target key).
    #[param(inline)]
    after: Option<TargetCursor>,
}

/// A target key as `next` gives it.
struct TargetCursor(String);

query::text_newtype!(
    TargetCursor(String),
    |s| (s.chars().count() <= 1024 && TargetRef::parse(s).is_some()).then(|| s.to_string()),
    "not a cursor from `next`: a target key cluster/namespace/kind/name",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(1024))
        .pattern(Some("^[^/]*/[^/]+/[^/]+/[^/]+$"))
);

/// Every target rollwarden has decided about, by target key, with its standing
/// decision: the verdict, the reason and the rules that fired.
#[utoipa::path(get, path = "/api/v1/targets", tag = "decisions",
    params(TargetListQuery),
    responses(
        (status = 200, description = "One page of targets", body = Page<TargetStatus>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_targets(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TargetListQuery>,
) -> Result<Json<Page<TargetStatus>>, ApiError> {
    let limit = q.limit.unwrap_or_default().0;
    let items = state
        .store
        .standing_decisions(q.after.as_ref().map(|a| a.0.as_str()), limit + 1)
        .await
        .inspect_err(|err| state.metrics.store_error("standing_decisions", err))?;
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|d| d.target_key.clone()))
        .flatten();
    Ok(Json(Page {
        items: items.into_iter().map(TargetStatus::from).collect(),
        next,
    }))
}
