//! `rollwarden ctl` against a running rollwarden: the real binary, as an operator runs
//! it, for every subcommand, its JSON output, and its failures.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use rollwarden::domain::Mode;

use crate::actions::{CHECKOUT, awaiting_approval, cluster, configure, slack};
use crate::support::{Backend, OPERATOR_TOKEN, TestApp, TestStore, VIEWER_TOKEN, t0};

const BIN: &str = env!("CARGO_BIN_EXE_rollwarden");

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn ctl(app: &TestApp, token: &str, args: &[&str]) -> Ran {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(BIN)
            .arg("ctl")
            .args(args)
            .env_clear()
            .env("ROLLWARDEN_SERVER", &app.base)
            .env("ROLLWARDEN_TOKEN", token)
            .output(),
    )
    .await
    .expect("ctl finishes within 30 s")
    .unwrap();
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn ok(ran: Ran) -> String {
    assert!(ran.ok, "ctl failed: {}", ran.stderr);
    ran.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_approves_and_freezes_from_the_command_line() {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = TestApp::spawn_on(
        TestStore::new(Backend::Sqlite).await,
        |c| configure(c, Mode::Approve, &slack),
        Some(fake.client()),
    )
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap().to_string();

    // decisions: a table for people, the API's JSON for scripts.
    let table = ok(ctl(&app, VIEWER_TOKEN, &["decisions"]).await);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("VERDICT"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{decision} ")))
        .unwrap_or_else(|| panic!("no row for decision {decision}: {table}"));
    assert!(
        row.contains("rollback") && row.contains(CHECKOUT) && row.contains("M2"),
        "{row}"
    );
    let json: Value = serde_json::from_str(&ok(ctl(
        &app,
        VIEWER_TOKEN,
        &[
            "-o",
            "json",
            "decisions",
            "--verdict",
            "rollback",
            "--target",
            CHECKOUT,
        ],
    )
    .await))
    .unwrap();
    assert_eq!(json["items"][0]["id"].to_string(), decision);

    // decision: readable, with the commands to paste and the action waiting.
    let text = ok(ctl(&app, VIEWER_TOKEN, &["decision", &decision]).await);
    assert!(
        text.starts_with(&format!("Decision {decision}: rollback  {CHECKOUT}")),
        "{text}"
    );
    for needle in [
        "Reason: ",
        "Fired rules:",
        "M2",
        "0.124",
        "Roll back to: kubernetes",
        "Commands:",
        "kubectl -n prod rollout undo deployment/checkout",
        "awaiting_approval",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }

    // targets: where each target stands.
    let targets = ok(ctl(&app, VIEWER_TOKEN, &["targets"]).await);
    assert!(
        targets
            .lines()
            .any(|l| l.starts_with(CHECKOUT) && l.contains("rollback") && l.contains(&decision)),
        "{targets}"
    );

    // A viewer may not approve: the server's words, and a failure.
    let refused = ctl(&app, VIEWER_TOKEN, &["approve", &decision, "-m", "me too"]).await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("403: forbidden"),
        "{}",
        refused.stderr
    );

    // The operator approves: recorded with the name and the comment.
    let approved = ok(ctl(
        &app,
        OPERATOR_TOKEN,
        &["approve", &decision, "-m", "go ahead"],
    )
    .await);
    assert!(
        approved.contains(&format!("decision {decision}: approved")),
        "{approved}"
    );
    assert!(approved.contains("oncall (go ahead)"), "{approved}");
    // Twice is refused by the server (nothing awaits approval any more).
    let again = ctl(
        &app,
        OPERATOR_TOKEN,
        &["reject", &decision, "-m", "too late"],
    )
    .await;
    assert!(!again.ok);
    assert!(again.stderr.contains("409"), "{}", again.stderr);

    // freeze and unfreeze.
    let until = (t0() + chrono::Duration::hours(2)).to_rfc3339();
    let declared = ok(ctl(
        &app,
        OPERATOR_TOKEN,
        &[
            "freeze",
            "default/prod",
            "-m",
            "INC-9: hold the line",
            "--until",
            &until,
        ],
    )
    .await);
    assert!(
        declared.contains("declared: scope default/prod"),
        "{declared}"
    );
    let id = declared.split_whitespace().nth(1).unwrap().to_string();
    let lifted = ok(ctl(&app, OPERATOR_TOKEN, &["unfreeze", &id]).await);
    assert!(
        lifted.starts_with(&format!("freeze {id} lifted")),
        "{lifted}"
    );
    let freeze: Value = serde_json::from_str(&ok(ctl(
        &app,
        OPERATOR_TOKEN,
        &["-o", "json", "unfreeze", &id],
    )
    .await))
    .unwrap();
    assert_eq!(freeze["lifted_by"], "oncall");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_the_event_stream() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut watch = Command::new(BIN)
        .args(["ctl", "-o", "json", "watch"])
        .env_clear()
        .env("ROLLWARDEN_SERVER", &app.base)
        .env("ROLLWARDEN_TOKEN", VIEWER_TOKEN)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // Freezes until the watcher has connected and seen one (it starts at the present).
    let seen = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let declared = ctl(&app, OPERATOR_TOKEN, &["freeze", "*", "-m", "watch me"]).await;
            assert!(declared.ok, "{}", declared.stderr);
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(700), lines.next_line()).await
            {
                return serde_json::from_str::<Value>(&line).unwrap();
            }
        }
    })
    .await
    .expect("ctl watch printed an event within 15 s");
    assert_eq!(seen["kind"], "freeze.created");
    assert_eq!(seen["actor"], "oncall");
    assert!(seen["subject"].as_str().unwrap().starts_with("freeze:"));
    watch.kill().await.unwrap();
}

#[tokio::test]
async fn failures_exit_non_zero_and_say_why() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let wrong = ctl(&app, "not-a-configured-token-000", &["decisions"]).await;
    assert!(!wrong.ok);
    assert!(
        wrong.stderr.contains("401: unauthorized"),
        "{}",
        wrong.stderr
    );

    let missing = ctl(&app, VIEWER_TOKEN, &["decision", "99"]).await;
    assert!(!missing.ok);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    let bad = ctl(&app, OPERATOR_TOKEN, &["freeze", "not a scope", "-m", "x"]).await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("400: invalid_field"), "{}", bad.stderr);

    let out = Command::new(BIN)
        .args(["ctl", "--server", "http://127.0.0.1:1", "targets"])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach http://127.0.0.1:1"));

    let out = Command::new(BIN)
        .args(["ctl", "--server", "ftp://example.com", "targets"])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an http:// or https:// URL"));
}
