//! decide() and the action plan for an Argo Rollout: a canary still running is
//! aborted, a promoted revision is undone to the known-good one, and the commands a
//! person runs are the Argo plugin's.

use super::*;
use crate::domain::action::{self, ARGO_ABORT, ARGO_UNDO, FreezeScope};
use crate::domain::deploy::status;
use crate::domain::{Deploy, DeploySource, Mode, Scope, SignalSource, TargetRef};

fn at(hm: &str) -> DateTime<Utc> {
    format!("2026-12-03T{hm}:00Z").parse().unwrap()
}

fn rollout_ref() -> TargetRef {
    TargetRef::new("eu-1", "prod", "Rollout", "checkout")
}

fn target() -> Target {
    Target {
        mode: Mode::Auto,
        environment: Some("production".into()),
        ..Target::discovered(rollout_ref())
    }
}

fn revision(id: i64, rev: &str, tag: &str, st: &str, started: &str) -> DeployRecord {
    let mut deploy = Deploy::new(rollout_ref(), DeploySource::Argo, rev, st, at(started));
    deploy.images = vec![format!("shop/checkout:{tag}")];
    deploy.version = Some(tag.into());
    DeployRecord { id, deploy }
}

fn errors(started: &str) -> Signal {
    Signal {
        kind: SignalKind::ErrorRate,
        target: Some(rollout_ref()),
        scope: Scope::Any,
        dependency: None,
        value: Some(0.09),
        baseline: None,
        inconclusive: None,
        started_at: at(started),
        ended_at: None,
        observations: 1,
        source: SignalSource::Alert,
        fingerprint: "fp-errors".into(),
        summary: String::new(),
    }
}

fn decide_now(deploys: &[DeployRecord]) -> Decision {
    decide(
        &Policy::default(),
        &target(),
        deploys,
        &[errors("10:05")],
        &[],
        &History::default(),
        at("10:10"),
    )
}

#[test]
fn a_bad_canary_still_running_is_aborted() {
    let deploys = [
        revision(1, "5", "v5", status::SUPERSEDED, "08:00"),
        revision(2, "6", "v6", status::DEPLOYED, "09:00"),
        revision(3, "7", "v7", status::PROGRESSING, "10:00"),
    ];
    let d = decide_now(&deploys);
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(3));
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(2));
    assert_eq!(
        d.recommended,
        [
            "kubectl argo rollouts abort checkout -n prod",
            "kubectl argo rollouts status checkout -n prod",
        ]
    );
    let planned = action::plan(&d, &target(), FreezeScope::All);
    let kinds: Vec<&str> = planned.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, [ARGO_ABORT]);
    assert_eq!(planned[0].state, "pending");
    assert_eq!(planned[0].params["kind"], "Rollout");
}

#[test]
fn a_promoted_bad_revision_is_undone_to_the_known_good_one() {
    let deploys = [
        revision(1, "5", "v5", status::SUPERSEDED, "08:00"),
        revision(2, "6", "v6", status::SUPERSEDED, "09:00"),
        revision(3, "7", "v7", status::DEPLOYED, "10:00"),
    ];
    let d = decide_now(&deploys);
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    let plan = d.plan.as_ref().unwrap();
    assert_eq!(plan.kubernetes_revision.as_deref(), Some("6"));
    assert_eq!(
        d.recommended,
        [
            "kubectl argo rollouts undo checkout -n prod --to-revision=6",
            "kubectl argo rollouts status checkout -n prod",
        ]
    );
    let planned = action::plan(&d, &target(), FreezeScope::All);
    let kinds: Vec<&str> = planned.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, [ARGO_UNDO]);
    assert_eq!(planned[0].params["kubernetes_revision"], "6");
}

#[test]
fn an_aborted_revision_is_never_the_way_back() {
    // 6 was aborted as a canary; 7 was promoted and is bad: back to 5, not 6.
    let deploys = [
        revision(1, "5", "v5", status::SUPERSEDED, "08:00"),
        revision(2, "6", "v6", status::FAILED, "09:00"),
        revision(3, "7", "v7", status::DEPLOYED, "10:00"),
    ];
    let d = decide_now(&deploys);
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(
        d.plan.as_ref().unwrap().kubernetes_revision.as_deref(),
        Some("5")
    );
}

#[test]
fn a_deployment_with_a_running_flagger_canary_is_still_left_to_flagger() {
    // The Argo executors are for Rollout targets only.
    let deployment = TargetRef::deployment("eu-1", "prod", "checkout");
    let t = Target {
        mode: Mode::Auto,
        ..Target::discovered(deployment.clone())
    };
    let mut canary = revision(3, "abc", "v7", status::PROGRESSING, "10:00");
    canary.deploy.source = DeploySource::Flagger;
    canary.deploy.target = deployment.clone();
    let mut signal = errors("10:05");
    signal.target = Some(deployment);
    let d = decide(
        &Policy::default(),
        &t,
        &[canary],
        &[signal],
        &[],
        &History::default(),
        at("10:10"),
    );
    assert!(d.recommended.is_empty());
    assert!(action::plan(&d, &t, FreezeScope::All).is_empty());
}

#[test]
fn an_argo_cd_application_named_in_the_config_is_rolled_back_through_argo_cd() {
    let deployment = TargetRef::deployment("eu-1", "prod", "checkout");
    let mut t = Target {
        mode: Mode::Auto,
        gitops: Some("argocd".into()),
        argocd_app: Some("checkout-prod".into()),
        ..Target::discovered(deployment.clone())
    };
    let deploy = |id: i64, rev: &str, sha: &str, st: &str, started: &str| {
        let mut d = Deploy::new(
            deployment.clone(),
            DeploySource::Kubernetes,
            rev,
            st,
            at(started),
        );
        d.commit_sha = Some(sha.into());
        DeployRecord { id, deploy: d }
    };
    let deploys = [
        deploy(1, "6", "1a2b3c4d5e6f", status::SUPERSEDED, "09:00"),
        deploy(2, "7", "9f8e7d6c5b4a", status::DEPLOYED, "10:00"),
    ];
    let mut signal = errors("10:05");
    signal.target = Some(deployment);
    let run = |t: &Target| {
        decide(
            &Policy::default(),
            t,
            &deploys,
            std::slice::from_ref(&signal),
            &[],
            &History::default(),
            at("10:10"),
        )
    };
    let d = run(&t);
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(
        d.recommended,
        [
            "argocd app set checkout-prod --sync-policy none",
            "argocd app history checkout-prod",
            "# roll back to the ID whose revision is 1a2b3c4d5e6f: argocd app rollback APP ID; \
             once the Git revert is merged, turn auto-sync back on: argocd app set APP \
             --sync-policy automated",
            "git revert 9f8e7d6c5b4a",
        ]
    );
    let planned = action::plan(&d, &t, FreezeScope::All);
    let kinds: Vec<&str> = planned.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, [action::ARGOCD_ROLLBACK]);
    assert_eq!(planned[0].params["argocd_app"], "checkout-prod");
    assert_eq!(planned[0].params["known_good_commit"], "1a2b3c4d5e6f");
    assert_eq!(
        planned[0].params["suspect_started_at"],
        "2026-12-03T10:00:00Z"
    );

    // Without the Application's name, still a hold: a rollout undo would be reverted.
    t.argocd_app = None;
    let d = run(&t);
    assert_eq!(d.verdict, Verdict::Hold);
    assert!(action::plan(&d, &t, FreezeScope::All).is_empty());
}
