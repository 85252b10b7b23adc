//! Classification: which alerts are signals, of which kind, about which target.
//!
//! `[[targets]]`, `[environments.NAME]` and `[signals]` in the config become one
//! [`Classifier`], validated once at start. It maps an alert's labels to a [`Target`]
//! (configured, or discovered from `namespace` + workload labels), an alert to a
//! [`Signal`] (kind from alertname globs, value and baseline read strictly from
//! annotations), and answers which targets a degraded dependency holds (H2).

mod classifier;
mod compile;
mod config;
mod glob;
mod matcher;

#[cfg(doc)]
use super::{Signal, Target};
pub(crate) use classifier::bounded;
pub use classifier::{Classified, Classifier};
pub use config::{
    ClassifyConfigError, DependencyConfig, EnvironmentConfig, SignalRule, SignalsConfig,
    TargetConfig, default_signal_rules,
};
pub use matcher::MatcherConfig;

/// The label with which an alert opts in to a kind, whatever its name
/// (`rollwarden_kind="sla_violation"`).
pub const KIND_LABEL: &str = "rollwarden_kind";

/// With [`KIND_LABEL`] = `dependency`: the dependency's name (else the alertname).
pub const DEPENDENCY_LABEL: &str = "rollwarden_dependency";

/// Longest [`Signal::summary`], in characters.
pub const MAX_SUMMARY_CHARS: usize = 256;

#[cfg(test)]
mod tests;
