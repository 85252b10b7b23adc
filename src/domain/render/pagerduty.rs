//! PagerDuty Events API v2 (PROTOCOLS.md G): which messages page, and the event
//! sent. Values go into JSON strings (serde encodes them), so they are not escaped,
//! only flattened to one line and cut to PagerDuty's limits. The routing key is a
//! secret and is added at delivery, never stored with the event.

use serde_json::{Value, json};

use super::templates::Templates;
use crate::domain::action::{Event, Message};

/// PagerDuty's limits: `summary` in characters, `dedup_key` in characters, and the
/// whole event in bytes (with a margin for the routing key).
const SUMMARY_MAX: usize = 1024;
const DEDUP_KEY_MAX: usize = 255;
const EVENT_MAX_BYTES: usize = 500_000;

/// What a message does to PagerDuty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Open (or update) the decision's incident, with this `class`.
    Trigger(&'static str),
    /// The rollback restored service: close it.
    Resolve,
}

/// Whether `message` pages: an escalation (E1, the loop guard, a freeze, an action
/// that needs a person), a failed action, or an approval that expired trigger; a
/// verified rollback resolves. Everything else stays in chat.
pub fn page(message: &Message<'_>) -> Option<Page> {
    let state = message.action.map(|(_, state)| state);
    match (message.event, state) {
        (Event::Escalate, _) => Some(Page::Trigger("escalation")),
        (Event::Result, Some("failed")) => Some(Page::Trigger("action-failed")),
        (Event::Result, Some("expired")) => Some(Page::Trigger("approval-expired")),
        (Event::Result, Some("verified")) => Some(Page::Resolve),
        _ => None,
    }
}

/// The dedup key of a decision's incident: every event about it updates one.
pub fn dedup_key(message: &Message<'_>) -> String {
    cut(
        &format!(
            "rollwarden:{}:{}",
            message.decision.target.key(),
            message.decision_id
        ),
        DEDUP_KEY_MAX,
    )
}

/// The event for `message` (without `routing_key`), or `None` when it does not page;
/// its summary from the `pagerduty/summary.txt` template.
pub fn event(
    message: &Message<'_>,
    templates: &Templates,
    severity: &str,
    source: &str,
) -> Option<Value> {
    let page = page(message)?;
    let dedup_key = dedup_key(message);
    let Page::Trigger(class) = page else {
        return Some(json!({ "event_action": "resolve", "dedup_key": dedup_key }));
    };
    let d = message.decision;
    let summary = templates.pagerduty_summary(message, class);
    let mut details = json!({
        "decision_id": message.decision_id,
        "target": d.target.key(),
        "region": d.region,
        "environment": d.environment,
        "verdict": d.verdict,
        "reason": d.reason,
        "action": message.action.map(|(kind, state)| json!({"kind": kind, "state": state})),
        "detail": message.detail,
        "suspect": d.suspect.as_ref().map(|s| &s.deploy.revision),
        "rollback_to": d.rollback_to.as_ref().map(|r| &r.deploy.revision),
        "commands": d.recommended,
        "evidence": d,
    });
    if details.to_string().len() > EVENT_MAX_BYTES {
        // The evidence is on the decision page; the event must stay under 512 KB.
        details["evidence"] = json!("too large for PagerDuty: see the decision's link");
    }
    let mut event = json!({
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": cut(&one_line(&summary), SUMMARY_MAX),
            "source": source,
            "severity": severity,
            "timestamp": message.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "component": cut(&d.target.name, SUMMARY_MAX),
            "group": cut(&d.target.namespace, SUMMARY_MAX),
            "class": class,
            "custom_details": details,
        },
        "client": "rollwarden",
    });
    let base = message.public_url.trim_end_matches('/');
    if base.starts_with("https://") || base.starts_with("http://") {
        let href = format!("{base}/decisions/{}", message.decision_id);
        event["links"] = json!([{ "href": href, "text": "Decision in rollwarden" }]);
        event["client_url"] = json!(href);
    }
    Some(event)
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::tests::{decision, hostile_messages};
    use crate::domain::{DeploySource, Verdict};

    fn message<'a>(
        d: &'a crate::domain::Decision,
        event: Event,
        action: Option<(&'a str, &'a str)>,
    ) -> Message<'a> {
        Message {
            event,
            decision_id: 42,
            decision: d,
            action,
            detail: Some("E1: the rollback has not restored service within 600 s"),
            now: "2026-08-22T14:03:00Z".parse().unwrap(),
            eta: None,
            public_url: "https://rollwarden.example.com",
            actor: None,
        }
    }

    #[test]
    fn escalations_failures_and_expiries_page_and_verification_resolves() {
        let d = decision(Verdict::Rollback, DeploySource::Kubernetes);
        let undo = |state| Some(("rollout_undo", state));
        let cases = [
            (
                Event::Escalate,
                undo("escalated"),
                Some(Page::Trigger("escalation")),
            ),
            (Event::Escalate, None, Some(Page::Trigger("escalation"))),
            (
                Event::Result,
                undo("failed"),
                Some(Page::Trigger("action-failed")),
            ),
            (
                Event::Result,
                undo("expired"),
                Some(Page::Trigger("approval-expired")),
            ),
            (Event::Result, undo("verified"), Some(Page::Resolve)),
            (Event::Result, undo("verifying"), None),
            (Event::Announce, undo("running"), None),
            (Event::Approval, undo("awaiting_approval"), None),
            (Event::Recommend, undo("recommended"), None),
        ];
        for (event, action, expected) in cases {
            assert_eq!(
                page(&message(&d, event, action)),
                expected,
                "{event:?} {action:?}"
            );
        }
        let trigger = event(
            &message(&d, Event::Escalate, undo("escalated")),
            Templates::builtin(),
            "critical",
            "rw",
        )
        .unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(
            trigger["dedup_key"],
            "rollwarden:default/prod/Deployment/checkout:42"
        );
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["source"], "rw");
        assert_eq!(trigger["payload"]["timestamp"], "2026-08-22T14:03:00Z");
        assert_eq!(
            trigger["payload"]["summary"],
            "Escalation for Deployment prod/checkout: E1: the rollback has not restored service within 600 s"
        );
        assert_eq!(
            trigger["payload"]["custom_details"]["evidence"]["verdict"],
            "rollback"
        );
        assert_eq!(
            trigger["links"][0]["href"],
            "https://rollwarden.example.com/decisions/42"
        );
        assert!(trigger.get("routing_key").is_none());
        let resolve = event(
            &message(&d, Event::Result, undo("verified")),
            Templates::builtin(),
            "critical",
            "rw",
        )
        .unwrap();
        assert_eq!(
            resolve,
            json!({"event_action": "resolve", "dedup_key": "rollwarden:default/prod/Deployment/checkout:42"})
        );
    }

    #[test]
    fn hostile_values_stay_inside_their_strings_and_limits() {
        // Every kind of trigger: an escalation, a failed action, an expired approval.
        for (hostile, value) in hostile_messages() {
            let states: &[&str] = if hostile.event == Event::Escalate {
                &["escalated"]
            } else {
                &["failed", "expired"]
            };
            for state in states {
                let mut message = hostile.as_message();
                if message.event != Event::Escalate {
                    message.event = Event::Result;
                    message.action = Some(("rollout_undo", state));
                }
                let class = match *state {
                    "expired" => "approval-expired",
                    "failed" => "action-failed",
                    _ => "escalation",
                };
                assert_hostile_event_is_inert(&message, &value, class);
            }
        }
    }

    fn assert_hostile_event_is_inert(message: &Message<'_>, value: &str, class: &str) {
        let event = event(message, Templates::builtin(), "error", "rollwarden").unwrap();
        assert_eq!(event["payload"]["class"], class, "{value:?}");
        // A round trip through JSON gives the same value: nothing escaped its string.
        let text = event.to_string();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), event);
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert!(summary.chars().count() <= SUMMARY_MAX, "{value:?}");
        assert!(!summary.chars().any(char::is_control), "{value:?}");
        if class == "approval-expired" {
            assert!(summary.starts_with("Rollback of "), "{summary}");
            // Unless the values alone fill the summary.
            assert!(
                summary.contains(" awaited approval and expired: ") || value.len() > 500,
                "{summary}"
            );
        }
        assert!(event["dedup_key"].as_str().unwrap().chars().count() <= DEDUP_KEY_MAX);
        // A hostile public URL never becomes a link.
        assert!(event.get("links").is_none() || value.starts_with("http"));
    }
}
