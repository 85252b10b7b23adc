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
    /// Argo CD's API (`https://argocd.example.com`; empty disables `argocd_rollback`),
    /// the namespace of its Applications when not Argo CD's own (`appNamespace`), and
    /// the API token (or the environment variable holding it; the argocd CLI's is
    /// `ARGOCD_AUTH_TOKEN`).
    #[serde(serialize_with = "super::secret::serialize_url")]
    pub argocd_url: String,
    pub argocd_app_namespace: String,
    pub argocd_token: Secret,
    pub argocd_token_env: String,
    /// Timeout of every outbound HTTP call (GitHub, webhooks, Slack).
    pub http_timeout_secs: u64,
    /// Command executors (`command:NAME`): argv templates, never run through a shell.
    pub commands: Vec<CommandConfig>,
    /// Webhook executors (`webhook:NAME`): POST the decision JSON.
    pub webhooks: Vec<WebhookConfig>,
}

impl ActionsConfig {
    /// The Argo CD token: `argocd_token`, else the variable `argocd_token_env` names;
    /// `None` when neither is set.
    pub fn argocd_token(&self) -> Option<Secret> {
        if !self.argocd_token.is_empty() {
            return Some(self.argocd_token.clone());
        }
        std::env::var(&self.argocd_token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
    }

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
        if !a.argocd_url.is_empty() {
            check_url("actions.argocd_url", &a.argocd_url)?;
        }
        if !a.argocd_app_namespace.is_empty()
            && !crate::domain::field::Field::Namespace.fits(&a.argocd_app_namespace)
        {
            return Err(invalid(
                "actions.argocd_app_namespace",
                "must be a namespace name",
            ));
        }
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
    /// A Slack app: Block Kit messages through the Web API, one thread per decision,
    /// Approve / Reject buttons.
    pub slack: SlackConfig,
    /// PagerDuty Events API v2: escalations trigger an incident, a verified rollback
    /// resolves it.
    pub pagerduty: PagerDutyConfig,
    /// Stakeholder email when a rollback is verified.
    pub email: EmailConfig,
    /// A directory of templates overriding the built-in ones by name
    /// (`slack/approval.mrkdwn`, `pagerduty/summary.txt`, `email/resolved.txt`…).
    /// Empty: the built-in templates.
    pub templates_dir: String,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587); refused without it.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a loopback host (a local relay).
    None,
}

/// `[notify.email]`: the multi-region runbook's stakeholder email, sent through SMTP
/// when a rollback is verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server. Empty: no email.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    /// SMTP credentials (both or neither); the password is a secret.
    pub username: String,
    pub password: Secret,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// Recipients by the target's environment; others get `default_recipients`.
    pub recipients: std::collections::BTreeMap<String, Vec<String>>,
    pub default_recipients: Vec<String>,
    /// Who affected customers should contact (the template's `support`).
    pub support_contact: String,
}

impl EmailConfig {
    pub fn enabled(&self) -> bool {
        !self.smtp_host.is_empty()
    }

    /// Who hears about a target in `environment`.
    pub fn recipients_for(&self, environment: Option<&str>) -> &[String] {
        environment
            .and_then(|env| self.recipients.get(env))
            .unwrap_or(&self.default_recipients)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let host = &self.smtp_host;
        if host.len() > 253
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            || host.starts_with('-')
        {
            return Err(invalid(
                "notify.email.smtp_host",
                "must be a host name or address",
            ));
        }
        if self.smtp_port == 0 {
            return Err(invalid("notify.email.smtp_port", "must be 1 to 65535"));
        }
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.tls == SmtpTls::None && !loopback {
            return Err(invalid(
                "notify.email.tls",
                "\"none\" is only for a relay on this host (localhost, 127.0.0.1, ::1): use starttls or tls",
            ));
        }
        if self.username.is_empty() != self.password.is_empty() {
            return Err(invalid(
                "notify.email",
                "username and password go together: set both or neither",
            ));
        }
        check_mailbox("notify.email.from", &self.from)?;
        for (i, to) in self.default_recipients.iter().enumerate() {
            check_mailbox(&format!("notify.email.default_recipients[{i}]"), to)?;
        }
        for (env, list) in &self.recipients {
            for (i, to) in list.iter().enumerate() {
                check_mailbox(&format!("notify.email.recipients.{env}[{i}]"), to)?;
            }
        }
        if self.default_recipients.is_empty() && self.recipients.values().all(Vec::is_empty) {
            return Err(invalid(
                "notify.email.default_recipients",
                "nobody would get the email: list default_recipients or recipients",
            ));
        }
        if self.support_contact.chars().any(char::is_control) || self.support_contact.len() > 256 {
            return Err(invalid(
                "notify.email.support_contact",
                "one line of at most 256 bytes",
            ));
        }
        Ok(())
    }
}

fn check_mailbox(key: &str, value: &str) -> Result<(), ConfigError> {
    value
        .parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|err| invalid(key, format!("{value:?} is not an email address: {err}")))
}

/// `[notify.slack]`: a Slack app with a bot token (scope `chat:write`, and
/// `usergroups:read` when `approver_groups` is set) and interactivity pointed at
/// `POST /webhooks/slack/interactions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`). With `channel`, messages go through the Web API.
    pub bot_token: Secret,
    /// The channel's id (`C…`) the bot posts in.
    pub channel: String,
    /// The Web API's base URL.
    pub api_url: String,
    /// The app's signing secret: interactions signed otherwise are refused. Empty:
    /// no buttons are shown and the interactions endpoint answers 404.
    pub signing_secret: Secret,
    /// Slack user ids (`U…`, `W…`) allowed to approve or reject.
    pub approvers: Vec<String>,
    /// Slack user group ids (`S…`) whose members may approve or reject.
    pub approver_groups: Vec<String>,
    /// Where interaction answers may be posted: a `response_url` must start with this.
    pub response_url_prefix: String,
    /// While a rollback runs or is verified, a status update in its thread this often.
    pub status_interval_secs: u64,
}

impl SlackConfig {
    /// Messages go through the Web API.
    pub fn enabled(&self) -> bool {
        !self.bot_token.is_empty() && !self.channel.is_empty()
    }

    /// Buttons are shown and interactions accepted.
    pub fn interactive(&self) -> bool {
        self.enabled() && !self.signing_secret.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_url("notify.slack.api_url", &self.api_url)?;
        check_url(
            "notify.slack.response_url_prefix",
            &self.response_url_prefix,
        )?;
        check_setting(
            "notify.slack.status_interval_secs",
            self.status_interval_secs,
        )?;
        if self.bot_token.is_empty() != self.channel.is_empty() {
            return Err(invalid(
                "notify.slack",
                "bot_token and channel go together: set both or neither",
            ));
        }
        if !self.bot_token.is_empty() && !self.bot_token.expose().starts_with("xoxb-") {
            return Err(invalid(
                "notify.slack.bot_token",
                "must be a bot token (xoxb-…)",
            ));
        }
        let slack_id = |s: &str, first: &[char]| {
            s.len() <= 32
                && s.starts_with(first)
                && s.len() > 1
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        };
        if !self.channel.is_empty() && !slack_id(&self.channel, &['C', 'G', 'D']) {
            return Err(invalid(
                "notify.slack.channel",
                "must be a channel id (C…), not a name",
            ));
        }
        for (i, user) in self.approvers.iter().enumerate() {
            if !slack_id(user, &['U', 'W']) {
                return Err(invalid(
                    format!("notify.slack.approvers[{i}]"),
                    format!("{user:?} is not a Slack user id (U… or W…)"),
                ));
            }
        }
        for (i, group) in self.approver_groups.iter().enumerate() {
            if !slack_id(group, &['S']) {
                return Err(invalid(
                    format!("notify.slack.approver_groups[{i}]"),
                    format!("{group:?} is not a Slack user group id (S…)"),
                ));
            }
        }
        if !self.signing_secret.is_empty() {
            if !self.enabled() {
                return Err(invalid(
                    "notify.slack.signing_secret",
                    "needs bot_token and channel: the buttons are on the bot's messages",
                ));
            }
            if self.approvers.is_empty() && self.approver_groups.is_empty() {
                return Err(invalid(
                    "notify.slack.approvers",
                    "nobody may approve: list approvers or approver_groups",
                ));
            }
        }
        Ok(())
    }
}

/// `[notify.pagerduty]`: an Events API v2 integration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration's routing key (32 characters). Empty: PagerDuty is off.
    pub routing_key: Secret,
    /// The Events API v2 endpoint.
    pub url: String,
    /// `payload.source`: where the events come from.
    pub source: String,
    /// Severity by the target's environment; others get `default_severity`.
    pub severities: std::collections::BTreeMap<String, String>,
    pub default_severity: String,
}

impl PagerDutyConfig {
    pub fn enabled(&self) -> bool {
        !self.routing_key.is_empty()
    }

    /// The severity of an incident about a target in `environment`.
    pub fn severity(&self, environment: Option<&str>) -> &str {
        environment
            .and_then(|env| self.severities.get(env))
            .unwrap_or(&self.default_severity)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_url("notify.pagerduty.url", &self.url)?;
        let key = self.routing_key.expose();
        if !key.is_empty() && (key.len() != 32 || !key.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(invalid(
                "notify.pagerduty.routing_key",
                "must be a 32-character integration key",
            ));
        }
        if self.source.trim().is_empty() || self.source.len() > 255 {
            return Err(invalid("notify.pagerduty.source", "must be 1 to 255 bytes"));
        }
        let severities = ["critical", "error", "warning", "info"];
        for (env, severity) in self
            .severities
            .iter()
            .map(|(k, v)| (format!("notify.pagerduty.severities.{k}"), v))
            .chain([(
                "notify.pagerduty.default_severity".to_string(),
                &self.default_severity,
            )])
        {
            if !severities.contains(&severity.as_str()) {
                return Err(invalid(
                    env,
                    format!("{severity:?} is not one of {}", severities.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl NotifyConfig {
    /// The notification templates: the built-in ones, with every file of
    /// `templates_dir` in place of the one of its name. A file whose name rollwarden
    /// does not use, or that does not render, is an error naming it.
    pub fn templates(&self) -> Result<crate::domain::render::templates::Templates, ConfigError> {
        use crate::domain::render::templates::{BUILTIN, Templates};
        let mut overrides = std::collections::BTreeMap::new();
        if !self.templates_dir.is_empty() {
            let root = std::path::Path::new(&self.templates_dir);
            let key = "notify.templates_dir";
            let read_dir = |dir: &std::path::Path| {
                std::fs::read_dir(dir)
                    .map_err(|err| invalid(key, format!("{}: {err}", dir.display())))
            };
            let mut files = Vec::new();
            for entry in read_dir(root)? {
                let path = entry.map_err(|err| invalid(key, err.to_string()))?.path();
                if path.is_dir() {
                    for inner in read_dir(&path)? {
                        files.push(inner.map_err(|err| invalid(key, err.to_string()))?.path());
                    }
                } else {
                    files.push(path);
                }
            }
            for path in files {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                if !BUILTIN.iter().any(|(known, _)| *known == name) {
                    return Err(invalid(
                        key,
                        format!(
                            "{name}: not a template rollwarden uses (known: {})",
                            BUILTIN.map(|(n, _)| n).join(", ")
                        ),
                    ));
                }
                let source =
                    std::fs::read(&path).map_err(|err| invalid(key, format!("{name}: {err}")))?;
                if source.len() > 65_536 {
                    return Err(invalid(key, format!("{name}: larger than 64 KiB")));
                }
                let source = String::from_utf8(source)
                    .map_err(|_| invalid(key, format!("{name}: not UTF-8")))?;
                overrides.insert(name, source);
            }
        }
        Templates::new(&overrides).map_err(|err| invalid("notify.templates_dir", err.to_string()))
    }

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
        self.slack.validate()?;
        self.pagerduty.validate()?;
        self.email.validate()?;
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
