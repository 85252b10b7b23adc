//! Self-test of the fake Kubernetes API server: a real `kube::Client` and
//! `kube::runtime::watcher` against it, so that tests built on the fake can
//! trust its protocol.

use std::time::Duration;

use crate::support::fake_kube::{FakeKube, RecordedRequest};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::timeout;

const DEPLOYMENT_FIXTURE: &str = "tests/fixtures/deployment-with-replicasets.json";
const HELM_HISTORY_FIXTURE: &str = "tests/fixtures/helm-release-history.json";
const HELM_SECRET_FIXTURE: &str = "tests/fixtures/helm-release-secret.json";

/// Upper bound for every wait, so that a broken fake fails instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

type Events = mpsc::UnboundedReceiver<Result<watcher::Event<Deployment>, watcher::Error>>;

async fn started_with_fixtures() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.load_list(DEPLOYMENT_FIXTURE);
    fake
}

fn deployments(fake: &FakeKube) -> Api<Deployment> {
    Api::namespaced(fake.client(), "prod")
}

fn api_code<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn image(deployment: &Deployment) -> String {
    let value = serde_json::to_value(deployment).expect("deployment serialises");
    value
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .expect("deployment has an image")
        .to_owned()
}

fn with_image(mut deployment: Value, image: &str) -> Value {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    deployment
}

fn describe(event: &watcher::Event<Deployment>) -> String {
    match event {
        watcher::Event::Init => "Init".to_owned(),
        watcher::Event::InitApply(d) => format!("InitApply {}", d.name_any()),
        watcher::Event::InitDone => "InitDone".to_owned(),
        watcher::Event::Apply(d) => format!("Apply {}", d.name_any()),
        watcher::Event::Delete(d) => format!("Delete {}", d.name_any()),
    }
}

/// Runs a watcher on its own task, as the service does, so that it keeps
/// (re)connecting while the test drives the fake; its items arrive on the receiver.
fn spawn_watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> mpsc::UnboundedReceiver<Result<watcher::Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next watcher event; any error fails the test.
async fn next_event<K>(
    events: &mut mpsc::UnboundedReceiver<Result<watcher::Event<K>, watcher::Error>>,
) -> watcher::Event<K> {
    match timeout(WAIT, events.recv()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watcher error: {error:?}"),
        Ok(None) => panic!("watcher stream ended"),
        Err(_) => panic!("no watcher event within {WAIT:?}"),
    }
}

/// The next watcher event, collecting the errors a dropped connection or an
/// expired resourceVersion produce on the way.
async fn next_event_after_errors(
    events: &mut Events,
    errors: &mut Vec<watcher::Error>,
) -> watcher::Event<Deployment> {
    loop {
        match timeout(WAIT, events.recv()).await {
            Ok(Some(Ok(event))) => return event,
            Ok(Some(Err(error))) => errors.push(error),
            Ok(None) => panic!("watcher stream ended"),
            Err(_) => panic!("no watcher event within {WAIT:?}; errors so far: {errors:?}"),
        }
    }
}

async fn expect_initial_list(events: &mut Events) -> Vec<Deployment> {
    assert_eq!(describe(&next_event(events).await), "Init");
    let mut listed = Vec::new();
    loop {
        match next_event(events).await {
            watcher::Event::InitApply(d) => listed.push(d),
            watcher::Event::InitDone => return listed,
            other => panic!(
                "unexpected event during the initial list: {}",
                describe(&other)
            ),
        }
    }
}

fn watches(fake: &FakeKube) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(RecordedRequest::is_watch)
        .collect()
}

fn lists(fake: &FakeKube) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(RecordedRequest::is_list)
        .collect()
}

#[tokio::test]
async fn list_honours_label_and_field_selectors() {
    let fake = started_with_fixtures().await;
    fake.load_list(HELM_HISTORY_FIXTURE);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(fake.client(), "prod");

    let list = replica_sets
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=checkout,pod-template-hash!=c6df558d4"),
        )
        .await
        .expect("list replicasets");
    let names: Vec<String> = list.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["checkout-69c9cdb879", "checkout-7c67857fd"]);
    assert_eq!(
        list.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );

    let by_name = replica_sets
        .list(&ListParams::default().fields("metadata.name=checkout-7c67857fd"))
        .await
        .expect("list by name");
    assert_eq!(by_name.items.len(), 1);

    let all_secrets: Api<Secret> = Api::all(fake.client());
    let deployed = all_secrets
        .list(
            &ListParams::default()
                .labels("owner=helm,name==checkout,status in (deployed),!missing"),
        )
        .await
        .expect("list secrets in all namespaces");
    let names: Vec<String> = deployed.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["sh.helm.release.v1.checkout.v3"]);
    let last = fake.requests().pop().expect("a recorded request");
    assert_eq!(last.path, "/api/v1/secrets");

    let elsewhere: Api<Secret> = Api::namespaced(fake.client(), "staging");
    let empty = elsewhere
        .list(&ListParams::default().labels("owner"))
        .await
        .expect("list secrets in staging");
    assert!(empty.items.is_empty());

    let (code, reason, _) = api_code(
        replica_sets
            .list(&ListParams::default().fields("spec.replicas=0"))
            .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn get_returns_the_object_and_a_404_status_for_a_missing_one() {
    let fake = started_with_fixtures().await;
    fake.load_list(HELM_SECRET_FIXTURE);
    let api = deployments(&fake);

    let checkout = api.get("checkout").await.expect("get checkout");
    assert_eq!(
        checkout.uid().as_deref(),
        Some("2c4602a0-485f-4d04-90c1-22ecea267e47")
    );
    assert_eq!(image(&checkout), "registry.example.com/shop/checkout:1.6.0");

    let (code, reason, message) = api_code(api.get("payments").await);
    assert_eq!(code, 404);
    assert_eq!(reason, "NotFound");
    assert_eq!(message, "deployments.apps \"payments\" not found");

    let secrets: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let (code, _, message) = api_code(secrets.get("sh.helm.release.v1.checkout.v9").await);
    assert_eq!(
        (code, message.as_str()),
        (404, "secrets \"sh.helm.release.v1.checkout.v9\" not found")
    );
    assert!(
        secrets
            .get_opt("sh.helm.release.v1.checkout.v3")
            .await
            .expect("get_opt")
            .is_some()
    );
}

#[tokio::test]
async fn json_patch_is_applied_bumps_generation_and_is_recorded_with_its_content_type() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let before = api.get("checkout").await.expect("get checkout");
    let patch_json = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": before.resource_version()},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image",
         "value": "registry.example.com/shop/checkout:1.5.0"},
        {"op": "replace", "path": "/metadata/annotations",
         "value": {"deployment.kubernetes.io/revision": "3", "kubernetes.io/change-cause": "release 1.5.0"}},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch_json.clone()).expect("valid JSON patch");

    let patched = api
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
        .expect("JSON patch");

    assert_eq!(image(&patched), "registry.example.com/shop/checkout:1.5.0");
    assert_eq!(patched.metadata.generation, Some(4));
    assert_eq!(
        patched.resource_version(),
        Some(fake.resource_version().to_string())
    );
    assert_ne!(patched.resource_version(), before.resource_version());
    assert_eq!(
        patched.status, before.status,
        "the main resource does not change status"
    );
    assert_eq!(
        patched
            .annotations()
            .get("kubernetes.io/change-cause")
            .map(String::as_str),
        Some("release 1.5.0")
    );
    assert!(
        !patched
            .annotations()
            .contains_key("meta.helm.sh/release-name")
    );

    let stored = fake.get("Deployment", "prod", "checkout").expect("stored");
    assert_eq!(stored, serde_json::to_value(&patched).expect("serialise"));
    let last = fake.requests().pop().expect("a recorded request");
    assert_eq!(last.method, "PATCH");
    assert_eq!(
        last.path,
        "/apis/apps/v1/namespaces/prod/deployments/checkout"
    );
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(last.body, Some(patch_json));
}

#[tokio::test]
async fn merge_patch_is_applied_and_recorded_with_its_content_type() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let merge =
        json!({"metadata": {"labels": {"rollwarden.io/paused": "true", "helm.sh/chart": null}}});

    let patched = api
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .expect("merge patch");

    assert_eq!(
        patched
            .labels()
            .get("rollwarden.io/paused")
            .map(String::as_str),
        Some("true")
    );
    assert!(!patched.labels().contains_key("helm.sh/chart"));
    assert_eq!(
        patched.metadata.generation,
        Some(3),
        "labels do not bump generation"
    );
    let last = fake.requests().pop().expect("a recorded request");
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(last.body, Some(merge));
}

#[tokio::test]
async fn failing_json_patch_test_answers_422_invalid_and_changes_nothing() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let revision = fake.resource_version();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "replace", "path": "/spec/replicas", "value": 0},
    ]))
    .expect("valid JSON patch");

    let (code, reason, _) = api_code(
        api.patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await,
    );

    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(fake.resource_version(), revision);
    let stored = fake.get("deployments", "prod", "checkout").expect("stored");
    assert_eq!(stored["spec"]["replicas"], json!(3));
}

#[tokio::test]
async fn unsupported_patch_types_answer_415_and_stale_resource_versions_409() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);

    let strategic = Patch::Strategic(json!({"spec": {"replicas": 1}}));
    let (code, reason, _) = api_code(
        api.patch("checkout", &PatchParams::default(), &strategic)
            .await,
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));

    let stale =
        Patch::Merge(json!({"metadata": {"resourceVersion": "999999"}, "spec": {"replicas": 1}}));
    let (code, reason, _) = api_code(api.patch("checkout", &PatchParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    let missing = Patch::Merge(json!({"spec": {"replicas": 1}}));
    let (code, _, _) = api_code(
        api.patch("payments", &PatchParams::default(), &missing)
            .await,
    );
    assert_eq!(code, 404);
}

#[tokio::test]
async fn patch_that_changes_nothing_keeps_the_resource_version() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let revision = fake.resource_version();
    let before = api.get("checkout").await.expect("get checkout");

    let same = Patch::Merge(json!({"spec": {"replicas": 3}}));
    let unchanged = api
        .patch("checkout", &PatchParams::default(), &same)
        .await
        .expect("no-op patch");

    assert_eq!(fake.resource_version(), revision);
    assert_eq!(unchanged, before);

    let dry_run = api
        .patch(
            "checkout",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("dry-run patch");
    assert_eq!(dry_run.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(fake.resource_version(), revision);
}

#[tokio::test]
async fn injected_forbidden_names_the_verb_and_resource_until_cleared() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);

    fake.set_fail("Deployment", 403);
    let (code, reason, message) = api_code(api.list(&ListParams::default()).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "deployments.apps is forbidden: User \"system:serviceaccount:rollwarden:rollwarden\" \
         cannot list resource \"deployments\" in API group \"apps\" in the namespace \"prod\""
    );
    let (_, _, message) = api_code(
        api.patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({})),
        )
        .await,
    );
    assert!(
        message.starts_with("deployments.apps \"checkout\" is forbidden"),
        "{message}"
    );
    assert!(
        message.contains("cannot patch resource \"deployments\""),
        "{message}"
    );

    fake.set_fail_verbs("secrets", &["watch"], 500);
    let secrets: Api<Secret> = Api::all(fake.client());
    secrets
        .list(&ListParams::default())
        .await
        .expect("list is not failed");
    let (code, reason, _) = match secrets.watch(&WatchParams::default(), "0").await {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(_) => panic!("expected the watch to fail"),
    };
    assert_eq!((code, reason.as_str()), (500, "InternalError"));

    fake.clear_fail("Deployment");
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn watcher_sees_the_fixture_then_a_patch_as_apply_and_a_delete_as_delete() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let listed_at = fake.resource_version();
    let mut stream = spawn_watcher(api.clone(), watcher::Config::default());

    let listed = expect_initial_list(&mut stream).await;
    let names: Vec<String> = listed.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["checkout"]);

    let merge = Patch::Merge(json!({"spec": {"replicas": 5}}));
    api.patch("checkout", &PatchParams::default(), &merge)
        .await
        .expect("patch");
    match next_event(&mut stream).await {
        watcher::Event::Apply(d) => {
            assert_eq!(d.spec.and_then(|s| s.replicas), Some(5));
            assert_eq!(
                d.metadata.resource_version,
                Some(fake.resource_version().to_string())
            );
        }
        other => panic!("expected Apply, got {}", describe(&other)),
    }

    fake.delete("apps/v1", "Deployment", "prod", "checkout")
        .expect("checkout existed");
    assert_eq!(describe(&next_event(&mut stream).await), "Delete checkout");

    // What kube-runtime's default watcher::Config sends: a paged list with no
    // resourceVersion, then a watch from the list's resourceVersion.
    let lists = lists(&fake);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].path, "/apis/apps/v1/namespaces/prod/deployments");
    assert_eq!(lists[0].query, "&limit=500");
    let watches = watches(&fake);
    assert_eq!(watches.len(), 1);
    assert_eq!(
        watches[0].query,
        format!(
            "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion={listed_at}"
        )
    );
    assert_eq!(watches[0].query_param("sendInitialEvents"), None);
}

#[tokio::test]
async fn watcher_resumes_after_dropped_watches_without_losing_an_event() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let mut stream = spawn_watcher(api, watcher::Config::default());
    expect_initial_list(&mut stream).await;
    timeout(WAIT, fake.wait_for_watches(1))
        .await
        .expect("watch opened");
    let last_seen = fake.resource_version();

    fake.drop_watches();
    let current = fake
        .get("Deployment", "prod", "checkout")
        .expect("checkout");
    fake.apply(with_image(
        current,
        "registry.example.com/shop/checkout:1.7.0",
    ));

    let mut errors = Vec::new();
    match next_event_after_errors(&mut stream, &mut errors).await {
        watcher::Event::Apply(d) => {
            assert_eq!(image(&d), "registry.example.com/shop/checkout:1.7.0")
        }
        other => panic!("expected Apply, got {}", describe(&other)),
    }
    let watches = watches(&fake);
    assert_eq!(watches.len(), 2, "one watch, then one resumed watch");
    assert_eq!(
        watches[1].query_param("resourceVersion"),
        Some(last_seen.to_string()),
        "resumed from before the change, so the change was replayed"
    );
    assert_eq!(lists(&fake).len(), 1, "no relist");
}

#[tokio::test]
async fn watcher_relists_after_expired_history_and_ends_with_the_right_state() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);
    let mut stream = spawn_watcher(api.clone(), watcher::Config::default());
    expect_initial_list(&mut stream).await;

    let checkout = fake
        .get("Deployment", "prod", "checkout")
        .expect("checkout");
    let mut payments = checkout.clone();
    payments["metadata"] = json!({"name": "payments", "namespace": "prod"});
    fake.apply(payments);
    assert_eq!(describe(&next_event(&mut stream).await), "Apply payments");
    let last_seen = fake.resource_version();

    // While the watcher is disconnected, payments goes away and history is compacted.
    fake.drop_watches();
    fake.delete("apps/v1", "Deployment", "prod", "payments")
        .expect("payments existed");
    fake.apply(with_image(
        checkout,
        "registry.example.com/shop/checkout:1.7.0",
    ));
    fake.expire_history();

    let mut errors = Vec::new();
    assert_eq!(
        describe(&next_event_after_errors(&mut stream, &mut errors).await),
        "Init"
    );
    let mut relisted = Vec::new();
    loop {
        match next_event(&mut stream).await {
            watcher::Event::InitApply(d) => relisted.push(d),
            watcher::Event::InitDone => break,
            other => panic!("unexpected event during the relist: {}", describe(&other)),
        }
    }
    let names: Vec<String> = relisted.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["checkout"]);
    assert_eq!(
        image(&relisted[0]),
        "registry.example.com/shop/checkout:1.7.0"
    );
    assert!(
        errors.iter().any(
            |e| matches!(e, watcher::Error::WatchError(s) if s.code == 410 && s.reason == "Expired")
        ),
        "the watcher saw the 410: {errors:?}"
    );
    let watches = watches(&fake);
    assert_eq!(
        watches[1].query_param("resourceVersion"),
        Some(last_seen.to_string())
    );
    assert_eq!(lists(&fake).len(), 2, "one list, then one relist");

    // Live after the relist.
    api.patch(
        "checkout",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .expect("patch");
    assert_eq!(describe(&next_event(&mut stream).await), "Apply checkout");
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_one_410_expired_error() {
    let fake = started_with_fixtures().await;
    fake.expire_history();
    let api = deployments(&fake);

    let mut events = api
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch starts")
        .boxed();

    let first = timeout(WAIT, events.next())
        .await
        .expect("an event in time");
    match first {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert_eq!(
                status.message,
                format!("too old resource version: 1 ({})", fake.resource_version())
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let end = timeout(WAIT, events.next())
        .await
        .expect("stream ends in time");
    assert!(end.is_none(), "the stream ends after the error");
}

#[tokio::test]
async fn bookmarks_carry_only_the_resource_version_a_watcher_resumes_from() {
    let fake = started_with_fixtures().await;
    let api = deployments(&fake);

    let mut raw = api
        .watch(
            &WatchParams::default(),
            &fake.resource_version().to_string(),
        )
        .await
        .expect("watch starts")
        .boxed();
    timeout(WAIT, fake.wait_for_watches(1))
        .await
        .expect("watch opened");
    fake.load_list(HELM_SECRET_FIXTURE);
    fake.send_bookmarks();
    match timeout(WAIT, raw.next()).await.expect("an event in time") {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert_eq!(bookmark.types.kind, "Deployment");
            assert_eq!(bookmark.types.api_version, "apps/v1");
            assert_eq!(
                bookmark.metadata.resource_version,
                fake.resource_version().to_string()
            );
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    drop(raw);
    fake.drop_watches();

    let mut stream = spawn_watcher(api, watcher::Config::default());
    expect_initial_list(&mut stream).await;
    timeout(WAIT, fake.wait_for_watches(1))
        .await
        .expect("watch opened");
    fake.load_list(HELM_HISTORY_FIXTURE);
    let bookmarked = fake.resource_version();
    fake.send_bookmarks();
    fake.end_watches();
    fake.expire_history();
    fake.apply(with_image(
        fake.get("Deployment", "prod", "checkout")
            .expect("checkout"),
        "registry.example.com/shop/checkout:1.7.0",
    ));

    let mut errors = Vec::new();
    assert_eq!(
        describe(&next_event_after_errors(&mut stream, &mut errors).await),
        "Apply checkout",
        "resumed from the bookmark, so no 410 and no relist"
    );
    let watches = watches(&fake);
    let resumed = watches.last().expect("a resumed watch");
    assert_eq!(
        resumed.query_param("resourceVersion"),
        Some(bookmarked.to_string())
    );
}

#[tokio::test]
async fn label_selected_watch_sees_an_object_leaving_its_selector_as_a_delete() {
    let fake = started_with_fixtures().await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(fake.client(), "prod");
    let config = watcher::Config::default().labels("pod-template-hash=7c67857fd");
    let mut stream = spawn_watcher(replica_sets.clone(), config);

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("InitDone") {
        seen.push(match next_event(&mut stream).await {
            watcher::Event::Init => "Init".to_owned(),
            watcher::Event::InitApply(rs) => format!("InitApply {}", rs.name_any()),
            watcher::Event::InitDone => "InitDone".to_owned(),
            _ => "unexpected".to_owned(),
        });
    }
    assert_eq!(seen, ["Init", "InitApply checkout-7c67857fd", "InitDone"]);

    let relabel = Patch::Merge(json!({"metadata": {"labels": {"pod-template-hash": "other"}}}));
    replica_sets
        .patch("checkout-7c67857fd", &PatchParams::default(), &relabel)
        .await
        .expect("patch");
    match next_event(&mut stream).await {
        watcher::Event::Delete(rs) => {
            assert_eq!(rs.name_any(), "checkout-7c67857fd");
            assert_eq!(
                rs.resource_version(),
                Some(fake.resource_version().to_string())
            );
        }
        _ => panic!("expected Delete"),
    }
}

#[tokio::test]
async fn dropped_watches_cut_the_connection_and_ended_watches_finish_cleanly() {
    let fake = started_with_fixtures().await;
    let url = format!(
        "{}/apis/apps/v1/namespaces/prod/deployments?watch=true&resourceVersion={}",
        fake.url(),
        fake.resource_version()
    );
    let http = reqwest::Client::new();

    let mut dropped = http.get(&url).send().await.expect("watch starts");
    timeout(WAIT, fake.wait_for_watches(1))
        .await
        .expect("watch opened");
    fake.send_bookmarks();
    fake.drop_watches();
    let mut outcome = Vec::new();
    loop {
        match timeout(WAIT, dropped.chunk()).await.expect("chunk in time") {
            Ok(Some(chunk)) => outcome.push(String::from_utf8_lossy(&chunk).into_owned()),
            Ok(None) => panic!("a dropped watch must not end cleanly; got {outcome:?}"),
            Err(_) => break,
        }
    }
    assert!(
        outcome.is_empty(),
        "no bookmark without allowWatchBookmarks: {outcome:?}"
    );

    let mut ended = http
        .get(format!("{url}&allowWatchBookmarks=true"))
        .send()
        .await
        .expect("watch starts");
    timeout(WAIT, fake.wait_for_watches(1))
        .await
        .expect("watch opened");
    fake.send_bookmarks();
    fake.end_watches();
    let mut body = String::new();
    while let Some(chunk) = timeout(WAIT, ended.chunk())
        .await
        .expect("chunk in time")
        .expect("an ended watch finishes cleanly")
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let bookmark: Value = serde_json::from_str(body.trim_end()).expect("one JSON line");
    assert_eq!(
        bookmark,
        json!({"type": "BOOKMARK", "object": {
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"resourceVersion": fake.resource_version().to_string()},
        }})
    );
    assert_eq!(fake.open_watches(), 0);
}

#[tokio::test]
async fn streaming_list_watcher_gets_the_initial_state_from_one_watch() {
    let fake = started_with_fixtures().await;
    let mut stream = spawn_watcher(
        deployments(&fake),
        watcher::Config::default().streaming_lists(),
    );

    let listed = expect_initial_list(&mut stream).await;
    let names: Vec<String> = listed.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["checkout"]);
    fake.delete("apps/v1", "Deployment", "prod", "checkout")
        .expect("checkout existed");
    assert_eq!(describe(&next_event(&mut stream).await), "Delete checkout");

    assert!(lists(&fake).is_empty(), "no list call");
    let watch = watches(&fake).into_iter().next().expect("one watch");
    assert_eq!(
        watch.query_param("sendInitialEvents").as_deref(),
        Some("true")
    );
    assert_eq!(
        watch.query_param("resourceVersionMatch").as_deref(),
        Some("NotOlderThan")
    );
    assert_eq!(watch.query_param("resourceVersion").as_deref(), Some("0"));
}

#[tokio::test]
async fn version_reports_kubernetes_1_33() {
    let fake = FakeKube::start().await;
    let info = fake.client().apiserver_version().await.expect("version");
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
}

#[tokio::test]
async fn the_simulated_controller_rolls_a_new_template_out_as_the_next_revision() {
    let fake = started_with_fixtures().await;
    fake.simulate_deployment_controller(true);
    let mut current = fake.get("Deployment", "prod", "checkout").unwrap();
    let generation = current["metadata"]["generation"].as_i64().unwrap();
    // Left out, the generation is the API server's to bump.
    current["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generation");
    fake.apply(with_image(
        current,
        "registry.example.com/shop/checkout:1.7.0",
    ));

    let d = fake.get("Deployment", "prod", "checkout").unwrap();
    assert_eq!(d["metadata"]["generation"], generation + 1);
    assert_eq!(d["status"]["observedGeneration"], generation + 1);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");

    let replicasets: Api<ReplicaSet> = Api::namespaced(fake.client(), "prod");
    let all = timeout(WAIT, replicasets.list(&ListParams::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.items.len(), 4);
    let new = all
        .items
        .iter()
        .find(|rs| rs.annotations().get("deployment.kubernetes.io/revision") == Some(&"4".into()))
        .expect("a ReplicaSet for revision 4");
    let hash = new.labels()["pod-template-hash"].clone();
    assert_eq!(new.name_any(), format!("checkout-{hash}"));
    let spec = new.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    let owner = &new.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );
    assert_eq!(
        new.annotations().get("kubernetes.io/change-cause"),
        Some(&"release 1.6.0 (pipeline 2231)".into())
    );
    for old in all
        .items
        .iter()
        .filter(|rs| rs.name_any() != new.name_any())
    {
        assert_eq!(
            old.spec.as_ref().unwrap().replicas,
            Some(0),
            "{}",
            old.name_any()
        );
    }
}

#[tokio::test]
async fn without_the_simulated_controller_a_new_template_stays_unobserved() {
    let fake = started_with_fixtures().await;
    let mut current = fake.get("Deployment", "prod", "checkout").unwrap();
    current["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generation");
    fake.apply(with_image(
        current,
        "registry.example.com/shop/checkout:1.7.0",
    ));
    let d = fake.get("Deployment", "prod", "checkout").unwrap();
    assert_eq!(d["metadata"]["generation"], 4);
    assert_eq!(d["status"]["observedGeneration"], 3);
    assert!(
        fake.get("ReplicaSet", "prod", "checkout-c6df558d4")
            .is_some()
    );
    assert_eq!(fake.requests().len(), 0);
}
