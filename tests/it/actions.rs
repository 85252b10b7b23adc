//! Actions through the running app: a failing deploy on the fake cluster is rolled
//! back once, verified and announced in `auto` mode; waits for a person in `approve`
//! mode (approve, reject, expiry); is recommended with pasteable commands in
//! `recommend` mode; and nothing is touched in dry run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_backends;
use crate::support::fake_kube::FakeKube;
use crate::support::{Backend, OPERATOR_TOKEN, TestApp, VIEWER_TOKEN, t0};
use rollwarden::config::{Config, Secret};
use rollwarden::domain::Mode;
use rollwarden::domain::classify::{EnvironmentConfig, TargetConfig};

pub const CHECKOUT: &str = "default/prod/Deployment/checkout";
const FIXTURE: &str = "tests/fixtures/deployment-with-replicasets.json";
const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/prod/deployments/checkout";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An Alertmanager notification about prod/checkout: an error rate of 12.4 % (M2),
/// firing since four minutes before t0 (after revision 3 rolled out at 13:55).
pub fn error_rate(status: &str) -> String {
    let ends = if status == "resolved" {
        ts(t0())
    } else {
        "0001-01-01T00:00:00Z".into()
    };
    json!({
        "receiver": "rollwarden", "status": status,
        "alerts": [{"status": status,
                    "labels": {"alertname": "HighErrorRate", "namespace": "prod", "service": "checkout", "severity": "critical"},
                    "annotations": {"value": "0.124"},
                    "startsAt": ts(t0() - chrono::Duration::minutes(4)), "endsAt": ends,
                    "generatorURL": "http://prometheus:9090/graph", "fingerprint": "e1e1"}],
        "groupLabels": {"alertname": "HighErrorRate"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0
    })
    .to_string()
}

/// The fake cluster with the fixture (revisions 1, 2, 3 of prod/checkout), and a
/// stand-in for the deployment controller: whenever the Deployment's spec changes it
/// reports the new generation observed and every replica updated.
pub async fn cluster() -> (Arc<FakeKube>, tokio::task::JoinHandle<()>) {
    let fake = Arc::new(FakeKube::start().await);
    fake.load_list(FIXTURE);
    let controller = {
        let fake = fake.clone();
        tokio::spawn(async move {
            loop {
                if let Some(mut d) = fake.get("Deployment", "prod", "checkout") {
                    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
                    if d["status"]["observedGeneration"].as_i64().unwrap_or(0) < generation {
                        d["status"]["observedGeneration"] = json!(generation);
                        fake.apply(d);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    (fake, controller)
}

/// A Slack incoming-webhook stand-in that accepts everything.
pub async fn slack() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/slack"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// Configures prod/checkout in environment `env` with `mode`, Slack, fast workers.
pub fn configure(c: &mut Config, mode: Mode, slack: &MockServer) {
    c.engine.tick_secs = 1;
    c.kubernetes.enabled = true;
    c.kubernetes.namespaces = vec!["prod".into()];
    c.actions.poll_ms = 20;
    c.notify.slack_webhook_url = Secret::new(format!("{}/slack", slack.uri()));
    c.environments
        .insert("drill".into(), EnvironmentConfig { mode });
    c.targets.push(TargetConfig {
        namespace: "prod".into(),
        name: "checkout".into(),
        region: Some("eu-west-1".into()),
        environment: Some("drill".into()),
        ..TargetConfig::default()
    });
}

async fn spawn(backend: Backend, mode: Mode, slack: &MockServer, fake: &FakeKube) -> TestApp {
    spawn_with(backend, mode, slack, fake, |_| {}).await
}

pub async fn spawn_with(
    backend: Backend,
    mode: Mode,
    slack: &MockServer,
    fake: &FakeKube,
    edit: impl FnOnce(&mut Config),
) -> TestApp {
    let db = crate::support::TestStore::new(backend).await;
    TestApp::spawn_on(
        db,
        |c| {
            configure(c, mode, slack);
            edit(c);
        },
        Some(fake.client()),
    )
    .await
}

/// Waits until a restarted rollwarden has recorded the target's deploys from the fake
/// cluster (bounded: 60 s). On PostgreSQL the watchers run under a database-wide lease
/// that every test's rollwarden on the same database contends for: until this one
/// holds it nothing records its deploys, and an alert is decided without them.
pub async fn rewatching(app: &TestApp) {
    let mut last = Value::Null;
    for _ in 0..3000 {
        let (_, body) = app
            .get_json(&format!("/api/v1/deploys?target={CHECKOUT}"))
            .await;
        if body["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
        {
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no deploys recorded (the watcher lease held?); last: {last}");
}

/// The error rate fires on an app in `approve` mode: the rollback action, once it
/// awaits approval.
pub async fn awaiting_approval(app: &TestApp) -> Value {
    assert_eq!(
        app.post_alertmanager(error_rate("firing")).await.status(),
        200
    );
    wait_for_action(app, "awaiting approval", |a| {
        a["state"] == "awaiting_approval"
    })
    .await
}

/// Polls the target's actions until one satisfies `done` (bounded: 15 s).
pub async fn wait_for_action(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..750 {
        let (_, body) = app
            .get_json(&format!("/api/v1/actions?target={CHECKOUT}"))
            .await;
        if let Some(found) = body["items"]
            .as_array()
            .and_then(|i| i.iter().find(|a| done(a)))
        {
            return found.clone();
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no action {what}; last: {last}");
}

/// The Slack messages received so far.
pub async fn slack_texts(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["text"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn wait_for_slack(server: &MockServer, needle: &str) -> Vec<String> {
    for _ in 0..500 {
        let texts = slack_texts(server).await;
        if texts.iter().any(|t| t.contains(needle)) {
            return texts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no Slack message with {needle:?}: {:?}",
        slack_texts(server).await
    );
}

/// PATCHes of the Deployment that changed it (not server-side dry runs).
pub fn real_patches(fake: &FakeKube) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path == DEPLOYMENT_PATH)
        .filter(|r| r.query_param("dryRun").is_none())
        .map(|r| r.body.unwrap_or(Value::Null))
        .collect()
}

fn revision_2_image(fake: &FakeKube) -> Value {
    fake.get("ReplicaSet", "prod", "checkout-7c67857fd")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .clone()
}

async fn auto_mode_rolls_back_once_verifies_and_announces(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn(backend, Mode::Auto, &slack, &fake).await;
    fake.wait_for_watches(2).await;
    assert_eq!(
        app.post_alertmanager(error_rate("firing")).await.status(),
        200
    );

    let action = wait_for_action(&app, "verifying", |a| a["state"] == "verifying").await;
    assert_eq!(action["kind"], "rollout_undo");
    assert_eq!(action["mode"], "auto");
    assert_eq!(action["params"]["suspect_revision"], "3");
    assert_eq!(action["params"]["kubernetes_revision"], "2");
    assert_eq!(action["result"]["rollout"], "complete");
    assert!(action["executed_at"].is_string());

    // The Deployment was patched exactly once, back to revision 2's template.
    let patches = real_patches(&fake);
    assert_eq!(patches.len(), 1, "{patches:?}");
    let restored = fake.get("Deployment", "prod", "checkout").unwrap();
    assert_eq!(
        restored["spec"]["template"]["spec"]["containers"][0]["image"],
        revision_2_image(&fake)
    );

    // Announced before it started (target, region, reason, start, ETA), then the result.
    let texts = wait_for_slack(&slack, "verifying").await;
    let announce = texts.iter().find(|t| t.contains("Rolling back")).unwrap();
    for needle in [
        "prod/checkout",
        "eu-west-1",
        "Reason:",
        "Started:",
        "ETA:",
        "revision 3 to revision 2",
    ] {
        assert!(
            announce.contains(needle),
            "{needle:?} missing from {announce}"
        );
    }

    // The decision shows the action's timeline (the undo named revision 2's ReplicaSet
    // before its PATCH) and the notifications sent.
    let (_, d) = app
        .get_json(&format!("/api/v1/decisions/{}", action["decision_id"]))
        .await;
    let timeline: Vec<&str> = d["actions"][0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "action.created",
            "action.started",
            "action.patching",
            "action.verifying"
        ]
    );
    assert_eq!(
        d["actions"][0]["timeline"][2]["details"]["replicaset"],
        "checkout-7c67857fd"
    );
    assert!(
        d["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["channel"] == "slack"),
        "{d}"
    );

    // The alert resolves: the next decision is ok, and the rollback is verified.
    assert_eq!(
        app.post_alertmanager(error_rate("resolved")).await.status(),
        200
    );
    wait_for_action(&app, "verified", |a| a["state"] == "verified").await;
    wait_for_slack(&slack, "Service restored").await;
    // Still exactly one patch: the standing rollback decision never acted twice.
    assert_eq!(real_patches(&fake).len(), 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("rollwarden_actions_total{kind=\"rollout_undo\",outcome=\"verified\"} 1"),
        "{metrics}"
    );
}

async fn approve_mode_waits_for_a_person(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn(backend, Mode::Approve, &slack, &fake).await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    let waiting = wait_for_action(&app, "awaiting approval", |a| {
        a["state"] == "awaiting_approval"
    })
    .await;
    let texts = wait_for_slack(&slack, "awaiting approval").await;
    assert!(texts.iter().any(|t| t.contains(&format!(
        "/api/v1/decisions/{}/approve",
        waiting["decision_id"]
    ))));
    // Nothing happens while it waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(real_patches(&fake).is_empty());

    let decision = waiting["decision_id"].as_i64().unwrap();
    let approve = |token: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/decisions/{decision}/approve")))
            .bearer_auth(token)
            .json(&json!({"comment": "checked the dashboards"}))
            .send()
    };
    // A viewer may not approve.
    assert_eq!(
        approve(VIEWER_TOKEN).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let r = approve(OPERATOR_TOKEN).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["actions"][0]["approved_by"], "oncall");
    assert_eq!(
        body["actions"][0]["approval_comment"],
        "checked the dashboards"
    );

    let done = wait_for_action(&app, "verifying", |a| a["state"] == "verifying").await;
    assert_eq!(done["mode"], "approve");
    assert_eq!(real_patches(&fake).len(), 1);
    // Approving again finds nothing waiting.
    let again = approve(OPERATOR_TOKEN).await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "nothing_awaiting_approval");
}

async fn a_rejected_or_expired_approval_does_nothing(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn_with(backend, Mode::Approve, &slack, &fake, |c| {
        c.actions.approval_ttl_secs = 600;
    })
    .await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    let waiting = wait_for_action(&app, "awaiting approval", |a| {
        a["state"] == "awaiting_approval"
    })
    .await;
    let decision = waiting["decision_id"].as_i64().unwrap();

    // Rejected with no body: recorded with the operator's name.
    let r = app
        .http
        .post(app.url(&format!("/api/v1/decisions/{decision}/reject")))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rejected = wait_for_action(&app, "rejected", |a| a["state"] == "rejected").await;
    assert_eq!(rejected["approved_by"], "oncall");

    // Another rollwarden's approval expires: the clock passes the approval window. (The
    // first one stops: on Postgres the watcher lease is database-wide.)
    app.stop().await;
    let app2 = spawn_with(backend, Mode::Approve, &slack, &fake, |c| {
        c.actions.approval_ttl_secs = 600;
    })
    .await;
    rewatching(&app2).await;
    app2.post_alertmanager(error_rate("firing")).await;
    wait_for_action(&app2, "awaiting approval", |a| {
        a["state"] == "awaiting_approval"
    })
    .await;
    app2.clock.advance(chrono::Duration::seconds(601));
    wait_for_action(&app2, "expired", |a| a["state"] == "expired").await;
    wait_for_slack(&slack, "Nobody approved it in time").await;
    assert!(real_patches(&fake).is_empty());
}

async fn recommend_mode_sends_commands_a_person_can_paste(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn(backend, Mode::Recommend, &slack, &fake).await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    let action = wait_for_action(&app, "recommended", |a| a["state"] == "recommended").await;
    assert_eq!(action["mode"], "recommend");
    let texts = wait_for_slack(&slack, "Rollback recommended").await;
    let text = texts
        .iter()
        .find(|t| t.contains("Rollback recommended"))
        .unwrap();
    assert!(
        text.contains("kubectl -n prod rollout undo deployment/checkout --to-revision=2"),
        "{text}"
    );
    assert!(text.contains("kubectl -n prod rollout status deployment/checkout --watch"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(real_patches(&fake).is_empty());
}

async fn dry_run_records_what_it_would_do_and_changes_nothing(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn_with(backend, Mode::Auto, &slack, &fake, |c| {
        c.actions.dry_run = true
    })
    .await;
    fake.wait_for_watches(2).await;
    let before = fake.get("Deployment", "prod", "checkout").unwrap();
    app.post_alertmanager(error_rate("firing")).await;
    let action = wait_for_action(&app, "dry_run", |a| a["state"] == "dry_run").await;
    assert_eq!(
        action["result"]["would_run"],
        "kubectl -n prod rollout undo deployment/checkout --to-revision=2"
    );
    assert!(
        action["executed_at"].is_null(),
        "a dry run is not a rollback: {action}"
    );
    assert!(real_patches(&fake).is_empty());
    let after = fake.get("Deployment", "prod", "checkout").unwrap();
    assert_eq!(before["spec"], after["spec"]);
    wait_for_slack(&slack, "Dry run").await;
}

async fn data_corruption_freezes_deployments_and_escalates(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn(backend, Mode::Auto, &slack, &fake).await;
    fake.wait_for_watches(2).await;
    let corruption = error_rate("firing")
        .replace("HighErrorRate", "OrdersDataCorruption")
        .replace("e1e1", "dc01");
    app.post_alertmanager(corruption).await;
    let action = wait_for_action(&app, "freeze", |a| {
        a["kind"] == "freeze" && a["state"] == "succeeded"
    })
    .await;
    let (_, freezes) = app.get_json("/api/v1/freezes").await;
    let freeze = &freezes["items"][0];
    assert_eq!(freeze["scope"], "*", "M8 stops all deployments: {freezes}");
    assert_eq!(freeze["decision_id"], action["decision_id"]);
    assert_eq!(freeze["created_by"], "rollwarden");
    assert_eq!(action["result"]["freeze_id"], freeze["id"]);
    wait_for_slack(&slack, "Escalation").await;
    // A freeze rolls nothing back by itself.
    assert!(real_patches(&fake).is_empty());
}

async fn a_rollback_that_does_not_restore_service_escalates_once_e1(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = spawn(backend, Mode::Auto, &slack, &fake).await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    wait_for_action(&app, "verifying", |a| a["state"] == "verifying").await;
    // The errors go on; ten minutes later (E1) the rollback has not restored service.
    app.clock.advance(chrono::Duration::seconds(601));
    let escalated = wait_for_action(&app, "escalated", |a| {
        a["kind"] == "rollout_undo" && a["state"] == "escalated"
    })
    .await;
    assert!(escalated["executed_at"].is_string());
    let texts = wait_for_slack(&slack, "E1:").await;
    // Let the engine tick over the escalated decision too: still one E1 message.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let texts_after = slack_texts(&slack).await;
    let e1: Vec<&String> = texts_after.iter().filter(|t| t.contains("E1")).collect();
    assert_eq!(e1.len(), 1, "{texts:?}");
    assert_eq!(
        real_patches(&fake).len(),
        1,
        "no second rollback of the same deploy"
    );
}

on_both_backends!(
    a_rollback_that_does_not_restore_service_escalates_once_e1,
    data_corruption_freezes_deployments_and_escalates,
    auto_mode_rolls_back_once_verifies_and_announces,
    approve_mode_waits_for_a_person,
    a_rejected_or_expired_approval_does_nothing,
    recommend_mode_sends_commands_a_person_can_paste,
    dry_run_records_what_it_would_do_and_changes_nothing,
);

#[tokio::test]
async fn actions_list_validates_its_filters() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (query, field) in [
        ("state=bogus", "state"),
        ("decision=x", "decision"),
        ("limit=0", "limit"),
        ("after=-1", "after"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/actions?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
    let (status, body) = app.get_json("/api/v1/actions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"items": [], "next": null}));
    let r = app
        .http
        .post(app.url("/api/v1/decisions/99/approve"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
