//! Building and running the service: one [`AppState`], one listener, one shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderName;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actions::executor::Executors;
use crate::actions::{Channels, Planner, Worker, WorkerConfig};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::{Engine, EngineQueue};
use crate::events::EventHub;
use crate::http::auth::{Authenticator, ProxyAuth};
use crate::http::limit::RateLimit;
use crate::ingest::Ingestor;
use crate::k8s::watch::{self, Watchers};
use crate::store::lock::{WriterLock, lock_sqlite_writer};
use crate::store::{self, Store};
use crate::telemetry::Metrics;
use crate::wire::Bounds;

/// What every handler shares: one pointer, since axum clones the state into every
/// request's handler and middleware (cloning the fields' twenty-odd `Arc`s and strings
/// per request took 7 % of the ingest's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub bounds: Bounds,
    /// The cluster name of target keys (`kubernetes.cluster`).
    pub cluster: String,
    /// Each watched cluster as this replica sees it (`/readyz`).
    pub clusters: Arc<crate::k8s::clusters::Clusters>,
    /// Wakes the outbox workers (after an approval).
    pub actions_wake: Arc<tokio::sync::Notify>,
    /// Evaluates a target on request (canary gates), with the engine on or off.
    pub evaluator: Engine,
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// Per-caller limits of the ingest and write route groups; `None`: unlimited.
    pub ingest_limit: Option<Arc<RateLimit>>,
    pub write_limit: Option<Arc<RateLimit>>,
    /// The live event stream's fan-out (`GET /api/v1/events`).
    pub events: Arc<EventHub>,
    /// The Slack app's buttons, when it is interactive.
    pub slack: Option<Arc<crate::http::slack::SlackInteractions>>,
}

/// A built service, bound to its address, not yet serving.
pub struct App {
    listener: TcpListener,
    state: AppState,
    workers: JoinSet<()>,
    grace: Duration,
    kubernetes: crate::config::KubernetesConfig,
    /// One per cluster, when `kubernetes.enabled`.
    watchers: Vec<Watchers>,
    /// The decision loop and its queue, when `engine.enabled`.
    engine: Option<(Engine, EngineQueue)>,
    /// The outbox workers, when `actions.enabled`.
    actions: Option<Worker>,
    tick: Duration,
    /// `engine.busy_share`.
    busy_share: f64,
    /// `serve` on SQLite: the file's writer lock, released when the app has stopped.
    writer_lock: Option<WriterLock>,
    rollout_timeout: Duration,
    rollout_poll: Duration,
}

/// Outbox workers each replica runs: a rollback that waits minutes for its rollout
/// does not hold up the others' actions and notifications.
const ACTION_WORKERS: usize = 2;

impl App {
    /// Connects and migrates the configured store, then builds the app on it.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let writer_lock = lock_sqlite_writer(config.database.url.expose())?;
        let store = store::connect(
            config.database.url.expose(),
            config.database.max_connections,
        )
        .await
        .with_context(|| format!("opening {:?}", config.database.url))?;
        store.migrate().await.context("applying migrations")?;
        let kubernetes = config.kubernetes.clone();
        let mut app = Self::build_with(config, store, Arc::new(SystemClock)).await?;
        app.writer_lock = writer_lock;
        if !kubernetes.enabled {
            tracing::info!("kubernetes.enabled = false: deploy history from CI callbacks only");
            return Ok(app);
        }
        let mut clients = Vec::new();
        for cluster in kubernetes.cluster_list() {
            let client = watch::client(&kubernetes.for_cluster(&cluster))
                .await
                .with_context(|| {
                    format!(
                        "kubernetes.enabled = true but no access to cluster {:?}: run in a pod \
                         with a service account, or set its kubeconfig",
                        cluster.name
                    )
                })?;
            clients.push((cluster.name, client));
        }
        Ok(app.with_clusters(clients))
    }

    /// Watches deploy history through `client` while serving, as the first configured
    /// cluster (tests pass a client of the fake API server here).
    pub fn with_kubernetes(self, client: kube::Client) -> Self {
        let name = self.kubernetes.cluster_list()[0].name.clone();
        self.with_clusters(vec![(name, client)])
    }

    /// Watches and acts on each named cluster through its client: one set of watchers
    /// (with its own lease) and one set of Kubernetes executors per cluster.
    pub fn with_clusters(mut self, clients: Vec<(String, kube::Client)>) -> Self {
        if let Some(worker) = &mut self.actions {
            worker.executors = worker.executors.clone().with_clusters(
                &clients,
                self.rollout_timeout,
                self.rollout_poll,
            );
        }
        let configured = self.kubernetes.cluster_list();
        self.watchers = clients
            .into_iter()
            .map(|(name, client)| {
                let cluster = configured
                    .iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .unwrap_or(crate::config::ClusterConfig {
                        name,
                        ..Default::default()
                    });
                Watchers {
                    client,
                    store: self.state.store.clone(),
                    metrics: self.state.metrics.clone(),
                    clock: self.state.clock.clone(),
                    config: self.kubernetes.for_cluster(&cluster),
                    clusters: self.state.clusters.clone(),
                }
            })
            .collect();
        self
    }

    /// Builds the app on a given store and clock (tests inject theirs here).
    pub async fn build_with(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<App> {
        // The rules check-config applies, on the same path.
        config.lint()?;
        let tokens = config.resolve_tokens()?;
        let mut auth = Authenticator::new(tokens);
        let proxy = &config.auth.proxy;
        if proxy.enabled {
            auth = auth.with_proxy(ProxyAuth {
                trusted: proxy.networks()?,
                user_headers: proxy
                    .user_headers
                    .iter()
                    .map(|h| HeaderName::try_from(h.as_str()))
                    .collect::<Result<_, _>>()
                    .context("auth.proxy.user_headers")?,
                groups_header: HeaderName::try_from(proxy.groups_header.as_str())
                    .context("auth.proxy.groups_header")?,
                roles: proxy.roles.clone(),
                default_role: proxy.default_role,
            });
            tracing::info!(trusted = ?proxy.trusted_sources, "people signed in by the proxy are trusted from these sources");
        }
        let auth = Arc::new(auth);
        let listen = config.server.listen;
        if auth.is_open() {
            tracing::warn!(%listen, "no auth tokens configured: every request is allowed");
        }
        let metrics = Arc::new(Metrics::new());
        let classifier = Arc::new(config.classifier()?);
        let policy = Arc::new(config.policy.clone());
        let actions_wake = Arc::new(tokio::sync::Notify::new());
        let channels = Channels::from_config(
            &config.notify,
            config.notify.templates()?,
            Duration::from_secs(config.actions.http_timeout_secs),
        )
        .map_err(|err| anyhow::anyhow!(err))?;
        let planner = Planner {
            store: store.clone(),
            freeze_scope: config.actions.freeze_scope,
            releases: config.policy.releases.clone(),
            approval_ttl: chrono::Duration::seconds(
                i64::try_from(config.actions.approval_ttl_secs).unwrap_or(i64::MAX),
            ),
            channels: channels.clone(),
            wake: actions_wake.clone(),
        };
        let actions = if config.actions.enabled {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(config.actions.http_timeout_secs))
                .user_agent(concat!("rollwarden/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("building the HTTP client of the executors")?;
            if config.actions.dry_run {
                tracing::warn!(
                    "actions.dry_run = true: executors record what they would do and do nothing"
                );
            }
            Some(Worker {
                owner: format!("worker-{}", uuid::Uuid::new_v4()),
                store: store.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                policy: policy.clone(),
                executors: Executors::new(
                    &config.actions,
                    &config.kubernetes.cluster_list(),
                    config.github_token(),
                    None,
                    store.clone(),
                    clock.clone(),
                    http.clone(),
                ),
                channels,
                http,
                config: WorkerConfig::from_config(&config.actions, &config.notify),
                wake: actions_wake.clone(),
                status_sent: Arc::default(),
            })
        } else {
            None
        };
        let evaluator = Engine {
            store: store.clone(),
            classifier: classifier.clone(),
            policy,
            clock: clock.clone(),
            metrics: metrics.clone(),
            planner: Some(planner),
            limits: config.engine.limits(),
        };
        // Before any ingest: alerts stored by an older version, or mapped by another
        // config, get their target for the canary reads' index.
        let mapped = evaluator
            .map_alert_targets()
            .await
            .context("mapping the window's alerts to their targets")?;
        if mapped > 0 {
            tracing::info!(alerts = mapped, "alerts mapped to their targets");
        }
        let (engine_handle, engine) = if config.engine.enabled {
            let (handle, queue) = Engine::channel();
            (Some(handle), Some((evaluator.clone(), queue)))
        } else {
            (None, None)
        };
        let mut workers = JoinSet::new();
        let ingestor = Ingestor::start(
            store.clone(),
            metrics.clone(),
            classifier.clone(),
            engine_handle,
            config.writers(),
            config.database.batch_max,
            &mut workers,
        );
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let limits = &config.limits;
        let ingest_limit = RateLimit::new(
            "ingest",
            limits.ingest_per_second,
            limits.ingest_burst,
            auth.clone(),
            metrics.clone(),
        );
        let write_limit = RateLimit::new(
            "write",
            limits.write_per_second,
            limits.write_burst,
            auth.clone(),
            metrics.clone(),
        );
        let state = AppState(Arc::new(Shared {
            store,
            ingestor,
            auth,
            metrics,
            clock,
            bounds: config.limits.bounds(),
            cluster: config.kubernetes.cluster.clone(),
            clusters: Arc::new(crate::k8s::clusters::Clusters::new(
                config
                    .kubernetes
                    .cluster_list()
                    .iter()
                    .filter(|_| config.kubernetes.enabled)
                    .map(|c| c.name.as_str()),
            )),
            actions_wake,
            evaluator,
            body_limit_bytes: config.server.body_limit_bytes,
            request_timeout_secs: config.server.request_timeout_secs,
            ingest_limit,
            write_limit,
            events: Arc::new(EventHub::new(config.server.max_event_streams)),
            slack: crate::http::slack::SlackInteractions::from_config(
                &config.notify.slack,
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(config.actions.http_timeout_secs))
                    .user_agent(concat!("rollwarden/", env!("CARGO_PKG_VERSION")))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .context("building the HTTP client of the Slack app")?,
            ),
        }));
        Ok(App {
            listener,
            state,
            workers,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            kubernetes: config.kubernetes,
            watchers: Vec::new(),
            engine,
            tick: Duration::from_secs(config.engine.tick_secs),
            busy_share: config.engine.busy_share,
            writer_lock: None,
            actions,
            rollout_timeout: Duration::from_secs(config.actions.rollout_timeout_secs),
            // `rollout status` polls as kubectl's watch would notice: within a second.
            rollout_poll: Duration::from_millis(config.actions.poll_ms.min(1000)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight
    /// requests finish (at most the grace period), commits what was handed to the
    /// writers and closes the store.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            mut workers,
            grace,
            watchers,
            engine,
            tick,
            busy_share,
            actions,
            writer_lock,
            ..
        } = self;
        if let Some(worker) = actions {
            for i in 0..ACTION_WORKERS {
                let mut worker = worker.clone();
                worker.owner = format!("{}-{i}", worker.owner);
                workers.spawn(worker.run(shutdown.clone()));
            }
        }
        for watchers in watchers {
            workers.spawn(watchers.run(shutdown.clone()));
        }
        if let Some((engine, queue)) = engine {
            let budget = crate::engine::Budget::new(busy_share, std::time::Instant::now());
            workers.spawn(engine.run(queue, tick, budget, shutdown.clone()));
        }
        let store = state.store.clone();
        workers.spawn(state.events.clone().run(store.clone(), shutdown.clone()));
        workers.spawn(maintain(
            store.clone(),
            state.metrics.clone(),
            shutdown.clone(),
        ));
        tracing::info!(addr = %listener.local_addr()?, store = store.backend(), "serving");
        let router = crate::http::router(state);
        let stop = shutdown.clone();
        let mut server = tokio::spawn(async move {
            // The client's address keys the rate limits when there are no tokens.
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        });
        let served = tokio::select! {
            result = &mut server => Some(result),
            () = shutdown.cancelled() => None,
        };
        let result = match served {
            Some(result) => result,
            None => {
                tracing::info!(grace_secs = grace.as_secs(), "shutting down");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result,
                    Err(_) => {
                        // Requests cut off here got no 2xx; their senders retry.
                        tracing::warn!("grace period over; closing remaining connections");
                        server.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        // The router (and with it the ingestor's sender) is gone: writers drain and stop.
        while workers.join_next().await.is_some() {}
        store.close().await;
        drop(writer_lock);
        tracing::info!("stopped");
        result.context("server task")?.context("serving")
    }
}

/// Runs [`Store::maintain`] every [`store::MAINTAIN_EVERY`] until `shutdown`. A failure
/// (say, a role that does not own the index) is logged and retried a minute later: the
/// database then merges on its own, at its pending-list limit, in an ingest (SQLite's
/// unsigned alerts stay unsigned meanwhile, and label lists read their labels).
async fn maintain(store: Arc<dyn Store>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    const AFTER_FAILURE: Duration = Duration::from_secs(60);
    let mut wait = store::MAINTAIN_EVERY;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = match store.maintain().await {
            Ok(_) => store::MAINTAIN_EVERY,
            Err(err) => {
                metrics.store_error("maintain", &err);
                tracing::warn!(error = %err, retry_secs = AFTER_FAILURE.as_secs(),
                    "keeping the labels index failed");
                AFTER_FAILURE
            }
        };
    }
}
