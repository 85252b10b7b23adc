//! The Slack Web API as a bot (PROTOCOLS.md F.4): `chat.postMessage`, `chat.update`
//! and `usergroups.users.list`, JSON with the token in `Authorization`. Slack answers
//! 200 with `{"ok": false, "error": …}` for most failures and 429 with `Retry-After`
//! when limited; both are told apart here.

use std::time::Duration;

use serde_json::{Value, json};

use super::executor::Posted;
use crate::config::{Secret, SlackConfig};
use crate::store::{MessageThread, NotificationRecord, Store};

/// The largest Web API answer read: Slack's are a few KB.
const MAX_ANSWER: usize = 1024 * 1024;

/// The notification channel of the Slack app.
pub const CHANNEL: &str = "slack_app";

/// Error codes worth a retry: Slack's own trouble, not the request's.
const TRANSIENT_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "request_timeout",
    "service_unavailable",
    "fatal_error",
    "internal_error",
];

/// A Slack app's bot: where it posts and with what.
#[derive(Clone)]
pub struct SlackApp {
    token: Secret,
    pub channel: String,
    api_url: String,
    /// Approval requests carry buttons (a signing secret is configured).
    pub interactive: bool,
}

/// How a Web API call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Worth retrying, after `retry_after` when Slack said so.
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Slack refused the request; repeating it would not help.
    Rejected(String),
}

impl CallError {
    fn posted(self) -> Posted {
        match self {
            CallError::Transient {
                error,
                retry_after: Some(after),
            } => Posted::Throttled { error, after },
            CallError::Transient { error, .. } => Posted::Transient(error),
            CallError::Rejected(error) => Posted::Rejected(error),
        }
    }
}

impl SlackApp {
    pub fn from_config(config: &SlackConfig) -> Option<Self> {
        config.enabled().then(|| Self {
            token: config.bot_token.clone(),
            channel: config.channel.clone(),
            api_url: config.api_url.trim_end_matches('/').to_string(),
            interactive: config.interactive(),
        })
    }

    /// Calls a write method with a JSON body; the answer when `ok`.
    pub(crate) async fn call(
        &self,
        http: &reqwest::Client,
        method: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let request = self
            .request(http, method)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string());
        self.send(method, request).await
    }

    fn request(&self, http: &reqwest::Client, method: &str) -> reqwest::RequestBuilder {
        http.post(format!("{}/{method}", self.api_url))
            .bearer_auth(self.token.expose())
    }

    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, CallError> {
        let response = request.send().await.map_err(|err| CallError::Transient {
            error: format!("{method}: request failed: {}", err.without_url()),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = super::executor::retry_after(&response);
        let text = match super::executor::read_capped(response, MAX_ANSWER).await {
            Ok(text) => text,
            Err(_) => {
                return Err(CallError::Transient {
                    error: format!("{method}: answered {status} with more than {MAX_ANSWER} bytes"),
                    retry_after,
                });
            }
        };
        let excerpt: String = text.chars().take(256).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(CallError::Transient {
                error: format!("{method}: answered {status}: {excerpt}"),
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(CallError::Rejected(format!(
                "{method}: answered {status}: {excerpt}"
            )));
        }
        let answer: Value = serde_json::from_str(&text).map_err(|_| CallError::Transient {
            error: format!("{method}: answered 200 without JSON: {excerpt}"),
            retry_after: None,
        })?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        let code = answer["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_string();
        if TRANSIENT_ERRORS.contains(&code.as_str()) {
            Err(CallError::Transient {
                error: format!("{method}: {code}"),
                retry_after,
            })
        } else {
            Err(CallError::Rejected(format!("{method}: {code}")))
        }
    }

    /// Delivers a notification: the decision's first message opens its thread; every
    /// later one first updates that message in place (its current state, who acted,
    /// no buttons), then goes in the thread. An update Slack refuses (the message was
    /// deleted, say) does not hold back the reply.
    pub(crate) async fn deliver(
        &self,
        http: &reqwest::Client,
        store: &dyn Store,
        n: &NotificationRecord,
    ) -> Posted {
        let Some(decision_id) = n.decision_id else {
            return Posted::Rejected("a Slack app message needs its decision".into());
        };
        let thread = match store.message_thread(decision_id, CHANNEL).await {
            Ok(thread) => thread,
            Err(err) => return Posted::Transient(format!("reading the thread: {err}")),
        };
        let post = &n.payload["post"];
        let Some(thread) = thread else {
            let body = json!({
                "channel": self.channel,
                "text": post["text"],
                "blocks": post["blocks"],
                "unfurl_links": false,
            });
            let answer = match self.call(http, "chat.postMessage", &body).await {
                Ok(answer) => answer,
                Err(err) => return err.posted(),
            };
            let (Some(conversation), Some(ts)) =
                (answer["channel"].as_str(), answer["ts"].as_str())
            else {
                return Posted::Rejected("chat.postMessage answered without channel and ts".into());
            };
            let thread = MessageThread {
                decision_id,
                channel: CHANNEL.into(),
                conversation: conversation.into(),
                thread_ts: ts.into(),
            };
            if let Err(err) = store.record_message_thread(&thread, n.created_at).await {
                // Posted, but later messages will not find the thread: they open another.
                tracing::warn!(decision = decision_id, %err, "Slack thread not recorded");
            }
            return Posted::Ok {
                status: 200,
                body: json!({"channel": conversation, "ts": ts}).to_string(),
            };
        };
        let top = &n.payload["top"];
        let update = json!({
            "channel": thread.conversation,
            "ts": thread.thread_ts,
            "text": top["text"],
            "blocks": top["blocks"],
        });
        let updated = match self.call(http, "chat.update", &update).await {
            Ok(_) => "updated".to_string(),
            Err(CallError::Rejected(why)) => why,
            Err(err) => return err.posted(),
        };
        let reply = json!({
            "channel": thread.conversation,
            "thread_ts": thread.thread_ts,
            "text": post["text"],
            "blocks": post["blocks"],
            "unfurl_links": false,
        });
        match self.call(http, "chat.postMessage", &reply).await {
            Ok(answer) => Posted::Ok {
                status: 200,
                body: json!({
                    "channel": answer["channel"],
                    "ts": answer["ts"],
                    "thread_ts": thread.thread_ts,
                    "top": updated,
                })
                .to_string(),
            },
            Err(err) => err.posted(),
        }
    }

    /// The members of a user group (`usergroups.users.list`, scope `usergroups:read`).
    pub(crate) async fn group_members(
        &self,
        http: &reqwest::Client,
        group: &str,
    ) -> Result<Vec<String>, String> {
        // A read method: form-encoded arguments, as Slack documents them.
        let method = "usergroups.users.list";
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("usergroup", group)
            .finish();
        let request = self
            .request(http, method)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let answer = self.send(method, request).await.map_err(|err| match err {
            CallError::Transient { error, .. } | CallError::Rejected(error) => error,
        })?;
        Ok(answer["users"]
            .as_array()
            .map(|users| {
                users
                    .iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}
