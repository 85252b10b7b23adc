//! `rollout undo` and `rollout status` against the fake API server with a real kube
//! client: the exact requests kubectl would send, and what they leave behind.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::{Value, json};

use rollwarden::k8s::undo::{
    RolloutStatus, UndoError, UndoOutcome, UndoPlan, UndoTarget, UndoTo, rollout_status,
    rollout_undo, undo_patch,
};

use crate::support::fake_kube::{FakeKube, RecordedRequest};

const FIXTURE: &str = "tests/fixtures/deployment-with-replicasets.json";
const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/prod/deployments/checkout";
const IMAGE: &str = "registry.example.com/shop/checkout";

/// Upper bound for every wait, so that a broken undo fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("the call finished within the bound")
}

async fn started() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.load_list(FIXTURE);
    fake
}

fn deployment(fake: &FakeKube) -> Value {
    fake.get("Deployment", "prod", "checkout")
        .expect("the fixture Deployment exists")
}

/// The patch `undo_patch` computes from the fake's current objects.
fn expected_patch(fake: &FakeKube, to: &UndoTo) -> Value {
    let deployment: Deployment = serde_json::from_value(deployment(fake)).unwrap();
    let replicasets: Vec<ReplicaSet> = [
        "checkout-c6df558d4",
        "checkout-7c67857fd",
        "checkout-69c9cdb879",
    ]
    .into_iter()
    .map(|name| serde_json::from_value(fake.get("ReplicaSet", "prod", name).unwrap()).unwrap())
    .collect();
    match undo_patch(&deployment, &replicasets, to).unwrap() {
        UndoPlan::Patch { patch, .. } => serde_json::to_value(patch).unwrap(),
        UndoPlan::Skip { target } => panic!("expected a patch, got a skip of {target:?}"),
    }
}

/// The fixture's ReplicaSet `name` as an undo's target.
fn target(fake: &FakeKube, name: &str) -> UndoTarget {
    let rs: ReplicaSet =
        serde_json::from_value(fake.get("ReplicaSet", "prod", name).unwrap()).unwrap();
    UndoTarget::of(&rs)
}

/// The template of the fixture's ReplicaSet `name`, as it goes into the Deployment.
fn replicaset_template(fake: &FakeKube, name: &str) -> Value {
    let mut template = fake.get("ReplicaSet", "prod", name).unwrap()["spec"]["template"].clone();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    template
}

fn patches(fake: &FakeKube) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

fn set_progressing(deployment: &mut Value, reason: &str, status: &str, message: &str) {
    let conditions = deployment["status"]["conditions"].as_array_mut().unwrap();
    let progressing = conditions
        .iter_mut()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    progressing["reason"] = json!(reason);
    progressing["status"] = json!(status);
    progressing["message"] = json!(message);
}

/// The fixture Deployment mid-rollout: one of three replicas updated.
fn progressing(fake: &FakeKube) -> Value {
    let mut d = deployment(fake);
    d["status"]["updatedReplicas"] = json!(1);
    set_progressing(
        &mut d,
        "ReplicaSetUpdated",
        "True",
        "ReplicaSet \"checkout-69c9cdb879\" is progressing.",
    );
    d
}

/// The fixture Deployment whose rollout ran past its progress deadline.
fn past_deadline(fake: &FakeKube) -> Value {
    let mut d = progressing(fake);
    set_progressing(
        &mut d,
        "ProgressDeadlineExceeded",
        "False",
        "ReplicaSet \"checkout-69c9cdb879\" has timed out progressing.",
    );
    d
}

#[tokio::test]
async fn undo_sends_kubectls_patch_and_restores_the_previous_revision() {
    let fake = started().await;
    let before = deployment(&fake);
    let expected = expected_patch(&fake, &UndoTo::Previous);
    let outcome = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Previous,
        false,
    ))
    .await
    .unwrap();
    assert_eq!(
        outcome,
        UndoOutcome::RolledBack {
            target: target(&fake, "checkout-7c67857fd"),
            images: vec![format!("{IMAGE}:1.5.0")],
            dry_run: false,
        }
    );

    let requests = fake.requests();
    let summary: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", DEPLOYMENT_PATH),
            ("GET", "/apis/apps/v1/namespaces/prod/replicasets"),
            ("PATCH", DEPLOYMENT_PATH),
        ]
    );
    assert_eq!(
        requests[1].query_param("labelSelector").as_deref(),
        Some("app.kubernetes.io/instance=checkout,app.kubernetes.io/name=checkout")
    );
    let patch = &requests[2];
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(patch.query_param("dryRun"), None);
    assert_eq!(patch.body.as_ref(), Some(&expected));

    let after = deployment(&fake);
    assert_eq!(
        after["spec"]["template"],
        replicaset_template(&fake, "checkout-7c67857fd")
    );
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{IMAGE}:1.5.0")
    );
    assert_eq!(
        after["metadata"]["annotations"],
        json!({
            "deployment.kubernetes.io/revision": "3",
            "kubernetes.io/change-cause": "release 1.5.0 (pipeline 2178)",
            "meta.helm.sh/release-name": "checkout",
            "meta.helm.sh/release-namespace": "prod"
        })
    );
    // Replicas, strategy and selector are not the rollback's business.
    for field in [
        "replicas",
        "strategy",
        "selector",
        "progressDeadlineSeconds",
    ] {
        assert_eq!(after["spec"][field], before["spec"][field], "{field}");
    }
    assert_eq!(after["metadata"]["generation"], 4);
}

#[tokio::test]
async fn undo_to_revision_1_restores_revision_1() {
    let fake = started().await;
    let expected = expected_patch(&fake, &UndoTo::Revision(1));
    let outcome = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Revision(1),
        false,
    ))
    .await
    .unwrap();
    assert_eq!(
        outcome,
        UndoOutcome::RolledBack {
            target: target(&fake, "checkout-c6df558d4"),
            images: vec![format!("{IMAGE}:1.4.0")],
            dry_run: false,
        }
    );
    let sent = patches(&fake);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, DEPLOYMENT_PATH);
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(sent[0].body.as_ref(), Some(&expected));

    let after = deployment(&fake);
    assert_eq!(
        after["spec"]["template"],
        replicaset_template(&fake, "checkout-c6df558d4")
    );
    assert_eq!(
        after["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "release 1.4.0 (pipeline 2101)"
    );
    assert_eq!(
        after["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
}

#[tokio::test]
async fn a_dry_run_asks_the_server_to_validate_and_changes_nothing() {
    let fake = started().await;
    let before = deployment(&fake);
    let expected = expected_patch(&fake, &UndoTo::Previous);
    let outcome = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Previous,
        true,
    ))
    .await
    .unwrap();
    assert_eq!(
        outcome,
        UndoOutcome::RolledBack {
            target: target(&fake, "checkout-7c67857fd"),
            images: vec![format!("{IMAGE}:1.5.0")],
            dry_run: true,
        }
    );
    let sent = patches(&fake);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].query_param("dryRun").as_deref(), Some("All"));
    assert_eq!(sent[0].body.as_ref(), Some(&expected));
    assert_eq!(deployment(&fake), before);
}

#[tokio::test]
async fn the_revision_already_running_sends_no_patch() {
    let fake = started().await;
    let before = deployment(&fake);
    let outcome = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Revision(3),
        false,
    ))
    .await
    .unwrap();
    assert_eq!(
        outcome,
        UndoOutcome::Skipped {
            target: target(&fake, "checkout-69c9cdb879")
        }
    );
    assert!(patches(&fake).is_empty());
    assert_eq!(deployment(&fake), before);
}

#[tokio::test]
async fn a_missing_revision_is_refused_without_a_patch() {
    let fake = started().await;
    let err = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Revision(7),
        false,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find specified revision 7 in history"
    );
    assert!(patches(&fake).is_empty());
}

#[tokio::test]
async fn a_forbidden_patch_names_the_verb_and_resource() {
    let fake = started().await;
    fake.set_fail_verbs("deployments", &["patch"], 403);
    let before = deployment(&fake);
    let err = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Previous,
        false,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            UndoError::Forbidden {
                verb: "patch",
                resource: "deployments.apps",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.metric_label(), "forbidden");
    assert_eq!(
        err.to_string(),
        format!(
            "rollwarden is not allowed to patch deployments.apps in namespace prod: \
             deployments.apps \"checkout\" is forbidden: User \"{}\" cannot patch resource \
             \"deployments\" in API group \"apps\" in the namespace \"prod\"",
            crate::support::fake_kube::FAKE_USER
        )
    );
    assert_eq!(deployment(&fake), before);
}

#[tokio::test]
async fn a_forbidden_list_names_replicasets() {
    let fake = started().await;
    fake.set_fail_verbs("replicasets", &["list"], 403);
    let err = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "checkout",
        &UndoTo::Previous,
        false,
    ))
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("rollwarden is not allowed to list replicasets.apps in namespace prod: "),
        "{err}"
    );
    assert!(patches(&fake).is_empty());
}

#[tokio::test]
async fn a_missing_deployment_is_named() {
    let fake = started().await;
    let err = bounded(rollout_undo(
        &fake.client(),
        "prod",
        "cart",
        &UndoTo::Previous,
        false,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployment \"cart\" not found in namespace prod"
    );
    assert_eq!(err.metric_label(), "not_found");
}

#[tokio::test]
async fn a_complete_rollout_is_complete() {
    let fake = started().await;
    let status = bounded(rollout_status(
        &fake.client(),
        "prod",
        "checkout",
        Duration::from_secs(5),
        Duration::from_millis(50),
    ))
    .await
    .unwrap();
    assert_eq!(status, RolloutStatus::Complete);
}

#[tokio::test]
async fn a_rollout_past_its_progress_deadline_failed() {
    let fake = started().await;
    fake.apply(past_deadline(&fake));
    let status = bounded(rollout_status(
        &fake.client(),
        "prod",
        "checkout",
        Duration::from_secs(5),
        Duration::from_millis(50),
    ))
    .await
    .unwrap();
    assert_eq!(
        status,
        RolloutStatus::Failed {
            message: "deployment \"checkout\" exceeded its progress deadline: \
                      ReplicaSet \"checkout-69c9cdb879\" has timed out progressing."
                .into()
        }
    );
}

#[tokio::test]
async fn a_rollout_that_never_completes_times_out_without_spinning() {
    let fake = started().await;
    fake.apply(progressing(&fake));
    fake.clear_requests();
    let started = Instant::now();
    let status = bounded(rollout_status(
        &fake.client(),
        "prod",
        "checkout",
        Duration::from_millis(300),
        Duration::from_millis(50),
    ))
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status, RolloutStatus::TimedOut);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let gets = fake.requests().len();
    assert!((2..=7).contains(&gets), "{gets} GETs in 300 ms at 50 ms");
}

#[tokio::test]
async fn a_rollout_completes_while_it_is_watched() {
    let fake = started().await;
    let done = deployment(&fake);
    fake.apply(progressing(&fake));
    let client = fake.client();
    let status = rollout_status(
        &client,
        "prod",
        "checkout",
        Duration::from_secs(5),
        Duration::from_millis(20),
    );
    let controller = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fake.apply(done);
    };
    let (status, ()) = bounded(async { tokio::join!(status, controller) }).await;
    assert_eq!(status.unwrap(), RolloutStatus::Complete);
}

#[tokio::test]
async fn undoing_a_failed_rollout_does_not_report_the_old_deadline() {
    // The controller has not seen the rolled-back spec yet, so the status still says
    // ProgressDeadlineExceeded for the bad revision; kubectl waits, and so do we.
    let fake = started().await;
    fake.apply(past_deadline(&fake));
    let client = fake.client();
    let outcome = bounded(rollout_undo(
        &client,
        "prod",
        "checkout",
        &UndoTo::Previous,
        false,
    ))
    .await
    .unwrap();
    assert!(matches!(
        outcome,
        UndoOutcome::RolledBack { ref target, .. } if target.revision == 2
    ));
    let status = bounded(rollout_status(
        &client,
        "prod",
        "checkout",
        Duration::from_millis(200),
        Duration::from_millis(50),
    ))
    .await
    .unwrap();
    assert_eq!(status, RolloutStatus::TimedOut);
}

#[tokio::test]
async fn with_the_controller_simulated_an_undo_of_a_failed_rollout_completes() {
    let fake = started().await;
    fake.apply(past_deadline(&fake));
    fake.simulate_deployment_controller(true);
    let client = fake.client();
    let outcome = bounded(rollout_undo(
        &client,
        "prod",
        "checkout",
        &UndoTo::Previous,
        false,
    ))
    .await
    .unwrap();
    assert!(matches!(
        outcome,
        UndoOutcome::RolledBack { ref target, .. } if target.revision == 2
    ));
    let status = bounded(rollout_status(
        &client,
        "prod",
        "checkout",
        WAIT,
        Duration::from_millis(20),
    ))
    .await
    .unwrap();
    assert_eq!(status, RolloutStatus::Complete);
    assert_eq!(patches(&fake).len(), 1);

    // The controller reused revision 2's ReplicaSet as revision 4, as it does.
    let d = deployment(&fake);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    assert_eq!(
        d["spec"]["template"],
        replicaset_template(&fake, "checkout-7c67857fd")
    );
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    let reused = fake
        .get("ReplicaSet", "prod", "checkout-7c67857fd")
        .unwrap();
    let annotations = &reused["metadata"]["annotations"];
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "4");
    assert_eq!(
        annotations["deployment.kubernetes.io/revision-history"],
        "2"
    );
    assert_eq!(reused["spec"]["replicas"], 3);
    assert_eq!(reused["status"]["availableReplicas"], 3);
    let bad = fake
        .get("ReplicaSet", "prod", "checkout-69c9cdb879")
        .unwrap();
    assert_eq!(bad["spec"]["replicas"], 0);
    assert_eq!(bad["status"]["replicas"], 0);
}
