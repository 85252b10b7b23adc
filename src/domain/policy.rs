//! The rollback decision matrix as data: every rule of both runbooks is a row of the
//! default [`Policy`], which deserialises from (and serialises back to) TOML, validates
//! with errors that name the offending rule and field, and prints as the table that
//! `rollwarden check-config` shows.

use std::collections::{BTreeMap, BTreeSet};

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
    fn new(id: &str, description: &str, kinds: &[SignalKind], outcome: Outcome) -> Self {
        Self {
            id: id.into(),
            description: description.into(),
            kinds: kinds.to_vec(),
            scope: Scope::Any,
            above: None,
            baseline_factor: None,
            baseline_plus: None,
            present: None,
            floor: BTreeMap::new(),
            min_duration_secs: 0,
            min_observations: 1,
            after_deploy: false,
            immediately_after_deploy: false,
            outcome,
        }
    }

    fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    fn above(mut self, x: f64) -> Self {
        self.above = Some(x);
        self
    }

    fn factor(mut self, x: f64) -> Self {
        self.baseline_factor = Some(x);
        self
    }

    fn plus(mut self, x: f64) -> Self {
        self.baseline_plus = Some(x);
        self
    }

    fn present(mut self) -> Self {
        self.present = Some(true);
        self
    }

    fn lasting(mut self, secs: u64) -> Self {
        self.min_duration_secs = secs;
        self
    }

    fn floor(mut self, kind: SignalKind, x: f64) -> Self {
        self.floor.insert(kind, x);
        self
    }

    fn immediately_after_deploy(mut self) -> Self {
        self.immediately_after_deploy = true;
        self
    }

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

    fn validate(&self) -> Result<(), PolicyError> {
        let id = || self.id.clone();
        if self.id.trim().is_empty() {
            return Err(PolicyError::EmptyId);
        }
        if self.kinds.is_empty() {
            return Err(PolicyError::NoKinds { id: id() });
        }
        if let Some(kind) = self
            .kinds
            .iter()
            .find(|kind| **kind == SignalKind::Dependency)
        {
            return Err(PolicyError::UnusableKind {
                id: id(),
                kind: kind.as_str(),
                why: "a degraded dependency holds a rollback (H2), it never causes one",
            });
        }
        if self.min_observations == 0 {
            return Err(PolicyError::ZeroObservations { id: id() });
        }
        for (kind, floor) in &self.floor {
            if !self.kinds.contains(kind) {
                return Err(PolicyError::FloorKind {
                    id: id(),
                    kind: kind.as_str(),
                });
            }
            if !(floor.is_finite() && *floor > 0.0 && (!kind.is_ratio() || *floor < 1.0)) {
                return Err(PolicyError::BadFloor {
                    id: id(),
                    kind: kind.as_str(),
                    value: *floor,
                });
            }
        }
        let (field, threshold) = match self.condition()? {
            Condition::Present => {
                if self.present == Some(false) {
                    return Err(PolicyError::PresentFalse { id: id() });
                }
                if !self.floor.is_empty() {
                    return Err(PolicyError::FloorWithoutValue { id: id() });
                }
                return Ok(());
            }
            Condition::Above(x) => ("above", x),
            Condition::BaselineFactor(x) => ("baseline_factor", x),
            Condition::BaselinePlus(x) => ("baseline_plus", x),
        };
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(PolicyError::NotPositiveThreshold {
                id: id(),
                field,
                value: threshold,
            });
        }
        if field != "baseline_factor" {
            // An absolute number or a difference means something only in one unit.
            let units: BTreeSet<&str> = self
                .kinds
                .iter()
                .map(|kind| match unit(*kind) {
                    Unit::Ratio => "ratio",
                    Unit::Seconds => "seconds",
                    Unit::Count => "count",
                    Unit::Other => "other",
                })
                .collect();
            if units.len() > 1 {
                return Err(PolicyError::MixedUnits {
                    id: id(),
                    field,
                    kinds: self
                        .kinds
                        .iter()
                        .map(|kind| kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            if self.kinds.iter().all(|kind| kind.is_ratio()) && threshold >= 1.0 {
                return Err(PolicyError::NotARatio {
                    id: id(),
                    field,
                    value: threshold,
                });
            }
        }
        Ok(())
    }
}

impl Default for Policy {
    /// The two runbooks, rule for rule (see RUNBOOK-FACTS.md).
    fn default() -> Self {
        use Outcome::{Freeze, Investigate, Monitor, Rollback};
        use SignalKind as K;
        let rules = vec![
            Rule::new(
                "C1",
                "Canary auto-rollback: error rate exceeds baseline + 0.5%",
                &[K::ErrorRate],
                Rollback,
            )
            .scope(Scope::Canary)
            .plus(0.005),
            Rule::new(
                "C2",
                "Canary auto-rollback: latency P95 exceeds baseline × 1.5",
                &[K::LatencyP95],
                Rollback,
            )
            .scope(Scope::Canary)
            .factor(1.5),
            Rule::new(
                "C3",
                "Canary auto-rollback: CPU usage exceeds 90%",
                &[K::Cpu],
                Rollback,
            )
            .scope(Scope::Canary)
            .above(0.9),
            Rule::new(
                "C4",
                "Canary auto-rollback: memory usage exceeds 90%",
                &[K::Memory],
                Rollback,
            )
            .scope(Scope::Canary)
            .above(0.9),
            Rule::new(
                "M1",
                "Error Rate > 1%: Monitor closely",
                &[K::ErrorRate],
                Monitor,
            )
            .above(0.01),
            Rule::new(
                "M2",
                "Error Rate > 5%: Initiate rollback",
                &[K::ErrorRate],
                Rollback,
            )
            .above(0.05),
            Rule::new(
                "M3",
                "Latency P95 > 2x baseline: Monitor closely",
                &[K::LatencyP95],
                Monitor,
            )
            .factor(2.0),
            Rule::new(
                "M4",
                "Latency P95 > 3x baseline: Initiate rollback",
                &[K::LatencyP95],
                Rollback,
            )
            .factor(3.0),
            Rule::new(
                "M5",
                "Customer Reports > 5 in 5 min: Investigate immediately",
                &[K::CustomerReports],
                Investigate,
            )
            .above(5.0),
            Rule::new(
                "M6",
                "Customer Reports > 20 in 5 min: Initiate rollback",
                &[K::CustomerReports],
                Rollback,
            )
            .above(20.0),
            Rule::new(
                "M7",
                "SLA Violation, any: Initiate rollback",
                &[K::SlaViolation],
                Rollback,
            )
            .present(),
            Rule::new(
                "M8",
                "Data Corruption, any: Stop all deployments, escalate",
                &[K::DataCorruption],
                Freeze,
            )
            .present(),
            Rule {
                after_deploy: true,
                ..Rule::new(
                    "G1",
                    "Health checks fail for >3 minutes after a deploy or config change.",
                    &[K::HealthCheck],
                    Rollback,
                )
                .present()
                .lasting(180)
            },
            Rule::new(
                "G2",
                "Error rate exceeds the SLO breach threshold for >5 minutes with no clear \
                 mitigation. (Set `above` to your SLO's breach threshold.)",
                &[K::ErrorRate],
                Rollback,
            )
            .above(0.01)
            .lasting(300),
            Rule::new(
                "G3",
                "Canary or stable pods are crash-looping, failing readiness probes, or \
                 violating SLO burn alerts.",
                &[K::CrashLoop, K::Readiness, K::SloBurn],
                Rollback,
            )
            .present(),
            Rule::new(
                "G4",
                "External dependencies are healthy, but errors/latency regress relative to \
                 the last known good version.",
                &[K::ErrorRate, K::LatencyP95],
                Rollback,
            )
            .scope(Scope::Stable)
            // 3×, like M4: a lower factor would roll back where the matrix (M3) says
            // "monitor closely".
            .factor(3.0)
            // A multiple of a tiny baseline is no regression: an error rate must also
            // be past M1's 1 %, and even there G4 needs the two conditions below, so that
            // it never turns M1's "monitor closely" into a rollback by itself.
            .floor(K::ErrorRate, 0.01)
            // G1's "for >3 minutes": a flapping alert is not a regression.
            .lasting(180)
            // "relative to the last known good version": one that a deploy has just
            // replaced.
            .immediately_after_deploy(),
        ];
        Self {
            version: DEFAULT_POLICY_VERSION.into(),
            correlation_window_secs: 7200,
            blame_window_secs: 900,
            outage_grace_secs: 600,
            environments: BTreeMap::new(),
            loop_guard: LoopGuard::default(),
            verification: Verification::default(),
            rules,
        }
    }
}

impl Policy {
    /// The built-in policy of this name: `runbooks-2` (the default) or `runbooks-1`.
    pub fn builtin(name: &str) -> Option<Policy> {
        match name {
            DEFAULT_POLICY_VERSION => Some(Policy::default()),
            RUNBOOKS_1 => Some(Policy::runbooks_1()),
            _ => None,
        }
    }

    /// The names [`Policy::builtin`] knows.
    pub const BUILTIN: [&'static str; 2] = [RUNBOOKS_1, DEFAULT_POLICY_VERSION];

    /// The first built-in policy, as it decided before `runbooks-2`: G4 fires on any
    /// stable error rate or latency over 3× its baseline, any deploy in the correlation
    /// window is blamed, and a recovered dependency holds nothing.
    pub fn runbooks_1() -> Policy {
        let mut policy = Policy {
            version: RUNBOOKS_1.into(),
            outage_grace_secs: 0,
            ..Policy::default()
        };
        policy.blame_window_secs = policy.correlation_window_secs;
        if let Some(g4) = policy.rules.iter_mut().find(|r| r.id == "G4") {
            g4.floor.clear();
            g4.min_duration_secs = 0;
            g4.immediately_after_deploy = false;
        }
        policy
    }

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
    /// Checks that every rule can be evaluated, naming the first rule and field that
    /// cannot. Unknown fields and unknown kinds are already refused by deserialisation.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.version.trim().is_empty() {
            return Err(PolicyError::EmptyVersion);
        }
        let positive = [
            ("correlation_window_secs", self.correlation_window_secs),
            ("loop_guard.limit", u64::from(self.loop_guard.limit)),
            ("loop_guard.window_secs", self.loop_guard.window_secs),
            (
                "verification.escalate_after_secs",
                self.verification.escalate_after_secs,
            ),
            ("verification.watch_secs", self.verification.watch_secs),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(PolicyError::NotPositive {
                    field: field.into(),
                });
            }
        }
        let windows = std::iter::once((
            "blame_window_secs".to_string(),
            Some(self.blame_window_secs),
        ))
        .chain(std::iter::once((
            "outage_grace_secs".to_string(),
            Some(self.outage_grace_secs),
        )))
        .chain(self.environments.iter().flat_map(|(name, e)| {
            [
                (
                    format!("environments.{name}.blame_window_secs"),
                    e.blame_window_secs,
                ),
                (
                    format!("environments.{name}.outage_grace_secs"),
                    e.outage_grace_secs,
                ),
            ]
        }));
        for (field, value) in windows {
            let Some(value) = value else { continue };
            if field.ends_with("blame_window_secs") && value == 0 {
                return Err(PolicyError::NotPositive { field });
            }
            if value > self.correlation_window_secs {
                return Err(PolicyError::LongerThanWindow {
                    field,
                    value,
                    window: self.correlation_window_secs,
                });
            }
        }
        let v = &self.verification;
        let thresholds = [
            ("verification.error_rate_below", v.error_rate_below, true),
            ("verification.latency_p95_below", v.latency_p95_below, false),
            ("verification.cpu_below", v.cpu_below, true),
            ("verification.memory_below", v.memory_below, true),
        ];
        for (field, value, ratio) in thresholds {
            if !(value.is_finite() && value > 0.0) {
                return Err(PolicyError::NotPositive {
                    field: field.into(),
                });
            }
            if ratio && value > 1.0 {
                return Err(PolicyError::NotARatioSetting { field, value });
            }
        }
        let mut seen = BTreeSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !seen.insert(rule.id.as_str()) {
                return Err(PolicyError::DuplicateId {
                    id: rule.id.clone(),
                });
            }
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_has_every_runbook_rule_in_order() {
        let policy = Policy::default();
        policy.validate().unwrap();
        let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "C1", "C2", "C3", "C4", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "G1", "G2",
                "G3", "G4"
            ]
        );
        assert_eq!(policy.version, "runbooks-2");
        assert_eq!(policy.correlation_window_secs, 7200);
        assert_eq!(policy.blame_window_secs, 900);
        assert_eq!(policy.outage_grace_secs, 600);
        assert!(policy.environments.is_empty());
        assert_eq!(policy.loop_guard, LoopGuard::default());
        assert_eq!(policy.loop_guard.limit, 3);
        assert_eq!(policy.loop_guard.min_interval_secs, 300);
        assert_eq!(policy.loop_guard.window_secs, 3600);
    }

    #[test]
    fn the_default_rules_carry_the_runbooks_numbers() {
        use Condition::*;
        let p = Policy::default();
        let c = |id: &str| p.rule(id).unwrap().condition().unwrap();
        let r = |id: &str| p.rule(id).unwrap();
        let table = [
            ("C1", BaselinePlus(0.005), Scope::Canary, Outcome::Rollback),
            ("C2", BaselineFactor(1.5), Scope::Canary, Outcome::Rollback),
            ("C3", Above(0.9), Scope::Canary, Outcome::Rollback),
            ("C4", Above(0.9), Scope::Canary, Outcome::Rollback),
            ("M1", Above(0.01), Scope::Any, Outcome::Monitor),
            ("M2", Above(0.05), Scope::Any, Outcome::Rollback),
            ("M3", BaselineFactor(2.0), Scope::Any, Outcome::Monitor),
            ("M4", BaselineFactor(3.0), Scope::Any, Outcome::Rollback),
            ("M5", Above(5.0), Scope::Any, Outcome::Investigate),
            ("M6", Above(20.0), Scope::Any, Outcome::Rollback),
            ("M7", Present, Scope::Any, Outcome::Rollback),
            ("M8", Present, Scope::Any, Outcome::Freeze),
            ("G1", Present, Scope::Any, Outcome::Rollback),
            ("G2", Above(0.01), Scope::Any, Outcome::Rollback),
            ("G3", Present, Scope::Any, Outcome::Rollback),
            ("G4", BaselineFactor(3.0), Scope::Stable, Outcome::Rollback),
        ];
        for (id, condition, scope, outcome) in table {
            assert_eq!(c(id), condition, "{id}");
            assert_eq!(r(id).scope, scope, "{id}");
            assert_eq!(r(id).outcome, outcome, "{id}");
            assert!(!r(id).description.is_empty(), "{id}");
        }
        assert_eq!(r("G1").min_duration_secs, 180);
        assert!(r("G1").after_deploy);
        // G4 (runbooks-2): M1's floor for error rates, G1's 3 minutes, right after a deploy.
        assert_eq!(
            r("G4").floor,
            BTreeMap::from([(SignalKind::ErrorRate, 0.01)])
        );
        assert_eq!(r("G4").min_duration_secs, 180);
        assert!(r("G4").immediately_after_deploy);
        assert_eq!(
            p.rules
                .iter()
                .filter(|r| r.immediately_after_deploy || !r.floor.is_empty())
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["G4"]
        );
        assert_eq!(r("G2").min_duration_secs, 300);
        assert_eq!(
            r("G3").kinds,
            [
                SignalKind::CrashLoop,
                SignalKind::Readiness,
                SignalKind::SloBurn
            ]
        );
        assert_eq!(
            r("G4").kinds,
            [SignalKind::ErrorRate, SignalKind::LatencyP95]
        );
        for rule in &p.rules {
            assert_eq!(rule.min_observations, 1, "{}", rule.id);
            assert_eq!(rule.after_deploy, rule.id == "G1", "{}", rule.id);
        }
    }

    #[test]
    fn e1_and_v1_defaults_are_the_runbooks_numbers() {
        let v = Policy::default().verification;
        assert_eq!(v.escalate_after_secs, 600);
        assert_eq!(v.watch_secs, 900);
        assert_eq!(v.error_rate_below, 0.001);
        assert_eq!(v.latency_p95_below, 0.2);
        assert_eq!(v.cpu_below, 0.7);
        assert_eq!(v.memory_below, 0.7);
    }

    #[test]
    fn the_default_policy_round_trips_through_toml() {
        let policy = Policy::default();
        let text = toml::to_string(&policy).unwrap();
        let back: Policy = toml::from_str(&text).unwrap();
        assert_eq!(back, policy);
    }

    #[test]
    fn a_partial_file_keeps_the_defaults_it_does_not_mention() {
        let policy: Policy = toml::from_str(
            r#"
            version = "shop-2"
            [loop_guard]
            limit = 2
            "#,
        )
        .unwrap();
        assert_eq!(policy.version, "shop-2");
        assert_eq!(policy.loop_guard.limit, 2);
        assert_eq!(policy.loop_guard.window_secs, 3600);
        assert_eq!(policy.rules, Policy::default().rules);
        policy.validate().unwrap();
    }

    #[test]
    fn rules_from_toml_take_their_field_defaults() {
        let policy: Policy = toml::from_str(
            r#"
            version = "x"
            [[rules]]
            id = "R1"
            kinds = ["error_rate"]
            above = 0.02
            outcome = "rollback"
            "#,
        )
        .unwrap();
        let rule = &policy.rules[0];
        assert_eq!(rule.scope, Scope::Any);
        assert_eq!(rule.min_duration_secs, 0);
        assert_eq!(rule.min_observations, 1);
        assert!(!rule.after_deploy);
        assert_eq!(rule.condition().unwrap(), Condition::Above(0.02));
        policy.validate().unwrap();
    }

    #[test]
    fn whole_numbers_are_accepted_as_thresholds() {
        let policy: Policy = toml::from_str(
            "[[rules]]\nid = \"R\"\nkinds = [\"customer_reports\"]\nabove = 20\noutcome = \"rollback\"\n",
        )
        .unwrap();
        assert_eq!(policy.rules[0].condition(), Ok(Condition::Above(20.0)));
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused_when_parsing() {
        let unknown_field = toml::from_str::<Policy>("version = \"x\"\nwindow = 3\n");
        assert!(unknown_field.unwrap_err().to_string().contains("window"));
        let unknown_rule_field = toml::from_str::<Policy>(
            "[[rules]]\nid = \"R\"\nkinds = [\"cpu\"]\nabove = 0.5\nbelow = 0.1\noutcome = \"monitor\"\n",
        );
        assert!(
            unknown_rule_field
                .unwrap_err()
                .to_string()
                .contains("below")
        );
        let unknown_kind = toml::from_str::<Policy>(
            "[[rules]]\nid = \"R\"\nkinds = [\"disk\"]\nabove = 0.5\noutcome = \"monitor\"\n",
        );
        assert!(unknown_kind.unwrap_err().to_string().contains("disk"));
    }

    fn with_rule(edit: impl FnOnce(&mut Rule)) -> Result<(), PolicyError> {
        let mut policy = Policy::default();
        let rule = policy.rules.iter_mut().find(|r| r.id == "M2").unwrap();
        edit(rule);
        policy.validate()
    }

    #[test]
    fn validation_names_the_rule_and_field_at_fault() {
        type Edit = Box<dyn FnOnce(&mut Rule)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|r| r.above = None),
                "policy rule `M2`: no condition",
            ),
            (
                Box::new(|r| r.baseline_factor = Some(2.0)),
                "policy rule `M2`: both `above` and `baseline_factor` are set",
            ),
            (
                Box::new(|r| r.above = Some(0.0)),
                "policy rule `M2`: `above` must be a positive number, got 0",
            ),
            (
                Box::new(|r| r.above = Some(-0.1)),
                "policy rule `M2`: `above` must be a positive number",
            ),
            (
                Box::new(|r| r.above = Some(f64::NAN)),
                "policy rule `M2`: `above` must be a positive number",
            ),
            (
                Box::new(|r| r.above = Some(5.0)),
                "policy rule `M2`: `above` = 5 is not a ratio",
            ),
            (
                Box::new(|r| r.kinds.clear()),
                "policy rule `M2`: `kinds` is empty",
            ),
            (
                Box::new(|r| r.kinds.push(SignalKind::Dependency)),
                "policy rule `M2`: kind `dependency` cannot fire a rule",
            ),
            (
                Box::new(|r| r.kinds.push(SignalKind::LatencyP95)),
                "policy rule `M2`: `above` compares kinds of different units",
            ),
            (
                Box::new(|r| r.min_observations = 0),
                "policy rule `M2`: `min_observations` must be at least 1",
            ),
            (
                Box::new(|r| {
                    r.above = None;
                    r.present = Some(false);
                }),
                "policy rule `M2`: `present` can only be true",
            ),
            (
                Box::new(|r| r.id = "M1".into()),
                "the rule id `M1` is used more than once",
            ),
            (Box::new(|r| r.id = " ".into()), "a rule has an empty `id`"),
        ];
        for (edit, expected) in cases {
            let err = with_rule(edit).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn validation_checks_the_settings_around_the_rules() {
        let broken = |edit: fn(&mut Policy)| {
            let mut p = Policy::default();
            edit(&mut p);
            p.validate().unwrap_err()
        };
        assert_eq!(broken(|p| p.version.clear()), PolicyError::EmptyVersion);
        type Edit = fn(&mut Policy);
        let cases: [(Edit, &str); 4] = [
            (|p| p.correlation_window_secs = 0, "correlation_window_secs"),
            (|p| p.loop_guard.limit = 0, "loop_guard.limit"),
            (
                |p| p.verification.cpu_below = 70.0,
                "verification.cpu_below",
            ),
            (
                |p| p.verification.latency_p95_below = 0.0,
                "verification.latency_p95_below",
            ),
        ];
        for (edit, field) in cases {
            let err = broken(edit).to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }

    #[test]
    fn a_factor_may_span_kinds_of_different_units() {
        // G4 compares error rate and latency each against its own baseline.
        assert!(
            with_rule(|r| {
                r.above = None;
                r.baseline_factor = Some(2.0);
                r.kinds.push(SignalKind::LatencyP95);
            })
            .is_ok()
        );
    }

    #[test]
    fn a_stable_rule_matches_whole_workload_signals_and_a_canary_rule_only_canary_ones() {
        let p = Policy::default();
        let (c1, g4, m2) = (
            p.rule("C1").unwrap(),
            p.rule("G4").unwrap(),
            p.rule("M2").unwrap(),
        );
        let e = SignalKind::ErrorRate;
        assert!(c1.matches(e, Scope::Canary));
        assert!(!c1.matches(e, Scope::Stable) && !c1.matches(e, Scope::Any));
        assert!(g4.matches(e, Scope::Stable) && g4.matches(e, Scope::Any));
        assert!(!g4.matches(e, Scope::Canary));
        for scope in [Scope::Canary, Scope::Stable, Scope::Any] {
            assert!(m2.matches(e, scope));
            assert!(!m2.matches(SignalKind::Cpu, scope));
        }
    }

    #[test]
    fn conditions_read_in_words() {
        let p = Policy::default();
        let words = |id: &str| p.rule(id).unwrap().condition_words();
        assert_eq!(words("C1"), "> baseline + 0.5 pp");
        assert_eq!(words("C2"), "> 1.5 × baseline");
        assert_eq!(words("C3"), "> 90 %");
        assert_eq!(words("M2"), "> 5 %");
        assert_eq!(words("M4"), "> 3 × baseline");
        assert_eq!(words("M6"), "> 20 in 5 min");
        assert_eq!(words("M7"), "any");
        assert_eq!(words("G1"), "any after a deploy");
    }

    #[test]
    fn the_table_has_a_row_per_rule_and_for_e1_and_v1() {
        let table = Policy::default().table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with(
            "policy runbooks-2: correlation window 2 h; blame window 15 min; outage grace 10 min"
        ));
        assert!(lines[2].starts_with("ID  "));
        let rows = &lines[3..];
        assert_eq!(rows.len(), 18);
        let ids: Vec<&str> = rows
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(&ids[16..], ["E1", "V1"]);
        let row = |id: &str| *rows.iter().find(|l| l.starts_with(id)).unwrap();
        assert!(row("C1").contains("> baseline + 0.5 pp"));
        assert!(row("G1").contains("health_check"));
        assert!(row("G1").contains("3 min"));
        assert!(row("G2").contains("5 min"));
        assert!(row("G3").contains("crash_loop|readiness|slo_burn"));
        assert!(row("G4").contains("stable"));
        assert!(
            row("G4").contains("> 3 × baseline and > 1 % (error_rate) right after a deploy  3 min")
        );
        assert!(row("M5").contains("> 5 in 5 min"));
        assert!(row("M8").trim_end().ends_with("freeze"));
        assert!(row("E1").contains("10 min"));
        assert!(row("V1").contains("< 0.1 %"));
        assert!(row("V1").contains("< 0.2 s or <= baseline"));
        assert!(row("V1").contains("< 70 %"));
        assert!(row("V1").contains("watch 15 min"));
        // Fixed width: every column starts at the same place on every row.
        let at = |line: &str, word: &str| line.find(word).map(|i| line[..i].chars().count());
        let outcome_col = at(lines[2], "OUTCOME").unwrap();
        assert_eq!(at(row("M1"), "monitor"), Some(outcome_col));
        assert_eq!(at(row("C2"), "rollback"), Some(outcome_col));
    }

    #[test]
    fn runbooks_1_is_the_default_without_what_runbooks_2_added() {
        let old = Policy::runbooks_1();
        old.validate().unwrap();
        let new = Policy::default();
        assert_eq!(old.version, "runbooks-1");
        assert_eq!(old.blame_window_secs, old.correlation_window_secs);
        assert_eq!(old.outage_grace_secs, 0);
        for (a, b) in old.rules.iter().zip(&new.rules) {
            if a.id == "G4" {
                assert_eq!(
                    Rule {
                        floor: b.floor.clone(),
                        min_duration_secs: b.min_duration_secs,
                        immediately_after_deploy: true,
                        ..a.clone()
                    },
                    *b
                );
            } else {
                assert_eq!(a, b);
            }
        }
        assert_eq!(Policy::builtin("runbooks-1"), Some(old));
        assert_eq!(Policy::builtin("runbooks-2"), Some(new));
        assert_eq!(Policy::builtin("runbooks-3"), None);
    }

    #[test]
    fn environments_override_the_blame_window_and_the_outage_grace() {
        let policy: Policy = toml::from_str(
            r#"
            blame_window_secs = 600
            [environments.batch]
            blame_window_secs = 3600
            [environments.staging]
            outage_grace_secs = 120
            "#,
        )
        .unwrap();
        policy.validate().unwrap();
        assert_eq!(policy.blame_window_secs_for(None), 600);
        assert_eq!(policy.blame_window_secs_for(Some("production")), 600);
        assert_eq!(policy.blame_window_secs_for(Some("batch")), 3600);
        assert_eq!(policy.blame_window_secs_for(Some("staging")), 600);
        assert_eq!(policy.outage_grace_secs_for(Some("batch")), 600);
        assert_eq!(policy.outage_grace_secs_for(Some("staging")), 120);
        let table = policy.table();
        assert!(
            table.contains("environment batch: blame window 1 h; outage grace 10 min\n"),
            "{table}"
        );
        let back: Policy = toml::from_str(&toml::to_string(&policy).unwrap()).unwrap();
        assert_eq!(back, policy);
    }

    #[test]
    fn a_floor_reads_from_toml_per_kind() {
        let policy: Policy = toml::from_str(
            r#"
            [[rules]]
            id = "R"
            kinds = ["error_rate", "latency_p95"]
            baseline_factor = 2.0
            floor = { error_rate = 0.02, latency_p95 = 0.3 }
            immediately_after_deploy = true
            outcome = "rollback"
            "#,
        )
        .unwrap();
        policy.validate().unwrap();
        let rule = &policy.rules[0];
        assert_eq!(rule.floor[&SignalKind::LatencyP95], 0.3);
        assert_eq!(
            rule.condition_words(),
            "> 2 × baseline and > 2 % (error_rate) and > 0.3 s (latency_p95) right after a deploy"
        );
    }

    #[test]
    fn floors_and_windows_are_validated() {
        let floor = |kind, value| {
            with_rule(|r| {
                r.floor.insert(kind, value);
            })
        };
        assert_eq!(
            floor(SignalKind::ErrorRate, 0.01),
            Ok(()),
            "M2 may have a floor"
        );
        for (kind, value, expected) in [
            (
                SignalKind::LatencyP95,
                0.3,
                "`floor.latency_p95` names a kind that is not in the rule's `kinds`",
            ),
            (
                SignalKind::ErrorRate,
                0.0,
                "`floor.error_rate` must be a positive number",
            ),
            (
                SignalKind::ErrorRate,
                1.0,
                "`floor.error_rate` must be a positive number",
            ),
            (
                SignalKind::ErrorRate,
                f64::NAN,
                "`floor.error_rate` must be a positive",
            ),
        ] {
            let err = floor(kind, value).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let mut policy = Policy::default();
        let m7 = policy.rules.iter_mut().find(|r| r.id == "M7").unwrap();
        m7.floor.insert(SignalKind::SlaViolation, 1.0);
        assert!(
            policy
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`floor` needs a value condition")
        );
        let broken = |edit: fn(&mut Policy)| {
            let mut p = Policy::default();
            edit(&mut p);
            p.validate().unwrap_err().to_string()
        };
        assert!(
            broken(|p| p.blame_window_secs = 0).contains("`blame_window_secs` must be positive")
        );
        assert!(broken(|p| p.outage_grace_secs = 7201).contains(
            "`outage_grace_secs` = 7201 is longer than `correlation_window_secs` = 7200"
        ));
        assert!(
            broken(|p| {
                p.environments.insert(
                    "prod".into(),
                    EnvironmentPolicy {
                        blame_window_secs: Some(0),
                        outage_grace_secs: None,
                    },
                );
            })
            .contains("`environments.prod.blame_window_secs` must be positive")
        );
        let zero_grace = Policy {
            outage_grace_secs: 0,
            ..Policy::default()
        };
        assert_eq!(
            zero_grace.validate(),
            Ok(()),
            "a grace of 0 forgets outages"
        );
    }

    #[test]
    fn numbers_print_without_float_noise() {
        assert_eq!(fmt_num(0.07 * 100.0), "7");
        assert_eq!(fmt_num(0.005 * 100.0), "0.5");
        assert_eq!(fmt_num(20.0), "20");
        assert_eq!(fmt_value(SignalKind::ErrorRate, 0.051), "5.1 %");
        assert_eq!(fmt_value(SignalKind::LatencyP95, 0.45), "0.45 s");
        assert_eq!(fmt_secs(180), "3 min");
        assert_eq!(fmt_secs(90), "90 s");
        assert_eq!(fmt_secs(7200), "2 h");
    }
}
