//! Query-string parsing shared by the list endpoints: every parameter validated, unknown
//! ones rejected, each error a 400 naming the parameter.

use chrono::{DateTime, Utc};

use super::error::ApiError;

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

/// An `after` cursor of an id-ordered list: the id of the last item of the page.
pub fn id_cursor(value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| invalid("after", "not a cursor from `next`"))
}

/// A bounded, non-empty text filter.
pub fn text(field: &str, value: String) -> Result<String, ApiError> {
    if value.is_empty() || value.len() > 512 {
        return Err(invalid(field, "must be 1 to 512 bytes"));
    }
    Ok(value)
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
