//! decide() in the hard cases of issue 12: known-bad revisions (3), a rollback loop
//! across recoveries (4), a failing health check before G1 fires (6), a canary run
//! first seen mid-way (7), CI-only history (8), and the records made of the decisions
//! (9–12). Each test fails on the code before the fix.

use super::*;
use crate::domain::action::{self, FreezeScope, ROLLOUT_UNDO};
use crate::domain::canary::{self, Answer, CanaryStatus, Hook};
use crate::domain::decision::PendingRule;
use crate::domain::deploy::{START, START_UNKNOWN, status};
use crate::domain::report::{evidence_record, incident_report};
use crate::domain::{Deploy, DeploySource, Mode, Scope, SignalSource, TargetRef};

/// A time on the test day: `at("10:05")` or `at("10:05:30")`.
fn at(hm: &str) -> DateTime<Utc> {
    let hms = if hm.len() == 5 {
        format!("{hm}:00")
    } else {
        hm.to_string()
    };
    format!("2026-08-22T{hms}Z").parse().unwrap()
}

fn now() -> DateTime<Utc> {
    at("10:30")
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
        dependencies: vec!["database".into()],
        gitops: None,
        argocd_app: None,
        actions: Vec::new(),
    }
}

fn image(tag: &str) -> String {
    format!("ghcr.io/acme/checkout:{tag}")
}

/// A ReplicaSet revision running `tag`: a reused ReplicaSet keeps its template hash.
fn rollout(id: i64, revision: &str, tag: &str, started: &str) -> DeployRecord {
    let mut deploy = Deploy::new(
        workload(),
        DeploySource::Kubernetes,
        revision,
        status::SUPERSEDED,
        at(started),
    );
    deploy.images = vec![image(tag)];
    deploy.version = Some(tag.into());
    deploy.pod_template_hash = Some(format!("hash-{tag}"));
    DeployRecord { id, deploy }
}

fn ci(id: i64, run: &str, tag: Option<&str>, started: &str) -> DeployRecord {
    let mut deploy = Deploy::new(
        workload(),
        DeploySource::Ci,
        run,
        status::SUCCEEDED,
        at(started),
    );
    deploy.images = tag.map(image).into_iter().collect();
    deploy.version = tag.map(str::to_owned);
    DeployRecord { id, deploy }
}

/// The last deploy is the live one.
fn live(mut deploys: Vec<DeployRecord>) -> Vec<DeployRecord> {
    if let Some(last) = deploys.last_mut() {
        last.deploy.status = status::DEPLOYED.into();
    }
    deploys
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
        summary: String::new(),
    }
}

fn errors(started: &str) -> Signal {
    signal(SignalKind::ErrorRate, Some(0.07), at(started))
}

fn decide_at(
    deploys: &[DeployRecord],
    signals: &[Signal],
    history: &History,
    now: DateTime<Utc>,
) -> Decision {
    decide(
        &Policy::default(),
        &target(),
        deploys,
        signals,
        &[],
        history,
        now,
    )
}

fn run(deploys: &[DeployRecord], signals: &[Signal]) -> Decision {
    decide_at(deploys, signals, &History::default(), now())
}

fn codes(d: &Decision) -> Vec<&'static str> {
    d.holds.iter().map(HoldReason::code).collect()
}

fn to_id(d: &Decision) -> Option<i64> {
    d.rollback_to.as_ref().map(|r| r.id)
}

// 3. Known-bad revisions.

/// A → B → A (someone rolled B back) → B again → C, which fails: B is the latest
/// healthy revision before C, but a rollback went away from it.
#[test]
fn a_revision_rolled_back_away_from_is_never_the_rollback_target() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "08:30"),
        rollout(3, "3", "v1", "08:40"),
        rollout(4, "4", "v2", "09:00"),
        rollout(5, "5", "v3", "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(to_id(&d), Some(3), "{}", d.reason);
    assert_eq!(
        d.plan.as_ref().unwrap().kubernetes_revision.as_deref(),
        Some("3")
    );
}

/// CI runs: v1, v2, the rollback workflow's run of v1, v2 again, v3 failing. The run
/// of v2 before v3 is the latest that succeeded, but a rollback went away from v2.
#[test]
fn a_ci_revision_rolled_back_by_the_workflow_is_never_the_rollback_target() {
    let deploys = live(vec![
        ci(1, "101", Some("v1"), "08:00"),
        ci(2, "102", Some("v2"), "08:30"),
        ci(3, "103", Some("v1"), "08:50"),
        ci(4, "104", Some("v2"), "09:00"),
        ci(5, "105", Some("v3"), "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    assert_eq!(to_id(&d), Some(3), "{}", d.reason);
    assert_eq!(
        d.plan.as_ref().unwrap().rollback_images,
        [image("v1")],
        "the images set back are v1's"
    );
}

/// Helm says a revision is a rollback: the revision before it is known bad, whatever
/// it runs.
#[test]
fn a_helm_rollback_marks_the_revision_it_left_as_bad() {
    let helm = |id: i64, revision: &str, version: &str, started: &str, description: &str| {
        let mut deploy = Deploy::new(
            TargetRef::helm_release("prod-eu", "shop", "checkout"),
            DeploySource::Helm,
            revision,
            status::SUPERSEDED,
            at(started),
        );
        deploy.chart = Some("checkout".into());
        deploy.chart_version = Some(version.into());
        deploy.app_version = Some(version.into());
        deploy.description = Some(description.into());
        DeployRecord { id, deploy }
    };
    let mut t = target();
    t.target = TargetRef::helm_release("prod-eu", "shop", "checkout");
    t.helm_release = Some("checkout".into());
    let deploys = live(vec![
        helm(1, "1", "1.0.0", "08:00", "Install complete"),
        helm(2, "2", "1.1.0", "08:30", "Upgrade complete"),
        helm(3, "3", "1.0.0", "08:45", "Rollback to 1"),
        helm(4, "4", "1.1.0", "09:00", "Upgrade complete"),
        helm(5, "5", "1.2.0", "10:00", "Upgrade complete"),
    ]);
    let mut errors = errors("10:05");
    errors.target = Some(t.target.clone());
    let d = decide(
        &Policy::default(),
        &t,
        &deploys,
        &[errors],
        &[],
        &History::default(),
        now(),
    );
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(to_id(&d), Some(3), "{}", d.reason);
}

#[test]
fn a_redeploy_of_a_known_bad_revision_is_named_in_the_reason() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "08:30"),
        rollout(3, "3", "v1", "08:40"),
        rollout(4, "4", "v2", "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    assert_eq!((d.verdict, to_id(&d)), (Verdict::Rollback, Some(3)));
    assert!(
        d.reason.contains(
            "kubernetes revision 4 (v2) deploys kubernetes revision 2 (v2) again, which was \
             rolled back at 2026-08-22 08:40 UTC (kubernetes revision 3 (v1))"
        ),
        "{}",
        d.reason
    );
    // With nothing firing yet, it is still evidence: watch it.
    let quiet = run(&deploys, &[]);
    assert_eq!(quiet.verdict, Verdict::Monitor, "{}", quiet.reason);
    assert!(
        quiet
            .reason
            .contains("deploys kubernetes revision 2 (v2) again")
    );
    // Going back to the good revision is no such redeploy.
    let back = run(&deploys[..3], &[]);
    assert_eq!(back.verdict, Verdict::Ok, "{}", back.reason);
}

/// A → B → A → B: B back is a redeploy of a known-bad revision, not a rollback away
/// from A, so A stays the revision to return to.
#[test]
fn returning_to_a_known_bad_revision_does_not_make_the_good_one_bad() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "08:30"),
        rollout(3, "3", "v1", "08:40"),
        rollout(4, "4", "v2", "09:00"),
        rollout(5, "5", "v3", "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    assert_eq!(to_id(&d), Some(3));
}

// 4. A rollback loop across recoveries.

/// B deployed, rolled back, recovered from — three times within the hour, each time
/// B came back. The fourth rollback away from B is held and escalated, though the
/// target recovered after each.
#[test]
fn recovery_does_not_reset_rollbacks_away_from_the_same_revision() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "09:00"),
        rollout(3, "3", "v1", "09:05:50"),
        rollout(4, "4", "v2", "09:15"),
        rollout(5, "5", "v1", "09:20:50"),
        rollout(6, "6", "v2", "09:30"),
        rollout(7, "7", "v1", "09:35:50"),
        rollout(8, "8", "v2", "09:45"),
    ]);
    let now = at("09:50");
    let history = History {
        automatic_rollbacks: vec![at("09:06"), at("09:21"), at("09:36")],
        last_rollback: Some(at("09:36")),
        recovered_at: Some(at("09:40")),
    };
    let d = decide_at(&deploys, &[errors("09:46")], &history, now);
    assert_eq!(
        (d.verdict, codes(&d)),
        (Verdict::Hold, vec!["loop_guard"]),
        "{}",
        d.reason
    );
    match &d.holds[0] {
        HoldReason::LoopGuard {
            rollbacks_in_window,
            before_recovery,
            ..
        } => assert_eq!((*rollbacks_in_window, *before_recovery), (3, 3)),
        other => panic!("{other:?}"),
    }
    assert!(
        d.reason
            .contains("rolled back this same revision before the target recovered")
    );
    assert!(
        d.escalate
            .as_deref()
            .is_some_and(|e| e.starts_with("loop guard: 3 automatic rollbacks"))
    );
    // The worker's check before executing agrees.
    let suspect = d.suspect.as_ref().unwrap();
    assert!(loop_guard(&Policy::default(), &history, &deploys, Some(suspect), now).is_some());
    assert!(loop_guard(&Policy::default(), &history, &deploys, None, now).is_none());
}

/// The recovery still resets the guard for another revision.
#[test]
fn recovery_still_resets_the_guard_for_another_revision() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "09:00"),
        rollout(3, "3", "v1", "09:05:50"),
        rollout(4, "4", "v2", "09:15"),
        rollout(5, "5", "v1", "09:20:50"),
        rollout(6, "6", "v2", "09:30"),
        rollout(7, "7", "v1", "09:35:50"),
        rollout(8, "8", "v3", "09:45"),
    ]);
    let history = History {
        automatic_rollbacks: vec![at("09:06"), at("09:21"), at("09:36")],
        last_rollback: Some(at("09:36")),
        recovered_at: Some(at("09:40")),
    };
    let d = decide_at(&deploys, &[errors("09:46")], &history, at("09:50"));
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(to_id(&d), Some(7));
}

// 6. A failing health check before G1 fires.

fn health(secs_ago: i64) -> Signal {
    signal(
        SignalKind::HealthCheck,
        None,
        now() - Duration::seconds(secs_ago),
    )
}

fn canary_answer(d: &Decision, hook: Hook) -> Answer {
    canary::answer(hook, &CanaryStatus::of(d, &[]), &d.reason, &[])
}

#[test]
fn a_failing_health_check_is_monitored_until_g1_fires_and_never_healthy() {
    // Deployed 10 min before `now`: inside the blame window, so G1 blames it.
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "10:20"),
    ]);
    let d = run(&deploys, &[health(60)]);
    assert_eq!(d.verdict, Verdict::Monitor, "{}", d.reason);
    assert!(d.fired.is_empty());
    let g1: &PendingRule = &d.pending[0];
    assert_eq!(
        (g1.rule_id.as_str(), g1.fires_at),
        ("G1", Some(now() + Duration::seconds(120)))
    );
    assert!(
        d.reason.contains(
            "G1 (health_check) fires at 2026-08-22 10:32:00 UTC, in 2 min, if its signal \
             stays active"
        ),
        "{}",
        d.reason
    );
    let status = CanaryStatus::of(&d, &[]);
    assert!(!status.healthy);
    for hook in [Hook::ConfirmPromotion, Hook::ConfirmTrafficIncrease] {
        assert!(
            matches!(
                canary_answer(&d, hook),
                Answer::Refuse {
                    code: "gate_closed",
                    ..
                }
            ),
            "{hook:?}"
        );
    }
    // Past three minutes G1 fires.
    assert_eq!(run(&deploys, &[health(181)]).verdict, Verdict::Rollback);
}

#[test]
fn a_failing_health_check_without_a_deploy_says_what_g1_needs() {
    let d = run(&[], &[health(600)]);
    assert_eq!(d.verdict, Verdict::Monitor, "{}", d.reason);
    assert_eq!(d.pending[0].fires_at, None);
    assert!(
        d.reason
            .contains("G1 (health_check) does not fire yet: it needs a deploy in the 2 h"),
        "{}",
        d.reason
    );
    assert!(!CanaryStatus::of(&d, &[]).healthy);
}

#[test]
fn a_monitor_rule_alone_leaves_the_target_healthy() {
    let mut policy = Policy::default();
    policy.rules.retain(|r| r.id == "M1");
    let d = decide(
        &policy,
        &target(),
        &[],
        &[errors("10:29")],
        &[],
        &History::default(),
        now(),
    );
    assert_eq!((d.verdict, d.pending.len()), (Verdict::Monitor, 0));
    assert!(CanaryStatus::of(&d, &[]).healthy);
}

// 7. A canary run first seen mid-way.

fn flagger_run(status: &str, first_seen: &str) -> DeployRecord {
    let mut deploy = Deploy::new(
        workload(),
        DeploySource::Flagger,
        "64c6d9c894",
        status,
        at(first_seen),
    );
    deploy.details = serde_json::json!({"canary": "checkout", START: START_UNKNOWN});
    DeployRecord { id: 90, deploy }
}

#[test]
fn recording_the_first_rollback_hook_call_does_not_change_its_answer() {
    let before = live(vec![
        rollout(1, "1", "v1", "09:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let mut after = before.clone();
    after.push(flagger_run(status::PROGRESSING, "10:30"));
    let signals = [errors("10:05")];
    let (d0, d1) = (run(&before, &signals), run(&after, &signals));
    assert_eq!(d0.verdict, Verdict::Rollback);
    assert_eq!(d1.verdict, d0.verdict, "{}", d1.reason);
    assert_eq!(canary_answer(&d1, Hook::Rollback), Answer::Pass);
    assert_eq!(canary_answer(&d0, Hook::Rollback), Answer::Pass);
}

/// `confirm-rollout` carries the previous run's checksum: first seen now, that run
/// finished long ago.
#[test]
fn recording_the_first_confirm_rollout_call_does_not_change_its_answer() {
    let before = live(vec![
        rollout(1, "1", "v1", "09:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let mut after = before.clone();
    after.push(flagger_run(status::SUCCEEDED, "10:30"));
    let signals = [errors("10:05")];
    let d = run(&after, &signals);
    assert_eq!(d.verdict, run(&before, &signals).verdict, "{}", d.reason);
    assert!(matches!(
        canary_answer(&d, Hook::ConfirmRollout),
        Answer::Refuse {
            code: "gate_closed",
            ..
        }
    ));
}

/// A run waiting at its gate has not started: it is no deploy after the regression.
#[test]
fn a_canary_run_waiting_at_its_gate_is_no_deploy_yet() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "09:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let mut waiting = flagger_run(status::WAITING, "10:20");
    waiting.deploy.details = serde_json::json!({"canary": "checkout"});
    let mut with_run = deploys.clone();
    with_run.push(waiting);
    assert_eq!(
        run(&with_run, &[errors("10:05")]).verdict,
        Verdict::Rollback
    );
}

/// The run alone, first seen after its canary's error rate rose: it is the suspect,
/// and the reason says its start is unknown.
#[test]
fn a_canary_run_first_seen_mid_way_is_blamed_with_what_is_known() {
    let canary_errors = Signal {
        scope: Scope::Canary,
        baseline: Some(0.01),
        ..signal(SignalKind::ErrorRate, Some(0.03), at("10:05"))
    };
    let d = run(
        &[flagger_run(status::PROGRESSING, "10:30")],
        &[canary_errors],
    );
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(90));
    assert!(
        d.reason.contains(
            "the suspect was first seen at 2026-08-22 10:30 UTC, mid-run, so when it \
             started is unknown"
        ),
        "{}",
        d.reason
    );
    assert_eq!(canary_answer(&d, Hook::Rollback), Answer::Pass);
    let evidence = evidence_record(&d, now(), 1, None);
    assert!(!evidence.versions.from.unwrap().started_at_known);
    let report = incident_report(&d, now(), 1);
    assert!(
        report.contains("first seen, mid-run (its start is unknown) (deploy #90, suspect)"),
        "{report}"
    );
}

// 8. CI-only history.

#[test]
fn ci_only_history_reverts_to_exactly_the_known_good_images() {
    let deploys = live(vec![
        ci(1, "2230", Some("v2.4.9"), "09:00"),
        ci(2, "2231", Some("v2.5.0"), "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    assert_eq!(d.verdict, Verdict::Rollback);
    assert_eq!(
        d.recommended,
        [
            "kubectl -n shop get deployment/checkout -o 'jsonpath={range \
             .spec.template.spec.containers[*]}{.name}={.image}{\"\\n\"}{end}'",
            "kubectl -n shop set image deployment/checkout checkout=ghcr.io/acme/checkout:v2.4.9",
            "kubectl -n shop rollout status deployment/checkout --watch",
        ]
    );
    assert!(
        d.reason
            .contains("so the rollback sets the images back to ghcr.io/acme/checkout:v2.4.9"),
        "{}",
        d.reason
    );
    let planned = action::plan(&d, &target(), FreezeScope::All);
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].kind, ROLLOUT_UNDO);
    assert_eq!(
        planned[0].params["images"],
        serde_json::json!(["ghcr.io/acme/checkout:v2.4.9"])
    );
    assert!(planned[0].params["kubernetes_revision"].is_null());
}

#[test]
fn ci_only_history_without_images_says_the_revision_is_unknown() {
    let deploys = live(vec![
        ci(1, "2230", None, "09:00"),
        ci(2, "2231", None, "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    assert_eq!(d.verdict, Verdict::Rollback);
    assert_eq!(
        d.recommended,
        ["kubectl -n shop rollout history deployment/checkout"]
    );
    assert!(
        d.reason
            .contains("the Kubernetes revision to return to is unknown"),
        "{}",
        d.reason
    );
    // No unpinned undo runs on its own.
    assert!(action::plan(&d, &target(), FreezeScope::All).is_empty());
}

// 9–12. What the decision prints.

#[test]
fn the_report_prints_the_date_of_a_time_on_another_day() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let d = run(&deploys, &[errors("10:05")]);
    let decided = at("12:30") + Duration::days(2);
    let report = incident_report(&d, decided, 3);
    assert!(
        report.contains(
            "- **Duration**: 2026-08-22 10:05 UTC - 2026-08-24 12:30 UTC (2 days 2 h 25 min \
             at the decision)\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("- 2026-08-24 12:30 UTC: Decision #3"),
        "{report}"
    );
    let same_day = incident_report(&d, now(), 3);
    assert!(
        same_day.contains("- **Duration**: 10:05 UTC - 10:30 UTC (25 minutes at the decision)")
    );
}

#[test]
fn an_h2_hold_shows_the_dependency_alert_in_its_timelines() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let db = Signal {
        target: None,
        dependency: Some("database".into()),
        fingerprint: "fp-db".into(),
        ..signal(SignalKind::Dependency, None, at("10:02"))
    };
    let d = run(&deploys, &[errors("10:05"), db]);
    assert_eq!((d.verdict, codes(&d)), (Verdict::Hold, vec!["H2"]));
    let line = "Dependency database degraded - H2 holds the rollback [fp-db]";
    let report = incident_report(&d, now(), 4);
    assert!(
        report.contains(&format!("- 10:02 UTC: {line}\n")),
        "{report}"
    );
    let evidence = evidence_record(&d, now(), 4, None);
    assert!(
        evidence
            .timeline
            .iter()
            .any(|e| e.at == at("10:02") && e.event == line),
        "{:?}",
        evidence.timeline
    );
}

#[test]
fn thresholds_carry_no_float_noise() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    // M4: 3 × 0.2 s is 0.6000000000000001 in floats.
    let latency = Signal {
        baseline: Some(0.2),
        ..signal(SignalKind::LatencyP95, Some(0.7), at("10:05"))
    };
    let d = run(&deploys, &[latency]);
    let m4 = d.fired.iter().find(|f| f.rule_id == "M4").unwrap();
    assert_eq!(serde_json::to_string(&m4.threshold).unwrap(), "0.6");
    // baseline + 0.2 over a baseline of 0.1 is 0.30000000000000004 in floats.
    let mut policy = Policy::default();
    policy.rules.retain(|r| r.id == "C2");
    policy.rules[0].baseline_factor = None;
    policy.rules[0].baseline_plus = Some(0.2);
    let canary = Signal {
        scope: Scope::Canary,
        baseline: Some(0.1),
        ..signal(SignalKind::LatencyP95, Some(0.35), at("10:05"))
    };
    let d = decide(
        &policy,
        &target(),
        &deploys,
        &[canary],
        &[],
        &History::default(),
        now(),
    );
    let json = serde_json::to_value(&d.fired[0]).unwrap();
    assert_eq!(json["threshold"].to_string(), "0.3");
}

#[test]
fn a_freeze_decision_does_not_claim_a_scope_it_does_not_know() {
    let d = run(
        &live(vec![rollout(1, "1", "v1", "08:00")]),
        &[signal(SignalKind::DataCorruption, None, at("10:20"))],
    );
    assert_eq!(d.verdict, Verdict::Freeze);
    assert!(!d.reason.contains("all deployments"), "{}", d.reason);
    assert!(
        d.reason.starts_with(
            "Freeze deployments and escalate: M8 (data_corruption) on \
             prod-eu/shop/Deployment/checkout"
        ),
        "{}",
        d.reason
    );
    let report = incident_report(&d, now(), 5);
    assert!(!report.contains("All deployments frozen"), "{report}");
}

#[test]
fn a_held_rollback_under_a_freeze_is_not_said_to_be_admitted() {
    let freeze = Freeze {
        id: 4,
        scope: "prod-eu/shop".into(),
        reason: "INC-42".into(),
        created_by: "oncall".into(),
        created_at: at("10:10"),
        expires_at: None,
    };
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let db = Signal {
        target: None,
        dependency: Some("database".into()),
        ..signal(SignalKind::Dependency, None, at("10:02"))
    };
    let held = decide(
        &Policy::default(),
        &target(),
        &deploys,
        &[errors("10:05"), db],
        std::slice::from_ref(&freeze),
        &History::default(),
        now(),
    );
    assert_eq!(held.verdict, Verdict::Hold);
    assert!(!held.reason.contains("admit"), "{}", held.reason);
    assert!(
        held.reason
            .ends_with("; freeze #4 (INC-42) covers the target.")
    );
    let rolling = decide(
        &Policy::default(),
        &target(),
        &deploys,
        &[errors("10:05")],
        &[freeze],
        &History::default(),
        now(),
    );
    assert!(
        rolling
            .reason
            .ends_with("; freeze #4 (INC-42) covers the target and admits this rollback.")
    );
}

#[test]
fn a_signal_posted_through_the_api_is_not_called_an_alert() {
    let deploys = live(vec![
        rollout(1, "1", "v1", "08:00"),
        rollout(2, "2", "v2", "10:00"),
    ]);
    let reports = Signal {
        source: SignalSource::Api,
        fingerprint: "support-1".into(),
        ..signal(SignalKind::CustomerReports, Some(25.0), at("10:06"))
    };
    let d = run(&deploys, &[reports]);
    let report = incident_report(&d, now(), 6);
    assert!(
        report.contains("- 10:06 UTC: Signal posted through the API - M5"),
        "{report}"
    );
    assert!(!report.contains("Alert triggered"), "{report}");
}
