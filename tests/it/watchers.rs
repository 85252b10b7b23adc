//! The Kubernetes watchers against the fake API server: a rollout 1→2→3, a ReplicaSet
//! prune, a Helm upgrade and rollback, a dropped watch, a forced relist, a restart.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use rollwarden::domain::TargetRef;
use rollwarden::store::StoredDeploy;

use crate::on_both_backends;
use crate::support::fake_kube::FakeKube;
use crate::support::{Backend, TestApp, TestStore};

const FIXTURE: &str = include_str!("../fixtures/deployment-with-replicasets.json");
const HELM_HISTORY: &str = include_str!("../fixtures/helm-release-history.json");

fn fixture(kind: &str, revision: &str) -> Value {
    let list: Value = serde_json::from_str(FIXTURE).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == revision
        })
        .cloned()
        .unwrap()
}

/// The fixture Deployment, completely rolled out at `revision`.
fn deployment_at(revision: u32) -> Value {
    let mut d = fixture("Deployment", "3");
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = revision.to_string().into();
    d
}

fn replicaset(revision: u32) -> Value {
    fixture("ReplicaSet", &revision.to_string())
}

fn helm_secret(version: u32) -> Value {
    let list: Value = serde_json::from_str(HELM_HISTORY).unwrap();
    list["items"][version as usize - 1].clone()
}

/// A Helm release Secret the way Helm writes it: base64(gzip(JSON)) inside Secret data.
fn encoded_helm_secret(
    version: u32,
    status: &str,
    description: &str,
    app_version: &str,
    deployed: &str,
) -> Value {
    let release = json!({
        "name": "checkout", "namespace": "prod", "version": version,
        "info": {"first_deployed": "2026-08-20T09:12:40Z", "last_deployed": deployed,
                 "deleted": "", "description": description, "status": status},
        "chart": {"metadata": {"name": "checkout", "version": "0.3.2", "appVersion": app_version}},
        "manifest": "---\n# Source: checkout/templates/deployment.yaml\n"
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(release.to_string().as_bytes()).unwrap();
    let helm_text = STANDARD.encode(gz.finish().unwrap());
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": format!("sh.helm.release.v1.checkout.v{version}"), "namespace": "prod",
                     "labels": {"name": "checkout", "owner": "helm", "status": status, "version": version.to_string()}},
        "data": {"release": STANDARD.encode(helm_text)}
    })
}

fn checkout() -> TargetRef {
    TargetRef::deployment("default", "prod", "checkout")
}

fn story(history: &[StoredDeploy]) -> Vec<String> {
    history
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}",
                d.deploy.source.as_str(),
                d.deploy.revision,
                d.deploy.status
            )
        })
        .collect()
}

/// Polls the target's timeline until it equals `expected` (bounded: 10 s).
async fn wait_for_story(app: &TestApp, expected: &[&str]) -> Vec<StoredDeploy> {
    let mut last = Vec::new();
    for _ in 0..500 {
        last = app
            .store()
            .target_history(&checkout(), None, 100)
            .await
            .unwrap();
        if story(&last) == expected {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timeline never became {expected:?}; last seen {:?}",
        story(&last)
    );
}

async fn spawn_watching(db: TestStore, fake: &FakeKube) -> TestApp {
    TestApp::spawn_on(
        db,
        |c| {
            c.kubernetes.enabled = true;
            c.kubernetes.namespaces = vec!["prod".into()];
        },
        Some(fake.client()),
    )
    .await
}

async fn the_watchers_follow_rollouts_and_helm_through_prunes_drops_and_restarts(backend: Backend) {
    let fake = FakeKube::start().await;
    fake.apply(deployment_at(1));
    fake.apply(replicaset(1));
    let app = spawn_watching(TestStore::new(backend).await, &fake).await;
    wait_for_story(&app, &["kubernetes:1:deployed"]).await;

    // Rollout to revision 2.
    fake.apply(replicaset(2));
    fake.apply(deployment_at(2));
    wait_for_story(&app, &["kubernetes:2:deployed", "kubernetes:1:superseded"]).await;

    // The watch connection drops; revision 3 rolls out meanwhile.
    fake.drop_watches();
    fake.apply(replicaset(3));
    fake.apply(deployment_at(3));
    let history = wait_for_story(
        &app,
        &[
            "kubernetes:3:deployed",
            "kubernetes:2:superseded",
            "kubernetes:1:superseded",
        ],
    )
    .await;
    let three = &history[0].deploy;
    assert_eq!(three.images, ["registry.example.com/shop/checkout:1.6.0"]);
    assert_eq!(
        three.change_cause.as_deref(),
        Some("release 1.6.0 (pipeline 2231)")
    );
    assert_eq!(three.helm_release.as_deref(), Some("checkout"));
    assert_eq!(
        three.finished_at,
        Some("2026-08-22T13:55:58Z".parse().unwrap())
    );

    // Kubernetes prunes revision 1 (revisionHistoryLimit); Helm's history arrives.
    fake.delete("apps/v1", "ReplicaSet", "prod", "checkout-c6df558d4");
    for version in 1..=3 {
        fake.apply(helm_secret(version));
    }
    wait_for_story(
        &app,
        &[
            "kubernetes:3:deployed",
            "helm:3:deployed",
            "kubernetes:2:superseded",
            "helm:2:superseded",
            "kubernetes:1:superseded",
            "helm:1:superseded",
        ],
    )
    .await;

    // A malformed release Secret is skipped and counted, never fatal.
    let mut broken = encoded_helm_secret(
        9,
        "deployed",
        "Upgrade complete",
        "9.9.9",
        "2026-08-22T15:00:00Z",
    );
    broken["metadata"]["name"] = "sh.helm.release.v1.checkout.v9".into();
    broken["data"]["release"] = STANDARD.encode("!!! not base64 !!!").into();
    fake.apply(broken);

    // helm rollback checkout 2: revision 4 copies 2, revision 3 is superseded. The
    // watch history is compacted meanwhile, so the watcher has to relist.
    fake.expire_history();
    fake.drop_watches();
    fake.apply(encoded_helm_secret(
        3,
        "superseded",
        "Upgrade complete",
        "1.6.0",
        "2026-08-22T13:55:00Z",
    ));
    fake.apply(encoded_helm_secret(
        4,
        "deployed",
        "Rollback to 2",
        "1.5.0",
        "2026-08-22T14:30:00Z",
    ));
    // The Deployment controller reuses revision 2's ReplicaSet as revision 4.
    let mut rs2 = replicaset(2);
    rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4".into();
    rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] = "2".into();
    fake.apply(rs2);
    fake.apply(deployment_at(4));
    let history = wait_for_story(
        &app,
        &[
            "helm:4:deployed",
            "kubernetes:4:deployed",
            "kubernetes:3:superseded",
            "helm:3:superseded",
            "kubernetes:2:superseded",
            "helm:2:superseded",
            "kubernetes:1:superseded",
            "helm:1:superseded",
        ],
    )
    .await;
    assert_eq!(
        history[0].deploy.description.as_deref(),
        Some("Rollback to 2")
    );
    assert_eq!(history[1].deploy.details["revision_history"], json!(["2"]));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("rollwarden_helm_decode_errors_total{reason=\"base64\"} 1"),
        "{metrics}"
    );

    // Restart: rollwarden is down while nothing changes, then relists. No duplicates.
    let db = app.stop().await.reopened().await;
    let app = spawn_watching(db, &fake).await;
    fake.apply(encoded_helm_secret(
        5,
        "deployed",
        "Upgrade complete",
        "1.7.0",
        "2026-08-22T16:00:00Z",
    ));
    let history = app
        .store()
        .target_history(&checkout(), None, 100)
        .await
        .unwrap();
    let mut keys: Vec<_> = history
        .iter()
        .map(|d| (d.deploy.source, d.deploy.revision.clone()))
        .collect();
    let before = keys.len();
    keys.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    keys.dedup();
    assert_eq!(keys.len(), before, "a relist never duplicates a row");
    let history = wait_for_story_prefix(&app, "helm:5:deployed").await;
    assert_eq!(history.len(), 9);
}

async fn wait_for_story_prefix(app: &TestApp, first: &str) -> Vec<StoredDeploy> {
    for _ in 0..500 {
        let history = app
            .store()
            .target_history(&checkout(), None, 100)
            .await
            .unwrap();
        if story(&history).first().map(String::as_str) == Some(first) {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{first} never arrived");
}

on_both_backends!(the_watchers_follow_rollouts_and_helm_through_prunes_drops_and_restarts);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rbac_is_counted_and_retried_until_granted() {
    let fake = FakeKube::start().await;
    fake.set_fail("replicasets", 403);
    fake.apply(deployment_at(1));
    fake.apply(replicaset(1));
    let app = spawn_watching(TestStore::new(Backend::Sqlite).await, &fake).await;
    let mut counted = false;
    for _ in 0..500 {
        if app.metrics().await.contains(
            "rollwarden_kubernetes_watch_errors_total{resource=\"replicasets.apps\",reason=\"forbidden\"}",
        ) {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counted, "the forbidden list was not counted");
    fake.clear_fail("replicasets");
    wait_for_story(&app, &["kubernetes:1:deployed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_on_postgres_one_watches_and_the_other_takes_over() {
    let fake = FakeKube::start().await;
    fake.apply(deployment_at(1));
    fake.apply(replicaset(1));
    let db = TestStore::new(Backend::Postgres).await;
    let second_pool = db.reopen().await;
    let watching = |c: &mut rollwarden::config::Config| {
        c.kubernetes.enabled = true;
        c.kubernetes.namespaces = vec!["prod".into()];
        c.kubernetes.lease_retry_secs = 1;
    };
    let first = TestApp::spawn_on(db, watching, Some(fake.client())).await;
    wait_for_story(&first, &["kubernetes:1:deployed"]).await;
    // Deployments, ReplicaSets and Helm Secrets: three watches for one replica.
    tokio::time::timeout(Duration::from_secs(5), fake.wait_for_watches(3))
        .await
        .unwrap();

    let mut other = TestStore::new(Backend::Postgres).await;
    other.store = second_pool;
    let second = TestApp::spawn_on(other, watching, Some(fake.client())).await;
    // Give the second replica two lease attempts: it must not start watching.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.open_watches(), 3, "only the lease holder watches");
    // What the PrometheusRule's RollwardenWatchersDown reads: one leader per cluster.
    let leading =
        |up: u8| format!("rollwarden_kubernetes_watchers_leading{{cluster=\"default\"}} {up}\n");
    assert!(first.metrics().await.contains(&leading(1)));
    assert!(second.metrics().await.contains(&leading(0)));

    // The holder stops (its connection and lock go); the other takes over.
    first.stop().await;
    fake.apply(replicaset(2));
    fake.apply(deployment_at(2));
    wait_for_story(
        &second,
        &["kubernetes:2:deployed", "kubernetes:1:superseded"],
    )
    .await;
}
