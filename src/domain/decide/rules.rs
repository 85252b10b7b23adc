//! The rules: whether a signal can be assessed, whether a rule fires on it, and the
//! signals no rule can assess (inconclusive evidence).

use std::borrow::Cow;

use chrono::{DateTime, Duration, Utc};

use super::suspect::immediately_after;
use super::{cmp_f64, span};
use crate::domain::decision::{FiredRule, HoldReason, MAX_LISTED_FINGERPRINTS};
use crate::domain::policy::{Condition, Outcome, Rule};
use crate::domain::{DeployRecord, Signal, SignalKind, SignalSource};

/// `v > t`, where a difference within float noise is not "more".
pub(super) fn exceeds(value: f64, threshold: f64) -> bool {
    value - threshold > 1e-9 * threshold.abs().max(1.0)
}

/// A value or baseline that can be compared, or why not.
pub(super) fn usable(
    kind: SignalKind,
    x: Option<f64>,
    what: &'static str,
) -> Result<f64, Cow<'static, str>> {
    match x {
        // The common case (an alert without a value), assessed for every rule of every
        // signal of every evaluation: no allocation.
        None if what == "value" => Err(Cow::Borrowed("no value")),
        None if what == "baseline" => Err(Cow::Borrowed("no baseline")),
        None => Err(format!("no {what}").into()),
        Some(x) if !x.is_finite() => Err(format!("the {what} is not a number").into()),
        Some(x) if x < 0.0 => Err(format!("the {what} {x} is negative").into()),
        Some(x) if kind.is_ratio() && x > 1.0 => {
            Err(format!("the {what} {x} is not a ratio (a percentage sent as a ratio?)").into())
        }
        Some(x) => Ok(x),
    }
}

pub(super) enum Assessment<'a> {
    /// The condition holds; the effective threshold, for value rules.
    Exceeds(Option<f64>),
    Within,
    Unassessable(Cow<'a, str>),
}

pub(super) fn assess<'a>(rule: &Rule, condition: Condition, s: &'a Signal) -> Assessment<'a> {
    if let Some(why) = &s.inconclusive {
        return Assessment::Unassessable(Cow::Borrowed(why));
    }
    let value = || usable(s.kind, s.value, "value");
    let baseline = || usable(s.kind, s.baseline, "baseline");
    let compared = match condition {
        Condition::Present => return Assessment::Exceeds(None),
        Condition::Above(x) => value().map(|v| (v, x)),
        Condition::BaselineFactor(factor) => value().and_then(|v| {
            baseline().and_then(|b| {
                if b > 0.0 {
                    Ok((v, to_places(factor * b, places(factor) + places(b))))
                } else {
                    Err(Cow::Borrowed(
                        "a baseline of 0 has no multiple to compare with",
                    ))
                }
            })
        }),
        Condition::BaselinePlus(delta) => value().and_then(|v| {
            baseline().map(|b| (v, to_places(b + delta, places(b).max(places(delta)))))
        }),
    };
    // The rule's absolute floor for the kind, if any, must be passed as well.
    let floor = rule.floor.get(&s.kind).copied();
    match compared {
        Ok((v, threshold))
            if exceeds(v, threshold) && floor.is_none_or(|floor| exceeds(v, floor)) =>
        {
            Assessment::Exceeds(Some(threshold))
        }
        Ok(_) => Assessment::Within,
        Err(why) => Assessment::Unassessable(why),
    }
}

/// The decimal places of `x` as configured or observed (its shortest form): 0.005 → 3.
fn places(x: f64) -> usize {
    let shown = x.to_string();
    shown
        .split_once('.')
        .map_or(0, |(_, decimals)| decimals.len())
}

/// `x` rounded to `places` decimals: a threshold computed from a baseline and a
/// setting has no more precision than they had, and no float noise
/// (`0.1 + 0.2` is 0.3, not `0.30000000000000004`).
fn to_places(x: f64, places: usize) -> f64 {
    if places > 15 || !x.is_finite() {
        return x;
    }
    format!("{x:.places$}").parse().unwrap_or(x)
}

/// The windows a rule's deploy conditions look back over.
#[derive(Clone, Copy)]
pub(super) struct Windows {
    /// `after_deploy`: from the deploy's start (the correlation window).
    pub(super) correlation: Duration,
    /// `immediately_after_deploy`: from the deploy's completion (the blame window).
    pub(super) blame: Duration,
}

/// Duration, observations and, for `after_deploy` and `immediately_after_deploy`
/// rules, a deploy before the signal.
pub(super) fn gates_pass(
    rule: &Rule,
    s: &Signal,
    deploys: &[&DeployRecord],
    windows: Windows,
    now: DateTime<Utc>,
) -> bool {
    let before = |d: &&&DeployRecord| d.deploy.started_at <= s.started_at;
    now - s.started_at >= span(rule.min_duration_secs)
        && s.observations >= rule.min_observations
        && (!rule.after_deploy
            || deploys
                .iter()
                .filter(before)
                .any(|d| s.started_at - d.deploy.started_at <= windows.correlation))
        && (!rule.immediately_after_deploy
            || deploys
                .iter()
                .filter(before)
                .any(|d| immediately_after(d, s.started_at, windows.blame)))
}

struct Hit<'a> {
    signal: &'a Signal,
    threshold: Option<f64>,
}

impl Hit<'_> {
    /// How far over the threshold: the ratio for value rules, the value otherwise.
    fn strength(&self) -> Option<f64> {
        match (self.signal.value, self.threshold) {
            (Some(v), Some(t)) if t > 0.0 => Some(v / t),
            (v, _) => v.filter(|v| v.is_finite()),
        }
    }
}

pub(super) fn fire_rules(
    rules: &[(&Rule, Condition)],
    evidence: &[&Signal],
    deploys: &[&DeployRecord],
    windows: Windows,
    now: DateTime<Utc>,
) -> Vec<FiredRule> {
    let mut fired = Vec::new();
    for (rule, condition) in rules {
        let hits: Vec<Hit> = evidence
            .iter()
            .filter(|s| rule.matches(s.kind, s.scope))
            .filter(|s| gates_pass(rule, s, deploys, windows, now))
            .filter_map(|s| match assess(rule, *condition, s) {
                Assessment::Exceeds(threshold) => Some(Hit {
                    signal: s,
                    threshold,
                }),
                Assessment::Within | Assessment::Unassessable(_) => None,
            })
            .collect();
        // The furthest over; among equals the earliest, then the smallest fingerprint.
        let Some(top) = hits.iter().max_by(|a, b| {
            cmp_f64(a.strength(), b.strength())
                .then(b.signal.started_at.cmp(&a.signal.started_at))
                .then_with(|| b.signal.fingerprint.cmp(&a.signal.fingerprint))
        }) else {
            continue;
        };
        let started_at = hits
            .iter()
            .map(|h| h.signal.started_at)
            .min()
            .unwrap_or(top.signal.started_at);
        let mut kinds: Vec<SignalKind> = hits.iter().map(|h| h.signal.kind).collect();
        kinds.sort();
        kinds.dedup();
        let mut fingerprints: Vec<String> =
            hits.iter().map(|h| h.signal.fingerprint.clone()).collect();
        fingerprints.sort();
        fingerprints.dedup();
        let mut sources: Vec<SignalSource> = hits.iter().map(|h| h.signal.source).collect();
        sources.sort();
        sources.dedup();
        fired.push(FiredRule {
            rule_id: rule.id.clone(),
            description: rule.description.clone(),
            kind: top.signal.kind,
            kinds,
            scope: rule.scope,
            condition: rule.condition_words(),
            threshold: top.threshold,
            observed: top.signal.value,
            baseline: top.signal.baseline,
            duration_secs: u64::try_from((now - started_at).num_seconds()).ok(),
            outcome: rule.outcome,
            fingerprints,
            sources,
            started_at,
        });
    }
    fired
}

/// The active signals of one kind that no rule can assess, for one reason.
struct Unassessed<'a> {
    kind: SignalKind,
    why: Cow<'a, str>,
    first: &'a Signal,
    signals: u32,
    fingerprints: Vec<String>,
    last: &'a Signal,
}

/// The active signals that rollback or freeze rules watch but no rule can assess: one
/// hold per kind and reason, in the order of their earliest signal. `evidence` is
/// sorted by start: a target with a thousand alerts without a value has one hold that
/// counts them and lists the first few, not a thousand.
pub(super) fn inconclusive_signals(
    rules: &[(&Rule, Condition)],
    evidence: &[&Signal],
) -> Vec<HoldReason> {
    let mut groups: Vec<Unassessed> = Vec::new();
    'signals: for s in evidence {
        let matching = || {
            rules
                .iter()
                .filter(|(rule, _)| rule.matches(s.kind, s.scope))
        };
        if !matching().any(|(rule, _)| rule.outcome >= Outcome::Rollback) {
            continue;
        }
        let mut whys: Vec<Cow<'_, str>> = Vec::new();
        for (rule, condition) in matching() {
            match assess(rule, *condition, s) {
                Assessment::Unassessable(why) => {
                    if !whys.contains(&why) {
                        whys.push(why);
                    }
                }
                Assessment::Exceeds(_) | Assessment::Within => continue 'signals,
            }
        }
        let why = match whys.len() {
            1 => whys.swap_remove(0),
            _ => Cow::Owned(whys.join(", ")),
        };
        match groups.iter_mut().find(|g| g.kind == s.kind && g.why == why) {
            // The same signal twice (same fingerprint and start) counts once.
            Some(g) if g.last.fingerprint == s.fingerprint && g.last.started_at == s.started_at => {
            }
            Some(g) => {
                g.signals = g.signals.saturating_add(1);
                if g.fingerprints.len() < MAX_LISTED_FINGERPRINTS {
                    g.fingerprints.push(s.fingerprint.clone());
                }
                g.last = s;
            }
            None => groups.push(Unassessed {
                kind: s.kind,
                why,
                first: s,
                signals: 1,
                fingerprints: vec![s.fingerprint.clone()],
                last: s,
            }),
        }
    }
    groups
        .into_iter()
        .map(|g| HoldReason::Inconclusive {
            kind: g.kind,
            fingerprint: g.first.fingerprint.clone(),
            why: g.why.into_owned(),
            since: Some(g.first.started_at),
            signals: g.signals,
            fingerprints: g.fingerprints,
        })
        .collect()
}
