//! Configuration: built-in defaults, then an optional TOML file, then
//! `ROLLWARDEN__SECTION__KEY` environment variables. `validate()` fails fast and names
//! the key; secrets print as `***` in `Debug`, in logs and in `check-config`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod actions;
mod secret;
mod sections;

pub use actions::{
    ActionsConfig, CommandConfig, EmailConfig, NotifyConfig, PagerDutyConfig, SlackConfig, SmtpTls,
    WebhookConfig,
};
pub use secret::{DatabaseUrl, Secret, redact_url};
pub use sections::{
    AuthConfig, ClusterConfig, DatabaseConfig, EngineConfig, HelmDriver, KubernetesConfig,
    LimitsConfig, LogConfig, LogFormat, ServerConfig, TokenConfig,
};

use crate::domain::Role;
use crate::domain::classify::{Classifier, EnvironmentConfig, SignalsConfig, TargetConfig};
use crate::domain::policy::Policy;

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

    /// Checks every value that serde cannot, naming the key: each section checks
    /// itself, then what spans sections (the targets' actions, the classifier, the
    /// policy).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.server.validate()?;
        self.limits.validate()?;
        self.log.validate()?;
        self.kubernetes.validate()?;
        self.engine.validate()?;
        self.actions.validate()?;
        self.notify.validate()?;
        self.validate_target_actions()?;
        self.classifier()?;
        self.validate_default_argocd_rollbacks()?;
        self.policy
            .validate()
            .map_err(|e| invalid("policy", e.to_string()))?;
        if let Some(name) = self
            .policy
            .environments
            .keys()
            .find(|name| !self.environments.contains_key(*name))
        {
            return Err(invalid(
                format!("policy.environments.{name}"),
                format!("{name:?} is not a key of [environments]"),
            ));
        }
        self.validate_federation()?;
        self.auth.validate()?;
        Ok(())
    }

    /// `policy.releases.federation_exclude` and `federation_include` name a configured
    /// `command:NAME` or `webhook:NAME`.
    fn validate_federation(&self) -> Result<(), ConfigError> {
        let names = self.actions.executor_names();
        let r = &self.policy.releases;
        for (field, value) in [
            ("federation_exclude", &r.federation_exclude),
            ("federation_include", &r.federation_include),
        ] {
            let Some(value) = value else { continue };
            let key = format!("policy.releases.{field}");
            if !(value.starts_with("command:") || value.starts_with("webhook:")) {
                return Err(invalid(
                    key,
                    format!("{value:?} is not command:NAME or webhook:NAME"),
                ));
            }
            if !names.contains(value) {
                return Err(invalid(
                    key,
                    format!("{value:?} names no [[actions.commands]] or [[actions.webhooks]]"),
                ));
            }
        }
        if r.canary_region
            .as_deref()
            .is_some_and(|c| !self.targets.iter().any(|t| t.region.as_deref() == Some(c)))
        {
            return Err(invalid(
                "policy.releases.canary_region",
                "is the region of no [[targets]] entry",
            ));
        }
        Ok(())
    }

    /// Each target's `actions` must name a configured executor, and
    /// `workflow_dispatch` needs a repository and the target's workflow.
    fn validate_target_actions(&self) -> Result<(), ConfigError> {
        let a = &self.actions;
        let names = a.executor_names();
        for (i, target) in self.targets.iter().enumerate() {
            for (j, action) in target.actions.iter().enumerate() {
                let key = format!("targets[{i}].actions[{j}]");
                if action.contains(':') && !names.contains(action) {
                    return Err(invalid(
                        key,
                        format!("{action:?} names no [[actions.commands]] or [[actions.webhooks]]"),
                    ));
                }
                if action == crate::domain::action::ARGOCD_ROLLBACK && a.argocd_url.is_empty() {
                    return Err(invalid(key, "argocd_rollback needs actions.argocd_url"));
                }
                if action == crate::domain::action::ARGOCD_ROLLBACK && target.argocd_app.is_none() {
                    return Err(invalid(
                        key,
                        "argocd_rollback needs the target's argocd_app",
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
        Ok(())
    }

    /// A target with `gitops = "argocd"` and an `argocd_app` (and no `actions` of its
    /// own) is rolled back with `argocd_rollback` by default (`action::default_executors`),
    /// which needs `actions.argocd_url`: without it, the target would fail at its first
    /// rollback, not at start.
    fn validate_default_argocd_rollbacks(&self) -> Result<(), ConfigError> {
        if !self.actions.enabled || !self.actions.argocd_url.is_empty() {
            return Ok(());
        }
        for (i, target) in self.targets.iter().enumerate() {
            if target.actions.is_empty()
                && target.gitops.as_deref() == Some("argocd")
                && target.argocd_app.is_some()
            {
                return Err(invalid(
                    format!("targets[{i}].argocd_app"),
                    format!(
                        "target {}/{} is rolled back through Argo CD (argocd_rollback) by \
                         default, which needs actions.argocd_url; set it, or give the target \
                         actions of its own",
                        target.namespace, target.name
                    ),
                ));
            }
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

    /// Every rule `serve` applies to a config before it starts, except reading the
    /// secrets (token files and variables, which `check-config --lint` may run
    /// without): `serve` calls this too, so the two cannot disagree. Loading already
    /// validated each section.
    pub fn lint(&self) -> Result<(), ConfigError> {
        let listen = self.server.listen;
        if self.auth.tokens.is_empty()
            && !self.auth.proxy.enabled
            && !listen.ip().is_loopback()
            && !self.auth.allow_anonymous
        {
            return Err(invalid(
                "server.listen",
                format!(
                    "refusing to listen on {listen} without auth: configure [[auth.tokens]] \
                     or set auth.allow_anonymous = true"
                ),
            ));
        }
        self.classifier()?;
        Ok(())
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

/// Built-in defaults; `config.example.toml` documents the same values.
const DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:8080"
body_limit_bytes = 4194304
request_timeout_secs = 30
shutdown_grace_secs = 30
max_event_streams = 64

[database]
url = "sqlite:./rollwarden.db"
max_connections = 16
writers = 0
batch_max = 256

[auth]
tokens = []
allow_anonymous = false

[auth.proxy]
enabled = false
trusted_sources = []
user_headers = ["X-Forwarded-Email", "X-Forwarded-User"]
groups_header = "X-Forwarded-Groups"
roles = {}

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
in_cluster = false
helm_driver = "secret"
argo_rollouts = false
lease_retry_secs = 10

[engine]
enabled = true
tick_secs = 10
alert_stale_secs = 16200
max_alerts_per_target = 1000
max_targets = 10000
busy_share = 0.1

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
argocd_url = ""
argocd_app_namespace = ""
argocd_token = ""
argocd_token_env = "ARGOCD_AUTH_TOKEN"
http_timeout_secs = 10
commands = []
webhooks = []

[notify]
slack_webhook_url = ""
webhook_url = ""
webhook_token = ""
public_url = ""
max_attempts = 5
templates_dir = ""

[notify.slack]
bot_token = ""
channel = ""
api_url = "https://slack.com/api"
signing_secret = ""
approvers = []
approver_groups = []
response_url_prefix = "https://hooks.slack.com/"
status_interval_secs = 120

[notify.email]
smtp_host = ""
smtp_port = 587
tls = "starttls"
username = ""
password = ""
from = ""
recipients = {}
default_recipients = []
support_contact = ""

[notify.pagerduty]
routing_key = ""
url = "https://events.pagerduty.com/v2/enqueue"
source = "rollwarden"
default_severity = "error"

[notify.pagerduty.severities]
production = "critical"
prod = "critical"
staging = "warning"
"#;

#[cfg(test)]
mod tests;
