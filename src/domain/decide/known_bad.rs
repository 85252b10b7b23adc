//! Revisions known to be bad for a target: those a rollback went away from, as the
//! deploy history shows it — a return to what ran before (a reused ReplicaSet, a CI run
//! of an earlier image, a Helm revision "Rollback to N"), whoever rolled back. A
//! known-bad revision is never a rollback target, and a redeploy of one is evidence.
//! The loop guard also asks which revision each of rollwarden's automatic rollbacks
//! went away from. The rules are in docs/loop-guard.md.

use chrono::{DateTime, Duration, Utc};

use super::History;
use super::suspect::{find_suspect, is_canary_run};
use crate::domain::{DeployRecord, DeploySource};

/// A deploy that a rollback went away from.
#[derive(Debug, Clone, Copy)]
pub(super) struct KnownBad<'a> {
    /// The deploy rolled back away from.
    pub(super) deploy: &'a DeployRecord,
    /// When: the start of the deploy that returned.
    pub(super) at: DateTime<Utc>,
    /// The deploy that returned to an earlier revision.
    pub(super) by: &'a DeployRecord,
}

/// A Helm revision made by `helm rollback` (its description is Helm's).
fn is_helm_rollback(d: &DeployRecord) -> bool {
    d.deploy.source == DeploySource::Helm
        && d.deploy
            .description
            .as_deref()
            .is_some_and(|text| text.starts_with("Rollback to "))
}

fn same(a: &DeployRecord, b: &DeployRecord) -> bool {
    a.id == b.id || a.deploy.runs_same_as(&b.deploy) == Some(true)
}

/// The rollbacks the deploy history shows, oldest first. Per source and target, a
/// deploy that runs what an earlier one (before its predecessor) ran returns to it,
/// and its predecessor is rolled back away from — unless it returns to a revision
/// already known bad: that is a redeploy of a bad revision, not a rollback. A Helm
/// revision "Rollback to N" is a rollback whatever it runs.
fn history_rollbacks<'a>(deploys: &[&'a DeployRecord]) -> Vec<KnownBad<'a>> {
    let mut bad: Vec<KnownBad<'a>> = Vec::new();
    let mut groups: Vec<Vec<&'a DeployRecord>> = Vec::new();
    for d in deploys.iter().copied().filter(|d| !is_canary_run(d)) {
        match groups.iter_mut().find(|g| {
            g[0].deploy.source == d.deploy.source && g[0].deploy.target == d.deploy.target
        }) {
            Some(group) => group.push(d),
            None => groups.push(vec![d]),
        }
    }
    for seq in &groups {
        for i in 1..seq.len() {
            let (d, previous) = (seq[i], seq[i - 1]);
            let helm_rollback = is_helm_rollback(d);
            let returns = helm_rollback || seq[..i - 1].iter().any(|e| same(e, d));
            if !returns || same(previous, d) {
                continue;
            }
            if !helm_rollback && bad.iter().any(|b| same(b.deploy, d)) {
                continue;
            }
            bad.push(KnownBad {
                deploy: previous,
                at: d.deploy.started_at,
                by: d,
            });
        }
    }
    bad.sort_by_key(|b| b.at);
    bad
}

/// The deploy an automatic rollback executed at `at` went away from: the one the
/// rollback's decision would have blamed then (the latest before it, preferring the
/// rollout), leaving out the deploys that are themselves returns — the rollback's own
/// result may be on record before the action was marked executed.
fn rolled_back_from<'a>(
    deploys: &[&'a DeployRecord],
    returns: &[KnownBad<'a>],
    at: DateTime<Utc>,
    window: Duration,
) -> Option<&'a DeployRecord> {
    let candidates: Vec<&DeployRecord> = deploys
        .iter()
        .copied()
        .filter(|d| !returns.iter().any(|b| b.by.id == d.id))
        .collect();
    find_suspect(&candidates, at, window)
}

/// The revisions known to be bad for the target, oldest first: those the deploy
/// history shows a rollback away from. rollwarden's own rollbacks are among them once
/// their result is on record (the rollout, the Helm revision, the CI run of the
/// revert); a rollback's time alone does not say what it left, since the history may
/// lack deploys.
pub(super) fn known_bad<'a>(deploys: &[&'a DeployRecord]) -> Vec<KnownBad<'a>> {
    history_rollbacks(deploys)
}

/// The automatic rollbacks in `history` (executed by `now`) that went away from the
/// revision `suspect` runs.
pub(super) fn rollbacks_away_from(
    deploys: &[&DeployRecord],
    history: &History,
    suspect: &DeployRecord,
    window: Duration,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let returns = history_rollbacks(deploys);
    history
        .automatic_rollbacks
        .iter()
        .copied()
        .filter(|t| *t <= now)
        .filter(|t| {
            rolled_back_from(deploys, &returns, *t, window).is_some_and(|from| same(from, suspect))
        })
        .collect()
}

/// Whether `d` runs a revision known to be bad (other than itself).
pub(super) fn is_known_bad(bad: &[KnownBad], d: &DeployRecord) -> bool {
    bad.iter().any(|b| same(b.deploy, d))
}

/// The known-bad revision that `d` deploys again: one rolled back away from before
/// `d` started.
pub(super) fn redeployed<'a>(bad: &[KnownBad<'a>], d: &DeployRecord) -> Option<KnownBad<'a>> {
    bad.iter()
        .copied()
        .filter(|b| b.deploy.id != d.id && b.at <= d.deploy.started_at && same(b.deploy, d))
        .max_by_key(|b| b.at)
}
