//! Classification: which alerts are signals, of which kind, about which target.
//!
//! `[[targets]]`, `[environments.NAME]` and `[signals]` in the config become one
//! [`Classifier`], validated once at start. It maps an alert's labels to a [`Target`]
//! (configured, or discovered from `namespace` + workload labels), an alert to a
//! [`Signal`] (kind from alertname globs, value and baseline read strictly from
//! annotations), and answers which targets a degraded dependency holds (H2).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    Alert, AlertStatus, Labels, Mode, Scope, Signal, SignalKind, SignalSource, Target, TargetRef,
};

/// The label with which an alert opts in to a kind, whatever its name
/// (`rollwarden_kind="sla_violation"`).
pub const KIND_LABEL: &str = "rollwarden_kind";

/// With [`KIND_LABEL`] = `dependency`: the dependency's name (else the alertname).
pub const DEPENDENCY_LABEL: &str = "rollwarden_dependency";

/// Longest [`Signal::summary`], in characters.
pub const MAX_SUMMARY_CHARS: usize = 256;

/// Labels that name the workload an alert is about, most specific first. A `pod` label
/// of a Deployment's pod (`NAME-HASH-SUFFIX`) is tried after `service`, before `job`.
const WORKLOAD_LABELS: [&str; 3] = ["deployment", "app", "service"];

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
    /// The executors that roll it back, in order: `rollout_undo`, `helm_rollback`,
    /// `workflow_dispatch`, `command:NAME`, `webhook:NAME`. Empty: picked from its
    /// deploy history (Helm when `helm_release` is set, else a rollout undo).
    pub actions: Vec<String>,
    /// Alert label equality matchers (`{ service = "checkout", namespace = "prod" }`);
    /// an alert whose labels match all of them is about this target. A value `""`
    /// matches an absent label. None: only alerts discovered as this workload map to it.
    pub matchers: BTreeMap<String, String>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            cluster: None,
            namespace: String::new(),
            kind: "Deployment".into(),
            name: String::new(),
            region: None,
            environment: None,
            helm_release: None,
            cd_workflow: None,
            dependencies: Vec::new(),
            gitops: None,
            actions: Vec::new(),
            matchers: BTreeMap::new(),
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
    pub matchers: BTreeMap<String, String>,
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
            matchers: BTreeMap::new(),
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
    pub matchers: BTreeMap<String, String>,
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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ClassifyConfigError {
    ClassifyConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A classified alert: the signal, and the alert's `namespace` label, which a
/// dependency signal needs to find the targets it affects ([`Classifier::depends_on`])
/// and [`Signal`] has no field for. A posted signal has no namespace (`None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    pub signal: Signal,
    /// The alert's `namespace` label, when it has a non-empty one.
    pub namespace: Option<String>,
}

/// Alerts to signals and targets, from validated config. Cheap to share: build it once.
#[derive(Debug, Clone)]
pub struct Classifier {
    cluster: String,
    value_annotation: String,
    baseline_annotation: String,
    /// `signals.rules`, then one rule per `signals.dependencies` entry with alerts.
    configured_rules: Vec<Rule>,
    default_rules: Vec<Rule>,
    /// Dependency name → the targets it affects (empty: the alert's namespace).
    dependency_targets: BTreeMap<String, Vec<String>>,
    targets: Vec<ConfiguredTarget>,
}

#[derive(Debug, Clone)]
struct ConfiguredTarget {
    target: Target,
    matchers: Labels,
}

/// A rule compiled: globs parsed, annotation names resolved at classification.
#[derive(Debug, Clone)]
struct Rule {
    /// Empty: any alertname.
    alertnames: Vec<Glob>,
    matchers: Labels,
    kind: SignalKind,
    scope: Option<Scope>,
    dependency: Option<String>,
    value_annotation: Option<String>,
    baseline_annotation: Option<String>,
}

impl Rule {
    fn matches(&self, alertname: &[char], labels: &Labels) -> bool {
        (self.alertnames.is_empty() || self.alertnames.iter().any(|g| g.matches(alertname)))
            && matchers_match(&self.matchers, labels)
    }
}

/// The rule that classified an alert, with what it leaves to the alert.
struct Match<'a> {
    kind: SignalKind,
    scope: Option<Scope>,
    dependency: Option<String>,
    value_annotation: &'a str,
    baseline_annotation: &'a str,
}

impl Classifier {
    /// Validates the config and builds the classifier; errors name the offending key.
    pub fn new(
        signals: &SignalsConfig,
        targets: &[TargetConfig],
        environments: &BTreeMap<String, EnvironmentConfig>,
        default_cluster: &str,
    ) -> Result<Self, ClassifyConfigError> {
        check_label_name("signals.value_annotation", &signals.value_annotation)?;
        check_label_name("signals.baseline_annotation", &signals.baseline_annotation)?;
        let mut configured_rules = Vec::new();
        for (i, rule) in signals.rules.iter().enumerate() {
            configured_rules.push(compile_rule(&format!("signals.rules[{i}]"), rule)?);
        }
        let mut dependency_targets = BTreeMap::new();
        for (i, dependency) in signals.dependencies.iter().enumerate() {
            let key = format!("signals.dependencies[{i}]");
            check_text(&format!("{key}.name"), &dependency.name)?;
            if dependency_targets.contains_key(&dependency.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{:?} is configured twice", dependency.name),
                ));
            }
            let alertnames = dependency
                .alertnames
                .iter()
                .enumerate()
                .map(|(j, glob)| Glob::parse(&format!("{key}.alertnames[{j}]"), glob))
                .collect::<Result<Vec<_>, _>>()?;
            let matchers = check_matchers(&format!("{key}.matchers"), &dependency.matchers)?;
            for (j, target) in dependency.targets.iter().enumerate() {
                check_text(&format!("{key}.targets[{j}]"), target)?;
            }
            if !alertnames.is_empty() || !matchers.is_empty() {
                configured_rules.push(Rule {
                    alertnames,
                    matchers,
                    kind: SignalKind::Dependency,
                    scope: None,
                    dependency: Some(dependency.name.clone()),
                    value_annotation: None,
                    baseline_annotation: None,
                });
            }
            dependency_targets.insert(dependency.name.clone(), dependency.targets.clone());
        }
        let default_rules = default_signal_rules()
            .iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(&format!("default_signal_rules[{i}]"), rule))
            .collect::<Result<Vec<_>, _>>()?;
        for name in environments.keys() {
            if name.trim().is_empty() {
                return Err(invalid("environments", "an environment needs a name"));
            }
        }
        let mut configured: Vec<ConfiguredTarget> = Vec::new();
        let mut seen: BTreeMap<TargetRef, usize> = BTreeMap::new();
        for (i, config) in targets.iter().enumerate() {
            let key = format!("targets[{i}]");
            let target = compile_target(&key, config, environments, default_cluster)?;
            if let Some(first) = seen.insert(target.target.target.clone(), i) {
                return Err(invalid(
                    key,
                    format!(
                        "the same target as targets[{first}] ({})",
                        target.target.target
                    ),
                ));
            }
            configured.push(target);
        }
        Ok(Self {
            cluster: default_cluster.to_string(),
            value_annotation: signals.value_annotation.clone(),
            baseline_annotation: signals.baseline_annotation.clone(),
            configured_rules,
            default_rules,
            dependency_targets,
            targets: configured,
        })
    }

    /// The target an alert with these labels is about: the first configured target
    /// whose matchers all match; else the workload the labels name (discovery: the
    /// `namespace` label with `deployment`, `app`, `service`, the Deployment of a
    /// `pod`, or `job`, the first that is a Kubernetes name), as configured when a
    /// configured target has that namespace and name, else with defaults.
    ///
    /// `service` and `job` values of exporters (`*kube-state-metrics`, `*kubelet`,
    /// `*node-exporter`) are skipped: kube-prometheus alerts carry the scraper's, not
    /// the workload's.
    pub fn target_for(&self, labels: &Labels) -> Option<Target> {
        if let Some(configured) = self
            .targets
            .iter()
            .find(|t| !t.matchers.is_empty() && matchers_match(&t.matchers, labels))
        {
            return Some(configured.target.clone());
        }
        let discovered = self.discover(labels)?;
        Some(
            self.configured_named(&discovered.namespace, &discovered.name)
                .map_or_else(|| Target::discovered(discovered), Clone::clone),
        )
    }

    /// The configured targets, in config order.
    pub fn targets(&self) -> Vec<Target> {
        self.targets.iter().map(|t| t.target.clone()).collect()
    }

    /// The target with this key: as configured, or with defaults when not configured.
    pub fn target(&self, key: &TargetRef) -> Target {
        self.targets
            .iter()
            .find(|t| t.target.target == *key)
            .map_or_else(|| Target::discovered(key.clone()), |t| t.target.clone())
    }

    /// The signal an alert is, or `None` when it is not one.
    ///
    /// The kind comes from the first match among `signals.rules`, then
    /// `signals.dependencies`, then the alert's own `rollwarden_kind` label (an
    /// opt-in for any alertname), then [`default_signal_rules`]. A dependency signal
    /// has no target; any other has the one [`Classifier::target_for`] finds, or none
    /// when the labels name no workload (it then affects no target).
    ///
    /// Value and baseline are read from their annotations (or labels of the same
    /// name) and must be plain decimals (`0.124`, `1e-3`), non-negative, and in
    /// [0, 1] for ratio kinds; anything else leaves the number out and makes the
    /// signal inconclusive, saying why. A missing value is just unknown.
    pub fn classify(&self, alert: &Alert) -> Option<Classified> {
        let matched = self.matching(alert)?;
        let kind = matched.kind;
        let labels = &alert.labels;
        let mut reasons = Vec::new();
        let value = read_number(alert, matched.value_annotation, kind, &mut reasons);
        let baseline = read_number(alert, matched.baseline_annotation, kind, &mut reasons);
        let target = if kind == SignalKind::Dependency {
            None
        } else {
            self.target_for(labels).map(|t| t.target)
        };
        let signal = Signal {
            kind,
            target,
            scope: matched.scope.unwrap_or_else(|| scope_from_labels(labels)),
            dependency: matched.dependency,
            value,
            baseline,
            inconclusive: (!reasons.is_empty()).then(|| reasons.join("; ")),
            started_at: alert.starts_at,
            ended_at: match alert.status {
                AlertStatus::Resolved => alert.ends_at,
                AlertStatus::Firing => None,
            },
            observations: 1,
            source: SignalSource::Alert,
            fingerprint: alert.fingerprint.clone(),
            summary: summary(alert),
        };
        Some(Classified {
            signal,
            namespace: labels.get("namespace").filter(|ns| !ns.is_empty()).cloned(),
        })
    }

    /// Whether a degraded dependency holds a rollback of `target` (H2): `dependency`
    /// is a `dependency` signal with the namespace of the alert it came from.
    ///
    /// It does when the target's own `dependencies` name it; when
    /// `signals.dependencies` lists the target (by key, `namespace/name` or name); or
    /// when that entry lists no targets (or there is none) and the alert came from the
    /// target's namespace. Any other kind of signal is no dependency of anything.
    pub fn depends_on(&self, target: &Target, dependency: &Classified) -> bool {
        let signal = &dependency.signal;
        let namespace = dependency.namespace.as_deref();
        if signal.kind != SignalKind::Dependency {
            return false;
        }
        let Some(name) = signal.dependency.as_deref() else {
            return false;
        };
        if target.dependencies.iter().any(|d| d == name) {
            return true;
        }
        let key = &target.target;
        match self.dependency_targets.get(name) {
            Some(listed) if !listed.is_empty() => listed.iter().any(|t| {
                *t == key.name
                    || *t == key.key()
                    || t.split_once('/') == Some((key.namespace.as_str(), key.name.as_str()))
            }),
            _ => namespace == Some(key.namespace.as_str()),
        }
    }

    fn matching(&self, alert: &Alert) -> Option<Match<'_>> {
        let alertname: Vec<char> = alert.alertname().chars().collect();
        if let Some(rule) = self
            .configured_rules
            .iter()
            .find(|r| r.matches(&alertname, &alert.labels))
        {
            return Some(self.matched_by(rule));
        }
        if let Some(kind) = alert
            .labels
            .get(KIND_LABEL)
            .and_then(|k| SignalKind::parse(k.as_str()))
        {
            let dependency = (kind == SignalKind::Dependency).then(|| {
                let named = alert.labels.get(DEPENDENCY_LABEL).map(String::as_str);
                [named.unwrap_or(""), alert.alertname()]
                    .into_iter()
                    .find(|name| !name.is_empty())
                    .unwrap_or("unknown")
                    .to_string()
            });
            return Some(Match {
                kind,
                scope: None,
                dependency,
                value_annotation: &self.value_annotation,
                baseline_annotation: &self.baseline_annotation,
            });
        }
        self.default_rules
            .iter()
            .find(|r| r.matches(&alertname, &alert.labels))
            .map(|rule| self.matched_by(rule))
    }

    fn matched_by<'a>(&'a self, rule: &'a Rule) -> Match<'a> {
        Match {
            kind: rule.kind,
            scope: rule.scope,
            dependency: rule.dependency.clone(),
            value_annotation: rule
                .value_annotation
                .as_deref()
                .unwrap_or(&self.value_annotation),
            baseline_annotation: rule
                .baseline_annotation
                .as_deref()
                .unwrap_or(&self.baseline_annotation),
        }
    }

    fn discover(&self, labels: &Labels) -> Option<TargetRef> {
        let namespace = labels.get("namespace").filter(|ns| is_dns_label(ns))?;
        let label = |name: &str| {
            labels
                .get(name)
                .filter(|v| is_object_name(v))
                .filter(|v| !(matches!(name, "service" | "job") && is_exporter(v)))
                .cloned()
        };
        let workload = WORKLOAD_LABELS
            .iter()
            .find_map(|name| label(name))
            .or_else(|| labels.get("pod").and_then(|pod| deployment_of_pod(pod)))
            .or_else(|| label("job"))?;
        Some(TargetRef::deployment(&self.cluster, namespace, &workload))
    }

    /// The configured target with this namespace and name, preferring this cluster.
    fn configured_named(&self, namespace: &str, name: &str) -> Option<&Target> {
        let mut named = self
            .targets
            .iter()
            .map(|t| &t.target)
            .filter(|t| t.target.namespace == namespace && t.target.name == name);
        let first = named.next()?;
        if first.target.cluster == self.cluster {
            return Some(first);
        }
        Some(
            named
                .find(|t| t.target.cluster == self.cluster)
                .unwrap_or(first),
        )
    }
}

fn compile_rule(key: &str, rule: &SignalRule) -> Result<Rule, ClassifyConfigError> {
    let glob = Glob::parse(&format!("{key}.alertname"), &rule.alertname)?;
    let matchers = check_matchers(&format!("{key}.matchers"), &rule.matchers)?;
    match (&rule.dependency, rule.kind) {
        (Some(name), SignalKind::Dependency) => check_text(&format!("{key}.dependency"), name)?,
        (None, SignalKind::Dependency) => {
            return Err(invalid(
                format!("{key}.dependency"),
                "kind dependency needs the dependency's name",
            ));
        }
        (Some(_), kind) => {
            return Err(invalid(
                format!("{key}.dependency"),
                format!("only for kind dependency, not {}", kind.as_str()),
            ));
        }
        (None, _) => {}
    }
    for (field, name) in [
        ("value_annotation", &rule.value_annotation),
        ("baseline_annotation", &rule.baseline_annotation),
    ] {
        if let Some(name) = name {
            check_label_name(&format!("{key}.{field}"), name)?;
        }
    }
    Ok(Rule {
        alertnames: vec![glob],
        matchers,
        kind: rule.kind,
        scope: rule.scope,
        dependency: rule.dependency.clone(),
        value_annotation: rule.value_annotation.clone(),
        baseline_annotation: rule.baseline_annotation.clone(),
    })
}

fn compile_target(
    key: &str,
    config: &TargetConfig,
    environments: &BTreeMap<String, EnvironmentConfig>,
    default_cluster: &str,
) -> Result<ConfiguredTarget, ClassifyConfigError> {
    let cluster = config.cluster.as_deref().unwrap_or(default_cluster);
    if !is_dns_label(cluster) {
        return Err(invalid(
            format!("{key}.cluster"),
            "must be 1 to 63 lower-case letters, digits or '-'",
        ));
    }
    if !is_dns_label(&config.namespace) {
        return Err(invalid(
            format!("{key}.namespace"),
            "must be a namespace name: 1 to 63 lower-case letters, digits or '-'",
        ));
    }
    if !is_object_name(&config.name) {
        return Err(invalid(
            format!("{key}.name"),
            "must be a Kubernetes name: 1 to 253 lower-case letters, digits, '-' or '.'",
        ));
    }
    if config.kind.is_empty()
        || config.kind.len() > 63
        || !config.kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(invalid(
            format!("{key}.kind"),
            "must be a Kubernetes kind such as Deployment",
        ));
    }
    for (field, value) in [
        ("region", &config.region),
        ("environment", &config.environment),
        ("helm_release", &config.helm_release),
        ("cd_workflow", &config.cd_workflow),
    ] {
        if let Some(value) = value {
            check_text(&format!("{key}.{field}"), value)?;
        }
    }
    let mode = match &config.environment {
        None => Mode::default(),
        Some(name) => {
            environments
                .get(name)
                .ok_or_else(|| {
                    invalid(
                        format!("{key}.environment"),
                        format!("{name:?} is not a key of [environments]"),
                    )
                })?
                .mode
        }
    };
    let mut dependencies = BTreeSet::new();
    for (i, dependency) in config.dependencies.iter().enumerate() {
        check_text(&format!("{key}.dependencies[{i}]"), dependency)?;
        if !dependencies.insert(dependency) {
            return Err(invalid(
                format!("{key}.dependencies[{i}]"),
                format!("{dependency:?} is listed twice"),
            ));
        }
    }
    if let Some(gitops) = &config.gitops
        && !matches!(gitops.as_str(), "argocd" | "flux")
    {
        return Err(invalid(
            format!("{key}.gitops"),
            format!("{gitops:?} is not argocd or flux"),
        ));
    }
    for (i, action) in config.actions.iter().enumerate() {
        if super::action::ActionKind::parse(action)
            .is_none_or(|a| a == super::action::ActionKind::Freeze)
        {
            return Err(invalid(
                format!("{key}.actions[{i}]"),
                format!(
                    "{action:?} is not rollout_undo, helm_rollback, workflow_dispatch, \
                     command:NAME or webhook:NAME"
                ),
            ));
        }
    }
    let matchers = check_matchers(&format!("{key}.matchers"), &config.matchers)?;
    Ok(ConfiguredTarget {
        target: Target {
            target: TargetRef::new(cluster, &config.namespace, &config.kind, &config.name),
            region: config.region.clone(),
            environment: config.environment.clone(),
            mode,
            helm_release: config.helm_release.clone(),
            cd_workflow: config.cd_workflow.clone(),
            dependencies: config.dependencies.clone(),
            gitops: config.gitops.clone(),
            actions: config.actions.clone(),
        },
        matchers,
    })
}

fn check_matchers(
    key: &str,
    matchers: &BTreeMap<String, String>,
) -> Result<Labels, ClassifyConfigError> {
    for (name, value) in matchers {
        check_label_name(&format!("{key}.{name}"), name)?;
        if value.chars().any(char::is_control) {
            return Err(invalid(
                format!("{key}.{name}"),
                "must not contain control characters",
            ));
        }
    }
    Ok(matchers.clone())
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn check_label_name(key: &str, name: &str) -> Result<(), ClassifyConfigError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{name:?} is not a label name (letters, digits and '_', not first a digit)"),
        ))
    }
}

fn check_text(key: &str, value: &str) -> Result<(), ClassifyConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if value.len() > 253 || value.chars().any(char::is_control) {
        return Err(invalid(
            key,
            "must be at most 253 bytes without control characters",
        ));
    }
    Ok(())
}

fn matchers_match(matchers: &Labels, labels: &Labels) -> bool {
    matchers
        .iter()
        .all(|(name, want)| labels.get(name).map_or("", String::as_str) == want)
}

/// An alertname pattern: `*` any run of characters, `?` exactly one.
#[derive(Debug, Clone)]
struct Glob(Vec<char>);

impl Glob {
    /// Characters that mean something in other pattern languages; accepting them as
    /// literals would silently match nothing where the author meant a regex or a class.
    const FOREIGN: &'static [char] = &['[', ']', '{', '}', '(', ')', '|', '\\', '^', '$', '+'];

    fn parse(key: &str, pattern: &str) -> Result<Self, ClassifyConfigError> {
        if pattern.is_empty() {
            return Err(invalid(
                key,
                "must not be empty (`*` matches every alertname)",
            ));
        }
        if pattern.chars().count() > 256 {
            return Err(invalid(key, "must be at most 256 characters"));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || Self::FOREIGN.contains(c))
        {
            return Err(invalid(
                key,
                format!(
                    "{c:?} in {pattern:?}: a glob has only `*` (any run) and `?` (one character)"
                ),
            ));
        }
        Ok(Self(pattern.chars().collect()))
    }

    fn matches(&self, text: &[char]) -> bool {
        let pattern = &self.0;
        let (mut p, mut t) = (0, 0);
        // The last `*` seen and the text position it currently stands for: on a
        // mismatch, let that star swallow one more character and retry.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    backtrack = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((star, from)) => {
                        p = star + 1;
                        t = from + 1;
                        backtrack = Some((star, from + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

/// DNS-1123 label: namespaces and cluster names.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// DNS-1123 subdomain: Deployment names.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

fn is_exporter(value: &str) -> bool {
    ["kube-state-metrics", "kubelet", "node-exporter"]
        .iter()
        .any(|exporter| value.ends_with(exporter))
}

/// The Deployment a pod belongs to, when its name has the shape a Deployment's
/// ReplicaSet gives it: `NAME-HASH-SUFFIX`, where the pod-template hash (up to 10)
/// and the suffix (5) are drawn from Kubernetes' vowel-free alphabet.
fn deployment_of_pod(pod: &str) -> Option<String> {
    const SAFE: &str = "bcdfghjklmnpqrstvwxz2456789";
    let safe = |s: &str| s.chars().all(|c| SAFE.contains(c));
    let (rest, suffix) = pod.rsplit_once('-')?;
    let (name, hash) = rest.rsplit_once('-')?;
    let fits = suffix.len() == 5
        && safe(suffix)
        && (1..=10).contains(&hash.len())
        && safe(hash)
        && is_object_name(name);
    fits.then(|| name.to_string())
}

/// The scope the alert's `track` or `canary` label names.
fn scope_from_labels(labels: &Labels) -> Scope {
    for label in ["track", "canary"] {
        let value = labels.get(label).map(|v| v.to_ascii_lowercase());
        match value.as_deref() {
            Some("canary") => return Scope::Canary,
            Some("true") if label == "canary" => return Scope::Canary,
            Some("primary" | "stable") => return Scope::Stable,
            Some("false") if label == "canary" => return Scope::Stable,
            _ => {}
        }
    }
    Scope::Any
}

/// Reads one number from annotation `name` (or the label of that name), strictly.
/// A number that cannot be trusted is left out and its reason pushed.
fn read_number(
    alert: &Alert,
    name: &str,
    kind: SignalKind,
    reasons: &mut Vec<String>,
) -> Option<f64> {
    let (place, raw) = match (alert.annotations.get(name), alert.labels.get(name)) {
        (Some(raw), _) => ("annotation", raw),
        (None, Some(raw)) => ("label", raw),
        (None, None) => return None,
    };
    let shown: String = raw.chars().take(64).collect();
    let Some(value) = parse_plain_number(raw) else {
        reasons.push(format!(
            "{place} {name:?} = {shown:?} is not a plain decimal number"
        ));
        return None;
    };
    if value < 0.0 {
        reasons.push(format!("{place} {name:?} = {shown:?} is negative"));
        return None;
    }
    if kind.is_ratio() && value > 1.0 {
        reasons.push(format!(
            "{place} {name:?} = {shown:?} is above 1 for {}, a ratio: looks like a percentage",
            kind.as_str()
        ));
        return None;
    }
    Some(value)
}

/// A plain decimal: `-`? digits with an optional fraction, optional exponent. No
/// units, no `%`, no `NaN`/`Inf`, no hex; surrounding whitespace is ignored.
fn parse_plain_number(raw: &str) -> Option<f64> {
    let text = raw.trim();
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !digits(whole) || !digits(fraction) || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    if let Some(exponent) = exponent {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if exponent.is_empty() || !digits(exponent) {
            return None;
        }
    }
    let value: f64 = text.parse().ok()?;
    // `-0` is zero, not a negative reading.
    value
        .is_finite()
        .then_some(if value == 0.0 { 0.0 } else { value })
}

/// `ALERTNAME: summary`, on one line, at most [`MAX_SUMMARY_CHARS`].
fn summary(alert: &Alert) -> String {
    let name = alert.alertname();
    let text = match alert.annotations.get("summary").map(|s| s.trim()) {
        Some(s) if !s.is_empty() && !name.is_empty() => format!("{name}: {s}"),
        Some(s) if !s.is_empty() => s.to_string(),
        _ => name.to_string(),
    };
    bounded(&text, MAX_SUMMARY_CHARS)
}

/// `text` on one line, cut to `max` characters with an ellipsis.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let line = text.replace(|c: char| c.is_control(), " ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    use crate::wire::Bounds;
    use crate::wire::alertmanager::AlertmanagerPayload;

    const FIRING: &str = include_str!("../../../tests/fixtures/alertmanager-firing.json");

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 8, 22, 14, 1, 0).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(name: &str, extra: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        let mut l = labels(&[
            ("alertname", name),
            ("namespace", "prod"),
            ("service", "checkout"),
        ]);
        l.extend(labels(extra));
        Alert {
            fingerprint: "9fc138bd6e224dae".into(),
            status: AlertStatus::Firing,
            labels: l,
            annotations: labels(annotations),
            starts_at: t0(),
            ends_at: None,
            generator_url: String::new(),
        }
    }

    fn classifier() -> Classifier {
        Classifier::new(&SignalsConfig::default(), &[], &BTreeMap::new(), "default").unwrap()
    }

    fn with(
        signals: SignalsConfig,
        targets: Vec<TargetConfig>,
        environments: &[(&str, Mode)],
    ) -> Result<Classifier, ClassifyConfigError> {
        let environments: BTreeMap<String, EnvironmentConfig> = environments
            .iter()
            .map(|(name, mode)| (name.to_string(), EnvironmentConfig { mode: *mode }))
            .collect();
        Classifier::new(&signals, &targets, &environments, "default")
    }

    fn kind_of(c: &Classifier, name: &str) -> Option<SignalKind> {
        c.classify(&alert(name, &[], &[])).map(|c| c.signal.kind)
    }

    fn target(namespace: &str, name: &str) -> TargetConfig {
        TargetConfig {
            namespace: namespace.into(),
            name: name.into(),
            ..TargetConfig::default()
        }
    }

    #[test]
    fn the_runbook_alert_names_classify_to_their_kinds() {
        let c = classifier();
        for (name, kind) in [
            ("MaestroServiceDown", SignalKind::HealthCheck),
            ("MaestroIngressDown", SignalKind::HealthCheck),
            ("MaestroAPIHealthDegraded", SignalKind::HealthCheck),
            ("MaestroHighErrorRate", SignalKind::ErrorRate),
            ("HighErrorRate", SignalKind::ErrorRate),
            ("CheckoutErrorRateHigh", SignalKind::ErrorRate),
            ("MaestroHighLatency", SignalKind::LatencyP95),
            ("MaestroHighLatencyP95", SignalKind::LatencyP95),
            ("ApiLatencyP95TooHigh", SignalKind::LatencyP95),
            ("CheckoutHighLatency", SignalKind::LatencyP95),
            ("CheckoutSLOBurnFast", SignalKind::SloBurn),
            ("ErrorBudgetBurn", SignalKind::SloBurn),
            ("CheckoutErrorRateSLOBurn", SignalKind::SloBurn),
            ("CheckoutSLAViolation", SignalKind::SlaViolation),
            ("OrdersDataCorruption", SignalKind::DataCorruption),
            ("PostgresDataCorruption", SignalKind::DataCorruption),
        ] {
            assert_eq!(kind_of(&c, name), Some(kind), "{name}");
        }
    }

    #[test]
    fn kube_prometheus_alert_names_classify_to_their_kinds() {
        let c = classifier();
        for (name, kind) in [
            ("KubePodCrashLooping", SignalKind::CrashLoop),
            ("KubeDeploymentReplicasMismatch", SignalKind::Readiness),
            ("KubeDeploymentRolloutStuck", SignalKind::Readiness),
            ("KubePodNotReady", SignalKind::Readiness),
            ("CPUThrottlingHigh", SignalKind::Cpu),
            ("KubeContainerCPUUsageHigh", SignalKind::Cpu),
            ("CheckoutHighCPU", SignalKind::Cpu),
            ("KubeContainerOOMKilled", SignalKind::Memory),
            ("KubeMemoryOvercommit", SignalKind::Memory),
            ("CheckoutHighMemory", SignalKind::Memory),
        ] {
            assert_eq!(kind_of(&c, name), Some(kind), "{name}");
        }
    }

    #[test]
    fn dependency_exporters_classify_as_named_dependencies() {
        let c = classifier();
        for (name, dependency) in [
            ("PostgresqlDown", "database"),
            ("PostgresqlHighLatency", "database"),
            ("OrdersDatabaseDown", "database"),
            ("RedisDown", "cache"),
            ("RedisHighMemory", "cache"),
            ("NginxIngressControllerDown", "ingress"),
        ] {
            let s = c.classify(&alert(name, &[], &[])).expect(name).signal;
            assert_eq!(s.kind, SignalKind::Dependency, "{name}");
            assert_eq!(s.dependency.as_deref(), Some(dependency), "{name}");
            assert_eq!(s.target, None, "{name}");
        }
        // An ingress's error rate measures the service behind it.
        assert_eq!(
            kind_of(&c, "NginxIngressHighErrorRate"),
            Some(SignalKind::ErrorRate)
        );
    }

    #[test]
    fn unmatched_alerts_are_not_signals() {
        let c = classifier();
        for name in ["Watchdog", "InfoInhibitor", "KubeVersionMismatch", ""] {
            assert_eq!(kind_of(&c, name), None, "{name}");
        }
    }

    #[test]
    fn a_rollwarden_kind_label_opts_any_alert_in() {
        let c = classifier();
        let a = alert(
            "CheckoutRefundsStuck",
            &[("rollwarden_kind", "sla_violation")],
            &[],
        );
        assert_eq!(
            c.classify(&a).unwrap().signal.kind,
            SignalKind::SlaViolation
        );
        let a = alert(
            "PaymentsGatewayDown",
            &[
                ("rollwarden_kind", "dependency"),
                ("rollwarden_dependency", "payments-gateway"),
            ],
            &[],
        );
        let s = c.classify(&a).unwrap().signal;
        assert_eq!(
            (s.kind, s.dependency.as_deref()),
            (SignalKind::Dependency, Some("payments-gateway"))
        );
        // Not a kind: the alert falls through to the rules, which do not know it.
        let a = alert(
            "CheckoutRefundsStuck",
            &[("rollwarden_kind", "urgent")],
            &[],
        );
        assert!(c.classify(&a).is_none());
        // The label beats the built-in guess from the name.
        let a = alert("HighErrorRate", &[("rollwarden_kind", "custom")], &[]);
        assert_eq!(c.classify(&a).unwrap().signal.kind, SignalKind::Custom);
    }

    #[test]
    fn user_rules_win_over_the_defaults() {
        let signals = SignalsConfig {
            rules: vec![
                SignalRule::new("HighErrorRate", SignalKind::Custom),
                SignalRule::new("Maestro*Latency*", SignalKind::SloBurn),
            ],
            ..SignalsConfig::default()
        };
        let c = with(signals, vec![], &[]).unwrap();
        assert_eq!(kind_of(&c, "HighErrorRate"), Some(SignalKind::Custom));
        assert_eq!(
            kind_of(&c, "MaestroHighLatencyP95"),
            Some(SignalKind::SloBurn)
        );
        assert_eq!(
            kind_of(&c, "MaestroHighErrorRate"),
            Some(SignalKind::ErrorRate)
        );
    }

    #[test]
    fn label_matchers_must_all_match_and_empty_means_absent() {
        let mut rule = SignalRule::new("*", SignalKind::CustomerReports);
        rule.matchers = labels(&[("team", "support"), ("silenced", "")]);
        let signals = SignalsConfig {
            rules: vec![rule],
            ..SignalsConfig::default()
        };
        let c = with(signals, vec![], &[]).unwrap();
        let kind = |extra: &[(&str, &str)]| {
            c.classify(&alert("TicketsSpike", extra, &[]))
                .map(|c| c.signal.kind)
        };
        assert_eq!(
            kind(&[("team", "support")]),
            Some(SignalKind::CustomerReports)
        );
        assert_eq!(kind(&[("team", "payments")]), None);
        assert_eq!(kind(&[("team", "support"), ("silenced", "yes")]), None);
        assert_eq!(kind(&[]), None);
    }

    #[test]
    fn canary_and_primary_labels_set_the_scope_unless_the_rule_does() {
        let c = classifier();
        let scope = |extra: &[(&str, &str)]| {
            c.classify(&alert("HighErrorRate", extra, &[]))
                .unwrap()
                .signal
                .scope
        };
        assert_eq!(scope(&[("track", "canary")]), Scope::Canary);
        assert_eq!(scope(&[("canary", "true")]), Scope::Canary);
        assert_eq!(scope(&[("track", "primary")]), Scope::Stable);
        assert_eq!(scope(&[("track", "stable")]), Scope::Stable);
        assert_eq!(scope(&[("canary", "false")]), Scope::Stable);
        assert_eq!(scope(&[("track", "blue")]), Scope::Any);
        assert_eq!(scope(&[]), Scope::Any);

        let mut rule = SignalRule::new("HighErrorRate", SignalKind::ErrorRate);
        rule.scope = Some(Scope::Canary);
        let signals = SignalsConfig {
            rules: vec![rule],
            ..SignalsConfig::default()
        };
        let c = with(signals, vec![], &[]).unwrap();
        let a = alert("HighErrorRate", &[("track", "primary")], &[]);
        assert_eq!(c.classify(&a).unwrap().signal.scope, Scope::Canary);
    }

    #[test]
    fn values_are_parsed_strictly() {
        let c = classifier();
        let read = |name: &str, value: &str| {
            let s = c
                .classify(&alert(name, &[], &[("value", value)]))
                .unwrap()
                .signal;
            (s.value, s.inconclusive)
        };
        for (name, raw, want) in [
            ("HighErrorRate", "0.124", Some(0.124)),
            ("HighErrorRate", "1e-3", Some(0.001)),
            ("HighErrorRate", " 0.05\n", Some(0.05)),
            ("HighErrorRate", "1", Some(1.0)),
            ("HighErrorRate", "-0", Some(0.0)),
            ("MaestroHighLatencyP95", "1.5", Some(1.5)),
            ("MaestroHighLatencyP95", ".25", Some(0.25)),
            ("MaestroHighLatencyP95", "2.5E+1", Some(25.0)),
        ] {
            assert_eq!(read(name, raw), (want, None), "{name} {raw:?}");
        }
        for (name, raw, why) in [
            ("HighErrorRate", "12%", "not a plain decimal"),
            ("HighErrorRate", "12.4 %", "not a plain decimal"),
            ("HighErrorRate", "abc", "not a plain decimal"),
            ("HighErrorRate", "NaN", "not a plain decimal"),
            ("HighErrorRate", "inf", "not a plain decimal"),
            ("HighErrorRate", "+Inf", "not a plain decimal"),
            ("HighErrorRate", "", "not a plain decimal"),
            ("HighErrorRate", "0x1", "not a plain decimal"),
            ("HighErrorRate", "1e", "not a plain decimal"),
            ("HighErrorRate", ".", "not a plain decimal"),
            ("MaestroHighLatencyP95", "1e999", "not a plain decimal"),
            ("MaestroHighLatencyP95", "250ms", "not a plain decimal"),
            ("HighErrorRate", "1.5", "looks like a percentage"),
            ("CPUThrottlingHigh", "90", "looks like a percentage"),
            ("MaestroHighLatencyP95", "-0.2", "negative"),
        ] {
            let (value, inconclusive) = read(name, raw);
            let reason = inconclusive.unwrap_or_else(|| panic!("{name} {raw:?} was believed"));
            assert_eq!(value, None, "{name} {raw:?}");
            assert!(reason.contains(why), "{name} {raw:?}: {reason}");
            assert!(
                reason.contains("\"value\""),
                "{reason} names the annotation"
            );
        }
    }

    #[test]
    fn a_bad_baseline_is_inconclusive_and_a_missing_value_is_just_unknown() {
        let c = classifier();
        let s = c
            .classify(&alert(
                "HighErrorRate",
                &[],
                &[("value", "0.12"), ("baseline", "5%")],
            ))
            .unwrap()
            .signal;
        assert_eq!((s.value, s.baseline), (Some(0.12), None));
        assert!(s.inconclusive.unwrap().contains("\"baseline\" = \"5%\""));

        let s = c
            .classify(&alert("HighErrorRate", &[], &[]))
            .unwrap()
            .signal;
        assert_eq!((s.value, s.baseline, s.inconclusive), (None, None, None));
    }

    #[test]
    fn a_rule_may_read_other_annotations_and_labels_stand_in_for_them() {
        let mut rule = SignalRule::new("CheckoutErrors", SignalKind::ErrorRate);
        rule.value_annotation = Some("ratio".into());
        let signals = SignalsConfig {
            rules: vec![rule],
            baseline_annotation: "previous".into(),
            ..SignalsConfig::default()
        };
        let c = with(signals, vec![], &[]).unwrap();
        let s = c
            .classify(&alert(
                "CheckoutErrors",
                &[("previous", "0.01")],
                &[("ratio", "0.2"), ("value", "7")],
            ))
            .unwrap()
            .signal;
        assert_eq!(
            (s.value, s.baseline, s.inconclusive),
            (Some(0.2), Some(0.01), None)
        );
    }

    #[test]
    fn the_fixture_alert_is_an_error_rate_signal_for_checkout_in_prod() {
        let now = Utc.with_ymd_and_hms(2026, 8, 22, 14, 3, 0).unwrap();
        let notification =
            AlertmanagerPayload::parse(FIRING.as_bytes(), &Bounds::default(), now).unwrap();
        let c = classifier();
        let first = &notification.alerts[0];
        let classified = c.classify(first).unwrap();
        let s = &classified.signal;
        assert_eq!(s.kind, SignalKind::ErrorRate);
        assert_eq!(
            s.target.as_ref().map(TargetRef::key).as_deref(),
            Some("default/prod/Deployment/checkout")
        );
        assert_eq!(s.scope, Scope::Any);
        assert_eq!((s.value, s.baseline, &s.inconclusive), (None, None, &None));
        assert_eq!(s.started_at, first.starts_at);
        assert_eq!(s.ended_at, None);
        assert_eq!(s.observations, 1);
        assert_eq!(s.source, SignalSource::Alert);
        assert_eq!(s.fingerprint, "9fc138bd6e224dae");
        assert_eq!(
            s.summary,
            "HighErrorRate: checkout is returning too many 5xx responses"
        );
        assert_eq!(classified.namespace.as_deref(), Some("prod"));
        for alert in &notification.alerts {
            assert_eq!(c.classify(alert).unwrap().signal.target, s.target);
        }
    }

    #[test]
    fn the_service_label_names_the_deployment() {
        let c = classifier();
        let found = c.target_for(&labels(&[("namespace", "prod"), ("service", "checkout")]));
        assert_eq!(
            found,
            Some(Target::discovered(TargetRef::deployment(
                "default", "prod", "checkout"
            )))
        );
    }

    #[test]
    fn discovery_prefers_deployment_then_app_then_service_then_pod_then_job() {
        let c = classifier();
        let name = |pairs: &[(&str, &str)]| {
            let mut l = labels(&[("namespace", "prod")]);
            l.extend(labels(pairs));
            c.target_for(&l).map(|t| t.target.name)
        };
        let all = [
            ("deployment", "a"),
            ("app", "b"),
            ("service", "c"),
            ("pod", "d-69c9cdb879-d9wfp"),
            ("job", "e"),
        ];
        assert_eq!(name(&all).as_deref(), Some("a"));
        assert_eq!(name(&all[1..]).as_deref(), Some("b"));
        assert_eq!(name(&all[2..]).as_deref(), Some("c"));
        assert_eq!(name(&all[3..]).as_deref(), Some("d"));
        assert_eq!(name(&all[4..]).as_deref(), Some("e"));
        assert_eq!(name(&[]), None);
        // Not a Kubernetes name: skipped, like an absent label.
        assert_eq!(
            name(&[("service", "Checkout API"), ("job", "checkout")]).as_deref(),
            Some("checkout")
        );
        // No namespace, no discovery.
        assert_eq!(c.target_for(&labels(&[("service", "checkout")])), None);
    }

    #[test]
    fn kube_state_metrics_alerts_map_to_the_pods_deployment_not_the_exporter() {
        let c = classifier();
        let a = alert(
            "KubePodCrashLooping",
            &[
                ("service", "kube-prometheus-stack-kube-state-metrics"),
                ("job", "kube-state-metrics"),
                ("pod", "payments-api-7d4b9c8f5-x2x9z"),
                ("container", "api"),
            ],
            &[],
        );
        let s = c.classify(&a).unwrap().signal;
        assert_eq!(s.kind, SignalKind::CrashLoop);
        assert_eq!(
            s.target.map(|t| t.key()).as_deref(),
            Some("default/prod/Deployment/payments-api")
        );
        // A StatefulSet's pod is no Deployment, and the exporter is no target either.
        let mut statefulset = a.clone();
        statefulset.labels.remove("service");
        statefulset.labels.insert("pod".into(), "postgres-0".into());
        assert_eq!(c.classify(&statefulset).unwrap().signal.target, None);
    }

    #[test]
    fn pod_names_give_their_deployment_only_when_they_have_its_shape() {
        for (pod, want) in [
            ("checkout-69c9cdb879-d9wfp", Some("checkout")),
            ("my-app-7d4b9c8f5-x2x9z", Some("my-app")),
            ("postgres-0", None),
            ("node-exporter-x2x9z", None),
            ("backup-28374650-x2x9z", None),
            ("checkout-69c9cdb879-d9wf", None),
            ("-69c9cdb879-d9wfp", None),
        ] {
            assert_eq!(deployment_of_pod(pod).as_deref(), want, "{pod}");
        }
    }

    #[test]
    fn configured_targets_win_over_discovery() {
        let checkout = TargetConfig {
            environment: Some("production".into()),
            helm_release: Some("checkout".into()),
            cd_workflow: Some("cd-rollback.yml".into()),
            region: Some("eu-west-1".into()),
            dependencies: vec!["database".into()],
            gitops: Some("argocd".into()),
            ..target("prod", "checkout")
        };
        let api = TargetConfig {
            matchers: labels(&[("team", "payments"), ("namespace", "prod")]),
            ..target("prod", "payments-api")
        };
        let c = with(
            SignalsConfig::default(),
            vec![checkout, api],
            &[("production", Mode::Auto)],
        )
        .unwrap();

        // Discovered as prod/checkout, which is configured: its settings come along.
        let t = c
            .target_for(&labels(&[("namespace", "prod"), ("service", "checkout")]))
            .unwrap();
        assert_eq!(t.target.key(), "default/prod/Deployment/checkout");
        assert_eq!(t.mode, Mode::Auto);
        assert_eq!(t.helm_release.as_deref(), Some("checkout"));
        assert_eq!(t.dependencies, ["database"]);
        assert_eq!(t.gitops.as_deref(), Some("argocd"));
        assert_eq!(c.target(&t.target), t);

        // Matchers beat the labels' own workload name.
        let t = c
            .target_for(&labels(&[
                ("namespace", "prod"),
                ("service", "checkout"),
                ("team", "payments"),
            ]))
            .unwrap();
        assert_eq!(t.target.name, "payments-api");
        assert_eq!(t.mode, Mode::Recommend);

        // Not configured: defaults.
        let other = TargetRef::deployment("default", "prod", "search");
        assert_eq!(c.target(&other), Target::discovered(other.clone()));
        assert_eq!(
            c.targets()
                .iter()
                .map(|t| t.target.name.as_str())
                .collect::<Vec<_>>(),
            ["checkout", "payments-api"]
        );
    }

    #[test]
    fn a_target_without_matchers_is_not_matched_by_every_alert() {
        let c = with(
            SignalsConfig::default(),
            vec![target("prod", "checkout")],
            &[],
        )
        .unwrap();
        let t = c
            .target_for(&labels(&[("namespace", "prod"), ("service", "search")]))
            .unwrap();
        assert_eq!(t.target.name, "search");
        assert_eq!(c.target_for(&labels(&[("alertname", "X")])), None);
    }

    #[test]
    fn resolved_alerts_end_and_summaries_stay_short() {
        let c = classifier();
        let mut a = alert(
            "HighErrorRate",
            &[],
            &[(
                "summary",
                &format!("line one\nline two {}", "x".repeat(400)),
            )],
        );
        a.status = AlertStatus::Resolved;
        a.ends_at = Some(t0() + chrono::Duration::minutes(9));
        let s = c.classify(&a).unwrap().signal;
        assert_eq!(s.ended_at, a.ends_at);
        assert_eq!(s.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(s.summary.starts_with("HighErrorRate: line one line two x"));
        assert!(s.summary.ends_with('…'));
        let s = c
            .classify(&alert("HighErrorRate", &[], &[]))
            .unwrap()
            .signal;
        assert_eq!(s.summary, "HighErrorRate");
    }

    fn dependency_signal(c: &Classifier, name: &str, namespace: &str) -> Classified {
        let mut a = alert(name, &[], &[]);
        a.labels.insert("namespace".into(), namespace.into());
        let classified = c.classify(&a).unwrap();
        assert_eq!(classified.signal.kind, SignalKind::Dependency);
        classified
    }

    #[test]
    fn a_dependency_without_config_holds_targets_in_its_namespace_and_declared_dependents() {
        let orders = TargetConfig {
            dependencies: vec!["database".into()],
            ..target("shop", "orders")
        };
        let c = with(SignalsConfig::default(), vec![orders], &[]).unwrap();
        let db = dependency_signal(&c, "PostgresqlDown", "prod");
        assert_eq!(db.signal.dependency.as_deref(), Some("database"));
        assert_eq!(db.signal.target, None);
        assert_eq!(db.namespace.as_deref(), Some("prod"));
        let depends = |ns: &str, name: &str| {
            let t = c.target(&TargetRef::deployment("default", ns, name));
            c.depends_on(&t, &db)
        };
        assert!(depends("prod", "checkout"), "same namespace");
        assert!(!depends("search", "frontend"), "another namespace");
        assert!(depends("shop", "orders"), "declares the database");
        // A workload signal is no dependency of anything.
        let errors = c.classify(&alert("HighErrorRate", &[], &[])).unwrap();
        let checkout = c.target(&TargetRef::deployment("default", "prod", "checkout"));
        assert!(!c.depends_on(&checkout, &errors));
    }

    #[test]
    fn configured_dependencies_classify_their_alerts_and_list_their_dependents() {
        let signals = SignalsConfig {
            dependencies: vec![
                DependencyConfig {
                    name: "payments-db".into(),
                    alertnames: vec!["PostgresqlDown".into(), "PgBouncer*".into()],
                    matchers: labels(&[("cluster_name", "payments")]),
                    targets: vec![
                        "payments-api".into(),
                        "shop/orders".into(),
                        "default/prod/Deployment/checkout".into(),
                    ],
                },
                DependencyConfig {
                    name: "cache".into(),
                    ..DependencyConfig::default()
                },
                DependencyConfig {
                    name: "ingress".into(),
                    targets: vec!["frontend".into()],
                    ..DependencyConfig::default()
                },
            ],
            ..SignalsConfig::default()
        };
        let c = with(signals, vec![], &[]).unwrap();
        let mut a = alert("PgBouncerDown", &[("cluster_name", "payments")], &[]);
        a.labels.insert("namespace".into(), "databases".into());
        let db = c.classify(&a).unwrap();
        assert_eq!(db.signal.dependency.as_deref(), Some("payments-db"));
        // The configured name wins over the built-in `Postgres*` → database.
        let mut a = alert("PostgresqlDown", &[("cluster_name", "payments")], &[]);
        a.labels.insert("namespace".into(), "databases".into());
        assert_eq!(
            c.classify(&a).unwrap().signal.dependency.as_deref(),
            Some("payments-db")
        );
        // Without the matcher it is the generic database.
        let generic = dependency_signal(&c, "PostgresqlDown", "prod");
        assert_eq!(generic.signal.dependency.as_deref(), Some("database"));

        let depends = |signal: &Classified, ns: &str, name: &str| {
            let t = c.target(&TargetRef::deployment("default", ns, name));
            c.depends_on(&t, signal)
        };
        assert!(depends(&db, "pay", "payments-api"), "by name");
        assert!(depends(&db, "shop", "orders"), "by namespace/name");
        assert!(!depends(&db, "other", "orders"), "not that orders");
        assert!(depends(&db, "prod", "checkout"), "by key");
        assert!(!depends(&db, "databases", "search"), "listed targets only");

        let cache = dependency_signal(&c, "RedisDown", "prod");
        assert!(depends(&cache, "prod", "checkout"), "no list: namespace");
        assert!(!depends(&cache, "shop", "orders"));

        let ingress = dependency_signal(&c, "NginxIngressControllerDown", "prod");
        assert!(depends(&ingress, "web", "frontend"));
        assert!(
            !depends(&ingress, "prod", "checkout"),
            "a list replaces the namespace"
        );
    }

    #[test]
    fn config_errors_name_their_keys() {
        let environments = [("production", Mode::Auto)];
        let rule = |edit: fn(&mut SignalRule)| {
            let mut rule = SignalRule::new("HighErrorRate", SignalKind::ErrorRate);
            edit(&mut rule);
            SignalsConfig {
                rules: vec![SignalRule::new("A", SignalKind::Custom), rule],
                ..SignalsConfig::default()
            }
        };
        let key = |signals: SignalsConfig, targets: Vec<TargetConfig>| {
            with(signals, targets, &environments)
                .expect_err("invalid config accepted")
                .key
        };
        let ok = || target("prod", "checkout");
        let targets = |edit: fn(&mut TargetConfig)| {
            let mut bad = target("prod", "search");
            edit(&mut bad);
            vec![ok(), target("prod", "orders"), bad]
        };
        let cases: Vec<(String, &str)> = vec![
            (
                key(rule(|r| r.alertname = "Maestro[A-Z]*".into()), vec![]),
                "signals.rules[1].alertname",
            ),
            (
                key(rule(|r| r.alertname = String::new()), vec![]),
                "signals.rules[1].alertname",
            ),
            (
                key(rule(|r| r.alertname = "High Error".into()), vec![]),
                "signals.rules[1].alertname",
            ),
            (
                key(rule(|r| r.matchers = labels(&[("bad-name", "x")])), vec![]),
                "signals.rules[1].matchers.bad-name",
            ),
            (
                key(rule(|r| r.kind = SignalKind::Dependency), vec![]),
                "signals.rules[1].dependency",
            ),
            (
                key(rule(|r| r.dependency = Some("database".into())), vec![]),
                "signals.rules[1].dependency",
            ),
            (
                key(rule(|r| r.value_annotation = Some(String::new())), vec![]),
                "signals.rules[1].value_annotation",
            ),
            (
                key(
                    SignalsConfig {
                        value_annotation: "1value".into(),
                        ..SignalsConfig::default()
                    },
                    vec![],
                ),
                "signals.value_annotation",
            ),
            (
                key(
                    SignalsConfig {
                        dependencies: vec![DependencyConfig::default()],
                        ..SignalsConfig::default()
                    },
                    vec![],
                ),
                "signals.dependencies[0].name",
            ),
            (
                key(
                    SignalsConfig {
                        dependencies: vec![DependencyConfig {
                            name: "db".into(),
                            alertnames: vec!["Pg*".into(), "Pg(Down)".into()],
                            ..DependencyConfig::default()
                        }],
                        ..SignalsConfig::default()
                    },
                    vec![],
                ),
                "signals.dependencies[0].alertnames[1]",
            ),
            (
                key(
                    SignalsConfig {
                        dependencies: vec![
                            DependencyConfig {
                                name: "db".into(),
                                ..DependencyConfig::default()
                            },
                            DependencyConfig {
                                name: "db".into(),
                                ..DependencyConfig::default()
                            },
                        ],
                        ..SignalsConfig::default()
                    },
                    vec![],
                ),
                "signals.dependencies[1].name",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.environment = Some("staging".into())),
                ),
                "targets[2].environment",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.name = String::new()),
                ),
                "targets[2].name",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.namespace = String::new()),
                ),
                "targets[2].namespace",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.name = "checkout".into()),
                ),
                "targets[2]",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.cluster = Some("Prod EU".into())),
                ),
                "targets[2].cluster",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.kind = "Deploy/ment".into()),
                ),
                "targets[2].kind",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.gitops = Some("spinnaker".into())),
                ),
                "targets[2].gitops",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.helm_release = Some(String::new())),
                ),
                "targets[2].helm_release",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.dependencies = vec!["db".into(), "db".into()]),
                ),
                "targets[2].dependencies[1]",
            ),
            (
                key(
                    SignalsConfig::default(),
                    targets(|t| t.matchers = labels(&[("", "x")])),
                ),
                "targets[2].matchers.",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        // The same name in another cluster is another target.
        let mut elsewhere = ok();
        elsewhere.cluster = Some("prod-us".into());
        assert!(with(SignalsConfig::default(), vec![ok(), elsewhere], &[]).is_ok());
    }

    #[test]
    fn the_default_rules_are_valid_and_every_kind_but_canary_and_customer_ones_has_one() {
        let rules = default_signal_rules();
        assert!(with(SignalsConfig::default(), vec![], &[]).is_ok());
        let kinds: BTreeSet<SignalKind> = rules.iter().map(|r| r.kind).collect();
        for kind in SignalKind::ALL {
            let expected = !matches!(
                kind,
                SignalKind::CanaryFailed | SignalKind::CustomerReports | SignalKind::Custom
            );
            assert_eq!(kinds.contains(&kind), expected, "{}", kind.as_str());
        }
    }

    #[test]
    fn globs_match_star_and_question_mark() {
        let glob = |p: &str| Glob::parse("k", p).unwrap();
        let matches = |p: &str, s: &str| glob(p).matches(&s.chars().collect::<Vec<_>>());
        for (p, s) in [
            ("Maestro*Latency*", "MaestroHighLatencyP95"),
            ("Maestro*Latency*", "MaestroLatency"),
            ("*", ""),
            ("*ErrorRate*", "ErrorRate"),
            ("Kube?od*", "KubePodNotReady"),
            ("a*b*c", "aXbYbZc"),
            ("**x", "abx"),
        ] {
            assert!(matches(p, s), "{p} ~ {s}");
        }
        for (p, s) in [
            ("Maestro*Latency*", "MaestroHighErrorRate"),
            ("HighErrorRate", "highErrorRate"),
            ("HighErrorRate", "HighErrorRateX"),
            ("Kube?od*", "Kubeod"),
            ("a*b*c", "aXbYbZ"),
        ] {
            assert!(!matches(p, s), "{p} !~ {s}");
        }
    }

    #[test]
    fn config_reads_from_toml_with_defaults_and_prints_back() {
        #[derive(Debug, Deserialize, Serialize, PartialEq)]
        struct Root {
            #[serde(default)]
            targets: Vec<TargetConfig>,
            #[serde(default)]
            environments: BTreeMap<String, EnvironmentConfig>,
            #[serde(default)]
            signals: SignalsConfig,
        }
        let text = r#"
            [[targets]]
            namespace = "prod"
            name = "checkout"
            environment = "production"
            matchers = { service = "checkout", namespace = "prod" }

            [environments.production]
            mode = "auto"
            [environments.staging]

            [[signals.rules]]
            alertname = "Maestro*Latency*"
            kind = "latency_p95"
            scope = "canary"

            [[signals.dependencies]]
            name = "database"
            targets = ["checkout"]
        "#;
        let root: Root = toml::from_str(text).unwrap();
        let t = &root.targets[0];
        assert_eq!((t.kind.as_str(), t.cluster.as_ref()), ("Deployment", None));
        assert_eq!(t.matchers.len(), 2);
        assert_eq!(root.environments["production"].mode, Mode::Auto);
        assert_eq!(root.environments["staging"].mode, Mode::Recommend);
        assert_eq!(root.signals.value_annotation, "value");
        assert_eq!(root.signals.rules[0].scope, Some(Scope::Canary));
        assert_eq!(root.signals.rules[0].matchers.len(), 0);
        let printed = toml::to_string_pretty(&root).unwrap();
        assert_eq!(toml::from_str::<Root>(&printed).unwrap(), root);
        assert!(
            toml::from_str::<Root>("[[targets]]\nnamespace = \"prod\"\nnmae = \"x\"").is_err(),
            "unknown fields are rejected"
        );
        let environments = root.environments.clone();
        assert!(Classifier::new(&root.signals, &root.targets, &environments, "default").is_ok());
    }
}
