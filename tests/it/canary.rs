//! Canary controllers through the real router: Flagger's webhooks (every hook type,
//! every situation, with the fixture payloads and the exact status codes, each call on
//! the canary run's timeline) and the Argo Rollouts analysis endpoint (the JSON of each
//! verdict).

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{
    Backend, OPERATOR_TOKEN, TestApp, VIEWER_TOKEN, WEBHOOK_TOKEN, assert_error, t0,
};

const ROLLOUT: &str = include_str!("../fixtures/flagger-rollout.json");
const ROLLBACK: &str = include_str!("../fixtures/flagger-rollback.json");
const EVENT: &str = include_str!("../fixtures/flagger-event.json");

const CHECKOUT: &str = "default/prod/Deployment/checkout";
/// The fixtures' checksum: the canary run under analysis.
const RUN: &str = "64c6d9c894";
/// The run before it, promoted.
const PREVIOUS_RUN: &str = "5b7f6c8d4";

fn minutes(m: i64) -> Duration {
    Duration::minutes(m)
}

/// A fixture with some top-level fields replaced.
fn payload(fixture: &str, changes: Value) -> String {
    let mut body: Value = serde_json::from_str(fixture).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

/// Calls a Flagger hook with the webhook token; returns the status and the JSON body.
async fn call(app: &TestApp, hook: &str, body: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .post(app.url(&format!("/webhooks/flagger/{hook}")))
        .bearer_auth(WEBHOOK_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// The body each hook type gets from Flagger while the run is analysed.
fn body_for(hook: &str) -> String {
    match hook {
        "rollback" => ROLLBACK.to_string(),
        "event" => EVENT.to_string(),
        "confirm-promotion" => payload(ROLLOUT, json!({"phase": "WaitingPromotion"})),
        _ => ROLLOUT.to_string(),
    }
}

/// Every hook type, in the order Flagger calls them through one run.
const HOOKS: [&str; 8] = [
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "rollback",
    "event",
    "confirm-promotion",
    "post-rollout",
];

/// Calls every hook once; `post-rollout` reports the run ended in `end` (`Succeeded`
/// or `Failed`). Returns (hook, status, body) in call order.
async fn answers(app: &TestApp, end: &str) -> Vec<(String, u16, Value)> {
    let mut out = Vec::new();
    for hook in HOOKS {
        let body = if hook == "post-rollout" {
            payload(ROLLOUT, json!({"phase": end}))
        } else {
            body_for(hook)
        };
        let (status, json) = call(app, hook, &body).await;
        out.push((hook.to_string(), status.as_u16(), json));
    }
    out
}

fn statuses(answers: &[(String, u16, Value)]) -> Vec<(&str, u16)> {
    answers.iter().map(|(h, s, _)| (h.as_str(), *s)).collect()
}

async fn post_signal(app: &TestApp, body: Value) {
    let r = app
        .http
        .post(app.url("/api/v1/signals"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// A previous run promoted 40 minutes ago, then the fixtures' run started 10 minutes
/// ago (the clock ends at t0).
async fn two_runs(app: &TestApp) {
    app.clock.set(t0() - minutes(40));
    let (status, _) = call(
        app,
        "confirm-rollout",
        &payload(
            ROLLOUT,
            json!({"phase": "Succeeded", "checksum": PREVIOUS_RUN}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.clock.set(t0() - minutes(10));
    let (status, _) = call(app, "pre-rollout", ROLLOUT).await;
    assert_eq!(status, StatusCode::OK);
    app.clock.set(t0());
}

/// The canary's error rate is 2.1 % against the primary's 1 %: C1 (> baseline + 0.5 pp).
async fn canary_errors(app: &TestApp) {
    post_signal(
        app,
        json!({"kind": "error_rate", "scope": "canary", "value": 0.021, "baseline": 0.01,
               "target": {"namespace": "prod", "name": "checkout"}, "id": "canary-errors",
               "started_at": (t0() - minutes(5)).to_rfc3339()}),
    )
    .await;
}

async fn declare_freeze(app: &TestApp, scope: &str) -> i64 {
    let r = app
        .http
        .post(app.url("/api/v1/freezes"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"scope": scope, "reason": "orders written twice (INC-42)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// The target's Flagger rows, newest first, from the timeline API.
async fn flagger_rows(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/api/v1/targets/prod/checkout/history").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["source"] == "flagger")
        .cloned()
        .collect()
}

fn row<'a>(rows: &'a [Value], revision: &str) -> &'a Value {
    rows.iter()
        .find(|d| d["revision"] == revision)
        .unwrap_or_else(|| panic!("no flagger row {revision}: {rows:?}"))
}

fn timeline(row: &Value) -> Vec<(String, Option<u64>)> {
    row["details"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["hook"].as_str().unwrap().to_string(),
                e["answer"].as_u64(),
            )
        })
        .collect()
}

async fn a_healthy_canary_passes_every_gate_and_each_call_is_on_its_timeline(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answers = answers(&app, "Succeeded").await;
    assert_eq!(
        statuses(&answers),
        [
            ("confirm-rollout", 200),
            ("pre-rollout", 200),
            ("rollout", 200),
            ("confirm-traffic-increase", 200),
            // 403: no rollback. Flagger reads only 200–202 as "roll back now".
            ("rollback", 403),
            ("event", 200),
            ("confirm-promotion", 200),
            ("post-rollout", 200),
        ]
    );
    let (_, _, pass) = &answers[1];
    assert_eq!(
        (&pass["answer"], &pass["verdict"], &pass["target"]),
        (&json!("pass"), &json!("ok"), &json!(CHECKOUT))
    );
    assert!(pass["decision_id"].as_i64().is_some(), "{pass}");
    let (_, _, recorded) = &answers[5];
    assert_eq!(recorded["answer"], "recorded", "{recorded}");
    let (_, _, no) = &answers[4];
    assert_eq!(no["error"]["code"], "no_rollback", "{no}");
    assert_eq!(no["error"]["details"]["verdict"], "ok");

    // One deploy row for the run, keyed by the checksum, with every call on it.
    let rows = flagger_rows(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let run = row(&rows, RUN);
    assert_eq!(
        run["status"], "succeeded",
        "post-rollout reported Succeeded"
    );
    assert_eq!(run["finished_at"], "2026-08-22T14:03:00Z");
    assert_eq!(run["environment"], "prod", "from the webhook's metadata");
    assert_eq!(
        timeline(run),
        [
            ("confirm-rollout".into(), Some(200)),
            ("pre-rollout".into(), Some(200)),
            ("rollout".into(), Some(200)),
            ("confirm-traffic-increase".into(), Some(200)),
            ("rollback".into(), Some(403)),
            ("event".into(), None),
            ("confirm-promotion".into(), Some(200)),
            ("post-rollout".into(), Some(200)),
        ]
    );
    let event = &run["details"]["events"][5];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["at"], "2026-08-22T14:03:17.412Z");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("Halt checkout.prod advancement")
    );
    // The deploy list finds it by source too.
    let (_, listed) = app.get_json("/api/v1/deploys?source=flagger").await;
    assert_eq!(listed["items"][0]["revision"], RUN);
}

async fn a_canary_over_its_baseline_is_rolled_back_c1(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    two_runs(&app).await;
    canary_errors(&app).await;
    let answers = answers(&app, "Failed").await;
    assert_eq!(
        statuses(&answers),
        [
            ("confirm-rollout", 403),
            ("pre-rollout", 403),
            ("rollout", 403),
            ("confirm-traffic-increase", 403),
            ("rollback", 200),
            ("event", 200),
            ("confirm-promotion", 403),
            ("post-rollout", 200),
        ]
    );
    let (_, _, rollback) = &answers[4];
    assert_eq!(
        (
            &rollback["answer"],
            &rollback["verdict"],
            &rollback["rollback"]
        ),
        (&json!("rollback"), &json!("rollback"), &json!(true))
    );
    assert!(
        rollback["reason"].as_str().unwrap().contains("C1"),
        "{rollback}"
    );
    let (_, _, halted) = &answers[2];
    assert_eq!(halted["error"]["code"], "check_failed");
    assert!(halted["error"]["message"].as_str().unwrap().contains("C1"));
    let (_, _, closed) = &answers[6];
    assert_eq!(closed["error"]["code"], "gate_closed");

    // The decision blames the run and returns to the one before.
    let id = rollback["decision_id"].as_i64().unwrap();
    let (_, decision) = app.get_json(&format!("/api/v1/decisions/{id}")).await;
    assert_eq!(
        decision["decision"]["suspect"]["revision"], RUN,
        "{decision}"
    );
    assert_eq!(
        decision["decision"]["rollback_to"]["revision"],
        PREVIOUS_RUN
    );

    // Flagger rolled back and reported the run failed.
    let rows = flagger_rows(&app).await;
    assert_eq!(row(&rows, RUN)["status"], "failed");
    assert!(
        timeline(row(&rows, RUN)).contains(&("rollback".into(), Some(200))),
        "the rollback answer is on the run's timeline"
    );
    // Gates asked with the promoted run's checksum (before a new run is confirmed,
    // Flagger still sends it) leave it promoted: a known-good revision stays one.
    // (The canary's errors still fire: the gate stays closed, a rollback still stands.)
    for (hook, phase, answer) in [
        ("confirm-rollout", "Succeeded", StatusCode::FORBIDDEN),
        ("rollback", "Waiting", StatusCode::OK),
    ] {
        let body = payload(ROLLOUT, json!({"phase": phase, "checksum": PREVIOUS_RUN}));
        assert_eq!(call(&app, hook, &body).await.0, answer, "{hook}");
    }
    let rows = flagger_rows(&app).await;
    assert_eq!(row(&rows, PREVIOUS_RUN)["status"], "succeeded");
}

async fn a_hold_keeps_the_canary_from_advancing_without_failing_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    two_runs(&app).await;
    // A canary error rate with no value: inconclusive, a hold, never a rollback.
    post_signal(
        &app,
        json!({"kind": "error_rate", "scope": "canary",
               "target": {"namespace": "prod", "name": "checkout"}, "id": "canary-unknown"}),
    )
    .await;
    let answers = answers(&app, "Succeeded").await;
    assert_eq!(
        statuses(&answers),
        [
            ("confirm-rollout", 200),
            ("pre-rollout", 200),
            ("rollout", 200),
            ("confirm-traffic-increase", 403),
            ("rollback", 403),
            ("event", 200),
            ("confirm-promotion", 403),
            ("post-rollout", 200),
        ]
    );
    let (_, _, held) = &answers[6];
    assert_eq!(held["error"]["code"], "gate_closed");
    assert_eq!(held["error"]["details"]["verdict"], "hold");
    assert!(
        held["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inconclusive"),
        "{held}"
    );
}

async fn a_freeze_closes_the_gates_of_a_healthy_canary_until_lifted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let freeze = declare_freeze(&app, "default/prod").await;
    let answers = answers(&app, "Succeeded").await;
    assert_eq!(
        statuses(&answers),
        [
            ("confirm-rollout", 403),
            ("pre-rollout", 200),
            ("rollout", 200),
            ("confirm-traffic-increase", 403),
            ("rollback", 403),
            ("event", 200),
            ("confirm-promotion", 403),
            ("post-rollout", 200),
        ]
    );
    let (_, _, closed) = &answers[0];
    assert_eq!(closed["error"]["code"], "gate_closed");
    assert_eq!(closed["error"]["details"]["frozen"], true);
    assert_eq!(closed["error"]["details"]["freezes"], json!([freeze]));
    assert!(
        closed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("INC-42"),
        "{closed}"
    );
    // Lifted, it closes nothing: every answer is evaluated at the call.
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/freezes/{freeze}")))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, body) = call(&app, "confirm-rollout", ROLLOUT).await;
    assert_eq!((status, &body["frozen"]), (StatusCode::OK, &json!(false)));
}

async fn a_freeze_still_admits_a_rollback(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    two_runs(&app).await;
    canary_errors(&app).await;
    declare_freeze(&app, "*").await;
    let answers = answers(&app, "Failed").await;
    assert_eq!(
        statuses(&answers),
        [
            ("confirm-rollout", 403),
            ("pre-rollout", 403),
            ("rollout", 403),
            ("confirm-traffic-increase", 403),
            ("rollback", 200),
            ("event", 200),
            ("confirm-promotion", 403),
            ("post-rollout", 200),
        ]
    );
    let (_, _, rollback) = &answers[4];
    assert_eq!(
        (&rollback["frozen"], &rollback["rollback"]),
        (&json!(true), &json!(true)),
        "{rollback}"
    );
}

async fn repeated_calls_and_events_keep_a_readable_timeline(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..3 {
        assert_eq!(call(&app, "rollout", ROLLOUT).await.0, StatusCode::OK);
        app.clock.advance(minutes(1));
    }
    // Flagger's retry of an event adds nothing.
    for _ in 0..2 {
        assert_eq!(call(&app, "event", EVENT).await.0, StatusCode::OK);
    }
    let rows = flagger_rows(&app).await;
    let events = row(&rows, RUN)["details"]["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (
            &events[0]["hook"],
            &events[0]["calls"],
            &events[0]["at"],
            &events[0]["last_at"]
        ),
        (
            &json!("rollout"),
            &json!(3),
            &json!("2026-08-22T14:03:00.000Z"),
            &json!("2026-08-22T14:05:00.000Z")
        )
    );
    assert_eq!(events[1]["hook"], "event");
}

/// Every verdict, as Argo's web provider reads it: always 200 and JSON.
async fn the_analysis_endpoint_answers_each_verdict_with_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let analysis = |app: &TestApp| {
        let app_url = app.url("/api/v1/analysis/prod/checkout");
        let http = app.http.clone();
        async move {
            let r = http
                .get(app_url)
                .bearer_auth(VIEWER_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    // ok
    let ok = analysis(&app).await;
    assert_eq!(
        (
            &ok["verdict"],
            &ok["rollback"],
            &ok["healthy"],
            &ok["frozen"]
        ),
        (&json!("ok"), &json!(false), &json!(true), &json!(false)),
        "{ok}"
    );
    assert_eq!(ok["target"], CHECKOUT);
    assert_eq!(ok["evaluated_at"], "2026-08-22T14:03:00Z");
    assert_eq!(
        (&ok["fired"], &ok["holds"], &ok["freezes"]),
        (&json!([]), &json!([]), &json!([]))
    );
    assert!(ok["decision_id"].as_i64().is_some() && ok["decided_at"].is_string());

    // rollback, with the rule's numbers
    two_runs(&app).await;
    canary_errors(&app).await;
    let rollback = analysis(&app).await;
    assert_eq!(
        (
            &rollback["verdict"],
            &rollback["rollback"],
            &rollback["healthy"]
        ),
        (&json!("rollback"), &json!(true), &json!(false)),
        "{rollback}"
    );
    let c1 = rollback["fired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "C1")
        .expect("C1 fired");
    assert_eq!(
        (
            c1["observed"].as_f64(),
            c1["baseline"].as_f64(),
            &c1["scope"]
        ),
        (Some(0.021), Some(0.01), &json!("canary"))
    );
    assert!((c1["threshold"].as_f64().unwrap() - 0.015).abs() < 1e-12);
    assert_ne!(rollback["decision_id"], ok["decision_id"]);

    // freeze: declared on the target itself; the rollback it admits stands
    let freeze = declare_freeze(&app, CHECKOUT).await;
    let frozen = analysis(&app).await;
    assert_eq!(
        (&frozen["frozen"], &frozen["rollback"], &frozen["healthy"]),
        (&json!(true), &json!(true), &json!(false))
    );
    assert_eq!(frozen["freezes"][0]["id"], freeze);
    assert_eq!(
        frozen["freezes"][0]["reason"],
        "orders written twice (INC-42)"
    );

    // hold: the canary's errors end, and a measurement without a value comes in
    post_signal(
        &app,
        json!({"kind": "error_rate", "scope": "canary", "value": 0.021, "baseline": 0.01,
               "target": {"namespace": "prod", "name": "checkout"}, "id": "canary-errors",
               "started_at": (t0() - minutes(5)).to_rfc3339(), "ended_at": t0().to_rfc3339()}),
    )
    .await;
    post_signal(
        &app,
        json!({"kind": "error_rate", "scope": "canary", "id": "canary-unknown",
               "target": {"namespace": "prod", "name": "checkout"}}),
    )
    .await;
    let hold = analysis(&app).await;
    assert_eq!(
        (&hold["verdict"], &hold["rollback"], &hold["healthy"]),
        (&json!("hold"), &json!(false), &json!(false)),
        "{hold}"
    );
    assert_eq!(hold["holds"][0]["code"], "inconclusive");
    assert!(
        hold["holds"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("canary-unknown")
    );
}

on_both_backends!(
    a_healthy_canary_passes_every_gate_and_each_call_is_on_its_timeline,
    a_canary_over_its_baseline_is_rolled_back_c1,
    a_hold_keeps_the_canary_from_advancing_without_failing_it,
    a_freeze_closes_the_gates_of_a_healthy_canary_until_lifted,
    a_freeze_still_admits_a_rollback,
    repeated_calls_and_events_keep_a_readable_timeline,
    the_analysis_endpoint_answers_each_verdict_with_json,
);

#[tokio::test]
async fn unknown_hooks_get_404_and_bad_payloads_400_and_nothing_is_stored() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let post = |hook: &str, body: String| {
        app.http
            .post(app.url(&format!("/webhooks/flagger/{hook}")))
            .bearer_auth(WEBHOOK_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post("promote", ROLLOUT.to_string()).await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found", Some("hook")).await;
    for (hook, body, field) in [
        (
            "rollout",
            payload(ROLLOUT, json!({"phase": "Running"})),
            "phase",
        ),
        (
            "rollout",
            payload(ROLLOUT, json!({"namespace": "Prod"})),
            "namespace",
        ),
        (
            "rollout",
            payload(ROLLOUT, json!({"checksum": null})),
            "checksum",
        ),
        (
            "rollback",
            payload(ROLLBACK, json!({"metadata": {"gate": 1}})),
            "metadata.gate",
        ),
    ] {
        let r = post(hook, body).await.unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_field", Some(field)).await;
    }
    // What the event hook needs depends on the path, which no body schema can state:
    // 422, as the document says.
    let r = post("event", ROLLOUT.to_string()).await.unwrap();
    assert_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inconsistent",
        Some("metadata.eventMessage"),
    )
    .await;
    let r = post("rollout", "{not json".into()).await.unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "malformed_json", Some("body")).await;
    let (_, deploys) = app.get_json("/api/v1/deploys").await;
    assert_eq!(deploys["items"], json!([]));
    assert!(app.metrics().await.contains(
        "rollwarden_notifications_received_total{source=\"flagger\",outcome=\"rejected\"} 6"
    ));
}

/// Flagger sends no headers (PROTOCOLS.md B.1): its token comes in `metadata.token`.
#[tokio::test]
async fn flagger_authenticates_with_the_token_in_its_metadata() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let post = |token: Value| {
        let mut body: Value = serde_json::from_str(ROLLOUT).unwrap();
        body["metadata"]["token"] = token;
        app.http
            .post(app.url("/webhooks/flagger/rollout"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post(json!(WEBHOOK_TOKEN)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(json!("not-a-configured-token-000")).await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    let r = post(json!(VIEWER_TOKEN)).await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden", None).await;
    // No token at all, and a body that is no Flagger payload: the same 401.
    let r = app
        .http
        .post(app.url("/webhooks/flagger/rollout"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    // The token is never kept.
    let (_, deploys) = app.get_json("/api/v1/deploys?source=flagger").await;
    assert_eq!(deploys["items"].as_array().unwrap().len(), 1);
    assert!(!deploys.to_string().contains(WEBHOOK_TOKEN), "{deploys}");
}

#[tokio::test]
async fn the_analysis_endpoint_rejects_nonsense_with_400() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (path, field) in [
        ("/api/v1/analysis/Prod/checkout", "namespace"),
        ("/api/v1/analysis/prod/check%20out", "name"),
        ("/api/v1/analysis/prod/checkout?kind=Deploy%20ment", "kind"),
        ("/api/v1/analysis/prod/checkout?cluster=EU", "cluster"),
        ("/api/v1/analysis/prod/checkout?verdict=ok", "verdict"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(
            (status, body["error"]["details"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .get_json("/api/v1/analysis/prod/checkout?kind=Rollout&cluster=eu-1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["target"], "eu-1/prod/Rollout/checkout");
}
