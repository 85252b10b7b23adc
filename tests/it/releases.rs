//! Multi-region releases: four regions of one service, each rolled back by a command
//! that records its argv. A version bad in one region rolls that region back alone,
//! takes it out of federation routing, stops the wave and checks the others; bad in a
//! second, every region on it rolls back in parallel, announced once. Two replicas and
//! duplicate deliveries still make one release decision and one action per region, and
//! a region whose executor fails is escalated on its own.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::MockServer;

use rollwarden::config::{CommandConfig, Config, Secret};
use rollwarden::domain::Mode;
use rollwarden::domain::classify::{EnvironmentConfig, MatcherConfig, TargetConfig};

use crate::actions::{slack, slack_texts};
use crate::on_both_backends;
use crate::support::{Backend, OPERATOR_TOKEN, TestApp, TestStore, WEBHOOK_TOKEN, t0};

const REGIONS: [&str; 4] = ["ap-south-1", "eu-west-1", "us-east-1", "us-west-2"];
const RELEASE: &str = "checkout@1.6.0";

fn key(region: &str) -> String {
    format!("{region}/shop/Deployment/checkout")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Stub programs that append their name and arguments, one call per line, to
/// `argv.log`; `rollback` fails for `fail_region`.
struct Stubs {
    dir: tempfile::TempDir,
}

impl Stubs {
    fn new(fail_region: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("argv.log");
        let fail = fail_region.map_or_else(String::new, |r| {
            format!("[ \"$1\" = '{r}' ] && {{ echo 'cannot reach {r}' >&2; exit 3; }}\n")
        });
        for (name, extra) in [("rollback", fail.as_str()), ("federation", "")] {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"${{0##*/}} $*\" >> '{}'\n{extra}exit 0\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir }
    }

    fn program(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn calls(&self) -> Vec<String> {
        let mut calls: Vec<String> = std::fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        calls.sort();
        calls
    }

    /// Waits (bounded: 15 s) until `call` was made.
    async fn wait_for(&self, call: &str) -> Vec<String> {
        for _ in 0..750 {
            let calls = self.calls();
            if calls.iter().any(|c| c == call) {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no call {call:?}; calls: {:?}", self.calls());
    }
}

/// The four regions of checkout, in `auto` mode, each rolled back by `command:rollback`
/// with its region and known-good revision; federation exclusion and re-inclusion by
/// `command:fed-exclude` and `command:fed-include`.
fn configure(c: &mut Config, stubs: &Stubs, slack: &MockServer) {
    c.engine.tick_secs = 1;
    c.actions.poll_ms = 20;
    c.notify.slack_webhook_url = Secret::new(format!("{}/slack", slack.uri()));
    c.environments
        .insert("prod".into(), EnvironmentConfig { mode: Mode::Auto });
    let command = |name: &str, argv: Vec<String>| CommandConfig {
        name: name.into(),
        argv,
        timeout_secs: 10,
    };
    c.actions.commands = vec![
        command(
            "rollback",
            vec![
                stubs.program("rollback"),
                "{{ region }}".into(),
                "{{ rollback_revision }}".into(),
            ],
        ),
        command(
            "fed-exclude",
            vec![
                stubs.program("federation"),
                "exclude".into(),
                "{{ region }}".into(),
            ],
        ),
        command(
            "fed-include",
            vec![
                stubs.program("federation"),
                "include".into(),
                "{{ region }}".into(),
            ],
        ),
    ];
    c.policy.releases.federation_exclude = Some("command:fed-exclude".into());
    c.policy.releases.federation_include = Some("command:fed-include".into());
    for region in REGIONS {
        c.targets.push(TargetConfig {
            cluster: Some(region.into()),
            namespace: "shop".into(),
            name: "checkout".into(),
            region: Some(region.into()),
            environment: Some("prod".into()),
            actions: vec!["command:rollback".into()],
            matchers: MatcherConfig::List(vec![
                "service=checkout".into(),
                format!("region={region}"),
            ]),
            ..TargetConfig::default()
        });
    }
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn deploy(
    app: &TestApp,
    region: &str,
    revision: &str,
    version: &str,
    started: DateTime<Utc>,
) {
    let body = json!({
        "cluster": region, "namespace": "shop", "name": "checkout", "revision": revision,
        "status": "succeeded", "region": region, "version": version,
        "image": format!("registry.example.com/shop/checkout:{version}"),
        "started_at": ts(started),
    });
    let r = post(app, "/api/v1/deploys", WEBHOOK_TOKEN, body).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// 1.5.0 (CI run 100) everywhere three hours ago; 1.6.0 (run 101) ten minutes ago in
/// every region but us-west-2, which the wave has not reached.
async fn ship(app: &TestApp) {
    for region in REGIONS {
        deploy(
            app,
            region,
            "100",
            "1.5.0",
            t0() - chrono::Duration::hours(3),
        )
        .await;
    }
    for region in &REGIONS[..3] {
        deploy(
            app,
            region,
            "101",
            "1.6.0",
            t0() - chrono::Duration::minutes(10),
        )
        .await;
    }
}

/// Alertmanager's notification of checkout's error rate at 12.4 % (M2) in `region`.
fn error_rate(region: &str, status: &str) -> Value {
    let ends = if status == "resolved" {
        ts(t0())
    } else {
        "0001-01-01T00:00:00Z".into()
    };
    json!({
        "receiver": "rollwarden", "status": status,
        "alerts": [{"status": status,
            "labels": {"alertname": "HighErrorRate", "service": "checkout", "region": region,
                "severity": "critical"},
            "annotations": {"value": "0.124"},
            "startsAt": ts(t0() - chrono::Duration::minutes(4)), "endsAt": ends,
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": format!("{:016x}", region.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))))}],
        "groupLabels": {"alertname": "HighErrorRate"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{region=\"{region}\"}}"), "truncatedAlerts": 0
    })
}

async fn alert(app: &TestApp, region: &str, status: &str) {
    let r = post(
        app,
        "/webhooks/alertmanager",
        WEBHOOK_TOKEN,
        error_rate(region, status),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// The region's actions (newest first).
async fn actions(app: &TestApp, region: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/api/v1/actions?target={}", key(region)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Polls until the region has an action satisfying `done` (bounded: 15 s).
async fn wait_for_action(
    app: &TestApp,
    region: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Vec::new();
    for _ in 0..750 {
        last = actions(app, region).await;
        if let Some(found) = last.iter().find(|a| done(a)) {
            return found.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no action of {region} {what}; last: {last:?}");
}

/// Polls the release until `done` (bounded: 15 s).
async fn wait_for_release(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..750 {
        let (status, body) = app.get_json(&format!("/api/v1/releases/{RELEASE}")).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("release not {what}; last: {last}");
}

fn regions_where(release: &Value, field: &str) -> Vec<String> {
    release["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[field].as_bool() == Some(true) || (r[field].is_string()))
        .map(|r| r["region"].as_str().unwrap().to_string())
        .collect()
}

/// Two replicas of the configured app on one PostgreSQL database.
async fn two_replicas(stubs: &Stubs, slack: &MockServer) -> (TestApp, TestApp) {
    let db = TestStore::new(Backend::Postgres).await;
    let second_pool = db.reopen().await;
    let first = TestApp::spawn_on(db, |c| configure(c, stubs, slack), None).await;
    let mut other = TestStore::new(Backend::Postgres).await;
    other.store = second_pool;
    let second = TestApp::spawn_on(other, |c| configure(c, stubs, slack), None).await;
    (first, second)
}

async fn gate(app: &TestApp, region: &str) -> (StatusCode, Value) {
    app.get_json(&format!("/api/v1/releases/{RELEASE}/gate?region={region}"))
        .await
}

async fn one_region_then_every_region(backend: Backend) {
    let stubs = Stubs::new(None);
    let slack = slack().await;
    let app = TestApp::spawn_with(backend, |c| configure(c, &stubs, &slack)).await;
    ship(&app).await;

    // Shipped to three regions, healthy: the release lists them, the wave may go on.
    let (status, list) = app.get_json("/api/v1/releases?service=checkout").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [RELEASE, "checkout@1.5.0"]);
    assert_eq!(list["items"][0]["scope"], "healthy");
    assert_eq!(
        regions_where(&list["items"][0], "received"),
        ["ap-south-1", "eu-west-1", "us-east-1"]
    );
    assert_eq!(gate(&app, "us-west-2").await.0, StatusCode::OK);

    // eu-west-1 regresses: it alone rolls back, to its own known-good run.
    alert(&app, "eu-west-1", "firing").await;
    let eu = wait_for_action(&app, "eu-west-1", "rolling back", |a| {
        a["kind"] == "command:rollback" && a["executed_at"].is_string()
    })
    .await;
    stubs.wait_for("rollback eu-west-1 100").await;
    // ... and is taken out of federation routing after its rollback started.
    stubs.wait_for("federation exclude eu-west-1").await;
    let exclusion = wait_for_action(&app, "eu-west-1", "excluded", |a| {
        a["kind"] == "federation_exclude:command:fed-exclude" && a["state"] == "succeeded"
    })
    .await;
    assert!(exclusion["id"].as_i64() > eu["id"].as_i64());

    // The wave stops before us-west-2; the regions already on it are left to the engine.
    let release =
        wait_for_release(&app, "regressed in eu-west-1", |r| r["scope"] == "region").await;
    assert_eq!(regions_where(&release, "regressed_at"), ["eu-west-1"]);
    assert_eq!(release["decisions"][0]["scope"], "region");
    assert_eq!(release["gates"][0]["region"], "us-west-2");
    assert_eq!(release["gates"][0]["open"], false);
    let (status, closed) = gate(&app, "us-west-2").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{closed}");
    assert_eq!(closed["error"]["code"], "gate_closed");
    assert!(
        closed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("regressed in eu-west-1"),
        "{closed}"
    );
    assert_eq!(gate(&app, "us-east-1").await.0, StatusCode::OK);
    let (status, unknown) = gate(&app, "mars-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{unknown}");

    // The decision checked the others: healthy, with their verdicts.
    let (_, decision) = app
        .get_json(&format!("/api/v1/decisions/{}", eu["decision_id"]))
        .await;
    let check = &decision["decision"]["release"];
    assert_eq!(check["release"], RELEASE, "{decision}");
    assert_eq!(check["scope"], "region");
    assert_eq!(check["affected"], json!(["eu-west-1"]));
    assert_eq!(check["others_healthy"], true);
    assert_eq!(check["wave_stopped"], json!(["us-west-2"]));
    let kept: Vec<&str> = check["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["region"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["ap-south-1", "us-east-1"]);
    // The console's Target page shows the release and links to it.
    let cookie = crate::console::sign_in(&app, crate::support::VIEWER_TOKEN).await;
    let (status, page) =
        crate::console::page(&app, &cookie, &format!("/target?key={}", key("eu-west-1"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for needle in [
        "Release <a href=\"/api/v1/releases/checkout%401.6.0\">checkout@1.6.0</a>",
        "<strong class=\"scope-region\">region</strong>",
        "not received",
        "regressed (M2)",
    ] {
        assert!(page.contains(needle), "{needle:?} missing from {page}");
    }
    let (status, linked) = app.get_json("/api/v1/releases/checkout%401.6.0").await;
    assert_eq!((status, &linked["id"]), (StatusCode::OK, &json!(RELEASE)));
    // Nobody else rolled back.
    for region in ["ap-south-1", "us-east-1", "us-west-2"] {
        assert!(actions(&app, region).await.is_empty(), "{region}");
    }

    // us-east-1 regresses too: every region on the release rolls back, in parallel.
    alert(&app, "us-east-1", "firing").await;
    stubs.wait_for("rollback us-east-1 100").await;
    let calls = stubs.wait_for("rollback ap-south-1 100").await;
    let ap = wait_for_action(&app, "ap-south-1", "rolled back", |a| {
        a["kind"] == "command:rollback"
    })
    .await;
    let (_, ap_decision) = app
        .get_json(&format!("/api/v1/decisions/{}", ap["decision_id"]))
        .await;
    assert_eq!(ap_decision["decision"]["fired"][0]["rule_id"], "R1");
    assert_eq!(ap_decision["decision"]["release"]["scope"], "all_regions");
    let release = wait_for_release(&app, "rolled back everywhere", |r| {
        r["scope"] == "all_regions" && r["decisions"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert_eq!(
        regions_where(&release, "regressed_at"),
        ["eu-west-1", "us-east-1"]
    );
    let all = &release["decisions"][1]["check"];
    assert_eq!(
        all["rolled_back"],
        json!(["ap-south-1", "eu-west-1", "us-east-1"])
    );
    assert_eq!(all["wave_stopped"], json!(["us-west-2"]));
    // Announced as one incident.
    let mut announced = Vec::new();
    for _ in 0..500 {
        announced = slack_texts(&slack)
            .await
            .into_iter()
            .filter(|t| t.contains("Multi-Region Rollback"))
            .collect();
        if !announced.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert!(
        announced[0].contains("ap-south-1, eu-west-1, us-east-1"),
        "{}",
        announced[0]
    );
    // Let every tick that wants to act do so: still one rollback per region, no
    // exclusion for a region rolled back with the others, nothing for us-west-2.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls_now = stubs.calls();
    assert_eq!(
        calls_now,
        [
            "federation exclude eu-west-1",
            "rollback ap-south-1 100",
            "rollback eu-west-1 100",
            "rollback us-east-1 100"
        ],
        "before: {calls:?}"
    );
    assert!(actions(&app, "us-west-2").await.is_empty());

    // eu-west-1's pipeline reports its rollback and the alert resolves: the rollback
    // is verified, and putting the region back in federation is put to a person.
    deploy(&app, "eu-west-1", "102", "1.5.0", t0()).await;
    alert(&app, "eu-west-1", "resolved").await;
    let include = wait_for_action(&app, "eu-west-1", "re-inclusion proposed", |a| {
        a["kind"] == "federation_include:command:fed-include"
    })
    .await;
    assert_eq!(include["state"], "awaiting_approval");
    let r = post(
        &app,
        &format!("/api/v1/decisions/{}/approve", include["decision_id"]),
        OPERATOR_TOKEN,
        json!({"comment": "eu-west-1 verified"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    stubs.wait_for("federation include eu-west-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_duplicates_make_one_release_decision_and_one_action_per_region() {
    // ap-south-1's rollback fails: the others go on, and it is escalated on its own.
    let stubs = Stubs::new(Some("ap-south-1"));
    let slack = slack().await;
    let (first, second) = two_replicas(&stubs, &slack).await;
    ship(&first).await;

    // Alertmanager HA: each notification reaches both replicas, twice.
    for region in ["eu-west-1", "us-east-1"] {
        for app in [&first, &second, &first, &second] {
            alert(app, region, "firing").await;
        }
        stubs.wait_for(&format!("rollback {region} 100")).await;
    }
    stubs.wait_for("rollback ap-south-1 100").await;
    let failed = wait_for_action(&first, "ap-south-1", "escalated", |a| {
        a["kind"] == "command:rollback" && a["state"] == "escalated"
    })
    .await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("exited 3: cannot reach ap-south-1"),
        "{failed}"
    );
    for region in ["eu-west-1", "us-east-1"] {
        wait_for_action(&first, region, "executed", |a| {
            a["kind"] == "command:rollback" && a["state"] == "verifying"
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for region in &REGIONS[..3] {
        let rollbacks: Vec<Value> = actions(&second, region)
            .await
            .into_iter()
            .filter(|a| a["kind"] == "command:rollback")
            .collect();
        assert_eq!(rollbacks.len(), 1, "{region}: {rollbacks:?}");
    }
    let rollback_calls = stubs
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("rollback"))
        .count();
    assert_eq!(rollback_calls, 3, "{:?}", stubs.calls());
    let (_, release) = second
        .get_json(&format!("/api/v1/releases/{RELEASE}"))
        .await;
    let scopes: Vec<&str> = release["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["region", "all_regions"], "{release}");
    // The failed region is escalated on its own (its action's outcome, in Slack).
    let mut texts = Vec::new();
    for _ in 0..500 {
        texts = slack_texts(&slack).await;
        if texts
            .iter()
            .any(|t| t.contains("Escalation for") && t.contains("cannot reach ap-south-1"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Escalation for") && t.contains("cannot reach ap-south-1")),
        "{texts:?}"
    );
    let announced = texts
        .iter()
        .filter(|t| t.contains("Multi-Region Rollback"))
        .count();
    assert_eq!(announced, 1, "{texts:?}");
}

/// Flagger's confirm-rollout for checkout in us-west-2, whose pipeline has started
/// deploying 1.6.0 there.
async fn confirm_rollout(app: &TestApp) -> (StatusCode, Value) {
    let mut body: Value =
        serde_json::from_str(include_str!("../fixtures/flagger-rollout.json")).unwrap();
    body["namespace"] = json!("shop");
    body["phase"] = json!("Progressing");
    let response = post(
        app,
        "/webhooks/flagger/confirm-rollout",
        WEBHOOK_TOKEN,
        body,
    )
    .await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The wave stop as canary controllers meet it: Flagger's confirm-rollout refused and
/// the Argo analysis failed in the region the release has not reached, with the reason.
async fn a_stopped_wave_refuses_the_next_regions_canary(backend: Backend) {
    let stubs = Stubs::new(None);
    let slack = slack().await;
    let app = TestApp::spawn_with(backend, |c| {
        configure(c, &stubs, &slack);
        // Flagger and the analysis speak of the configured cluster's workloads.
        c.kubernetes.cluster = "us-west-2".into();
    })
    .await;
    ship(&app).await;
    let started = json!({
        "cluster": "us-west-2", "namespace": "shop", "name": "checkout", "revision": "101",
        "status": "started", "region": "us-west-2", "version": "1.6.0",
        "started_at": ts(t0() - chrono::Duration::minutes(1)),
    });
    let r = post(&app, "/api/v1/deploys", WEBHOOK_TOKEN, started).await;
    assert!(r.status().is_success());
    let (status, body) = confirm_rollout(&app).await;
    assert_eq!(status, StatusCode::OK, "nothing regressed yet: {body}");

    alert(&app, "eu-west-1", "firing").await;
    stubs.wait_for("rollback eu-west-1 100").await;
    let mut refused = (StatusCode::OK, Value::Null);
    for _ in 0..500 {
        refused = confirm_rollout(&app).await;
        if refused.0 == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = refused;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.to_string()
            .contains("wave stopped: release checkout@1.6.0 regressed in eu-west-1"),
        "{body}"
    );
    let (status, analysis) = app.get_json("/api/v1/analysis/shop/checkout").await;
    assert_eq!(status, StatusCode::OK, "{analysis}");
    assert_eq!(analysis["target"], key("us-west-2"));
    assert_eq!(analysis["wave_stopped"], true, "{analysis}");
    assert_eq!(analysis["healthy"], false);
    assert!(
        analysis["wave_stop_reason"]
            .as_str()
            .unwrap()
            .contains("refused in region us-west-2"),
        "{analysis}"
    );
    // A region that runs the release already is not the gate's: its analysis is its own.
    let (_, east) = app
        .get_json("/api/v1/analysis/shop/checkout?cluster=us-east-1")
        .await;
    assert_eq!(east["wave_stopped"], false, "{east}");
    assert_eq!(east["healthy"], true, "{east}");
}

/// A replica whose window lacks an alert the other replica took (it reloads its window
/// once a minute, and its clock stands still here) evaluates the unsettled region on
/// its tick: it must not record the region recovered, which would verify its rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_has_not_seen_the_alert_does_not_recover_the_target() {
    let stubs = Stubs::new(None);
    let slack = slack().await;
    let (first, second) = two_replicas(&stubs, &slack).await;
    ship(&first).await;
    // Both replicas have loaded their windows (their first ticks) before the alert.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alert(&first, "eu-west-1", "firing").await;
    let rollback = wait_for_action(&first, "eu-west-1", "executed", |a| {
        a["kind"] == "command:rollback" && a["state"] == "verifying"
    })
    .await;
    // Three ticks of the second replica, each evaluating the unsettled region.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, decisions) = second
        .get_json(&format!("/api/v1/decisions?target={}", key("eu-west-1")))
        .await;
    // Newest first, down to the rollback: the loop guard may hold since, but nothing
    // says the region recovered.
    let since_rollback: Vec<&str> = decisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|d| d["id"] != rollback["decision_id"])
        .map(|d| d["verdict"].as_str().unwrap())
        .collect();
    assert!(!since_rollback.contains(&"ok"), "{decisions}");
    let still = wait_for_action(&second, "eu-west-1", "still verifying", |a| {
        a["id"] == rollback["id"]
    })
    .await;
    assert_eq!(still["state"], "verifying", "{still}");
}

#[tokio::test]
async fn the_release_routes_refuse_what_is_not_a_release_or_a_region() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (path, status) in [
        ("/api/v1/releases/nothing", StatusCode::BAD_REQUEST),
        ("/api/v1/releases/Checkout@1.0", StatusCode::BAD_REQUEST),
        ("/api/v1/releases/checkout@1.0", StatusCode::NOT_FOUND),
        (
            "/api/v1/releases/checkout@1.0/gate",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/releases/checkout@1.0/gate?region=-x%20y",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/releases?service=UPPER", StatusCode::BAD_REQUEST),
        ("/api/v1/releases?after=bad", StatusCode::BAD_REQUEST),
    ] {
        let (got, body) = app.get_json(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let (status, empty) = app.get_json("/api/v1/releases").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, json!({"items": [], "next": null}));
}

on_both_backends!(
    one_region_then_every_region,
    a_stopped_wave_refuses_the_next_regions_canary
);
