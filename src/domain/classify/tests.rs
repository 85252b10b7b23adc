use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::classifier::deployment_of_pod;
use super::glob::Glob;
use super::*;
use crate::domain::{
    Alert, AlertStatus, Labels, Mode, Scope, SignalKind, SignalSource, Target, TargetRef,
};
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
    rule.matchers = labels(&[("team", "support"), ("silenced", "")]).into();
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
fn a_rollout_label_names_an_argo_rollout_before_any_other_workload_label() {
    let c = classifier();
    let found = c.target_for(&labels(&[
        ("namespace", "prod"),
        ("rollout", "checkout"),
        ("app", "checkout-web"),
    ]));
    assert_eq!(
        found.map(|t| t.target.key()).as_deref(),
        Some("default/prod/Rollout/checkout")
    );
    // Not an object name: ignored, and the next label names the workload.
    let found = c.target_for(&labels(&[
        ("namespace", "prod"),
        ("rollout", "-x"),
        ("app", "checkout"),
    ]));
    assert_eq!(
        found.map(|t| t.target.key()).as_deref(),
        Some("default/prod/Deployment/checkout")
    );
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
        service: None,
        dependencies: vec!["database".into()],
        gitops: Some("argocd".into()),
        argocd_app: None,
        ..target("prod", "checkout")
    };
    let api = TargetConfig {
        matchers: labels(&[("team", "payments"), ("namespace", "prod")]).into(),
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
fn alertmanager_matchers_map_alerts_to_a_target_and_a_bad_one_names_itself() {
    let mut checkout = target("prod", "checkout");
    checkout.matchers = MatcherConfig::List(vec![
        "app=checkout".into(),
        r#"namespace=~"prod|prod-canary""#.into(),
        "severity!=info".into(),
    ]);
    let c = with(SignalsConfig::default(), vec![checkout.clone()], &[]).unwrap();
    // The configured target (prod/checkout), or another one discovered from the labels.
    let key = |pairs: &[(&str, &str)]| c.target_for(&labels(pairs)).map(|t| t.target.key());
    let configured = Some("default/prod/Deployment/checkout".to_string());
    assert_eq!(
        key(&[
            ("app", "checkout"),
            ("namespace", "prod-canary"),
            ("severity", "page")
        ]),
        configured
    );
    // Anchored: preprod is not prod (the alert names preprod's own checkout); and
    // severity info is excluded.
    assert_eq!(
        key(&[("app", "checkout"), ("namespace", "preprod")]),
        Some("default/preprod/Deployment/checkout".to_string())
    );
    assert_eq!(key(&[("app", "checkout"), ("severity", "info")]), None);

    checkout.matchers = MatcherConfig::List(vec!["app=checkout".into(), "env=~\"(prod\"".into()]);
    let err = with(SignalsConfig::default(), vec![checkout], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("targets[0].matchers[1]"), "{err}");
    assert!(err.contains("not a regular expression"), "{err}");
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
                matchers: labels(&[("cluster_name", "payments")]).into(),
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
            key(
                rule(|r| r.matchers = labels(&[("bad-name", "x")]).into()),
                vec![],
            ),
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
                targets(|t| t.matchers = labels(&[("", "x")]).into()),
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
    assert!(matches!(&t.matchers, MatcherConfig::Equal(m) if m.len() == 2));
    assert_eq!(root.environments["production"].mode, Mode::Auto);
    assert_eq!(root.environments["staging"].mode, Mode::Recommend);
    assert_eq!(root.signals.value_annotation, "value");
    assert_eq!(root.signals.rules[0].scope, Some(Scope::Canary));
    assert!(root.signals.rules[0].matchers.is_empty());
    let printed = toml::to_string_pretty(&root).unwrap();
    assert_eq!(toml::from_str::<Root>(&printed).unwrap(), root);
    assert!(
        toml::from_str::<Root>("[[targets]]\nnamespace = \"prod\"\nnmae = \"x\"").is_err(),
        "unknown fields are rejected"
    );
    let environments = root.environments.clone();
    assert!(Classifier::new(&root.signals, &root.targets, &environments, "default").is_ok());
}
