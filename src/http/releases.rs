//! Multi-region releases (`domain::release`): `GET /api/v1/releases`,
//! `GET /api/v1/releases/{release}` and the wave gate CI pipelines ask before deploying a
//! region, `GET /api/v1/releases/{release}/gate?region=R` (viewer). A release is computed
//! from the configured targets that share a service and have a region, their deploys
//! and decisions; its own decisions (first regression, all-region rollback) are stored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::query::{self, ApiPath, ApiQuery, KubeName, Limit, NoQuery, Page};
use crate::app::AppState;
use crate::domain::field::Field;
use crate::domain::release::{self, Gate, Release};
use crate::engine::ServiceView;
use crate::store::ReleaseDecision;

/// The longest release id accepted: a service name and a version, digest or commit.
const MAX_RELEASE_ID: usize = 512;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_releases))
        .routes(routes!(get_release))
        .routes(routes!(release_gate))
}

/// A release id, `SERVICE@VERSION`: a DNS-1123 service name, `@`, and a version of
/// letters, digits and `._+:~-` (semantic versions with build metadata, image
/// digests `sha256:…`, commits).
#[derive(Debug, Clone)]
struct ReleaseId(String);

fn release_id(s: &str) -> Option<String> {
    let (service, version) = s.split_once('@')?;
    let version_ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+:~-".contains(c));
    (s.len() <= MAX_RELEASE_ID && Field::Name.fits(service) && version_ok).then(|| s.to_string())
}

query::text_newtype!(
    ReleaseId(String),
    release_id,
    "must be a release id: SERVICE@VERSION (a DNS-1123 service name, then the version, \
     digest or commit), at most 512 characters",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(3))
        .max_length(Some(MAX_RELEASE_ID))
        .pattern(Some(
            "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*@[A-Za-z0-9._+:~-]+$"
        ))
);

/// A region name as targets configure it: 1 to 63 letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone)]
struct RegionName(String);

query::text_newtype!(
    RegionName(String),
    |s| (!s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    .then(|| s.to_string()),
    "must be a region: 1 to 63 letters, digits, '-', '_' or '.'",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(63))
        .pattern(Some("^[A-Za-z0-9_.-]{1,63}$"))
);

/// The release list's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReleaseListQuery {
    /// Only this service's releases.
    #[param(inline)]
    service: Option<KubeName>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page (a release id).
    #[param(inline)]
    after: Option<ReleaseId>,
}

/// A release in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ReleasePath {
    /// `SERVICE@VERSION`, as `GET /api/v1/releases` lists it.
    #[param(inline)]
    release: ReleaseId,
}

/// The gate's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct GateQuery {
    /// The region about to receive the release (required).
    #[param(inline)]
    region: RegionName,
}

/// A release with its own decisions and each region's gate.
#[derive(Serialize, ToSchema)]
struct ReleaseDetail {
    #[serde(flatten)]
    release: Release,
    /// Its first regression (`region`) and its all-region rollback (`all_regions`),
    /// each recorded once.
    decisions: Vec<ReleaseDecision>,
    /// The wave gate of every region that has not received it.
    gates: Vec<Gate>,
}

/// Every release of every service with two regions or more (configured targets with
/// a `region`, grouped by `service`), newest first within a service, services by name.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases",
    params(ReleaseListQuery),
    responses(
        (status = 200, description = "One page of releases", body = Page<Release>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_releases(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ReleaseListQuery>,
) -> Result<Json<Page<Release>>, ApiError> {
    let limit = q.limit.unwrap_or_default().0 as usize;
    let mut all = Vec::new();
    for (service, peers) in state.evaluator.release_services() {
        if q.service.as_ref().is_some_and(|s| s.0 != service) {
            continue;
        }
        all.extend(view(&state, peers).await?.releases);
    }
    let start = match &q.after {
        Some(ReleaseId(after)) => all
            .iter()
            .position(|r| r.id == *after)
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let items: Vec<Release> = all.into_iter().skip(start).take(limit + 1).collect();
    let (items, more) = query::split_page(items, limit as u32);
    let next = more.then(|| items.last().map(|r| r.id.clone())).flatten();
    Ok(Json(Page { items, next }))
}

/// One release: each region's deploy, status and current verdict, its scope under the
/// blast-radius policy, its own decisions, and the wave gate of the regions it has not
/// reached.
#[utoipa::path(get, path = "/api/v1/releases/{release}", tag = "releases",
    params(ReleasePath),
    responses(
        (status = 200, description = "The release", body = ReleaseDetail),
        (status = 400, description = "Not a release id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
    ))]
async fn get_release(
    State(state): State<AppState>,
    ApiPath(ReleasePath {
        release: ReleaseId(id),
    }): ApiPath<ReleasePath>,
    _: ApiQuery<NoQuery>,
) -> Result<Json<ReleaseDetail>, ApiError> {
    let release = find(&state, &id).await?;
    let decisions = state
        .store
        .release_decisions(&id)
        .await
        .inspect_err(|err| state.metrics.store_error("release_decisions", err))?;
    let radius = &state.evaluator.policy.releases;
    let gates = release
        .regions
        .iter()
        .filter(|r| !r.received)
        .map(|r| release::gate(&release, &r.region, radius))
        .collect();
    Ok(Json(ReleaseDetail {
        release,
        decisions,
        gates,
    }))
}

/// The wave gate: may `region` receive the release now? 200 when it may; 403
/// (`gate_closed`, the gate in `details`) when the release regressed in another region
/// and the wave is stopped. Ask it in a pipeline before deploying a region
/// (`curl --fail`).
#[utoipa::path(get, path = "/api/v1/releases/{release}/gate", tag = "releases",
    params(ReleasePath, GateQuery),
    responses(
        (status = 200, description = "The gate is open", body = Gate),
        (status = 400, description = "Not a release id, the region missing or malformed, \
            or not a region of the release's service", body = ErrorBody),
        (status = 403, description = "The gate is closed: the wave is stopped \
            (`gate_closed`; `details` holds the gate)", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
    ))]
async fn release_gate(
    State(state): State<AppState>,
    ApiPath(ReleasePath {
        release: ReleaseId(id),
    }): ApiPath<ReleasePath>,
    ApiQuery(q): ApiQuery<GateQuery>,
) -> Result<Json<Gate>, ApiError> {
    let release = find(&state, &id).await?;
    let region = q.region.0;
    if release.region(&region).is_none() {
        let known: Vec<&str> = release.regions.iter().map(|r| r.region.as_str()).collect();
        return Err(ApiError::bad_request(
            "invalid_query",
            "region",
            format!(
                "{region:?} is no region of service {}; its regions are {}",
                release.service,
                known.join(", ")
            ),
        ));
    }
    let gate = release::gate(&release, &region, &state.evaluator.policy.releases);
    if !gate.open {
        return Err(
            ApiError::new(StatusCode::FORBIDDEN, "gate_closed", gate.reason.clone())
                .with_details(json!(gate)),
        );
    }
    Ok(Json(gate))
}

/// The release `id` (`SERVICE@VERSION`), or 404.
async fn find(state: &AppState, id: &str) -> Result<Release, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no release {id}"),
        )
    };
    let (service, _) = id.split_once('@').ok_or_else(not_found)?;
    let peers = state
        .evaluator
        .release_services()
        .into_iter()
        .find(|(s, _)| s == service)
        .map(|(_, peers)| peers)
        .ok_or_else(not_found)?;
    view(state, peers)
        .await?
        .releases
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(not_found)
}

async fn view(
    state: &AppState,
    peers: Vec<crate::domain::Target>,
) -> Result<ServiceView, ApiError> {
    Ok(state
        .evaluator
        .service_view(peers)
        .await
        .inspect_err(|err| state.metrics.store_error("releases", err))?)
}
