//! Deploy history: CI callbacks in, the deploy list and one target's timeline out.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use super::query::{self, ApiPath, ApiQuery, Limit, NoQuery, Page, Text, Time};
use crate::app::AppState;
use crate::domain::{DeploySource, TargetRef};
use crate::ingest::Sender;
use crate::store::{DeployCursor, DeployQuery, StoredDeploy};
use crate::wire::ci::CiDeployPayload;

/// Routes that take deploys in (role `webhook` or higher).
pub fn ingest_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive_deploy))
}

/// Routes that read history (role `viewer` or higher).
pub fn read_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deploys))
        .routes(routes!(target_history))
}

/// What a deploy callback did.
#[derive(Serialize, ToSchema)]
pub struct DeployAccepted {
    /// The deploy's row id.
    pub id: i64,
    /// The target key, `cluster/namespace/kind/name`.
    pub target: String,
    /// A new (target, revision).
    pub created: bool,
    /// The row was inserted or its content changed.
    pub changed: bool,
}

/// The deploy list's query; every filter narrows (AND).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeployListQuery {
    /// A target key, `cluster/namespace/kind/name`.
    #[param(inline, example = "default/prod/Deployment/checkout")]
    target: Option<Text>,
    #[param(inline)]
    namespace: Option<Text>,
    #[param(inline)]
    name: Option<Text>,
    source: Option<DeploySource>,
    #[param(inline)]
    environment: Option<Text>,
    /// Deploys that started at or after this instant (RFC 3339); none when it is not
    /// before `until`.
    #[param(inline)]
    since: Option<Time>,
    /// Deploys that started before this instant (RFC 3339).
    #[param(inline)]
    until: Option<Time>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page.
    #[param(inline)]
    after: Option<DeployAfter>,
}

/// The workload of a timeline.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct HistoryPath {
    /// The namespace.
    #[param(inline, example = "prod")]
    namespace: Text,
    /// The workload's name.
    #[param(inline, example = "checkout")]
    name: Text,
}

/// A timeline's query: another target than a Deployment of the configured cluster, and
/// the page.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Default: `kubernetes.cluster`.
    #[param(inline)]
    cluster: Option<Text>,
    /// Default: `Deployment`.
    #[param(inline)]
    kind: Option<Text>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page.
    #[param(inline)]
    after: Option<DeployAfter>,
}

/// The `after` cursor of a deploy list: the `next` of the previous page (the start, in
/// microseconds since 1970, and the id of its last item).
struct DeployAfter(DeployCursor);

/// Where a cursor's start is clamped to: every deploy starts well inside (RFC 3339 has
/// four-digit years), and PostgreSQL keeps no timestamp far outside.
const CURSOR_MICROS: std::ops::RangeInclusive<i64> =
    -100_000_000_000_000_000..=1_000_000_000_000_000_000;

query::text_newtype!(
    DeployAfter(DeployCursor),
    |s| {
        let (micros, id) = s.split_once('_')?;
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        let ok = (1..=18).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (1..=18).contains(&id.len())
            && !id.starts_with('0')
            && id.bytes().all(|b| b.is_ascii_digit());
        let micros: i64 = micros.parse().ok().filter(|_| ok)?;
        let micros = micros.clamp(*CURSOR_MICROS.start(), *CURSOR_MICROS.end());
        DeployCursor::decode(&format!("{micros}_{id}"))
    },
    "not a cursor from `next`",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^-?[0-9]{1,18}_[1-9][0-9]{0,17}$"))
);

/// A pipeline announces a deploy: 201 when new, 200 when that (target, revision) was
/// known (the report is merged in, so `started` then `succeeded` is one row).
#[utoipa::path(post, path = "/api/v1/deploys", tag = "ingest",
    request_body(content = CiDeployPayload, content_type = "application/json"),
    responses(
        (status = 201, description = "A new (target, revision)", body = DeployAccepted),
        (status = 200, description = "A known (target, revision), merged", body = DeployAccepted),
        (status = 400, description = "A field is missing, unknown or invalid (`details.field` \
            names it), or a query parameter was given", body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
        (status = 422, description = "`finished_at` before `started_at`, or more than 32 \
            images with `image` (`inconsistent`)", body = ErrorBody),
    ))]
async fn receive_deploy(
    State(state): State<AppState>,
    query: Result<ApiQuery<NoQuery>, ApiError>,
    body: Result<RawBody, ApiError>,
) -> Result<(StatusCode, Json<DeployAccepted>), ApiError> {
    let now = state.clock.now();
    let deploy = query
        .and(body)
        .and_then(|RawBody(body)| Ok(CiDeployPayload::parse(&body, &state.cluster, now)?))
        .inspect_err(|err| state.ingestor.rejected(Sender::Ci, err.code, &err.message))?;
    let write = state.ingestor.ci_deploy(&deploy, now).await?;
    let status = if write.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DeployAccepted {
            id: write.id,
            target: deploy.target.key(),
            created: write.created,
            changed: write.changed,
        }),
    ))
}

/// Deploys from every source, newest first by start; `since`/`until` apply to the
/// start.
#[utoipa::path(get, path = "/api/v1/deploys", tag = "deploys",
    params(DeployListQuery),
    responses(
        (status = 200, description = "One page of deploys", body = Page<StoredDeploy>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_deploys(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeployListQuery>,
) -> Result<Json<Page<StoredDeploy>>, ApiError> {
    let limit = q.limit.unwrap_or_default().0;
    let items = state
        .store
        .list_deploys(&DeployQuery {
            target: q.target.map(|t| t.0),
            namespace: q.namespace.map(|t| t.0),
            name: q.name.map(|t| t.0),
            source: q.source,
            environment: q.environment.map(|t| t.0),
            since: q.since.map(|t| t.0),
            until: q.until.map(|t| t.0),
            after: q.after.map(|a| a.0),
            // One row more than asked says whether another page exists.
            limit: limit + 1,
        })
        .await
        .inspect_err(|err| state.metrics.store_error("list_deploys", err))?;
    Ok(Json(page(items, limit)))
}

/// The merged rollout + Helm + CI timeline of one workload, newest first.
#[utoipa::path(get, path = "/api/v1/targets/{namespace}/{name}/history", tag = "deploys",
    params(HistoryPath, HistoryQuery),
    responses(
        (status = 200, description = "One page of the timeline", body = Page<StoredDeploy>),
        (status = 400, description = "A path segment or query parameter is malformed, or \
            a query parameter unknown", body = ErrorBody),
    ))]
async fn target_history(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<HistoryPath>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Page<StoredDeploy>>, ApiError> {
    let cluster = q.cluster.map_or_else(|| state.cluster.clone(), |c| c.0);
    let kind = q.kind.map_or_else(|| "Deployment".to_string(), |k| k.0);
    let target = TargetRef::new(&cluster, &path.namespace.0, &kind, &path.name.0);
    let limit = q.limit.unwrap_or_default().0;
    let items = state
        .store
        .target_history(&target, q.after.map(|a| a.0), limit + 1)
        .await
        .inspect_err(|err| state.metrics.store_error("target_history", err))?;
    Ok(Json(page(items, limit)))
}

fn page(items: Vec<StoredDeploy>, limit: u32) -> Page<StoredDeploy> {
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|d| DeployCursor::of(d).encode()))
        .flatten();
    Page { items, next }
}
