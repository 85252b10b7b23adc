//! Notification channels: a Slack incoming webhook, a Slack app (Block Kit, one
//! thread per decision, buttons), PagerDuty Events API v2 and a generic JSON webhook.
//! A message is enqueued once per (event, channel) and delivered by the workers with
//! retries; every attempt's outcome is kept on its row.

use chrono::{DateTime, Utc};

use serde_json::json;

use std::sync::Arc;

use super::email::{self, Mailer};
use super::executor::{Posted, post};
use super::slack::{self, SlackApp};
use crate::config::{NotifyConfig, PagerDutyConfig, Secret};
use crate::domain::Decision;
use crate::domain::action::{ActionKind, Event, Message};
use crate::domain::render::templates::Templates;
use crate::domain::render::{blocks, pagerduty};
use crate::store::{ActionRecord, NewNotification, NotificationRecord, Store, StoreError};

/// Where notifications go, and the templates of their words.
#[derive(Clone)]
pub struct Channels {
    pub slack: Option<Secret>,
    pub webhook: Option<(String, Secret)>,
    pub slack_app: Option<SlackApp>,
    pub pagerduty: Option<PagerDutyConfig>,
    pub email: Option<Mailer>,
    pub public_url: String,
    pub templates: Arc<Templates>,
}

impl Default for Channels {
    /// No channel: nothing is announced.
    fn default() -> Self {
        Self {
            slack: None,
            webhook: None,
            slack_app: None,
            pagerduty: None,
            email: None,
            public_url: String::new(),
            templates: Arc::new(Templates::new(&Default::default()).expect("built-in templates")),
        }
    }
}

impl Channels {
    /// The configured channels with `templates`; `timeout` bounds each SMTP exchange.
    pub fn from_config(
        config: &NotifyConfig,
        templates: Templates,
        timeout: std::time::Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            slack: (!config.slack_webhook_url.is_empty()).then(|| config.slack_webhook_url.clone()),
            webhook: (!config.webhook_url.is_empty())
                .then(|| (config.webhook_url.clone(), config.webhook_token.clone())),
            slack_app: SlackApp::from_config(&config.slack),
            pagerduty: config.pagerduty.enabled().then(|| config.pagerduty.clone()),
            email: Mailer::from_config(&config.email, timeout)?,
            public_url: config.public_url.clone(),
            templates: Arc::new(templates),
        })
    }

    /// Enqueues `message` on every configured channel; `true` when any row is new.
    pub async fn enqueue(
        &self,
        store: &dyn Store,
        message: &Message<'_>,
        action_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let subject = match action_id {
            Some(id) => format!("action:{id}"),
            None => format!("decision:{}", message.decision_id),
        };
        let mut any = false;
        for mut notification in self.render(message) {
            notification.action_id = action_id;
            notification.idempotency_key = format!("{subject}|{}", notification.idempotency_key);
            let (_, new) = store.enqueue_notification(&notification, now).await?;
            any |= new;
        }
        Ok(any)
    }

    /// Enqueues `news` about `action` on every channel, written from its decision as
    /// recorded, naming the person who approved or rejected it; `true` when any row
    /// is new. Every message about an action goes through here, whoever sends it (a
    /// worker, the approval gate).
    pub async fn announce(
        &self,
        store: &dyn Store,
        action: &ActionRecord,
        news: &News<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(decision) = store
            .decision(action.decision_id)
            .await?
            .and_then(|stored| serde_json::from_value::<Decision>(stored.decision).ok())
        else {
            return Ok(false);
        };
        let message = Message {
            event: news.event,
            decision_id: action.decision_id,
            decision: &decision,
            action: Some((&action.kind, news.state)),
            detail: news.detail,
            now,
            eta: news.eta,
            public_url: &self.public_url,
            actor: action.approved_by.as_deref(),
        };
        self.enqueue(store, &message, Some(action.id), now).await
    }

    /// Announces that a person approved or rejected `moved` (the actions one call of
    /// the approval gate moved, now `approved` or `rejected`), whichever way they did
    /// it (the console, the API, a Slack button): every channel hears who, with their
    /// comment, and the Slack app's top message loses its buttons. Once per action and
    /// state, as every result. A federation step moved with its rollback is spoken for
    /// by the rollback's message, as when they were planned.
    pub async fn announce_decided(
        &self,
        store: &dyn Store,
        moved: &[ActionRecord],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let federation = |a: &ActionRecord| {
            matches!(
                ActionKind::parse(&a.kind),
                Some(ActionKind::Federation { .. })
            )
        };
        let alone = moved.iter().all(federation);
        let mut any = false;
        for action in moved.iter().filter(|a| alone || !federation(a)) {
            let comment = action
                .approval_comment
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(|c| format!("Comment: {c}"));
            let news = News {
                state: &action.state,
                event: Event::Result,
                detail: comment.as_deref(),
                eta: None,
            };
            any |= self.announce(store, action, &news, now).await?;
        }
        Ok(any)
    }

    /// Whether a channel keeps a thread per decision (status updates go there).
    pub fn threads(&self) -> bool {
        self.slack_app.is_some()
    }

    /// Enqueues status update number `count` of action `action_id` in its thread;
    /// `true` when new.
    pub async fn enqueue_status(
        &self,
        store: &dyn Store,
        message: &Message<'_>,
        action_id: i64,
        count: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self.slack_app.is_none() {
            return Ok(false);
        }
        let notification = NewNotification {
            action_id: Some(action_id),
            decision_id: Some(message.decision_id),
            channel: slack::CHANNEL.into(),
            event: message.event.as_str().into(),
            idempotency_key: format!("action:{action_id}|status:{count}|{}", slack::CHANNEL),
            payload: slack_app_payload(message, &self.templates.slack_text(message), false),
        };
        Ok(store.enqueue_notification(&notification, now).await?.1)
    }

    /// `message` as one notification per configured channel, keyed
    /// `{event}:{state}|{channel}` (a result can be announced once per state the
    /// action reaches); the caller scopes the key to its subject.
    pub fn render(&self, message: &Message<'_>) -> Vec<NewNotification> {
        let mut channels = Vec::new();
        let text = self.templates.slack_text(message);
        if self.slack.is_some() {
            channels.push(("slack", message.slack(&text)));
        }
        if let Some(app) = &self.slack_app {
            channels.push((
                slack::CHANNEL,
                slack_app_payload(message, &text, app.interactive),
            ));
        }
        if let Some(pd) = &self.pagerduty {
            let severity = pd.severity(message.decision.environment.as_deref());
            if let Some(event) = pagerduty::event(message, &self.templates, severity, &pd.source) {
                channels.push(("pagerduty", event));
            }
        }
        // The runbook's stakeholder email: once service is restored.
        if let Some(mailer) = &self.email
            && message.event == Event::Result
            && message.action.is_some_and(|(_, state)| state == "verified")
        {
            let to = mailer
                .config
                .recipients_for(message.decision.environment.as_deref());
            if !to.is_empty() {
                let mail = self
                    .templates
                    .email(message, &mailer.config.support_contact);
                channels.push((
                    email::CHANNEL,
                    json!({ "to": to, "subject": mail.subject, "body": mail.body }),
                ));
            }
        }
        if self.webhook.is_some() {
            channels.push(("webhook", message.webhook(&text)));
        }
        let event = message.event.as_str();
        let state = message.action.map_or("", |(_, state)| state);
        channels
            .into_iter()
            .map(|(channel, payload)| NewNotification {
                action_id: None,
                decision_id: Some(message.decision_id),
                channel: channel.into(),
                event: event.into(),
                idempotency_key: format!("{event}:{state}|{channel}"),
                payload,
            })
            .collect()
    }

    /// POSTs a notification to its channel.
    pub(crate) async fn deliver(
        &self,
        http: &reqwest::Client,
        store: &dyn Store,
        notification: &NotificationRecord,
    ) -> Posted {
        let request = match notification.channel.as_str() {
            email::CHANNEL => {
                return match &self.email {
                    Some(mailer) => mailer.deliver(&notification.payload).await,
                    None => Posted::Rejected("email is no longer configured".into()),
                };
            }
            slack::CHANNEL => {
                return match &self.slack_app {
                    Some(app) => app.deliver(http, store, notification).await,
                    None => Posted::Rejected("the Slack app is no longer configured".into()),
                };
            }
            "pagerduty" => match &self.pagerduty {
                Some(pd) => {
                    // The routing key is a secret: added here, never stored.
                    let mut event = notification.payload.clone();
                    event["routing_key"] = json!(pd.routing_key.expose());
                    http.post(&pd.url).json(&event)
                }
                None => return Posted::Rejected("PagerDuty is no longer configured".into()),
            },
            "slack" => match &self.slack {
                Some(url) => http.post(url.expose()).json(&notification.payload),
                None => return Posted::Rejected("slack is no longer configured".into()),
            },
            "webhook" => match &self.webhook {
                Some((url, token)) => {
                    let mut request = http
                        .post(url)
                        .header(
                            "idempotency-key",
                            format!("rollwarden-notification-{}", notification.id),
                        )
                        .json(&notification.payload);
                    if !token.is_empty() {
                        request = request.bearer_auth(token.expose());
                    }
                    request
                }
                None => return Posted::Rejected("the webhook is no longer configured".into()),
            },
            other => return Posted::Rejected(format!("unknown channel {other:?}")),
        };
        post(request).await
    }
}

/// What a message about an action says: the state it reached, which kind of message,
/// the outcome or error, and for an announcement when it should be done by.
#[derive(Debug, Clone, Copy)]
pub struct News<'a> {
    pub state: &'a str,
    pub event: Event,
    pub detail: Option<&'a str>,
    pub eta: Option<DateTime<Utc>>,
}

/// A Slack app notification: the message to post (as the thread's first, or in it),
/// and what the thread's top message becomes when it goes in the thread.
fn slack_app_payload(message: &Message<'_>, text: &str, buttons: bool) -> serde_json::Value {
    json!({
        "post": blocks::post(message, text, buttons),
        "top": blocks::top(message, text),
    })
}
