//! Several clusters (`[[kubernetes.clusters]]`) against two fake API servers: each
//! cluster's history is recorded under its own name, an unreachable cluster shows on
//! `/readyz` and in the metric without stopping the other, and a rollback goes to its
//! target's cluster only.

use std::time::Duration;

use serde_json::json;

use rollwarden::actions::executor::{ExecOutcome, Executors, MemoryJournal};
use rollwarden::config::ClusterConfig;
use rollwarden::domain::TargetRef;

use crate::executors::record;
use crate::support::fake_kube::FakeKube;
use crate::support::{Backend, TestApp, TestStore};

const FIXTURE: &str = "tests/fixtures/deployment-with-replicasets.json";
const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/prod/deployments/checkout";

fn cluster(name: &str) -> ClusterConfig {
    ClusterConfig {
        name: name.into(),
        ..ClusterConfig::default()
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn revisions(app: &TestApp, cluster: &str) -> usize {
    app.store()
        .target_history(
            &TargetRef::deployment(cluster, "prod", "checkout"),
            None,
            10,
        )
        .await
        .unwrap()
        .len()
}

async fn cluster_state(app: &TestApp, name: &str) -> serde_json::Value {
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    ready["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not on /readyz: {ready}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_is_watched_on_its_own_and_one_down_stops_nothing_else() {
    let eu = FakeKube::start().await;
    let us = FakeKube::start().await;
    eu.load_list(FIXTURE);
    us.load_list(FIXTURE);
    let app = TestApp::spawn_on_clusters(
        TestStore::new(Backend::Sqlite).await,
        |c| {
            c.kubernetes.enabled = true;
            c.kubernetes.namespaces = vec!["prod".into()];
            c.kubernetes.cluster = "eu-1".into();
            c.kubernetes.clusters = vec![cluster("eu-1"), cluster("us-1")];
        },
        vec![("eu-1".into(), eu.client()), ("us-1".into(), us.client())],
    )
    .await;

    // The same Deployment in both clusters: two targets, one history each.
    wait_until("both histories recorded", || async {
        revisions(&app, "eu-1").await == 3 && revisions(&app, "us-1").await == 3
    })
    .await;
    wait_until("both clusters reachable", || async {
        cluster_state(&app, "eu-1").await["reachable"] == true
            && cluster_state(&app, "us-1").await["reachable"] == true
    })
    .await;
    assert_eq!(cluster_state(&app, "eu-1").await["watching"], true);

    // us-1's API server goes away.
    drop(us);
    wait_until("us-1 reported unreachable", || async {
        cluster_state(&app, "us-1").await["reachable"] == false
    })
    .await;
    assert_eq!(cluster_state(&app, "us-1").await["last_error"], "transport");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("rollwarden_kubernetes_cluster_reachable{cluster=\"us-1\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("rollwarden_kubernetes_cluster_reachable{cluster=\"eu-1\"} 1"));

    // eu-1 goes on: a fourth revision is recorded there.
    let mut rs = eu.get("ReplicaSet", "prod", "checkout-7c67857fd").unwrap();
    rs["metadata"]["name"] = json!("checkout-5d9f8b7c6");
    rs["metadata"]["uid"] = json!("uid-rs-4");
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("4");
    rs["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    eu.apply(rs);
    wait_until("eu-1's fourth revision recorded", || async {
        revisions(&app, "eu-1").await == 4
    })
    .await;
    assert_eq!(revisions(&app, "us-1").await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_rollback_goes_to_its_targets_cluster_and_nowhere_else() {
    let eu = FakeKube::start().await;
    let us = FakeKube::start().await;
    for fake in [&eu, &us] {
        fake.load_list(FIXTURE);
        fake.simulate_deployment_controller(true);
    }
    let executors = Executors::default().with_clusters(
        &[("eu-1".into(), eu.client()), ("us-1".into(), us.client())],
        Duration::from_secs(10),
        Duration::from_millis(20),
    );
    let undo = executors.get("rollout_undo").unwrap();
    let params = |cluster: &str| {
        json!({"cluster": cluster, "namespace": "prod", "name": "checkout",
               "kubernetes_revision": "2"})
    };
    let outcome = undo
        .execute(
            &record("rollout_undo", params("us-1")),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::Done { .. }), "{outcome:?}");
    let patched = |fake: &FakeKube| {
        fake.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path == DEPLOYMENT_PATH)
            .count()
    };
    assert_eq!(patched(&us), 1);
    assert_eq!(patched(&eu), 0, "nothing sent to the other cluster");
    assert!(eu.requests().is_empty(), "{:?}", eu.requests());

    // A cluster nobody configured: refused before any request.
    let unknown = undo
        .execute(
            &record("rollout_undo", params("ap-1")),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(
        matches!(&unknown, ExecOutcome::Failed(e) if e.contains("\"ap-1\"") && e.contains("eu-1, us-1")),
        "{unknown:?}"
    );
    assert!(eu.requests().is_empty());
}
