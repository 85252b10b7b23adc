//! The pure core: types and rules with no I/O, no async and no framework imports.
//!
//! Everything else in the crate adapts the world (HTTP, databases, Kubernetes) to these
//! types; nothing here knows those adapters exist.

pub mod action;
pub mod alert;
pub mod argocd;
pub mod canary;
pub mod classify;
pub mod decide;
pub mod decision;
pub mod deploy;
pub mod field;
pub mod freeze;
pub mod policy;
pub mod release;
pub mod render;
pub mod report;
pub mod role;
pub mod signal;
pub mod target;

pub use alert::{Alert, AlertStatus, AlertTarget, Labels, Notification, Source};
pub use classify::{
    Classified, Classifier, ClassifyConfigError, DependencyConfig, EnvironmentConfig, SignalRule,
    SignalsConfig, TargetConfig, default_signal_rules,
};
pub use decide::{History, decide, loop_guard};
pub use decision::{
    Decision, DecisionBrief, DeployBrief, FiredRule, HoldReason, NotConsidered, RollbackPlan,
    Verdict, VerificationStatus,
};
pub use deploy::{Deploy, DeployRecord, DeploySource, TargetRef};
pub use freeze::Freeze;
pub use policy::{Condition, LoopGuard, Outcome, Policy, PolicyError, Rule, Verification};
pub use report::{evidence, incident_report};
pub use role::{Access, Role};
pub use signal::{Scope, Signal, SignalKind, SignalSource};
pub use target::{Mode, Target};
