//! The service's own sections: `[server]`, `[database]`, `[auth]`, `[limits]`,
//! `[log]`, `[kubernetes]` and `[engine]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, DatabaseUrl, Secret, invalid};
use crate::domain::Role;
use crate::wire::Bounds;

/// The decision loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Evaluate targets after ingests and on every tick. Off: nothing is decided.
    pub enabled: bool,
    /// How often every target with an active signal (or an unsettled decision) is
    /// evaluated again: duration rules such as G1 need time to pass.
    pub tick_secs: u64,
    /// A firing alert not delivered again for this long is stale: Alertmanager stopped
    /// re-sending it (a lost resolve), so it leaves evaluation. It stays stored and
    /// listed (`stale: true`). Set it above your longest `repeat_interval` plus one
    /// `group_interval`; the default covers Alertmanager's 4h and 5m with margin.
    pub alert_stale_secs: u64,
    /// Most alerts of one target the engine holds and weighs; beyond it the newest are
    /// kept, and the decision says how many were not considered.
    pub max_alerts_per_target: usize,
    /// Most targets with alerts the engine holds and evaluates; beyond it the targets
    /// with the newest alerts are kept.
    pub max_targets: usize,
    /// Most of its time the engine spends deciding, past a burst of one second: under a
    /// flood of alerts it then rests between batches and between a large batch's runs
    /// of evaluations (a decision waits up to `1 / busy_share - 1` times as long as its
    /// work took) and leaves the CPU to ingest. 1: it never rests.
    pub busy_share: f64,
}

impl EngineConfig {
    /// Checks `[engine]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_secs == 0 {
            return Err(invalid("engine.tick_secs", "must be at least 1"));
        }
        if self.alert_stale_secs < 600 {
            return Err(invalid(
                "engine.alert_stale_secs",
                "must be at least 600 (above Alertmanager's repeat_interval)",
            ));
        }
        if self.max_alerts_per_target == 0 {
            return Err(invalid(
                "engine.max_alerts_per_target",
                "must be at least 1",
            ));
        }
        if self.max_targets == 0 {
            return Err(invalid("engine.max_targets", "must be at least 1"));
        }
        if !(0.05..=1.0).contains(&self.busy_share) {
            return Err(invalid(
                "engine.busy_share",
                "must be between 0.05 and 1 (a share of the engine's time)",
            ));
        }
        Ok(())
    }

    /// The bounds the engine's window keeps to.
    pub fn limits(&self) -> crate::engine::WindowLimits {
        crate::engine::WindowLimits {
            stale_secs: self.alert_stale_secs,
            max_alerts_per_target: self.max_alerts_per_target,
            max_targets: self.max_targets,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A request that takes longer is answered 503 (senders retry).
    pub request_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Event streams (`GET /api/v1/events`) open at once; one more gets 503.
    pub max_event_streams: usize,
}

impl ServerConfig {
    /// Checks `[server]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit_bytes < 1024 {
            return Err(invalid("server.body_limit_bytes", "must be at least 1024"));
        }
        if self.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.max_event_streams) {
            return Err(invalid(
                "server.max_event_streams",
                "must be from 1 to 10000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` (embedded, the default) or `postgres://USER:PASSWORD@HOST/DB`.
    pub url: DatabaseUrl,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Concurrent group-commit writers; 0 picks 2 for Postgres and 1 for SQLite.
    pub writers: usize,
    /// Most notifications committed in one transaction.
    pub batch_max: usize,
}

impl DatabaseConfig {
    /// Checks `[database]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if !(self.url.is_postgres() || url.starts_with("sqlite:")) {
            return Err(invalid(
                "database.url",
                "must start with sqlite: (embedded) or postgres:// (server)",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.batch_max == 0 {
            return Err(invalid("database.batch_max", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens and their roles.
    pub tokens: Vec<TokenConfig>,
    /// With no tokens, serve without auth even on a non-loopback address.
    pub allow_anonymous: bool,
    /// People signed in by an authenticating reverse proxy.
    pub proxy: ProxyAuthConfig,
}

/// `[auth.proxy]`: trust the identity headers an authenticating reverse proxy
/// (oauth2-proxy) sets, on requests from its addresses only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuthConfig {
    pub enabled: bool,
    /// Where the proxy connects from (CIDRs or addresses). Identity headers on a
    /// request from anywhere else are ignored.
    pub trusted_sources: Vec<String>,
    /// Headers naming the person, the first present winning.
    pub user_headers: Vec<String>,
    /// The header listing the person's groups, comma-separated.
    pub groups_header: String,
    /// Group to role: a person gets the strongest role among their groups.
    pub roles: std::collections::BTreeMap<String, Role>,
    /// The role of a person in none of those groups; none: refused (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<Role>,
}

impl ProxyAuthConfig {
    /// The trusted networks, parsed (`10.0.0.0/8`, or an address alone).
    pub fn networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            format!("auth.proxy.trusted_sources[{i}]"),
                            format!("{s:?} is not a CIDR (10.0.0.0/8) or an address"),
                        )
                    })
            })
            .collect()
    }

    /// Checks `[auth.proxy]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let networks = self.networks()?;
        if self.enabled && networks.is_empty() {
            return Err(invalid(
                "auth.proxy.trusted_sources",
                "must name the proxy's addresses: identity headers from anywhere else are \
                 anyone's",
            ));
        }
        if self.user_headers.is_empty() {
            return Err(invalid("auth.proxy.user_headers", "must not be empty"));
        }
        for (i, name) in self.user_headers.iter().enumerate() {
            if axum::http::HeaderName::try_from(name.as_str()).is_err() {
                return Err(invalid(
                    format!("auth.proxy.user_headers[{i}]"),
                    "is not a header name",
                ));
            }
        }
        if axum::http::HeaderName::try_from(self.groups_header.as_str()).is_err() {
            return Err(invalid("auth.proxy.groups_header", "is not a header name"));
        }
        if let Some(group) = self
            .roles
            .keys()
            .find(|g| g.trim().is_empty() || g.contains(','))
        {
            return Err(invalid(
                "auth.proxy.roles",
                format!("{group:?} is not a group name (empty, or holds a comma)"),
            ));
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks `[auth]`: token names are unique and each token has one source.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let key = format!("auth.tokens[{i}]");
            if token.name.trim().is_empty() {
                return Err(invalid(format!("{key}.name"), "must not be empty"));
            }
            if !names.insert(token.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{:?} is used twice", token.name),
                ));
            }
            let sources = usize::from(!token.token.is_empty())
                + usize::from(token.token_file.is_some())
                + usize::from(token.token_env.is_some());
            if sources != 1 {
                return Err(invalid(
                    key,
                    "set exactly one of token, token_file, token_env",
                ));
            }
        }
        self.proxy.validate()
    }
}

/// One bearer token. Exactly one of `token`, `token_file`, `token_env` gives its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it; shown in logs and audit records instead of the token.
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub token: Secret,
    /// A file whose content (trimmed) is the token, e.g. a mounted Kubernetes Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// An environment variable that holds the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Alerts in one notification.
    pub max_alerts: usize,
    /// Labels on one alert.
    pub max_labels: usize,
    /// Bytes in a label or annotation name.
    pub max_label_name_bytes: usize,
    /// Bytes in a label value.
    pub max_label_value_bytes: usize,
    /// Annotations on one alert.
    pub max_annotations: usize,
    /// Bytes in an annotation value (and a generator URL).
    pub max_annotation_value_bytes: usize,
    /// Requests per second each caller (a token, or a client address without auth) may
    /// make to the ingest routes (webhooks, deploys, signals) once its burst is spent;
    /// 0: no limit.
    pub ingest_per_second: u32,
    /// Requests each caller may make to the ingest routes at once.
    pub ingest_burst: u32,
    /// Requests per second each caller may make to the write routes (freezes,
    /// approvals) once its burst is spent; 0: no limit.
    pub write_per_second: u32,
    /// Requests each caller may make to the write routes at once.
    pub write_burst: u32,
}

impl LimitsConfig {
    /// Checks `[limits]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits = [
            ("limits.max_alerts", self.max_alerts),
            ("limits.max_labels", self.max_labels),
            ("limits.max_label_name_bytes", self.max_label_name_bytes),
            ("limits.max_label_value_bytes", self.max_label_value_bytes),
            ("limits.max_annotations", self.max_annotations),
            (
                "limits.max_annotation_value_bytes",
                self.max_annotation_value_bytes,
            ),
        ];
        for (key, value) in limits {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (group, rate, burst) in [
            ("ingest", self.ingest_per_second, self.ingest_burst),
            ("write", self.write_per_second, self.write_burst),
        ] {
            if rate > 0 && burst < rate {
                return Err(invalid(
                    format!("limits.{group}_burst"),
                    format!("must be at least limits.{group}_per_second ({rate})"),
                ));
            }
        }
        Ok(())
    }

    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_alerts: self.max_alerts,
            max_labels: self.max_labels,
            max_label_name_bytes: self.max_label_name_bytes,
            max_label_value_bytes: self.max_label_value_bytes,
            max_annotations: self.max_annotations,
            max_annotation_value_bytes: self.max_annotation_value_bytes,
        }
    }
}

/// Deploy history from a Kubernetes cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Watch Deployments, ReplicaSets and Helm releases. Off: CI callbacks still work.
    pub enabled: bool,
    /// The name this cluster goes by in target keys (`cluster/namespace/kind/name`);
    /// also the default cluster of CI callbacks.
    pub cluster: String,
    /// Namespaces to watch; empty watches all (needs cluster-wide RBAC).
    pub namespaces: Vec<String>,
    /// A kubeconfig file. Empty: `$KUBECONFIG` or `~/.kube/config`, and, when neither
    /// loads and no `context` is set, the pod's service account (kube's
    /// `Config::infer`, in that order).
    pub kubeconfig: String,
    /// The kubeconfig context; empty uses the current one.
    pub context: String,
    /// Use the pod's service account only (kube's `Config::incluster`), never a
    /// kubeconfig: not with `kubeconfig` or `context`.
    pub in_cluster: bool,
    /// Where Helm keeps releases: `secret` (Helm's default), `configmap`, `both`, `none`.
    pub helm_driver: HelmDriver,
    /// Also watch Argo Rollouts and the ReplicaSets they own (`argo` deploys of
    /// targets of kind `Rollout`).
    pub argo_rollouts: bool,
    /// With several replicas, how often the watching one checks its lease and the others
    /// try to take it: the failover time after the watching replica dies.
    pub lease_retry_secs: u64,
    /// Several clusters (`[[kubernetes.clusters]]`), each watched and acted on with its
    /// own client and lease. Empty: one cluster, from `cluster`, `kubeconfig`,
    /// `context` and `in_cluster` above.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
}

/// One `[[kubernetes.clusters]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The name target keys use for it (`cluster/namespace/kind/name`).
    pub name: String,
    /// A kubeconfig file. Empty: `$KUBECONFIG` or `~/.kube/config`, and, when neither
    /// loads and no `context` is set, the pod's service account (kube's
    /// `Config::infer`, in that order).
    #[serde(default)]
    pub kubeconfig: String,
    /// The kubeconfig context; empty: the file's current one.
    #[serde(default)]
    pub context: String,
    /// The cluster rollwarden runs in, through the pod's service account only (kube's
    /// `Config::incluster`), never a kubeconfig: not with `kubeconfig` or `context`.
    #[serde(default)]
    pub in_cluster: bool,
}

impl KubernetesConfig {
    /// Checks `[kubernetes]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !dns(&self.cluster) {
            return Err(invalid(
                "kubernetes.cluster",
                "must be 1 to 63 lower-case letters, digits or '-'",
            ));
        }
        for (i, namespace) in self.namespaces.iter().enumerate() {
            if !dns(namespace) {
                return Err(invalid(
                    format!("kubernetes.namespaces[{i}]"),
                    format!("{namespace:?} is not a namespace name"),
                ));
            }
        }
        if self.lease_retry_secs == 0 {
            return Err(invalid("kubernetes.lease_retry_secs", "must be at least 1"));
        }
        // Both reach helm's argv as flag values (`--kubeconfig`, `--kube-context`).
        let flag_value = |key: String, value: &str| {
            if value.starts_with('-') || value.chars().any(char::is_control) {
                return Err(invalid(
                    key,
                    format!(
                        "{value:?} must not start with '-' or hold a control character \
                         (helm is given it as a flag's value)"
                    ),
                ));
            }
            Ok(())
        };
        flag_value("kubernetes.kubeconfig".into(), &self.kubeconfig)?;
        flag_value("kubernetes.context".into(), &self.context)?;
        for (i, cluster) in self.clusters.iter().enumerate() {
            flag_value(
                format!("kubernetes.clusters[{i}].kubeconfig"),
                &cluster.kubeconfig,
            )?;
            flag_value(
                format!("kubernetes.clusters[{i}].context"),
                &cluster.context,
            )?;
        }
        let top_level_access = [
            ("kubernetes.kubeconfig", !self.kubeconfig.is_empty()),
            ("kubernetes.context", !self.context.is_empty()),
            ("kubernetes.in_cluster", self.in_cluster),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key));
        if let (false, Some(key)) = (self.clusters.is_empty(), top_level_access) {
            return Err(invalid(
                key,
                "with [[kubernetes.clusters]], set kubeconfig, context or in_cluster on each \
                 cluster",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, cluster) in self.clusters.iter().enumerate() {
            if !dns(&cluster.name) {
                return Err(invalid(
                    format!("kubernetes.clusters[{i}].name"),
                    "must be 1 to 63 lower-case letters, digits or '-'",
                ));
            }
            if !seen.insert(cluster.name.as_str()) {
                return Err(invalid(
                    format!("kubernetes.clusters[{i}].name"),
                    format!("{:?} is configured twice", cluster.name),
                ));
            }
            if !cluster.kubeconfig.is_empty() && !Path::new(&cluster.kubeconfig).exists() {
                return Err(invalid(
                    format!("kubernetes.clusters[{i}].kubeconfig"),
                    format!("{} does not exist", cluster.kubeconfig),
                ));
            }
        }
        if !self.kubeconfig.is_empty() && !Path::new(&self.kubeconfig).exists() {
            return Err(invalid(
                "kubernetes.kubeconfig",
                format!("{} does not exist", self.kubeconfig),
            ));
        }
        for (key, cluster) in self.keyed_clusters() {
            if cluster.in_cluster && (!cluster.kubeconfig.is_empty() || !cluster.context.is_empty())
            {
                return Err(invalid(
                    format!("{key}in_cluster"),
                    "in_cluster = true uses the pod's service account: set no kubeconfig or \
                     context with it",
                ));
            }
        }
        if let [_, second, ..] = self
            .clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.in_cluster)
            .collect::<Vec<_>>()[..]
        {
            return Err(invalid(
                format!("kubernetes.clusters[{}].in_cluster", second.0),
                "only one cluster is the one rollwarden runs in",
            ));
        }
        if !self.clusters.is_empty() && !self.clusters.iter().any(|c| c.name == self.cluster) {
            return Err(invalid(
                "kubernetes.cluster",
                format!(
                    "{:?} (the cluster of alerts and deploys that name none) is not one of \
                     [[kubernetes.clusters]]: {}",
                    self.cluster,
                    self.clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The clusters to watch and act on: `[[kubernetes.clusters]]`, or the one the
    /// top-level keys describe.
    pub fn cluster_list(&self) -> Vec<ClusterConfig> {
        if self.clusters.is_empty() {
            vec![ClusterConfig {
                name: self.cluster.clone(),
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                in_cluster: self.in_cluster,
            }]
        } else {
            self.clusters.clone()
        }
    }

    /// Each cluster with the prefix of its keys (`kubernetes.` or
    /// `kubernetes.clusters[i].`).
    fn keyed_clusters(&self) -> Vec<(String, ClusterConfig)> {
        if self.clusters.is_empty() {
            return vec![("kubernetes.".into(), self.cluster_list().remove(0))];
        }
        self.clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("kubernetes.clusters[{i}]."), c.clone()))
            .collect()
    }

    /// This configuration narrowed to one of its clusters: what that cluster's
    /// watchers run with.
    pub fn for_cluster(&self, cluster: &ClusterConfig) -> KubernetesConfig {
        KubernetesConfig {
            cluster: cluster.name.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            context: cluster.context.clone(),
            in_cluster: cluster.in_cluster,
            clusters: Vec::new(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelmDriver {
    Secret,
    Configmap,
    Both,
    None,
}

impl HelmDriver {
    pub fn secrets(self) -> bool {
        matches!(self, HelmDriver::Secret | HelmDriver::Both)
    }

    pub fn configmaps(self) -> bool {
        matches!(self, HelmDriver::Configmap | HelmDriver::Both)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `rollwarden=debug,info`; `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl LogConfig {
    /// Checks `[log]`: the level must be a tracing filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(invalid(
                "log.level",
                format!("{:?} is not a valid filter", self.level),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}
