//! One handler per page: read what the page shows (through the same functions the
//! API's handlers use, so a page and its API list cannot disagree), then render.

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use minijinja::Value;
use serde::Serialize;

use super::timeline::{self, DeployMark, Point, SignalSpan};
use super::{PageError, Viewer, not_found, render};
use crate::app::AppState;
use crate::domain::report;
use crate::domain::{DeployBrief, Freeze, TargetRef, Verdict};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::query::{self, ApiQuery, Page};
use crate::http::{actions, alerts, decisions, freezes};
use crate::store::{ActionQuery, ActionRecord, DecisionQuery, StandingDecision};

/// Standing decisions read per store query while gathering the Now page.
const STANDING_PAGE: u32 = 1000;
/// Awaiting approvals counted at most (the header then says `1000+`).
const AWAITING_COUNTED: u32 = 1000;

/// What every page's frame shows: who is looking, the approvals waiting, the freezes
/// in force, and where the live stream starts (the newest audit event read before the
/// page's data, so nothing between the two is missed).
#[derive(Serialize)]
struct Frame {
    viewer: Viewer,
    awaiting: String,
    freezes: Vec<Freeze>,
    last_event: i64,
    now: DateTime<Utc>,
}

async fn frame(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<Frame, PageError> {
    let last_event = state.store.last_audit_event_id().await?;
    let now = state.clock.now();
    let awaiting = state
        .store
        .count_actions("awaiting_approval", AWAITING_COUNTED + 1)
        .await? as usize;
    Ok(Frame {
        viewer: Viewer::of(principal, headers),
        awaiting: if awaiting > AWAITING_COUNTED as usize {
            format!("{AWAITING_COUNTED}+")
        } else {
            awaiting.to_string()
        },
        freezes: state.store.active_freezes(now).await?,
        last_event,
        now,
    })
}

/// A target on the Now page.
#[derive(Serialize)]
struct NowRow {
    target: String,
    region: Option<String>,
    environment: Option<String>,
    verdict: Verdict,
    reason: String,
    rules: Vec<String>,
    pending: Vec<String>,
    suspect: Option<String>,
    rollback_to: Option<String>,
    since: DateTime<Utc>,
    /// `since` as people read it (formatted here: the template runs per row).
    since_text: String,
    decision_id: i64,
    actions: Vec<ActionBrief>,
}

#[derive(Serialize)]
struct ActionBrief {
    id: i64,
    kind: String,
    state: String,
}

/// A standing decision the Now page shows: not `ok`, or with a signal going on (a
/// rule fired or waiting).
fn needs_attention(d: &StandingDecision) -> bool {
    d.verdict != Verdict::Ok.as_str() || !d.brief.fired.is_empty() || !d.brief.pending.is_empty()
}

/// Now: every target that needs a look, worst first.
pub async fn now(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let frame = frame(&state, &me, &headers).await?;
    let mut standing = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state
            .store
            .standing_decisions(after.as_deref(), STANDING_PAGE)
            .await?;
        let full = page.len() == STANDING_PAGE as usize;
        after = page.last().map(|d| d.target_key.clone());
        standing.extend(page.into_iter().filter(needs_attention));
        if !full {
            break;
        }
    }
    let ids: Vec<i64> = standing.iter().map(|d| d.id).collect();
    let mut actions: HashMap<i64, Vec<ActionBrief>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for a in state.store.decision_actions(chunk).await? {
            actions.entry(a.decision_id).or_default().push(ActionBrief {
                id: a.id,
                kind: a.kind,
                state: a.state,
            });
        }
    }
    let mut rows: Vec<NowRow> = standing
        .into_iter()
        .map(|d| {
            let brief = d.brief;
            let since = brief
                .regression_started_at
                .unwrap_or(d.decided_at)
                .min(d.decided_at);
            NowRow {
                verdict: Verdict::parse(&d.verdict).unwrap_or(Verdict::Investigate),
                reason: d.reason,
                region: brief.region,
                environment: brief.environment,
                rules: brief.fired.into_iter().map(|r| r.rule_id).collect(),
                pending: brief.pending.into_iter().map(|r| r.rule_id).collect(),
                suspect: brief.suspect.as_ref().map(DeployBrief::name),
                rollback_to: brief.rollback_to.as_ref().map(DeployBrief::name),
                since,
                since_text: since.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                decision_id: d.id,
                actions: actions.remove(&d.id).unwrap_or_default(),
                target: d.target_key,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.verdict
            .rank()
            .cmp(&a.verdict.rank())
            .then(a.since.cmp(&b.since))
            .then(a.target.cmp(&b.target))
    });
    Ok(render::page(
        "now.html",
        minijinja::context! { frame, page => "now", rows },
    ))
}

/// One decision, everything about it.
pub async fn decision(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let frame = frame(&state, &me, &headers).await?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| not_found(format!("no decision {id}")))?;
    let (stored, decision) = decisions::load(&state, id).await?;
    let evidence = decisions::evidence(&stored, &decision);
    let report = report::incident_report(&decision, stored.decided_at, stored.id);
    let view = decisions::view(&state, stored).await?;
    let awaiting = view
        .actions
        .iter()
        .any(|a| a.action.state == "awaiting_approval");
    let holds: Vec<(&str, String)> = decision
        .holds
        .iter()
        .map(|h| (h.code(), h.detail()))
        .collect();
    Ok(render::page(
        "decision.html",
        minijinja::context! {
            frame,
            page => "decisions",
            view,
            decision,
            awaiting,
            holds,
            evidence => serde_json::to_string_pretty(&evidence).unwrap_or_default(),
            report => render::markdown(&report),
        },
    ))
}

/// The query string without empty parameters (what a filter form sends for a field
/// left blank), as the API's parser takes it.
fn filters(raw: Option<&str>) -> String {
    let pairs =
        form_urlencoded::parse(raw.unwrap_or("").as_bytes()).filter(|(_, v)| !v.trim().is_empty());
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The page after this one: the same filters, `after` the last row.
fn next_href(path: &str, filters: &str, next: Option<&String>) -> Option<String> {
    let next = next?;
    let pairs = form_urlencoded::parse(filters.as_bytes()).filter(|(k, _)| k != "after");
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .append_pair("after", next)
        .finish();
    Some(format!("{path}?{query}"))
}

/// The filter values, for the form to show what is applied.
fn applied(filters: &str) -> HashMap<String, String> {
    form_urlencoded::parse(filters.as_bytes())
        .filter(|(k, _)| k != "after")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A list page: the API's list handler `fetch` run on the page's filters (blank ones
/// dropped), then its frame, its filters as applied, one page of rows and the link to
/// the next.
async fn list_page<Q, T, F>(
    state: AppState,
    principal: &Principal,
    headers: &HeaderMap,
    filters: String,
    (template, path): (&str, &str),
    extra: Value,
    fetch: F,
) -> Result<Response, PageError>
where
    Q: serde::de::DeserializeOwned,
    T: Serialize,
    F: AsyncFnOnce(State<AppState>, ApiQuery<Q>) -> Result<Json<Page<T>>, ApiError>,
{
    let frame = frame(&state, principal, headers).await?;
    let q = query::parse(Some(&filters))?;
    let Json(page) = fetch(State(state), ApiQuery(q)).await?;
    Ok(render::page(
        template,
        minijinja::context! {
            frame,
            page => path.trim_start_matches('/'),
            applied => applied(&filters),
            items => page.items,
            next => next_href(path, &filters, page.next.as_ref()),
            extra,
        },
    ))
}

pub async fn decisions(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let verdicts: Vec<&str> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
    list_page(
        state,
        &me,
        &headers,
        filters(raw.as_deref()),
        ("decisions.html", "/decisions"),
        minijinja::context! { verdicts },
        decisions::list_decision_lines,
    )
    .await
}

pub async fn alerts(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let filters = filters(raw.as_deref());
    let page = ("alerts.html", "/alerts");
    list_page(
        state,
        &me,
        &headers,
        filters,
        page,
        Value::UNDEFINED,
        alerts::list_alerts,
    )
    .await
}

pub async fn actions(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let filters = filters(raw.as_deref());
    let page = ("actions.html", "/actions");
    list_page(
        state,
        &me,
        &headers,
        filters,
        page,
        Value::UNDEFINED,
        actions::list_actions,
    )
    .await
}

/// Freezes: those in force (the frame has them), then every freeze, newest first.
pub async fn freezes(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let mut filters = filters(raw.as_deref());
    // Past ones too: the in-force ones head the page already.
    if !filters.contains("active=") {
        filters = if filters.is_empty() {
            "active=false".into()
        } else {
            format!("{filters}&active=false")
        };
    }
    let page = ("freezes.html", "/freezes");
    list_page(
        state,
        &me,
        &headers,
        filters,
        page,
        Value::UNDEFINED,
        freezes::list_freezes,
    )
    .await
}

/// The Target page's query: the target, and how many hours back the picture goes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetQuery {
    key: String,
    hours: Option<String>,
}

/// Hours the Target page can look back, and its default.
const MAX_HOURS: i64 = 72;
const DEFAULT_HOURS: i64 = 6;
/// Rows of each kind the Target page reads at most.
const TARGET_ROWS: u32 = 500;

/// One entry of a target's merged history.
#[derive(Serialize)]
struct HistoryEntry {
    at: DateTime<Utc>,
    what: &'static str,
    class: String,
    text: String,
    href: Option<String>,
}

pub async fn target(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let frame = frame(&state, &me, &headers).await?;
    let q: TargetQuery = query::parse(raw.as_deref())?;
    let target = (q.key.chars().count() <= 1024)
        .then(|| TargetRef::parse(&q.key))
        .flatten()
        .ok_or_else(|| {
            PageError::from(crate::http::error::ApiError::bad_request(
                "invalid_query",
                "key",
                "must be a target key cluster/namespace/kind/name",
            ))
        })?;
    let hours = match q.hours.as_deref() {
        None | Some("") => DEFAULT_HOURS,
        Some(h) => h
            .parse::<i64>()
            .ok()
            .filter(|h| (1..=MAX_HOURS).contains(h))
            .ok_or_else(|| {
                PageError::from(crate::http::error::ApiError::bad_request(
                    "invalid_query",
                    "hours",
                    format!("must be a whole number of hours from 1 to {MAX_HOURS}"),
                ))
            })?,
    };
    let to = frame.now;
    let from = to - Duration::hours(hours);
    let key = target.key();

    let deploys = state
        .store
        .target_history(&target, None, TARGET_ROWS)
        .await?;
    let signals = state.evaluator.target_signals(&target, from).await?;
    let decisions = state
        .store
        .list_decisions(&DecisionQuery {
            target: Some(key.clone()),
            verdict: None,
            since: Some(from),
            until: None,
            before_id: None,
            limit: TARGET_ROWS,
        })
        .await?;
    let actions: Vec<ActionRecord> = state
        .store
        .list_actions(&ActionQuery {
            target: Some(key.clone()),
            state: None,
            kind: None,
            decision_id: None,
            before_id: None,
            limit: TARGET_ROWS,
        })
        .await?;

    let picture = timeline::layout(
        from,
        to,
        &deploys
            .iter()
            .map(|d| DeployMark {
                at: d.deploy.started_at,
                source: d.deploy.source.as_str().to_string(),
                version: d
                    .deploy
                    .version
                    .clone()
                    .unwrap_or_else(|| d.deploy.revision.clone()),
            })
            .collect::<Vec<_>>(),
        &signals
            .iter()
            .map(|s| SignalSpan {
                kind: s.kind.as_str().to_string(),
                from: s.started_at,
                to: s.ended_at,
                summary: s.summary.clone(),
            })
            .collect::<Vec<_>>(),
        &decisions
            .iter()
            .map(|d| Point {
                at: d.decided_at,
                class: d.verdict.clone(),
                title: format!("decision {}: {} — {}", d.id, d.verdict, d.reason),
                href: format!("/decisions/{}", d.id),
            })
            .collect::<Vec<_>>(),
        &actions
            .iter()
            .map(|a| Point {
                at: a.executed_at.unwrap_or(a.created_at),
                class: a.state.clone(),
                title: format!("action {}: {} {}", a.id, a.kind, a.state),
                href: format!("/decisions/{}", a.decision_id),
            })
            .collect::<Vec<_>>(),
    );

    let mut history: Vec<HistoryEntry> = Vec::new();
    history.extend(deploys.iter().map(|d| HistoryEntry {
        at: d.deploy.started_at,
        what: "deploy",
        class: d.deploy.status.clone(),
        text: format!(
            "{} {} ({}){}",
            d.deploy.source.as_str(),
            d.deploy
                .version
                .clone()
                .unwrap_or_else(|| format!("revision {}", d.deploy.revision)),
            d.deploy.status,
            d.deploy
                .change_cause
                .as_ref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        ),
        href: None,
    }));
    history.extend(signals.iter().map(|s| HistoryEntry {
        at: s.started_at,
        what: "signal",
        class: s.kind.as_str().to_string(),
        text: format!(
            "{}: {}{}",
            s.kind.as_str(),
            s.summary,
            s.ended_at
                .map(|e| format!(" (ended {})", e.format("%H:%M:%SZ")))
                .unwrap_or_default()
        ),
        href: None,
    }));
    history.extend(decisions.iter().map(|d| HistoryEntry {
        at: d.decided_at,
        what: "decision",
        class: d.verdict.clone(),
        text: format!("{}: {}", d.verdict, d.reason),
        href: Some(format!("/decisions/{}", d.id)),
    }));
    history.extend(actions.iter().map(|a| HistoryEntry {
        at: a.updated_at,
        what: "action",
        class: a.state.clone(),
        text: format!(
            "{} {}{}",
            a.kind,
            a.state,
            a.approved_by
                .as_ref()
                .map(|by| format!(" (by {by})"))
                .unwrap_or_default()
        ),
        href: Some(format!("/decisions/{}", a.decision_id)),
    }));
    history.sort_by_key(|e| std::cmp::Reverse(e.at));

    // A region of a multi-region service: the release it runs or rolls out, with the
    // other regions' part in it.
    let peers = state
        .evaluator
        .release_peers(&state.evaluator.target(&target));
    let release = if peers.is_empty() {
        None
    } else {
        state
            .evaluator
            .service_view(peers)
            .await?
            .release_of(&target, None)
            .cloned()
    };

    Ok(render::page(
        "target.html",
        minijinja::context! {
            frame,
            page => "target",
            target => key,
            hours,
            hour_choices => [1, 3, 6, 12, 24, 72],
            picture,
            history,
            release,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_filters_are_dropped_and_paging_keeps_the_rest() {
        let f = filters(Some("target=&verdict=rollback&since=+&after=9"));
        assert_eq!(f, "verdict=rollback&after=9");
        assert_eq!(
            next_href("/decisions", &f, Some(&"4".to_string())).unwrap(),
            "/decisions?verdict=rollback&after=4"
        );
        assert!(next_href("/decisions", &f, None).is_none());
        assert_eq!(applied(&f).get("verdict").unwrap(), "rollback");
        assert!(!applied(&f).contains_key("after"));
    }
}
