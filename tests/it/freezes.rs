//! Freezes through the API: declared and lifted by operators, honoured in decisions.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, OPERATOR_TOKEN, TestApp, assert_error};

async fn as_operator(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(OPERATOR_TOKEN);
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.unwrap()
}

async fn an_operator_declares_and_lifts_a_freeze(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = as_operator(
        &app,
        reqwest::Method::POST,
        "/api/v1/freezes",
        Some(json!({
        "scope": "default/prod", "reason": "orders written twice (INC-42)",
        "expires_at": "2026-08-22T18:00:00Z"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        created["created_by"], "oncall",
        "the token's name, not the token"
    );
    assert_eq!(created["lifted_at"], Value::Null);
    let id = created["id"].as_i64().unwrap();

    let (_, active) = app.get_json("/api/v1/freezes").await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);

    let r = as_operator(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/freezes/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let lifted: Value = r.json().await.unwrap();
    assert_eq!(lifted["lifted_by"], "oncall");
    assert_eq!(lifted["lifted_at"], "2026-08-22T14:03:00Z");
    // Lifting again changes nothing; an unknown freeze is a 404.
    let again: Value = as_operator(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/freezes/{id}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again, lifted);
    let missing = as_operator(&app, reqwest::Method::DELETE, "/api/v1/freezes/9999", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let (_, active) = app.get_json("/api/v1/freezes").await;
    assert_eq!(active["items"], json!([]));
    let (_, all) = app.get_json("/api/v1/freezes?active=false").await;
    assert_eq!(all["items"][0]["id"], id);
}

async fn a_freeze_is_named_in_the_decisions_it_covers(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.engine.tick_secs = 1).await;
    as_operator(
        &app,
        reqwest::Method::POST,
        "/api/v1/freezes",
        Some(json!({
        "scope": "*", "reason": "database migration in progress"})),
    )
    .await;
    let r = app.http.post(app.url("/api/v1/signals")).bearer_auth(OPERATOR_TOKEN).json(&json!({
        "kind": "sla_violation", "target": {"namespace": "prod", "name": "checkout"}, "id": "sla-9"
    })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut reason = String::new();
    for _ in 0..500 {
        let (_, body) = app.get_json("/api/v1/decisions?limit=1").await;
        if let Some(r) = body["items"][0]["reason"].as_str() {
            reason = r.to_string();
            if reason.contains("freeze") {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reason.contains("freeze"), "{reason}");
}

on_both_backends!(
    an_operator_declares_and_lifts_a_freeze,
    a_freeze_is_named_in_the_decisions_it_covers,
);

#[tokio::test]
async fn bad_freezes_get_400_naming_the_field() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (body, field) in [
        (json!({"scope": "prod", "reason": "x"}), "scope"),
        (json!({"scope": "default/Prod", "reason": "x"}), "scope"),
        (json!({"scope": "*", "reason": "  "}), "reason"),
        (
            json!({"scope": "*", "reason": "x", "until": "tomorrow"}),
            "until",
        ),
        (json!({"reason": "x"}), "body"),
    ] {
        let r = as_operator(&app, reqwest::Method::POST, "/api/v1/freezes", Some(body)).await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_field", Some(field)).await;
    }
    // The document cannot state "in the future": that rule is answered 422.
    let past = json!({"scope": "*", "reason": "x", "expires_at": "2026-08-22T00:00:00Z"});
    let r = as_operator(&app, reqwest::Method::POST, "/api/v1/freezes", Some(past)).await;
    assert_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inconsistent",
        Some("expires_at"),
    )
    .await;
    let (status, body) = app.get_json("/api/v1/freezes?active=maybe").await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("active"))
    );
}
