//! Config compiled for the classifier: rules and targets checked, globs parsed.

use std::collections::{BTreeMap, BTreeSet};

use super::config::{ClassifyConfigError, EnvironmentConfig, SignalRule, TargetConfig, invalid};
use super::glob::Glob;
use super::matcher::{self, Matcher};
use crate::domain::{Labels, Mode, Scope, SignalKind, Target, TargetRef};

#[derive(Debug, Clone)]
pub(super) struct ConfiguredTarget {
    pub(super) target: Target,
    pub(super) matchers: Vec<Matcher>,
}

/// A rule compiled: globs parsed, annotation names resolved at classification.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    /// Empty: any alertname.
    pub(super) alertnames: Vec<Glob>,
    pub(super) matchers: Vec<Matcher>,
    pub(super) kind: SignalKind,
    pub(super) scope: Option<Scope>,
    pub(super) dependency: Option<String>,
    pub(super) value_annotation: Option<String>,
    pub(super) baseline_annotation: Option<String>,
}

impl Rule {
    pub(super) fn matches(&self, alertname: &[char], labels: &Labels) -> bool {
        (self.alertnames.is_empty() || self.alertnames.iter().any(|g| g.matches(alertname)))
            && matcher::all_match(&self.matchers, labels)
    }
}

pub(super) fn compile_rule(key: &str, rule: &SignalRule) -> Result<Rule, ClassifyConfigError> {
    let glob = Glob::parse(&format!("{key}.alertname"), &rule.alertname)?;
    let matchers = matcher::compile(&format!("{key}.matchers"), &rule.matchers)?;
    if rule.kind.is_internal() {
        return Err(invalid(
            format!("{key}.kind"),
            format!(
                "{} is made by rollwarden itself, never from an alert",
                rule.kind.as_str()
            ),
        ));
    }
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

pub(super) fn compile_target(
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
    if let Some(service) = &config.service
        && !crate::domain::field::Field::Name.fits(service)
    {
        return Err(invalid(
            format!("{key}.service"),
            format!("{service:?} is not a DNS-1123 name"),
        ));
    }
    if let Some(app) = &config.argocd_app {
        if config.gitops.as_deref() != Some("argocd") {
            return Err(invalid(
                format!("{key}.argocd_app"),
                "needs gitops = \"argocd\"",
            ));
        }
        if !crate::domain::field::Field::Name.fits(app) {
            return Err(invalid(
                format!("{key}.argocd_app"),
                format!("{app:?} is not an Application name"),
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
        if crate::domain::action::ActionKind::parse(action).is_none_or(|a| {
            matches!(
                a,
                crate::domain::action::ActionKind::Freeze
                    | crate::domain::action::ActionKind::Federation { .. }
            )
        }) {
            return Err(invalid(
                format!("{key}.actions[{i}]"),
                format!(
                    "{action:?} is not rollout_undo, helm_rollback, workflow_dispatch, \
                     argo_abort, argo_undo, argocd_rollback, command:NAME or webhook:NAME"
                ),
            ));
        }
    }
    let matchers = matcher::compile(&format!("{key}.matchers"), &config.matchers)?;
    Ok(ConfiguredTarget {
        target: Target {
            target: TargetRef::new(cluster, &config.namespace, &config.kind, &config.name),
            region: config.region.clone(),
            service: config.service.clone(),
            environment: config.environment.clone(),
            mode,
            helm_release: config.helm_release.clone(),
            cd_workflow: config.cd_workflow.clone(),
            dependencies: config.dependencies.clone(),
            gitops: config.gitops.clone(),
            argocd_app: config.argocd_app.clone(),
            actions: config.actions.clone(),
        },
        matchers,
    })
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn check_label_name(key: &str, name: &str) -> Result<(), ClassifyConfigError> {
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

pub(super) fn check_text(key: &str, value: &str) -> Result<(), ClassifyConfigError> {
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

/// DNS-1123 label: namespaces and cluster names.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// DNS-1123 subdomain: Deployment names.
pub(super) fn is_object_name(s: &str) -> bool {
    // A DNS-1123 subdomain, as the API server takes object names: no leading `-`.
    crate::domain::field::Field::Name.fits(s)
}
