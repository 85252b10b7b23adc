//! Logs (tracing, text or JSON) and the Prometheus metrics registry.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub source: &'static str,
    /// accepted, duplicate, rejected, unauthorized, failed
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchErrorLabels {
    pub resource: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvaluationLabels {
    /// `batch` (targets an ingest touched) or `tick` (every due target).
    pub trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeployLabels {
    pub source: &'static str,
    /// created, changed, unchanged
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InteractionLabels {
    /// approved, rejected, no_op, refused, ignored, bad_signature, stale
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    pub operation: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    /// The rate-limited route group: ingest, write
    pub group: &'static str,
    /// The token's configured name; `anonymous` without auth
    pub principal: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms … 8 s
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// Every metric rollwarden exports. One per app, so tests never share counters.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub notifications: Family<NotificationLabels, Counter>,
    pub alerts_stored: Counter,
    pub http_duration: HistogramFamily<HttpLabels>,
    pub store_errors: Family<StoreErrorLabels, Counter>,
    pub ingest_batch_size: Histogram,
    pub watch_errors: Family<WatchErrorLabels, Counter>,
    pub helm_decode_errors: Family<ReasonLabels, Counter>,
    pub deploys_recorded: Family<DeployLabels, Counter>,
    pub decisions: Family<VerdictLabels, Counter>,
    pub actions: Family<ActionLabels, Counter>,
    pub notifications_sent: Family<ChannelLabels, Counter>,
    pub throttled: Family<ThrottleLabels, Counter>,
    pub slack_interactions: Family<InteractionLabels, Counter>,
    pub engine_window_alerts: Gauge,
    pub engine_alerts_dropped: Family<ReasonLabels, Gauge>,
    pub engine_alerts_stale: Gauge,
    pub engine_evaluation: HistogramFamily<EvaluationLabels>,
    pub engine_rest: Counter<f64, std::sync::atomic::AtomicU64>,
    pub watchers_leading: Family<ClusterLabels, Gauge>,
    pub cluster_reachable: Family<ClusterLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rollwarden");
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications_received",
            "Inbound notifications by source and outcome",
            notifications.clone(),
        );
        let alerts_stored = Counter::default();
        registry.register(
            "alerts_stored",
            "Alert occurrences inserted or updated",
            alerts_stored.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, matched route and status",
            http_duration.clone(),
        );
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed, by operation and kind",
            store_errors.clone(),
        );
        let ingest_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "ingest_batch_size",
            "Notifications committed per group-commit transaction",
            ingest_batch_size.clone(),
        );
        let watch_errors = Family::<WatchErrorLabels, Counter>::default();
        registry.register(
            "kubernetes_watch_errors",
            "Kubernetes list/watch failures by resource and reason (retried with backoff)",
            watch_errors.clone(),
        );
        let helm_decode_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "helm_decode_errors",
            "Helm release objects skipped because they do not decode, by reason",
            helm_decode_errors.clone(),
        );
        let deploys_recorded = Family::<DeployLabels, Counter>::default();
        registry.register(
            "deploys_recorded",
            "Deploy reports by source and what they did to the history",
            deploys_recorded.clone(),
        );
        let decisions = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions recorded (a verdict or its inputs changed), by verdict",
            decisions.clone(),
        );
        let throttled = Family::<ThrottleLabels, Counter>::default();
        registry.register(
            "http_requests_throttled",
            "Requests answered 429 because their caller was over the rate limit, by route \
             group and token name",
            throttled.clone(),
        );
        let engine_window_alerts = Gauge::default();
        registry.register(
            "engine_window_alerts",
            "Alerts the engine holds in its window after its last load",
            engine_window_alerts.clone(),
        );
        let engine_alerts_dropped = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "engine_alerts_dropped",
            "Firing or recent alerts the engine left out of its window at its last load, by \
             the cap that left them out (max_alerts_per_target, max_targets)",
            engine_alerts_dropped.clone(),
        );
        for reason in ["max_alerts_per_target", "max_targets"] {
            engine_alerts_dropped
                .get_or_create(&ReasonLabels { reason })
                .set(0);
        }
        let engine_alerts_stale = Gauge::default();
        registry.register(
            "engine_alerts_stale",
            "Firing alerts not delivered again within engine.alert_stale_secs: stored, listed \
             as stale, left out of evaluation",
            engine_alerts_stale.clone(),
        );
        let engine_evaluation: HistogramFamily<EvaluationLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "engine_evaluation_duration_seconds",
            "Time the engine took to evaluate a batch of touched targets or a tick of due \
             targets, store reads included",
            engine_evaluation.clone(),
        );
        for trigger in ["batch", "tick"] {
            let _ = engine_evaluation.get_or_create(&EvaluationLabels { trigger });
        }
        let engine_rest = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "engine_rest_seconds",
            "Time the engine rested because its batches had spent its engine.busy_share \
             (under a flood of alerts)",
            engine_rest.clone(),
        );
        let watchers_leading = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "kubernetes_watchers_leading",
            "1 while this replica holds the cluster's watcher lease and watches, 0 while \
             another replica does (no series without kubernetes.enabled)",
            watchers_leading.clone(),
        );
        let cluster_reachable = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "kubernetes_cluster_reachable",
            "On the replica watching a cluster: 1 while its API server answers the \
             watches, 0 while it cannot be reached (no series elsewhere)",
            cluster_reachable.clone(),
        );
        for verdict in ["ok", "monitor", "investigate", "hold", "rollback", "freeze"] {
            decisions
                .get_or_create(&VerdictLabels {
                    verdict: verdict.to_string(),
                })
                .get();
        }
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Action state changes (attempt outcomes, verifications, expiries) by kind and outcome",
            actions.clone(),
        );
        let notifications_sent = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "notifications_sent",
            "Outbound notification delivery attempts by channel and outcome",
            notifications_sent.clone(),
        );
        let slack_interactions = Family::<InteractionLabels, Counter>::default();
        registry.register(
            "slack_interactions",
            "Slack button presses and interaction requests by outcome",
            slack_interactions.clone(),
        );
        for channel in ["slack", "slack_app", "pagerduty", "email", "webhook"] {
            for outcome in ["delivered", "retry", "failed"] {
                let _ = notifications_sent.get_or_create(&ChannelLabels {
                    channel: channel.into(),
                    outcome: outcome.into(),
                });
            }
        }
        for reason in ["not_helm", "base64", "gzip", "too_large", "json", "field"] {
            let _ = helm_decode_errors.get_or_create(&ReasonLabels { reason });
        }
        for kind in [
            "rollout_undo",
            "helm_rollback",
            "workflow_dispatch",
            "argo_abort",
            "argo_undo",
            "argocd_rollback",
            "command",
            "webhook",
            "freeze",
        ] {
            for outcome in [
                "verifying",
                "succeeded",
                "verified",
                "escalated",
                "failed",
                "dry_run",
            ] {
                actions
                    .get_or_create(&ActionLabels {
                        kind: kind.into(),
                        outcome: outcome.into(),
                    })
                    .get();
            }
        }
        // Known series exist from the start at 0, so rate() and alerts work at once.
        for source in ["alertmanager", "ci"] {
            for outcome in ["accepted", "duplicate", "rejected", "failed"] {
                notifications
                    .get_or_create(&NotificationLabels { source, outcome })
                    .get();
            }
        }
        for operation in [
            "record_notifications",
            "record_deploys",
            "list_alerts",
            "ping",
        ] {
            for kind in ["unavailable", "query"] {
                store_errors
                    .get_or_create(&StoreErrorLabels { operation, kind })
                    .get();
            }
        }
        Self {
            registry: Mutex::new(registry),
            notifications,
            alerts_stored,
            http_duration,
            store_errors,
            ingest_batch_size,
            watch_errors,
            helm_decode_errors,
            deploys_recorded,
            decisions,
            actions,
            notifications_sent,
            slack_interactions,
            throttled,
            engine_window_alerts,
            engine_alerts_dropped,
            engine_alerts_stale,
            engine_evaluation,
            engine_rest,
            watchers_leading,
            cluster_reachable,
        }
    }

    pub fn action(&self, kind: &str, outcome: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn notification_sent(&self, channel: &str, outcome: &str) {
        self.notifications_sent
            .get_or_create(&ChannelLabels {
                channel: channel.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn slack_interaction(&self, outcome: &'static str) {
        self.slack_interactions
            .get_or_create(&InteractionLabels { outcome })
            .inc();
    }

    pub fn throttled(&self, group: &'static str, principal: String) {
        self.throttled
            .get_or_create(&ThrottleLabels { group, principal })
            .inc();
    }

    pub fn notification(&self, source: &'static str, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels { source, outcome })
            .inc();
    }

    pub fn store_error(&self, operation: &'static str, err: &crate::store::StoreError) {
        self.store_errors
            .get_or_create(&StoreErrorLabels {
                operation,
                kind: err.metric_label(),
            })
            .inc();
    }

    pub fn watch_error(&self, resource: &'static str, reason: &'static str) {
        self.watch_errors
            .get_or_create(&WatchErrorLabels { resource, reason })
            .inc();
    }

    /// Makes the watch-error series of `resource` and `reason` exist (at 0 until an
    /// error), so that rates over it are 0 rather than absent.
    pub fn watch_errors_seen(&self, resource: &'static str, reason: &'static str) {
        let _ = self
            .watch_errors
            .get_or_create(&WatchErrorLabels { resource, reason });
    }

    pub fn helm_decode_error(&self, reason: &'static str) {
        self.helm_decode_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn deploy_recorded(&self, source: &'static str, created: bool, changed: bool) {
        let outcome = match (created, changed) {
            (true, _) => "created",
            (false, true) => "changed",
            (false, false) => "unchanged",
        };
        self.deploys_recorded
            .get_or_create(&DeployLabels { source, outcome })
            .inc();
    }

    /// The engine's window after a load: alerts held, and alerts left out by each cap.
    pub fn engine_window(&self, held: u64, over_per_target: u64, over_targets: u64) {
        self.engine_window_alerts.set(held as i64);
        for (reason, n) in [
            ("max_alerts_per_target", over_per_target),
            ("max_targets", over_targets),
        ] {
            self.engine_alerts_dropped
                .get_or_create(&ReasonLabels { reason })
                .set(n as i64);
        }
    }

    /// Records how long an engine evaluation took.
    /// The engine rests for `rest` (its busy share is spent).
    pub fn engine_rest(&self, rest: std::time::Duration) {
        self.engine_rest.inc_by(rest.as_secs_f64());
    }

    pub fn engine_evaluated(&self, trigger: &'static str, took: std::time::Duration) {
        self.engine_evaluation
            .get_or_create(&EvaluationLabels { trigger })
            .observe(took.as_secs_f64());
    }

    /// Whether this replica watches `cluster` (holds its lease).
    pub fn watchers_leading(&self, cluster: &str, leading: bool) {
        self.watchers_leading
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .set(i64::from(leading));
    }

    /// Whether the watched cluster's API server answers; `None` removes the series
    /// (this replica stopped watching it).
    pub fn cluster_reachable(&self, cluster: &str, reachable: Option<bool>) {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        match reachable {
            Some(up) => {
                self.cluster_reachable
                    .get_or_create(&labels)
                    .set(i64::from(up));
            }
            None => {
                self.cluster_reachable.remove(&labels);
            }
        }
    }

    pub fn decision(&self, verdict: &str) {
        self.decisions
            .get_or_create(&VerdictLabels {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
