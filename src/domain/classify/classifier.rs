//! The classifier: alerts to signals and targets, and which targets a dependency holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compile::{
    ConfiguredTarget, Rule, check_label_name, check_text, compile_rule, compile_target,
    is_dns_label, is_object_name,
};
use super::config::{
    ClassifyConfigError, EnvironmentConfig, SignalsConfig, TargetConfig, default_signal_rules,
    invalid,
};
use super::glob::Glob;
use super::matcher;
use super::{DEPENDENCY_LABEL, KIND_LABEL, MAX_SUMMARY_CHARS};

use crate::domain::{
    Alert, AlertStatus, AlertTarget, Labels, Scope, Signal, SignalKind, SignalSource, Target,
    TargetRef,
};

/// Labels that name the workload an alert is about, most specific first. A `pod` label
/// of a Deployment's pod (`NAME-HASH-SUFFIX`) is tried after `service`, before `job`.
const WORKLOAD_LABELS: [&str; 3] = ["deployment", "app", "service"];

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
            let matchers = matcher::compile(&format!("{key}.matchers"), &dependency.matchers)?;
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
            .find(|t| !t.matchers.is_empty() && matcher::all_match(&t.matchers, labels))
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
        self.classify_matched(alert, self.matching(alert)?)
    }

    /// What `alert` is about: the target its signal names ([`Classifier::classify`]),
    /// without reading its values. The store indexes alerts by it.
    pub fn alert_target(&self, alert: &Alert) -> AlertTarget {
        match self.matching(alert) {
            None => AlertTarget::Ignored,
            Some(m) if m.kind == SignalKind::Dependency => AlertTarget::Untargeted,
            Some(_) => self
                .target_for(&alert.labels)
                .map_or(AlertTarget::Untargeted, |t| AlertTarget::Target(t.target)),
        }
    }

    /// A fingerprint of what decides [`Classifier::alert_target`] (the whole config it
    /// was built from): alerts mapped by another classifier are mapped again.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("{self:?}").as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    fn classify_matched(&self, alert: &Alert, matched: Match<'_>) -> Option<Classified> {
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
        // Argo Rollouts' own metrics and most rules about a Rollout name it `rollout`.
        if let Some(rollout) = label("rollout") {
            return Some(TargetRef::new(
                &self.cluster,
                namespace,
                crate::domain::action::ROLLOUT_KIND,
                &rollout,
            ));
        }
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

fn is_exporter(value: &str) -> bool {
    ["kube-state-metrics", "kubelet", "node-exporter"]
        .iter()
        .any(|exporter| value.ends_with(exporter))
}

/// The Deployment a pod belongs to, when its name has the shape a Deployment's
/// ReplicaSet gives it: `NAME-HASH-SUFFIX`, where the pod-template hash (up to 10)
/// and the suffix (5) are drawn from Kubernetes' vowel-free alphabet.
pub(super) fn deployment_of_pod(pod: &str) -> Option<String> {
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
