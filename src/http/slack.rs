//! `POST /webhooks/slack/interactions`: the Approve / Reject buttons of the Slack app
//! (PROTOCOLS.md F.1–F.3). Nothing here trusts the caller: the request must carry
//! Slack's signature over its raw body with the app's signing secret, made within
//! five minutes; the presser must be an allowed approver; the button names only a
//! decision, and the approval gate decides what a press may change. Slack gets its
//! `200` at once; the answer to the presser goes to the payload's `response_url`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::actions::gate;
use super::error::{ApiError, ErrorBody};
use crate::actions::slack::SlackApp;
use crate::app::AppState;
use crate::config::{Secret, SlackConfig};
use crate::domain::render::{blocks, mrkdwn};
use crate::wire::slack::{Press, signed};

/// How far a request's timestamp may be from now (Slack's replay window).
const MAX_SKEW_SECS: i64 = 300;
/// How long a user group's members are trusted before asking Slack again.
const GROUP_CACHE: Duration = Duration::from_secs(60);

/// What the interactions endpoint needs: the secret, who may press, and the bot.
pub struct SlackInteractions {
    signing_secret: Secret,
    approvers: HashSet<String>,
    groups: Vec<String>,
    response_url_prefix: String,
    app: SlackApp,
    http: reqwest::Client,
    /// The groups' members, and when they were read.
    members: tokio::sync::Mutex<Option<(DateTime<Utc>, HashSet<String>)>>,
}

impl SlackInteractions {
    pub fn from_config(config: &SlackConfig, http: reqwest::Client) -> Option<Arc<Self>> {
        if !config.interactive() {
            return None;
        }
        Some(Arc::new(Self {
            signing_secret: config.signing_secret.clone(),
            approvers: config.approvers.iter().cloned().collect(),
            groups: config.approver_groups.clone(),
            response_url_prefix: config.response_url_prefix.clone(),
            app: SlackApp::from_config(config)?,
            http,
            members: tokio::sync::Mutex::new(None),
        }))
    }

    /// Whether `user` may approve: listed, or a member of a listed group. A group
    /// lookup that fails refuses (and is logged): no one is let in on an error.
    async fn may_approve(&self, user: &str, now: DateTime<Utc>) -> bool {
        if self.approvers.contains(user) {
            return true;
        }
        if self.groups.is_empty() {
            return false;
        }
        let mut cached = self.members.lock().await;
        let fresh = cached.as_ref().is_some_and(|(at, _)| {
            now.signed_duration_since(*at)
                .to_std()
                .is_ok_and(|age| age < GROUP_CACHE)
        });
        if !fresh {
            let mut members = HashSet::new();
            for group in &self.groups {
                match self.app.group_members(&self.http, group).await {
                    Ok(users) => members.extend(users),
                    Err(err) => {
                        tracing::warn!(group, %err, "Slack user group not read: its members cannot approve now");
                        return false;
                    }
                }
            }
            *cached = Some((now, members));
        }
        cached.as_ref().is_some_and(|(_, m)| m.contains(user))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(interactions))
}

/// A Slack interaction: a button pressed on one of rollwarden's messages.
///
/// Signed by Slack (`X-Slack-Signature`, `X-Slack-Request-Timestamp`) with the app's
/// signing secret; `application/x-www-form-urlencoded` with one `payload` field. A
/// press of Approve or Reject by an allowed approver goes through the approval gate
/// as `slack:USER_ID (name)`; the presser is answered through the `response_url`.
#[utoipa::path(post, path = "/webhooks/slack/interactions", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`payload=` Slack's interaction JSON"),
    responses(
        (status = 200, description = "Received (the answer goes to the response_url)"),
        (status = 400, description = "Not a Slack interaction payload", body = ErrorBody),
        (status = 401, description = "Unsigned, badly signed, or older than five minutes",
            body = ErrorBody),
        (status = 404, description = "The Slack app is not interactive here", body = ErrorBody),
        (status = 413, description = "Larger than `server.body_limit_bytes`", body = ErrorBody),
    ))]
async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let Some(slack) = state.slack.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "slack_not_configured",
            "the Slack app is not configured here (notify.slack.signing_secret)",
        ));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let unauthorized =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message);
    let (Some(timestamp), Some(signature)) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    ) else {
        return Err(unauthorized(
            "X-Slack-Request-Timestamp and X-Slack-Signature are required",
        ));
    };
    let now = state.clock.now();
    let sent = timestamp
        .parse::<i64>()
        .map_err(|_| unauthorized("X-Slack-Request-Timestamp is not a Unix time"))?;
    if (now.timestamp() - sent).abs() > MAX_SKEW_SECS {
        state.metrics.slack_interaction("stale");
        return Err(unauthorized(
            "X-Slack-Request-Timestamp is more than five minutes from now (a replay?)",
        ));
    }
    if !signed(
        slack.signing_secret.expose().as_bytes(),
        timestamp,
        &body,
        signature,
    ) {
        state.metrics.slack_interaction("bad_signature");
        return Err(unauthorized("the signature does not match the body"));
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if fields.iter().any(|(k, v)| k == "ssl_check" && v == "1") {
        return Ok(StatusCode::OK);
    }
    let payload = fields
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::bad_request("invalid_body", "payload", "no payload field"))?;
    let payload: Value = serde_json::from_str(&payload).map_err(|err| {
        ApiError::bad_request("invalid_body", "payload", format!("not JSON: {err}"))
    })?;
    let Some(press) = Press::read(&payload) else {
        // Some other interaction (a shortcut, another app's block): nothing to do.
        state.metrics.slack_interaction("ignored");
        return Ok(StatusCode::OK);
    };
    tokio::spawn(async move { answer(state, slack, press, now).await });
    Ok(StatusCode::OK)
}

/// Decides what the press does and tells the presser.
async fn answer(state: AppState, slack: Arc<SlackInteractions>, press: Press, now: DateTime<Utc>) {
    let who = format!("<@{}>", press.user);
    let reply = match press.decision {
        None => blocks::ephemeral("This button names no rollwarden decision; nothing was done."),
        Some(id) if !slack.may_approve(&press.user, now).await => {
            state.metrics.slack_interaction("refused");
            tracing::warn!(decision = id, user = %press.user, "Slack user may not approve");
            let audit = state
                .store
                .record_audit(
                    &press.person(),
                    "approval.refused",
                    &format!("decision:{id}"),
                    &json!({ "via": "slack", "user": press.user, "to": press.to }),
                    now,
                )
                .await;
            if let Err(err) = audit {
                tracing::warn!(%err, "refusal not recorded");
            }
            blocks::ephemeral(&format!(
                ":no_entry: {who}, you are not on rollwarden's approver list for Slack; \
                 nothing was done. Ask the on-call to approve, or use the console."
            ))
        }
        Some(id) => match gate(&state, &press.person(), id, None, press.to).await {
            Ok(decided) => {
                state.metrics.slack_interaction(press.to);
                let verb = if press.to == "approved" {
                    ":white_check_mark: Approved"
                } else {
                    ":no_entry_sign: Rejected"
                };
                let next = if press.to == "approved" {
                    "rolling back now; updates follow in the thread."
                } else {
                    "nothing will be done."
                };
                let kinds: Vec<String> = decided
                    .actions
                    .iter()
                    .map(|a| mrkdwn::escape(&a.kind).into_owned())
                    .collect();
                blocks::pressed(&format!(
                    "{verb} by {who}: decision #{id} ({}) — {next}",
                    kinds.join(", ")
                ))
            }
            Err(refused) => {
                state.metrics.slack_interaction("no_op");
                blocks::ephemeral(&format!(
                    "Nothing was changed: {}",
                    mrkdwn::escape(refused.message())
                ))
            }
        },
    };
    let Some(url) = press.response_url else {
        return;
    };
    if !url.starts_with(&slack.response_url_prefix) {
        tracing::warn!(
            "a Slack response_url outside notify.slack.response_url_prefix: not answered"
        );
        return;
    }
    match slack.http.post(&url).json(&reply).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(status = %r.status(), "Slack response_url refused the answer"),
        Err(err) => tracing::warn!(err = %err.without_url(), "Slack response_url not reached"),
    }
}
