//! Deployment freezes: `GET /api/v1/freezes` (viewer), `POST /api/v1/freezes` and
//! `DELETE /api/v1/freezes/{id}` (operator). While a freeze covers a target, new
//! rollouts are blocked; rollbacks and operator-approved deploys are still admitted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use super::query::{self, ApiPath, ApiQuery, Id, IdCursor, Limit, NoQuery, Page};
use crate::app::AppState;
use crate::domain::freeze;
use crate::store::{FreezeRecord, NewFreeze};
use crate::wire::WireError;

/// The longest reason kept.
const MAX_REASON: usize = 1024;

pub fn read_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_freezes))
}

pub fn write_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_freeze))
        .routes(routes!(lift_freeze))
}

/// A freeze an operator declares.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FreezeRequest {
    /// `*`, `cluster/namespace`, or a target key `cluster/namespace/kind/name`.
    #[schema(
        pattern = "^([*]|[a-z0-9.-]{1,253}/[a-z0-9.-]{1,253}(/[A-Za-z0-9]{1,63}/[a-z0-9.-]{1,253})?)$",
        example = "default/prod"
    )]
    scope: String,
    /// Why: at most 1024 characters without control characters, not only white space
    /// (kept trimmed).
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 1024,
        example = "INC-42: data corruption"
    )]
    reason: String,
    /// When it ends by itself (RFC 3339); none: until lifted. It must be in the future,
    /// or the freeze is refused with 422.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// The freeze list's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FreezeListQuery {
    /// `true`: only those in force now; `false`: all, lifted and expired too.
    #[param(default = true)]
    active: Option<bool>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page.
    #[param(inline)]
    after: Option<IdCursor>,
}

/// A freeze in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct FreezePath {
    /// A freeze's `id`.
    #[param(inline)]
    id: Id,
}

/// Declares a freeze: new rollouts in its scope are blocked until it is lifted or
/// expires; rollbacks and operator-approved deploys are still admitted. Audited under
/// the token's name.
#[utoipa::path(post, path = "/api/v1/freezes", tag = "freezes",
    request_body(content = FreezeRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The freeze, in force", body = FreezeRecord),
        (status = 400, description = "A field is missing, unknown or invalid (`details.field` \
            names it), or a query parameter was given", body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
        (status = 422, description = "`expires_at` is not in the future (`inconsistent`)",
            body = ErrorBody),
    ))]
async fn create_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    _: ApiQuery<NoQuery>,
    request: Result<ApiJson<FreezeRequest>, ApiError>,
) -> Result<(StatusCode, Json<FreezeRecord>), ApiError> {
    let ApiJson(request) = request?;
    let now = state.clock.now();
    check_scope(&request.scope)?;
    if !crate::wire::is_visible_text(&request.reason, MAX_REASON) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "reason",
            format!(
                "must be at most {MAX_REASON} characters without control characters, \
                 not only white space"
            ),
        ));
    }
    let reason = request.reason.trim();
    // The same RFC 3339 parser as every payload, and its error.
    let expires_at = request
        .expires_at
        .as_deref()
        .map(|s| crate::wire::parse_time("expires_at", s, now))
        .transpose()?;
    if expires_at.is_some_and(|end| end <= now) {
        return Err(WireError::inconsistent("expires_at", "must be in the future").into());
    }
    let record = state
        .store
        .create_freeze(
            &NewFreeze {
                scope: request.scope,
                reason: reason.to_string(),
                created_by: principal.name.clone(),
                decision_id: None,
                expires_at,
            },
            now,
        )
        .await
        .inspect_err(|err| state.metrics.store_error("create_freeze", err))?;
    tracing::info!(freeze = record.freeze.id, scope = %record.freeze.scope, by = %principal.name, "freeze created");
    Ok((StatusCode::CREATED, Json(record)))
}

/// `*`, `cluster/namespace` or `cluster/namespace/kind/name` (names as Kubernetes spells
/// them, the kind letters and digits): the syntax the document states.
fn check_scope(scope: &str) -> Result<(), ApiError> {
    let kind_ok = match scope.split('/').nth(2) {
        Some(kind) => {
            !kind.is_empty() && kind.len() <= 63 && kind.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => true,
    };
    freeze::check_scope(scope)
        .and_then(|()| {
            kind_ok
                .then_some(())
                .ok_or("the kind must be 1 to 63 letters or digits")
        })
        .map_err(|why| ApiError::bad_request("invalid_field", "scope", why))
}

/// Lifts a freeze; lifting a lifted one changes nothing. Audited under the token's
/// name.
#[utoipa::path(delete, path = "/api/v1/freezes/{id}", tag = "freezes",
    params(FreezePath),
    responses(
        (status = 200, description = "The freeze, lifted", body = FreezeRecord),
        (status = 400, description = "Not a freeze id, or a query parameter given",
            body = ErrorBody),
        (status = 404, description = "No such freeze", body = ErrorBody),
    ))]
async fn lift_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(FreezePath { id: Id(id) }): ApiPath<FreezePath>,
    _: ApiQuery<NoQuery>,
) -> Result<Json<FreezeRecord>, ApiError> {
    let record = state
        .store
        .lift_freeze(id, &principal.name, state.clock.now())
        .await
        .inspect_err(|err| state.metrics.store_error("lift_freeze", err))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no freeze {id}"),
            )
        })?;
    tracing::info!(freeze = id, by = %principal.name, "freeze lifted");
    Ok(Json(record))
}

/// Freezes in force (default), or every freeze with `active=false`; newest first.
#[utoipa::path(get, path = "/api/v1/freezes", tag = "freezes",
    params(FreezeListQuery),
    responses(
        (status = 200, description = "One page of freezes", body = Page<FreezeRecord>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
pub(crate) async fn list_freezes(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<FreezeListQuery>,
) -> Result<Json<Page<FreezeRecord>>, ApiError> {
    let active = q.active.unwrap_or(true);
    let limit = q.limit.unwrap_or_default().0;
    let items = state
        .store
        .list_freezes(
            active.then(|| state.clock.now()),
            q.after.map(|a| a.0),
            limit + 1,
        )
        .await
        .inspect_err(|err| state.metrics.store_error("list_freezes", err))?;
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|f| f.freeze.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next }))
}
