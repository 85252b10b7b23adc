//! Multi-region releases in the engine (`domain::release`): a target that is one region
//! of a service is evaluated with its release in view. The release's other regions
//! decide whether its rollback reaches every region (R1's evidence is added to its
//! signals), its decision records the release check, and the release's own decisions
//! (its first regression, its all-region rollback) are recorded once, across replicas.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Engine, load_deploys};
use crate::domain::action::{Event, Message};
use crate::domain::release::{self, RegionInput, Regression, Release, ReleaseScope, Standing};
use crate::domain::{Decision, DecisionBrief, DeployRecord, Target, TargetRef};
use crate::store::{DecisionHead, NewReleaseDecision, StoreError, StoredDecision};

/// A service's regions and what they ran: enough to judge each of its releases.
pub struct ServiceView {
    pub service: String,
    pub targets: Vec<Target>,
    pub deploys: Vec<Vec<DeployRecord>>,
    pub releases: Vec<Release>,
}

impl ServiceView {
    /// The release `target` is concerned with: that of its suspect when it has one,
    /// else that of its newest deploy that names a version (a canary run waiting at
    /// its gate included; a Flagger run, which names none, is passed over).
    pub fn release_of(
        &self,
        target: &TargetRef,
        suspect: Option<&DeployRecord>,
    ) -> Option<&Release> {
        let i = self.targets.iter().position(|t| t.target == *target)?;
        let version = match suspect {
            Some(s) => release::version_of(&s.deploy),
            None => self.deploys[i]
                .iter()
                .filter(|d| release::version_of(&d.deploy).is_some())
                .max_by(|a, b| {
                    a.deploy
                        .started_at
                        .cmp(&b.deploy.started_at)
                        .then(a.id.cmp(&b.id))
                })
                .and_then(|d| release::version_of(&d.deploy)),
        }?;
        self.releases.iter().find(|r| r.version == version)
    }
}

impl Engine {
    /// The configured targets of `target`'s service that have a region, when there
    /// are at least two of them (else the target is no region of a release).
    pub fn release_peers(&self, target: &Target) -> Vec<Target> {
        if target.region.is_none() {
            return Vec::new();
        }
        let service = release::service_of(target);
        let peers: Vec<Target> = self
            .classifier
            .targets()
            .into_iter()
            .filter(|t| t.region.is_some() && release::service_of(t) == service)
            .collect();
        if peers.len() < 2 || !peers.iter().any(|p| p.target == target.target) {
            return Vec::new();
        }
        peers
    }

    /// Every service with two regions or more, by name, with its regions' targets.
    pub fn release_services(&self) -> Vec<(String, Vec<Target>)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for target in self.classifier.targets() {
            let service = release::service_of(&target);
            if target.region.is_none() || !seen.insert(service.clone()) {
                continue;
            }
            let peers = self.release_peers(&target);
            if !peers.is_empty() {
                out.push((service, peers));
            }
        }
        out
    }

    /// Loads what the releases of the service of `peers` are judged from: each region's
    /// deploys and standing decision, and the decisions that blamed their deploys.
    pub async fn service_view(&self, peers: Vec<Target>) -> Result<ServiceView, StoreError> {
        let service = peers.first().map(release::service_of).unwrap_or_default();
        let mut deploys = Vec::with_capacity(peers.len());
        let mut standing = Vec::with_capacity(peers.len());
        for peer in &peers {
            deploys.push(load_deploys(&*self.store, &peer.target).await?);
            standing.push(
                self.store
                    .latest_decision(&peer.target.key())
                    .await?
                    .map(|d| Standing {
                        decision_id: d.id,
                        rules: DecisionBrief::of(&d.decision)
                            .fired
                            .into_iter()
                            .map(|r| r.rule_id)
                            .collect(),
                        verdict: d.verdict,
                    }),
            );
        }
        let ids: Vec<i64> = deploys.iter().flatten().map(|d| d.id).collect();
        let regressions: Vec<Regression> = self
            .store
            .decisions_blaming(&ids)
            .await?
            .iter()
            .filter_map(regression)
            .collect();
        let inputs: Vec<RegionInput<'_>> = peers
            .iter()
            .zip(&deploys)
            .zip(standing)
            .map(|((target, deploys), standing)| RegionInput {
                target,
                deploys,
                standing,
            })
            .collect();
        let releases = release::releases(&service, &inputs, &regressions, &self.policy.releases);
        Ok(ServiceView {
            service,
            targets: peers,
            deploys,
            releases,
        })
    }

    /// The service view of `target`'s service, when it is a region of one.
    pub(super) async fn view_for(
        &self,
        target: &Target,
    ) -> Result<Option<ServiceView>, StoreError> {
        let peers = self.release_peers(target);
        if peers.is_empty() {
            return Ok(None);
        }
        self.service_view(peers).await.map(Some)
    }

    /// Records the release check on `decision` (made with `view`), counting the
    /// decision itself when it is the region's regression on the release.
    pub(super) fn check_release(
        &self,
        view: &ServiceView,
        target: &Target,
        decision: &mut Decision,
    ) {
        let Some(region) = target.region.as_deref() else {
            return;
        };
        let Some(release) = view.release_of(&target.target, decision.suspect.as_ref()) else {
            return;
        };
        let mut release = release.clone();
        if release::regresses(decision)
            && let Some(r) = release
                .regions
                .iter_mut()
                .find(|r| r.target == target.target.key())
            && r.regressed_at.is_none()
        {
            r.regressed_at = decision.regression_started_at;
            r.regressed_rules = release::own_rules(decision);
            release.scope = release::scope(&release, &self.policy.releases);
        }
        decision.release = Some(release::check(&release, region, &self.policy.releases));
        decision.inputs_hash = decision.compute_inputs_hash();
    }

    /// Records the release's own decision when `decision` (just recorded as `stored`)
    /// regressed on it: its first regression, and its all-region rollback. The one
    /// replica that records the all-region rollback announces it, once, as one
    /// incident.
    pub(super) async fn record_release(
        &self,
        stored: &DecisionHead,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(check) = &decision.release else {
            return Ok(());
        };
        if check.scope == ReleaseScope::Healthy || !release::regresses(decision) {
            return Ok(());
        }
        let body = serde_json::to_value(check)?;
        let (row, created) = self
            .store
            .record_release_decision(&NewReleaseDecision {
                release: check.release.clone(),
                scope: check.scope.as_str().into(),
                decision_id: stored.id,
                decided_at: now,
                body,
            })
            .await?;
        if !created {
            return Ok(());
        }
        tracing::warn!(
            release = %check.release,
            scope = check.scope.as_str(),
            affected = %check.affected.join(","),
            decision = stored.id,
            "release decision"
        );
        if check.scope != ReleaseScope::AllRegions {
            return Ok(());
        }
        let Some(planner) = &self.planner else {
            return Ok(());
        };
        let detail = format!(
            "Multi-Region Rollback of release {}: it regressed in {}; every region on it \
             rolls back in parallel ({}), each verified on its own{}.",
            check.release,
            check.affected.join(", "),
            check.rolled_back.join(", "),
            if check.wave_stopped.is_empty() {
                String::new()
            } else {
                format!(
                    "; the wave is stopped for {}",
                    check.wave_stopped.join(", ")
                )
            }
        );
        let message = Message {
            event: Event::Escalate,
            decision_id: row.decision_id,
            decision,
            action: None,
            detail: Some(&detail),
            now,
            eta: None,
            public_url: &planner.channels.public_url,
            actor: None,
        };
        if planner
            .channels
            .enqueue(&*self.store, &message, None, now)
            .await?
        {
            planner.wake.notify_waiters();
        }
        Ok(())
    }

    /// `targets` with the other regions of each one's service: when one region's
    /// decision moves its release, every region of it is evaluated.
    pub(super) fn with_release_peers(&self, targets: &mut BTreeSet<TargetRef>) {
        let mut peers = Vec::new();
        for key in targets.iter() {
            let target = self.target(key);
            peers.extend(self.release_peers(&target).into_iter().map(|t| t.target));
        }
        targets.extend(peers);
    }
}

/// A stored rollback decision as a regression, unless it fired on R1 alone.
fn regression(stored: &StoredDecision) -> Option<Regression> {
    let decision: Decision = serde_json::from_value(stored.decision.clone()).ok()?;
    release::regression(
        &decision,
        stored.id,
        stored.suspect_deploy_id?,
        stored.decided_at,
    )
}
