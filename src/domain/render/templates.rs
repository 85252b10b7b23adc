//! Every notification's words come from a template (minijinja): built in, and each
//! replaceable by a file of the same name in `notify.templates_dir`. Templates get
//! the facts of a [`Message`] and escape by where they go:
//! - `*.mrkdwn` (Slack): every value is mrkdwn-escaped as it is written ([`mrkdwn`]),
//!   so a label cannot mention, ping or link; `| code` and `| code_block` make code.
//!   `head` (kind, target, region, environment) comes ready-made.
//! - `*.txt` (PagerDuty's summary, the email): values as they are. PagerDuty's
//!   fields are JSON-encoded, and the summary is cut to one line; an email's subject
//!   is cut to one line, so no value can add a header.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, Value, context};

use super::mrkdwn;
use crate::domain::action::{Event, Message};

/// The templates rollwarden uses, with their built-in text.
pub const BUILTIN: [(&str, &str); 10] = [
    (
        "slack/recommend.mrkdwn",
        include_str!("templates/slack/recommend.mrkdwn"),
    ),
    (
        "slack/approval.mrkdwn",
        include_str!("templates/slack/approval.mrkdwn"),
    ),
    (
        "slack/announce.mrkdwn",
        include_str!("templates/slack/announce.mrkdwn"),
    ),
    (
        "slack/result.mrkdwn",
        include_str!("templates/slack/result.mrkdwn"),
    ),
    (
        "slack/escalate.mrkdwn",
        include_str!("templates/slack/escalate.mrkdwn"),
    ),
    (
        "slack/status.mrkdwn",
        include_str!("templates/slack/status.mrkdwn"),
    ),
    (
        "slack/footer.mrkdwn",
        include_str!("templates/slack/footer.mrkdwn"),
    ),
    (
        "slack/release.mrkdwn",
        include_str!("templates/slack/release.mrkdwn"),
    ),
    (
        "pagerduty/summary.txt",
        include_str!("templates/pagerduty/summary.txt"),
    ),
    (
        "email/resolved.txt",
        include_str!("templates/email/resolved.txt"),
    ),
];

/// A template that does not parse, or fails on a sample message.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// An email: one subject line and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub body: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, with `overrides` (name → source) in their place.
    /// Unknown names and templates that do not render are errors naming them.
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".mrkdwn") {
                AutoEscape::Custom("mrkdwn")
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Custom("mrkdwn")) {
                if value.is_undefined() || value.is_none() {
                    return Ok(());
                }
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), String::from);
                if value.is_safe() {
                    out.write_str(&text)?;
                } else {
                    out.write_str(&mrkdwn::escape(&text))?;
                }
                return Ok(());
            }
            minijinja::escape_formatter(out, state, value)
        });
        env.add_filter("code", |text: String| {
            Value::from_safe_string(mrkdwn::code(&text))
        });
        env.add_filter("code_block", |lines: Vec<String>| {
            Value::from_safe_string(mrkdwn::code_block(&lines))
        });
        for name in overrides.keys() {
            if !BUILTIN.iter().any(|(known, _)| known == name) {
                return Err(TemplateError {
                    name: name.clone(),
                    message: format!(
                        "not a template rollwarden uses (known: {})",
                        BUILTIN.map(|(n, _)| n).join(", ")
                    ),
                });
            }
        }
        for (name, builtin) in BUILTIN {
            let source = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| builtin.to_string());
            env.add_template_owned(name, source)
                .map_err(|err| TemplateError {
                    name: name.into(),
                    message: err.to_string(),
                })?;
        }
        let templates = Self { env };
        templates.check()?;
        Ok(templates)
    }

    /// The built-in templates.
    pub fn builtin() -> &'static Templates {
        static BUILTIN_TEMPLATES: OnceLock<Templates> = OnceLock::new();
        BUILTIN_TEMPLATES.get_or_init(|| {
            Templates::new(&BTreeMap::new()).expect("the built-in templates render")
        })
    }

    /// The Slack text of `message` (mrkdwn).
    pub fn slack_text(&self, message: &Message<'_>) -> String {
        let name = match message.event {
            Event::Recommend => "slack/recommend.mrkdwn",
            Event::Approval => "slack/approval.mrkdwn",
            Event::Announce => "slack/announce.mrkdwn",
            Event::Result => "slack/result.mrkdwn",
            Event::Escalate => "slack/escalate.mrkdwn",
            Event::Status => "slack/status.mrkdwn",
        };
        self.render(name, message, Value::UNDEFINED)
    }

    /// PagerDuty's `summary` of `message`, an incident of `class`.
    pub fn pagerduty_summary(&self, message: &Message<'_>, class: &str) -> String {
        self.render(
            "pagerduty/summary.txt",
            message,
            context! { class => class },
        )
    }

    /// The stakeholder email about a verified rollback.
    pub fn email(&self, message: &Message<'_>, support: &str) -> Email {
        let text = self.render(
            "email/resolved.txt",
            message,
            context! { support => support },
        );
        let (subject, body) = match text.strip_prefix("Subject:") {
            Some(rest) => rest.split_once('\n').unwrap_or((rest, "")),
            None => ("", text.as_str()),
        };
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Email {
            subject: subject.trim().chars().take(200).collect(),
            body: body.trim_start_matches(['\r', '\n']).to_string(),
        }
    }

    /// Renders `name`; an override that fails at run time (it rendered the sample at
    /// start) falls back to the built-in text rather than lose the message.
    fn render(&self, name: &str, message: &Message<'_>, extra: Value) -> String {
        let ctx = context! { ..facts(message), ..extra.clone() };
        match self.env.get_template(name).and_then(|t| t.render(&ctx)) {
            Ok(text) => text.trim_end().to_string(),
            Err(err) => {
                tracing::warn!(template = name, error = %err, "template failed: the built-in text is used");
                let builtin = Templates::builtin();
                if std::ptr::eq(self, builtin) {
                    return format!("(template {name} failed: {err})");
                }
                builtin.render(name, message, extra)
            }
        }
    }

    /// Renders every template with a sample message of each kind: an override that
    /// fails is a configuration error, not a lost message at 3 a.m.
    fn check(&self) -> Result<(), TemplateError> {
        let decision = sample_decision();
        for event in Event::ALL {
            let message = Message {
                event,
                decision_id: 1,
                decision: &decision,
                action: Some(("rollout_undo", "verified")),
                detail: Some("detail"),
                now: chrono::DateTime::UNIX_EPOCH,
                eta: None,
                public_url: "https://rollwarden.example.com",
                actor: Some("alice"),
            };
            let ctx = context! { ..facts(&message), ..context! { class => "escalation", support => "support@example.com" } };
            for (name, _) in BUILTIN {
                self.env
                    .get_template(name)
                    .and_then(|t| t.render(&ctx))
                    .map_err(|err| TemplateError {
                        name: name.into(),
                        message: err.to_string(),
                    })?;
            }
        }
        Ok(())
    }
}

/// What a template may use.
fn facts(m: &Message<'_>) -> Value {
    let d = m.decision;
    let t = &d.target;
    let region = d.region.as_deref().unwrap_or("-");
    let environment = d.environment.as_deref().unwrap_or("-");
    let mut head = String::new();
    let _ = write!(
        head,
        "*{}* {} (region {}, environment {})",
        mrkdwn::escape(&t.kind),
        mrkdwn::code(&format!("{}/{}", t.namespace, t.name)),
        mrkdwn::escape(region),
        mrkdwn::escape(environment),
    );
    let (action_kind, state) = match (m.action, m.event) {
        (Some(action), _) => action,
        (None, Event::Result) => ("rollback", "done"),
        (None, Event::Status) => ("rollback", "running"),
        (None, _) => ("rollback", ""),
    };
    let revision = |r: &crate::domain::DeployRecord| {
        context! { source => r.deploy.source.as_str(), revision => r.deploy.revision.clone() }
    };
    let clock = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    context! {
        event => m.event.as_str(),
        decision_id => m.decision_id,
        kind => t.kind.clone(),
        namespace => t.namespace.clone(),
        name => t.name.clone(),
        target => t.key(),
        region => region,
        environment => environment,
        head => Value::from_safe_string(head),
        reason => d.reason.clone(),
        verdict => d.verdict,
        action_kind => action_kind,
        state => state,
        detail => m.detail,
        actor => m.actor,
        now => clock(m.now),
        eta => m.eta.map_or_else(|| "unknown".to_string(), clock),
        started => d.regression_started_at.map(|t| t.format("%H:%M").to_string()),
        ended => m.now.format("%H:%M").to_string(),
        suspect => d.suspect.as_ref().map(revision),
        rollback_to => d.rollback_to.as_ref().map(revision),
        commands => d.recommended.clone(),
        release => d.release.as_ref().map(Value::from_serialize),
        public_url => m.public_url.trim_end_matches('/'),
    }
}

fn sample_decision() -> crate::domain::Decision {
    use crate::domain::{Decision, Deploy, DeployRecord, DeploySource, TargetRef, Verdict};
    let target = TargetRef::deployment("default", "prod", "checkout");
    let at = chrono::DateTime::UNIX_EPOCH;
    let record = |id, revision: &str| DeployRecord {
        id,
        deploy: Deploy::new(
            target.clone(),
            DeploySource::Kubernetes,
            revision,
            "deployed",
            at,
        ),
    };
    Decision {
        verdict: Verdict::Rollback,
        reason: "M2: error rate 12.4 % > 5 %".into(),
        target: target.clone(),
        region: Some("eu-west-1".into()),
        environment: Some("prod".into()),
        fired: Vec::new(),
        holds: Vec::new(),
        pending: Vec::new(),
        suspect: Some(record(2, "3")),
        rollback_to: Some(record(1, "2")),
        regression_started_at: Some(at),
        recommended: vec![
            "kubectl -n prod rollout undo deployment/checkout --to-revision=2".into(),
        ],
        plan: None,
        escalate: None,
        verification: None,
        gitops: None,
        policy_version: "runbooks-1".into(),
        inputs_hash: String::new(),
        not_considered: None,
        release: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::tests::{hostile_messages, inert_mrkdwn};

    fn overridden(name: &str, source: &str) -> Result<Templates, TemplateError> {
        Templates::new(&BTreeMap::from([(name.to_string(), source.to_string())]))
    }

    #[test]
    fn every_template_renders_hostile_values_escaped_for_where_they_go() {
        let t = Templates::builtin();
        for (hostile, value) in hostile_messages() {
            let message = hostile.as_message();
            let text = t.slack_text(&message);
            assert!(inert_mrkdwn(&text), "{value:?}: {text}");
            // Plain text goes as it is, but never past its line: a subject cannot
            // grow a header, whatever the region says.
            let mail = t.email(&message, "support@example.com");
            assert!(!mail.subject.chars().any(char::is_control), "{value:?}");
            assert!(mail.subject.chars().count() <= 200);
            assert!(mail.body.contains("post-mortem within 48 hours"));
            // Each class of incident: the summary's every branch.
            let failed = format!("{value} of ");
            for (class, opening) in [
                ("escalation", "Escalation for "),
                ("action-failed", failed.as_str()),
                ("approval-expired", "Rollback of "),
            ] {
                let summary = t.pagerduty_summary(&message, class);
                assert!(summary.starts_with(opening), "{class}: {summary}");
            }
            let expired = t.pagerduty_summary(&message, "approval-expired");
            assert!(
                expired.contains(" awaited approval and expired: "),
                "{expired}"
            );
            // The result's every branch, the person's name and comment included.
            for state in ["approved", "rejected", "expired", "verifying", "dry_run"] {
                let mut result = hostile.as_message();
                result.event = Event::Result;
                result.action = Some((&hostile.value, state));
                let text = t.slack_text(&result);
                assert!(inert_mrkdwn(&text), "{state} {value:?}: {text}");
            }
        }
    }

    #[test]
    fn a_result_names_who_approved_or_rejected_it_and_their_comment() {
        let d = sample_decision();
        let message = |state, actor| Message {
            event: Event::Result,
            decision_id: 7,
            decision: &d,
            action: Some(("rollout_undo", state)),
            detail: Some("Comment: a load test, not a regression"),
            now: chrono::DateTime::UNIX_EPOCH,
            eta: None,
            public_url: "",
            actor,
        };
        let t = Templates::builtin();
        let rejected = t.slack_text(&message("rejected", Some("slack:U0BOB (bob)")));
        assert!(
            rejected.starts_with(":no_entry_sign: rollout_undo of "),
            "{rejected}"
        );
        assert!(
            rejected.contains(
                ": rejected\nRejected by slack:U0BOB (bob): nothing will be done.\n\
                 Comment: a load test, not a regression\n"
            ),
            "{rejected}"
        );
        let approved = t.slack_text(&message("approved", Some("oncall")));
        assert!(
            approved.contains(": approved\nApproved by oncall.\n"),
            "{approved}"
        );
        // Expired: nobody acted, nobody is named.
        let expired = t.slack_text(&message("expired", None));
        assert!(expired.starts_with(":x: "), "{expired}");
        assert!(!expired.contains(" by "), "{expired}");
    }

    #[test]
    fn the_email_is_the_runbooks_stakeholder_message() {
        let d = sample_decision();
        let message = Message {
            event: Event::Result,
            decision_id: 7,
            decision: &d,
            action: Some(("rollout_undo", "verified")),
            detail: None,
            now: "1970-01-01T00:25:00Z".parse().unwrap(),
            eta: None,
            public_url: "",
            actor: None,
        };
        let mail = Templates::builtin().email(&message, "support@meshos.io");
        assert_eq!(
            mail.subject,
            "[RESOLVED] Service Incident - Region eu-west-1"
        );
        for line in [
            "We experienced a service disruption in the eu-west-1 region from 00:00-00:25 UTC.",
            "Impact: M2: error rate 12.4 % > 5 %",
            "Resolution: We rolled back prod/checkout from revision 3 to the previous stable \
             version (revision 2) and all systems are now operating normally.",
            "If you experienced any issues, please contact support@meshos.io.",
        ] {
            assert!(
                mail.body.contains(line),
                "{line:?} missing from\n{}",
                mail.body
            );
        }
        assert!(!mail.body.starts_with('\n'));
        let quiet = Templates::builtin().email(&message, "");
        assert!(!quiet.body.contains("please contact"));
    }

    #[test]
    fn an_override_replaces_its_template_and_is_still_escaped() {
        let t = overridden(
            "slack/approval.mrkdwn",
            "Approve {{ name }} please: {{ reason }} {{ head }}",
        )
        .unwrap();
        let (hostile, _) = hostile_messages()
            .into_iter()
            .find(|(m, v)| m.event == Event::Approval && v.contains("<!channel>"))
            .unwrap();
        let text = t.slack_text(&hostile.as_message());
        assert!(text.starts_with("Approve &lt;!channel&gt;"), "{text}");
        assert!(inert_mrkdwn(&text), "{text}");
        // The other templates stay built in.
        let announce = SampleAnnounce::new();
        assert!(
            t.slack_text(&announce.message())
                .starts_with(":rewind: Rolling back")
        );
    }

    #[test]
    fn bad_overrides_are_errors_naming_the_template() {
        let unknown = overridden("slack/aproval.mrkdwn", "x").err().unwrap();
        assert_eq!(unknown.name, "slack/aproval.mrkdwn");
        assert!(unknown.message.contains("slack/approval.mrkdwn"));
        let broken = overridden("email/resolved.txt", "Subject: {% if %}")
            .err()
            .unwrap();
        assert_eq!(broken.name, "email/resolved.txt");
        let failing = overridden("pagerduty/summary.txt", "{{ reason | no_such_filter }}")
            .err()
            .unwrap();
        assert_eq!(failing.name, "pagerduty/summary.txt");
    }

    /// An announcement of the sample decision.
    struct SampleAnnounce(crate::domain::Decision);

    impl SampleAnnounce {
        fn new() -> Self {
            Self(sample_decision())
        }

        fn message(&self) -> Message<'_> {
            Message {
                event: Event::Announce,
                decision_id: 1,
                decision: &self.0,
                action: Some(("rollout_undo", "running")),
                detail: None,
                now: chrono::DateTime::UNIX_EPOCH,
                eta: None,
                public_url: "",
                actor: None,
            }
        }
    }
}
