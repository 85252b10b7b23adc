//! Per-caller rate limits of the ingest and write route groups, on a real socket.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    Backend, FIRING, OPERATOR_TOKEN, TestApp, VIEWER_TOKEN, WEBHOOK_TOKEN, assert_error,
};

const SIGNAL: &str =
    r#"{"kind":"sla_violation","target":{"namespace":"prod","name":"checkout"},"id":"sla-1"}"#;

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Burst 2, then one a second: the third request in a row is over the limit. (The
/// bucket refills in a second, far longer than three requests on loopback take.)
async fn tiny(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.limits.ingest_per_second = 1;
        c.limits.ingest_burst = 2;
        c.limits.write_per_second = 1;
        c.limits.write_burst = 1;
    })
    .await
}

#[tokio::test]
async fn a_sender_over_its_limit_gets_429_with_retry_after_and_others_do_not() {
    let app = tiny(Backend::Sqlite).await;
    for _ in 0..2 {
        let response = post(&app, "/webhooks/alertmanager", Some(WEBHOOK_TOKEN), FIRING).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The group's budget is shared across its routes.
    let response = post(&app, "/api/v1/signals", Some(WEBHOOK_TOKEN), SIGNAL).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        None,
    )
    .await;

    // Another token has a budget of its own.
    let response = post(&app, "/api/v1/signals", Some(OPERATOR_TOKEN), SIGNAL).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Reads are not limited.
    for _ in 0..5 {
        let (status, _) = app.get_json("/api/v1/alerts").await;
        assert_eq!(status, StatusCode::OK);
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"rollwarden_http_requests_throttled_total{group="ingest",principal="alertmanager"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn writes_have_their_own_limit() {
    let app = tiny(Backend::Sqlite).await;
    let freeze = r#"{"scope":"*","reason":"limits test"}"#;
    let response = post(&app, "/api/v1/freezes", Some(OPERATOR_TOKEN), freeze).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = post(&app, "/api/v1/freezes", Some(OPERATOR_TOKEN), freeze).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // The operator's ingest budget is untouched by its writes.
    let response = post(&app, "/api/v1/signals", Some(OPERATOR_TOKEN), SIGNAL).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_request_refused_by_auth_spends_no_budget() {
    let app = tiny(Backend::Sqlite).await;
    for _ in 0..5 {
        let response = post(&app, "/api/v1/signals", Some(VIEWER_TOKEN), SIGNAL).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = post(&app, "/api/v1/signals", None, SIGNAL).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = post(&app, "/api/v1/signals", Some(WEBHOOK_TOKEN), SIGNAL).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn without_tokens_callers_are_told_apart_by_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.tokens.clear();
        c.limits.ingest_per_second = 1;
        c.limits.ingest_burst = 1;
    })
    .await;
    let response = post(&app, "/api/v1/signals", None, SIGNAL).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = post(&app, "/api/v1/signals", None, SIGNAL).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"rollwarden_http_requests_throttled_total{group="ingest",principal="anonymous"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_limit_of_zero_is_no_limit() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.limits.ingest_per_second = 0;
        c.limits.ingest_burst = 0;
    })
    .await;
    for _ in 0..20 {
        let response = post(&app, "/api/v1/signals", Some(WEBHOOK_TOKEN), SIGNAL).await;
        assert!(response.status().is_success(), "{}", response.status());
    }
}
