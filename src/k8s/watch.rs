//! The watchers: Deployments with their ReplicaSets, Argo Rollouts with theirs (when
//! `kubernetes.argo_rollouts` is on), and Helm release Secrets or ConfigMaps, turned
//! into deploys as they change.
//!
//! They run on one replica at a time (the store's lease: a Postgres advisory lock, or
//! the single SQLite node), relist and back off on API errors through
//! `kube::runtime::watcher`, and write idempotently, so a restart or a relist never
//! duplicates a row and a pruned ReplicaSet's revision stays on record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::argo::{self, Rollout};
use super::clusters::Clusters;
use super::helm::{self, HelmDecodeError, HelmRelease};
use super::rollouts;
use crate::clock::Clock;
use crate::config::KubernetesConfig;
use crate::domain::Deploy;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The singleton lease the watchers hold, one per cluster: `LEASE/CLUSTER`.
pub const LEASE: &str = "rollwarden-kubernetes-watchers";

/// The lease of one cluster's watchers.
pub fn lease_name(cluster: &str) -> String {
    format!("{LEASE}/{cluster}")
}

/// Builds a cluster's client:
/// - `in_cluster`: the pod's service account only (`Config::incluster`: the
///   `KUBERNETES_SERVICE_HOST` and `_PORT` variables and the mounted token);
/// - a `kubeconfig` file: that file, at `context` or its current one;
/// - a `context` alone: `$KUBECONFIG` or `~/.kube/config` at that context;
/// - neither: `Config::infer`, which tries `$KUBECONFIG` or `~/.kube/config` first and
///   the pod's service account only when no kubeconfig loads.
pub async fn client(config: &KubernetesConfig) -> anyhow::Result<Client> {
    Ok(Client::try_from(client_config(config).await?)?)
}

/// The configuration [`client`] connects with.
async fn client_config(config: &KubernetesConfig) -> anyhow::Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: (!config.context.is_empty()).then(|| config.context.clone()),
        ..Default::default()
    };
    let kube_config = if config.in_cluster {
        kube::Config::incluster()?
    } else if !config.kubeconfig.is_empty() {
        let file = kube::config::Kubeconfig::read_from(&config.kubeconfig)?;
        kube::Config::from_custom_kubeconfig(file, &options).await?
    } else if options.context.is_some() {
        kube::Config::from_kubeconfig(&options).await?
    } else {
        kube::Config::infer().await?
    };
    Ok(kube_config)
}

/// Everything the watchers need.
#[derive(Clone)]
pub struct Watchers {
    pub client: Client,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Narrowed to this cluster ([`KubernetesConfig::for_cluster`]).
    pub config: KubernetesConfig,
    /// Where this replica reports the cluster's reachability.
    pub clusters: Arc<Clusters>,
}

impl Watchers {
    /// Runs until `shutdown`: takes the lease when it is free, watches while holding it.
    pub async fn run(self, shutdown: CancellationToken) {
        let retry = Duration::from_secs(self.config.lease_retry_secs);
        let cluster = self.config.cluster.clone();
        self.metrics.watchers_leading(&cluster, false);
        // Every series the rules and the dashboard read exists from the start, at 0.
        let mut resources = vec!["deployments.apps", "replicasets.apps"];
        if self.config.argo_rollouts {
            resources.push(ROLLOUTS_RESOURCE);
        }
        if self.config.helm_driver.secrets() {
            resources.push(<Secret as HelmStorage>::RESOURCE);
        }
        if self.config.helm_driver.configmaps() {
            resources.push(<ConfigMap as HelmStorage>::RESOURCE);
        }
        for resource in resources {
            for reason in WATCH_ERROR_REASONS {
                self.metrics.watch_errors_seen(resource, reason);
            }
        }
        while !shutdown.is_cancelled() {
            match self.store.try_lease(&lease_name(&cluster)).await {
                Ok(Some(mut lease)) => {
                    tracing::info!(%cluster, "kubernetes watchers: lease taken, watching");
                    self.metrics.watchers_leading(&cluster, true);
                    self.clusters.watching(&cluster, true);
                    let watching = shutdown.child_token();
                    let tasks = self.spawn_all(&watching);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(retry) => {
                                if !lease.still_held().await {
                                    tracing::warn!("kubernetes watchers: lease lost, stopping");
                                    break;
                                }
                            }
                        }
                    }
                    watching.cancel();
                    for task in tasks {
                        let _ = task.await;
                    }
                    lease.release().await;
                    self.metrics.watchers_leading(&cluster, false);
                    self.metrics.cluster_reachable(&cluster, None);
                    self.clusters.watching(&cluster, false);
                }
                Ok(None) => {
                    tracing::debug!("kubernetes watchers: another replica holds the lease");
                    sleep_or_cancel(&shutdown, retry).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "kubernetes watchers: cannot ask for the lease");
                    self.metrics.store_error("try_lease", &err);
                    sleep_or_cancel(&shutdown, retry).await;
                }
            }
        }
    }

    fn spawn_all(&self, stop: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let namespaces: Vec<Option<String>> = if self.config.namespaces.is_empty() {
            vec![None]
        } else {
            self.config.namespaces.iter().cloned().map(Some).collect()
        };
        let mut tasks = Vec::new();
        for namespace in namespaces {
            tasks.push(tokio::spawn(
                self.clone().watch_rollouts(namespace.clone(), stop.clone()),
            ));
            if self.config.helm_driver.secrets() {
                tasks.push(tokio::spawn(
                    self.clone()
                        .watch_helm::<Secret>(namespace.clone(), stop.clone()),
                ));
            }
            if self.config.helm_driver.configmaps() {
                tasks.push(tokio::spawn(
                    self.clone()
                        .watch_helm::<ConfigMap>(namespace, stop.clone()),
                ));
            }
        }
        tasks
    }

    fn api<K>(&self, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Deployments, Argo Rollouts (when on) and ReplicaSets of one namespace (or all),
    /// kept in memory as the API server reports them; every change re-derives the
    /// owning workload's revisions and records them.
    async fn watch_rollouts(self, namespace: Option<String>, stop: CancellationToken) {
        let deployments = events(
            self.api::<Deployment>(&namespace),
            watcher::Config::default(),
        );
        let replicasets = events(
            self.api::<ReplicaSet>(&namespace),
            watcher::Config::default(),
        );
        // Without the option no Rollout is asked for: a cluster without the CRD (or
        // the RBAC) would answer 404 or 403 forever.
        let argo_rollouts = if self.config.argo_rollouts {
            events(self.api::<Rollout>(&namespace), watcher::Config::default())
                .map(Change::Rollout)
                .boxed()
        } else {
            futures::stream::pending().boxed()
        };
        let mut stream = futures::stream::select(
            futures::stream::select(
                deployments.map(Change::Deployment),
                replicasets.map(Change::ReplicaSet),
            ),
            argo_rollouts,
        );
        let mut world = RolloutWorld::default();
        loop {
            let change = tokio::select! {
                () = stop.cancelled() => return,
                change = stream.next() => change,
            };
            let Some(change) = change else { return };
            let touched = match change {
                Change::Deployment(event) => self.on_event(
                    event,
                    "deployments.apps",
                    &mut world.deployments,
                    &mut world.deployments_init,
                    |d| vec![Owner::Deployment(key_of(d))],
                ),
                Change::Rollout(event) => self.on_event(
                    event,
                    ROLLOUTS_RESOURCE,
                    &mut world.rollouts,
                    &mut world.rollouts_init,
                    |r| vec![Owner::Rollout(key_of(r))],
                ),
                Change::ReplicaSet(event) => self.on_event(
                    event,
                    "replicasets.apps",
                    &mut world.replicasets,
                    &mut world.replicasets_init,
                    |rs| owner_of(rs).into_iter().collect(),
                ),
            };
            for owner in touched {
                match owner {
                    Owner::Deployment(key) => self.record_rollout(&world, &key).await,
                    Owner::Rollout(key) => self.record_argo_rollout(&world, &key).await,
                }
            }
        }
    }

    /// Applies one watcher event to `objects` and returns the workloads it touches.
    fn on_event<K: kube::Resource + Clone>(
        &self,
        event: Result<watcher::Event<K>, watcher::Error>,
        resource: &'static str,
        objects: &mut BTreeMap<ObjectKey, K>,
        relisting: &mut Option<BTreeMap<ObjectKey, K>>,
        affects: impl Fn(&K) -> Vec<Owner>,
    ) -> Vec<Owner> {
        if event.is_ok() {
            self.answered();
        }
        match event {
            Ok(watcher::Event::Apply(obj)) => {
                let touched = affects(&obj);
                objects.insert(key_of(&obj), obj);
                touched
            }
            Ok(watcher::Event::Delete(obj)) => {
                objects.remove(&key_of(&obj));
                // The revisions stay on record; re-derive only the survivors' statuses.
                affects(&obj)
            }
            Ok(watcher::Event::Init) => {
                *relisting = Some(BTreeMap::new());
                Vec::new()
            }
            Ok(watcher::Event::InitApply(obj)) => {
                relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key_of(&obj), obj);
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => {
                *objects = relisting.take().unwrap_or_default();
                let mut touched: Vec<Owner> = objects.values().flat_map(&affects).collect();
                touched.sort();
                touched.dedup();
                touched
            }
            Err(err) => {
                self.watch_error(resource, &err);
                Vec::new()
            }
        }
    }

    async fn record_rollout(&self, world: &RolloutWorld, key: &ObjectKey) {
        let Some(deployment) = world.deployments.get(key) else {
            return;
        };
        let deploys = rollouts::deploys_for(
            deployment,
            &world.replicasets_in(&key.0),
            &self.config.cluster,
            self.clock.now(),
        );
        self.record(&deploys, "kubernetes").await;
    }

    async fn record_argo_rollout(&self, world: &RolloutWorld, key: &ObjectKey) {
        let Some(rollout) = world.rollouts.get(key) else {
            return;
        };
        let deploys = argo::deploys_for(
            rollout,
            &world.replicasets_in(&key.0),
            &self.config.cluster,
            self.clock.now(),
        );
        self.record(&deploys, "argo").await;
    }

    /// Helm release objects (`owner=helm`) of one namespace (or all).
    async fn watch_helm<K>(self, namespace: Option<String>, stop: CancellationToken)
    where
        K: HelmStorage,
    {
        let api = self.api::<K>(&namespace);
        let resource = K::RESOURCE;
        let mut stream = events(api, watcher::Config::default().labels("owner=helm"));
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = stream.next() => event,
            };
            let Some(event) = event else { return };
            if event.is_ok() {
                self.answered();
            }
            match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    match K::release(&obj) {
                        Ok(release) => {
                            let deploy = release.to_deploy(&self.config.cluster);
                            self.record(std::slice::from_ref(&deploy), "helm").await;
                        }
                        Err(err) => self.bad_release(&obj, &err),
                    }
                }
                // Helm deletes old revisions (--history-max); their rows stay.
                Ok(watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitDone) => {
                }
                Err(err) => self.watch_error(resource, &err),
            }
        }
    }

    fn bad_release<K: ResourceExt>(&self, obj: &K, err: &HelmDecodeError) {
        self.metrics.helm_decode_error(err.metric_label());
        tracing::warn!(
            namespace = obj.namespace().unwrap_or_default(),
            name = obj.name_any(),
            error = %err,
            "skipping a Helm release object that does not decode"
        );
    }

    async fn record(&self, deploys: &[Deploy], source: &'static str) {
        if deploys.is_empty() {
            return;
        }
        match self.store.record_deploys(deploys, self.clock.now()).await {
            Ok(writes) => {
                for write in writes {
                    self.metrics
                        .deploy_recorded(source, write.created, write.changed);
                }
            }
            Err(err) => {
                // The next event or relist of this object records it again.
                self.metrics.store_error("record_deploys", &err);
                tracing::error!(error = %err, source, "recording deploys failed");
            }
        }
    }

    /// The API server answered a watch: the cluster is reachable.
    fn answered(&self) {
        let cluster = &self.config.cluster;
        if self.clusters.answered(cluster, self.clock.now()) {
            self.metrics.cluster_reachable(cluster, Some(true));
        }
    }

    fn watch_error(&self, resource: &'static str, err: &watcher::Error) {
        let reason = watch_error_reason(err);
        self.metrics.watch_error(resource, reason);
        let cluster = &self.config.cluster;
        // The gauge first: whoever sees the state in /readyz sees the gauge agree.
        self.metrics
            .cluster_reachable(cluster, Some(reason != "transport"));
        self.clusters.failed(cluster, reason, self.clock.now());
        if reason == "forbidden" {
            tracing::error!(
                resource,
                error = %err,
                "missing RBAC: rollwarden needs list and watch on {resource}"
            );
        } else {
            tracing::warn!(resource, %cluster, error = %err, "watch failed; retrying with backoff");
        }
    }
}

/// A namespaced object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey(String, String);

impl ObjectKey {
    fn namespace_start(namespace: &str) -> Self {
        ObjectKey(namespace.to_string(), String::new())
    }
}

fn key_of<K: ResourceExt>(obj: &K) -> ObjectKey {
    ObjectKey(obj.namespace().unwrap_or_default(), obj.name_any())
}

/// How API server messages and the metrics name Argo's Rollouts.
const ROLLOUTS_RESOURCE: &str = "rollouts.argoproj.io";

/// A workload whose revisions are re-derived when it or one of its ReplicaSets changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Deployment(ObjectKey),
    Rollout(ObjectKey),
}

/// The Deployment or Rollout that controls a ReplicaSet, by its controller
/// ownerReference.
fn owner_of(rs: &ReplicaSet) -> Option<Owner> {
    let owner = rs
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))?;
    let key = ObjectKey(rs.namespace().unwrap_or_default(), owner.name.clone());
    match (owner.kind.as_str(), owner.api_version.as_str()) {
        ("Deployment", _) => Some(Owner::Deployment(key)),
        ("Rollout", "argoproj.io/v1alpha1") => Some(Owner::Rollout(key)),
        _ => None,
    }
}

#[derive(Default)]
struct RolloutWorld {
    deployments: BTreeMap<ObjectKey, Deployment>,
    rollouts: BTreeMap<ObjectKey, Rollout>,
    replicasets: BTreeMap<ObjectKey, ReplicaSet>,
    /// Objects of a relist in progress; they replace the map at `InitDone`.
    deployments_init: Option<BTreeMap<ObjectKey, Deployment>>,
    rollouts_init: Option<BTreeMap<ObjectKey, Rollout>>,
    replicasets_init: Option<BTreeMap<ObjectKey, ReplicaSet>>,
}

impl RolloutWorld {
    /// Every ReplicaSet of `namespace`.
    fn replicasets_in(&self, namespace: &str) -> Vec<ReplicaSet> {
        self.replicasets
            .range(ObjectKey::namespace_start(namespace)..)
            .take_while(|(k, _)| k.0 == namespace)
            .map(|(_, rs)| rs.clone())
            .collect()
    }
}

enum Change {
    Deployment(Result<watcher::Event<Deployment>, watcher::Error>),
    Rollout(Result<watcher::Event<Rollout>, watcher::Error>),
    ReplicaSet(Result<watcher::Event<ReplicaSet>, watcher::Error>),
}

/// How Helm stores a release in one kind of object.
pub trait HelmStorage:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const RESOURCE: &'static str;
    fn release(&self) -> Result<HelmRelease, HelmDecodeError>;
}

impl HelmStorage for Secret {
    const RESOURCE: &'static str = "secrets";
    fn release(&self) -> Result<HelmRelease, HelmDecodeError> {
        helm::release_from_secret(self)
    }
}

impl HelmStorage for ConfigMap {
    const RESOURCE: &'static str = "configmaps";
    fn release(&self) -> Result<HelmRelease, HelmDecodeError> {
        helm::release_from_configmap(self)
    }
}

/// A watch that lists, watches, resumes from the last resourceVersion after a dropped
/// connection, relists after 410 Gone, and backs off (exponentially, capped) on errors.
fn events<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config).default_backoff().boxed()
}

/// Every `reason` label [`watch_error_reason`] gives.
const WATCH_ERROR_REASONS: [&str; 6] = [
    "unauthorized",
    "forbidden",
    "not_found",
    "expired",
    "api",
    "transport",
];

fn watch_error_reason(err: &watcher::Error) -> &'static str {
    let api_code = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    };
    match api_code {
        Some(401) => "unauthorized",
        Some(403) => "forbidden",
        Some(404) => "not_found",
        Some(410) => "expired",
        Some(_) => "api",
        None => "transport",
    }
}

async fn sleep_or_cancel(shutdown: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig file whose one context points at `server`.
    fn kubeconfig(dir: &std::path::Path, server: &str) -> String {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
                 clusters: [{{name: k, cluster: {{server: \"{server}\"}}}}]\n\
                 users: [{{name: u, user: {{token: t}}}}]\n\
                 contexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n"
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn in_cluster_uses_the_service_account_and_never_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::load_from(None, Vec::new())
            .unwrap()
            .kubernetes;
        config.kubeconfig = kubeconfig(dir.path(), "https://from-the-kubeconfig:6443");
        let from_file = client_config(&config).await.unwrap();
        assert_eq!(
            from_file.cluster_url.to_string(),
            "https://from-the-kubeconfig:6443/"
        );
        // In-cluster: the service account's variables and token, or an error saying
        // they are missing, whatever kubeconfig is around.
        config.in_cluster = true;
        match client_config(&config).await {
            Ok(in_pod) => assert_ne!(in_pod.cluster_url, from_file.cluster_url),
            Err(err) => assert!(format!("{err:#}").contains("incluster"), "{err:#}"),
        }
    }
}
