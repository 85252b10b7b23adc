//! Multi-region releases: one version shipped to the regions of one service is one
//! release. The blast-radius policy reads a release's regions and says how far a
//! rollback reaches: the region that regressed (and the wave stops), or every region
//! (the multi-region playbook's "Multi-Region Rollback").
//!
//! Pure: the engine and the API load the inputs (each region's deploys, the decisions
//! that blamed a deploy of the release, each region's standing decision) and these
//! functions assemble and judge them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::decide::is_running_canary;
use super::deploy::status;
use super::policy::Outcome;
use super::{
    Decision, Deploy, DeployRecord, Scope, Signal, SignalKind, SignalSource, Target, TargetRef,
    Verdict,
};

/// The rule id of an all-region rollback in decisions and evidence.
pub const RELEASE_RULE: &str = "R1";

/// The blast-radius policy (`[releases]`): how far a rollback of a release reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlastRadius {
    /// The release regressed in this many regions: every region on it rolls back
    /// (the playbook's "Multi-Region Rollback"). At least 1; default 2.
    pub all_regions_after: u32,
    /// The region a release reaches first. When it regresses and one more region does,
    /// every region rolls back, whatever `all_regions_after` says.
    pub canary_region: Option<String>,
    /// Whether a release that regressed in a region is refused in the regions it has
    /// not reached yet (the wave stops). Default true.
    pub wave_stop: bool,
    /// The executor (`command:NAME` or `webhook:NAME`) that takes a region rolled back
    /// alone out of federation routing, run with its `region` once its rollback starts.
    pub federation_exclude: Option<String>,
    /// The executor that puts it back: recommended once the region's rollback is
    /// verified.
    pub federation_include: Option<String>,
}

impl Default for BlastRadius {
    fn default() -> Self {
        Self {
            all_regions_after: 2,
            canary_region: None,
            wave_stop: true,
            federation_exclude: None,
            federation_include: None,
        }
    }
}

/// A target's service identity: its configured `service`, else its workload name
/// without the region suffix (`checkout-eu-west-1` in region `eu-west-1` is
/// `checkout`).
pub fn service_of(target: &Target) -> String {
    if let Some(service) = target.service.as_deref().filter(|s| !s.is_empty()) {
        return service.to_string();
    }
    let name = target.target.name.as_str();
    target
        .region
        .as_deref()
        .filter(|r| !r.is_empty())
        .and_then(|region| name.strip_suffix(region))
        .and_then(|rest| rest.strip_suffix(['-', '.', '_']))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
        .to_string()
}

/// What makes two deploys one release: the version, else the image digest, else the
/// commit.
pub fn version_of(deploy: &Deploy) -> Option<String> {
    if let Some(version) = deploy.version.as_deref().filter(|v| !v.is_empty()) {
        return Some(version.to_string());
    }
    let digest = deploy
        .images
        .iter()
        .find_map(|image| image.split_once('@').map(|(_, digest)| digest))
        .filter(|d| !d.is_empty());
    if let Some(digest) = digest {
        return Some(digest.to_string());
    }
    deploy
        .commit_sha
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// A release's id: `SERVICE@VERSION`.
pub fn release_id(service: &str, version: &str) -> String {
    format!("{service}@{version}")
}

/// A decision that blamed a deploy: the region regressed on that deploy's release.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub deploy_id: i64,
    pub decision_id: i64,
    pub decided_at: DateTime<Utc>,
    /// The rollback rules that fired (never only [`RELEASE_RULE`]: a region rolled
    /// back because others regressed did not regress itself).
    pub rules: Vec<String>,
}

/// A region's standing decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub decision_id: i64,
    pub verdict: String,
    /// The rules that fired.
    pub rules: Vec<String>,
}

/// One region of a service, as the release sees it.
pub struct RegionInput<'a> {
    pub target: &'a Target,
    pub deploys: &'a [DeployRecord],
    pub standing: Option<Standing>,
}

/// The scope of a release's rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseScope {
    /// No region regressed on it.
    Healthy,
    /// One region (or fewer than the policy's count) regressed: it rolls back alone,
    /// the wave stops.
    Region,
    /// Every region on it rolls back.
    AllRegions,
}

impl ReleaseScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Region => "region",
            Self::AllRegions => "all_regions",
        }
    }
}

/// One region of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRegion {
    pub region: String,
    /// The region's target key.
    pub target: String,
    /// Whether a deploy of the release completed there (deployed, succeeded, or since
    /// superseded), other than by a canary run, and no canary run is rolling it out
    /// still: a region still rolling it out is one the wave gate may stop.
    pub received: bool,
    /// Whether the release is what the region runs now (its latest deploy that did
    /// not fail).
    pub current: bool,
    /// The region's deploy of the release (its latest), when it received it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When a decision first blamed the release here, and by which rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regressed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regressed_rules: Vec<String>,
    /// The region's standing decision: its verdict and fired rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// It received the release and runs something else now, having regressed on it or
    /// because the release rolls back in every region.
    pub rolled_back: bool,
}

impl ReleaseRegion {
    /// Healthy on the release: it runs it and its standing verdict is `ok`, `monitor`
    /// or none.
    pub fn healthy(&self) -> bool {
        self.current
            && self.regressed_at.is_none()
            && self
                .verdict
                .as_deref()
                .is_none_or(|v| matches!(v, "ok" | "monitor"))
    }
}

/// One version of one service across its regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    /// `SERVICE@VERSION`.
    pub id: String,
    pub service: String,
    pub version: String,
    /// When its first region started deploying it.
    pub first_deployed_at: DateTime<Utc>,
    pub scope: ReleaseScope,
    /// Every region of the service, received or not, in region order.
    pub regions: Vec<ReleaseRegion>,
}

impl Release {
    pub fn region(&self, region: &str) -> Option<&ReleaseRegion> {
        self.regions.iter().find(|r| r.region == region)
    }

    /// The regions where it regressed, in region order.
    pub fn regressed(&self) -> Vec<&str> {
        self.regions
            .iter()
            .filter(|r| r.regressed_at.is_some())
            .map(|r| r.region.as_str())
            .collect()
    }
}

/// The releases of one service, newest first: every version a region of `regions`
/// deployed, with each region's part in it. `regressions` are the decisions that
/// blamed a deploy of one of them; a deploy id not among the regions' deploys is
/// ignored.
pub fn releases(
    service: &str,
    regions: &[RegionInput<'_>],
    regressions: &[Regression],
    radius: &BlastRadius,
) -> Vec<Release> {
    // version → region → its deploys of that version.
    let mut versions: BTreeMap<String, BTreeMap<usize, Vec<&DeployRecord>>> = BTreeMap::new();
    for (i, input) in regions.iter().enumerate() {
        for deploy in input.deploys.iter().filter(|d| started(d)) {
            if let Some(version) = version_of(&deploy.deploy) {
                versions
                    .entry(version)
                    .or_default()
                    .entry(i)
                    .or_default()
                    .push(deploy);
            }
        }
    }
    let current: Vec<Option<String>> = regions.iter().map(|r| current_version(r.deploys)).collect();
    let mut out: Vec<Release> = versions
        .into_iter()
        .map(|(version, by_region)| {
            let mut first: Option<DateTime<Utc>> = None;
            let mut rows: Vec<ReleaseRegion> = regions
                .iter()
                .enumerate()
                .map(|(i, input)| {
                    let target_key = input.target.target.key();
                    let deploys = by_region.get(&i).map(Vec::as_slice).unwrap_or_default();
                    let latest = deploys.iter().max_by(|a, b| order(a, b)).copied();
                    if let Some(start) = deploys.iter().map(|d| d.deploy.started_at).min() {
                        first = Some(first.map_or(start, |f| f.min(start)));
                    }
                    let regressions: Vec<&Regression> = regressions
                        .iter()
                        .filter(|r| deploys.iter().any(|d| d.id == r.deploy_id))
                        .collect();
                    let first_regression = regressions
                        .iter()
                        .min_by_key(|r| (r.decided_at, r.decision_id));
                    let is_current = current[i].as_deref() == Some(version.as_str());
                    let standing = input.standing.as_ref();
                    ReleaseRegion {
                        region: input.target.region.clone().unwrap_or_default(),
                        target: target_key,
                        received: received(input.deploys, deploys),
                        current: is_current,
                        deploy_id: latest.map(|d| d.id),
                        revision: latest.map(|d| d.deploy.revision.clone()),
                        status: latest.map(|d| d.deploy.status.clone()),
                        started_at: latest.map(|d| d.deploy.started_at),
                        regressed_at: first_regression.map(|r| r.decided_at),
                        regressed_rules: first_regression
                            .map(|r| r.rules.clone())
                            .unwrap_or_default(),
                        decision_id: standing.map(|s| s.decision_id),
                        verdict: standing.map(|s| s.verdict.clone()),
                        rules: standing.map(|s| s.rules.clone()).unwrap_or_default(),
                        rolled_back: latest.is_some() && !is_current && !regressions.is_empty(),
                    }
                })
                .collect();
            rows.sort_by(|a, b| {
                a.region
                    .cmp(&b.region)
                    .then_with(|| a.target.cmp(&b.target))
            });
            let mut release = Release {
                id: release_id(service, &version),
                service: service.to_string(),
                version,
                first_deployed_at: first.unwrap_or_default(),
                scope: ReleaseScope::Healthy,
                regions: rows,
            };
            release.scope = scope(&release, radius);
            if release.scope == ReleaseScope::AllRegions {
                for r in &mut release.regions {
                    r.rolled_back |= r.received && !r.current;
                }
            }
            release
        })
        .collect();
    out.sort_by(|a, b| {
        b.first_deployed_at
            .cmp(&a.first_deployed_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

/// How far a rollback of `release` reaches under `radius`.
pub fn scope(release: &Release, radius: &BlastRadius) -> ReleaseScope {
    let regressed = release.regressed();
    let canary_and_one_more = radius
        .canary_region
        .as_deref()
        .is_some_and(|canary| regressed.contains(&canary) && regressed.len() >= 2);
    if regressed.is_empty() {
        ReleaseScope::Healthy
    } else if regressed.len() >= radius.all_regions_after.max(1) as usize || canary_and_one_more {
        ReleaseScope::AllRegions
    } else {
        ReleaseScope::Region
    }
}

/// Whether `region` may receive `release` now: the wave gate CI pipelines and canary
/// controllers ask before deploying a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Gate {
    pub release: String,
    pub region: String,
    pub open: bool,
    /// Why, in one sentence.
    pub reason: String,
}

/// The wave gate of `region` for `release`: closed when the release regressed
/// somewhere, the wave stops (`radius.wave_stop`) and the region has not received it.
/// A region that already runs it is not stopped by the gate (its rollback is the
/// engine's business), and neither is any region of a healthy release.
pub fn gate(release: &Release, region: &str, radius: &BlastRadius) -> Gate {
    let regressed = release.regressed();
    let received = release.region(region).is_some_and(|r| r.received);
    let (open, reason) = if regressed.is_empty() {
        (
            true,
            format!("release {} has not regressed in any region", release.id),
        )
    } else if received {
        (
            true,
            format!(
                "region {region} already received release {}; it regressed in {}",
                release.id,
                regressed.join(", ")
            ),
        )
    } else if !radius.wave_stop {
        (
            true,
            format!(
                "release {} regressed in {}, but releases.wave_stop is off",
                release.id,
                regressed.join(", ")
            ),
        )
    } else {
        (
            false,
            format!(
                "wave stopped: release {} regressed in {}; do not deploy it to region {region}",
                release.id,
                regressed.join(", ")
            ),
        )
    };
    Gate {
        release: release.id.clone(),
        region: region.to_string(),
        open,
        reason,
    }
}

/// The release check recorded on a decision about a region of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseCheck {
    /// The release id (`SERVICE@VERSION`).
    pub release: String,
    pub scope: ReleaseScope,
    /// The playbook's "Affected Region(s)": where it regressed.
    pub affected: Vec<String>,
    /// Regions on the release that rolled back, or are to (all-region scope).
    pub rolled_back: Vec<String>,
    /// Regions that keep running it, and why (their current verdicts, with the rules).
    pub kept: Vec<KeptRegion>,
    /// Regions the release is refused in until it is fixed (the wave stop).
    pub wave_stopped: Vec<String>,
    /// Whether every other region that runs the release is healthy.
    pub others_healthy: bool,
    /// Each region's part, oldest first: its deploy of the release, its regression.
    #[serde(default)]
    pub timeline: Vec<ReleaseEvent>,
}

/// One moment of a release in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseEvent {
    pub at: DateTime<Utc>,
    pub region: String,
    /// What happened, in words.
    pub event: String,
}

/// A region that keeps running the release, with its current verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeptRegion {
    pub region: String,
    /// Its standing verdict (`ok` when it has none).
    pub verdict: String,
    /// The rules behind it (none for `ok`).
    pub rules: Vec<String>,
}

/// The check recorded on a decision of `region` about `release`.
pub fn check(release: &Release, region: &str, radius: &BlastRadius) -> ReleaseCheck {
    let all = release.scope == ReleaseScope::AllRegions;
    let mut rolled_back = Vec::new();
    let mut kept = Vec::new();
    let mut wave_stopped = Vec::new();
    for r in &release.regions {
        if r.rolled_back || r.regressed_at.is_some() || (all && r.current) {
            rolled_back.push(r.region.clone());
        } else if !r.received {
            if !gate(release, &r.region, radius).open {
                wave_stopped.push(r.region.clone());
            }
        } else if r.current {
            kept.push(KeptRegion {
                region: r.region.clone(),
                verdict: r.verdict.clone().unwrap_or_else(|| "ok".into()),
                rules: r.rules.clone(),
            });
        }
    }
    let others_healthy = release
        .regions
        .iter()
        .filter(|r| r.region != region && r.current && r.regressed_at.is_none())
        .all(ReleaseRegion::healthy);
    let mut timeline = Vec::new();
    for r in &release.regions {
        if let Some(at) = r.started_at {
            timeline.push(ReleaseEvent {
                at,
                region: r.region.clone(),
                event: format!(
                    "deploy of {} started (revision {}, deploy #{})",
                    release.version,
                    r.revision.as_deref().unwrap_or("?"),
                    r.deploy_id.unwrap_or_default()
                ),
            });
        }
        if let Some(at) = r.regressed_at {
            timeline.push(ReleaseEvent {
                at,
                region: r.region.clone(),
                event: format!("regressed ({})", r.regressed_rules.join(", ")),
            });
        }
    }
    timeline.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.region.cmp(&b.region)));
    ReleaseCheck {
        release: release.id.clone(),
        scope: release.scope,
        affected: release
            .regressed()
            .into_iter()
            .map(str::to_string)
            .collect(),
        rolled_back,
        kept,
        wave_stopped,
        others_healthy,
        timeline,
    }
}

/// The version a region runs now: that of its latest started deploy that did not fail.
pub fn current_version(deploys: &[DeployRecord]) -> Option<String> {
    deploys
        .iter()
        .filter(|d| started(d) && d.deploy.status != status::FAILED)
        .max_by(|a, b| order(a, b))
        .and_then(|d| version_of(&d.deploy))
}

/// A deploy that started (not a canary run waiting at its gate).
fn started(d: &DeployRecord) -> bool {
    !matches!(
        d.deploy.status.as_str(),
        status::WAITING | status::INITIALIZING
    )
}

/// Whether a region whose deploys are `all` received the release it deployed as
/// `of_release`: one of those completed well, and no canary run of the region is still
/// rolling out (Flagger's runs carry no version: an open run after the release's last
/// deploy is taken to be rolling it out).
fn received(all: &[DeployRecord], of_release: &[&DeployRecord]) -> bool {
    let completed = of_release
        .iter()
        .any(|d| super::deploy::is_healthy_status(&d.deploy.status));
    let Some(last) = of_release.iter().max_by(|a, b| order(a, b)) else {
        return false;
    };
    let rolling_out = all.iter().any(|d| {
        is_running_canary(d)
            && d.deploy.started_at >= last.deploy.started_at
            && version_of(&d.deploy).is_none_or(|v| Some(v) == version_of(&last.deploy))
    });
    completed && !rolling_out
}

fn order(a: &DeployRecord, b: &DeployRecord) -> std::cmp::Ordering {
    a.deploy
        .started_at
        .cmp(&b.deploy.started_at)
        .then(a.id.cmp(&b.id))
}

/// The engine's R1 evidence for `region` of a release in [`ReleaseScope::AllRegions`]
/// that the region still runs: a `release_regressed` signal from the region's deploy
/// of the release on (the rollback undoes that deploy). `None` for a region that does
/// not run the release, or a release whose scope is narrower.
pub fn release_signal(release: &Release, region: &str) -> Option<Signal> {
    let r = release.region(region)?;
    if release.scope != ReleaseScope::AllRegions || !r.current {
        return None;
    }
    let target = TargetRef::parse(&r.target)?;
    let affected = release.regressed().join(", ");
    Some(Signal {
        kind: SignalKind::ReleaseRegressed,
        target: Some(target),
        scope: Scope::Any,
        dependency: None,
        value: None,
        baseline: None,
        inconclusive: None,
        started_at: r.started_at?,
        ended_at: None,
        observations: 1,
        source: SignalSource::Release,
        fingerprint: format!("release:{}", release.id),
        summary: format!(
            "release {} regressed in {affected}: every region on it rolls back",
            release.id
        ),
    })
}

/// A rollback decision whose own evidence (a rollback rule other than R1) blames a
/// deploy: a regression of the region on the suspect's release.
pub fn regresses(decision: &Decision) -> bool {
    decision.verdict == Verdict::Rollback
        && decision.suspect.is_some()
        && !own_rules(decision).is_empty()
}

/// The rollback rules that fired on the region's own evidence (not R1).
pub fn own_rules(decision: &Decision) -> Vec<String> {
    decision
        .fired_with(Outcome::Rollback)
        .filter(|f| f.rule_id != RELEASE_RULE)
        .map(|f| f.rule_id.clone())
        .collect()
}

/// `decision` (stored as `decision_id`, blaming `deploy_id`) as where its region
/// regressed, unless it fired on R1 alone. Its time is the regression's start.
pub fn regression(
    decision: &Decision,
    decision_id: i64,
    deploy_id: i64,
    decided_at: DateTime<Utc>,
) -> Option<Regression> {
    let rules = own_rules(decision);
    (decision.verdict == Verdict::Rollback && !rules.is_empty()).then(|| Regression {
        deploy_id,
        decision_id,
        decided_at: decision.regression_started_at.unwrap_or(decided_at),
        rules,
    })
}

#[cfg(test)]
mod tests;
