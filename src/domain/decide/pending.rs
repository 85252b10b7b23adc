//! Pending rules: an active signal meets a rule's condition, but the rule does not fire
//! yet (the signal has not lasted or been observed long enough, or no deploy preceded
//! it). A pending rule makes the verdict at least `monitor`, never `ok`: a health check
//! that fails for two minutes is not a healthy target.

use chrono::{DateTime, Utc};

use super::rules::{Assessment, Windows, assess, gates_pass};
use super::span;
use super::suspect::immediately_after;
use crate::domain::decision::{FiredRule, PendingRule};
use crate::domain::policy::{Condition, Rule, fmt_secs};
use crate::domain::{DeployRecord, Signal, SignalSource};

/// What a rule still waits for on one signal.
struct Wait<'a> {
    signal: &'a Signal,
    /// When time alone makes the rule fire.
    fires_at: Option<DateTime<Utc>>,
    words: String,
}

fn wait<'a>(
    rule: &Rule,
    s: &'a Signal,
    deploys: &[&DeployRecord],
    windows: Windows,
    now: DateTime<Utc>,
) -> Wait<'a> {
    let window = windows.correlation;
    let mut missing = Vec::new();
    let due = s.started_at + span(rule.min_duration_secs);
    if due > now {
        missing.push(format!(
            "{} active (it has been {})",
            fmt_secs(rule.min_duration_secs),
            fmt_secs(u64::try_from((now - s.started_at).num_seconds()).unwrap_or(0))
        ));
    }
    let observations = rule.min_observations.saturating_sub(s.observations);
    if observations > 0 {
        missing.push(format!(
            "{} observations in a row ({} so far)",
            rule.min_observations, s.observations
        ));
    }
    let deploy_missing = rule.after_deploy
        && !deploys.iter().any(|d| {
            d.deploy.started_at <= s.started_at && s.started_at - d.deploy.started_at <= window
        });
    if deploy_missing {
        missing.push(format!(
            "a deploy in the {} before the signal (none started)",
            fmt_secs(u64::try_from(window.num_seconds()).unwrap_or(0))
        ));
    }
    let recent_deploy_missing = rule.immediately_after_deploy
        && !deploys.iter().any(|d| {
            d.deploy.started_at <= s.started_at && immediately_after(d, s.started_at, windows.blame)
        });
    if recent_deploy_missing {
        missing.push(format!(
            "a deploy completed at most {} before the signal (the blame window)",
            fmt_secs(u64::try_from(windows.blame.num_seconds()).unwrap_or(0))
        ));
    }
    let deploy_missing = deploy_missing || recent_deploy_missing;
    if missing.is_empty() {
        missing.push("its other conditions".into());
    }
    Wait {
        signal: s,
        fires_at: (observations == 0 && !deploy_missing && due > now).then_some(due),
        words: missing.join(" and "),
    }
}

/// The rules that an active signal meets but that do not fire yet, in policy order.
pub(super) fn pending_rules(
    rules: &[(&Rule, Condition)],
    evidence: &[&Signal],
    deploys: &[&DeployRecord],
    fired: &[FiredRule],
    windows: Windows,
    now: DateTime<Utc>,
) -> Vec<PendingRule> {
    let mut pending = Vec::new();
    for (rule, condition) in rules {
        if fired.iter().any(|f| f.rule_id == rule.id) {
            continue;
        }
        let waits: Vec<Wait> = evidence
            .iter()
            .copied()
            .filter(|s| rule.matches(s.kind, s.scope))
            .filter(|s| matches!(assess(rule, *condition, s), Assessment::Exceeds(_)))
            .filter(|s| !gates_pass(rule, s, deploys, windows, now))
            .map(|s| wait(rule, s, deploys, windows, now))
            .collect();
        // The one to fire first: a known time before none, then the earliest signal.
        let Some(first) = waits.iter().min_by(|a, b| {
            (a.fires_at.is_none(), a.fires_at, a.signal.started_at).cmp(&(
                b.fires_at.is_none(),
                b.fires_at,
                b.signal.started_at,
            ))
        }) else {
            continue;
        };
        let mut fingerprints: Vec<String> =
            waits.iter().map(|w| w.signal.fingerprint.clone()).collect();
        fingerprints.sort();
        fingerprints.dedup();
        let mut sources: Vec<SignalSource> = waits.iter().map(|w| w.signal.source).collect();
        sources.sort();
        sources.dedup();
        pending.push(PendingRule {
            rule_id: rule.id.clone(),
            outcome: rule.outcome,
            kind: first.signal.kind,
            fingerprints,
            sources,
            started_at: waits
                .iter()
                .map(|w| w.signal.started_at)
                .min()
                .unwrap_or(first.signal.started_at),
            fires_at: first.fires_at,
            waiting_for: first.words.clone(),
        });
    }
    pending
}

/// A pending rule in a sentence: `G1 (health_check) fires at 2026-08-22 10:33:00 UTC,
/// in 2 min, if its signal stays active`.
pub(super) fn pending_words(p: &PendingRule, now: DateTime<Utc>) -> String {
    match p.fires_at {
        Some(at) => format!(
            "{} ({}) fires at {}, in {}, if its signal stays active",
            p.rule_id,
            p.kind.as_str(),
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            fmt_secs(u64::try_from((at - now).num_seconds()).unwrap_or(0))
        ),
        None => format!(
            "{} ({}) does not fire yet: it needs {}",
            p.rule_id,
            p.kind.as_str(),
            p.waiting_for
        ),
    }
}
