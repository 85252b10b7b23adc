//! Query-string parsing shared by the list endpoints: every parameter validated, unknown
//! ones rejected, each error a 400 naming the parameter.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;

/// One page of a list, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `after` cursor of the following page; `null` on the last page.
    pub next: Option<String>,
}

// The structs below document query parameters; the handlers parse the query by hand
// (every parameter validated, unknown ones rejected), and tests/it/openapi.rs checks
// that the two agree.

/// Keyset pagination of a list ordered by id.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct IdPage {
    /// Items per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// The `next` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    after: Option<String>,
}

/// Keyset pagination of a deploy list, ordered by start time.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeployPage {
    /// Items per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// The `next` of the previous page.
    #[param(pattern = "^-?[0-9]{1,15}_[1-9][0-9]{0,17}$")]
    after: Option<String>,
}

/// A time range; `since` must come before `until`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TimeRange {
    /// At or after this instant (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Before this instant (RFC 3339).
    until: Option<DateTime<Utc>>,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// The `(name, value)` pairs of a raw query string, percent-decoded.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", field, message)
}

pub fn unknown(field: &str, known: &str) -> ApiError {
    invalid(field, format!("unknown parameter; use {known}"))
}

/// For routes that take no query parameters: any one is unknown.
pub fn none(raw: Option<&str>) -> Result<(), ApiError> {
    match pairs(raw).first() {
        Some((key, _)) => Err(invalid(key, "unknown parameter; this route takes none")),
        None => Ok(()),
    }
}

pub fn time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(field, "must be an RFC 3339 timestamp"))
}

pub fn limit(value: &str) -> Result<u32, ApiError> {
    value
        .parse()
        .ok()
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or_else(|| invalid("limit", format!("must be a number from 1 to {MAX_LIMIT}")))
}

/// A value from a fixed set (a state, a verdict).
pub fn one_of(field: &str, value: String, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

/// An `after` cursor of an id-ordered list: the id of the last item of the page.
pub fn id_cursor(value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| invalid("after", "not a cursor from `next`"))
}

/// A bounded, non-empty text filter. Control characters are refused: PostgreSQL
/// cannot even compare text with a NUL in it.
pub fn text(field: &str, value: String) -> Result<String, ApiError> {
    if !is_text(&value) {
        return Err(invalid(
            field,
            "must be 1 to 512 bytes without control characters",
        ));
    }
    Ok(value)
}

/// A text path segment, bounded like [`text`].
pub fn path_text(field: &str, value: String) -> Result<String, ApiError> {
    if !is_text(&value) {
        return Err(ApiError::bad_request(
            "invalid_path",
            field,
            "must be 1 to 512 bytes without control characters",
        ));
    }
    Ok(value)
}

fn is_text(value: &str) -> bool {
    !value.is_empty() && value.len() <= 512 && !value.chars().any(char::is_control)
}

/// `since` must come before `until` when both are given.
pub fn check_range(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    match (since, until) {
        (Some(since), Some(until)) if since >= until => {
            Err(invalid("since", "must be before until"))
        }
        _ => Ok(()),
    }
}

/// Runs a list query for one row more than asked, so the page knows whether another
/// follows; returns the page and the last item (for its cursor) when one does.
pub fn split_page<T>(mut items: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    (items, more)
}
