//! A fake Kubernetes API server for tests: a real `kube::Client` and
//! `kube::runtime::watcher` talk plain HTTP to it, and tests drive its state
//! (apply, delete, dropped watches, expired history, injected failures, a write
//! whose answer is lost) and assert on the exact requests it received.
//!
//! It serves apps/v1 `deployments` and `replicasets`, v1 `secrets` and
//! `configmaps`, and argoproj.io/v1alpha1 `rollouts` — list, watch, get, patch
//! (JSON patch and merge patch, and merge patches of a Rollout's `status`
//! subresource) and delete, namespaced and across all namespaces — with one
//! global resourceVersion counter, like etcd's revision.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The user named in injected 403 Forbidden messages.
pub const FAKE_USER: &str = "system:serviceaccount:rollwarden:rollwarden";

/// Largest request body the fake reads.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A running fake API server on 127.0.0.1; dropping it stops the server and
/// ends every open watch.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// One HTTP request as the fake received it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `PATCH`.
    pub method: String,
    /// Path without the query, e.g. `/apis/apps/v1/namespaces/prod/deployments/checkout`.
    pub path: String,
    /// Raw query string without `?` (kube starts it with `&`); empty when absent.
    pub query: String,
    /// The `Content-Type` header, when sent.
    pub content_type: Option<String>,
    /// The body as JSON; a body that is not JSON is kept as a JSON string; `None` when empty.
    pub body: Option<Value>,
}

impl RecordedRequest {
    /// The decoded value of query parameter `key`, if present.
    pub fn query_param(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether this is a watch request (`GET` with `watch=true`).
    pub fn is_watch(&self) -> bool {
        self.method == "GET" && matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }

    /// Whether this is a list request on a collection (a `GET` that is not a watch).
    pub fn is_list(&self) -> bool {
        self.method == "GET"
            && !self.is_watch()
            && parse_path(&self.path).is_some_and(|t| t.name.is_none())
    }
}

impl FakeKube {
    /// Binds 127.0.0.1 on a free port and serves the fake API on a spawned task.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fake kube: bind 127.0.0.1:0")
    }

    /// Like [`FakeKube::start`], on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (open_watches, _) = watch::channel(0);
        let (held, _) = watch::channel(0);
        let (released, _) = watch::channel((0, HeldAnswer::Send));
        let shared = Arc::new(Shared {
            cluster: Mutex::new(Cluster::default()),
            open_watches,
            held,
            released,
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("fake kube server stopped: {error}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// Base URL of the server, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Client` for this server whose default namespace is `default`.
    pub fn client(&self) -> kube::Client {
        self.client_in_namespace("default")
    }

    /// A `kube::Client` for this server with the given default namespace.
    pub fn client_in_namespace(&self, namespace: &str) -> kube::Client {
        let uri = self.url().parse().expect("fake kube: URL is a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = namespace.to_owned();
        kube::Client::try_from(config).expect("fake kube: client from config")
    }

    /// Creates or replaces an object, like a controller or `kubectl apply` would,
    /// and emits ADDED or MODIFIED. Fills in a missing namespace (`default`),
    /// uid, creationTimestamp and (for Deployments and ReplicaSets) generation;
    /// always assigns a new resourceVersion. Returns the stored object.
    ///
    /// Panics when the object has no known apiVersion/kind or no name.
    pub fn apply(&self, obj: Value) -> Value {
        let mut cluster = self.shared.lock();
        let stored = cluster.apply(obj);
        cluster.after_write(&stored);
        self.shared.publish_watch_count(&cluster);
        stored
    }

    /// Makes `.../NAME/status` of `kind` answer 404 Not Found, as an API server whose
    /// CRD declares no status subresource does.
    pub fn without_status_subresource(&self, kind: &str) {
        let resource =
            find_resource(kind).unwrap_or_else(|| panic!("fake kube: unsupported kind {kind}"));
        self.shared.lock().no_status_subresource.push(resource.kind);
    }

    /// Turns the simulated Deployment controller on or off (off by default).
    ///
    /// When on, every write of a Deployment whose `metadata.generation` is ahead of
    /// its `status.observedGeneration` (a new template, a rollout undo) is synced at
    /// once, the way the controller would once every pod is ready: the ReplicaSet
    /// whose template matches is reused (a rollback: it gets the next revision and
    /// `revision-history`) or created (the next revision), scaled to
    /// `spec.replicas` while the others go to 0, and the Deployment gets that
    /// revision, `observedGeneration` and a complete rollout status.
    pub fn simulate_deployment_controller(&self, on: bool) {
        self.shared.lock().controller = on;
    }

    /// Deletes an object and emits DELETED; returns its last state (with the
    /// deletion's resourceVersion), or `None` if it did not exist.
    ///
    /// Panics when `api_version`/`kind` is not a served resource.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let resource = find_resource(kind)
            .filter(|r| r.api_version() == api_version)
            .unwrap_or_else(|| panic!("fake kube: unsupported resource {api_version} {kind}"));
        let mut cluster = self.shared.lock();
        let deleted = cluster.remove(resource, namespace, name);
        self.shared.publish_watch_count(&cluster);
        deleted
    }

    /// The stored object, by kind (`Deployment`) or plural (`deployments`).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource =
            find_resource(kind).unwrap_or_else(|| panic!("fake kube: unsupported kind {kind}"));
        self.shared
            .lock()
            .objects
            .get(&ObjectKey::new(resource, namespace, name))
            .cloned()
    }

    /// Applies every item of a JSON fixture holding a `kind: List` (or a single
    /// object), in order; returns the stored objects. A relative path is
    /// resolved against the crate root.
    pub fn load_list(&self, path: impl AsRef<Path>) -> Vec<Value> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path.as_ref());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("fake kube: read {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("fake kube: parse {}: {e}", path.display()));
        let items = match doc.get("kind").and_then(Value::as_str) {
            Some("List") => doc
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => vec![doc],
        };
        items.into_iter().map(|item| self.apply(item)).collect()
    }

    /// Ends every open watch stream abruptly, as a dropped connection would
    /// (events sent before are still delivered); clients must re-watch from
    /// their last resourceVersion.
    pub fn drop_watches(&self) {
        let mut cluster = self.shared.lock();
        for open in cluster.watches.drain(..) {
            // A closed receiver means the client has already gone.
            let _ = open.tx.send(Frame::Abort);
        }
        self.shared.publish_watch_count(&cluster);
    }

    /// Ends every open watch stream cleanly, as the API server does at a
    /// watch's `timeoutSeconds`; everything sent before is delivered.
    pub fn end_watches(&self) {
        let mut cluster = self.shared.lock();
        for open in cluster.watches.drain(..) {
            // A closed receiver means the client has already gone.
            let _ = open.tx.send(Frame::End);
        }
        self.shared.publish_watch_count(&cluster);
    }

    /// Forgets the event history, like an etcd compaction at the current
    /// revision: a later watch from any older resourceVersion gets a 410
    /// `Expired` ERROR event and must relist. Open watches are not affected.
    pub fn expire_history(&self) {
        let mut cluster = self.shared.lock();
        cluster.history.clear();
        cluster.history_floor = cluster.revision;
    }

    /// Sends a BOOKMARK at the current resourceVersion to every open watch
    /// that asked for bookmarks (`allowWatchBookmarks=true`).
    pub fn send_bookmarks(&self) {
        let mut cluster = self.shared.lock();
        let revision = cluster.revision;
        cluster.watches.retain(|open| {
            !open.bookmarks
                || open
                    .tx
                    .send(Frame::Line(bookmark_line(open.filter.resource, revision)))
                    .is_ok()
        });
        self.shared.publish_watch_count(&cluster);
    }

    /// Makes every request (get, list, watch, patch, delete) on `kind` answer
    /// HTTP `code` with a realistic `Status` until [`FakeKube::clear_fail`].
    ///
    /// 403 names the verb and resource as RBAC does. Avoid 429, 503 and 504:
    /// kube's client retries those itself with growing delays.
    pub fn set_fail(&self, kind: &str, code: u16) {
        self.set_fail_verbs(kind, &[], code);
    }

    /// Like [`FakeKube::set_fail`], only for the given verbs (`get`, `list`,
    /// `watch`, `patch`, `delete`); an empty slice means every verb.
    pub fn set_fail_verbs(&self, kind: &str, verbs: &[&str], code: u16) {
        let resource =
            find_resource(kind).unwrap_or_else(|| panic!("fake kube: unsupported kind {kind}"));
        let mut cluster = self.shared.lock();
        cluster
            .failures
            .retain(|f| f.resource.kind != resource.kind);
        cluster.failures.push(Failure {
            resource,
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            code,
        });
    }

    /// Makes the next PATCH of `path` (e.g.
    /// `/apis/apps/v1/namespaces/prod/deployments/checkout`, not a dry run) be handled
    /// as usual — a valid one changes the object, watches see it, the controller acts —
    /// while its answer is withheld until [`FakeKube::release_held_patches`]: the API
    /// server stored the write, but the client never heard back (a lost connection, a
    /// timeout, a client killed meanwhile).
    pub fn hold_next_patch(&self, path: &str) {
        self.shared.lock().hold_patches.push(path.to_owned());
    }

    /// How many PATCH answers are withheld right now.
    pub fn held_patches(&self) -> usize {
        *self.shared.held.borrow()
    }

    /// Waits until at least `n` PATCH answers are withheld; wrap it in a timeout.
    pub async fn wait_for_held_patches(&self, n: usize) {
        let mut count = self.shared.held.subscribe();
        // The sender lives in `self.shared`, so this cannot fail while `self` exists.
        let _ = count.wait_for(|held| *held >= n).await;
    }

    /// Ends every withheld PATCH answer: sends it late, or cuts its connection.
    pub fn release_held_patches(&self, how: HeldAnswer) {
        self.shared.released.send_modify(|(generation, answer)| {
            *generation += 1;
            *answer = how;
        });
    }

    /// Removes an injected failure set by [`FakeKube::set_fail`].
    pub fn clear_fail(&self, kind: &str) {
        let resource =
            find_resource(kind).unwrap_or_else(|| panic!("fake kube: unsupported kind {kind}"));
        self.shared
            .lock()
            .failures
            .retain(|f| f.resource.kind != resource.kind);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every request received so far with the instant it arrived (before its body was
    /// read), oldest first: for benchmarks that time what a client made the API see.
    pub fn requests_arrived(&self) -> Vec<(RecordedRequest, std::time::Instant)> {
        let cluster = self.shared.lock();
        cluster
            .requests
            .iter()
            .cloned()
            .zip(cluster.arrivals.iter().copied())
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        let mut cluster = self.shared.lock();
        cluster.requests.clear();
        cluster.arrivals.clear();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().revision
    }

    /// How many watch streams are open right now.
    pub fn open_watches(&self) -> usize {
        *self.shared.open_watches.borrow()
    }

    /// Waits until at least `n` watch streams are open; wrap it in a timeout.
    pub async fn wait_for_watches(&self, n: usize) {
        let mut count = self.shared.open_watches.subscribe();
        // The sender lives in `self.shared`, so this cannot fail while `self` exists.
        let _ = count.wait_for(|open| *open >= n).await;
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        // The API server goes away: the listener closes, and so does every
        // connection already open (axum serves each on its own task, which
        // aborting the accept loop leaves running), watches and keep-alives alike.
        self.shared.lock().gone = true;
        self.drop_watches();
        self.server.abort();
    }
}

/// How [`FakeKube::release_held_patches`] ends a withheld answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldAnswer {
    /// The answer goes out, late.
    Send,
    /// The connection is cut after the status line: the client sees it broken.
    Cut,
}

/// State shared between the harness and the request handlers.
struct Shared {
    cluster: Mutex<Cluster>,
    open_watches: watch::Sender<usize>,
    /// How many PATCH answers are withheld.
    held: watch::Sender<usize>,
    /// Bumped by every release, with how the withheld answers end.
    released: watch::Sender<(u64, HeldAnswer)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // A panicking test must not turn every later request into a second panic.
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_watch_count(&self, cluster: &Cluster) {
        self.open_watches.send_replace(cluster.watches.len());
    }
}

/// The stored objects, their change history and the open watches.
#[derive(Default)]
struct Cluster {
    revision: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: Vec<Change>,
    /// Changes at or below this revision are forgotten.
    history_floor: u64,
    watches: Vec<OpenWatch>,
    next_watch_id: u64,
    /// The server was dropped: every request, on any open connection, is cut.
    gone: bool,
    failures: Vec<Failure>,
    requests: Vec<RecordedRequest>,
    /// When each of `requests` arrived, in the same order.
    arrivals: Vec<std::time::Instant>,
    /// Whether the Deployment controller is simulated.
    controller: bool,
    /// Paths whose next PATCH answer is withheld, one entry per PATCH.
    hold_patches: Vec<String>,
    /// Kinds whose `status` subresource answers 404, as on a cluster whose CRD has none.
    no_status_subresource: Vec<&'static str>,
}

impl Cluster {
    /// Stores `obj` as [`FakeKube::apply`] describes, without the controller.
    fn apply(&mut self, mut obj: Value) -> Value {
        let resource =
            resource_of(&obj).unwrap_or_else(|| panic!("fake kube: unsupported object {obj}"));
        let name = str_at(&obj, "/metadata/name")
            .unwrap_or_else(|| panic!("fake kube: object without metadata.name: {obj}"))
            .to_owned();
        if str_at(&obj, "/metadata/namespace").is_none() {
            meta_mut(&mut obj).insert("namespace".into(), json!("default"));
        }
        let namespace = str_at(&obj, "/metadata/namespace")
            .unwrap_or("default")
            .to_owned();
        let key = ObjectKey::new(resource, &namespace, &name);

        let existing = self.objects.get(&key).cloned();
        set_type_meta(&mut obj, resource);
        let meta = meta_mut(&mut obj);
        if !meta.contains_key("uid") {
            let uid = existing
                .as_ref()
                .and_then(|e| str_at(e, "/metadata/uid").map(str::to_owned))
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            meta.insert("uid".into(), json!(uid));
        }
        if !meta.contains_key("creationTimestamp") {
            let created = existing
                .as_ref()
                .and_then(|e| str_at(e, "/metadata/creationTimestamp").map(str::to_owned))
                .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
            meta.insert("creationTimestamp".into(), json!(created));
        }
        if resource.generation != GenerationRule::None && !meta.contains_key("generation") {
            let generation = match &existing {
                None => 1,
                Some(old) => {
                    let old_generation = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    old_generation + i64::from(resource.generation.bumps(old, &obj))
                }
            };
            meta_mut(&mut obj).insert("generation".into(), json!(generation));
        }
        let revision = self.next_revision();
        set_resource_version(&mut obj, revision);
        let kind = if existing.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.objects.insert(key, obj.clone());
        self.commit(Change {
            revision,
            resource,
            kind,
            object: obj.clone(),
            previous: existing,
        });
        obj
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Records a change and sends it to every open watch it concerns.
    fn commit(&mut self, change: Change) {
        self.watches
            .retain(|open| match event_for(&open.filter, &change) {
                Some((kind, object)) => {
                    open.tx.send(Frame::Line(event_line(kind, &object))).is_ok()
                }
                None => !open.tx.is_closed(),
            });
        self.history.push(change);
    }

    fn remove(
        &mut self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let mut last = self
            .objects
            .remove(&ObjectKey::new(resource, namespace, name))?;
        let revision = self.next_revision();
        // The DELETED event carries the deletion's revision, as etcd3 watches do.
        set_resource_version(&mut last, revision);
        self.commit(Change {
            revision,
            resource,
            kind: ChangeKind::Deleted,
            object: last.clone(),
            previous: None,
        });
        Some(last)
    }

    /// Whether the PATCH of `path` being handled is one to withhold the answer of.
    fn take_hold(&mut self, path: &str) -> bool {
        let found = self.hold_patches.iter().position(|p| p == path);
        found.map(|i| self.hold_patches.remove(i)).is_some()
    }

    fn failure(&self, resource: &Resource, verb: &str) -> Option<u16> {
        self.failures
            .iter()
            .find(|f| {
                f.resource.kind == resource.kind
                    && (f.verbs.is_empty() || f.verbs.iter().any(|v| v == verb))
            })
            .map(|f| f.code)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: &'static str,
    namespace: String,
    name: String,
}

impl ObjectKey {
    fn new(resource: &Resource, namespace: &str, name: &str) -> Self {
        Self {
            kind: resource.kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write, kept so that a watch from an older resourceVersion can replay it.
struct Change {
    revision: u64,
    resource: &'static Resource,
    kind: ChangeKind,
    object: Value,
    previous: Option<Value>,
}

struct OpenWatch {
    id: u64,
    filter: Filter,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Frame>,
}

enum Frame {
    Line(Bytes),
    /// Cut the connection.
    Abort,
    /// End the response cleanly.
    End,
}

struct Failure {
    resource: &'static Resource,
    verbs: Vec<String>,
    code: u16,
}

/// How an update changes `metadata.generation` (the registry strategies'
/// `PrepareForUpdate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GenerationRule {
    /// No generation (Secrets, ConfigMaps).
    None,
    /// Bumped when `spec` changes (ReplicaSets).
    Spec,
    /// Bumped when `spec` or `metadata.annotations` change (Deployments,
    /// `pkg/registry/apps/deployment/strategy.go`: annotations are copied to
    /// the ReplicaSets).
    SpecOrAnnotations,
}

impl GenerationRule {
    fn bumps(self, old: &Value, new: &Value) -> bool {
        match self {
            Self::None => false,
            Self::Spec => old.get("spec") != new.get("spec"),
            Self::SpecOrAnnotations => {
                old.get("spec") != new.get("spec")
                    || old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations")
            }
        }
    }
}

/// A served resource type.
#[derive(Debug)]
struct Resource {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    generation: GenerationRule,
    /// Whether `status` is a subresource, so that patches of the main resource keep the old status.
    status_subresource: bool,
}

impl Resource {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `secrets`, as API server messages name it.
    fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self, name: Option<&str>) -> Value {
        let mut details = Map::new();
        if let Some(name) = name {
            details.insert("name".into(), json!(name));
        }
        if !self.group.is_empty() {
            details.insert("group".into(), json!(self.group));
        }
        details.insert("kind".into(), json!(self.plural));
        Value::Object(details)
    }
}

static RESOURCES: [Resource; 5] = [
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        generation: GenerationRule::SpecOrAnnotations,
        status_subresource: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        generation: GenerationRule::Spec,
        status_subresource: true,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        generation: GenerationRule::None,
        status_subresource: false,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        generation: GenerationRule::None,
        status_subresource: false,
    },
    // The CRD declares `subresources.status` (argo-rollouts manifests/crds/rollout-crd.yaml).
    Resource {
        group: "argoproj.io",
        version: "v1alpha1",
        kind: "Rollout",
        plural: "rollouts",
        generation: GenerationRule::Spec,
        status_subresource: true,
    },
];

/// Finds a resource by kind (`Deployment`) or plural (`deployments`), ignoring case.
fn find_resource(kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind.eq_ignore_ascii_case(kind) || r.plural.eq_ignore_ascii_case(kind))
}

fn resource_of(obj: &Value) -> Option<&'static Resource> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// What a request path addresses.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    /// `status`, for `.../NAME/status`.
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name, status) = match rest {
        [plural] => (None, *plural, None, false),
        ["namespaces", namespace, plural] => (Some(*namespace), *plural, None, false),
        ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, Some(*name), false),
        ["namespaces", namespace, plural, name, "status"] => {
            (Some(*namespace), *plural, Some(*name), true)
        }
        _ => return None,
    };
    let resource = RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)?;
    if status && !resource.status_subresource {
        return None;
    }
    if namespace.is_some_and(str::is_empty) || name.is_some_and(str::is_empty) {
        return None;
    }
    Some(Target {
        resource,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        status,
    })
}

/// Which objects a list or watch sees.
struct Filter {
    resource: &'static Resource,
    namespace: Option<String>,
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.labels.iter().all(|r| r.matches(label(r.key())))
            && self.fields.iter().all(|f| f.matches(obj))
    }
}

#[derive(Debug, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelRequirement {
    fn key(&self) -> &str {
        match self {
            Self::Equals(k, _)
            | Self::NotEquals(k, _)
            | Self::Exists(k)
            | Self::NotExists(k)
            | Self::In(k, _)
            | Self::NotIn(k, _) => k,
        }
    }

    /// `value` is the object's label under `self.key()`; `!=` and `notin`
    /// also match objects without the label, as in apimachinery's `labels`.
    fn matches(&self, value: Option<&str>) -> bool {
        match self {
            Self::Equals(_, v) => value == Some(v.as_str()),
            Self::NotEquals(_, v) => value != Some(v.as_str()),
            Self::Exists(_) => value.is_some(),
            Self::NotExists(_) => value.is_none(),
            Self::In(_, vs) => value.is_some_and(|value| vs.iter().any(|v| v == value)),
            Self::NotIn(_, vs) => value.is_none_or(|value| vs.iter().all(|v| v != value)),
        }
    }
}

/// Parses a label selector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
/// `a notin (x,y)`, joined by commas.
fn parse_label_selector(selector: &str) -> Result<Vec<LabelRequirement>, String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);

    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(format!(
                "unable to parse requirement: invalid label key {k:?}"
            ))
        } else {
            Ok(k.to_owned())
        }
    };
    let mut requirements = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let requirement = if let Some(open) = term.find('(') {
            let close = term
                .rfind(')')
                .filter(|close| *close > open)
                .ok_or_else(|| format!("unable to parse requirement: unclosed set in {term:?}"))?;
            let values: Vec<String> = term[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            let head = term[..open].trim();
            if let Some(k) = head
                .strip_suffix("notin")
                .filter(|k| k.ends_with(char::is_whitespace))
            {
                LabelRequirement::NotIn(key(k)?, values)
            } else if let Some(k) = head
                .strip_suffix("in")
                .filter(|k| k.ends_with(char::is_whitespace))
            {
                LabelRequirement::In(key(k)?, values)
            } else {
                return Err(format!(
                    "unable to parse requirement: unknown set operator in {term:?}"
                ));
            }
        } else if let Some(k) = term.strip_prefix('!') {
            LabelRequirement::NotExists(key(k)?)
        } else if let Some((k, v)) = term.split_once("!=") {
            LabelRequirement::NotEquals(key(k)?, v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once("==") {
            LabelRequirement::Equals(key(k)?, v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once('=') {
            LabelRequirement::Equals(key(k)?, v.trim().to_owned())
        } else {
            LabelRequirement::Exists(key(term)?)
        };
        requirements.push(requirement);
    }
    Ok(requirements)
}

#[derive(Debug, PartialEq)]
struct FieldRequirement {
    /// JSON pointer of the field, e.g. `/metadata/name`.
    pointer: &'static str,
    value: String,
    equal: bool,
}

impl FieldRequirement {
    fn matches(&self, obj: &Value) -> bool {
        (str_at(obj, self.pointer).unwrap_or_default() == self.value) == self.equal
    }
}

/// Parses a field selector on `metadata.name` / `metadata.namespace` with
/// `=`, `==` or `!=`; other fields are refused as the API server refuses
/// fields a type does not index.
fn parse_field_selector(selector: &str) -> Result<Vec<FieldRequirement>, String> {
    let mut requirements = Vec::new();
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, v, true)
        } else {
            return Err(format!(
                "invalid selector: '{term}'; can't understand '{term}'"
            ));
        };
        let pointer = match field.trim() {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            other => return Err(format!("field label not supported: {other}")),
        };
        requirements.push(FieldRequirement {
            pointer,
            value: value.trim().to_owned(),
            equal,
        });
    }
    Ok(requirements)
}

/// The watch event a change means for one watch, if any.
///
/// Mirrors the watch cache's filtering (`cacheWatcher.convertToWatchEvent` in
/// k8s.io/apiserver): an update that makes an object start matching the
/// selector is ADDED, one that makes it stop matching is DELETED with the old
/// content at the new resourceVersion.
fn event_for(filter: &Filter, change: &Change) -> Option<(&'static str, Value)> {
    if change.resource.kind != filter.resource.kind {
        return None;
    }
    let now = filter.matches(&change.object);
    match change.kind {
        ChangeKind::Added => now.then(|| ("ADDED", change.object.clone())),
        ChangeKind::Deleted => now.then(|| ("DELETED", change.object.clone())),
        ChangeKind::Modified => {
            let before = change.previous.as_ref().filter(|p| filter.matches(p));
            match (before, now) {
                (Some(_), true) => Some(("MODIFIED", change.object.clone())),
                (None, true) => Some(("ADDED", change.object.clone())),
                (Some(previous), false) => {
                    let mut gone = previous.clone();
                    set_resource_version(&mut gone, change.revision);
                    Some(("DELETED", gone))
                }
                (None, false) => None,
            }
        }
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({ "type": kind, "object": object })))
}

/// A bookmark's object: the right kind with only `metadata.resourceVersion`.
fn bookmark_object(resource: &Resource, revision: u64) -> Value {
    json!({
        "kind": resource.kind,
        "apiVersion": resource.api_version(),
        "metadata": { "resourceVersion": revision.to_string() },
    })
}

fn bookmark_line(resource: &Resource, revision: u64) -> Bytes {
    event_line("BOOKMARK", &bookmark_object(resource, revision))
}

// ---------------------------------------------------------------------------
// HTTP handling

/// Removes the open watch from the registry when its response body is dropped.
struct WatchGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut cluster = self.shared.lock();
        cluster.watches.retain(|open| open.id != self.id);
        self.shared.publish_watch_count(&cluster);
    }
}

struct WatchBody {
    rx: mpsc::UnboundedReceiver<Frame>,
    deadline: Option<tokio::time::Instant>,
    aborted: bool,
    _guard: WatchGuard,
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let arrived = std::time::Instant::now();
    if shared.lock().gone {
        return cut_connection("FakeKube is gone");
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => return bad_request(format!("unable to read request body: {error}")),
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let recorded_body = if bytes.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    };
    {
        let mut cluster = shared.lock();
        cluster.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: recorded_body,
        });
        cluster.arrivals.push(arrived);
    }

    if parts.method == Method::GET && path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0",
                "gitCommit": "fake", "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z",
                "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64",
            }),
        );
    }
    let Some(target) = parse_path(&path).filter(|t| {
        !(t.status
            && shared
                .lock()
                .no_status_subresource
                .contains(&t.resource.kind))
    }) else {
        return status_response(&status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(json!({})),
        ));
    };
    let params = Params(
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    );

    match (&parts.method, &target.name) {
        (&Method::GET, None) if matches!(params.get("watch"), Some("true" | "1")) => {
            start_watch(&shared, &target, &params)
        }
        (&Method::GET, None) => list(&shared, &target, &params),
        (&Method::GET, Some(name)) => get(&shared, &target, name),
        (&Method::PATCH, Some(name)) => {
            let dry_run = params.0.iter().any(|(k, v)| k == "dryRun" && v == "All");
            let held = !dry_run && shared.lock().take_hold(&path);
            let answer = patch(
                &shared,
                &target,
                name,
                content_type.as_deref(),
                &bytes,
                dry_run,
            );
            if held {
                withhold(&shared, answer).await
            } else {
                answer
            }
        }
        (&Method::DELETE, Some(name)) => delete(&shared, &target, name),
        _ => status_response(&status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Some(json!({})),
        )),
    }
}

/// Decoded query parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The filter a list or watch asks for, or the 400 Status for a bad selector.
fn filter_from(target: &Target, params: &Params) -> Result<Filter, Value> {
    let labels = parse_label_selector(params.get("labelSelector").unwrap_or_default())
        .map_err(bad_request_status)?;
    let fields = parse_field_selector(params.get("fieldSelector").unwrap_or_default())
        .map_err(bad_request_status)?;
    Ok(Filter {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels,
        fields,
    })
}

/// Answers every item at once without a continue token: `limit` and
/// `continue` are accepted and ignored, which the API server may also do.
fn list(shared: &Shared, target: &Target, params: &Params) -> Response {
    let filter = match filter_from(target, params) {
        Ok(filter) => filter,
        Err(status) => return status_response(&status),
    };
    let cluster = shared.lock();
    if let Some(code) = cluster.failure(target.resource, "list") {
        return status_response(&failure_status(code, "list", target));
    }
    let items: Vec<Value> = cluster
        .objects
        .iter()
        .filter(|(key, obj)| key.kind == target.resource.kind && filter.matches(obj))
        .map(|(_, obj)| obj.clone())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.resource.kind),
            "apiVersion": target.resource.api_version(),
            "metadata": { "resourceVersion": cluster.revision.to_string() },
            "items": items,
        }),
    )
}

fn start_watch(shared: &Arc<Shared>, target: &Target, params: &Params) -> Response {
    let filter = match filter_from(target, params) {
        Ok(filter) => filter,
        Err(status) => return status_response(&status),
    };
    let since = match params.get("resourceVersion").unwrap_or_default() {
        "" | "0" => None,
        rv => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => return bad_request(format!("invalid resource version: {rv}")),
        },
    };
    let bookmarks = params.get("allowWatchBookmarks") == Some("true");
    let send_initial_events = params.get("sendInitialEvents") == Some("true");
    if send_initial_events && !bookmarks {
        return status_response(&status(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Required value: \
             sendInitialEvents requires setting allowWatchBookmarks to true"
                .into(),
            Some(json!({"kind": "ListOptions", "group": "meta.k8s.io"})),
        ));
    }
    let timeout = match params.get("timeoutSeconds").map(str::parse::<u64>) {
        None => None,
        Some(Ok(seconds)) => Some(seconds),
        Some(Err(_)) => return bad_request("invalid timeoutSeconds".into()),
    };
    let (tx, rx) = mpsc::unbounded_channel();

    let mut cluster = shared.lock();
    if let Some(code) = cluster.failure(target.resource, "watch") {
        return status_response(&failure_status(code, "watch", target));
    }
    cluster.next_watch_id += 1;
    let id = cluster.next_watch_id;
    // Sends below cannot fail: `rx` is still held here.
    match since.filter(|_| !send_initial_events) {
        Some(rv) if rv < cluster.history_floor => {
            // The watch cache's answer (`watchCache.getAllEventsSinceLocked`):
            // a 200 whose only event is a 410 Expired ERROR, then the end.
            let expired = status(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", cluster.history_floor),
                None,
            );
            let _ = tx.send(Frame::Line(event_line("ERROR", &expired)));
            drop(tx);
            drop(cluster);
            return watch_response(shared, id, rx, None);
        }
        Some(rv) => {
            for change in cluster.history.iter().filter(|c| c.revision > rv) {
                if let Some((kind, object)) = event_for(&filter, change) {
                    let _ = tx.send(Frame::Line(event_line(kind, &object)));
                }
            }
        }
        // "Start at most recent" (unset), "start at any" ("0") and a streaming
        // list (`sendInitialEvents=true`) begin with a synthetic ADDED per
        // existing object; a streaming list then marks the end of that state
        // with a bookmark annotated `k8s.io/initial-events-end`.
        None => {
            for (key, obj) in &cluster.objects {
                if key.kind == filter.resource.kind && filter.matches(obj) {
                    let _ = tx.send(Frame::Line(event_line("ADDED", obj)));
                }
            }
            if send_initial_events {
                let mut end = bookmark_object(filter.resource, cluster.revision);
                end["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                let _ = tx.send(Frame::Line(event_line("BOOKMARK", &end)));
            }
        }
    }
    if cluster.gone {
        // Dropped while this watch was being set up.
        let _ = tx.send(Frame::Abort);
    }
    cluster.watches.push(OpenWatch {
        id,
        filter,
        bookmarks,
        tx,
    });
    shared.publish_watch_count(&cluster);
    drop(cluster);
    watch_response(shared, id, rx, timeout.filter(|s| *s > 0))
}

fn watch_response(
    shared: &Arc<Shared>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Frame>,
    timeout_seconds: Option<u64>,
) -> Response {
    let body = WatchBody {
        rx,
        deadline: timeout_seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s)),
        aborted: false,
        _guard: WatchGuard {
            shared: Arc::clone(shared),
            id,
        },
    };
    let stream = futures::stream::unfold(body, |mut body| async move {
        if body.aborted {
            return None;
        }
        let frame = match body.deadline {
            // At timeoutSeconds the server ends the stream cleanly.
            Some(deadline) => tokio::time::timeout_at(deadline, body.rx.recv())
                .await
                .ok()
                .flatten(),
            None => body.rx.recv().await,
        };
        match frame {
            Some(Frame::Line(line)) => Some((Ok(line), body)),
            Some(Frame::Abort) => {
                body.aborted = true;
                // Pending once lets hyper flush the lines already written, so
                // that only the connection is lost, not events sent before it.
                tokio::task::yield_now().await;
                // An error from the body makes hyper cut the connection
                // without the final chunk: the client sees a dropped connection.
                let error = std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "watch dropped by FakeKube",
                );
                Some((Err(error), body))
            }
            Some(Frame::End) | None => None,
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Keeps `answer` until [`FakeKube::release_held_patches`], counted in `held` while it
/// waits (a client that gives up does not end the wait: the write stays applied).
async fn withhold(shared: &Arc<Shared>, answer: Response) -> Response {
    struct Counted<'a>(&'a Shared);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.held.send_modify(|held| *held -= 1);
        }
    }
    let mut released = shared.released.subscribe();
    let generation = released.borrow_and_update().0;
    shared.held.send_modify(|held| *held += 1);
    let _counted = Counted(shared);
    // The sender lives in `shared`, so the wait ends only with a release.
    let how = match released.wait_for(|(g, _)| *g != generation).await {
        Ok(released) => released.1,
        Err(_) => HeldAnswer::Cut,
    };
    match how {
        HeldAnswer::Send => answer,
        HeldAnswer::Cut => cut_connection("answer withheld by FakeKube, connection cut"),
    }
}

/// As in a dropped watch: an error from the body makes hyper cut the connection
/// without finishing the response.
fn cut_connection(why: &'static str) -> Response {
    let cut = futures::stream::once(async move {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            why,
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(cut))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response {
    let cluster = shared.lock();
    if let Some(code) = cluster.failure(target.resource, "get") {
        return status_response(&failure_status(code, "get", target));
    }
    let namespace = target.namespace.as_deref().unwrap_or_default();
    match cluster
        .objects
        .get(&ObjectKey::new(target.resource, namespace, name))
    {
        Some(obj) => json_response(StatusCode::OK, obj),
        None => status_response(&not_found(target.resource, name)),
    }
}

fn delete(shared: &Shared, target: &Target, name: &str) -> Response {
    let mut cluster = shared.lock();
    if let Some(code) = cluster.failure(target.resource, "delete") {
        return status_response(&failure_status(code, "delete", target));
    }
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let deleted = cluster.remove(target.resource, namespace, name);
    shared.publish_watch_count(&cluster);
    match deleted {
        Some(obj) => json_response(StatusCode::OK, &obj),
        None => status_response(&not_found(target.resource, name)),
    }
}

fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    content_type: Option<&str>,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let resource = target.resource;
    let mut cluster = shared.lock();
    if let Some(code) = cluster.failure(resource, "patch") {
        return status_response(&failure_status(code, "patch", target));
    }
    // Like the API server, the media type is compared without parameters such as `charset`.
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim);
    let patch_body: Result<Value, Value> = serde_json::from_slice(body)
        .map_err(|e| bad_request_status(format!("error decoding patch: {e}")));
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let key = ObjectKey::new(resource, namespace, name);
    let current = cluster.objects.get(&key).cloned();

    let mut patched = match media_type {
        Some("application/json-patch+json") => {
            let ops = match patch_body.and_then(|v| {
                serde_json::from_value::<json_patch::Patch>(v)
                    .map_err(|e| bad_request_status(e.to_string()))
            }) {
                Ok(ops) => ops,
                Err(status) => return status_response(&status),
            };
            let Some(mut doc) = current.clone() else {
                return status_response(&not_found(resource, name));
            };
            if json_patch::patch(&mut doc, &ops).is_err() {
                // A failed operation (a `test` op included) is a 422 Invalid with
                // a generic message: `jsonPatcher.applyJSPatch` in
                // k8s.io/apiserver/pkg/endpoints/handlers/patch.go returns
                // `errors.NewGenericServerResponse(http.StatusUnprocessableEntity, ...)`.
                return status_response(&status(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request".into(),
                    Some(json!({})),
                ));
            }
            doc
        }
        Some("application/merge-patch+json") => {
            let merge = match patch_body {
                Ok(merge @ Value::Object(_)) => merge,
                Ok(_) => return bad_request("Invalid JSON Patch".into()),
                Err(status) => return status_response(&status),
            };
            let Some(mut doc) = current.clone() else {
                return status_response(&not_found(resource, name));
            };
            json_patch::merge(&mut doc, &merge);
            doc
        }
        other => {
            return status_response(&status(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json (got {})",
                    other.unwrap_or("no Content-Type")
                ),
                None,
            ));
        }
    };
    let Some(current) = current else {
        return status_response(&not_found(resource, name));
    };

    if !patched.is_object() || !patched.get("metadata").is_some_and(Value::is_object) {
        return status_response(&status(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: metadata: Required value",
                resource.group_resource()
            ),
            Some(resource.details(Some(name))),
        ));
    }
    if str_at(&patched, "/metadata/name") != Some(name) {
        return bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            str_at(&patched, "/metadata/name").unwrap_or_default()
        ));
    }
    if str_at(&patched, "/metadata/namespace") != Some(namespace) {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    let current_uid = str_at(&current, "/metadata/uid")
        .unwrap_or_default()
        .to_owned();
    if let Some(uid) = str_at(&patched, "/metadata/uid").filter(|uid| *uid != current_uid) {
        return status_response(&status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}",
                resource.group_resource()
            ),
            Some(resource.details(Some(name))),
        ));
    }
    // A resourceVersion left in the patched object is a precondition.
    let current_rv = str_at(&current, "/metadata/resourceVersion")
        .unwrap_or_default()
        .to_owned();
    if str_at(&patched, "/metadata/resourceVersion").is_some_and(|rv| rv != current_rv) {
        return status_response(&status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                resource.group_resource()
            ),
            Some(resource.details(Some(name))),
        ));
    }

    // System fields the client cannot change (rest.BeforeUpdate and the strategies' PrepareForUpdate).
    set_type_meta(&mut patched, resource);
    for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
        let meta = meta_mut(&mut patched);
        match current.pointer(&format!("/metadata/{field}")) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
    if target.status {
        // Through the status subresource only `status` changes (the strategies'
        // PrepareForUpdate of the status REST): the rest is the stored object's.
        let new_status = patched.get("status").cloned();
        patched = current.clone();
        if let Some(obj) = patched.as_object_mut() {
            match new_status {
                Some(status) => obj.insert("status".into(), status),
                None => obj.remove("status"),
            };
        }
    } else if resource.status_subresource
        && let Some(obj) = patched.as_object_mut()
    {
        match current.get("status") {
            Some(status) => obj.insert("status".into(), status.clone()),
            None => obj.remove("status"),
        };
    }
    if resource.generation.bumps(&current, &patched) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta_mut(&mut patched).insert("generation".into(), json!(generation));
    }
    // A patch that changes nothing is not written: no new resourceVersion, no event.
    if patched == current || dry_run {
        return json_response(StatusCode::OK, &patched);
    }
    let revision = cluster.next_revision();
    set_resource_version(&mut patched, revision);
    cluster.objects.insert(key, patched.clone());
    cluster.commit(Change {
        revision,
        resource,
        kind: ChangeKind::Modified,
        object: patched.clone(),
        previous: Some(current),
    });
    cluster.after_write(&patched);
    shared.publish_watch_count(&cluster);
    json_response(StatusCode::OK, &patched)
}

// ---------------------------------------------------------------------------
// The simulated Deployment controller (opt-in: `simulate_deployment_controller`)

/// Annotations the controller never copies from a Deployment to its ReplicaSets
/// (`annotationsToSkip` in k8s.io/kubernetes/pkg/controller/deployment/util).
const CONTROLLER_SKIPPED_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const HASH_LABEL: &str = "pod-template-hash";

impl Cluster {
    /// Runs the simulated controller after `written` was stored, when it is on.
    fn after_write(&mut self, written: &Value) {
        if self.controller && written.get("kind").and_then(Value::as_str) == Some("Deployment") {
            let namespace = str_at(written, "/metadata/namespace")
                .unwrap_or_default()
                .to_owned();
            let name = str_at(written, "/metadata/name")
                .unwrap_or_default()
                .to_owned();
            self.sync_deployment(&namespace, &name);
        }
    }

    /// One sync of the Deployment controller, completed at once: see
    /// [`FakeKube::simulate_deployment_controller`].
    fn sync_deployment(&mut self, namespace: &str, name: &str) {
        let (deployments, replicasets) = (deployment_resource(), replicaset_resource());
        let Some(mut deployment) = self
            .objects
            .get(&ObjectKey::new(deployments, namespace, name))
            .cloned()
        else {
            return;
        };
        let generation = int_at(&deployment, "/metadata/generation");
        if int_at(&deployment, "/status/observedGeneration") >= generation
            || deployment.pointer("/spec/paused") == Some(&json!(true))
        {
            return;
        }
        let uid = str_at(&deployment, "/metadata/uid")
            .unwrap_or_default()
            .to_owned();
        let replicas = deployment
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let template = without_hash(
            deployment
                .pointer("/spec/template")
                .cloned()
                .unwrap_or_default(),
        );
        let owned: Vec<Value> = self
            .objects
            .iter()
            .filter(|(key, rs)| {
                key.kind == replicasets.kind
                    && key.namespace == namespace
                    && rs
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|owners| {
                            owners.iter().any(|o| {
                                o.get("controller") == Some(&json!(true))
                                    && o.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                            })
                        })
            })
            .map(|(_, rs)| rs.clone())
            .collect();
        let latest = owned.iter().map(revision_number).max().unwrap_or(0);
        let copied: Map<String, Value> = deployment
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| !CONTROLLER_SKIPPED_ANNOTATIONS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();

        let reused = owned.iter().find(|rs| {
            without_hash(rs.pointer("/spec/template").cloned().unwrap_or_default()) == template
        });
        let mut new_rs = match reused {
            Some(rs) => {
                let mut rs = rs.clone();
                let own = revision_number(&rs);
                if own < latest {
                    // A rollback: the old ReplicaSet becomes the newest revision and
                    // remembers the one it had.
                    let mut history: Vec<String> = str_at(
                        &rs,
                        "/metadata/annotations/deployment.kubernetes.io~1revision-history",
                    )
                    .filter(|h| !h.is_empty())
                    .map(|h| h.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                    history.push(own.to_string());
                    let annotations = annotations_mut(&mut rs);
                    annotations.insert(REVISION.into(), json!((latest + 1).to_string()));
                    annotations.insert(REVISION_HISTORY.into(), json!(history.join(",")));
                }
                rs
            }
            None => {
                let hash = pod_template_hash(&template);
                let mut rs_template = template.clone();
                labels_mut(&mut rs_template).insert(HASH_LABEL.into(), json!(hash));
                let mut selector = deployment
                    .pointer("/spec/selector")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                selector["matchLabels"][HASH_LABEL] = json!(hash);
                let mut labels = rs_template
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                labels[HASH_LABEL] = json!(hash);
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": format!("{name}-{hash}"),
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {REVISION: (latest + 1).to_string()},
                        "ownerReferences": [{
                            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                            "uid": uid, "controller": true, "blockOwnerDeletion": true,
                        }],
                    },
                    "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
                })
            }
        };
        let annotations = annotations_mut(&mut new_rs);
        annotations.extend(copied);
        annotations.insert(
            "deployment.kubernetes.io/desired-replicas".into(),
            json!(replicas.to_string()),
        );
        annotations.insert(
            "deployment.kubernetes.io/max-replicas".into(),
            json!((replicas + 1).to_string()),
        );
        let new_name = str_at(&new_rs, "/metadata/name")
            .unwrap_or_default()
            .to_owned();
        let new_revision = revision_number(&new_rs);
        self.scale(new_rs, replicas);
        for rs in owned {
            if str_at(&rs, "/metadata/name") != Some(new_name.as_str())
                && rs.pointer("/spec/replicas").and_then(Value::as_i64) != Some(0)
            {
                self.scale(rs, 0);
            }
        }

        // Through the status subresource: no new generation.
        annotations_mut(&mut deployment).insert(REVISION.into(), json!(new_revision.to_string()));
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let since = |kind: &str| {
            deployment
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| c["type"] == kind && c["status"] == "True")
                })
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now))
        };
        let status = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {
                    "type": "Available", "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": now, "lastTransitionTime": since("Available"),
                },
                {
                    "type": "Progressing", "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    "lastUpdateTime": now, "lastTransitionTime": since("Progressing"),
                },
            ],
        });
        deployment["status"] = status;
        self.apply(deployment);
    }

    /// Writes `rs` scaled to `replicas`, with every replica ready and available.
    fn scale(&mut self, mut rs: Value, replicas: i64) {
        rs["spec"]["replicas"] = json!(replicas);
        let key = ObjectKey::new(
            replicaset_resource(),
            str_at(&rs, "/metadata/namespace").unwrap_or_default(),
            str_at(&rs, "/metadata/name").unwrap_or_default(),
        );
        let generation = match self.objects.get(&key) {
            None => 1,
            Some(stored) => {
                int_at(stored, "/metadata/generation").max(1)
                    + i64::from(stored.get("spec") != rs.get("spec"))
            }
        };
        meta_mut(&mut rs).insert("generation".into(), json!(generation));
        rs["status"] = json!({
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": generation,
        });
        self.apply(rs);
    }
}

fn deployment_resource() -> &'static Resource {
    find_resource("Deployment").expect("Deployments are served")
}

fn replicaset_resource() -> &'static Resource {
    find_resource("ReplicaSet").expect("ReplicaSets are served")
}

fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn revision_number(rs: &Value) -> i64 {
    str_at(
        rs,
        "/metadata/annotations/deployment.kubernetes.io~1revision",
    )
    .and_then(|r| r.parse().ok())
    .unwrap_or(0)
}

/// A pod template without the `pod-template-hash` label, as the controller compares them.
fn without_hash(mut template: Value) -> Value {
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    template
}

fn annotations_mut(obj: &mut Value) -> &mut Map<String, Value> {
    map_at(meta_mut(obj), "annotations")
}

fn labels_mut(template: &mut Value) -> &mut Map<String, Value> {
    let Some(root) = template.as_object_mut() else {
        panic!("fake kube: a pod template must be a JSON object");
    };
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        panic!("fake kube: template metadata must be a JSON object");
    };
    map_at(meta, "labels")
}

fn map_at<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = parent.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(map) => map,
        _ => unreachable!("{key} was just made an object"),
    }
}

/// A pod-template-hash in the controller's shape: a 32-bit FNV-1a of the template,
/// its decimal digits mapped onto the vowel-free alphabet (`rand.SafeEncodeString`).
fn pod_template_hash(template: &Value) -> String {
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let hash = template.to_string().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash.to_string()
        .bytes()
        .map(|b| char::from(SAFE[usize::from(b) % SAFE.len()]))
        .collect()
}

// ---------------------------------------------------------------------------
// Status objects and JSON helpers

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let (Some(details), Some(obj)) = (details, status.as_object_mut()) {
        obj.insert("details".into(), details);
    }
    status
}

fn not_found(resource: &Resource, name: &str) -> Value {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.group_resource()),
        Some(resource.details(Some(name))),
    )
}

fn bad_request_status(message: String) -> Value {
    status(400, "BadRequest", message, None)
}

fn bad_request(message: String) -> Response {
    status_response(&bad_request_status(message))
}

/// The Status an injected failure answers with, worded like the API server's.
fn failure_status(code: u16, verb: &str, target: &Target) -> Value {
    let resource = target.resource;
    let name = target.name.as_deref();
    match code {
        401 => status(401, "Unauthorized", "Unauthorized".into(), None),
        403 => {
            let subject = match name {
                Some(name) => format!("{} \"{name}\"", resource.group_resource()),
                None => resource.group_resource(),
            };
            let scope = match &target.namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_owned(),
            };
            status(
                403,
                "Forbidden",
                format!(
                    "{subject} is forbidden: User \"{FAKE_USER}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                    resource.plural, resource.group
                ),
                Some(resource.details(name)),
            )
        }
        404 => not_found(resource, name.unwrap_or_default()),
        409 => status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                resource.group_resource(),
                name.unwrap_or_default()
            ),
            Some(resource.details(name)),
        ),
        410 => status(410, "Expired", "too old resource version".into(), None),
        429 => status(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later".into(),
            None,
        ),
        503 => status(503, "ServiceUnavailable", "the server is currently unable to handle the request".into(), None),
        504 => status(
            504,
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .into(),
            None,
        ),
        code if code >= 500 => status(
            code,
            "InternalError",
            "Internal error occurred: failure injected by FakeKube".into(),
            None,
        ),
        code => status(
            code,
            "Unknown",
            format!("the server responded with the status code {code} but did not return more information"),
            None,
        ),
    }
}

fn status_response(status: &Value) -> Response {
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, status)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// The object's `metadata` map, created if missing; `obj` must be a JSON object.
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let Some(root) = obj.as_object_mut() else {
        panic!("fake kube: a Kubernetes object must be a JSON object");
    };
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(map) => map,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn set_type_meta(obj: &mut Value, resource: &Resource) {
    if let Some(root) = obj.as_object_mut() {
        root.insert("apiVersion".into(), json!(resource.api_version()));
        root.insert("kind".into(), json!(resource.kind));
    }
}

fn set_resource_version(obj: &mut Value, revision: u64) {
    meta_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    #[test]
    fn label_selectors_parse_every_operator() {
        let parsed = parse_label_selector("a=b, c==d,e!=f,g,!h,i in (x, y),j notin (z)")
            .expect("valid selector");
        assert_eq!(
            parsed,
            vec![
                LabelRequirement::Equals("a".into(), "b".into()),
                LabelRequirement::Equals("c".into(), "d".into()),
                LabelRequirement::NotEquals("e".into(), "f".into()),
                LabelRequirement::Exists("g".into()),
                LabelRequirement::NotExists("h".into()),
                LabelRequirement::In("i".into(), vec!["x".into(), "y".into()]),
                LabelRequirement::NotIn("j".into(), vec!["z".into()]),
            ]
        );
    }

    #[test]
    fn not_equals_and_notin_match_objects_without_the_label() {
        assert!(LabelRequirement::NotEquals("a".into(), "b".into()).matches(None));
        assert!(LabelRequirement::NotIn("a".into(), vec!["b".into()]).matches(None));
        assert!(!LabelRequirement::In("a".into(), vec!["b".into()]).matches(None));
    }

    #[test]
    fn unsupported_field_selectors_are_refused() {
        assert!(parse_field_selector("spec.replicas=3").is_err());
        assert_eq!(
            parse_field_selector("metadata.name!=x").map(|r| r.len()),
            Ok(1)
        );
    }
}
