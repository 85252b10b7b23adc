//! `GET /api/v1/events`: what rollwarden and its operators do, live, as Server-Sent
//! Events (role viewer): decisions recorded, action transitions, approvals and
//! rejections, freezes declared and lifted, each with its ids. The console follows it,
//! and so does `rollwarden ctl watch`.
//!
//! Each event is an audit event: `id` is its id in the audit trail, `event` its kind
//! (`decision.recorded`, `action.approved`, `freeze.created`…), `data` the JSON of
//! [`StreamEvent`]. A client that reconnects with `Last-Event-ID` (browsers do) gets
//! what it missed first.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::query::{self, ApiQuery, MAX_ID};
use crate::app::AppState;
use crate::events::{EventHub, PAGE, Sent};
use crate::store::{AuditEvent, Store};

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a stream waits for the hub to start (right after the server's start).
const READY_WAIT: Duration = Duration::from_secs(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// One event: an entry of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    /// Its id in the audit trail: unique, and increasing in the order events were
    /// written (a stream may deliver a late-committed one after a higher id).
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who: a token's or a person's name, or `rollwarden`.
    pub actor: String,
    /// `decision.recorded`, `action.<state>` (created, started, approved, rejected,
    /// succeeded, verified, escalated…), `freeze.created`, `freeze.lifted`.
    pub kind: String,
    /// What it is about: `decision:12`, `action:7`, `freeze:3`.
    pub subject: String,
    /// The kind's details (a decision's target, verdict and reason; an approval's
    /// comment; the freeze).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<&AuditEvent> for StreamEvent {
    fn from(e: &AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor.clone(),
            kind: e.kind.clone(),
            subject: e.subject.clone(),
            details: e.details.clone(),
        }
    }
}

/// Where the stream starts.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Send the events after this id first (`0`: the whole trail). A `Last-Event-ID`
    /// header, which browsers send when they reconnect, wins. Neither: only events
    /// from now on.
    #[param(inline)]
    after: Option<EventId>,
}

/// An audit event id, or 0.
struct EventId(i64);

query::text_newtype!(
    EventId(i64),
    |s| parse_event_id(s),
    "must be an event id: a whole number from 0 to 9007199254740991",
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(MAX_ID))
);

/// One event on the wire, as Server-Sent Events frame it: `id`, `event` and `data`
/// lines (the schema of each frame, not of the stream).
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: axum's Event writes the frame.
struct SseFrame {
    /// The audit id, as text.
    #[schema(example = "42")]
    id: String,
    /// The kind (`decision.recorded`, `action.approved`, `freeze.created`…).
    #[schema(example = "freeze.created")]
    event: String,
    /// The event as JSON: `{"id", "at", "actor", "kind", "subject", "details"}`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

fn parse_event_id(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|id| (0..=MAX_ID).contains(id))
}

/// Follows what rollwarden and its operators do: decisions recorded, action
/// transitions, approvals, freezes declared and lifted. Server-Sent Events; each
/// event's `id` is its audit-trail id and `event` its kind. A comment line every 15 s
/// keeps the connection open through proxies.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<EventId>, Header, nullable = false,
            description = "Resume after this event id (browsers send it on reconnecting)"),
    ),
    responses(
        (status = 200, description = "The stream: per event, `id: N`, `event: KIND` and `data:` \
            the event as JSON: `id`, `at`, `actor`, `kind`, `subject`, `details`", content_type = "text/event-stream",
            body = SseFrame),
        (status = 400, description = "`after` or `Last-Event-ID` is not an event id, or an \
            unknown query parameter", body = ErrorBody),
        (status = 503, description = "`server.max_event_streams` streams are open already \
            (`too_many_streams`), or the store does not answer", body = ErrorBody),
    ))]
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|s| parse_event_id(s.trim()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_header",
                        "Last-Event-ID",
                        "must be an event id: a whole number from 0 to 9007199254740991",
                    )
                })?,
        ),
        None => query.after.map(|a| a.0),
    };
    let hub = state.events.clone();
    let permit = hub.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "server.max_event_streams event streams are open; try again later",
        )
    })?;
    // The hub broadcasts everything written after it started: a stream opened before
    // (at the server's start) waits for that, or nothing would be read in between.
    if !hub.wait_ready(READY_WAIT).await {
        return Err(ApiError::unavailable(
            "the event stream cannot read the store",
        ));
    }
    // Subscribed before the store is read: nothing falls between the two.
    let live = hub.subscribe();
    let (cursor, replay) = match resume {
        Some(after) => (after, true),
        None => (
            state
                .store
                .last_audit_event_id()
                .await
                .inspect_err(|err| state.metrics.store_error("events", err))?,
            false,
        ),
    };
    let stream = Follow {
        store: state.store.clone(),
        hub,
        live,
        sent: Sent::starting_at(cursor),
        pending: VecDeque::new(),
        reread_from: replay.then_some(cursor),
        _permit: permit,
    };
    Ok(Sse::new(stream.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One stream's state: what it has sent, what it has read and not sent yet, and
/// whether it must read the store (at the start, after falling behind).
struct Follow {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    live: Receiver<Arc<AuditEvent>>,
    sent: Sent,
    pending: VecDeque<AuditEvent>,
    /// Read the store after this id before following the hub again.
    reread_from: Option<i64>,
    /// Held while the stream is open (`server.max_event_streams`).
    _permit: OwnedSemaphorePermit,
}

impl Follow {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut follow| async move {
            let event = follow.next().await?;
            Some((Ok(sse_event(&event)), follow))
        })
    }

    /// The next event to send; `None` ends the stream (shutdown, or the store failing
    /// while the stream catches up: the client reconnects with its last id).
    async fn next(&mut self) -> Option<AuditEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if self.sent.first_time(event.id) {
                    return Some(event);
                }
                continue;
            }
            if let Some(after) = self.reread_from {
                let page = tokio::select! {
                    () = self.hub.closed.cancelled() => return None,
                    page = self.store.audit_events_after(after, PAGE) => page,
                };
                let page = match page {
                    Ok(page) => page,
                    Err(err) => {
                        tracing::warn!(error = %err, "events: a stream cannot catch up; closing it");
                        return None;
                    }
                };
                self.reread_from =
                    (page.len() == PAGE as usize).then(|| page.last().map_or(after, |e| e.id));
                self.pending.extend(page);
                continue;
            }
            let received = tokio::select! {
                () = self.hub.closed.cancelled() => return None,
                received = self.live.recv() => received,
            };
            match received {
                Ok(event) => self.pending.push_back(AuditEvent::clone(&event)),
                // Fell behind the hub: what it dropped is in the store.
                Err(RecvError::Lagged(_)) => self.reread_from = Some(self.sent.resume_point()),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_event(event: &AuditEvent) -> Event {
    let body = StreamEvent::from(event);
    Event::default()
        .id(event.id.to_string())
        .event(&event.kind)
        .json_data(&body)
        .unwrap_or_else(|_| Event::default().comment("an event that does not serialise"))
}
