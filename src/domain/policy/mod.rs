//! The rollback decision matrix as data: every rule of both runbooks is a row of the
//! default [`Policy`], which deserialises from (and serialises back to) TOML, validates
//! with errors that name the offending rule and field, and prints as the table that
//! `rollwarden check-config` shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

use super::{Scope, SignalKind};

/// The version of the built-in policy, cited in every decision it makes.
pub const DEFAULT_POLICY_VERSION: &str = "runbooks-2";

/// The first built-in policy, kept by name so that `rollwarden replay --compare
/// runbooks-1` shows what changed: G4 without floor, duration or deploy condition, any
/// deploy in the correlation window blamed, and an outage forgotten when it ends.
pub const RUNBOOKS_1: &str = "runbooks-1";

/// The decision matrix and the knobs around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Cited in every decision ("rollwarden policy <version>").
    pub version: String,
    /// How far before a regression a deploy may have started and still be suspected
    /// (and how far before a signal a deploy counts for `after_deploy` rules).
    pub correlation_window_secs: u64,
    /// How soon after its suspect deploy completed a regression must start for that
    /// deploy to be blamed (15 min): "If the regression started immediately after a
    /// deploy or config change, proceed to rollback; otherwise continue investigation."
    /// Beyond it the verdict is `investigate`, naming the deploy as a candidate. Also
    /// the window of rules with `immediately_after_deploy`.
    pub blame_window_secs: u64,
    /// How long a regression that began while a dependency was degraded stays the
    /// outage's after the dependency recovered (10 min): only a target still seen
    /// regressing this long after the recovery may blame a deploy. A regression that
    /// began up to this long before the dependency's alert started counts as begun
    /// during the outage too (the dependency's alert may lag its onset).
    pub outage_grace_secs: u64,
    /// Per-environment settings, by the name of the target's `[environments]` entry.
    pub environments: BTreeMap<String, EnvironmentPolicy>,
    /// The circuit breaker on automatic rollbacks of one target.
    pub loop_guard: LoopGuard,
    /// What happens after a rollback: escalation (E1) and verification (V1).
    pub verification: Verification,
    /// The blast-radius policy of multi-region releases (`[policy.releases]`).
    pub releases: crate::domain::release::BlastRadius,
    /// The matrix, in the order it is shown and reported.
    pub rules: Vec<Rule>,
}

/// What one environment changes of the policy; absent keys keep the policy's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentPolicy {
    /// Overrides [`Policy::blame_window_secs`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blame_window_secs: Option<u64>,
    /// Overrides [`Policy::outage_grace_secs`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage_grace_secs: Option<u64>,
}

/// At most `limit` automatic rollbacks of a target inside `window_secs`, at least
/// `min_interval_secs` apart; reset when the target recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopGuard {
    /// Automatic rollbacks allowed per window (3).
    pub limit: u32,
    /// Minimum time between two automatic rollbacks (5 min).
    pub min_interval_secs: u64,
    /// The window the limit counts in (1 h).
    pub window_secs: u64,
}

/// E1 and V1: what is expected of a target after it was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verification {
    /// E1: a rollback that has not restored service after this long escalates (10 min).
    pub escalate_after_secs: u64,
    /// V1: how long a rolled-back target is watched (15 min; the runbook says 15–30).
    pub watch_secs: u64,
    /// V1: the error rate must fall below this ratio (0.001 = 0.1 %).
    pub error_rate_below: f64,
    /// V1: latency p95 must fall below this many seconds (0.2 s) — or to its baseline
    /// when the signal carries one.
    pub latency_p95_below: f64,
    /// V1: CPU must fall below this ratio (0.7 = 70 %).
    pub cpu_below: f64,
    /// V1: memory must fall below this ratio (0.7 = 70 %).
    pub memory_below: f64,
}

/// What a rule asks for when it fires, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Watch closely.
    Monitor,
    /// Someone investigates now.
    Investigate,
    /// Roll back (unless a hold says why not).
    Rollback,
    /// Stop all deployments and escalate (data corruption).
    Freeze,
}

impl Outcome {
    /// The lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Monitor => "monitor",
            Outcome::Investigate => "investigate",
            Outcome::Rollback => "rollback",
            Outcome::Freeze => "freeze",
        }
    }
}

/// One row of the matrix. Exactly one of `above`, `baseline_factor`, `baseline_plus`
/// and `present` is set; comparisons are strict (`>`: the runbooks say "exceeds").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The runbook's id (C1, M2, G4…), kept in decisions, evidence and tests.
    pub id: String,
    /// The runbook's own words.
    #[serde(default)]
    pub description: String,
    /// The signal kinds the rule looks at.
    pub kinds: Vec<SignalKind>,
    /// `canary` matches canary signals only; `stable` matches stable and whole-workload
    /// signals; `any` matches every signal.
    #[serde(default)]
    pub scope: Scope,
    /// Fires when the value exceeds this (in the kind's unit: 0.05 is 5 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires when the value exceeds this many times the signal's baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_factor: Option<f64>,
    /// Fires when the value exceeds the baseline plus this (same unit: 0.005 is 0.5
    /// percentage points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_plus: Option<f64>,
    /// Fires whenever such a signal is active (`true` is the only meaningful value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Absolute floors, per kind (in the kind's unit): the value must also exceed the
    /// floor of its kind (G4: `{ error_rate = 0.01 }`, M1's level, so that a multiple
    /// of a tiny baseline is not a regression).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub floor: BTreeMap<SignalKind, f64>,
    /// The signal must have been active this long.
    #[serde(default)]
    pub min_duration_secs: u64,
    /// The signal must have been observed this many times in a row.
    #[serde(default = "one")]
    pub min_observations: u32,
    /// Fires only when a deploy started before the signal, inside the correlation
    /// window (G1: "after a deploy or config change").
    #[serde(default)]
    pub after_deploy: bool,
    /// Fires only when the signal started within the blame window after a deploy
    /// completed (G4: a regression against the last known good version is one that a
    /// deploy has just brought).
    #[serde(default)]
    pub immediately_after_deploy: bool,
    /// What the rule asks for.
    pub outcome: Outcome,
}

fn one() -> u32 {
    1
}

/// A rule's condition, once validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// `value > x`.
    Above(f64),
    /// `value > factor × baseline`.
    BaselineFactor(f64),
    /// `value > baseline + delta`.
    BaselinePlus(f64),
    /// The signal is active.
    Present,
}

impl Condition {
    /// Whether the condition compares against the signal's baseline.
    pub fn is_relative(self) -> bool {
        matches!(
            self,
            Condition::BaselineFactor(_) | Condition::BaselinePlus(_)
        )
    }
}

/// A policy that cannot be used, naming the rule and field at fault.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PolicyError {
    #[error("policy: `version` must not be empty")]
    EmptyVersion,
    #[error("policy: `{field}` must be positive")]
    NotPositive { field: String },
    #[error("policy: `{field}` = {value} is not a ratio; ratios are fractions (0.7 is 70 %)")]
    NotARatioSetting { field: &'static str, value: f64 },
    #[error("policy: a rule has an empty `id`")]
    EmptyId,
    #[error("policy: the rule id `{id}` is used more than once")]
    DuplicateId { id: String },
    #[error(
        "policy rule `{id}`: no condition; set exactly one of `above`, `baseline_factor`, `baseline_plus`, `present`"
    )]
    NoCondition { id: String },
    #[error(
        "policy rule `{id}`: both `{first}` and `{second}` are set; a rule has exactly one condition"
    )]
    SeveralConditions {
        id: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("policy rule `{id}`: `{field}` must be a positive number, got {value}")]
    NotPositiveThreshold {
        id: String,
        field: &'static str,
        value: f64,
    },
    #[error(
        "policy rule `{id}`: `present` can only be true (leave it out to use another condition)"
    )]
    PresentFalse { id: String },
    #[error("policy rule `{id}`: `kinds` is empty")]
    NoKinds { id: String },
    #[error("policy rule `{id}`: kind `{kind}` cannot fire a rule: {why}")]
    UnusableKind {
        id: String,
        kind: &'static str,
        why: &'static str,
    },
    #[error(
        "policy rule `{id}`: `{field}` compares kinds of different units ({kinds}); split the rule"
    )]
    MixedUnits {
        id: String,
        field: &'static str,
        kinds: String,
    },
    #[error(
        "policy rule `{id}`: `{field}` = {value} is not a ratio; error_rate, cpu and memory are fractions (0.05 is 5 %)"
    )]
    NotARatio {
        id: String,
        field: &'static str,
        value: f64,
    },
    #[error("policy rule `{id}`: `min_observations` must be at least 1")]
    ZeroObservations { id: String },
    #[error(
        "policy rule `{id}`: `floor` needs a value condition (`above`, `baseline_factor` or `baseline_plus`)"
    )]
    FloorWithoutValue { id: String },
    #[error("policy rule `{id}`: `floor.{kind}` names a kind that is not in the rule's `kinds`")]
    FloorKind { id: String, kind: &'static str },
    #[error(
        "policy rule `{id}`: `floor.{kind}` must be a positive number (a fraction for ratio kinds: 0.01 is 1 %), got {value}"
    )]
    BadFloor {
        id: String,
        kind: &'static str,
        value: f64,
    },
    #[error(
        "policy: `{field}` = {value} is longer than `correlation_window_secs` = {window}: a deploy or outage outside the correlation window is not loaded"
    )]
    LongerThanWindow {
        field: String,
        value: u64,
        window: u64,
    },
}

/// The unit a kind's value is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A fraction in [0, 1].
    Ratio,
    Seconds,
    Count,
    /// No agreed unit (present-or-not kinds, custom).
    Other,
}

pub(crate) fn unit(kind: SignalKind) -> Unit {
    if kind.is_ratio() {
        Unit::Ratio
    } else {
        match kind {
            SignalKind::LatencyP95 => Unit::Seconds,
            SignalKind::CustomerReports => Unit::Count,
            _ => Unit::Other,
        }
    }
}

/// A number without float noise or trailing zeros: `0.5`, `20`, `1.5`.
pub(crate) fn fmt_num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// A value in its kind's unit: `6 %`, `0.45 s`, `25`.
pub(crate) fn fmt_value(kind: SignalKind, x: f64) -> String {
    match unit(kind) {
        Unit::Ratio => format!("{} %", fmt_num(x * 100.0)),
        Unit::Seconds => format!("{} s", fmt_num(x)),
        Unit::Count | Unit::Other => fmt_num(x),
    }
}

/// A duration the way people say it: `90 s`, `3 min`, `2 h`.
pub(crate) fn fmt_secs(secs: u64) -> String {
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

impl Default for LoopGuard {
    fn default() -> Self {
        Self {
            limit: 3,
            min_interval_secs: 300,
            window_secs: 3600,
        }
    }
}

impl Default for Verification {
    fn default() -> Self {
        Self {
            escalate_after_secs: 600,
            watch_secs: 900,
            error_rate_below: 0.001,
            latency_p95_below: 0.2,
            cpu_below: 0.7,
            memory_below: 0.7,
        }
    }
}

impl Rule {
    /// Whether the rule compares against the signal's baseline.
    pub fn is_relative(&self) -> bool {
        self.condition().is_ok_and(Condition::is_relative)
    }

    /// The rule's single condition, or why it has not exactly one.
    pub fn condition(&self) -> Result<Condition, PolicyError> {
        let set: Vec<(&'static str, Condition)> = [
            ("above", self.above.map(Condition::Above)),
            (
                "baseline_factor",
                self.baseline_factor.map(Condition::BaselineFactor),
            ),
            (
                "baseline_plus",
                self.baseline_plus.map(Condition::BaselinePlus),
            ),
            ("present", self.present.map(|_| Condition::Present)),
        ]
        .into_iter()
        .filter_map(|(field, condition)| condition.map(|c| (field, c)))
        .collect();
        match set.as_slice() {
            [] => Err(PolicyError::NoCondition {
                id: self.id.clone(),
            }),
            [(_, condition)] => Ok(*condition),
            [(first, _), (second, _), ..] => Err(PolicyError::SeveralConditions {
                id: self.id.clone(),
                first,
                second,
            }),
        }
    }

    /// Whether the rule looks at signals of this kind and scope.
    pub fn matches(&self, kind: SignalKind, scope: Scope) -> bool {
        let scope_matches = match self.scope {
            Scope::Any => true,
            Scope::Canary => scope == Scope::Canary,
            Scope::Stable => matches!(scope, Scope::Stable | Scope::Any),
        };
        scope_matches && self.kinds.contains(&kind)
    }

    /// The condition in words: `> baseline + 0.5 pp`, `> 5 %`, `> 3 × baseline`,
    /// `> 20 in 5 min`, `any`.
    pub fn condition_words(&self) -> String {
        let unit = self.kinds.first().map_or(Unit::Other, |kind| unit(*kind));
        let mut words = match self.condition() {
            Ok(Condition::Above(x)) => match unit {
                Unit::Ratio => format!("> {} %", fmt_num(x * 100.0)),
                Unit::Seconds => format!("> {} s", fmt_num(x)),
                Unit::Count if self.kinds == [SignalKind::CustomerReports] => {
                    // The signal's value is the count of reports in the last 5 minutes.
                    format!("> {} in 5 min", fmt_num(x))
                }
                Unit::Count | Unit::Other => format!("> {}", fmt_num(x)),
            },
            Ok(Condition::BaselineFactor(x)) => format!("> {} × baseline", fmt_num(x)),
            Ok(Condition::BaselinePlus(x)) => match unit {
                Unit::Ratio => format!("> baseline + {} pp", fmt_num(x * 100.0)),
                Unit::Seconds => format!("> baseline + {} s", fmt_num(x)),
                Unit::Count | Unit::Other => format!("> baseline + {}", fmt_num(x)),
            },
            Ok(Condition::Present) => "any".to_string(),
            Err(PolicyError::NoCondition { .. }) => "(no condition)".to_string(),
            Err(_) => "(several conditions)".to_string(),
        };
        for (kind, floor) in &self.floor {
            words.push_str(&format!(" and > {}", fmt_value(*kind, *floor)));
            if self.kinds.len() > 1 {
                words.push_str(&format!(" ({})", kind.as_str()));
            }
        }
        if self.immediately_after_deploy {
            words.push_str(" right after a deploy");
        } else if self.after_deploy {
            words.push_str(" after a deploy");
        }
        words
    }

    /// How long and how often the condition must hold: `5 min`, `3 obs`, or `-`.
    fn duration_words(&self) -> String {
        let mut parts = Vec::new();
        if self.min_duration_secs > 0 {
            parts.push(fmt_secs(self.min_duration_secs));
        }
        if self.min_observations > 1 {
            parts.push(format!("{} obs", self.min_observations));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }
}

impl Policy {
    /// The blame window for a target of this environment.
    pub fn blame_window_secs_for(&self, environment: Option<&str>) -> u64 {
        self.environment(environment)
            .and_then(|e| e.blame_window_secs)
            .unwrap_or(self.blame_window_secs)
    }

    /// The outage grace for a target of this environment.
    pub fn outage_grace_secs_for(&self, environment: Option<&str>) -> u64 {
        self.environment(environment)
            .and_then(|e| e.outage_grace_secs)
            .unwrap_or(self.outage_grace_secs)
    }

    fn environment(&self, environment: Option<&str>) -> Option<&EnvironmentPolicy> {
        environment.and_then(|name| self.environments.get(name))
    }
}

impl Policy {
    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    /// The effective policy as a fixed-width table: one row per rule, then E1 and V1.
    pub fn table(&self) -> String {
        let v = &self.verification;
        let lg = &self.loop_guard;
        let mut rows: Vec<[String; 6]> =
            vec![["ID", "KINDS", "SCOPE", "CONDITION", "FOR", "OUTCOME"].map(String::from)];
        for rule in &self.rules {
            rows.push([
                rule.id.clone(),
                rule.kinds
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
                rule.scope.as_str().into(),
                rule.condition_words(),
                rule.duration_words(),
                rule.outcome.as_str().into(),
            ]);
        }
        rows.push([
            "E1".into(),
            "after a rollback".into(),
            "any".into(),
            "a rollback rule still fires".into(),
            fmt_secs(v.escalate_after_secs),
            "escalate".into(),
        ]);
        rows.push([
            "V1".into(),
            "error_rate|latency_p95|cpu|memory".into(),
            "any".into(),
            format!(
                "< {}, < {} or <= baseline, < {}, < {}",
                fmt_value(SignalKind::ErrorRate, v.error_rate_below),
                fmt_value(SignalKind::LatencyP95, v.latency_p95_below),
                fmt_value(SignalKind::Cpu, v.cpu_below),
                fmt_value(SignalKind::Memory, v.memory_below),
            ),
            format!("watch {}", fmt_secs(v.watch_secs)),
            "close or escalate".into(),
        ]);
        let mut widths = [0usize; 6];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = format!(
            "policy {}: correlation window {}; blame window {}; outage grace {}; loop guard: at most {} automatic rollbacks per {}, at least {} apart\n",
            self.version,
            fmt_secs(self.correlation_window_secs),
            fmt_secs(self.blame_window_secs),
            fmt_secs(self.outage_grace_secs),
            lg.limit,
            fmt_secs(lg.window_secs),
            fmt_secs(lg.min_interval_secs),
        );
        for name in self.environments.keys() {
            out.push_str(&format!(
                "environment {name}: blame window {}; outage grace {}\n",
                fmt_secs(self.blame_window_secs_for(Some(name))),
                fmt_secs(self.outage_grace_secs_for(Some(name))),
            ));
        }
        out.push('\n');
        for row in &rows {
            let line = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

mod builtin;
#[cfg(test)]
mod tests;
mod validate;
