//! Canary controllers asking rollwarden: Flagger's webhooks (may this canary start,
//! advance, be promoted; must it roll back?) and Argo Rollouts' web metric. The answer
//! comes from the target's decision and the freezes that cover it, the same way for
//! both controllers; and a canary run's timeline (`details.events` of its deploy row)
//! keeps every call and event.
//!
//! | hook | passes (200) when | refused (403) with |
//! | --- | --- | --- |
//! | `confirm-rollout` | no freeze, no rollback | `gate_closed` |
//! | `confirm-traffic-increase`, `confirm-promotion` | healthy: verdict `ok` or `monitor`, no rule calling for more pending, no freeze | `gate_closed` |
//! | `pre-rollout`, `rollout` | no rollback | `check_failed` |
//! | `rollback` | rollwarden decides the canary must roll back | `no_rollback` |
//! | `post-rollout`, `event` | always (recorded) | — |
//!
//! Starting a canary (at weight 0) is refused only by a freeze or a rollback decision,
//! so that a fix can still start its analysis while evidence about the running version
//! is held or investigated; sending it more traffic or promoting it needs the target
//! healthy. A freeze still admits rollbacks (DESIGN.md): it never changes the answer of
//! the `rollback` hook.

use serde::Serialize;
use serde_json::Value;

use super::policy::Outcome;
use super::{Decision, Freeze, Verdict};

/// The Flagger webhook types (PROTOCOLS.md B.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::ConfirmRollout,
        Hook::PreRollout,
        Hook::Rollout,
        Hook::ConfirmTrafficIncrease,
        Hook::ConfirmPromotion,
        Hook::PostRollout,
        Hook::Rollback,
        Hook::Event,
    ];

    /// The name Flagger's `type` field uses, and our path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::ConfirmRollout => "confirm-rollout",
            Hook::PreRollout => "pre-rollout",
            Hook::Rollout => "rollout",
            Hook::ConfirmTrafficIncrease => "confirm-traffic-increase",
            Hook::ConfirmPromotion => "confirm-promotion",
            Hook::PostRollout => "post-rollout",
            Hook::Rollback => "rollback",
            Hook::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// Whether the answer depends on the target's decision (the others only record).
    pub fn asks(self) -> bool {
        !matches!(self, Hook::PostRollout | Hook::Event)
    }
}

/// What rollwarden's current view of a target tells a canary controller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryStatus {
    pub verdict: Verdict,
    /// rollwarden decides the canary must roll back: the verdict is `rollback`, or
    /// `freeze` while a rollback rule fires and nothing holds it (a freeze admits
    /// rollbacks).
    pub rollback: bool,
    /// A freeze covers the target: one declared through the API, or the verdict
    /// `freeze` (M8).
    pub frozen: bool,
    /// Nothing stands in the way of the canary advancing: the verdict is `ok` or
    /// `monitor`, no rule calling for more is pending, no freeze covers the target,
    /// and the wave of the release it rolls out was not stopped in its region.
    pub healthy: bool,
    /// Why the release the target rolls out is refused in its region (the wave stop of
    /// `domain::release`), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave_stopped: Option<String>,
}

impl CanaryStatus {
    /// The status from a target's decision and the freezes covering it now.
    pub fn of(decision: &Decision, covering: &[&Freeze]) -> Self {
        let rollback = decision.verdict == Verdict::Rollback
            || (decision.verdict == Verdict::Freeze
                && decision.holds.is_empty()
                && decision.fired_with(Outcome::Rollback).next().is_some());
        let frozen = !covering.is_empty() || decision.verdict == Verdict::Freeze;
        // A rule that would call for more than watching once its signal has lasted
        // (G1's failing health check in its first three minutes) is no health.
        let pending = decision
            .pending
            .iter()
            .any(|p| p.outcome > Outcome::Monitor);
        let wave_stopped = decision.release.as_ref().and_then(|check| {
            let region = decision.region.as_deref()?;
            check.wave_stopped.iter().any(|r| r == region).then(|| {
                format!(
                    "wave stopped: release {} regressed in {}; it is refused in region {region}",
                    check.release,
                    check.affected.join(", ")
                )
            })
        });
        let healthy = !rollback
            && !frozen
            && !pending
            && wave_stopped.is_none()
            && matches!(decision.verdict, Verdict::Ok | Verdict::Monitor);
        Self {
            verdict: decision.verdict,
            rollback,
            frozen,
            healthy,
            wave_stopped,
        }
    }
}

/// How a hook is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 200: proceed, the check passed, or — for the `rollback` hook — roll back now.
    Pass,
    /// 403: the gate stays closed, the check failed, or no rollback.
    Refuse {
        /// `gate_closed`, `check_failed` or `no_rollback`.
        code: &'static str,
        /// Why, in words (Flagger shows it in its events).
        why: String,
    },
}

impl Answer {
    /// The HTTP status Flagger reads: only 200–202 count as yes (PROTOCOLS.md B.3).
    pub fn status(&self) -> u16 {
        match self {
            Answer::Pass => 200,
            Answer::Refuse { .. } => 403,
        }
    }
}

/// The answer to `hook` for a target in `status`; `reason` is the decision's reason and
/// `covering` the freezes that cover the target, both cited when refusing.
pub fn answer(hook: Hook, status: &CanaryStatus, reason: &str, covering: &[&Freeze]) -> Answer {
    let frozen = || {
        let named: Vec<String> = covering
            .iter()
            .map(|f| format!("freeze #{} ({}): {}", f.id, f.scope, f.reason))
            .collect();
        if named.is_empty() {
            format!("deployments are frozen: {reason}")
        } else {
            format!("deployments are frozen by {}", named.join("; "))
        }
    };
    let refuse = |code: &'static str, why: String| Answer::Refuse { code, why };
    match hook {
        Hook::PostRollout | Hook::Event => Answer::Pass,
        Hook::Rollback if status.rollback => Answer::Pass,
        Hook::Rollback => refuse(
            "no_rollback",
            format!("no rollback: the verdict is {}: {reason}", status.verdict),
        ),
        Hook::PreRollout | Hook::Rollout if status.rollback => {
            refuse("check_failed", reason.into())
        }
        Hook::PreRollout | Hook::Rollout => match &status.wave_stopped {
            Some(why) => refuse("check_failed", why.clone()),
            None => Answer::Pass,
        },
        Hook::ConfirmRollout if status.frozen => refuse("gate_closed", frozen()),
        Hook::ConfirmRollout if status.rollback => refuse("gate_closed", reason.into()),
        Hook::ConfirmRollout => match &status.wave_stopped {
            Some(why) => refuse("gate_closed", why.clone()),
            None => Answer::Pass,
        },
        Hook::ConfirmTrafficIncrease | Hook::ConfirmPromotion if status.healthy => Answer::Pass,
        Hook::ConfirmTrafficIncrease | Hook::ConfirmPromotion if status.frozen => {
            refuse("gate_closed", frozen())
        }
        Hook::ConfirmTrafficIncrease | Hook::ConfirmPromotion if status.wave_stopped.is_some() => {
            refuse(
                "gate_closed",
                status.wave_stopped.clone().unwrap_or_default(),
            )
        }
        Hook::ConfirmTrafficIncrease | Hook::ConfirmPromotion => refuse(
            "gate_closed",
            format!("the verdict is {}: {reason}", status.verdict),
        ),
    }
}

/// The most entries a canary run's timeline keeps (the newest).
pub const MAX_EVENTS: usize = 100;

/// Merges `later` timeline entries into `events` (both `details.events` of one canary
/// run). A controller's own event (an entry whose `hook` is `event`) is kept once:
/// Flagger's retry of it adds nothing. A hook call that answered like the previous
/// call of the same hook (same phase, answer, verdict and decision) is counted in that
/// entry (`calls`, `last_at`) rather than repeated, so a canary polled every interval
/// keeps a readable timeline. The newest [`MAX_EVENTS`] entries are kept.
pub fn merge_events(events: &mut Vec<Value>, later: &[Value]) {
    const SAME_CALL: [&str; 4] = ["phase", "answer", "verdict", "decision_id"];
    for entry in later {
        let hook = entry.get("hook").and_then(Value::as_str);
        if hook.is_none() || hook == Some(Hook::Event.as_str()) {
            if !events.contains(entry) {
                events.push(entry.clone());
            }
            continue;
        }
        let previous = events
            .iter_mut()
            .rev()
            .find(|e| e.get("hook").and_then(Value::as_str) == hook);
        match previous {
            Some(previous) if SAME_CALL.iter().all(|k| previous.get(*k) == entry.get(*k)) => {
                let calls = |e: &Value| e.get("calls").and_then(Value::as_u64).unwrap_or(1);
                let total = calls(previous) + calls(entry);
                let last = entry.get("last_at").or_else(|| entry.get("at")).cloned();
                if let Some(object) = previous.as_object_mut() {
                    object.insert("calls".into(), total.into());
                    if let Some(last) = last {
                        object.insert("last_at".into(), last);
                    }
                }
            }
            _ => events.push(entry.clone()),
        }
    }
    if events.len() > MAX_EVENTS {
        events.drain(..events.len() - MAX_EVENTS);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::domain::decision::{FiredRule, HoldReason};
    use crate::domain::{Scope, SignalKind, TargetRef};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn fired(id: &str, outcome: Outcome) -> FiredRule {
        FiredRule {
            rule_id: id.into(),
            description: String::new(),
            kind: SignalKind::ErrorRate,
            kinds: vec![SignalKind::ErrorRate],
            scope: Scope::Canary,
            condition: "> baseline + 0.5 pp".into(),
            threshold: Some(0.015),
            observed: Some(0.02),
            baseline: Some(0.01),
            duration_secs: Some(60),
            outcome,
            fingerprints: vec!["fp".into()],
            sources: vec![crate::domain::SignalSource::Alert],
            started_at: at("2026-08-22T14:00:00Z"),
        }
    }

    fn decision(verdict: Verdict, fired: Vec<FiredRule>, holds: Vec<HoldReason>) -> Decision {
        Decision {
            verdict,
            reason: format!("{verdict} because"),
            target: TargetRef::deployment("c", "prod", "checkout"),
            region: None,
            environment: None,
            fired,
            holds,
            pending: Vec::new(),
            suspect: None,
            rollback_to: None,
            regression_started_at: None,
            recommended: Vec::new(),
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

    fn freeze() -> Freeze {
        Freeze {
            id: 4,
            scope: "c/prod".into(),
            reason: "INC-42".into(),
            created_by: "oncall".into(),
            created_at: at("2026-08-22T13:00:00Z"),
            expires_at: None,
        }
    }

    fn inconclusive() -> HoldReason {
        HoldReason::Inconclusive {
            kind: SignalKind::ErrorRate,
            fingerprint: "fp".into(),
            why: "no value".into(),
            since: None,
            signals: 1,
            fingerprints: vec!["fp".into()],
        }
    }

    /// Every verdict, with and without a declared freeze: the status each gives.
    #[test]
    fn the_status_follows_the_verdict_and_the_freezes() {
        let f = freeze();
        let cases = [
            // (decision, declared freeze, rollback, frozen, healthy)
            (
                decision(Verdict::Ok, vec![], vec![]),
                false,
                false,
                false,
                true,
            ),
            (
                decision(Verdict::Ok, vec![], vec![]),
                true,
                false,
                true,
                false,
            ),
            (
                decision(
                    Verdict::Monitor,
                    vec![fired("M1", Outcome::Monitor)],
                    vec![],
                ),
                false,
                false,
                false,
                true,
            ),
            (
                decision(
                    Verdict::Investigate,
                    vec![fired("M5", Outcome::Investigate)],
                    vec![],
                ),
                false,
                false,
                false,
                false,
            ),
            (
                decision(
                    Verdict::Rollback,
                    vec![fired("C1", Outcome::Rollback)],
                    vec![],
                ),
                false,
                true,
                false,
                false,
            ),
            (
                decision(
                    Verdict::Rollback,
                    vec![fired("C1", Outcome::Rollback)],
                    vec![],
                ),
                true,
                true,
                true,
                false,
            ),
            (
                decision(Verdict::Hold, vec![], vec![inconclusive()]),
                false,
                false,
                false,
                false,
            ),
            (
                decision(Verdict::Freeze, vec![fired("M8", Outcome::Freeze)], vec![]),
                false,
                false,
                true,
                false,
            ),
            // M8 and an unheld rollback rule: the freeze admits the rollback.
            (
                decision(
                    Verdict::Freeze,
                    vec![fired("C1", Outcome::Rollback), fired("M8", Outcome::Freeze)],
                    vec![],
                ),
                false,
                true,
                true,
                false,
            ),
            (
                decision(
                    Verdict::Freeze,
                    vec![fired("C1", Outcome::Rollback), fired("M8", Outcome::Freeze)],
                    vec![inconclusive()],
                ),
                false,
                false,
                true,
                false,
            ),
        ];
        for (d, declared, rollback, frozen, healthy) in cases {
            let covering: Vec<&Freeze> = if declared { vec![&f] } else { vec![] };
            let s = CanaryStatus::of(&d, &covering);
            assert_eq!(
                (s.rollback, s.frozen, s.healthy),
                (rollback, frozen, healthy),
                "{} with freeze {declared}",
                d.verdict
            );
        }
    }

    fn status(verdict: Verdict, rollback: bool, frozen: bool, healthy: bool) -> CanaryStatus {
        CanaryStatus {
            verdict,
            rollback,
            frozen,
            healthy,
            wave_stopped: None,
        }
    }

    /// The gate table of the module docs, row by row.
    #[test]
    fn each_hook_answers_each_situation() {
        use Hook::*;
        let ok = status(Verdict::Ok, false, false, true);
        let hold = status(Verdict::Hold, false, false, false);
        let rollback = status(Verdict::Rollback, true, false, false);
        let frozen = status(Verdict::Ok, false, true, false);
        let frozen_rollback = status(Verdict::Rollback, true, true, false);
        // (hook, [ok, hold, rollback, frozen, frozen + rollback]) → HTTP status
        let table = [
            (ConfirmRollout, [200, 200, 403, 403, 403]),
            (ConfirmTrafficIncrease, [200, 403, 403, 403, 403]),
            (ConfirmPromotion, [200, 403, 403, 403, 403]),
            (PreRollout, [200, 200, 403, 200, 403]),
            (Rollout, [200, 200, 403, 200, 403]),
            (Rollback, [403, 403, 200, 403, 200]),
            (PostRollout, [200, 200, 200, 200, 200]),
            (Event, [200, 200, 200, 200, 200]),
        ];
        let f = freeze();
        for (hook, expected) in table {
            for (s, want) in [&ok, &hold, &rollback, &frozen, &frozen_rollback]
                .into_iter()
                .zip(expected)
            {
                let covering: Vec<&Freeze> = if s.frozen { vec![&f] } else { vec![] };
                let got = answer(hook, s, "the reason", &covering);
                assert_eq!(got.status(), want, "{} for {s:?}: {got:?}", hook.as_str());
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        let f = freeze();
        let frozen = status(Verdict::Ok, false, true, false);
        let Answer::Refuse { code, why } = answer(Hook::ConfirmRollout, &frozen, "r", &[&f]) else {
            panic!("a freeze closes the gate");
        };
        assert_eq!(code, "gate_closed");
        assert!(why.contains("freeze #4 (c/prod): INC-42"), "{why}");
        let hold = status(Verdict::Hold, false, false, false);
        let Answer::Refuse { code, why } = answer(
            Hook::ConfirmPromotion,
            &hold,
            "inconclusive error rate",
            &[],
        ) else {
            panic!("a hold closes the promotion gate");
        };
        assert_eq!(code, "gate_closed");
        assert_eq!(why, "the verdict is hold: inconclusive error rate");
        let Answer::Refuse { code, .. } = answer(Hook::Rollback, &hold, "r", &[]) else {
            panic!("a hold is no rollback");
        };
        assert_eq!(code, "no_rollback");
    }

    #[test]
    fn hooks_parse_from_their_names_and_nothing_else() {
        for hook in Hook::ALL {
            assert_eq!(Hook::parse(hook.as_str()), Some(hook));
            assert_eq!(
                serde_json::to_value(hook).unwrap(),
                json!(hook.as_str()),
                "serialised as named"
            );
        }
        for bad in ["", "Rollout", "confirm_rollout", "promote", "rollback "] {
            assert_eq!(Hook::parse(bad), None, "{bad:?}");
        }
        assert!(!Hook::Event.asks() && !Hook::PostRollout.asks() && Hook::Rollback.asks());
    }

    fn call(at: &str, hook: &str, answer: u16, decision: i64) -> Value {
        json!({"at": at, "hook": hook, "phase": "Progressing", "answer": answer,
               "verdict": "ok", "decision_id": decision})
    }

    #[test]
    fn repeated_calls_with_the_same_answer_are_counted_not_repeated() {
        let mut events = Vec::new();
        merge_events(&mut events, &[call("t1", "rollout", 200, 1)]);
        merge_events(&mut events, &[call("t2", "confirm-promotion", 403, 1)]);
        merge_events(&mut events, &[call("t3", "rollout", 200, 1)]);
        merge_events(&mut events, &[call("t4", "rollout", 200, 1)]);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["calls"], 3);
        assert_eq!(events[0]["at"], "t1");
        assert_eq!(events[0]["last_at"], "t4");
        // A new answer is a new entry.
        merge_events(&mut events, &[call("t5", "rollout", 403, 2)]);
        assert_eq!(events.len(), 3);
        assert_eq!(events[2]["at"], "t5");
    }

    #[test]
    fn controller_events_are_kept_once_and_the_timeline_is_bounded() {
        let event =
            json!({"at": "t1", "hook": "event", "type": "Normal", "message": "New revision"});
        let mut events = Vec::new();
        merge_events(&mut events, std::slice::from_ref(&event));
        merge_events(&mut events, std::slice::from_ref(&event));
        assert_eq!(events, [event]);
        for i in 0..(MAX_EVENTS + 10) {
            merge_events(
                &mut events,
                &[json!({"at": format!("t{i}"), "hook": "event", "type": "Normal", "message": i})],
            );
        }
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events.last().unwrap()["message"], MAX_EVENTS + 9);
    }
}
