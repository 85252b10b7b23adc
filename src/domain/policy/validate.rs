//! Validation: every rule can be evaluated, and the settings around the rules are sane;
//! errors name the rule and field at fault.

use std::collections::BTreeSet;

use super::{Condition, Policy, PolicyError, Rule, Unit, unit};
use crate::domain::SignalKind;

impl Rule {
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
            (
                "releases.all_regions_after",
                u64::from(self.releases.all_regions_after),
            ),
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
}
