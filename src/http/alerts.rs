//! `GET /api/v1/alerts`: what arrived, filtered, newest first, keyset-paginated.

use axum::Json;
use axum::extract::{RawQuery, State};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::query::{self, DEFAULT_LIMIT, IdPage, TimeRange, invalid};
// `Page` lives in `query` now, beside the pagination parameters; re-exported here so
// that modules written before the move (`use super::alerts::Page`) still compile.
pub use super::query::Page;
use crate::app::AppState;
use crate::domain::AlertStatus;
use crate::store::{AlertQuery, StoredAlert};

/// Label matchers in one query.
const MAX_LABEL_MATCHERS: usize = 16;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_alerts))
}

/// Filters of the alert list; every one narrows (AND).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AlertFilters {
    status: Option<AlertStatus>,
    #[param(
        max_length = 512,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$"
    )]
    alertname: Option<String>,
    /// `NAME=VALUE`: the alert has that label (repeatable, at most 16, all must
    /// match).
    #[param(max_items = 16, pattern = "^[A-Za-z_][A-Za-z0-9_]{0,100}=.{1,200}$")]
    label: Option<Vec<String>>,
}

/// Alert occurrences, newest first; `since`/`until` apply to `startsAt`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertFilters, TimeRange, IdPage),
    responses(
        (status = 200, description = "One page of alerts", body = Page<StoredAlert>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
async fn list_alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<StoredAlert>>, ApiError> {
    let mut query = parse_query(raw.as_deref())?;
    let limit = query.limit;
    // One row more than asked says whether another page exists.
    query.limit = limit + 1;
    let items = state.store.list_alerts(&query).await.inspect_err(|err| {
        state.metrics.store_error("list_alerts", err);
    })?;
    let (items, more) = query::split_page(items, limit);
    let next = more
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next }))
}

fn parse_query(raw: Option<&str>) -> Result<AlertQuery, ApiError> {
    let mut query = AlertQuery {
        limit: DEFAULT_LIMIT,
        ..AlertQuery::default()
    };
    for (key, value) in query::pairs(raw) {
        match key.as_str() {
            "status" => {
                query.status = Some(
                    AlertStatus::parse(&value)
                        .ok_or_else(|| invalid("status", "must be firing or resolved"))?,
                );
            }
            "alertname" => query.alertname = Some(query::text("alertname", value)?),
            "label" => {
                let (name, val) = value
                    .split_once('=')
                    .ok_or_else(|| invalid("label", "must be NAME=VALUE"))?;
                if !is_label_name(name) {
                    return Err(invalid(
                        "label",
                        format!("{name:?} is not a Prometheus label name"),
                    ));
                }
                if query.labels.len() == MAX_LABEL_MATCHERS {
                    return Err(invalid(
                        "label",
                        format!("at most {MAX_LABEL_MATCHERS} label matchers"),
                    ));
                }
                query
                    .labels
                    .push((name.to_string(), query::text("label", val.to_string())?));
            }
            "since" => query.since = Some(query::time("since", &value)?),
            "until" => query.until = Some(query::time("until", &value)?),
            "limit" => query.limit = query::limit(&value)?,
            "after" => query.before_id = Some(query::id_cursor(&value)?),
            other => {
                return Err(query::unknown(
                    other,
                    "status, alertname, label, since, until, limit, after",
                ));
            }
        }
    }
    query::check_range(query.since, query.until)?;
    Ok(query)
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
        let q = parse_query(Some(
            "status=firing&alertname=HighErrorRate&label=namespace%3Dprod&label=team=payments\
             &since=2026-08-22T14:00:00Z&until=2026-08-22T15:00:00%2B00:00&limit=5&after=42",
        ))
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
            let err = parse_query(Some(raw)).expect_err(raw);
            assert_eq!(err.details.unwrap()["field"], field, "{raw}");
        }
    }
}
