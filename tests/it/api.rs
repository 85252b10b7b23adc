//! The read API and the operational endpoints.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, FIRING, TestApp, VIEWER_TOKEN, assert_error};

/// A one-alert notification in Alertmanager's format.
pub fn notification(
    alertname: &str,
    fingerprint: &str,
    namespace: &str,
    status: &str,
    starts: &str,
) -> String {
    let ends = if status == "resolved" {
        "2026-08-22T15:00:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    json!({
        "receiver": "rollwarden",
        "status": status,
        "alerts": [{
            "status": status,
            "labels": {"alertname": alertname, "namespace": namespace, "service": "checkout"},
            "annotations": {"summary": format!("{alertname} in {namespace}")},
            "startsAt": starts,
            "endsAt": ends,
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint,
        }],
        "groupLabels": {"alertname": alertname},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0
    })
    .to_string()
}

fn fingerprints(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect()
}

async fn seed(app: &TestApp) {
    for (name, fp, ns, status, starts) in [
        (
            "HighErrorRate",
            "a1",
            "prod",
            "firing",
            "2026-08-22T10:00:00Z",
        ),
        (
            "HighLatency",
            "a2",
            "prod",
            "firing",
            "2026-08-22T11:00:00Z",
        ),
        (
            "HighErrorRate",
            "a3",
            "staging",
            "resolved",
            "2026-08-22T12:00:00Z",
        ),
        (
            "KubePodCrashLooping",
            "a4",
            "prod",
            "resolved",
            "2026-08-22T13:00:00Z",
        ),
        (
            "HighErrorRate",
            "a5",
            "prod",
            "firing",
            "2026-08-22T14:00:00Z",
        ),
    ] {
        let r = app
            .post_alertmanager(notification(name, fp, ns, status, starts))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

async fn alerts_filter_by_status_name_label_and_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    assert_eq!(
        fingerprints(&app.alerts("").await),
        ["a5", "a4", "a3", "a2", "a1"]
    );
    assert_eq!(
        fingerprints(&app.alerts("status=resolved").await),
        ["a4", "a3"]
    );
    assert_eq!(
        fingerprints(&app.alerts("alertname=HighErrorRate").await),
        ["a5", "a3", "a1"]
    );
    assert_eq!(
        fingerprints(
            &app.alerts("alertname=HighErrorRate&label=namespace=prod")
                .await
        ),
        ["a5", "a1"]
    );
    assert_eq!(
        fingerprints(
            &app.alerts("label=namespace%3Dprod&label=service=checkout&status=firing")
                .await
        ),
        ["a5", "a2", "a1"]
    );
    assert!(
        app.alerts("label=namespace=prod&label=namespace=staging")
            .await
            .is_empty()
    );
    assert_eq!(
        fingerprints(
            &app.alerts("since=2026-08-22T11:00:00Z&until=2026-08-22T13:00:00Z")
                .await
        ),
        ["a3", "a2"]
    );
}

async fn alerts_paginate_by_keyset_without_gaps_or_repeats(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    let mut seen = Vec::new();
    let mut query = "limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, body) = app.get_json(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        for item in body["items"].as_array().unwrap() {
            seen.push(item["fingerprint"].as_str().unwrap().to_string());
        }
        match body["next"].as_str() {
            Some(next) => query = format!("limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["a5", "a4", "a3", "a2", "a1"]);
}

on_both_backends!(
    alerts_filter_by_status_name_label_and_time,
    alerts_paginate_by_keyset_without_gaps_or_repeats,
);

#[tokio::test]
async fn nonsense_filters_get_400_naming_the_parameter() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (query, field) in [
        ("status=on", "status"),
        ("limit=abc", "limit"),
        ("since=tomorrow", "since"),
        ("label=bad", "label"),
        ("after=x", "after"),
        ("colour=red", "colour"),
    ] {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/alerts?{query}")))
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some(field),
        )
        .await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let healthz: Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(healthz["status"], "ok");
    let readyz = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);
    let readyz: Value = readyz.json().await.unwrap();
    assert_eq!(readyz["store"], "sqlite");
}

#[tokio::test]
async fn metrics_count_notifications_alerts_and_latency() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.post_alertmanager(FIRING).await;
    app.post_alertmanager(FIRING).await;
    app.post_alertmanager("{}").await;
    let metrics = app.metrics().await;
    for expected in [
        "rollwarden_notifications_received_total{source=\"alertmanager\",outcome=\"accepted\"} 1",
        "rollwarden_notifications_received_total{source=\"alertmanager\",outcome=\"duplicate\"} 1",
        "rollwarden_notifications_received_total{source=\"alertmanager\",outcome=\"rejected\"} 1",
        "rollwarden_alerts_stored_total 2",
        "rollwarden_http_request_duration_seconds_count{method=\"POST\",path=\"/webhooks/alertmanager\",status=\"200\"} 2",
        "rollwarden_http_request_duration_seconds_count{method=\"POST\",path=\"/webhooks/alertmanager\",status=\"400\"} 1",
        "rollwarden_notifications_received_total{source=\"alertmanager\",outcome=\"failed\"} 0",
        "rollwarden_store_errors_total{operation=\"record_notifications\",kind=\"unavailable\"} 0",
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let generated = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let given = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "am-retry-7")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "am-retry-7");
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app.http.get(app.url("/api/v1/nope")).send().await.unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found", None).await;
}
