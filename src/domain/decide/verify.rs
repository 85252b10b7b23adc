//! Escalation (M8, E1, the loop guard) and V1 verification after a rollback.

use chrono::{DateTime, Utc};

use super::rules::{exceeds, usable};
use super::{History, span};
use crate::domain::Signal;
use crate::domain::SignalKind;
use crate::domain::decision::{FiredRule, HoldReason, VerificationStatus, clock};
use crate::domain::policy::{Outcome, Policy, fmt_secs, fmt_value};

/// Why to escalate now: M8 (freeze rules), E1, and a loop guard past its limit.
pub(super) fn escalation(
    policy: &Policy,
    history: &History,
    fired: &[FiredRule],
    holds: &[HoldReason],
    now: DateTime<Utc>,
) -> Option<String> {
    let ids = |outcome: Outcome| {
        fired
            .iter()
            .filter(|f| f.outcome == outcome)
            .map(|f| f.rule_id.as_str())
            .collect::<Vec<_>>()
    };
    let mut escalations = Vec::new();
    let freezing = ids(Outcome::Freeze);
    if !freezing.is_empty() {
        escalations.push(format!(
            "{}: data corruption reported: freeze deployments and escalate",
            freezing.join(", ")
        ));
    }
    let rolling_back = ids(Outcome::Rollback);
    let recovered = history.recovered_at.filter(|r| *r <= now);
    if let Some(rolled_back) = history.last_rollback.filter(|t| *t <= now)
        && recovered.is_none_or(|r| r < rolled_back)
        && now - rolled_back >= span(policy.verification.escalate_after_secs)
        && !rolling_back.is_empty()
    {
        escalations.push(format!(
            "E1: the rollback at {} has not restored service within {} ({} still firing): \
             escalate to platform on-call and database owners",
            clock(rolled_back),
            fmt_secs(policy.verification.escalate_after_secs),
            rolling_back.join(", ")
        ));
    }
    for hold in holds {
        if let HoldReason::LoopGuard {
            rollbacks_in_window,
            limit,
            window_secs,
            ..
        } = hold
            && rollbacks_in_window >= limit
        {
            escalations.push(format!(
                "loop guard: {rollbacks_in_window} automatic rollbacks within {} (limit {limit}): \
                 escalate instead of rolling back again",
                fmt_secs(*window_secs)
            ));
        }
    }
    (!escalations.is_empty()).then(|| escalations.join("; "))
}

/// Kinds that are either happening or not: while one is active, service is not restored.
fn is_presence_kind(kind: SignalKind) -> bool {
    matches!(
        kind,
        SignalKind::HealthCheck
            | SignalKind::CrashLoop
            | SignalKind::Readiness
            | SignalKind::SloBurn
            | SignalKind::SlaViolation
            | SignalKind::DataCorruption
            | SignalKind::CanaryFailed
    )
}

/// V1, while the rolled-back target is watched.
pub(super) fn verification(
    policy: &Policy,
    history: &History,
    evidence: &[&Signal],
    now: DateTime<Utc>,
) -> Option<VerificationStatus> {
    let v = &policy.verification;
    let watch = span(v.watch_secs);
    let rolled_back = history
        .last_rollback
        .filter(|t| *t <= now && now - *t < watch)?;
    let mut failing = Vec::new();
    for s in evidence.iter().filter(|s| s.inconclusive.is_none()) {
        let below = match s.kind {
            SignalKind::ErrorRate => Some(v.error_rate_below),
            SignalKind::LatencyP95 => Some(v.latency_p95_below),
            SignalKind::Cpu => Some(v.cpu_below),
            SignalKind::Memory => Some(v.memory_below),
            _ => None,
        };
        match below {
            Some(limit) => {
                let Ok(value) = usable(s.kind, s.value, "value") else {
                    continue;
                };
                let baseline = usable(s.kind, s.baseline, "baseline")
                    .ok()
                    .filter(|b| *b > 0.0);
                let shown = |x: f64| fmt_value(s.kind, x);
                match baseline {
                    Some(b) if s.kind == SignalKind::LatencyP95 => {
                        if exceeds(value, b) {
                            failing.push(format!(
                                "latency_p95 {} > baseline {} ({})",
                                shown(value),
                                shown(b),
                                s.fingerprint
                            ));
                        }
                    }
                    _ => {
                        if value >= limit {
                            failing.push(format!(
                                "{} {} >= {} ({})",
                                s.kind.as_str(),
                                shown(value),
                                shown(limit),
                                s.fingerprint
                            ));
                        }
                    }
                }
            }
            None if is_presence_kind(s.kind) => {
                failing.push(format!(
                    "{} still active ({})",
                    s.kind.as_str(),
                    s.fingerprint
                ));
            }
            None => {}
        }
    }
    failing.dedup();
    Some(VerificationStatus {
        rolled_back_at: rolled_back,
        watch_until: rolled_back + watch,
        passing: failing.is_empty(),
        failing,
    })
}
