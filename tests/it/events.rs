//! `GET /api/v1/events`: the live stream of decisions, action transitions and freezes,
//! read as a browser would (Server-Sent Events), resumed with `Last-Event-ID`, bounded,
//! and ended at shutdown.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, OPERATOR_TOKEN, TestApp, VIEWER_TOKEN, WEBHOOK_TOKEN, assert_error};

/// Every wait is bounded, so a broken stream fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

/// One event as it came over the wire.
#[derive(Debug)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

/// Reads a stream's frames as they arrive.
struct Reader {
    response: Response,
    buffer: String,
}

impl Reader {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Self {
        let mut request = app
            .http
            .get(app.url(&format!("/api/v1/events{query}")))
            .bearer_auth(VIEWER_TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in frame.lines() {
                    match line.split_once(':') {
                        Some(("id", v)) => id = Some(v.trim().parse().unwrap()),
                        Some(("event", v)) => event = Some(v.trim().to_string()),
                        Some(("data", v)) => data = Some(serde_json::from_str(v.trim()).unwrap()),
                        _ => {}
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return Some(Sse { id, event, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event whose kind is `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> Sse {
        loop {
            let event = self.next().await.expect("the stream is open");
            if event.event == kind {
                return event;
            }
        }
    }
}

async fn declare_freeze(app: &TestApp, reason: &str) -> i64 {
    let response = app
        .http
        .post(app.url("/api/v1/freezes"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"scope": "default/prod", "reason": reason}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn lift_freeze(app: &TestApp, id: i64) {
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/freezes/{id}")))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn a_stream_shows_decisions_and_freezes_live_and_resumes_after_its_last_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut live = Reader::open(&app, "", None).await;

    // A signal that decides: data corruption freezes (M8).
    let response = app
        .http
        .post(app.url("/api/v1/signals"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&json!({"kind": "data_corruption",
            "target": {"namespace": "prod", "name": "checkout"}, "id": "INC-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let decided = live.next_of("decision.recorded").await;
    assert_eq!(decided.data["details"]["verdict"], "freeze");
    assert_eq!(
        decided.data["details"]["target"],
        "default/prod/Deployment/checkout"
    );
    assert_eq!(decided.data["actor"], "rollwarden");
    let decision_id: i64 = decided.data["subject"]
        .as_str()
        .unwrap()
        .strip_prefix("decision:")
        .unwrap()
        .parse()
        .unwrap();
    let (status, _) = app
        .get_json(&format!("/api/v1/decisions/{decision_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "the event names a real decision");

    // An operator's freeze, declared then lifted: each is an event naming the person.
    let freeze = declare_freeze(&app, "INC-2: bad data").await;
    let created = loop {
        // (M8's own freeze, by rollwarden, may come first.)
        let event = live.next_of("freeze.created").await;
        if event.data["subject"] == format!("freeze:{freeze}") {
            break event;
        }
        assert_eq!(event.data["actor"], "rollwarden");
    };
    assert_eq!(created.data["actor"], "oncall");
    assert_eq!(created.data["id"], created.id);
    lift_freeze(&app, freeze).await;
    let lifted = live.next_of("freeze.lifted").await;
    assert!(lifted.id > created.id);

    // A client that lost its connection after `created` gets `lifted` first.
    let mut resumed = Reader::open(&app, "", Some(created.id)).await;
    let first = resumed.next().await.unwrap();
    assert!(first.id > created.id, "nothing at or before the last id");
    let mut seen = vec![first.id];
    while seen.last() != Some(&lifted.id) {
        seen.push(resumed.next().await.unwrap().id);
    }
    // `after=0`: the whole trail, in order, each once.
    let mut all = Reader::open(&app, "?after=0", None).await;
    let mut ids = Vec::new();
    while ids.last() != Some(&lifted.id) {
        ids.push(all.next().await.unwrap().id);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted);
    assert!(ids.contains(&decided.id) && ids.contains(&created.id));

    // Shutdown ends every stream, so the server stops without waiting out its grace.
    let _ = app.stop().await;
    assert!(live.next().await.is_none(), "the stream ended at shutdown");
}

on_both_backends!(a_stream_shows_decisions_and_freezes_live_and_resumes_after_its_last_id);

#[tokio::test]
async fn streams_are_bounded_and_their_start_is_validated() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.server.max_event_streams = 1).await;
    let mut first = Reader::open(&app, "", None).await;
    let second = app
        .http
        .get(app.url("/api/v1/events"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(
        second,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_streams",
        None,
    )
    .await;
    // The first still works.
    declare_freeze(&app, "bounded").await;
    first.next_of("freeze.created").await;
    drop(first);

    for (header, query) in [(Some("-1"), ""), (Some("12x"), ""), (None, "?after=-3")] {
        // The permit of the dropped stream is released once the server notices.
        let mut request = app
            .http
            .get(app.url(&format!("/api/v1/events{query}")))
            .bearer_auth(VIEWER_TOKEN);
        if let Some(value) = header {
            request = request.header("last-event-id", value);
        }
        let response = request.send().await.unwrap();
        let field = if header.is_some() {
            "Last-Event-ID"
        } else {
            "after"
        };
        let code = if header.is_some() {
            "invalid_header"
        } else {
            "invalid_query"
        };
        assert_error(response, StatusCode::BAD_REQUEST, code, Some(field)).await;
    }
}
