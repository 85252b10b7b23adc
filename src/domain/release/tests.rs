use chrono::TimeZone;

use super::*;
use crate::domain::decide::{History, decide};
use crate::domain::{DeploySource, Mode, Policy, Verdict};

const REGIONS: [&str; 4] = ["ap-south-1", "eu-west-1", "us-east-1", "us-west-2"];

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 10, minute, 0).unwrap()
}

fn target(region: &str) -> Target {
    let mut t = Target::discovered(TargetRef::deployment(
        region,
        "shop",
        &format!("checkout-{region}"),
    ));
    t.region = Some(region.into());
    t.mode = Mode::Auto;
    t
}

fn deploy(
    id: i64,
    region: &str,
    revision: &str,
    version: &str,
    status: &str,
    minute: u32,
) -> DeployRecord {
    let t = target(region).target;
    let mut d = Deploy::new(t, DeploySource::Kubernetes, revision, status, at(minute));
    d.version = Some(version.into());
    d.images = vec![format!("registry.example.com/shop/checkout:{version}")];
    DeployRecord { id, deploy: d }
}

/// 1.5.0 everywhere at 10:00; 1.6.0 to the first `reached` regions from 10:10, a
/// minute apart. Deploy ids: region i's 1.5.0 is 10 + i, its 1.6.0 20 + i.
fn fleet(reached: usize) -> Vec<(Target, Vec<DeployRecord>)> {
    REGIONS
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let mut deploys = vec![deploy(10 + i as i64, region, "1", "1.5.0", "superseded", 0)];
            if i < reached {
                deploys.push(deploy(
                    20 + i as i64,
                    region,
                    "2",
                    "1.6.0",
                    "deployed",
                    10 + i as u32,
                ));
            } else {
                deploys[0].deploy.status = "deployed".into();
            }
            (target(region), deploys)
        })
        .collect()
}

fn regression(deploy_id: i64, decision_id: i64, minute: u32, rule: &str) -> Regression {
    Regression {
        deploy_id,
        decision_id,
        decided_at: at(minute),
        rules: vec![rule.into()],
    }
}

fn build(
    fleet: &[(Target, Vec<DeployRecord>)],
    regressions: &[Regression],
    radius: &BlastRadius,
) -> Vec<Release> {
    let inputs: Vec<RegionInput<'_>> = fleet
        .iter()
        .map(|(t, d)| RegionInput {
            target: t,
            deploys: d,
            standing: Some(Standing {
                decision_id: 100,
                verdict: "ok".into(),
                rules: Vec::new(),
            }),
        })
        .collect();
    releases("checkout", &inputs, regressions, radius)
}

fn new_release(fleet: &[(Target, Vec<DeployRecord>)], regressions: &[Regression]) -> Release {
    build(fleet, regressions, &BlastRadius::default())
        .into_iter()
        .find(|r| r.version == "1.6.0")
        .unwrap()
}

#[test]
fn a_service_is_the_workload_name_without_its_region() {
    assert_eq!(service_of(&target("eu-west-1")), "checkout");
    let mut same_name = target("eu-west-1");
    same_name.target.name = "checkout".into();
    assert_eq!(service_of(&same_name), "checkout");
    let mut configured = target("eu-west-1");
    configured.service = Some("shop-checkout".into());
    assert_eq!(service_of(&configured), "shop-checkout");
    // A name that is only the region keeps its name.
    let mut bare = target("eu-west-1");
    bare.target.name = "eu-west-1".into();
    assert_eq!(service_of(&bare), "eu-west-1");
}

#[test]
fn a_release_is_a_version_else_a_digest_else_a_commit() {
    let mut d = deploy(1, "eu-west-1", "1", "1.6.0", "deployed", 0).deploy;
    assert_eq!(version_of(&d).as_deref(), Some("1.6.0"));
    d.version = None;
    d.images = vec!["registry.example.com/shop/checkout@sha256:abc123".into()];
    assert_eq!(version_of(&d).as_deref(), Some("sha256:abc123"));
    d.images.clear();
    d.commit_sha = Some("9fceb02d0ae598e95dc970b74767f19372d61af8".into());
    assert_eq!(
        version_of(&d).as_deref(),
        Some("9fceb02d0ae598e95dc970b74767f19372d61af8")
    );
    d.commit_sha = None;
    assert_eq!(version_of(&d), None);
}

#[test]
fn one_version_across_regions_is_one_release_newest_first() {
    let releases = build(&fleet(3), &[], &BlastRadius::default());
    let ids: Vec<&str> = releases.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["checkout@1.6.0", "checkout@1.5.0"]);
    let r = &releases[0];
    assert_eq!(r.scope, ReleaseScope::Healthy);
    assert_eq!(r.first_deployed_at, at(10));
    let received: Vec<(&str, bool, bool)> = r
        .regions
        .iter()
        .map(|x| (x.region.as_str(), x.received, x.current))
        .collect();
    assert_eq!(
        received,
        [
            ("ap-south-1", true, true),
            ("eu-west-1", true, true),
            ("us-east-1", true, true),
            ("us-west-2", false, false)
        ]
    );
    // Nothing regressed: the wave goes on.
    assert!(gate(r, "us-west-2", &BlastRadius::default()).open);
}

#[test]
fn one_region_regressing_stops_the_wave_and_keeps_the_others_running() {
    // eu-west-1 (deploy 21) regressed on M2.
    let r = new_release(&fleet(3), &[regression(21, 7, 15, "M2")]);
    assert_eq!(r.scope, ReleaseScope::Region);
    assert_eq!(r.regressed(), ["eu-west-1"]);

    let closed = gate(&r, "us-west-2", &BlastRadius::default());
    assert!(!closed.open);
    assert_eq!(
        closed.reason,
        "wave stopped: release checkout@1.6.0 regressed in eu-west-1; do not deploy it to \
         region us-west-2"
    );
    // A region that runs it already is the engine's business, not the gate's.
    assert!(gate(&r, "us-east-1", &BlastRadius::default()).open);
    let no_stop = BlastRadius {
        wave_stop: false,
        ..BlastRadius::default()
    };
    assert!(gate(&r, "us-west-2", &no_stop).open);

    let c = check(&r, "eu-west-1", &BlastRadius::default());
    assert_eq!(c.scope, ReleaseScope::Region);
    assert_eq!(c.affected, ["eu-west-1"]);
    assert_eq!(c.rolled_back, ["eu-west-1"]);
    let kept: Vec<&str> = c.kept.iter().map(|k| k.region.as_str()).collect();
    assert_eq!(kept, ["ap-south-1", "us-east-1"]);
    assert_eq!(c.kept[0].verdict, "ok");
    assert_eq!(c.wave_stopped, ["us-west-2"]);
    assert!(c.others_healthy);
    // No R1 evidence for anyone: only the region that regressed rolls back.
    assert!(
        REGIONS
            .iter()
            .all(|region| release_signal(&r, region).is_none())
    );
}

#[test]
fn another_region_not_healthy_is_said_on_the_check() {
    let fleet = fleet(3);
    let inputs: Vec<RegionInput<'_>> = fleet
        .iter()
        .map(|(t, d)| RegionInput {
            target: t,
            deploys: d,
            standing: (t.region.as_deref() == Some("us-east-1")).then(|| Standing {
                decision_id: 9,
                verdict: "monitor".into(),
                rules: vec!["M1".into()],
            }),
        })
        .collect();
    let mut r = releases(
        "checkout",
        &inputs,
        &[regression(21, 7, 15, "M2")],
        &BlastRadius::default(),
    )
    .remove(0);
    let c = check(&r, "eu-west-1", &BlastRadius::default());
    let us = c.kept.iter().find(|k| k.region == "us-east-1").unwrap();
    assert_eq!(
        (us.verdict.as_str(), us.rules.as_slice()),
        ("monitor", &["M1".to_string()][..])
    );
    assert!(c.others_healthy, "monitor is watching, not regressing");
    r.regions[2].verdict = Some("hold".into());
    assert!(!check(&r, "eu-west-1", &BlastRadius::default()).others_healthy);
}

#[test]
fn two_regions_regressing_roll_every_region_on_the_release_back() {
    let r = new_release(
        &fleet(3),
        &[regression(21, 7, 15, "M2"), regression(22, 8, 16, "G3")],
    );
    assert_eq!(r.scope, ReleaseScope::AllRegions);
    // Every region that runs it gets R1's evidence, from its own deploy of it on.
    let ap = release_signal(&r, "ap-south-1").unwrap();
    assert_eq!(ap.kind, SignalKind::ReleaseRegressed);
    assert_eq!(ap.started_at, at(10));
    assert_eq!(ap.fingerprint, "release:checkout@1.6.0");
    assert_eq!(
        ap.target,
        Some(TargetRef::deployment(
            "ap-south-1",
            "shop",
            "checkout-ap-south-1"
        ))
    );
    assert!(release_signal(&r, "us-east-1").is_some());
    // The region that never got it has nothing to roll back; its gate is closed.
    assert!(release_signal(&r, "us-west-2").is_none());
    let c = check(&r, "us-east-1", &BlastRadius::default());
    assert_eq!(c.rolled_back, ["ap-south-1", "eu-west-1", "us-east-1"]);
    assert!(c.kept.is_empty());
    assert_eq!(c.wave_stopped, ["us-west-2"]);
}

#[test]
fn the_count_and_the_canary_region_are_policy() {
    let regressions = [regression(21, 7, 15, "M2"), regression(22, 8, 16, "G3")];
    let three = BlastRadius {
        all_regions_after: 3,
        ..BlastRadius::default()
    };
    let r = &build(&fleet(3), &regressions, &three)[0];
    assert_eq!(r.scope, ReleaseScope::Region);
    // eu-west-1 is where releases go first: it and one more are enough.
    let canary = BlastRadius {
        canary_region: Some("eu-west-1".into()),
        ..three.clone()
    };
    let r = &build(&fleet(3), &regressions, &canary)[0];
    assert_eq!(r.scope, ReleaseScope::AllRegions);
    // The canary region alone is one region.
    let r = &build(&fleet(3), &regressions[..1], &canary)[0];
    assert_eq!(r.scope, ReleaseScope::Region);
}

#[test]
fn a_region_rolled_back_runs_the_old_version_and_says_so() {
    let mut fleet = fleet(3);
    // eu-west-1 rolled back: revision 3 runs 1.5.0 again.
    let eu = &mut fleet[1].1;
    eu[1].deploy.status = "superseded".into();
    eu.push(deploy(31, "eu-west-1", "3", "1.5.0", "deployed", 20));
    let r = new_release(&fleet, &[regression(21, 7, 15, "M2")]);
    let region = r.region("eu-west-1").unwrap();
    assert!(region.received && !region.current && region.rolled_back);
    assert_eq!(region.regressed_rules, ["M2"]);
    assert_eq!(current_version(&fleet[1].1).as_deref(), Some("1.5.0"));
}

#[test]
fn every_region_off_a_release_rolled_back_everywhere_says_so() {
    let mut fleet = fleet(3);
    // ap-south-1 was rolled back by R1 (it never regressed itself).
    let ap = &mut fleet[0].1;
    ap[1].deploy.status = "superseded".into();
    ap.push(deploy(30, "ap-south-1", "3", "1.5.0", "deployed", 20));
    let regressions = [regression(21, 7, 15, "M2"), regression(22, 8, 16, "G3")];
    let r = new_release(&fleet, &regressions);
    let ap = r.region("ap-south-1").unwrap();
    assert!(ap.rolled_back && ap.regressed_at.is_none());
    // One region regressed: a region that moved on did not roll back.
    let r = new_release(&fleet, &regressions[..1]);
    assert!(!r.region("ap-south-1").unwrap().rolled_back);
}

#[test]
fn a_canary_run_still_going_has_not_received_the_release() {
    let mut fleet = fleet(3);
    let mut canary = deploy(24, "us-west-2", "2", "1.6.0", "progressing", 20);
    canary.deploy.source = DeploySource::Flagger;
    fleet[3].1.push(canary);
    let mut waiting = deploy(25, "us-west-2", "3", "1.6.0", "waiting", 21);
    waiting.deploy.source = DeploySource::Flagger;
    fleet[3].1.push(waiting);
    let r = new_release(&fleet, &[regression(21, 7, 15, "M2")]);
    let us_west = r.region("us-west-2").unwrap();
    assert!(!us_west.received);
    assert!(!gate(&r, "us-west-2", &BlastRadius::default()).open);
}

#[test]
fn a_deploy_still_going_or_a_canary_after_it_has_not_received_the_release() {
    let mut fleet = fleet(3);
    // us-west-2's pipeline started deploying 1.6.0; us-east-1 completed it, but a
    // Flagger run (which names no version) is rolling it out behind.
    fleet[3]
        .1
        .push(deploy(24, "us-west-2", "2", "1.6.0", "started", 20));
    let mut run = deploy(25, "us-east-1", "f1", "", "progressing", 21);
    run.deploy.source = DeploySource::Flagger;
    run.deploy.version = None;
    run.deploy.images.clear();
    fleet[2].1.push(run);
    let r = new_release(&fleet, &[regression(21, 7, 15, "M2")]);
    let received: Vec<(&str, bool)> = r
        .regions
        .iter()
        .map(|x| (x.region.as_str(), x.received))
        .collect();
    assert_eq!(
        received,
        [
            ("ap-south-1", true),
            ("eu-west-1", true),
            ("us-east-1", false),
            ("us-west-2", false)
        ]
    );
    assert_eq!(
        check(&r, "eu-west-1", &BlastRadius::default()).wave_stopped,
        ["us-east-1", "us-west-2"]
    );
}

#[test]
fn r1_rolls_a_healthy_region_back_to_its_own_known_good_revision() {
    let fleet = fleet(3);
    let r = new_release(
        &fleet,
        &[regression(21, 7, 15, "M2"), regression(22, 8, 16, "G3")],
    );
    let (ap, deploys) = &fleet[0];
    let signal = release_signal(&r, "ap-south-1").unwrap();
    let d = decide(
        &Policy::default(),
        ap,
        deploys,
        &[signal],
        &[],
        &History::default(),
        at(17),
    );
    assert_eq!(d.verdict, Verdict::Rollback, "{}", d.reason);
    assert_eq!(d.fired[0].rule_id, RELEASE_RULE);
    assert_eq!(d.suspect.as_ref().map(|s| s.id), Some(20));
    assert_eq!(d.rollback_to.as_ref().map(|s| s.id), Some(10));
    assert_eq!(
        d.plan
            .as_ref()
            .and_then(|p| p.kubernetes_revision.as_deref()),
        Some("1")
    );
}

#[test]
fn a_decision_by_r1_alone_is_no_regression_of_its_region() {
    let fleet = fleet(3);
    let r = new_release(
        &fleet,
        &[regression(21, 7, 15, "M2"), regression(22, 8, 16, "G3")],
    );
    let (ap, deploys) = &fleet[0];
    let by_r1 = decide(
        &Policy::default(),
        ap,
        deploys,
        &[release_signal(&r, "ap-south-1").unwrap()],
        &[],
        &History::default(),
        at(17),
    );
    assert!(!regresses(&by_r1));
    assert_eq!(super::regression(&by_r1, 9, 20, at(17)), None);
    let mut own = by_r1.clone();
    own.fired[0].rule_id = "M2".into();
    assert!(regresses(&own));
    let found = super::regression(&own, 9, 20, at(18)).unwrap();
    assert_eq!((found.deploy_id, found.decision_id), (20, 9));
    assert_eq!(found.rules, ["M2"]);
    assert_eq!(Some(found.decided_at), own.regression_started_at);
}

#[test]
fn a_policy_with_its_own_release_rule_replaces_r1() {
    let fleet = fleet(3);
    let r = new_release(
        &fleet,
        &[regression(21, 7, 15, "M2"), regression(22, 8, 16, "G3")],
    );
    let (ap, deploys) = &fleet[0];
    let mut policy = Policy::default();
    let mut own = crate::domain::Rule::release();
    own.id = "R9".into();
    own.outcome = crate::domain::Outcome::Investigate;
    policy.rules.push(own);
    let d = decide(
        &policy,
        ap,
        deploys,
        &[release_signal(&r, "ap-south-1").unwrap()],
        &[],
        &History::default(),
        at(17),
    );
    assert_eq!(d.verdict, Verdict::Investigate);
    assert!(d.has_fired("R9") && !d.has_fired(RELEASE_RULE));
}
