//! `GET /api/v1/alerts`: what arrived, filtered, newest first, keyset-paginated.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::AlertStatus;
use crate::store::{AlertQuery, StoredAlert};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
/// Label matchers in one query.
const MAX_LABEL_MATCHERS: usize = 16;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/alerts", get(list_alerts))
}

/// One page of a list: `next` is the `after` cursor of the following page, if any.
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

async fn list_alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<StoredAlert>>, ApiError> {
    let mut query = parse_query(raw.as_deref().unwrap_or(""))?;
    let limit = query.limit;
    // One row more than asked says whether another page exists.
    query.limit = limit + 1;
    let mut items = state.store.list_alerts(&query).await.inspect_err(|err| {
        state.metrics.store_error("list_alerts", err);
    })?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}

fn parse_query(raw: &str) -> Result<AlertQuery, ApiError> {
    let mut query = AlertQuery {
        limit: DEFAULT_LIMIT,
        ..AlertQuery::default()
    };
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "status" => {
                query.status = Some(AlertStatus::parse(&value).ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "status", "must be firing or resolved")
                })?);
            }
            "alertname" => query.alertname = Some(value.into_owned()),
            "label" => {
                let (name, val) = value.split_once('=').ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "label", "must be NAME=VALUE")
                })?;
                if !is_label_name(name) {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "label",
                        format!("{name:?} is not a Prometheus label name"),
                    ));
                }
                if query.labels.len() == MAX_LABEL_MATCHERS {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "label",
                        format!("at most {MAX_LABEL_MATCHERS} label matchers"),
                    ));
                }
                query.labels.push((name.to_string(), val.to_string()));
            }
            "since" => query.since = Some(parse_time("since", &value)?),
            "until" => query.until = Some(parse_time("until", &value)?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            "limit",
                            format!("must be a number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "after" => {
                query.before_id =
                    Some(value.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                        ApiError::bad_request("invalid_query", "after", "not a cursor from `next`")
                    })?);
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    other,
                    "unknown parameter; use status, alertname, label, since, until, limit, after",
                ));
            }
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since >= until
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "since",
            "must be before until",
        ));
    }
    Ok(query)
}

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::bad_request("invalid_query", field, "must be an RFC 3339 timestamp"))
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus' label name syntax.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_query_parses() {
        let q = parse_query(
            "status=firing&alertname=HighErrorRate&label=namespace%3Dprod&label=team=payments\
             &since=2026-08-22T14:00:00Z&until=2026-08-22T15:00:00%2B00:00&limit=5&after=42",
        )
        .unwrap();
        assert_eq!(q.status, Some(AlertStatus::Firing));
        assert_eq!(q.alertname.as_deref(), Some("HighErrorRate"));
        assert_eq!(
            q.labels,
            vec![
                ("namespace".into(), "prod".into()),
                ("team".into(), "payments".into())
            ]
        );
        assert_eq!((q.limit, q.before_id), (5, Some(42)));
        assert!(q.since.unwrap() < q.until.unwrap());
    }

    #[test]
    fn nonsense_is_a_400_naming_the_parameter() {
        for (raw, field) in [
            ("status=burning", "status"),
            ("label=namespace", "label"),
            ("label=na-me%3Dx", "label"),
            ("since=yesterday", "since"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("after=-3", "after"),
            ("sort=asc", "sort"),
            (
                "since=2026-08-22T15:00:00Z&until=2026-08-22T14:00:00Z",
                "since",
            ),
        ] {
            let err = parse_query(raw).expect_err(raw);
            assert_eq!(err.details.unwrap()["field"], field, "{raw}");
        }
    }
}
