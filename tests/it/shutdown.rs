//! Graceful shutdown: in-flight requests finish, and nothing that got a 2xx is lost.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::api::notification;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, WEBHOOK_TOKEN};

async fn nothing_acknowledged_is_lost_when_stopping_under_load(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for i in 0..200 {
        let http = app.http.clone();
        let url = app.url("/webhooks/alertmanager");
        let done = done_tx.clone();
        senders.push(tokio::spawn(async move {
            let body = notification(
                "Load",
                &format!("f{i:04}"),
                "prod",
                "firing",
                "2026-08-22T10:00:00Z",
            );
            let result = http
                .post(url)
                .bearer_auth(WEBHOOK_TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let receipt = match result {
                Ok(r) if r.status() == StatusCode::OK => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|b| b["receipt_id"].as_i64()),
                _ => None,
            };
            let _ = done.send(());
            receipt
        }));
    }
    // Stop while requests are still arriving.
    for _ in 0..40 {
        done_rx.recv().await;
    }
    let base = app.base.clone();
    let db = app.stop().await;

    let mut acknowledged = HashSet::new();
    for sender in senders {
        if let Some(id) = sender.await.unwrap() {
            acknowledged.insert(id);
        }
    }
    assert!(
        acknowledged.len() >= 40,
        "only {} acknowledged",
        acknowledged.len()
    );
    let store = db.reopen().await;
    for id in &acknowledged {
        assert!(
            store.receipt(*id).await.unwrap().is_some(),
            "receipt {id} was acknowledged but lost"
        );
    }
    // And the listener is gone.
    let after = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(after.is_err(), "still serving after shutdown");
}

on_both_backends!(nothing_acknowledged_is_lost_when_stopping_under_load);
