//! `[actions]` (the outbox workers, commands and webhooks) and `[notify]`.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, invalid};

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
    #[serde(serialize_with = "super::secret::serialize_url")]
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

impl ActionsConfig {
    /// Checks `[actions]` with its commands and webhooks, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
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
        ] {
            check_setting(key, value)?;
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
            crate::domain::render::argv::check_argv(&command.argv)
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
        Ok(())
    }

    /// The executors a target's `actions` may name: `command:NAME`, `webhook:NAME`.
    pub fn executor_names(&self) -> std::collections::HashSet<String> {
        let commands = self.commands.iter().map(|c| format!("command:{}", c.name));
        let webhooks = self.webhooks.iter().map(|w| format!("webhook:{}", w.name));
        commands.chain(webhooks).collect()
    }
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
    /// Printed with any credential in it masked.
    #[serde(serialize_with = "super::secret::serialize_url")]
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
    /// A generic JSON webhook: every notification is POSTed here too. Printed with any
    /// credential in it masked.
    #[serde(serialize_with = "super::secret::serialize_url")]
    pub webhook_url: String,
    /// Sent to `webhook_url` as `Authorization: Bearer …` when set.
    pub webhook_token: Secret,
    /// rollwarden's external URL, for links in messages.
    pub public_url: String,
    /// Attempts at delivering one notification.
    pub max_attempts: u32,
}

impl NotifyConfig {
    /// Checks `[notify]`, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_setting("notify.max_attempts", u64::from(self.max_attempts))?;
        if !self.slack_webhook_url.is_empty() {
            check_url("notify.slack_webhook_url", self.slack_webhook_url.expose())?;
        }
        if !self.webhook_url.is_empty() {
            check_url("notify.webhook_url", &self.webhook_url)?;
        }
        if !self.public_url.is_empty() {
            check_url("notify.public_url", &self.public_url)?;
        }
        Ok(())
    }
}

/// The largest value of an `[actions]` time or count (a year in seconds): larger ones
/// are typos, and would overflow the arithmetic on times.
const MAX_ACTION_SETTING: u64 = 31_536_000;

/// An `[actions]` or `[notify]` time or count: at least 1, at most
/// [`MAX_ACTION_SETTING`].
fn check_setting(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    if value > MAX_ACTION_SETTING {
        return Err(invalid(
            key,
            format!("must be at most {MAX_ACTION_SETTING}"),
        ));
    }
    Ok(())
}

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
