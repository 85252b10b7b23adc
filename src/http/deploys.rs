//! Deploy history: CI callbacks in, the deploy list and one target's timeline out.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use super::query::{self, DEFAULT_LIMIT, DeployPage, Page, TimeRange, invalid};
use crate::app::AppState;
use crate::domain::{DeploySource, TargetRef};
use crate::store::{DeployCursor, DeployQuery, StoredDeploy};
use crate::wire::ci::CiDeployPayload;

const SOURCE: &str = "ci";

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

/// Filters of the deploy list; every one narrows (AND).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DeployFilters {
    /// A target key, `cluster/namespace/kind/name`.
    #[param(
        min_length = 1,
        max_length = 512,
        example = "default/prod/Deployment/checkout"
    )]
    target: Option<String>,
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    namespace: Option<String>,
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    name: Option<String>,
    source: Option<DeploySource>,
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    environment: Option<String>,
}

/// The workload of a timeline.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct HistoryTarget {
    /// The namespace.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$",
        example = "prod"
    )]
    namespace: String,
    /// The workload's name.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$",
        example = "checkout"
    )]
    name: String,
}

/// Another target than a Deployment of the configured cluster.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct HistoryOptions {
    /// Default: `kubernetes.cluster`.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    cluster: Option<String>,
    /// Default: `Deployment`.
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    kind: Option<String>,
}

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
    ))]
async fn receive_deploy(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Result<RawBody, ApiError>,
) -> Result<(StatusCode, Json<DeployAccepted>), ApiError> {
    let parsed = query::none(raw.as_deref())
        .and(body)
        .and_then(|RawBody(body)| {
            Ok(CiDeployPayload::parse(
                &body,
                &state.cluster,
                state.clock.now(),
            )?)
        });
    let deploy = parsed.inspect_err(|_| state.metrics.notification(SOURCE, "rejected"))?;
    let writes = state
        .store
        .record_deploys(std::slice::from_ref(&deploy), state.clock.now())
        .await
        .inspect_err(|err| {
            state.metrics.notification(SOURCE, "failed");
            state.metrics.store_error("record_deploys", err);
        })?;
    let write = writes.first().ok_or_else(ApiError::internal)?;
    state.metrics.notification(
        SOURCE,
        if write.changed {
            "accepted"
        } else {
            "duplicate"
        },
    );
    if let Some(engine) = state.engine.as_ref().filter(|_| write.changed) {
        engine.touched(vec![deploy.target.clone()]);
    }
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
    params(DeployFilters, TimeRange, DeployPage),
    responses(
        (status = 200, description = "One page of deploys", body = Page<StoredDeploy>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_deploys(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<StoredDeploy>>, ApiError> {
    let mut query = DeployQuery {
        limit: DEFAULT_LIMIT,
        ..DeployQuery::default()
    };
    for (key, value) in query::pairs(raw.as_deref()) {
        match key.as_str() {
            "target" => query.target = Some(query::text("target", value)?),
            "namespace" => query.namespace = Some(query::text("namespace", value)?),
            "name" => query.name = Some(query::text("name", value)?),
            "source" => {
                query.source = Some(DeploySource::parse(&value).ok_or_else(|| {
                    invalid("source", "must be kubernetes, helm, ci, flagger or argo")
                })?);
            }
            "environment" => query.environment = Some(query::text("environment", value)?),
            "since" => query.since = Some(query::time("since", &value)?),
            "until" => query.until = Some(query::time("until", &value)?),
            "limit" => query.limit = query::limit(&value)?,
            "after" => query.after = Some(cursor(&value)?),
            other => {
                return Err(query::unknown(
                    other,
                    "target, namespace, name, source, environment, since, until, limit, after",
                ));
            }
        }
    }
    query::check_range(query.since, query.until)?;
    let limit = query.limit;
    query.limit = limit + 1;
    let items = state
        .store
        .list_deploys(&query)
        .await
        .inspect_err(|err| state.metrics.store_error("list_deploys", err))?;
    Ok(Json(page(items, limit)))
}

/// The merged rollout + Helm + CI timeline of one workload, newest first.
#[utoipa::path(get, path = "/api/v1/targets/{namespace}/{name}/history", tag = "deploys",
    params(HistoryTarget, HistoryOptions, DeployPage),
    responses(
        (status = 200, description = "One page of the timeline", body = Page<StoredDeploy>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn target_history(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<StoredDeploy>>, ApiError> {
    let mut cluster = state.cluster.clone();
    let mut kind = "Deployment".to_string();
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in query::pairs(raw.as_deref()) {
        match key.as_str() {
            "cluster" => cluster = query::text("cluster", value)?,
            "kind" => kind = query::text("kind", value)?,
            "limit" => limit = query::limit(&value)?,
            "after" => after = Some(cursor(&value)?),
            other => return Err(query::unknown(other, "cluster, kind, limit, after")),
        }
    }
    let namespace = query::path_text("namespace", namespace)?;
    let name = query::path_text("name", name)?;
    let target = TargetRef::new(&cluster, &namespace, &kind, &name);
    let items = state
        .store
        .target_history(&target, after, limit + 1)
        .await
        .inspect_err(|err| state.metrics.store_error("target_history", err))?;
    Ok(Json(page(items, limit)))
}

fn cursor(value: &str) -> Result<DeployCursor, ApiError> {
    DeployCursor::decode(value).ok_or_else(|| invalid("after", "not a cursor from `next`"))
}

fn page(items: Vec<StoredDeploy>, limit: u32) -> Page<StoredDeploy> {
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|d| DeployCursor::of(d).encode()))
        .flatten();
    Page { items, next }
}
