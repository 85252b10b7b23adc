//! The executors and the worker against real peers: a stub `helm` that records its
//! argv, GitHub and Slack stand-ins (wiremock: request shape, auth, retry on 5xx, none
//! on 4xx), and exactly-once execution with two worker pools, a killed worker, and a
//! rollout undo whose answer was lost after the API server applied it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use rollwarden::actions::executor::{
    ExecOutcome, Executor, Executors, HelmRollback, MemoryJournal, RolloutUndo, WorkflowDispatch,
};
use rollwarden::actions::{Channels, Worker, WorkerConfig};
use rollwarden::clock::ManualClock;
use rollwarden::config::{ActionsConfig, ClusterConfig, Config, Secret};
use rollwarden::domain::policy::Policy;
use rollwarden::k8s::undo::{UndoTo, rollout_undo};
use rollwarden::store::{ActionRecord, NewAction, NewDecision, NewNotification, Store};
use rollwarden::telemetry::Metrics;

use crate::actions::{CHECKOUT, cluster, real_patches};
use crate::on_both_backends;
use crate::support::fake_kube::{FakeKube, HeldAnswer};
use crate::support::{Backend, TestStore, t0};

pub(crate) fn record(kind: &str, params: Value) -> ActionRecord {
    ActionRecord {
        id: 7,
        decision_id: 3,
        target_key: CHECKOUT.into(),
        kind: kind.into(),
        mode: "auto".into(),
        idempotency_key: format!("{CHECKOUT}|deploy:9|{kind}"),
        state: "running".into(),
        params,
        attempts: 1,
        next_attempt_at: None,
        lease_owner: Some("w".into()),
        lease_expires_at: None,
        executed_at: None,
        result: None,
        last_error: None,
        approved_by: None,
        approval_comment: None,
        expires_at: None,
        resumed: false,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn actions_config() -> ActionsConfig {
    Config::load_from(None, Vec::new()).unwrap().actions
}

pub(crate) fn worker(
    store: &Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    executors: Executors,
    channels: Channels,
    owner: &str,
) -> Worker {
    Worker {
        owner: owner.into(),
        store: store.clone(),
        clock: clock.clone(),
        metrics: Arc::new(Metrics::new()),
        policy: Arc::new(Policy::default()),
        executors,
        channels,
        http: reqwest::Client::new(),
        config: WorkerConfig {
            dry_run: false,
            lease: Duration::from_secs(60),
            max_attempts: 3,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            notify_max_attempts: 3,
            eta: Duration::from_secs(600),
            poll: Duration::from_millis(20),
            status_interval: Duration::from_secs(120),
        },
        wake: Arc::new(tokio::sync::Notify::new()),
        status_sent: Arc::default(),
    }
}

pub(crate) fn no_executors(store: &Arc<dyn Store>, clock: &Arc<ManualClock>) -> Executors {
    Executors::new(
        &actions_config(),
        &Config::load_from(None, Vec::new())
            .unwrap()
            .kubernetes
            .cluster_list(),
        None,
        None,
        store.clone(),
        clock.clone(),
        reqwest::Client::new(),
    )
}

pub(crate) async fn decision(store: &Arc<dyn Store>, hash: &str) -> i64 {
    let (d, _) = store
        .record_decision(&NewDecision {
            target_key: CHECKOUT.into(),
            verdict: "rollback".into(),
            reason: "M2: error rate 12.4 % > 5 % after deploy".into(),
            inputs_hash: hash.into(),
            policy_version: "runbooks-1".into(),
            suspect_deploy_id: None,
            rollback_to_id: None,
            decision: json!({}),
            decided_at: t0(),
        })
        .await
        .unwrap();
    d.id
}

pub(crate) fn new_action(decision_id: i64, kind: &str, params: Value) -> NewAction {
    NewAction {
        decision_id,
        target_key: CHECKOUT.into(),
        kind: kind.into(),
        mode: "auto".into(),
        idempotency_key: format!("{CHECKOUT}|deploy:9|{kind}"),
        state: "pending".into(),
        params,
        expires_at: None,
        notify: Vec::new(),
    }
}

pub(crate) async fn action_state(store: &Arc<dyn Store>, decision_id: i64) -> ActionRecord {
    store
        .decision_actions(&[decision_id])
        .await
        .unwrap()
        .remove(0)
}

/// The decision's action once `done` holds of it (polled for up to 5 s), or as it is
/// then: the caller asserts what it waited for.
async fn action_once(
    store: &Arc<dyn Store>,
    decision_id: i64,
    done: impl Fn(&ActionRecord) -> bool,
) -> ActionRecord {
    for _ in 0..500 {
        let action = action_state(store, decision_id).await;
        if done(&action) {
            return action;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    action_state(store, decision_id).await
}

// ---------------------------------------------------------------------------- helm

/// A stub `helm`: appends its argv to `argv.log`; for `history`, prints `history.json`
/// (or fails with `history.err` when that is set); for `rollback`, exits with the code
/// in `rollback.code`, printing Helm's success line when it is 0 and `rollback.err` to
/// stderr. The files are read at every run, so a test can change them between runs.
pub(crate) struct StubHelm {
    dir: tempfile::TempDir,
}

impl StubHelm {
    pub(crate) fn new(history: &str, code: i32, stderr: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("history.json"), history).unwrap();
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {d}/argv.log\n\
             case \"$1\" in\n\
               history) if [ -s {d}/history.err ]; then cat {d}/history.err >&2; exit 1; fi; cat {d}/history.json ;;\n\
               rollback) code=$(cat {d}/rollback.code)\n\
                 [ \"$code\" = 0 ] && echo 'Rollback was a success! Happy Helming!'\n\
                 cat {d}/rollback.err >&2; exit \"$code\" ;;\n\
               *) exit 64 ;;\n\
             esac\n"
        );
        let path = dir.path().join("helm");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let stub = Self { dir };
        stub.rollback_ends(code, stderr);
        stub
    }

    /// What the next `helm rollback` exits with and prints on stderr.
    fn rollback_ends(&self, code: i32, stderr: &str) {
        std::fs::write(self.dir.path().join("rollback.code"), code.to_string()).unwrap();
        std::fs::write(self.dir.path().join("rollback.err"), stderr).unwrap();
    }

    /// Makes `helm history` fail with `stderr` (exit 1); empty: it answers again.
    fn history_fails(&self, stderr: &str) {
        std::fs::write(self.dir.path().join("history.err"), stderr).unwrap();
    }

    pub(crate) fn executor(&self) -> HelmRollback {
        HelmRollback {
            helm: self.path(),
            timeout: Duration::from_secs(120),
            kubeconfig: String::new(),
            kube_context: String::new(),
        }
    }

    fn path(&self) -> String {
        self.dir.path().join("helm").display().to_string()
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

pub(crate) fn helm_params() -> Value {
    json!({"helm_release": "checkout", "helm_revision": "2", "helm_namespace": "prod", "namespace": "prod"})
}

pub(crate) const UPGRADED: &str = r#"[{"revision":3,"status":"deployed","chart":"checkout-1.4.0","description":"Upgrade complete"}]"#;

#[tokio::test]
async fn helm_rollback_runs_the_runbooks_argv_after_checking_the_release() {
    let helm = StubHelm::new(UPGRADED, 0, "");
    let outcome = helm
        .executor()
        .execute(
            &record("helm_rollback", helm_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert_eq!(
        helm.calls(),
        [
            "history -n prod --max 1 -o json -- checkout",
            "rollback -n prod --cleanup-on-fail --wait --timeout 120s -- checkout 2",
        ]
    );
    let ExecOutcome::Done { result, verify } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(verify);
    assert_eq!(result["exit_code"], 0);
    assert_eq!(result["stdout"], "Rollback was a success! Happy Helming!\n");
}

#[tokio::test]
async fn helm_runs_against_the_targets_cluster_with_its_kubeconfig_and_context() {
    let helm = StubHelm::new(UPGRADED, 0, "");
    let config = Config::load_from(
        None,
        [
            ("ROLLWARDEN__ACTIONS__HELM_PATH".to_string(), helm.path()),
            (
                "ROLLWARDEN__ACTIONS__HELM_TIMEOUT_SECS".into(),
                "120".into(),
            ),
        ],
    )
    .unwrap();
    let cluster = |name: &str, kubeconfig: &str, context: &str| ClusterConfig {
        name: name.into(),
        kubeconfig: kubeconfig.into(),
        context: context.into(),
        in_cluster: false,
    };
    let clusters = [
        cluster("eu-1", "", ""),
        cluster("us-1", "/etc/rollwarden/us.yaml", "us-admin"),
        cluster("ap-1", "", "-dash"),
    ];
    let store = TestStore::new(Backend::Sqlite).await.store;
    let executors = Executors::new(
        &config.actions,
        &clusters,
        None,
        None,
        store,
        Arc::new(ManualClock::new(t0())),
        reqwest::Client::new(),
    );
    let executor = executors.get("helm_rollback").unwrap();
    let run = |cluster: &str| {
        let mut params = helm_params();
        params["cluster"] = json!(cluster);
        let executor = executor.clone();
        async move {
            executor
                .execute(
                    &record("helm_rollback", params),
                    false,
                    &MemoryJournal::default(),
                )
                .await
        }
    };

    // Cluster B: its kubeconfig and context, before the `--` that ends the options.
    let outcome = run("us-1").await;
    assert!(matches!(outcome, ExecOutcome::Done { .. }), "{outcome:?}");
    assert_eq!(
        helm.calls(),
        [
            "history -n prod --kubeconfig /etc/rollwarden/us.yaml --kube-context us-admin \
             --max 1 -o json -- checkout",
            "rollback -n prod --kubeconfig /etc/rollwarden/us.yaml --kube-context us-admin \
             --cleanup-on-fail --wait --timeout 120s -- checkout 2",
        ]
    );
    // Cluster A (in-cluster, or the default kubeconfig): no flag, Helm's own config.
    let outcome = run("eu-1").await;
    assert!(matches!(outcome, ExecOutcome::Done { .. }), "{outcome:?}");
    assert_eq!(
        helm.calls()[2..],
        [
            "history -n prod --max 1 -o json -- checkout",
            "rollback -n prod --cleanup-on-fail --wait --timeout 120s -- checkout 2",
        ]
    );
    // A cluster that is not configured, and a value Helm would take for a flag: nothing runs.
    let outcome = run("sa-1").await;
    assert!(
        matches!(&outcome, ExecOutcome::Failed(e) if e.contains("\"sa-1\" is not one of")),
        "{outcome:?}"
    );
    let outcome = run("ap-1").await;
    assert!(
        matches!(&outcome, ExecOutcome::Failed(e) if e.contains("--kube-context \"-dash\"")),
        "{outcome:?}"
    );
    assert_eq!(helm.calls().len(), 4, "{:?}", helm.calls());
}

#[tokio::test]
async fn helm_does_not_roll_back_a_release_already_rolled_back() {
    let done = r#"[{"revision":4,"status":"deployed","chart":"checkout-1.3.2","description":"Rollback to 2"}]"#;
    let helm = StubHelm::new(done, 0, "");
    let outcome = helm
        .executor()
        .execute(
            &record("helm_rollback", helm_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert_eq!(
        helm.calls(),
        ["history -n prod --max 1 -o json -- checkout"]
    );
    let ExecOutcome::Done { result, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(result["already_rolled_back"], true);
    assert_eq!(result["release_revision"], 4);
}

#[tokio::test]
async fn a_failed_helm_rollback_escalates_with_its_output_and_a_busy_release_retries() {
    let helm = StubHelm::new(UPGRADED, 1, "Error: timed out waiting for the condition");
    let outcome = helm
        .executor()
        .execute(
            &record("helm_rollback", helm_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    let ExecOutcome::Escalate { error, result } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("helm exited 1: Error: timed out"), "{error}");
    assert_eq!(
        result.unwrap()["stderr"],
        "Error: timed out waiting for the condition"
    );

    let busy = StubHelm::new(
        UPGRADED,
        1,
        "Error: another operation (install/upgrade/rollback) is in progress",
    );
    let outcome = busy
        .executor()
        .execute(
            &record("helm_rollback", helm_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::Retry(_)), "{outcome:?}");

    let dry = StubHelm::new(UPGRADED, 0, "");
    let outcome = dry
        .executor()
        .execute(
            &record("helm_rollback", helm_params()),
            true,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::DryRun { .. }), "{outcome:?}");
    assert!(dry.calls().is_empty(), "a dry run runs nothing");
}

const UNREACHABLE: &str = "Error: Kubernetes cluster unreachable: Get \"https://10.96.0.1:443/version\": dial tcp 10.96.0.1:443: connect: connection refused";

#[tokio::test]
async fn helm_failures_are_retried_or_escalated_by_what_helm_said() {
    let rollback = "rollback -n prod --cleanup-on-fail --wait --timeout 120s -- checkout 2";
    let history = "history -n prod --max 1 -o json -- checkout";
    let run = |helm: &StubHelm| {
        let executor = helm.executor();
        async move {
            executor
                .execute(
                    &record("helm_rollback", helm_params()),
                    false,
                    &MemoryJournal::default(),
                )
                .await
        }
    };

    // The cluster cannot be reached: another attempt later.
    let helm = StubHelm::new(UPGRADED, 1, UNREACHABLE);
    let ExecOutcome::Retry(error) = run(&helm).await else {
        panic!("an unreachable cluster is transient")
    };
    assert_eq!(
        error,
        format!("helm exited 1: {UNREACHABLE} (transient: unreachable)")
    );
    helm.history_fails(UNREACHABLE);
    assert!(matches!(run(&helm).await, ExecOutcome::Retry(_)));
    assert_eq!(helm.calls(), [history, rollback, history]);

    // The release does not exist: `helm history` says so, nothing else runs.
    let helm = StubHelm::new(UPGRADED, 0, "");
    helm.history_fails("Error: release: not found");
    let ExecOutcome::Escalate { error, .. } = run(&helm).await else {
        panic!("a missing release is permanent")
    };
    assert_eq!(
        error,
        "there is no Helm release \"checkout\" in namespace prod; nothing was rolled back, \
         and retrying will not help (helm exited 1: Error: release: not found)"
    );
    assert_eq!(helm.calls(), [history]);

    // The revision does not exist.
    let helm = StubHelm::new(UPGRADED, 1, "Error: release has no 2 version");
    let ExecOutcome::Escalate { error, result } = run(&helm).await else {
        panic!("a missing revision is permanent")
    };
    assert!(
        error.starts_with(
            "Helm release \"checkout\" has no revision 2; nothing was rolled back, and \
             retrying will not help"
        ),
        "{error}"
    );
    assert_eq!(result.unwrap()["stderr"], "Error: release has no 2 version");

    // Rolled back, but not ready within --timeout: a person looks, no retry.
    let helm = StubHelm::new(
        UPGRADED,
        1,
        "Error: release checkout failed: timed out waiting for the condition",
    );
    let ExecOutcome::Escalate { error, .. } = run(&helm).await else {
        panic!("a rollback that is not ready escalates")
    };
    assert!(
        error.starts_with(
            "helm rolled checkout back to revision 2, but its resources were not ready \
             within 120 s: exited 1"
        ),
        "{error}"
    );
}

async fn the_worker_retries_an_unreachable_cluster_and_escalates_a_missing_release(
    backend: Backend,
) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let helm = StubHelm::new(UPGRADED, 1, UNREACHABLE);
    let executors =
        no_executors(&db.store, &clock).with("helm_rollback", Arc::new(helm.executor()));
    let w = worker(&db.store, &clock, executors, Channels::default(), "w");
    let d = decision(&db.store, "h").await;
    db.store
        .enqueue_action(&new_action(d, "helm_rollback", helm_params()), t0())
        .await
        .unwrap();
    w.step().await.unwrap();
    let a = action_state(&db.store, d).await;
    assert_eq!(a.state, "pending", "retried with backoff: {a:?}");
    assert_eq!(a.next_attempt_at, Some(t0() + chrono::Duration::seconds(5)));
    assert!(
        a.last_error
            .unwrap()
            .contains("Kubernetes cluster unreachable")
    );
    // The cluster is back: the next attempt rolls back.
    helm.rollback_ends(0, "");
    clock.advance(chrono::Duration::seconds(5));
    w.step().await.unwrap();
    let a = action_state(&db.store, d).await;
    assert_eq!((a.state.as_str(), a.attempts), ("verifying", 2));

    // Another target whose release is gone: escalated on the first attempt.
    helm.history_fails("Error: release: not found");
    let d2 = decision(&db.store, "h2").await;
    let mut gone = new_action(d2, "helm_rollback", helm_params());
    gone.target_key = "default/prod/Deployment/cart".into();
    gone.idempotency_key = "default/prod/Deployment/cart|deploy:10|helm_rollback".into();
    db.store
        .enqueue_action(&gone, rollwarden::clock::Clock::now(&*clock))
        .await
        .unwrap();
    assert_eq!(w.step().await.unwrap().escalated, 1);
    let a = action_state(&db.store, d2).await;
    assert_eq!((a.state.as_str(), a.attempts), ("escalated", 1));
    assert!(
        a.last_error
            .unwrap()
            .starts_with("there is no Helm release")
    );
    assert!(a.executed_at.is_none(), "nothing was rolled back");
}

// -------------------------------------------------------------------------- github

pub(crate) fn dispatch(server: &MockServer) -> WorkflowDispatch {
    WorkflowDispatch {
        http: reqwest::Client::new(),
        api_url: server.uri(),
        repository: "acme/shop".into(),
        git_ref: "main".into(),
        token: Some(Secret::new("ghp_test_token")),
    }
}

pub(crate) fn dispatch_params() -> Value {
    json!({"cd_workflow": "cd-rollback.yml", "environment": "production", "image_tag": "1.5.0"})
}

const DISPATCHES: &str = "/repos/acme/shop/actions/workflows/cd-rollback.yml/dispatches";

#[tokio::test]
async fn workflow_dispatch_sends_githubs_request() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(header("authorization", "Bearer ghp_test_token"))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(body_json(
            json!({"ref": "main", "inputs": {"environment": "production", "image_tag": "1.5.0"}}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&github)
        .await;
    let outcome = dispatch(&github)
        .execute(
            &record("workflow_dispatch", dispatch_params()),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(
        matches!(outcome, ExecOutcome::Done { verify: true, .. }),
        "{outcome:?}"
    );

    // An attempt that resumes an interrupted one does not dispatch blindly.
    let mut resumed = record("workflow_dispatch", dispatch_params());
    resumed.resumed = true;
    let outcome = dispatch(&github)
        .execute(&resumed, false, &MemoryJournal::default())
        .await;
    assert!(
        matches!(outcome, ExecOutcome::Escalate { .. }),
        "{outcome:?}"
    );
}

async fn the_worker_retries_githubs_5xx_and_not_its_4xx(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(ResponseTemplate::new(503).set_body_string("unicorn"))
        .up_to_n_times(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(ResponseTemplate::new(204))
        .mount(&github)
        .await;
    let executors =
        no_executors(&db.store, &clock).with("workflow_dispatch", Arc::new(dispatch(&github)));
    let w = worker(
        &db.store,
        &clock,
        executors.clone(),
        Channels::default(),
        "w1",
    );
    let d = decision(&db.store, "h1").await;
    db.store
        .enqueue_action(&new_action(d, "workflow_dispatch", dispatch_params()), t0())
        .await
        .unwrap();

    w.step().await.unwrap();
    let a = action_state(&db.store, d).await;
    assert_eq!(a.state, "pending");
    assert!(a.last_error.as_deref().unwrap().contains("503"), "{a:?}");
    assert_eq!(a.next_attempt_at, Some(t0() + chrono::Duration::seconds(5)));
    // Not due yet: nothing is sent.
    w.step().await.unwrap();
    assert_eq!(github.received_requests().await.unwrap().len(), 1);
    clock.advance(chrono::Duration::seconds(5));
    w.step().await.unwrap();
    assert_eq!(action_state(&db.store, d).await.state, "verifying");
    assert_eq!(github.received_requests().await.unwrap().len(), 2);

    // Another automatic rollback of the same target five seconds later trips the loop
    // guard (at least 5 min apart): escalated, nothing sent.
    let d_again = decision(&db.store, "h-again").await;
    let mut again = new_action(d_again, "workflow_dispatch", dispatch_params());
    again.idempotency_key = format!("{CHECKOUT}|deploy:11|workflow_dispatch");
    db.store
        .enqueue_action(&again, rollwarden::clock::Clock::now(&*clock))
        .await
        .unwrap();
    assert_eq!(w.step().await.unwrap().escalated, 1);
    let a = action_state(&db.store, d_again).await;
    assert_eq!(a.state, "escalated");
    assert!(a.last_error.unwrap().starts_with("loop guard"));
    assert_eq!(github.received_requests().await.unwrap().len(), 2);

    // A 4xx fails for good after one request.
    let rejecting = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_string("{\"message\":\"No ref found\"}"))
        .mount(&rejecting)
        .await;
    let executors =
        no_executors(&db.store, &clock).with("workflow_dispatch", Arc::new(dispatch(&rejecting)));
    let w = worker(&db.store, &clock, executors, Channels::default(), "w2");
    let d2 = decision(&db.store, "h2").await;
    let mut second = new_action(d2, "workflow_dispatch", dispatch_params());
    second.target_key = "default/prod/Deployment/cart".into();
    second.idempotency_key = "default/prod/Deployment/cart|deploy:10|workflow_dispatch".into();
    db.store
        .enqueue_action(&second, rollwarden::clock::Clock::now(&*clock))
        .await
        .unwrap();
    w.step().await.unwrap();
    clock.advance(chrono::Duration::minutes(10));
    w.step().await.unwrap();
    let a = action_state(&db.store, d2).await;
    assert_eq!(a.state, "failed");
    assert!(a.last_error.unwrap().contains("422"));
    assert_eq!(rejecting.received_requests().await.unwrap().len(), 1);
}

// --------------------------------------------------------------------------- slack

async fn slack_notifications_retry_5xx_and_record_every_outcome(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/a"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/a"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/gone"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&slack)
        .await;
    let d = decision(&db.store, "h1").await;
    for (hook, key) in [("a", "n1"), ("gone", "n2")] {
        let channels = Channels {
            slack: Some(Secret::new(format!("{}/hooks/{hook}", slack.uri()))),
            ..Channels::default()
        };
        let w = worker(
            &db.store,
            &clock,
            no_executors(&db.store, &clock),
            channels,
            hook,
        );
        db.store
            .enqueue_notification(
                &NewNotification {
                    action_id: None,
                    decision_id: Some(d),
                    channel: "slack".into(),
                    event: "escalate".into(),
                    idempotency_key: key.into(),
                    payload: json!({"text": "E1: escalate"}),
                },
                rollwarden::clock::Clock::now(&*clock),
            )
            .await
            .unwrap();
        w.step().await.unwrap();
        clock.advance(chrono::Duration::seconds(5));
        w.step().await.unwrap();
    }
    let sent = db.store.decision_notifications(d).await.unwrap();
    assert_eq!(
        sent.iter()
            .map(|n| (n.status.as_str(), n.attempts))
            .collect::<Vec<_>>(),
        [("delivered", 2), ("failed", 1)]
    );
    assert_eq!(sent[0].response.as_deref(), Some("200 ok"));
    assert!(sent[1].last_error.as_deref().unwrap().contains("404"));
    let bodies: Vec<Value> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| b == &json!({"text": "E1: escalate"})));
}

// ------------------------------------------------------------------- exactly once

async fn two_worker_pools_execute_200_duplicate_decisions_once(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (fake, _controller) = cluster().await;
    let undo = Arc::new(RolloutUndo {
        client: fake.client(),
        timeout: Duration::from_secs(10),
        poll: Duration::from_millis(20),
    });
    let params = json!({"namespace": "prod", "name": "checkout", "kubernetes_revision": "2"});
    // Two replicas each record 100 duplicates of the decision (Alertmanager HA, re-
    // evaluations) and enqueue its action, concurrently.
    let mut enqueuers = Vec::new();
    for replica in 0..2 {
        for i in 0..100 {
            let store = db.store.clone();
            let params = params.clone();
            enqueuers.push(tokio::spawn(async move {
                let d = decision(&store, &format!("r{replica}-{i}")).await;
                let (a, new) = store
                    .enqueue_action(&new_action(d, "rollout_undo", params), t0())
                    .await
                    .unwrap();
                (a.id, new)
            }));
        }
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for e in enqueuers {
        let (id, new) = e.await.unwrap();
        ids.insert(id);
        created += usize::from(new);
    }
    assert_eq!((ids.len(), created), (1, 1));
    // Two pools of four workers each step at once.
    let mut pools = Vec::new();
    for pool in 0..2 {
        for n in 0..4 {
            let executors = no_executors(&db.store, &clock).with("rollout_undo", undo.clone());
            let w = worker(
                &db.store,
                &clock,
                executors,
                Channels::default(),
                &format!("p{pool}-{n}"),
            );
            pools.push(tokio::spawn(async move { w.step().await.unwrap().ran }));
        }
    }
    let mut ran = 0;
    for p in pools {
        ran += p.await.unwrap();
    }
    assert_eq!(ran, 1);
    assert_eq!(real_patches(&fake).len(), 1);
    let action = db
        .store
        .list_actions(&rollwarden::store::ActionQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(action.len(), 1);
    assert_eq!(action[0].state, "verifying");
}

async fn a_worker_killed_mid_action_is_not_repeated_when_the_world_shows_it(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (fake, _controller) = cluster().await;
    let d = decision(&db.store, "h").await;
    let params = json!({"namespace": "prod", "name": "checkout", "kubernetes_revision": "2"});
    db.store
        .enqueue_action(&new_action(d, "rollout_undo", params), t0())
        .await
        .unwrap();
    // A worker claims it, patches the Deployment, and dies before recording anything.
    let claimed = db
        .store
        .claim_action("dead", chrono::Duration::seconds(60), t0())
        .await
        .unwrap()
        .unwrap();
    assert!(!claimed.resumed);
    rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Revision(2),
        false,
    )
    .await
    .unwrap();
    assert_eq!(real_patches(&fake).len(), 1);

    let undo = Arc::new(RolloutUndo {
        client: fake.client(),
        timeout: Duration::from_secs(10),
        poll: Duration::from_millis(20),
    });
    let executors = no_executors(&db.store, &clock).with("rollout_undo", undo);
    let w = worker(&db.store, &clock, executors, Channels::default(), "next");
    // While its lease holds, nobody takes it over.
    assert_eq!(w.step().await.unwrap().ran, 0);
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(w.step().await.unwrap().ran, 1);
    let a = action_state(&db.store, d).await;
    assert!(a.resumed);
    assert_eq!(a.attempts, 2);
    assert_eq!(a.state, "verifying");
    assert_eq!(
        a.result.as_ref().unwrap()["already_at_revision"],
        true,
        "{a:?}"
    );
    assert_eq!(
        real_patches(&fake).len(),
        1,
        "the rollback was not sent twice"
    );
}

async fn a_worker_shut_down_mid_action_releases_its_lease(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&slow)
        .await;
    let webhook = rollwarden::actions::executor::Webhook {
        http: reqwest::Client::new(),
        config: rollwarden::config::WebhookConfig {
            name: "slow".into(),
            url: format!("{}/hook", slow.uri()),
            token: Secret::default(),
        },
    };
    let executors = no_executors(&db.store, &clock).with("webhook:slow", Arc::new(webhook));
    let w = worker(&db.store, &clock, executors, Channels::default(), "leaving");
    let d = decision(&db.store, "h").await;
    db.store
        .enqueue_action(&new_action(d, "webhook:slow", json!({})), t0())
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(w.run(shutdown.clone()));
    let action = action_once(&db.store, d, |a| a.state == "running").await;
    assert_eq!(action.state, "running");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the worker stops at once")
        .unwrap();
    // Its lease ended with it: the next worker takes the action over now, resumed,
    // instead of after the 60 s lease.
    let next = db
        .store
        .claim_action("next", chrono::Duration::seconds(60), t0())
        .await
        .unwrap()
        .expect("claimable at once");
    assert!(next.resumed);
    assert_eq!(next.attempts, 2);
}

/// A clock that rings the worker's wake-up each time it is read, one second later each
/// time: as if an action were enqueued (the planner rings the same `Notify`) while the
/// worker is inside a step, between its claim that found nothing and its wait.
struct RingingClock {
    at: std::sync::Mutex<chrono::DateTime<chrono::Utc>>,
    wake: Arc<tokio::sync::Notify>,
}

impl rollwarden::clock::Clock for RingingClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let mut at = self.at.lock().unwrap();
        *at += chrono::Duration::seconds(1);
        self.wake.notify_waiters();
        *at
    }
}

/// A wake-up that comes while the worker runs a step is kept: the worker steps again at
/// once instead of sleeping its poll (an hour here). Before, it listened only once the
/// step was over, so an action enqueued during an idle step waited for the next poll
/// (a second by default): here every step rings, and the action enqueued after the
/// first one is claimed only if those rings were heard.
async fn a_wake_up_during_a_step_is_not_lost(backend: Backend) {
    let db = TestStore::new(backend).await;
    let manual = Arc::new(ManualClock::new(t0()));
    let mut w = worker(
        &db.store,
        &manual,
        no_executors(&db.store, &manual),
        Channels::default(),
        "ringing",
    );
    w.config.poll = Duration::from_secs(3600);
    w.clock = Arc::new(RingingClock {
        at: std::sync::Mutex::new(t0()),
        wake: w.wake.clone(),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(w.run(shutdown.clone()));
    // The worker's first step found nothing; the action comes without a ring of its own.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = decision(&db.store, "h").await;
    db.store
        .enqueue_action(&new_action(d, "webhook:nowhere", json!({})), t0())
        .await
        .unwrap();
    let action = action_once(&db.store, d, |a| a.attempts > 0).await;
    shutdown.cancel();
    running.await.unwrap();
    assert!(
        action.attempts > 0,
        "the worker slept through the wake-ups rung during its step"
    );
}

// ------------------------------------------------- an undo applied, its answer lost

const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/prod/deployments/checkout";
/// The ReplicaSet of revision 2 (1.5.0), the known-good one.
const REVISION_2: &str = "checkout-7c67857fd";

/// The fixture (revisions 1, 2, 3 of prod/checkout) with the Deployment controller
/// simulated as a real one behaves: a rollback to revision 2 reuses its ReplicaSet as
/// revision 4, and "2" is gone from the history.
async fn renumbering_cluster() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.load_list("tests/fixtures/deployment-with-replicasets.json");
    fake.simulate_deployment_controller(true);
    fake
}

fn undo_worker(
    store: &Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    fake: &FakeKube,
    owner: &str,
) -> Worker {
    let undo = Arc::new(RolloutUndo {
        client: fake.client(),
        timeout: Duration::from_secs(10),
        poll: Duration::from_millis(20),
    });
    let executors = no_executors(store, clock).with("rollout_undo", undo);
    worker(store, clock, executors, Channels::default(), owner)
}

/// The rollback of revision 3 to revision 2, enqueued.
async fn enqueue_undo(store: &Arc<dyn Store>) -> i64 {
    enqueue_undo_with(
        store,
        json!({"namespace": "prod", "name": "checkout", "kubernetes_revision": "2"}),
    )
    .await
}

async fn enqueue_undo_with(store: &Arc<dyn Store>, params: Value) -> i64 {
    let d = decision(store, "h").await;
    store
        .enqueue_action(&new_action(d, "rollout_undo", params), t0())
        .await
        .unwrap();
    d
}

/// What the controller made of the applied undo: revision 2's template runs, as
/// revision 4.
fn assert_renumbered(fake: &FakeKube) {
    let deployment = fake.get("Deployment", "prod", "checkout").unwrap();
    let reused = fake.get("ReplicaSet", "prod", REVISION_2).unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"],
        reused["spec"]["template"]["spec"]
    );
    assert_eq!(
        reused["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    assert_eq!(
        reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "2"
    );
}

/// A decision about checkout after the rollback that shows it healthy (V1).
async fn healthy_decision(store: &Arc<dyn Store>, at: chrono::DateTime<chrono::Utc>) {
    let decision = json!({
        "verdict": "ok", "reason": "No signal is active.",
        "target": {"cluster": "default", "namespace": "prod", "kind": "Deployment", "name": "checkout"},
        "fired": [], "holds": [], "suspect": null, "rollback_to": null,
        "regression_started_at": null, "recommended": [], "escalate": null,
        "verification": null, "gitops": null,
        "policy_version": "runbooks-1", "inputs_hash": "healthy",
    });
    let parsed: rollwarden::domain::Decision = serde_json::from_value(decision.clone()).unwrap();
    assert!(parsed.restores_service());
    store
        .record_decision(&NewDecision {
            target_key: CHECKOUT.into(),
            verdict: "ok".into(),
            reason: parsed.reason,
            inputs_hash: "healthy".into(),
            policy_version: "runbooks-1".into(),
            suspect_deploy_id: None,
            rollback_to_id: None,
            decision,
            decided_at: at,
        })
        .await
        .unwrap();
}

/// The kinds of the action's audit events, oldest first, and the events.
async fn timeline(store: &Arc<dyn Store>, action: &ActionRecord) -> (Vec<String>, Vec<Value>) {
    let events = store
        .audit_trail(&[format!("action:{}", action.id)])
        .await
        .unwrap();
    (
        events.iter().map(|e| e.kind.clone()).collect(),
        events.iter().map(|e| e.details.clone()).collect(),
    )
}

async fn a_worker_killed_after_its_undo_was_applied_resumes_to_verified(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = renumbering_cluster().await;
    let d = enqueue_undo(&db.store).await;
    // The API server applies the PATCH, but its answer never comes back: the worker
    // dies waiting for it, holding its lease.
    fake.hold_next_patch(DEPLOYMENT_PATH);
    let dying = undo_worker(&db.store, &clock, &fake, "dying");
    let step = tokio::spawn(async move { dying.step().await });
    tokio::time::timeout(Duration::from_secs(10), fake.wait_for_held_patches(1))
        .await
        .expect("the undo PATCH reached the API server");
    step.abort();
    let _ = step.await;
    assert_renumbered(&fake);
    assert_eq!(real_patches(&fake).len(), 1);
    assert_eq!(action_state(&db.store, d).await.state, "running");

    let next = undo_worker(&db.store, &clock, &fake, "next");
    assert_eq!(
        next.step().await.unwrap().ran,
        0,
        "the dead worker's lease holds"
    );
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(next.step().await.unwrap().ran, 1);
    let a = action_state(&db.store, d).await;
    assert!(a.resumed);
    assert_eq!(a.attempts, 2);
    assert_eq!(a.state, "verifying", "{a:?}");
    let result = a.result.clone().unwrap();
    assert_eq!(result["already_at_revision"], true, "{result}");
    assert_eq!(result["replicaset"], REVISION_2, "{result}");
    assert_eq!(result["revision"], 4, "{result}");
    assert_eq!(result["rollout"], "complete", "{result}");
    assert_eq!(
        real_patches(&fake).len(),
        1,
        "the rollback was not sent twice"
    );

    // V1: the next decision shows checkout healthy.
    clock.advance(chrono::Duration::seconds(30));
    healthy_decision(&db.store, rollwarden::clock::Clock::now(&*clock)).await;
    assert_eq!(next.step().await.unwrap().verified, 1);
    let a = action_state(&db.store, d).await;
    assert_eq!(a.state, "verified");

    // The audit trail tells what happened: the first attempt was about to patch
    // revision 2's ReplicaSet when it died; the second found that done.
    let (kinds, details) = timeline(&db.store, &a).await;
    assert_eq!(
        kinds,
        [
            "action.created",
            "action.started",
            "action.patching",
            "action.started",
            "action.verifying",
            "action.verified",
        ]
    );
    assert_eq!(details[1]["resumed"], false);
    assert_eq!(details[2]["replicaset"], REVISION_2);
    assert_eq!(details[2]["revision"], 2);
    assert_eq!(details[3]["resumed"], true);
    assert_eq!(details[4]["already_at_revision"], true);
}

async fn an_undo_whose_answer_was_lost_is_retried_against_the_world(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = renumbering_cluster().await;
    let d = enqueue_undo(&db.store).await;
    // The PATCH is applied, then the connection breaks before the answer: the worker
    // lives and sees a transport error.
    fake.hold_next_patch(DEPLOYMENT_PATH);
    let w = undo_worker(&db.store, &clock, &fake, "w");
    let step = {
        let w = w.clone();
        tokio::spawn(async move { w.step().await })
    };
    tokio::time::timeout(Duration::from_secs(10), fake.wait_for_held_patches(1))
        .await
        .expect("the undo PATCH reached the API server");
    fake.release_held_patches(HeldAnswer::Cut);
    step.await.unwrap().unwrap();
    let a = action_state(&db.store, d).await;
    assert_eq!(
        a.state, "pending",
        "a transport error is worth a retry: {a:?}"
    );
    assert_renumbered(&fake);

    clock.advance(chrono::Duration::seconds(5));
    assert_eq!(w.step().await.unwrap().ran, 1);
    let a = action_state(&db.store, d).await;
    assert!(!a.resumed);
    assert_eq!(a.attempts, 2);
    assert_eq!(a.state, "verifying", "{a:?}");
    assert_eq!(a.result.as_ref().unwrap()["already_at_revision"], true);
    assert_eq!(
        real_patches(&fake).len(),
        1,
        "the rollback was not sent twice"
    );
    let (kinds, _) = timeline(&db.store, &a).await;
    assert_eq!(
        kinds,
        [
            "action.created",
            "action.started",
            "action.patching",
            "action.retry",
            "action.started",
            "action.verifying",
        ]
    );
}

async fn an_unpinned_undo_resumed_after_renumbering_does_not_roll_forward(backend: Backend) {
    let db = TestStore::new(backend).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = renumbering_cluster().await;
    // No known-good revision: kubectl's "previous", revision 2 when the undo starts.
    let d = enqueue_undo_with(&db.store, json!({"namespace": "prod", "name": "checkout"})).await;
    fake.hold_next_patch(DEPLOYMENT_PATH);
    let dying = undo_worker(&db.store, &clock, &fake, "dying");
    let step = tokio::spawn(async move { dying.step().await });
    tokio::time::timeout(Duration::from_secs(10), fake.wait_for_held_patches(1))
        .await
        .expect("the undo PATCH reached the API server");
    step.abort();
    let _ = step.await;
    // Revision 2 is revision 4 now, so "previous" means revision 3: the bad build.
    assert_renumbered(&fake);

    let next = undo_worker(&db.store, &clock, &fake, "next");
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(next.step().await.unwrap().ran, 1);
    let a = action_state(&db.store, d).await;
    assert_eq!(a.state, "verifying", "{a:?}");
    assert_eq!(a.result.as_ref().unwrap()["replicaset"], REVISION_2);
    assert_eq!(
        real_patches(&fake).len(),
        1,
        "not rolled forward to revision 3"
    );
    assert_renumbered(&fake);
}

on_both_backends!(
    an_unpinned_undo_resumed_after_renumbering_does_not_roll_forward,
    the_worker_retries_an_unreachable_cluster_and_escalates_a_missing_release,
    a_worker_killed_after_its_undo_was_applied_resumes_to_verified,
    an_undo_whose_answer_was_lost_is_retried_against_the_world,
    a_worker_shut_down_mid_action_releases_its_lease,
    a_wake_up_during_a_step_is_not_lost,
    the_worker_retries_githubs_5xx_and_not_its_4xx,
    slack_notifications_retry_5xx_and_record_every_outcome,
    two_worker_pools_execute_200_duplicate_decisions_once,
    a_worker_killed_mid_action_is_not_repeated_when_the_world_shows_it,
);
