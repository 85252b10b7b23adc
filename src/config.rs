//! Configuration: built-in defaults, then an optional TOML file, then
//! `ROLLWARDEN__SECTION__KEY` environment variables. `validate()` fails fast and names
//! the key; secrets print as `***` in `Debug`, in logs and in `check-config`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use std::collections::BTreeMap;

use crate::domain::Role;
use crate::domain::classify::{Classifier, EnvironmentConfig, SignalsConfig, TargetConfig};
use crate::domain::policy::Policy;
use crate::wire::Bounds;

/// A value that must never be printed: tokens, passwords.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// The whole configuration. Every field has a default; see `config.example.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub kubernetes: KubernetesConfig,
    pub engine: EngineConfig,
    pub actions: ActionsConfig,
    pub notify: NotifyConfig,
    /// Configured targets (`[[targets]]`); alerts also discover targets by labels.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Environments and the mode each selects (`[environments.prod] mode = "approve"`).
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// How alerts become signals.
    #[serde(default)]
    pub signals: SignalsConfig,
    /// The decision matrix; defaults reproduce the runbooks.
    #[serde(default)]
    pub policy: Policy,
}

/// The decision loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Evaluate targets after ingests and on every tick. Off: nothing is decided.
    pub enabled: bool,
    /// How often every target with an active signal (or an unsettled decision) is
    /// evaluated again: duration rules such as G1 need time to pass.
    pub tick_secs: u64,
}

/// Turning decisions into actions: the outbox workers and the executors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Run the outbox workers. Off: actions are enqueued (and visible) but not run.
    pub enabled: bool,
    /// Every executor records and logs what it would do, and does nothing else.
    pub dry_run: bool,
    /// How often an idle worker looks for work (new actions also wake it).
    pub poll_ms: u64,
    /// How long a claimed action is leased to its worker; a worker that dies holds it
    /// this long, then the next worker checks the world and resumes it.
    pub lease_secs: u64,
    /// Attempts at a transiently failing action before it fails for good.
    pub max_attempts: u32,
    /// Retry backoff: base, doubled per attempt, capped.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// An action awaiting approval expires after this long.
    pub approval_ttl_secs: u64,
    /// How an M8 freeze is scoped: `all` (the runbook's "stop all deployments"),
    /// `namespace`, or `target`.
    pub freeze_scope: crate::domain::action::FreezeScope,
    /// Longest a rollout undo waits for `rollout status` (the Deployment's own
    /// progress deadline usually ends it first).
    pub rollout_timeout_secs: u64,
    /// The `helm` binary, and how long `helm rollback --wait` may take.
    pub helm_path: String,
    pub helm_timeout_secs: u64,
    /// GitHub Actions workflow_dispatch: API base (GitHub Enterprise:
    /// `https://HOST/api/v3`), `owner/repo`, the ref to run on, and the token (or the
    /// environment variable holding it).
    pub github_api_url: String,
    pub github_repository: String,
    pub github_ref: String,
    pub github_token: Secret,
    pub github_token_env: String,
    /// Timeout of every outbound HTTP call (GitHub, webhooks, Slack).
    pub http_timeout_secs: u64,
    /// Command executors (`command:NAME`): argv templates, never run through a shell.
    pub commands: Vec<CommandConfig>,
    /// Webhook executors (`webhook:NAME`): POST the decision JSON.
    pub webhooks: Vec<WebhookConfig>,
}

/// `[[actions.commands]]`: an argv template. Each element is a template with
/// `{{ namespace }}`, `{{ name }}`, `{{ region }}`, `{{ rollback_revision }}`,
/// `{{ image_tag }}`… (see the README); unknown names are configuration errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub name: String,
    pub argv: Vec<String>,
    #[serde(default = "default_command_timeout")]
    pub timeout_secs: u64,
}

fn default_command_timeout() -> u64 {
    300
}

/// `[[actions.webhooks]]`: where to POST the decision JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(default)]
    pub token: Secret,
}

/// Where people hear about decisions and actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A Slack incoming-webhook URL (a secret: whoever has it can post).
    pub slack_webhook_url: Secret,
    /// A generic JSON webhook: every notification is POSTed here too.
    pub webhook_url: String,
    /// Sent to `webhook_url` as `Authorization: Bearer …` when set.
    pub webhook_token: Secret,
    /// rollwarden's external URL, for links in messages.
    pub public_url: String,
    /// Attempts at delivering one notification.
    pub max_attempts: u32,
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

/// A database URL whose password never reaches a log.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@') else {
            return url.clone();
        };
        match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.clone(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens and their roles.
    pub tokens: Vec<TokenConfig>,
    /// With no tokens, serve without auth even on a non-loopback address.
    pub allow_anonymous: bool,
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
    /// A kubeconfig file; empty uses the in-cluster service account, then
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: String,
    /// The kubeconfig context; empty uses the current one.
    pub context: String,
    /// Where Helm keeps releases: `secret` (Helm's default), `configmap`, `both`, `none`.
    pub helm_driver: HelmDriver,
    /// With several replicas, how often the watching one checks its lease and the others
    /// try to take it: the failover time after the watching replica dies.
    pub lease_retry_secs: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration that cannot be used, with the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Loads defaults, then `file` (which must exist when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("ROLLWARDEN__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("ROLLWARDEN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let config: Config = builder.build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose();
        if !(self.database.url.is_postgres() || url.starts_with("sqlite:")) {
            return Err(invalid(
                "database.url",
                "must start with sqlite: (embedded) or postgres:// (server)",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.database.batch_max == 0 {
            return Err(invalid("database.batch_max", "must be at least 1"));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(invalid("server.body_limit_bytes", "must be at least 1024"));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        let limits = [
            ("limits.max_alerts", self.limits.max_alerts),
            ("limits.max_labels", self.limits.max_labels),
            (
                "limits.max_label_name_bytes",
                self.limits.max_label_name_bytes,
            ),
            (
                "limits.max_label_value_bytes",
                self.limits.max_label_value_bytes,
            ),
            ("limits.max_annotations", self.limits.max_annotations),
            (
                "limits.max_annotation_value_bytes",
                self.limits.max_annotation_value_bytes,
            ),
        ];
        for (key, value) in limits {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (group, rate, burst) in [
            (
                "ingest",
                self.limits.ingest_per_second,
                self.limits.ingest_burst,
            ),
            (
                "write",
                self.limits.write_per_second,
                self.limits.write_burst,
            ),
        ] {
            if rate > 0 && burst < rate {
                return Err(invalid(
                    format!("limits.{group}_burst"),
                    format!("must be at least limits.{group}_per_second ({rate})"),
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!("{:?} is not a valid filter", self.log.level),
            ));
        }
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !dns(&self.kubernetes.cluster) {
            return Err(invalid(
                "kubernetes.cluster",
                "must be 1 to 63 lower-case letters, digits or '-'",
            ));
        }
        for (i, namespace) in self.kubernetes.namespaces.iter().enumerate() {
            if !dns(namespace) {
                return Err(invalid(
                    format!("kubernetes.namespaces[{i}]"),
                    format!("{namespace:?} is not a namespace name"),
                ));
            }
        }
        if self.kubernetes.lease_retry_secs == 0 {
            return Err(invalid("kubernetes.lease_retry_secs", "must be at least 1"));
        }
        if !self.kubernetes.kubeconfig.is_empty()
            && !Path::new(&self.kubernetes.kubeconfig).exists()
        {
            return Err(invalid(
                "kubernetes.kubeconfig",
                format!("{} does not exist", self.kubernetes.kubeconfig),
            ));
        }
        if self.engine.tick_secs == 0 {
            return Err(invalid("engine.tick_secs", "must be at least 1"));
        }
        self.validate_actions()?;
        self.classifier()?;
        self.policy
            .validate()
            .map_err(|e| invalid("policy", e.to_string()))?;
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.auth.tokens.iter().enumerate() {
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
        Ok(())
    }

    fn validate_actions(&self) -> Result<(), ConfigError> {
        let a = &self.actions;
        for (key, value) in [
            ("actions.poll_ms", a.poll_ms),
            ("actions.lease_secs", a.lease_secs),
            ("actions.retry_base_secs", a.retry_base_secs),
            ("actions.retry_max_secs", a.retry_max_secs),
            ("actions.approval_ttl_secs", a.approval_ttl_secs),
            ("actions.rollout_timeout_secs", a.rollout_timeout_secs),
            ("actions.helm_timeout_secs", a.helm_timeout_secs),
            ("actions.http_timeout_secs", a.http_timeout_secs),
            ("actions.max_attempts", u64::from(a.max_attempts)),
            ("notify.max_attempts", u64::from(self.notify.max_attempts)),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
            if value > MAX_ACTION_SETTING {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_ACTION_SETTING}"),
                ));
            }
        }
        // A lease must outlast the longest attempt, or a live worker would be taken
        // for dead and its action resumed under it.
        let longest = a
            .rollout_timeout_secs
            .max(a.helm_timeout_secs)
            .max(a.commands.iter().map(|c| c.timeout_secs).max().unwrap_or(0))
            + a.http_timeout_secs;
        if a.lease_secs <= longest {
            return Err(invalid(
                "actions.lease_secs",
                format!("must be longer than the longest attempt ({longest} s)"),
            ));
        }
        if a.helm_path.trim().is_empty() {
            return Err(invalid("actions.helm_path", "must not be empty"));
        }
        check_url("actions.github_api_url", &a.github_api_url)?;
        if !a.github_repository.is_empty() {
            let parts: Vec<&str> = a.github_repository.split('/').collect();
            let ok = parts.len() == 2
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                });
            if !ok {
                return Err(invalid("actions.github_repository", "must be OWNER/REPO"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, command) in a.commands.iter().enumerate() {
            let key = format!("actions.commands[{i}]");
            check_name(&format!("{key}.name"), &command.name)?;
            if !names.insert(format!("command:{}", command.name)) {
                return Err(invalid(format!("{key}.name"), "is used twice"));
            }
            if command.argv.is_empty() || command.argv[0].trim().is_empty() {
                return Err(invalid(format!("{key}.argv"), "needs a program"));
            }
            if command.timeout_secs == 0 || command.timeout_secs > MAX_ACTION_SETTING {
                return Err(invalid(
                    format!("{key}.timeout_secs"),
                    format!("must be 1 to {MAX_ACTION_SETTING}"),
                ));
            }
            if command.argv.len() > 256 || command.argv.iter().any(|a| a.len() > 4096) {
                return Err(invalid(
                    format!("{key}.argv"),
                    "at most 256 arguments of at most 4096 bytes each",
                ));
            }
            crate::domain::argv::check_argv(&command.argv)
                .map_err(|(j, why)| invalid(format!("{key}.argv[{j}]"), why))?;
        }
        for (i, webhook) in a.webhooks.iter().enumerate() {
            let key = format!("actions.webhooks[{i}]");
            check_name(&format!("{key}.name"), &webhook.name)?;
            if !names.insert(format!("webhook:{}", webhook.name)) {
                return Err(invalid(format!("{key}.name"), "is used twice"));
            }
            check_url(&format!("{key}.url"), &webhook.url)?;
        }
        for (i, target) in self.targets.iter().enumerate() {
            for (j, action) in target.actions.iter().enumerate() {
                let key = format!("targets[{i}].actions[{j}]");
                if action.contains(':') && !names.contains(action) {
                    return Err(invalid(
                        key,
                        format!("{action:?} names no [[actions.commands]] or [[actions.webhooks]]"),
                    ));
                }
                if action == crate::domain::action::WORKFLOW_DISPATCH
                    && a.github_repository.is_empty()
                {
                    return Err(invalid(
                        key,
                        "workflow_dispatch needs actions.github_repository",
                    ));
                }
                if action == crate::domain::action::WORKFLOW_DISPATCH
                    && target.cd_workflow.is_none()
                {
                    return Err(invalid(
                        key,
                        "workflow_dispatch needs the target's cd_workflow",
                    ));
                }
            }
        }
        if !self.notify.slack_webhook_url.is_empty() {
            check_url(
                "notify.slack_webhook_url",
                self.notify.slack_webhook_url.expose(),
            )?;
        }
        if !self.notify.webhook_url.is_empty() {
            check_url("notify.webhook_url", &self.notify.webhook_url)?;
        }
        if !self.notify.public_url.is_empty() {
            check_url("notify.public_url", &self.notify.public_url)?;
        }
        Ok(())
    }

    /// The GitHub token: `actions.github_token`, else the variable
    /// `actions.github_token_env` names; `None` when neither is set.
    pub fn github_token(&self) -> Option<Secret> {
        if !self.actions.github_token.is_empty() {
            return Some(self.actions.github_token.clone());
        }
        std::env::var(&self.actions.github_token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
    }

    /// The tokens with their values read from wherever they are configured.
    pub fn resolve_tokens(&self) -> Result<Vec<(String, Role, Secret)>, ConfigError> {
        let mut resolved = Vec::new();
        for (i, token) in self.auth.tokens.iter().enumerate() {
            let key = format!("auth.tokens[{i}]");
            let value = if let Some(path) = &token.token_file {
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        invalid(
                            format!("{key}.token_file"),
                            format!("{}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string()
            } else if let Some(var) = &token.token_env {
                std::env::var(var).map_err(|_| {
                    invalid(format!("{key}.token_env"), format!("${var} is not set"))
                })?
            } else {
                token.token.expose().to_string()
            };
            if value.len() < 16 {
                return Err(invalid(key, "a token must be at least 16 characters"));
            }
            resolved.push((token.name.clone(), token.role, Secret::new(value)));
        }
        Ok(resolved)
    }

    /// The alert classifier and target registry this config describes.
    pub fn classifier(&self) -> Result<Classifier, ConfigError> {
        Classifier::new(
            &self.signals,
            &self.targets,
            &self.environments,
            &self.kubernetes.cluster,
        )
        .map_err(|e| invalid(e.key, e.message))
    }

    /// The effective settings as TOML, secrets masked: what `check-config` prints.
    pub fn render(&self) -> String {
        toml::to_string_pretty(self).expect("the config always serialises")
    }

    /// Group-commit writers to run: `database.writers`, or the backend's default.
    pub fn writers(&self) -> usize {
        match self.database.writers {
            0 if self.database.url.is_postgres() => 2,
            0 => 1,
            n => n,
        }
    }
}

/// The largest value of an `[actions]` time or count (a year in seconds): larger ones
/// are typos, and would overflow the arithmetic on times.
const MAX_ACTION_SETTING: u64 = 31_536_000;

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(key, "must be an http:// or https:// URL")),
    }
}

fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(key, "must be 1 to 63 letters, digits, '-' or '_'"));
    }
    Ok(())
}

/// Built-in defaults; `config.example.toml` documents the same values.
const DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:8080"
body_limit_bytes = 4194304
request_timeout_secs = 30
shutdown_grace_secs = 30

[database]
url = "sqlite:./rollwarden.db"
max_connections = 16
writers = 0
batch_max = 256

[auth]
tokens = []
allow_anonymous = false

[limits]
max_alerts = 1000
max_labels = 64
max_label_name_bytes = 256
max_label_value_bytes = 4096
max_annotations = 64
max_annotation_value_bytes = 16384
ingest_per_second = 500
ingest_burst = 5000
write_per_second = 10
write_burst = 50

[log]
level = "info"
format = "text"

[kubernetes]
enabled = false
cluster = "default"
namespaces = []
kubeconfig = ""
context = ""
helm_driver = "secret"
lease_retry_secs = 10

[engine]
enabled = true
tick_secs = 10

[actions]
enabled = true
dry_run = false
poll_ms = 1000
lease_secs = 900
max_attempts = 5
retry_base_secs = 5
retry_max_secs = 300
approval_ttl_secs = 3600
freeze_scope = "all"
rollout_timeout_secs = 600
helm_path = "helm"
helm_timeout_secs = 300
github_api_url = "https://api.github.com"
github_repository = ""
github_ref = "main"
github_token = ""
github_token_env = "GITHUB_TOKEN"
http_timeout_secs = 10
commands = []
webhooks = []

[notify]
slack_webhook_url = ""
webhook_url = ""
webhook_token = ""
public_url = ""
max_attempts = 5
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url.expose(), "sqlite:./rollwarden.db");
        assert_eq!(c.server.body_limit_bytes, 4 * 1024 * 1024);
        assert_eq!(c.writers(), 1);
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let documented = Config::load_from(Some(&example), env(&[])).unwrap();
        let defaults = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(documented.render(), defaults.render());
        // And every key of the defaults is written out in the example.
        let text = std::fs::read_to_string(&example).unwrap();
        let table: toml::Table = DEFAULTS.parse().unwrap();
        for (section, keys) in table {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] undocumented"
            );
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                    "{section}.{key} undocumented"
                );
            }
        }
    }

    #[test]
    fn the_example_configs_in_deploy_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
        for name in [
            "rollwarden-control-plane.toml",
            "rollwarden-multi-region.toml",
        ] {
            let c = Config::load_from(Some(&dir.join(name)), env(&[]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!c.targets.is_empty(), "{name}");
            assert!(c.targets.iter().all(|t| !t.actions.is_empty()), "{name}");
        }
    }

    #[test]
    fn action_settings_are_checked_and_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let cases = [
            (
                "[[actions.commands]]\nname = \"x\"\nargv = [\"aws\", \"{{ regoin }}\"]\n",
                "actions.commands[0].argv[1]",
            ),
            (
                "[[actions.commands]]\nname = \"x\"\nargv = []\n",
                "actions.commands[0].argv",
            ),
            (
                "[[actions.webhooks]]\nname = \"x\"\nurl = \"ftp://x\"\n",
                "actions.webhooks[0].url",
            ),
            (
                "[actions]\ngithub_repository = \"nope\"\n",
                "actions.github_repository",
            ),
            ("[actions]\nlease_secs = 60\n", "actions.lease_secs"),
            (
                "[actions]\napproval_ttl_secs = 999999999999\n",
                "actions.approval_ttl_secs",
            ),
            (
                "[[targets]]\nnamespace = \"p\"\nname = \"c\"\nactions = [\"command:missing\"]\n",
                "targets[0].actions[0]",
            ),
            (
                "[[targets]]\nnamespace = \"p\"\nname = \"c\"\nactions = [\"teleport\"]\n",
                "targets[0].actions[0]",
            ),
            (
                "[[targets]]\nnamespace = \"p\"\nname = \"c\"\nactions = [\"workflow_dispatch\"]\n",
                "targets[0].actions[0]",
            ),
            (
                "[notify]\nslack_webhook_url = \"not a url\"\n",
                "notify.slack_webhook_url",
            ),
        ];
        for (text, key) in cases {
            std::fs::write(&file, text).unwrap();
            let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
            assert!(err.to_string().starts_with(key), "{text}: {err}");
        }
        std::fs::write(
            &file,
            "[notify]\nslack_webhook_url = \"https://hooks.slack.com/services/T0/B0/SECRETPART\"\n\
             [actions]\ngithub_token = \"ghp_secretsecretsecret\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&file), env(&[])).unwrap();
        for printed in [format!("{c:?}"), c.render()] {
            assert!(!printed.contains("SECRETPART"), "{printed}");
            assert!(!printed.contains("ghp_secret"), "{printed}");
        }
    }

    #[test]
    fn label_names_in_matchers_keep_their_case() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\nenvironment = \"Prod\"\n\
             matchers = { Service = \"checkout\" }\n[environments.Prod]\nmode = \"approve\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&file), env(&[])).unwrap();
        assert_eq!(
            c.targets[0].matchers.keys().collect::<Vec<_>>(),
            ["Service"]
        );
        assert!(c.environments.contains_key("Prod"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nbody_limit_bytes = 2048\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[
                ("ROLLWARDEN__SERVER__BODY_LIMIT_BYTES", "4096"),
                ("ROLLWARDEN__DATABASE__URL", "postgres://u:pw@db/rw"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.body_limit_bytes, 4096);
        assert_eq!(c.log.level, "debug");
        assert!(c.database.url.is_postgres());
        assert_eq!(c.writers(), 2);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("ROLLWARDEN__DATABASE__URL", "mysql://x", "database.url"),
            (
                "ROLLWARDEN__DATABASE__MAX_CONNECTIONS",
                "0",
                "database.max_connections",
            ),
            ("ROLLWARDEN__LIMITS__MAX_LABELS", "0", "limits.max_labels"),
            (
                "ROLLWARDEN__SERVER__BODY_LIMIT_BYTES",
                "10",
                "server.body_limit_bytes",
            ),
            ("ROLLWARDEN__LIMITS__WRITE_BURST", "5", "limits.write_burst"),
        ];
        for (var, value, key) in cases {
            let err = Config::load_from(None, env(&[(var, value)])).unwrap_err();
            assert!(err.to_string().starts_with(key), "{var}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap();
        let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn tokens_need_exactly_one_source_and_enough_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[auth.tokens]]\nname = \"am\"\nrole = \"webhook\"\ntoken = \"short\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&file), env(&[])).unwrap();
        assert!(
            c.resolve_tokens()
                .unwrap_err()
                .to_string()
                .contains("16 characters")
        );

        std::fs::write(
            &file,
            "[[auth.tokens]]\nname = \"am\"\nrole = \"webhook\"\ntoken = \"x\"\ntoken_env = \"Y\"\n",
        )
        .unwrap();
        let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("auth.tokens[0]"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[database]\nurl = \"postgres://rw:hunter2hunter2@db:5432/rw\"\n\
             [[auth.tokens]]\nname = \"am\"\nrole = \"webhook\"\ntoken = \"s3cr3t-token-value-123\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&file), env(&[])).unwrap();
        for printed in [format!("{c:?}"), c.render()] {
            assert!(!printed.contains("hunter2hunter2"), "{printed}");
            assert!(!printed.contains("s3cr3t-token-value-123"), "{printed}");
        }
        assert!(c.render().contains("postgres://rw:***@db:5432/rw"));
    }
}
