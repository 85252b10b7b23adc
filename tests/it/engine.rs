//! The decision engine through the API: the runbooks' scenarios posted to a running
//! rollwarden yield the runbooks' outcomes, each explained by its evidence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use rollwarden::domain::TargetRef;
use rollwarden::domain::classify::TargetConfig;
use rollwarden::engine::Engine;
use rollwarden::telemetry::Metrics;
use rollwarden::wire::Bounds;
use rollwarden::wire::alertmanager::AlertmanagerPayload;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, VIEWER_TOKEN, WEBHOOK_TOKEN, t0, test_config};

const CHECKOUT: &str = "default/prod/Deployment/checkout";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

/// An Alertmanager notification of one firing alert about prod/checkout.
fn alert(
    name: &str,
    fingerprint: &str,
    extra: Value,
    annotations: Value,
    starts: DateTime<Utc>,
) -> String {
    let mut labels = json!({"alertname": name, "namespace": "prod", "service": "checkout", "severity": "critical"});
    for (k, v) in extra.as_object().unwrap() {
        labels[k] = v.clone();
    }
    json!({
        "receiver": "rollwarden", "status": "firing",
        "alerts": [{"status": "firing", "labels": labels, "annotations": annotations,
                    "startsAt": ts(starts), "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint}],
        "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\", fp=\"{fingerprint}\"}}"), "truncatedAlerts": 0
    })
    .to_string()
}

/// One notification of `n` firing HighErrorRate alerts at 12.4 % since `starts`: alert
/// `i` has the fingerprint `{fingerprint}{i}` and the label `label` = `{value}{i}`.
fn error_rates(
    fingerprint: &str,
    n: usize,
    label: &str,
    value: &str,
    starts: DateTime<Utc>,
) -> String {
    let mut body: Value = serde_json::from_str(&alert(
        "HighErrorRate",
        &format!("{fingerprint}0"),
        json!({label: format!("{value}0")}),
        json!({"value": "0.124"}),
        starts,
    ))
    .unwrap();
    let first = body["alerts"][0].clone();
    for i in 1..n {
        let mut more = first.clone();
        more["fingerprint"] = json!(format!("{fingerprint}{i}"));
        more["labels"][label] = json!(format!("{value}{i}"));
        body["alerts"].as_array_mut().unwrap().push(more);
    }
    body.to_string()
}

/// An Alertmanager notification of the database alert (no target: a dependency of
/// everything in `prod`), firing since six minutes before t0, or resolved a minute ago.
fn database_down(fingerprint: &str, status: &str) -> String {
    let ends = if status == "firing" {
        "0001-01-01T00:00:00Z".to_string()
    } else {
        ts(t0() - minutes(1))
    };
    json!({
        "receiver": "rollwarden", "status": status,
        "alerts": [{"status": status, "labels": {"alertname": "PostgresqlDown", "namespace": "prod", "instance": "db-0"},
                    "annotations": {}, "startsAt": ts(t0() - minutes(6)), "endsAt": ends,
                    "generatorURL": "", "fingerprint": fingerprint}],
        "version": "4", "groupKey": "{}:{alertname=\"PostgresqlDown\"}", "truncatedAlerts": 0
    })
    .to_string()
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Two pipeline deploys: 2231 (good, 40 min ago) and 2232 (10 min ago).
async fn two_deploys(app: &TestApp) {
    for (rev, image, at) in [
        ("2231", "1.5.0", t0() - minutes(40)),
        ("2232", "1.6.0", t0() - minutes(10)),
    ] {
        let r = post(app, "/api/v1/deploys", json!({
            "namespace": "prod", "name": "checkout", "revision": rev, "status": "succeeded",
            "image": format!("registry.example.com/shop/checkout:{image}"), "version": image,
            "started_at": ts(at), "finished_at": ts(at + minutes(2)), "commit": format!("c{rev}"),
            "link": format!("https://ci.example.com/runs/{rev}")
        })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

/// Polls the target's decisions until the newest has `verdict` (bounded: 10 s).
async fn wait_for_verdict(app: &TestApp, verdict: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let (_, body) = app
            .get_json(&format!("/api/v1/decisions?target={CHECKOUT}&limit=1"))
            .await;
        if let Some(d) = body["items"].as_array().and_then(|i| i.first()) {
            if d["verdict"] == verdict {
                return d.clone();
            }
            last = d.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {verdict} decision; last: {last}");
}

/// Polls the target's decisions until the newest holds for exactly `codes` (10 s).
async fn wait_for_holds(app: &TestApp, codes: &[&str]) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let (_, body) = app
            .get_json(&format!("/api/v1/decisions?target={CHECKOUT}&limit=1"))
            .await;
        if let Some(d) = body["items"].as_array().and_then(|i| i.first()) {
            if d["verdict"] == "hold" && holds(d) == codes {
                return d.clone();
            }
            last = d.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no hold for {codes:?}; last: {last}");
}

fn fired(decision: &Value) -> Vec<String> {
    decision["decision"]["fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect()
}

fn holds(decision: &Value) -> Vec<String> {
    decision["decision"]["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["code"].as_str().unwrap().to_string())
        .collect()
}

async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| c.engine.tick_secs = 1).await
}

async fn an_error_rate_over_five_percent_after_a_deploy_rolls_back_with_evidence(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    // Four minutes: G2 (above the SLO threshold for more than 5 minutes) not yet.
    let r = app
        .post_alertmanager(alert(
            "HighErrorRate",
            "aa01",
            json!({}),
            json!({"value": "0.124", "summary": "5xx"}),
            t0() - minutes(4),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = wait_for_verdict(&app, "rollback").await;
    assert_eq!(fired(&d), ["M1", "M2"]);
    let m2 = &d["decision"]["fired"][1];
    assert_eq!(
        (m2["threshold"].as_f64(), m2["observed"].as_f64()),
        (Some(0.05), Some(0.124))
    );
    assert_eq!(m2["fingerprints"], json!(["aa01"]));
    assert_eq!(d["decision"]["suspect"]["revision"], "2232");
    assert_eq!(d["decision"]["rollback_to"]["revision"], "2231");
    let id = d["id"].as_i64().unwrap();

    let (status, evidence) = app
        .get_json(&format!("/api/v1/decisions/{id}/evidence"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = evidence.to_string();
    for needle in [
        "M2",
        "aa01",
        "1.6.0",
        "1.5.0",
        "https://ci.example.com/runs/2232",
    ] {
        assert!(text.contains(needle), "evidence lacks {needle}: {text}");
    }
    let report = app
        .http
        .get(app.url(&format!("/api/v1/decisions/{id}/report")))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), StatusCode::OK);
    assert!(
        report.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let report = report.text().await.unwrap();
    for needle in [
        "Incident ID",
        "INC-20260822-",
        "Timeline",
        "Root Cause",
        "Follow-up",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    // Counted once recorded, a moment after the API shows it (bounded: 10 s).
    let mut counted = Vec::new();
    for _ in 0..500 {
        let metrics = app.metrics().await;
        counted = metrics
            .lines()
            .filter(|l| l.starts_with("rollwarden_decisions_total"))
            .map(str::to_string)
            .collect();
        if counted
            .iter()
            .any(|l| l == "rollwarden_decisions_total{verdict=\"rollback\"} 1")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("one rollback not counted: {counted:?}");
}

async fn a_regression_that_predates_the_latest_deploy_is_held_h1(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    // Errors began 20 minutes ago, before deploy 2232 (10 minutes ago).
    app.post_alertmanager(alert(
        "HighErrorRate",
        "aa02",
        json!({}),
        json!({"value": "0.2"}),
        t0() - minutes(20),
    ))
    .await;
    let d = wait_for_verdict(&app, "hold").await;
    assert!(holds(&d).contains(&"H1".to_string()), "{d}");
    assert!(
        fired(&d).contains(&"M2".to_string()),
        "the rule still fired: {d}"
    );
}

async fn a_degraded_database_holds_the_rollback_h2(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    assert_eq!(
        app.post_alertmanager(database_down("db01", "firing"))
            .await
            .status(),
        StatusCode::OK
    );
    app.post_alertmanager(alert(
        "HighErrorRate",
        "aa03",
        json!({}),
        json!({"value": "0.3"}),
        t0() - minutes(5),
    ))
    .await;
    let d = wait_for_verdict(&app, "hold").await;
    assert_eq!(holds(&d), ["H2"], "{d}");
    assert!(d["reason"].as_str().unwrap().contains("database"), "{d}");
}

/// The engine keeps its view of the window between ticks and merges each ingest's
/// alerts into it: with no tick to reload it, a dependency alert naming no target still
/// holds the next evaluation, and its resolution is seen by the next: the errors began
/// during the outage, so they stay the outage's for the grace (10 min) after it, and
/// only then is the deploy blamed.
async fn each_ingest_reaches_the_engine_between_ticks(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.engine.tick_secs = 3600).await;
    two_deploys(&app).await;
    // The deploys' own evaluation first: posted at once, the alerts below can reach the
    // engine in the same batch as the deploys, and then there is no `ok` to see.
    wait_for_verdict(&app, "ok").await;
    let db = |status: &str| database_down("db01", status);
    assert_eq!(
        app.post_alertmanager(db("firing")).await.status(),
        StatusCode::OK
    );
    let errors = |fingerprint: &str| {
        alert(
            "HighErrorRate",
            fingerprint,
            json!({"pod": fingerprint}),
            json!({"value": "0.3"}),
            t0() - minutes(5),
        )
    };
    app.post_alertmanager(errors("aa07")).await;
    let d = wait_for_verdict(&app, "hold").await;
    assert_eq!(holds(&d), ["H2"], "{d}");

    // The database recovers (this touches no target), then more errors arrive.
    assert_eq!(
        app.post_alertmanager(db("resolved")).await.status(),
        StatusCode::OK
    );
    app.post_alertmanager(errors("aa08")).await;
    wait_for_holds(&app, &["dependency_recovered"]).await;
    // Ten minutes after the recovery, the errors go on: the deploy is blamed.
    app.clock.advance(minutes(9));
    app.post_alertmanager(errors("aa09")).await;
    let d = wait_for_verdict(&app, "rollback").await;
    assert!(fired(&d).contains(&"M2".to_string()), "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("the dependency `database` was degraded first"),
        "{d}"
    );
    // Never a rollback while the database was down (the `ok` is the deploys' own
    // evaluation, before any alert).
    let (_, all) = app
        .get_json(&format!("/api/v1/decisions?target={CHECKOUT}&limit=100"))
        .await;
    let verdicts: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|d| d["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["ok", "hold", "hold", "rollback"]);
}

/// Issue 20: Alertmanager delivers the database's resolve before the services' own (on
/// independent group timers). A regression that began during the outage is held as the
/// outage's until it outlasts the grace after the recovery, on the ticks.
async fn a_regression_that_began_in_an_outage_is_held_for_the_grace_after_it(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    app.post_alertmanager(database_down("db03", "firing")).await;
    app.post_alertmanager(alert(
        "HighErrorRate",
        "aa10",
        json!({}),
        json!({"value": "0.08"}),
        t0() - minutes(5),
    ))
    .await;
    wait_for_holds(&app, &["H2"]).await;
    // Recovered a minute ago (at t0 - 1 min).
    app.post_alertmanager(database_down("db03", "resolved"))
        .await;
    let d = wait_for_holds(&app, &["dependency_recovered"]).await;
    assert!(
        d["reason"].as_str().unwrap().contains("until 2026-08-22"),
        "{d}"
    );
    app.clock.advance(minutes(8));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for_holds(&app, &["dependency_recovered"]).await;
    app.clock.advance(minutes(1));
    let d = wait_for_verdict(&app, "rollback").await;
    assert_eq!(d["decision"]["suspect"]["revision"], "2232");
}

/// Issue 20: blame needs "immediately after": errors that begin long after the last
/// deploy are investigated, naming the deploy as a candidate.
async fn a_regression_long_after_the_deploy_is_investigated(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    // The deploy finished at t0 - 8 min; the errors begin 20 minutes later.
    app.clock.advance(minutes(13));
    app.post_alertmanager(alert(
        "HighErrorRate",
        "aa11",
        json!({}),
        json!({"value": "0.08"}),
        t0() + minutes(12),
    ))
    .await;
    let d = wait_for_verdict(&app, "investigate").await;
    assert_eq!(d["decision"]["suspect"]["revision"], "2232");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("a candidate, not to blame"),
        "{d}"
    );
}

/// Another replica's ingest reaches this one's window only at the next tick. A
/// rollback is never decided on the partial window: it is confirmed on a reload, which
/// finds the other replica's database alert and holds.
async fn another_replicas_alert_is_seen_before_a_rollback(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.engine.tick_secs = 3600).await;
    two_deploys(&app).await;
    // Written by another replica: straight into the shared store, no queue message here.
    let db_down = database_down("db02", "firing");
    let notification =
        AlertmanagerPayload::parse(db_down.as_bytes(), &Bounds::default(), t0()).unwrap();
    app.db
        .store
        .record_notifications(&[notification])
        .await
        .unwrap();

    app.post_alertmanager(alert(
        "HighErrorRate",
        "aa09",
        json!({}),
        json!({"value": "0.3"}),
        t0() - minutes(5),
    ))
    .await;
    let d = wait_for_verdict(&app, "hold").await;
    assert_eq!(holds(&d), ["H2"], "{d}");
    let (_, all) = app
        .get_json(&format!("/api/v1/decisions?target={CHECKOUT}&limit=100"))
        .await;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["verdict"] != "rollback"),
        "{all}"
    );
}

async fn posted_data_corruption_freezes_m8(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    let r = post(&app, "/api/v1/signals", json!({
        "kind": "data_corruption", "target": {"namespace": "prod", "name": "checkout"},
        "id": "support-4711", "summary": "orders written twice", "started_at": ts(t0() - minutes(1))
    }))
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let d = wait_for_verdict(&app, "freeze").await;
    assert!(fired(&d).contains(&"M8".to_string()), "{d}");
    // The same signal again changes nothing.
    let r = post(&app, "/api/v1/signals", json!({
        "kind": "data_corruption", "target": {"namespace": "prod", "name": "checkout"},
        "id": "support-4711", "summary": "orders written twice", "started_at": ts(t0() - minutes(1))
    }))
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn failing_health_checks_roll_back_only_after_three_minutes_g1(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    // Health checks fail from now on; G1 needs them failing for more than 3 minutes.
    app.post_alertmanager(alert(
        "MaestroServiceDown",
        "hc01",
        json!({}),
        json!({}),
        t0(),
    ))
    .await;
    // Until then G1 is pending: the target is watched, never `ok`.
    let d = wait_for_verdict(&app, "monitor").await;
    assert!(fired(&d).is_empty(), "{d}");
    assert_eq!(d["decision"]["pending"][0]["rule_id"], "G1", "{d}");
    // The tick evaluates again as time passes.
    app.clock.advance(minutes(3) + chrono::Duration::seconds(1));
    let d = wait_for_verdict(&app, "rollback").await;
    assert_eq!(fired(&d), ["G1"]);
}

async fn an_unchanged_situation_writes_no_new_decision(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    let body = alert(
        "HighErrorRate",
        "aa04",
        json!({}),
        json!({"value": "0.124"}),
        t0() - minutes(5),
    );
    app.post_alertmanager(body.clone()).await;
    wait_for_verdict(&app, "rollback").await;
    // Re-deliveries and several ticks later, still one rollback decision.
    app.post_alertmanager(body).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, all) = app
        .get_json(&format!("/api/v1/decisions?target={CHECKOUT}"))
        .await;
    let verdicts: Vec<_> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        verdicts.iter().filter(|v| *v == "rollback").count(),
        1,
        "{verdicts:?}"
    );
}

async fn customer_reports_investigate_then_roll_back_m5_m6(backend: Backend) {
    let app = spawn(backend).await;
    two_deploys(&app).await;
    let report = |count: u64| {
        json!({"kind": "customer_reports", "target": {"namespace": "prod", "name": "checkout"},
               "id": "support-queue", "count": count, "started_at": ts(t0() - minutes(3))})
    };
    assert_eq!(
        post(&app, "/api/v1/signals", report(6)).await.status(),
        StatusCode::CREATED
    );
    let d = wait_for_verdict(&app, "investigate").await;
    assert_eq!(fired(&d), ["M5"]);
    // The count grows past 20 in the window: the same signal, updated.
    assert_eq!(
        post(&app, "/api/v1/signals", report(21)).await.status(),
        StatusCode::OK
    );
    let d = wait_for_verdict(&app, "rollback").await;
    assert_eq!(fired(&d), ["M5", "M6"]);
}

/// The value of the metric sample `name` (with its labels) on `/metrics`.
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// An alert whose resolve never arrived: Alertmanager stops re-sending it, and after
/// `engine.alert_stale_secs` it no longer counts, though it stays listed.
async fn an_alert_whose_resolve_never_came_stops_counting_once_stale(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.engine.tick_secs = 1;
        c.engine.alert_stale_secs = 3600;
    })
    .await;
    two_deploys(&app).await;
    app.post_alertmanager(alert(
        "HighErrorRate",
        "st01",
        json!({}),
        json!({"value": "0.124"}),
        t0() - minutes(5),
    ))
    .await;
    wait_for_verdict(&app, "rollback").await;
    let (_, listed) = app.get_json("/api/v1/alerts").await;
    assert_eq!(listed["items"][0]["stale"], false, "{listed}");
    // An hour with no re-delivery (and no resolve): stale at the next tick.
    app.clock.advance(chrono::Duration::seconds(3601));
    let d = wait_for_verdict(&app, "ok").await;
    assert!(fired(&d).is_empty(), "{d}");
    let (_, listed) = app.get_json("/api/v1/alerts").await;
    assert_eq!(listed["items"][0]["fingerprint"], "st01", "{listed}");
    assert_eq!(listed["items"][0]["status"], "firing", "{listed}");
    assert_eq!(listed["items"][0]["stale"], true, "{listed}");
    assert_eq!(
        metric(&app, "rollwarden_engine_alerts_stale").await,
        Some(1.0)
    );
}

/// A flood of distinct alerts about one target: the engine holds the newest
/// `max_alerts_per_target`, counts the rest, and the decision says so.
async fn a_flood_beyond_the_cap_is_bounded_counted_and_named_in_the_decision(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.engine.tick_secs = 1;
        c.engine.max_alerts_per_target = 3;
        c.engine.max_targets = 1;
    })
    .await;
    two_deploys(&app).await;
    // Five distinct firing alerts about checkout in one notification, and an older
    // one about another service, which max_targets = 1 leaves out.
    let body = error_rates("fl0", 5, "pod", "checkout-", t0() - minutes(5));
    app.post_alertmanager(alert(
        "HighErrorRate",
        "other",
        json!({"service": "payments"}),
        json!({"value": "0.3"}),
        t0() - minutes(30),
    ))
    .await;
    app.post_alertmanager(body).await;
    let mut decision = wait_for_verdict(&app, "rollback").await;
    for _ in 0..500 {
        if decision["decision"]["not_considered"]["alerts"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        decision = wait_for_verdict(&app, "rollback").await;
    }
    assert_eq!(
        decision["decision"]["not_considered"],
        json!({"alerts": 2, "reason": "max_alerts_per_target"}),
        "{decision}"
    );
    let id = decision["id"].as_i64().unwrap();
    let (_, evidence) = app
        .get_json(&format!("/api/v1/decisions/{id}/evidence"))
        .await;
    assert_eq!(evidence["not_considered"]["alerts"], 2, "{evidence}");
    // Counted as the ingest's batch is merged: 2 over the per-target cap, 1 over max_targets.
    let mut dropped = (None, None);
    for _ in 0..300 {
        dropped = (
            metric(
                &app,
                "rollwarden_engine_alerts_dropped{reason=\"max_alerts_per_target\"}",
            )
            .await,
            metric(
                &app,
                "rollwarden_engine_alerts_dropped{reason=\"max_targets\"}",
            )
            .await,
        );
        if dropped == (Some(2.0), Some(1.0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dropped, (Some(2.0), Some(1.0)));
    assert_eq!(
        metric(&app, "rollwarden_engine_window_alerts").await,
        Some(3.0)
    );
    // The target left out is not evaluated: not decided `ok` without its alerts.
    let (_, payments) = app
        .get_json("/api/v1/decisions?target=default/prod/Deployment/payments&limit=1")
        .await;
    assert_ne!(payments["items"][0]["verdict"], "ok", "{payments}");
}

/// The canary reads' per-target snapshot decides exactly as the full window does, for
/// every target of a mixed fleet: one over the per-target cap, one held by a dependency,
/// a configured target mapped by its matchers, a resolved alert, a posted signal, alerts
/// another replica wrote unmapped, an ignored alert, and a target with no alerts.
async fn the_per_target_read_decides_as_the_full_window(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.engine.enabled = false;
        c.engine.max_alerts_per_target = 3;
        c.targets.push(TargetConfig {
            namespace: "prod".into(),
            name: "ledger".into(),
            matchers: [("team".to_string(), "ledger".to_string())].into(),
            ..TargetConfig::default()
        });
    })
    .await;
    two_deploys(&app).await;
    // checkout: five alerts, two over the cap.
    let body = error_rates("eq0", 5, "pod", "checkout-", t0() - minutes(5));
    app.post_alertmanager(body).await;
    for (fingerprint, labels, annotations) in [
        (
            "eq10",
            json!({"service": "payments"}),
            json!({"value": "0.3"}),
        ),
        (
            "eq11",
            json!({"service": "cart", "namespace": "shop"}),
            json!({"value": "0.2"}),
        ),
        (
            "eq12",
            json!({"service": "x", "team": "ledger"}),
            json!({"value": "0.4"}),
        ),
        (
            "eq13",
            json!({"alertname": "Watchdog", "service": "checkout"}),
            json!({}),
        ),
    ] {
        app.post_alertmanager(alert(
            "HighErrorRate",
            fingerprint,
            labels,
            annotations,
            t0() - minutes(4),
        ))
        .await;
    }
    // Resolved a minute ago: still in the window.
    let mut resolved: Value = serde_json::from_str(&alert(
        "HighErrorRate",
        "eq20",
        json!({"service": "cart", "namespace": "shop"}),
        json!({"value": "0.5"}),
        t0() - minutes(20),
    ))
    .unwrap();
    resolved["status"] = json!("resolved");
    resolved["alerts"][0]["status"] = json!("resolved");
    resolved["alerts"][0]["endsAt"] = json!(ts(t0() - minutes(1)));
    app.post_alertmanager(resolved.to_string()).await;
    app.post_alertmanager(database_down("eq30", "firing")).await;
    let report = json!({"kind": "customer_reports", "target": {"namespace": "prod", "name": "payments"},
                        "id": "support-queue", "count": 25, "started_at": ts(t0() - minutes(3))});
    assert!(
        post(&app, "/api/v1/signals", report)
            .await
            .status()
            .is_success()
    );
    // Written by another replica (or before the target index existed): unmapped.
    for raw in [
        alert(
            "HighErrorRate",
            "eq40",
            json!({"pod": "checkout-9"}),
            json!({"value": "0.9"}),
            t0() - minutes(2),
        ),
        alert(
            "HighErrorRate",
            "eq41",
            json!({"service": "search"}),
            json!({"value": "0.9"}),
            t0() - minutes(2),
        ),
        database_down("eq42", "firing"),
    ] {
        let notification =
            AlertmanagerPayload::parse(raw.as_bytes(), &Bounds::default(), t0()).unwrap();
        app.store()
            .record_notifications(&[notification])
            .await
            .unwrap();
    }

    let mut config = test_config();
    config.engine.max_alerts_per_target = 3;
    config.targets.push(TargetConfig {
        namespace: "prod".into(),
        name: "ledger".into(),
        matchers: [("team".to_string(), "ledger".to_string())].into(),
        ..TargetConfig::default()
    });
    let engine = Engine {
        store: app.store().clone(),
        classifier: Arc::new(config.classifier().unwrap()),
        policy: Arc::new(config.policy.clone()),
        clock: app.clock.clone(),
        metrics: Arc::new(Metrics::new()),
        planner: None,
        limits: config.engine.limits(),
    };
    let keys = [
        CHECKOUT,
        "default/prod/Deployment/payments",
        "default/shop/Deployment/cart",
        "default/prod/Deployment/ledger",
        "default/prod/Deployment/search",
        "default/prod/Deployment/quiet",
    ];
    let compare = async |when: &str| {
        let full = engine.snapshot().await.unwrap();
        let mut decisions = Vec::new();
        for key in keys {
            let key = TargetRef::parse(key).unwrap();
            let target = engine.target(&key);
            let whole = engine.assess(&target, &full).await.unwrap();
            let own = engine.snapshot_for(&key).await.unwrap();
            let one = engine.assess(&target, &own).await.unwrap();
            assert_eq!(
                serde_json::to_value(&one).unwrap(),
                serde_json::to_value(&whole).unwrap(),
                "{when}: {key}"
            );
            decisions.push(whole);
        }
        decisions
    };
    let decisions = compare("as ingested").await;
    // The fleet is mixed: the cap, a dependency hold, a target with no alerts.
    assert_eq!(
        decisions[0].not_considered.as_ref().map(|n| n.alerts),
        Some(3)
    );
    assert!(
        decisions[0].holds.iter().any(|h| h.code() == "H2"),
        "{:?}",
        decisions[0]
    );
    assert!(!decisions[2].fired.is_empty(), "{:?}", decisions[2]);
    assert!(!decisions[3].fired.is_empty(), "{:?}", decisions[3]);
    assert!(decisions[5].fired.is_empty() && decisions[5].holds.is_empty());
    // Mapped at the next start, and again after the classifier changed.
    assert_eq!(engine.map_alert_targets().await.unwrap(), 3);
    compare("mapped").await;
    app.store()
        .reset_alert_targets("another config")
        .await
        .unwrap();
    assert!(engine.map_alert_targets().await.unwrap() >= 12);
    compare("mapped again").await;
}

/// One notification about 250 services: its batch reads the targets' deploys, rollback
/// history and standing decisions ahead, 100 targets at a time (engine::READ_AHEAD). Each
/// target decides on its own inputs, on both sides of every run's edge: the services with
/// a deploy ten minutes ago roll back to blame their own deploy, the others do not.
async fn a_batch_over_many_targets_decides_each_on_its_own_inputs(backend: Backend) {
    let app = spawn(backend).await;
    let deployed = [0usize, 99, 100, 101, 199, 200, 249];
    for i in deployed {
        for (rev, at) in [("1", t0() - minutes(40)), ("2", t0() - minutes(10))] {
            let r = post(&app, "/api/v1/deploys", json!({
                "namespace": "prod", "name": format!("svc-{i}"), "revision": format!("{i}-{rev}"),
                "status": "succeeded", "image": format!("registry.example.com/svc-{i}:{rev}"),
                "started_at": ts(at), "finished_at": ts(at + minutes(2))
            })).await;
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    }
    let body = error_rates("many", 250, "service", "svc-", t0() - minutes(4));
    let r = app.post_alertmanager(body).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let mut standing: BTreeMap<String, Value> = BTreeMap::new();
    for _ in 0..500 {
        let mut url = "/api/v1/decisions?limit=100".to_string();
        standing.clear();
        loop {
            let (_, page) = app.get_json(&url).await;
            for d in page["items"].as_array().unwrap() {
                // Newest first: the first seen is the standing one.
                standing
                    .entry(d["target_key"].as_str().unwrap().to_string())
                    .or_insert_with(|| d.clone());
            }
            match page["next"].as_str() {
                Some(next) => url = format!("/api/v1/decisions?limit=100&after={next}"),
                None => break,
            }
        }
        let rolled_back = |i: &usize| {
            standing
                .get(&format!("default/prod/Deployment/svc-{i}"))
                .is_some_and(|d| d["verdict"] == "rollback")
        };
        if standing.len() == 250 && deployed.iter().all(rolled_back) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(standing.len(), 250, "every service decided");
    for i in 0..250 {
        let d = &standing[&format!("default/prod/Deployment/svc-{i}")];
        if deployed.contains(&i) {
            assert_eq!(d["verdict"], "rollback", "svc-{i}: {d}");
            assert_eq!(
                d["decision"]["suspect"]["revision"],
                format!("{i}-2"),
                "svc-{i} blames its own deploy"
            );
        } else {
            assert_ne!(d["verdict"], "rollback", "svc-{i} has no deploy: {d}");
        }
    }
}

on_both_backends!(
    a_batch_over_many_targets_decides_each_on_its_own_inputs,
    the_per_target_read_decides_as_the_full_window,
    an_alert_whose_resolve_never_came_stops_counting_once_stale,
    a_flood_beyond_the_cap_is_bounded_counted_and_named_in_the_decision,
    an_error_rate_over_five_percent_after_a_deploy_rolls_back_with_evidence,
    customer_reports_investigate_then_roll_back_m5_m6,
    a_regression_that_predates_the_latest_deploy_is_held_h1,
    a_degraded_database_holds_the_rollback_h2,
    each_ingest_reaches_the_engine_between_ticks,
    a_regression_that_began_in_an_outage_is_held_for_the_grace_after_it,
    a_regression_long_after_the_deploy_is_investigated,
    another_replicas_alert_is_seen_before_a_rollback,
    posted_data_corruption_freezes_m8,
    failing_health_checks_roll_back_only_after_three_minutes_g1,
    an_unchanged_situation_writes_no_new_decision,
);

#[tokio::test]
async fn decisions_api_rejects_nonsense_and_unknown_ids() {
    let app = spawn(Backend::Sqlite).await;
    let (status, body) = app.get_json("/api/v1/decisions?verdict=maybe").await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("verdict"))
    );
    let (status, _) = app.get_json("/api/v1/decisions/99999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get_json("/api/v1/decisions/abc/report").await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );
}
