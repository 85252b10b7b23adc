//! Slack Block Kit: the messages a Slack app posts (`chat.postMessage`) and the
//! top-of-thread updates (`chat.update`), built from a [`Message`]. The text is the
//! same escaped mrkdwn as [`Message::text`]; the buttons carry only the decision id,
//! and what a press does is decided on the server (PROTOCOLS.md F.2, F.4).

use serde_json::{Value, json};

use super::mrkdwn;
use crate::domain::action::{Event, Message};

/// `action_id` of the Approve button.
pub const APPROVE: &str = "rollwarden_approve";
/// `action_id` of the Reject button.
pub const REJECT: &str = "rollwarden_reject";
/// `block_id` of the buttons' block.
pub const BUTTONS_BLOCK: &str = "rollwarden_approval";

/// Slack's limit on a section's text (F.2).
const SECTION_MAX: usize = 3000;

/// What a Slack app posts for `message`: `{text, blocks}`, with Approve / Reject
/// buttons on an approval request when `buttons` (the app is interactive).
pub fn post(message: &Message<'_>, text: &str, buttons: bool) -> Value {
    let mut blocks = vec![section(text)];
    if buttons && message.event == Event::Approval {
        let value = message.decision_id.to_string();
        blocks.push(json!({
            "type": "actions",
            "block_id": BUTTONS_BLOCK,
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "danger", "value": value,
                 "text": {"type": "plain_text", "text": "Approve rollback"}},
                {"type": "button", "action_id": REJECT, "value": value,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ],
        }));
    }
    if let Some(link) = console_link(message) {
        blocks.push(context(&link));
    }
    json!({ "text": fallback(text), "blocks": blocks })
}

/// The thread's top message once `message` is the latest news: its text, no buttons
/// (whatever awaited approval has moved on), when it changed, and who approved or
/// rejected it.
pub fn top(message: &Message<'_>, text: &str) -> Value {
    let state = message.action.map_or(message.event.as_str(), |(_, s)| s);
    let mut note = format!(
        "Current state: *{}* at {}",
        mrkdwn::escape(state),
        message.now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(actor) = message.actor {
        let verb = if state == "rejected" {
            "rejected"
        } else {
            "approved"
        };
        note.push_str(&format!(" · {verb} by {}", mrkdwn::escape(actor)));
    }
    let mut blocks = vec![section(text), context(&note)];
    if let Some(link) = console_link(message) {
        blocks.push(context(&link));
    }
    json!({ "text": fallback(text), "blocks": blocks })
}

/// What replaces the message whose button was pressed (through its `response_url`).
pub fn pressed(text: &str) -> Value {
    json!({
        "replace_original": true,
        "response_type": "in_channel",
        "text": fallback(text),
        "blocks": [section(text)],
    })
}

/// A note only the person who pressed sees; the message stays as it was.
pub fn ephemeral(text: &str) -> Value {
    json!({
        "replace_original": false,
        "response_type": "ephemeral",
        "text": fallback(text),
    })
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_MAX)}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_MAX)}]})
}

/// The notification text (what a phone shows): the first line.
fn fallback(text: &str) -> String {
    truncate(text.lines().next().unwrap_or(""), SECTION_MAX)
}

fn console_link(message: &Message<'_>) -> Option<String> {
    let base = message.public_url.trim_end_matches('/');
    // Only a URL the configuration gave can become a link; `|` and `>` would end it.
    let linkable = (base.starts_with("https://") || base.starts_with("http://"))
        && !base.contains(['<', '>', '|', ' ', '&']);
    linkable.then(|| {
        format!(
            "<{base}/decisions/{id}|Decision #{id} in rollwarden>",
            id = message.decision_id
        )
    })
}

/// `text` cut to at most `max` characters, never inside an `&…;` escape, marked `…`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    // An unclosed code block would swallow the ellipsis; close it.
    if cut.matches("```").count() % 2 == 1 {
        cut.truncate(cut.len().saturating_sub(4).min(cut.len()));
        while !cut.is_char_boundary(cut.len()) {
            cut.pop();
        }
        cut.push_str("\n```");
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::tests::{decision, hostile_messages};
    use crate::domain::{DeploySource, Verdict};

    #[test]
    fn an_approval_carries_the_two_buttons_and_only_the_decision_id() {
        let d = decision(Verdict::Rollback, DeploySource::Kubernetes);
        let message = Message {
            event: Event::Approval,
            decision_id: 42,
            decision: &d,
            action: Some(("rollout_undo", "awaiting_approval")),
            detail: None,
            now: "2026-08-22T14:03:00Z".parse().unwrap(),
            eta: None,
            public_url: "https://rollwarden.example.com/",
            actor: None,
        };
        let text = message.text();
        let body = post(&message, &text, true);
        let buttons = &body["blocks"][1];
        assert_eq!(buttons["block_id"], BUTTONS_BLOCK);
        assert_eq!(buttons["elements"][0]["action_id"], APPROVE);
        assert_eq!(buttons["elements"][0]["value"], "42");
        assert_eq!(buttons["elements"][1]["action_id"], REJECT);
        assert_eq!(
            body["blocks"][2]["elements"][0]["text"],
            "<https://rollwarden.example.com/decisions/42|Decision #42 in rollwarden>"
        );
        // Not interactive: no buttons.
        assert_eq!(
            post(&message, &text, false)["blocks"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // The top of the thread never keeps them.
        let announce = Message {
            event: Event::Announce,
            action: Some(("rollout_undo", "running")),
            actor: Some("slack:U0123ABCD (alice)"),
            ..message
        };
        let top = top(&announce, &announce.text());
        assert!(!top.to_string().contains(APPROVE));
        assert!(
            top["blocks"][1]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains(
                    "*running* at 2026-08-22 14:03:00 UTC · approved by slack:U0123ABCD (alice)"
                )
        );
    }

    #[test]
    fn a_rejection_takes_the_buttons_off_the_top_and_names_who_rejected() {
        let d = decision(Verdict::Rollback, DeploySource::Kubernetes);
        let message = Message {
            event: Event::Result,
            decision_id: 42,
            decision: &d,
            action: Some(("rollout_undo", "rejected")),
            detail: None,
            now: "2026-08-22T14:03:00Z".parse().unwrap(),
            eta: None,
            public_url: "",
            actor: Some("oncall"),
        };
        let top = top(&message, &message.text());
        assert!(!top.to_string().contains(APPROVE));
        assert_eq!(
            top["blocks"][1]["elements"][0]["text"],
            "Current state: *rejected* at 2026-08-22 14:03:00 UTC · rejected by oncall"
        );
    }

    #[test]
    fn hostile_values_stay_text_in_every_block() {
        for (message, _) in hostile_messages() {
            let message = message.as_message();
            let text = message.text();
            for body in [post(&message, &text, true), top(&message, &text)] {
                for block in body["blocks"].as_array().unwrap() {
                    let texts = match block["type"].as_str().unwrap() {
                        "section" => vec![block["text"]["text"].as_str().unwrap()],
                        "context" => block["elements"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|e| e["text"].as_str().unwrap())
                            .collect(),
                        _ => vec![],
                    };
                    for text in texts {
                        // The only link is the configured console's (none here).
                        assert!(crate::domain::action::tests::inert_mrkdwn(text), "{text}");
                        assert!(text.chars().count() <= SECTION_MAX);
                    }
                }
            }
        }
    }

    #[test]
    fn truncation_keeps_escapes_and_code_blocks_whole() {
        let text = format!("{}&amp;tail", "a".repeat(2995));
        let cut = truncate(&text, 3000);
        assert!(cut.ends_with("a…"), "{cut}");
        let text = format!("```\n{}", "b".repeat(4000));
        let cut = truncate(&text, 3000);
        assert!(cut.ends_with("\n```…"));
        assert!(cut.chars().count() <= 3000);
        assert_eq!(truncate("short", 3000), "short");
    }
}
