//! Deployment freezes: `GET /api/v1/freezes` (viewer), `POST /api/v1/freezes` and
//! `DELETE /api/v1/freezes/{id}` (operator). While a freeze covers a target, new
//! rollouts are blocked; rollbacks and operator-approved deploys are still admitted.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::alerts::Page;
use super::auth::Principal;
use super::error::ApiError;
use super::extract::ApiJson;
use super::query::{self, DEFAULT_LIMIT, invalid};
use crate::app::AppState;
use crate::domain::freeze;
use crate::store::{FreezeRecord, NewFreeze};

/// The longest reason kept.
const MAX_REASON: usize = 1024;

pub fn read_router() -> Router<AppState> {
    Router::new().route("/api/v1/freezes", get(list_freezes))
}

pub fn write_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/freezes", axum::routing::post(create_freeze))
        .route("/api/v1/freezes/{id}", delete(lift_freeze))
}

/// A freeze an operator declares.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeRequest {
    /// `*`, `cluster/namespace`, or a target key `cluster/namespace/kind/name`.
    scope: String,
    reason: String,
    /// When it ends by itself (RFC 3339); none: until lifted.
    expires_at: Option<DateTime<Utc>>,
}

async fn create_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<FreezeRequest>,
) -> Result<(StatusCode, Json<FreezeRecord>), ApiError> {
    let now = state.clock.now();
    freeze::check_scope(&request.scope)
        .map_err(|why| ApiError::bad_request("invalid_field", "scope", why))?;
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "reason",
            format!("must be 1 to {MAX_REASON} bytes of text"),
        ));
    }
    if request.expires_at.is_some_and(|end| end <= now) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "expires_at",
            "must be in the future",
        ));
    }
    let record = state
        .store
        .create_freeze(
            &NewFreeze {
                scope: request.scope,
                reason: reason.to_string(),
                created_by: principal.name.clone(),
                decision_id: None,
                expires_at: request.expires_at,
            },
            now,
        )
        .await
        .inspect_err(|err| state.metrics.store_error("create_freeze", err))?;
    tracing::info!(freeze = record.freeze.id, scope = %record.freeze.scope, by = %principal.name, "freeze created");
    Ok((StatusCode::CREATED, Json(record)))
}

async fn lift_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<FreezeRecord>, ApiError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid_path", "id", "must be a freeze id"))?;
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
async fn list_freezes(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<FreezeRecord>>, ApiError> {
    let mut active = true;
    let mut limit = DEFAULT_LIMIT;
    let mut before = None;
    for (key, value) in query::pairs(raw.as_deref()) {
        match key.as_str() {
            "active" => {
                active = value
                    .parse()
                    .map_err(|_| invalid("active", "must be true or false"))?;
            }
            "limit" => limit = query::limit(&value)?,
            "after" => before = Some(query::id_cursor(&value)?),
            other => return Err(query::unknown(other, "active, limit, after")),
        }
    }
    let items = state
        .store
        .list_freezes(active.then(|| state.clock.now()), before, limit + 1)
        .await
        .inspect_err(|err| state.metrics.store_error("list_freezes", err))?;
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|f| f.freeze.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next }))
}
