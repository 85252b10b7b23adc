//! The RBAC table (src/k8s/rbac.toml) against the requests rollwarden really sends: the
//! watchers and the rollout_undo executor run against the fake API server, and every
//! request they send must be a (group, resource, verb) their rows grant.
//! scripts/check-manifests holds the rendered manifests to the same table.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use rollwarden::k8s::set_image::set_images;
use rollwarden::k8s::undo::{UndoTo, rollout_status, rollout_undo};

use crate::support::fake_kube::{FakeKube, RecordedRequest};
use crate::support::{Backend, TestApp, TestStore};

const TABLE: &str = include_str!("../../src/k8s/rbac.toml");
const FIXTURE: &str = "tests/fixtures/deployment-with-replicasets.json";
const HELM_HISTORY: &str = "tests/fixtures/helm-release-history.json";

#[derive(Deserialize)]
struct Table {
    grant: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    user: String,
    component: String,
    group: String,
    resource: String,
    verbs: Vec<String>,
    why: String,
}

type Permission = (String, String, String);

/// What the table grants `user`.
fn granted(user: &str) -> BTreeSet<Permission> {
    let table: Table = toml::from_str(TABLE).expect("src/k8s/rbac.toml parses");
    let mut out = BTreeSet::new();
    for row in table.grant.iter().filter(|r| r.user == user) {
        assert!(
            !row.why.is_empty(),
            "{user}: {} has no reason",
            row.resource
        );
        assert!(
            row.component.is_empty()
                || row.user == "helm_rollback"
                || (row.component == "argo-rollouts" && row.user.starts_with("argo_")),
            "{user}: only the helm and Argo rows live in components today"
        );
        for verb in &row.verbs {
            out.insert((row.group.clone(), row.resource.clone(), verb.clone()));
        }
    }
    assert!(!out.is_empty(), "the table has no rows for {user}");
    out
}

/// The RBAC terms of one request: `/api/v1/...` is the core group, `/apis/G/V/...`
/// group G; a GET of a collection is `list`, with `watch=true` it is `watch`.
fn permission(r: &RecordedRequest) -> Permission {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource request: {} {}", r.method, r.path),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_string(), false),
        [resource, _name] => ((*resource).to_string(), true),
        [resource, _name, subresource] => (format!("{resource}/{subresource}"), true),
        _ => panic!("unexpected path {}", r.path),
    };
    let verb = match (r.method.as_str(), named) {
        ("GET", _) if r.is_watch() => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("PATCH", _) => "patch",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (method, _) => panic!("unexpected method {method} on {}", r.path),
    };
    (group.to_string(), resource, verb.to_string())
}

fn assert_within(user: &str, requests: &[RecordedRequest]) -> BTreeSet<Permission> {
    let grant: BTreeSet<Permission> = user.split('+').flat_map(granted).collect();
    let used: BTreeSet<Permission> = requests.iter().map(permission).collect();
    let beyond: Vec<&Permission> = used.difference(&grant).collect();
    assert!(
        beyond.is_empty(),
        "{user} sent requests src/k8s/rbac.toml does not grant it: {beyond:?}"
    );
    used
}

#[tokio::test]
async fn the_rollout_undo_executor_sends_only_what_its_rows_grant() {
    let fake = FakeKube::start().await;
    fake.load_list(FIXTURE);
    let client = fake.client();
    let bounded = Duration::from_secs(10);
    // The executor's requests: a server-side dry run, the undo, its status, and the
    // image revert (`set image`) it falls back to.
    tokio::time::timeout(bounded, async {
        rollout_undo(&client, "prod", "checkout", &UndoTo::Previous, true)
            .await
            .unwrap();
        rollout_undo(&client, "prod", "checkout", &UndoTo::Previous, false)
            .await
            .unwrap();
        rollout_status(
            &client,
            "prod",
            "checkout",
            Duration::from_millis(10),
            Duration::from_millis(10),
        )
        .await
        .unwrap();
        // The fake answers a strategic merge patch 415 (it applies JSON and merge
        // patches only), after recording it: RBAC judges the request, which was sent.
        let revert = set_images(
            &client,
            "prod",
            "checkout",
            &["registry.example.com/shop/checkout:1.4.0".to_string()],
            false,
        )
        .await;
        assert!(
            format!("{revert:?}").contains("415"),
            "the fake took the strategic merge patch: {revert:?}"
        );
    })
    .await
    .expect("the executor's calls finish within 10 s");

    let used = assert_within("rollout_undo", &fake.requests());
    // Every row is used: a grant nobody needs is a grant too many.
    assert_eq!(used, granted("rollout_undo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchers_send_only_what_their_rows_grant() {
    let fake = FakeKube::start().await;
    fake.load_list(FIXTURE);
    fake.load_list(HELM_HISTORY);
    let db = TestStore::new(Backend::Sqlite).await;
    // Every namespace (kubernetes.namespaces = []): the cluster-wide paths.
    let app = TestApp::spawn_on(db, |c| c.kubernetes.enabled = true, Some(fake.client())).await;
    // Deployments, ReplicaSets and Helm Secrets: listed, then watched.
    tokio::time::timeout(Duration::from_secs(10), fake.wait_for_watches(3))
        .await
        .expect("the three watches open within 10 s");
    app.stop().await;

    let used = assert_within("watchers", &fake.requests());
    assert_eq!(used, granted("watchers"));
}

#[tokio::test]
async fn the_argo_executors_send_only_what_their_rows_grant() {
    use rollwarden::actions::executor::{ArgoAbort, ArgoUndo, Executor, MemoryJournal};
    let fake = FakeKube::start().await;
    crate::argo::canary_running(&fake);
    let client = fake.client();
    let journal = MemoryJournal::default();
    let params = |revision: Option<&str>| serde_json::json!({"namespace": "prod", "name": "checkout", "kubernetes_revision": revision});
    let abort = ArgoAbort {
        client: client.clone(),
    };
    let action = crate::executors::record("argo_abort", params(None));
    abort.execute(&action, false, &journal).await;
    // And the fallback to the Rollout itself, on a CRD without the status subresource.
    crate::argo::canary_running(&fake);
    fake.without_status_subresource("Rollout");
    abort.execute(&action, false, &journal).await;
    let used = assert_within("argo_abort", &fake.requests());
    assert_eq!(used, granted("argo_abort"));

    fake.clear_requests();
    let undo = ArgoUndo { client };
    undo.execute(
        &crate::executors::record("argo_undo", params(Some("6"))),
        false,
        &journal,
    )
    .await;
    let used = assert_within("argo_undo", &fake.requests());
    assert_eq!(used, granted("argo_undo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argo_watchers_send_only_what_their_rows_grant() {
    let fake = FakeKube::start().await;
    crate::argo::canary_running(&fake);
    let db = TestStore::new(Backend::Sqlite).await;
    let app = TestApp::spawn_on(
        db,
        |c| {
            c.kubernetes.enabled = true;
            c.kubernetes.argo_rollouts = true;
            c.kubernetes.helm_driver = rollwarden::config::HelmDriver::None;
        },
        Some(fake.client()),
    )
    .await;
    // Deployments, ReplicaSets and Rollouts: listed, then watched.
    tokio::time::timeout(Duration::from_secs(10), fake.wait_for_watches(3))
        .await
        .expect("the three watches open within 10 s");
    app.stop().await;

    let used = assert_within("watchers+argo_watchers", &fake.requests());
    let rollouts: BTreeSet<Permission> = used
        .iter()
        .filter(|(group, ..)| group == "argoproj.io")
        .cloned()
        .collect();
    assert_eq!(rollouts, granted("argo_watchers"));
}
