//! Alertmanager ingest: committed before 2xx, idempotent, strict, loss-free.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, FIRING, RESOLVED, TestApp, assert_error};

fn edit(body: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(body).unwrap();
    f(&mut v);
    v.to_string()
}

async fn accepted_notification_is_committed_with_its_receipt(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.post_alertmanager(FIRING).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["alerts"], 2);

    // Answered means committed: the store has it, read through another connection.
    let receipt_id = body["receipt_id"].as_i64().unwrap();
    let receipt = app.store().receipt(receipt_id).await.unwrap().unwrap();
    assert_eq!(receipt.body, FIRING, "the raw body is kept byte for byte");
    assert_eq!(receipt.source, "alertmanager");
    assert_eq!(receipt.duplicate_count, 0);

    let alerts = app.alerts("").await;
    assert_eq!(alerts.len(), 2);
    let a = alerts
        .iter()
        .find(|a| a["fingerprint"] == "9fc138bd6e224dae")
        .unwrap();
    assert_eq!(a["status"], "firing");
    assert_eq!(a["alertname"], "HighErrorRate");
    assert_eq!(a["labels"]["pod"], "checkout-69c9cdb879-d9wfp");
    assert_eq!(
        a["annotations"]["summary"],
        "checkout is returning too many 5xx responses"
    );
    assert_eq!(a["starts_at"], "2026-08-22T14:01:47.318Z");
    assert_eq!(a["ends_at"], Value::Null);
    assert_eq!(a["first_receipt_id"], receipt_id);
}

async fn firing_then_resolved_updates_the_same_occurrences(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.post_alertmanager(FIRING).await.status(), StatusCode::OK);
    let resolved = app.post_alertmanager(RESOLVED).await;
    assert_eq!(resolved.status(), StatusCode::OK);
    let receipt_id = resolved.json::<Value>().await.unwrap()["receipt_id"].clone();

    let alerts = app.alerts("").await;
    assert_eq!(
        alerts.len(),
        2,
        "upserted by (fingerprint, startsAt), not appended"
    );
    for a in &alerts {
        assert_eq!(a["status"], "resolved");
        assert!(a["ends_at"].is_string(), "{a}");
        assert_eq!(a["last_receipt_id"], receipt_id);
        assert_ne!(a["first_receipt_id"], receipt_id);
    }
}

async fn redelivery_changes_nothing_but_the_duplicate_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first: Value = app.post_alertmanager(FIRING).await.json().await.unwrap();
    let after_one = app.alerts("").await;

    // group_interval re-sends and HA peers: same content, other transport details.
    let repeat = edit(FIRING, |v| {
        v["notification_reason"] = "repeat interval elapsed".into()
    });
    for body in [
        FIRING.to_string(),
        repeat.clone(),
        FIRING.to_string(),
        repeat,
    ] {
        let r: Value = app.post_alertmanager(body).await.json().await.unwrap();
        assert_eq!(r["status"], "duplicate");
        assert_eq!(r["receipt_id"], first["receipt_id"]);
    }
    assert_eq!(
        app.alerts("").await,
        after_one,
        "alert state equals the state after one"
    );
    let receipt = app
        .store()
        .receipt(first["receipt_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.duplicate_count, 4);
    let metrics = app.metrics().await;
    assert!(metrics.contains(
        "rollwarden_notifications_received_total{source=\"alertmanager\",outcome=\"duplicate\"} 4"
    ));
}

async fn concurrent_duplicate_deliveries_are_accepted_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let posts = (0..24).map(|_| app.post_alertmanager(FIRING));
    let bodies: Vec<Value> = futures::future::join_all(posts)
        .await
        .into_iter()
        .inspect(|r| assert_eq!(r.status(), StatusCode::OK))
        .map(|r| async { r.json::<Value>().await.unwrap() })
        .collect::<futures::future::JoinAll<_>>()
        .await;
    let accepted = bodies.iter().filter(|b| b["status"] == "accepted").count();
    assert_eq!(accepted, 1, "{bodies:?}");
    let id = bodies[0]["receipt_id"].as_i64().unwrap();
    assert!(bodies.iter().all(|b| b["receipt_id"] == id));
    let receipt = app.store().receipt(id).await.unwrap().unwrap();
    assert_eq!(receipt.duplicate_count, 23);
    assert_eq!(app.alerts("").await.len(), 2);
}

async fn a_late_firing_delivery_does_not_reopen_a_resolved_alert(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.post_alertmanager(RESOLVED).await;
    // An HA peer's older, still-firing view arrives after the resolution.
    let r = app.post_alertmanager(FIRING).await;
    assert_eq!(r.status(), StatusCode::OK);
    let alerts = app.alerts("").await;
    assert!(
        alerts.iter().all(|a| a["status"] == "resolved"),
        "{alerts:?}"
    );
}

async fn bad_input_gets_a_4xx_naming_the_field_and_stores_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.limits.max_labels = 8;
        c.limits.max_label_value_bytes = 100;
    })
    .await;
    let cases: Vec<(String, &str, &str)> = vec![
        ("{\"version\": \"4\",".into(), "malformed_json", "body"),
        ("".into(), "malformed_json", "body"),
        (
            edit(FIRING, |v| v["version"] = "3".into()),
            "unsupported_version",
            "version",
        ),
        (
            edit(FIRING, |v| v["alerts"] = json!({})),
            "invalid_field",
            "alerts",
        ),
        (
            edit(FIRING, |v| v["status"] = 1.into()),
            "invalid_field",
            "status",
        ),
        (
            edit(FIRING, |v| {
                v["alerts"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("fingerprint");
            }),
            "invalid_field",
            "alerts[0]",
        ),
        (
            edit(FIRING, |v| v["alerts"][1]["labels"] = json!({})),
            "invalid_field",
            "alerts[1].labels",
        ),
        (
            edit(FIRING, |v| {
                v["alerts"][0]["startsAt"] = "2026-13-45T00:00:00Z".into()
            }),
            "invalid_timestamp",
            "alerts[0].startsAt",
        ),
        (
            edit(FIRING, |v| {
                for i in 0..10 {
                    v["alerts"][0]["labels"][format!("l{i}")] = "x".into();
                }
            }),
            "too_many_labels",
            "alerts[0].labels",
        ),
        (
            edit(FIRING, |v| {
                v["alerts"][0]["labels"]["team"] = "x".repeat(101).into()
            }),
            "value_too_long",
            "alerts[0].labels.team",
        ),
    ];
    let count = cases.len();
    for (body, code, field) in cases {
        let response = app.post_alertmanager(body).await;
        assert_error(response, StatusCode::BAD_REQUEST, code, Some(field)).await;
    }
    assert!(
        app.alerts("").await.is_empty(),
        "nothing half-parsed is stored"
    );
    assert!(app.metrics().await.contains(&format!(
        "rollwarden_notifications_received_total{{source=\"alertmanager\",outcome=\"rejected\"}} {count}"
    )));
}

async fn a_body_over_the_limit_gets_413(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.server.body_limit_bytes = 2048).await;
    assert!(FIRING.len() > 2048);
    let response = app.post_alertmanager(FIRING).await;
    assert_error(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        Some("body"),
    )
    .await;
    assert!(app.alerts("").await.is_empty());
}

async fn an_unavailable_store_gets_503_so_alertmanager_retries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.store().close().await;
    let response = app.post_alertmanager(FIRING).await;
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
    )
    .await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
    )
    .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("outcome=\"failed\"} 1"), "{metrics}");
    assert!(metrics.contains("rollwarden_store_errors_total{operation=\"record_notifications\",kind=\"unavailable\"} 1"), "{metrics}");
}

on_both_backends!(
    accepted_notification_is_committed_with_its_receipt,
    firing_then_resolved_updates_the_same_occurrences,
    redelivery_changes_nothing_but_the_duplicate_count,
    concurrent_duplicate_deliveries_are_accepted_once,
    a_late_firing_delivery_does_not_reopen_a_resolved_alert,
    bad_input_gets_a_4xx_naming_the_field_and_stores_nothing,
    a_body_over_the_limit_gets_413,
    an_unavailable_store_gets_503_so_alertmanager_retries,
);
