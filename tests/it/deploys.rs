//! Deploy history: CI callbacks, the store's deploy queries, the timeline API.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use rollwarden::domain::deploy::status;
use rollwarden::domain::{Deploy, DeploySource, TargetRef};
use rollwarden::store::DeployCursor;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestStore, WEBHOOK_TOKEN, assert_error, t0};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn checkout() -> TargetRef {
    TargetRef::deployment("default", "prod", "checkout")
}

fn rollout(revision: u32, status: &str, started: &str) -> Deploy {
    let mut d = Deploy::new(
        checkout(),
        DeploySource::Kubernetes,
        revision.to_string(),
        status,
        at(started),
    );
    d.helm_release = Some("checkout".into());
    d.images = vec![format!(
        "registry.example.com/shop/checkout:1.{}.0",
        revision + 3
    )];
    d
}

fn helm(revision: u32, status: &str, started: &str) -> Deploy {
    let mut d = Deploy::new(
        TargetRef::helm_release("default", "prod", "checkout"),
        DeploySource::Helm,
        revision.to_string(),
        status,
        at(started),
    );
    d.helm_release = Some("checkout".into());
    d.chart = Some("checkout".into());
    d
}

async fn post_deploy(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/deploys"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ci_body() -> Value {
    json!({
        "namespace": "prod", "name": "checkout", "revision": "2231", "status": "started",
        "environment": "production", "region": "eu-west-1", "version": "1.6.0",
        "image": "registry.example.com/shop/checkout:1.6.0", "commit": "9f1c2d3",
        "started_at": "2026-08-22T13:55:00Z",
        "link": "https://ci.example.com/shop/checkout/runs/2231", "actor": "release-bot"
    })
}

async fn a_ci_callback_is_stored_once_and_completed_by_its_finish(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = post_deploy(&app, ci_body()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["target"], "default/prod/Deployment/checkout");

    // The same call again (a retried pipeline step): no new row, nothing changed.
    let r = post_deploy(&app, ci_body()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["id"].clone(), again["changed"].clone()),
        (created["id"].clone(), json!(false))
    );

    let mut finished = ci_body();
    finished["status"] = "succeeded".into();
    finished["finished_at"] = "2026-08-22T13:58:00Z".into();
    let r = post_deploy(&app, finished).await;
    assert_eq!(r.status(), StatusCode::OK);

    let (status, body) = app.get_json("/api/v1/deploys?source=ci").await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let d = &items[0];
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["started_at"], "2026-08-22T13:55:00Z");
    assert_eq!(d["finished_at"], "2026-08-22T13:58:00Z");
    assert_eq!(d["commit_sha"], "9f1c2d3");
    assert_eq!(
        d["images"],
        json!(["registry.example.com/shop/checkout:1.6.0"])
    );
    assert_eq!(d["target"]["namespace"], "prod");
    assert!(app.metrics().await.contains(
        "rollwarden_notifications_received_total{source=\"ci\",outcome=\"duplicate\"} 1"
    ));
}

async fn bad_ci_callbacks_get_400_naming_the_field_and_store_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (key, value, code) in [
        ("namespace", json!("Prod"), "invalid_field"),
        ("revision", json!(""), "invalid_field"),
        ("status", json!("done"), "invalid_field"),
        ("started_at", json!("yesterday"), "invalid_timestamp"),
        ("link", json!("ftp://x"), "invalid_field"),
        ("colour", json!("red"), "invalid_field"),
    ] {
        let mut body = ci_body();
        body[key] = value;
        assert_error(
            post_deploy(&app, body).await,
            StatusCode::BAD_REQUEST,
            code,
            Some(key),
        )
        .await;
    }
    let (_, body) = app.get_json("/api/v1/deploys").await;
    assert_eq!(body["items"], json!([]));
}

async fn recording_is_idempotent_and_merges_later_reports(backend: Backend) {
    let db = TestStore::new(backend).await;
    let first = db
        .store
        .record_deploys(&[rollout(1, "deployed", "2026-08-22T09:00:00Z")], t0())
        .await
        .unwrap();
    assert!(first[0].created && first[0].changed);
    // A relist reports the same; then revision 2 supersedes 1, in one batch.
    let again = db
        .store
        .record_deploys(&[rollout(1, "deployed", "2026-08-22T09:00:00Z")], t0())
        .await
        .unwrap();
    assert_eq!(
        (again[0].id, again[0].created, again[0].changed),
        (first[0].id, false, false)
    );
    let later = t0() + Duration::minutes(5);
    let writes = db
        .store
        .record_deploys(
            &[
                rollout(2, "deployed", "2026-08-22T10:00:00Z"),
                rollout(1, "superseded", "2026-08-22T09:00:00Z"),
            ],
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        writes
            .iter()
            .map(|w| (w.created, w.changed))
            .collect::<Vec<_>>(),
        [(true, true), (false, true)]
    );

    let history = db
        .store
        .target_history(&checkout(), None, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "no duplicate rows");
    assert_eq!(history[0].deploy.revision, "2");
    assert_eq!(history[1].deploy.status, "superseded");
    assert_eq!(history[1].updated_at, later);
    assert_eq!(history[1].first_seen_at, t0());
    assert_eq!(history[1].deploy, {
        let mut d = rollout(1, "superseded", "2026-08-22T09:00:00Z");
        d.status = "superseded".into();
        d
    });
}

async fn a_failed_revision_stays_failed_and_is_never_the_rollback_target(backend: Backend) {
    let db = TestStore::new(backend).await;
    db.store
        .record_deploys(
            &[
                rollout(1, status::DEPLOYED, "2026-08-22T09:00:00Z"),
                rollout(2, status::FAILED, "2026-08-22T10:00:00Z"),
            ],
            t0(),
        )
        .await
        .unwrap();
    db.store
        .record_deploys(
            &[
                rollout(1, status::SUPERSEDED, "2026-08-22T09:00:00Z"),
                rollout(2, status::SUPERSEDED, "2026-08-22T10:00:00Z"),
                rollout(3, status::DEPLOYED, "2026-08-22T11:00:00Z"),
            ],
            t0(),
        )
        .await
        .unwrap();
    let history = db
        .store
        .target_history(&checkout(), None, 10)
        .await
        .unwrap();
    let statuses: Vec<_> = history
        .iter()
        .map(|d| (d.deploy.revision.as_str(), d.deploy.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [("3", "deployed"), ("2", "failed"), ("1", "superseded")]
    );
    let good = db
        .store
        .last_healthy_before(&history[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        good.deploy.revision, "1",
        "revision 2 failed, so 1 is the last good one"
    );
    assert!(
        db.store
            .last_healthy_before(&history[2])
            .await
            .unwrap()
            .is_none()
    );
}

async fn the_timeline_merges_rollouts_helm_and_ci_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let store = app.store();
    store
        .record_deploys(
            &[
                rollout(1, status::SUPERSEDED, "2026-08-22T09:00:05Z"),
                rollout(2, status::DEPLOYED, "2026-08-22T10:00:05Z"),
                helm(1, "superseded", "2026-08-22T09:00:00Z"),
                helm(2, "deployed", "2026-08-22T10:00:00Z"),
                // Another workload in the namespace and another release: not in the story.
                Deploy::new(
                    TargetRef::deployment("default", "prod", "cart"),
                    DeploySource::Kubernetes,
                    "1",
                    "deployed",
                    at("2026-08-22T10:30:00Z"),
                ),
                helm_other(),
            ],
            t0(),
        )
        .await
        .unwrap();
    let r = post_deploy(&app, json!({"namespace": "prod", "name": "checkout", "revision": "99", "status": "succeeded", "started_at": "2026-08-22T11:00:00Z"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let (status, body) = app.get_json("/api/v1/targets/prod/checkout/history").await;
    assert_eq!(status, StatusCode::OK);
    let story: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["source"].as_str().unwrap(),
                d["revision"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        story,
        ["ci:99", "kubernetes:2", "helm:2", "kubernetes:1", "helm:1"]
    );

    // Pages of two, following `next`, give the same story.
    let mut paged = Vec::new();
    let mut url = "/api/v1/targets/prod/checkout/history?limit=2".to_string();
    loop {
        let (_, body) = app.get_json(&url).await;
        for d in body["items"].as_array().unwrap() {
            paged.push(format!(
                "{}:{}",
                d["source"].as_str().unwrap(),
                d["revision"].as_str().unwrap()
            ));
        }
        match body["next"].as_str() {
            Some(next) => {
                url = format!("/api/v1/targets/prod/checkout/history?limit=2&after={next}")
            }
            None => break,
        }
    }
    assert_eq!(paged, story);

    let (_, body) = app
        .get_json("/api/v1/deploys?namespace=prod&source=helm&since=2026-08-22T09:30:00Z")
        .await;
    let revisions: Vec<_> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["target_key"].as_str().unwrap().to_string() + "#" + d["revision"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        revisions,
        [
            "default/prod/HelmRelease/cart#7",
            "default/prod/HelmRelease/checkout#2"
        ]
    );
}

fn helm_other() -> Deploy {
    let mut d = helm(7, "deployed", "2026-08-22T10:40:00Z");
    d.target = TargetRef::helm_release("default", "prod", "cart");
    d.helm_release = Some("cart".into());
    d
}

async fn deploys_between_finds_the_suspects_of_a_window(backend: Backend) {
    let db = TestStore::new(backend).await;
    db.store
        .record_deploys(
            &[
                rollout(1, status::SUPERSEDED, "2026-08-22T09:00:05Z"),
                rollout(2, status::DEPLOYED, "2026-08-22T10:00:05Z"),
                helm(2, "deployed", "2026-08-22T10:00:00Z"),
            ],
            t0(),
        )
        .await
        .unwrap();
    let found = db
        .store
        .deploys_between(
            &checkout(),
            at("2026-08-22T09:30:00Z"),
            at("2026-08-22T11:30:00Z"),
        )
        .await
        .unwrap();
    let ids: Vec<_> = found
        .iter()
        .map(|d| (d.deploy.source, d.deploy.revision.as_str()))
        .collect();
    assert_eq!(
        ids,
        [(DeploySource::Kubernetes, "2"), (DeploySource::Helm, "2")]
    );
    assert!(
        db.store
            .deploys_between(
                &checkout(),
                at("2026-08-22T10:00:06Z"),
                at("2026-08-22T11:00:00Z")
            )
            .await
            .unwrap()
            .is_empty()
    );
}

async fn cursors_survive_the_round_trip(backend: Backend) {
    let db = TestStore::new(backend).await;
    db.store
        .record_deploys(
            &[rollout(1, "deployed", "2026-08-22T09:00:00.123456Z")],
            t0(),
        )
        .await
        .unwrap();
    let all = db
        .store
        .target_history(&checkout(), None, 10)
        .await
        .unwrap();
    let cursor = DeployCursor::decode(&DeployCursor::of(&all[0]).encode()).unwrap();
    assert_eq!(cursor, DeployCursor::of(&all[0]));
    assert!(
        db.store
            .target_history(&checkout(), Some(cursor), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn only_one_holder_of_a_lease_at_a_time(backend: Backend) {
    let db = TestStore::new(backend).await;
    let mut first = db
        .store
        .try_lease("k8s-watchers")
        .await
        .unwrap()
        .expect("free lease");
    assert!(first.still_held().await);
    if backend == Backend::Postgres {
        assert!(
            db.store.try_lease("k8s-watchers").await.unwrap().is_none(),
            "held elsewhere"
        );
        // Each cluster's watchers have their own lease: another replica can take
        // another cluster's while this one watches the first.
        use rollwarden::k8s::watch::lease_name;
        let mut eu = db.store.try_lease(&lease_name("eu-1")).await.unwrap();
        let mut us = db.store.try_lease(&lease_name("us-1")).await.unwrap();
        assert!(eu.is_some() && us.is_some(), "one lease per cluster");
        assert!(
            db.store
                .try_lease(&lease_name("eu-1"))
                .await
                .unwrap()
                .is_none()
        );
        for lease in [eu.take(), us.take()].into_iter().flatten() {
            lease.release().await;
        }
        first.release().await;
        let second = db.store.try_lease("k8s-watchers").await.unwrap();
        assert!(second.is_some(), "free again after release");
    }
}

on_both_backends!(
    a_ci_callback_is_stored_once_and_completed_by_its_finish,
    bad_ci_callbacks_get_400_naming_the_field_and_store_nothing,
    recording_is_idempotent_and_merges_later_reports,
    a_failed_revision_stays_failed_and_is_never_the_rollback_target,
    the_timeline_merges_rollouts_helm_and_ci_and_pages,
    deploys_between_finds_the_suspects_of_a_window,
    cursors_survive_the_round_trip,
    only_one_holder_of_a_lease_at_a_time,
);
