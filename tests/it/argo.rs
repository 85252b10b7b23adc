//! Argo Rollouts against the fake API server: the watcher's history of a canary run
//! (running, aborted), and the argo_abort and argo_undo executors sending exactly what
//! `kubectl argo rollouts abort` and `undo --to-revision` send (PROTOCOLS.md H.1, H.2),
//! and nothing when the Rollout already shows it.

use std::time::Duration;

use serde_json::{Value, json};

use rollwarden::actions::executor::{ArgoAbort, ArgoUndo, ExecOutcome, Executor, MemoryJournal};
use rollwarden::domain::TargetRef;
use rollwarden::store::StoredDeploy;

use crate::executors::record;
use crate::support::fake_kube::{FakeKube, RecordedRequest};
use crate::support::{Backend, TestApp, TestStore};

const ROLLOUT_PATH: &str = "/apis/argoproj.io/v1alpha1/namespaces/prod/rollouts/checkout";

fn template(tag: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "checkout"});
    if let Some(hash) = hash {
        labels["rollouts-pod-template-hash"] = json!(hash);
    }
    json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": format!("ghcr.io/acme/checkout:{tag}")}]}
    })
}

/// The Rollout prod/checkout running `tag`, with `status`.
fn rollout(tag: &str, status: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "prod", "uid": "uid-rollout"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": template(tag, None),
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
        },
        "status": status
    })
}

/// The ReplicaSet the controller made for revision `revision` running `tag`.
fn replicaset(revision: u32, tag: &str) -> Value {
    let hash = format!("hash{tag}");
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("checkout-{hash}"), "namespace": "prod",
            "uid": format!("uid-rs-{revision}"),
            "creationTimestamp": format!("2026-12-03T0{revision}:00:00Z"),
            "labels": {"app": "checkout", "rollouts-pod-template-hash": hash},
            "annotations": {"rollout.argoproj.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "name": "checkout", "uid": "uid-rollout", "controller": true,
                "blockOwnerDeletion": true}]
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "checkout", "rollouts-pod-template-hash": hash}},
            "template": template(tag, Some(&hash))
        }
    })
}

/// v5 and v6 in history, v7 the canary against stable v6.
pub(crate) fn canary_running(fake: &FakeKube) {
    fake.apply(replicaset(5, "v5"));
    fake.apply(replicaset(6, "v6"));
    fake.apply(replicaset(7, "v7"));
    fake.apply(rollout(
        "v7",
        json!({"currentPodHash": "hashv7", "stableRS": "hashv6", "phase": "Paused"}),
    ));
}

/// v7 promoted: stable and current.
fn promoted(fake: &FakeKube) {
    fake.apply(replicaset(5, "v5"));
    fake.apply(replicaset(6, "v6"));
    fake.apply(replicaset(7, "v7"));
    fake.apply(rollout(
        "v7",
        json!({"currentPodHash": "hashv7", "stableRS": "hashv7", "phase": "Healthy"}),
    ));
}

fn params(revision: Option<&str>) -> Value {
    json!({"namespace": "prod", "name": "checkout", "kind": "Rollout",
           "kubernetes_revision": revision})
}

fn patches(fake: &FakeKube) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

fn story(history: &[StoredDeploy]) -> Vec<String> {
    history
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}:{}",
                d.deploy.source.as_str(),
                d.deploy.revision,
                d.deploy.status,
                d.deploy.details["role"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

async fn wait_for_story(app: &TestApp, expected: &[&str]) -> Vec<StoredDeploy> {
    let target = TargetRef::new("default", "prod", "Rollout", "checkout");
    let mut last = Vec::new();
    for _ in 0..500 {
        last = app
            .store()
            .target_history(&target, None, 100)
            .await
            .unwrap();
        if story(&last) == expected {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "history never became {expected:?}; last seen {:?}",
        story(&last)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_records_a_canary_run_and_its_abort_as_argo_history() {
    let fake = FakeKube::start().await;
    canary_running(&fake);
    let app = TestApp::spawn_on(
        TestStore::new(Backend::Sqlite).await,
        |c| {
            c.kubernetes.enabled = true;
            c.kubernetes.argo_rollouts = true;
            c.kubernetes.namespaces = vec!["prod".into()];
        },
        Some(fake.client()),
    )
    .await;
    let history = wait_for_story(
        &app,
        &[
            "argo:7:progressing:canary",
            "argo:6:deployed:stable",
            "argo:5:superseded:old",
        ],
    )
    .await;
    assert_eq!(history[0].deploy.images, ["ghcr.io/acme/checkout:v7"]);
    assert_eq!(
        history[0].deploy.pod_template_hash.as_deref(),
        Some("hashv7")
    );
    assert_eq!(history[0].deploy.details["replicaset"], "checkout-hashv7");

    // The controller reconciles an abort.
    fake.apply(rollout(
        "v7",
        json!({"currentPodHash": "hashv7", "stableRS": "hashv6", "abort": true,
               "phase": "Degraded",
               "message": "RolloutAborted: Rollout aborted update to revision 7"}),
    ));
    let history = wait_for_story(
        &app,
        &[
            "argo:7:failed:canary",
            "argo:6:deployed:stable",
            "argo:5:superseded:old",
        ],
    )
    .await;
    assert_eq!(history[0].deploy.details["aborted"], true);
    // A Deployment's ReplicaSets are not mistaken for the Rollout's, and the other way.
    let deployments = app
        .store()
        .target_history(
            &TargetRef::deployment("default", "prod", "checkout"),
            None,
            10,
        )
        .await
        .unwrap();
    assert!(deployments.is_empty(), "{:?}", story(&deployments));
    app.stop().await;
}

#[tokio::test]
async fn argo_abort_patches_the_status_subresource_once() {
    let fake = FakeKube::start().await;
    canary_running(&fake);
    let abort = ArgoAbort {
        client: fake.client(),
    };
    let action = record("argo_abort", params(None));
    let journal = MemoryJournal::default();

    // A dry run asks the API server to validate and store nothing.
    let dry = abort.execute(&action, true, &journal).await;
    assert!(matches!(dry, ExecOutcome::DryRun { .. }), "{dry:?}");
    assert_eq!(
        fake.get("Rollout", "prod", "checkout").unwrap()["status"]["abort"],
        Value::Null
    );

    fake.clear_requests();
    let outcome = abort.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, verify } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(verify);
    assert_eq!(
        result["command"],
        "kubectl argo rollouts abort checkout -n prod"
    );
    assert_eq!(result["patched"], "rollouts/status");
    let sent = patches(&fake);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, format!("{ROLLOUT_PATH}/status"));
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(sent[0].body, Some(json!({"status": {"abort": true}})));
    let stored = fake.get("Rollout", "prod", "checkout").unwrap();
    assert_eq!(stored["status"]["abort"], true);
    // The spec is untouched: the status subresource changes only the status.
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/checkout:v7"
    );

    // Again (a retry, a second replica): the Rollout already says aborted.
    fake.clear_requests();
    let again = abort.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!(result["already_aborted"], true);
    assert!(patches(&fake).is_empty());
}

#[tokio::test]
async fn argo_abort_falls_back_to_the_rollout_without_a_status_subresource() {
    let fake = FakeKube::start().await;
    canary_running(&fake);
    fake.without_status_subresource("Rollout");
    let abort = ArgoAbort {
        client: fake.client(),
    };
    let outcome = abort
        .execute(
            &record("argo_abort", params(None)),
            false,
            &MemoryJournal::default(),
        )
        .await;
    let ExecOutcome::Done { result, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(result["patched"], "rollouts");
    let paths: Vec<String> = patches(&fake).into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [format!("{ROLLOUT_PATH}/status"), ROLLOUT_PATH.to_string()]
    );
}

#[tokio::test]
async fn argo_abort_of_a_promoted_rollout_sends_nothing_and_escalates() {
    let fake = FakeKube::start().await;
    promoted(&fake);
    let outcome = ArgoAbort {
        client: fake.client(),
    }
    .execute(
        &record("argo_abort", params(None)),
        false,
        &MemoryJournal::default(),
    )
    .await;
    assert!(
        matches!(&outcome, ExecOutcome::Escalate { error, .. } if error.contains("nothing to abort")),
        "{outcome:?}"
    );
    assert!(patches(&fake).is_empty());
}

#[tokio::test]
async fn argo_undo_sends_the_plugins_json_patch_and_then_nothing() {
    let fake = FakeKube::start().await;
    promoted(&fake);
    let undo = ArgoUndo {
        client: fake.client(),
    };
    let action = record("argo_undo", params(Some("6")));
    let journal = MemoryJournal::default();
    let outcome = undo.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, verify } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(verify);
    assert_eq!(
        result["command"],
        "kubectl argo rollouts undo checkout -n prod --to-revision=6"
    );
    assert_eq!(result["replicaset"], "checkout-hashv6");
    let sent = patches(&fake);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, ROLLOUT_PATH);
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    // The revision's template without the controller's hash label (H.2 step 5).
    assert_eq!(
        sent[0].body,
        Some(json!([{"op": "replace", "path": "/spec/template", "value": template("v6", None)}]))
    );
    // What it asked before: the Rollout, then its ReplicaSets by its selector.
    let reads: Vec<(String, String)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| (r.path, r.query))
        .collect();
    assert_eq!(reads[0].0, ROLLOUT_PATH);
    assert_eq!(reads[1].0, "/apis/apps/v1/namespaces/prod/replicasets");
    assert!(
        reads[1].1.contains("labelSelector=app%3Dcheckout"),
        "{reads:?}"
    );

    // The controller renumbers the restored ReplicaSet (6 → 8); a second attempt finds
    // it by the name it noted, sees the template in place, and sends nothing.
    let mut renumbered = replicaset(6, "v6");
    renumbered["metadata"]["annotations"]["rollout.argoproj.io/revision"] = json!("8");
    fake.apply(renumbered);
    fake.clear_requests();
    let again = undo.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!(result["already_at_revision"], true);
    assert_eq!(result["revision"], 8);
    assert!(patches(&fake).is_empty());
}

#[tokio::test]
async fn argo_undo_refuses_a_revision_not_in_history_and_sends_nothing() {
    let fake = FakeKube::start().await;
    promoted(&fake);
    let undo = ArgoUndo {
        client: fake.client(),
    };
    let journal = MemoryJournal::default();
    let missing = undo
        .execute(&record("argo_undo", params(Some("4"))), false, &journal)
        .await;
    assert_eq!(
        missing,
        ExecOutcome::Failed("unable to find specified revision 4 in history".into())
    );
    // Never "whatever is previous": no revision, no undo.
    let none = undo
        .execute(&record("argo_undo", params(None)), false, &journal)
        .await;
    assert!(matches!(none, ExecOutcome::Failed(_)), "{none:?}");
    // A hostile name never reaches a request.
    let mut hostile = params(Some("6"));
    hostile["name"] = json!("--all");
    let bad = undo
        .execute(&record("argo_undo", hostile), false, &journal)
        .await;
    assert!(matches!(bad, ExecOutcome::Failed(_)), "{bad:?}");
    assert!(patches(&fake).is_empty());
}

/// `tag`'s template as the API server stores it in a ReplicaSet: with the defaults it
/// fills in (PROTOCOLS.md H.2 step 4 compares against these).
fn defaulted_template(tag: &str, hash: &str) -> Value {
    json!({
        "metadata": {"creationTimestamp": null,
                     "labels": {"app": "checkout", "rollouts-pod-template-hash": hash}},
        "spec": {
            "containers": [{
                "name": "app", "image": format!("ghcr.io/acme/checkout:{tag}"),
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {},
            "terminationGracePeriodSeconds": 30
        }
    })
}

#[tokio::test]
async fn argo_undo_compares_as_the_plugin_does_the_rollouts_template_against_the_defaulted_one() {
    let fake = FakeKube::start().await;
    // The Rollout as written (a CRD: nothing defaulted), its ReplicaSets as the API
    // server returns them (defaulted). Revision 6's template is the Rollout's.
    let as_written = json!({
        "metadata": {"labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/checkout:v6",
                                 "ports": [{"containerPort": 8080, "name": "http"}]}]}
    });
    for (revision, tag) in [(5, "v5"), (6, "v6"), (7, "v7")] {
        let mut rs = replicaset(revision, tag);
        rs["spec"]["template"] = defaulted_template(tag, &format!("hash{tag}"));
        fake.apply(rs);
    }
    let mut ro = rollout(
        "v6",
        json!({"currentPodHash": "hashv6", "stableRS": "hashv6", "phase": "Healthy"}),
    );
    ro["spec"]["template"] = as_written.clone();
    fake.apply(ro.clone());
    let undo = ArgoUndo {
        client: fake.client(),
    };

    // DeepDerivative(rollout, replicaset): the defaults only the ReplicaSet has are not
    // compared, so the plugin prints "skipped rollback" and so does rollwarden.
    let outcome = undo
        .execute(
            &record("argo_undo", params(Some("6"))),
            false,
            &MemoryJournal::default(),
        )
        .await;
    let ExecOutcome::Done { result, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(result["already_at_revision"], true, "{result}");
    assert!(patches(&fake).is_empty(), "{:?}", patches(&fake));

    // What the Rollout sets and the ReplicaSet does not is a difference: sent.
    ro["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "FLAG", "value": "on"}]);
    fake.apply(ro);
    let outcome = undo
        .execute(
            &record("argo_undo", params(Some("6"))),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::Done { .. }), "{outcome:?}");
    let sent = patches(&fake);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let value = &sent[0].body.as_ref().unwrap()[0]["value"];
    assert_eq!(
        value["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(value["metadata"]["labels"], json!({"app": "checkout"}));
}
