//! Signals: observations normalised from alerts and callbacks, the inputs of decide().

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TargetRef;

/// What a signal observes. Values are in the unit of their kind: ratios in [0, 1]
/// for `error_rate`, `cpu` and `memory` (as Prometheus computes them: 0.05 is 5 %),
/// seconds for `latency_p95`, a count for `customer_reports`; other kinds are
/// present-or-not.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    ErrorRate,
    LatencyP95,
    HealthCheck,
    CrashLoop,
    Readiness,
    SloBurn,
    Cpu,
    Memory,
    CustomerReports,
    SlaViolation,
    DataCorruption,
    /// A dependency (database, cache, ingress…) is degraded; see [`Signal::dependency`].
    Dependency,
    CanaryFailed,
    Custom,
    /// The release the target runs regressed in enough regions that every region
    /// rolls back (`domain::release`). Made by the engine only: no alert, posted
    /// signal or configured rule can be one.
    ReleaseRegressed,
}

impl SignalKind {
    pub const ALL: [SignalKind; 14] = [
        SignalKind::ErrorRate,
        SignalKind::LatencyP95,
        SignalKind::HealthCheck,
        SignalKind::CrashLoop,
        SignalKind::Readiness,
        SignalKind::SloBurn,
        SignalKind::Cpu,
        SignalKind::Memory,
        SignalKind::CustomerReports,
        SignalKind::SlaViolation,
        SignalKind::DataCorruption,
        SignalKind::Dependency,
        SignalKind::CanaryFailed,
        SignalKind::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::ErrorRate => "error_rate",
            SignalKind::LatencyP95 => "latency_p95",
            SignalKind::HealthCheck => "health_check",
            SignalKind::CrashLoop => "crash_loop",
            SignalKind::Readiness => "readiness",
            SignalKind::SloBurn => "slo_burn",
            SignalKind::Cpu => "cpu",
            SignalKind::Memory => "memory",
            SignalKind::CustomerReports => "customer_reports",
            SignalKind::SlaViolation => "sla_violation",
            SignalKind::DataCorruption => "data_corruption",
            SignalKind::Dependency => "dependency",
            SignalKind::CanaryFailed => "canary_failed",
            SignalKind::Custom => "custom",
            SignalKind::ReleaseRegressed => "release_regressed",
        }
    }

    /// The kinds an alert, a posted signal or a configured rule may name: every one
    /// but [`SignalKind::ReleaseRegressed`], which only the engine makes.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether only rollwarden itself makes signals of this kind.
    pub fn is_internal(self) -> bool {
        self == SignalKind::ReleaseRegressed
    }

    /// Kinds whose value is a ratio in [0, 1]; a larger value is a unit mistake
    /// (a percentage), so it is inconclusive rather than believed.
    pub fn is_ratio(self) -> bool {
        matches!(
            self,
            SignalKind::ErrorRate | SignalKind::Cpu | SignalKind::Memory
        )
    }
}

/// Which side of a canary a signal observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Canary,
    /// The primary (stable) side.
    Stable,
    /// Not canary-specific (the whole workload).
    #[default]
    Any,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Canary => "canary",
            Scope::Stable => "stable",
            Scope::Any => "any",
        }
    }
}

/// Where a signal came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SignalSource {
    /// Classified from an Alertmanager alert.
    Alert,
    /// Posted to `POST /api/v1/signals`.
    Api,
    /// From a canary controller callback.
    Canary,
    /// Made by the engine from a release's other regions (`domain::release`).
    Release,
}

/// One observation. A signal is active from `started_at` until `ended_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub kind: SignalKind,
    /// The workload it is about; `None` for a dependency signal, which affects the
    /// targets that depend on it.
    pub target: Option<TargetRef>,
    pub scope: Scope,
    /// For `dependency` signals: the dependency's name (`database`, `cache`, …).
    pub dependency: Option<String>,
    /// The observed value, when the source gave one that parsed.
    pub value: Option<f64>,
    /// The baseline (the last known good version, or the primary for a canary).
    pub baseline: Option<f64>,
    /// Why the value cannot be trusted (unparseable, out of range, too little
    /// traffic). An inconclusive signal never causes a rollback on its own.
    pub inconclusive: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Observations of the condition in a row (1 for a single alert).
    pub observations: u32,
    pub source: SignalSource,
    /// The alert fingerprint, or an id the poster chose: cited in evidence.
    pub fingerprint: String,
    /// A short human description (the alert's name and summary).
    pub summary: String,
}

impl Signal {
    /// Whether the signal is still going on at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.started_at <= now && self.ended_at.is_none_or(|end| end > now)
    }
}
