//! `GET /api/v1/alerts`: what arrived, filtered, newest first, keyset-paginated.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::query::{self, ApiQuery, IdCursor, Limit, Text, Time};
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

/// The alert list's query; every filter narrows (AND).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertListQuery {
    status: Option<AlertStatus>,
    #[param(inline)]
    alertname: Option<Text>,
    /// `NAME=VALUE`: the alert has that label (repeatable, at most 16, all must
    /// match).
    #[param(inline)]
    label: Option<LabelMatchers>,
    /// Alerts that started at or after this instant (RFC 3339); none when it is not
    /// before `until`.
    #[param(inline)]
    since: Option<Time>,
    /// Alerts that started before this instant (RFC 3339).
    #[param(inline)]
    until: Option<Time>,
    /// Items per page.
    #[param(inline)]
    limit: Option<Limit>,
    /// The `next` of the previous page.
    #[param(inline)]
    after: Option<IdCursor>,
}

/// `label` matchers: up to 16 `NAME=VALUE`, the name a Prometheus label name, the value
/// bounded like every text filter.
struct LabelMatchers(Vec<(String, String)>);

const LABEL_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*=[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$";

impl<'de> Deserialize<'de> for LabelMatchers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let matchers = Vec::<String>::deserialize(deserializer)?;
        if matchers.len() > MAX_LABEL_MATCHERS {
            return Err(D::Error::custom(format!(
                "at most {MAX_LABEL_MATCHERS} label matchers"
            )));
        }
        matchers
            .into_iter()
            .map(|m| match m.split_once('=') {
                Some((name, value)) if is_label_name(name) && query::is_text(value) => {
                    Ok((name.to_string(), value.to_string()))
                }
                _ => Err(D::Error::custom(format!(
                    "must be NAME=VALUE: a Prometheus label name, '=', and 1 to {} \
                     characters without control characters",
                    query::MAX_TEXT_CHARS
                ))),
            })
            .collect::<Result<_, _>>()
            .map(LabelMatchers)
    }
}

impl PartialSchema for LabelMatchers {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(LABEL_PATTERN)),
            )
            .max_items(Some(MAX_LABEL_MATCHERS))
            .into()
    }
}

impl ToSchema for LabelMatchers {}

/// Alert occurrences, newest first; `since`/`until` apply to `startsAt`. A firing
/// alert not delivered again within `engine.alert_stale_secs` is listed with
/// `stale: true`: evaluation leaves it out.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertListQuery),
    responses(
        (status = 200, description = "One page of alerts", body = Page<StoredAlert>),
        (status = 400, description = "A query parameter is unknown or malformed",
            body = ErrorBody),
    ))]
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AlertListQuery>,
) -> Result<Json<Page<StoredAlert>>, ApiError> {
    let mut query = alert_query(q);
    let limit = query.limit;
    // One row more than asked says whether another page exists.
    query.limit = limit + 1;
    let items = state.store.list_alerts(&query).await.inspect_err(|err| {
        state.metrics.store_error("list_alerts", err);
    })?;
    let (mut items, more) = query::split_page(items, limit);
    let fresh_since = state.clock.now() - state.evaluator.stale_after();
    for alert in &mut items {
        alert.stale = alert.is_stale(fresh_since);
    }
    let next = more
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next }))
}

fn alert_query(q: AlertListQuery) -> AlertQuery {
    AlertQuery {
        status: q.status,
        alertname: q.alertname.map(|t| t.0),
        labels: q.label.map(|l| l.0).unwrap_or_default(),
        since: q.since.map(|t| t.0),
        until: q.until.map(|t| t.0),
        before_id: q.after.map(|a| a.0),
        limit: q.limit.unwrap_or_default().0,
    }
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

    fn parse_query(raw: Option<&str>) -> Result<AlertQuery, ApiError> {
        query::parse(raw).map(alert_query)
    }

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
        ] {
            let err = parse_query(Some(raw)).expect_err(raw);
            assert_eq!(err.details.unwrap()["field"], field, "{raw}");
        }
    }

    /// A range that is empty (`since` not before `until`) selects nothing; it is not an
    /// error, because the document cannot state the rule across two parameters.
    #[test]
    fn an_empty_time_range_is_a_query_for_nothing() {
        let q = parse_query(Some(
            "since=2026-08-22T15:00:00Z&until=2026-08-22T14:00:00Z",
        ))
        .unwrap();
        assert!(q.since > q.until);
    }
}
