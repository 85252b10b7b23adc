//! The classification config: `[[targets]]`, `[environments.NAME]` and `[signals]`,
//! the default signal rules, and the error that names the key to fix.

use serde::{Deserialize, Serialize};

use super::matcher::MatcherConfig;
use crate::domain::{Mode, Scope, SignalKind};

/// One `[[targets]]` entry: a deployable unit and the alerts that are about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// The cluster in the target's key; absent takes `kubernetes.cluster`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The workload's namespace (required).
    pub namespace: String,
    /// The workload's kind.
    pub kind: String,
    /// The workload's name (required).
    pub name: String,
    /// The region it serves, for region-scoped rollbacks and announcements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The service it is a region of, for multi-region releases (a DNS-1123 name).
    /// Absent: the workload name without the `-REGION` suffix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A key of `[environments]`; its mode decides how a rollback is carried out.
    /// Absent: mode `recommend`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The Helm release that manages it, for `helm rollback` recommendations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm_release: Option<String>,
    /// The CD rollback workflow file (e.g. `cd-rollback.yml`) for `gh workflow run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cd_workflow: Option<String>,
    /// Dependency names (`database`, `cache`, `ingress`…) whose degradation holds a
    /// rollback of this target (H2), wherever the dependency's alert comes from.
    pub dependencies: Vec<String>,
    /// `argocd` or `flux` when a GitOps controller manages it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitops: Option<String>,
    /// With `gitops = "argocd"`: the Argo CD Application that syncs the target; the
    /// `argocd_rollback` executor rolls it back through Argo CD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argocd_app: Option<String>,
    /// The executors that roll it back, in order: `rollout_undo`, `helm_rollback`,
    /// `workflow_dispatch`, `command:NAME`, `webhook:NAME`. Empty: picked from its
    /// deploy history (Helm when `helm_release` is set, else a rollout undo).
    pub actions: Vec<String>,
    /// Alert label equality matchers (`{ service = "checkout", namespace = "prod" }`);
    /// an alert whose labels match all of them is about this target. A value `""`
    /// matches an absent label. None: only alerts discovered as this workload map to it.
    pub matchers: MatcherConfig,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            cluster: None,
            namespace: String::new(),
            kind: "Deployment".into(),
            name: String::new(),
            region: None,
            service: None,
            environment: None,
            helm_release: None,
            cd_workflow: None,
            dependencies: Vec::new(),
            gitops: None,
            argocd_app: None,
            actions: Vec::new(),
            matchers: MatcherConfig::default(),
        }
    }
}

/// One `[environments.NAME]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// How a rollback decision is acted on: `observe`, `recommend` (the default),
    /// `approve` or `auto`.
    pub mode: Mode,
}

/// One `[[signals.rules]]` entry: alerts it matches are signals of `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRule {
    /// A glob over the `alertname` label: `*` matches any run of characters, `?` one
    /// character, everything else itself (case matters). Default `*`: every alert.
    #[serde(default = "any_alertname")]
    pub alertname: String,
    /// Alert label equality matchers that must all match too; `""` matches an absent
    /// label.
    #[serde(default)]
    pub matchers: MatcherConfig,
    /// The kind of signal the alert is (required).
    pub kind: SignalKind,
    /// `canary`, `stable` or `any`. Absent: from the alert's `track` or `canary` label
    /// (`canary`/`true` → canary, `primary`/`stable`/`false` → stable, else any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// For kind `dependency` (and only then, where it is required): the dependency's
    /// name, e.g. `database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// The annotation holding the value; absent takes `signals.value_annotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_annotation: Option<String>,
    /// The annotation holding the baseline; absent takes `signals.baseline_annotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_annotation: Option<String>,
}

fn any_alertname() -> String {
    "*".into()
}

impl SignalRule {
    /// A rule with only an alertname glob and a kind.
    pub fn new(alertname: &str, kind: SignalKind) -> Self {
        Self {
            alertname: alertname.into(),
            matchers: MatcherConfig::default(),
            kind,
            scope: None,
            dependency: None,
            value_annotation: None,
            baseline_annotation: None,
        }
    }

    /// A `dependency` rule for the dependency `name`.
    pub fn dependency(alertname: &str, name: &str) -> Self {
        Self {
            dependency: Some(name.into()),
            ..Self::new(alertname, SignalKind::Dependency)
        }
    }
}

/// `[signals]`: how alerts become signals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// The annotation (or, failing that, label) holding a signal's observed value:
    /// a plain decimal in the kind's unit (ratios for error rate, CPU and memory;
    /// seconds for latency).
    pub value_annotation: String,
    /// The annotation (or label) holding the baseline to compare the value with.
    pub baseline_annotation: String,
    /// Rules checked in order before the built-in ones ([`default_signal_rules`]);
    /// the first that matches decides the kind.
    pub rules: Vec<SignalRule>,
    /// Dependencies whose degradation holds rollbacks (H2), checked after `rules`
    /// and before the built-in rules.
    pub dependencies: Vec<DependencyConfig>,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self {
            value_annotation: "value".into(),
            baseline_annotation: "baseline".into(),
            rules: Vec::new(),
            dependencies: Vec::new(),
        }
    }
}

/// One `[[signals.dependencies]]` entry: a dependency, the alerts that say it is
/// degraded, and the targets that depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DependencyConfig {
    /// The dependency's name (`database`, `cache`, `ingress`, `payments-db`…).
    pub name: String,
    /// Alertname globs (`*`, `?`) of alerts that report it degraded. Empty with
    /// `matchers`: any alertname; empty without: no alert (the entry only says which
    /// targets a dependency of this name, from another rule, affects).
    pub alertnames: Vec<String>,
    /// Alert label equality matchers that must all match too.
    pub matchers: MatcherConfig,
    /// Targets that depend on it, each a key (`cluster/namespace/kind/name`),
    /// `namespace/name` or a name. Empty: every target in the alert's namespace.
    pub targets: Vec<String>,
}

/// The built-in rules, checked after the configured ones; first match wins.
///
/// | alertname glob | kind |
/// | --- | --- |
/// | `*DataCorruption*` | `data_corruption` |
/// | `*SLAViolation*` | `sla_violation` |
/// | `MaestroServiceDown`, `MaestroIngressDown`, `MaestroAPIHealthDegraded` | `health_check` |
/// | `MaestroHighErrorRate`, `HighErrorRate` | `error_rate` |
/// | `MaestroHighLatency`, `MaestroHighLatencyP95` | `latency_p95` |
/// | `KubePodCrashLooping` | `crash_loop` |
/// | `KubeDeploymentReplicasMismatch`, `KubeDeploymentRolloutStuck`, `KubePodNotReady` | `readiness` |
/// | `CPUThrottlingHigh`, `KubeContainerCPU*` | `cpu` |
/// | `KubeContainerOOM*`, `KubeMemory*` | `memory` |
/// | `PostgresqlDown`, `Postgres*`, `*DatabaseDown*` | `dependency` `database` |
/// | `Redis*` | `dependency` `cache` |
/// | `*SLOBurn*`, `*ErrorBudgetBurn*`, `*BurnRate*` | `slo_burn` |
/// | `*ErrorRate*` | `error_rate` |
/// | `*LatencyP95*`, `*HighLatency*` | `latency_p95` |
/// | `*HighCPU*` | `cpu` |
/// | `*HighMemory*` | `memory` |
/// | `NginxIngress*` | `dependency` `ingress` |
///
/// Data corruption and SLA violations come first: whatever else the alert is about,
/// they freeze or roll back. Database and cache exporters come before the generic
/// globs, so `PostgresqlHighLatency` holds (H2) rather than blaming a workload. The
/// ingress comes last: an ingress's error-rate and latency alerts measure the
/// services behind it (their labels name the backend), so they count against that
/// service; the controller's other alerts mean a degraded ingress.
pub fn default_signal_rules() -> Vec<SignalRule> {
    use SignalKind::*;
    let table: &[(&[&str], SignalKind, Option<&str>)] = &[
        (&["*DataCorruption*"], DataCorruption, None),
        (&["*SLAViolation*"], SlaViolation, None),
        (
            &[
                "MaestroServiceDown",
                "MaestroIngressDown",
                "MaestroAPIHealthDegraded",
            ],
            HealthCheck,
            None,
        ),
        (&["MaestroHighErrorRate", "HighErrorRate"], ErrorRate, None),
        (
            &["MaestroHighLatency", "MaestroHighLatencyP95"],
            LatencyP95,
            None,
        ),
        (&["KubePodCrashLooping"], CrashLoop, None),
        (
            &[
                "KubeDeploymentReplicasMismatch",
                "KubeDeploymentRolloutStuck",
                "KubePodNotReady",
            ],
            Readiness,
            None,
        ),
        (&["CPUThrottlingHigh", "KubeContainerCPU*"], Cpu, None),
        (&["KubeContainerOOM*", "KubeMemory*"], Memory, None),
        (
            &["PostgresqlDown", "Postgres*", "*DatabaseDown*"],
            Dependency,
            Some("database"),
        ),
        (&["Redis*"], Dependency, Some("cache")),
        (
            &["*SLOBurn*", "*ErrorBudgetBurn*", "*BurnRate*"],
            SloBurn,
            None,
        ),
        (&["*ErrorRate*"], ErrorRate, None),
        (&["*LatencyP95*", "*HighLatency*"], LatencyP95, None),
        (&["*HighCPU*"], Cpu, None),
        (&["*HighMemory*"], Memory, None),
        (&["NginxIngress*"], Dependency, Some("ingress")),
    ];
    table
        .iter()
        .flat_map(|&(globs, kind, dependency)| {
            globs.iter().map(move |glob| match dependency {
                Some(name) => SignalRule::dependency(glob, name),
                None => SignalRule::new(glob, kind),
            })
        })
        .collect()
}

/// A configuration the classifier cannot use, with the key to fix
/// (`targets[2].environment`, `signals.rules[0].alertname`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ClassifyConfigError {
    pub key: String,
    pub message: String,
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ClassifyConfigError {
    ClassifyConfigError {
        key: key.into(),
        message: message.into(),
    }
}
