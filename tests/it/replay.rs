//! Shadow mode through the binary: `replay` shows, decision by decision, what the
//! policy would have done; `export` writes a running rollwarden's history as a stream
//! that `replay` reads back to the same verdict.

use std::io::Write;
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, WEBHOOK_TOKEN, t0};

const BIN: &str = env!("CARGO_BIN_EXE_rollwarden");

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn deploy(revision: &str, version: &str, at: DateTime<Utc>) -> Value {
    json!({
        "target": {"cluster": "default", "namespace": "prod", "kind": "Deployment", "name": "checkout"},
        "source": "ci", "revision": revision, "status": "succeeded", "environment": null,
        "region": null, "version": version, "images": [format!("registry.example.com/shop/checkout:{version}")],
        "commit_sha": null, "change_cause": null, "description": null, "helm_release": null,
        "chart": null, "chart_version": null, "app_version": null, "pod_template_hash": null,
        "link": null, "actor": null, "started_at": ts(at), "finished_at": ts(at + Duration::minutes(2)),
        "details": {}
    })
}

fn error_alert(value: &str, starts: DateTime<Utc>) -> Value {
    json!({
        "receiver": "rollwarden", "status": "firing",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": "HighErrorRate", "namespace": "prod", "service": "checkout"},
                    "annotations": {"value": value}, "startsAt": ts(starts),
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "77aa"}],
        "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0
    })
}

fn replay(stream: &str, extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stream.ndjson");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--format", "json"])
        .arg(&file)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_recorded_stream_replays_decision_by_decision() {
    let t = t0();
    let stream = [
        json!({"at": ts(t - Duration::minutes(40)), "deploy": deploy("2231", "1.5.0", t - Duration::minutes(40))}),
        json!({"at": ts(t - Duration::minutes(10)), "deploy": deploy("2232", "1.6.0", t - Duration::minutes(10))}),
        json!({"at": ts(t - Duration::minutes(5)), "alertmanager": error_alert("0.03", t - Duration::minutes(5))}),
        json!({"at": ts(t - Duration::minutes(3)), "alertmanager": error_alert("0.124", t - Duration::minutes(5))}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let rows = replay(&stream, &[]);
    let verdicts: Vec<_> = rows
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    // The second deploy changes nothing about an "ok" with no signals: no new row.
    assert_eq!(verdicts, ["ok", "monitor", "rollback"], "{rows:#?}");
    let rollback = &rows[2];
    assert_eq!(rollback["rules"], json!(["M1", "M2"]));
    assert_eq!(rollback["suspect"], "ci 2232");
    assert_eq!(rollback["rollback_to"], "ci 2231");

    // The same stream under a stricter policy: M2 at 15 % does not fire.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = \"strict\"\n[[rules]]\nid = \"M2\"\nkinds = [\"error_rate\"]\nabove = 0.15\noutcome = \"rollback\"\n",
    )
    .unwrap();
    let rows = replay(&stream, &["--policy", policy.to_str().unwrap()]);
    assert!(rows.iter().all(|r| r["verdict"] != "rollback"), "{rows:#?}");
}

#[test]
fn a_bad_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stream.ndjson");
    std::fs::write(
        &file,
        "{\"at\": \"2026-08-22T14:00:00Z\", \"deploy\": {}}\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("replay").arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_replays_to_the_decision_the_server_made() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.engine.tick_secs = 1).await;
    let t = t0();
    for (rev, version, at) in [
        ("2231", "1.5.0", t - Duration::minutes(40)),
        ("2232", "1.6.0", t - Duration::minutes(10)),
    ] {
        let r = app
            .http
            .post(app.url("/api/v1/deploys"))
            .bearer_auth(WEBHOOK_TOKEN)
            .json(&json!({
            "namespace": "prod", "name": "checkout", "revision": rev, "status": "succeeded",
            "version": version, "started_at": ts(at)}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    app.post_alertmanager(error_alert("0.124", t - Duration::minutes(4)).to_string())
        .await;
    let mut verdict = String::new();
    for _ in 0..500 {
        let (_, body) = app.get_json("/api/v1/decisions?limit=1").await;
        verdict = body["items"][0]["verdict"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if verdict == "rollback" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(verdict, "rollback");
    let db = app.stop().await;

    let out = Command::new(BIN)
        .args([
            "export",
            "--since",
            "2026-08-22T00:00:00Z",
            "--until",
            "2026-08-23T00:00:00Z",
        ])
        .env("ROLLWARDEN__DATABASE__URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stream.lines().count(),
        3,
        "two deploys and one notification:\n{stream}"
    );
    let rows = replay(&stream, &[]);
    assert_eq!(rows.last().unwrap()["verdict"], "rollback", "{rows:#?}");
}

/// Issue 20: the built-in runbooks-1 stays available by name, and `--compare` shows its
/// decisions beside the default policy's: G4 on 0.7 % errors against a 0.2 % baseline,
/// an hour after the deploy, rolled back under runbooks-1 and not under runbooks-2.
#[test]
fn compare_shows_the_previous_policys_verdicts_beside_the_new_ones() {
    let t = t0();
    let alert = |fingerprint: &str, value: &str, starts: DateTime<Utc>| {
        json!({
            "receiver": "rollwarden", "status": "firing",
            "alerts": [{"status": "firing",
                        "labels": {"alertname": "HighErrorRate", "namespace": "prod", "service": "checkout"},
                        "annotations": {"value": value, "baseline": "0.002"}, "startsAt": ts(starts),
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}],
            "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0
        })
    };
    let stream = [
        json!({"at": ts(t - Duration::minutes(90)), "deploy": deploy("2231", "1.5.0", t - Duration::minutes(90))}),
        json!({"at": ts(t - Duration::minutes(62)), "deploy": deploy("2232", "1.6.0", t - Duration::minutes(62))}),
        json!({"at": ts(t - Duration::minutes(5)), "alertmanager": alert("77ab", "0.0071", t - Duration::minutes(5))}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let rows = replay(&stream, &["--compare", "runbooks-1"]);
    let last = rows.last().unwrap();
    assert_eq!(last["old"]["verdict"], "rollback", "{rows:#?}");
    assert_eq!(last["old"]["rules"], json!(["G4"]));
    assert_eq!(last["new"]["verdict"], "ok", "{rows:#?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stream.ndjson");
    std::fs::write(&file, &stream).unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--compare", "runbooks-1"])
        .arg(&file)
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{table}");
    assert!(
        table.lines().next().unwrap().contains("runbooks-1"),
        "{table}"
    );
    assert!(table.contains("runbooks-2"), "{table}");
    assert!(
        table.contains("rollback G4 (ci 2232)"),
        "the old verdict with its rule and suspect:\n{table}"
    );
    assert!(
        table.contains(
            "rollbacks (target, suspect): runbooks-1 1 on 1 targets, runbooks-2 0 on 0 targets"
        ),
        "{table}"
    );
    assert!(
        table.contains("rolled back only by runbooks-1: default/prod/Deployment/checkout"),
        "{table}"
    );
    // A name that is neither a file nor a built-in policy is refused, naming both.
    let out = Command::new(BIN)
        .args(["replay", "--compare", "runbooks-0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runbooks-1, runbooks-2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
