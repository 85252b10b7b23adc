//! The suspect deploy, its known-good revision and the other deploys of its change.

use chrono::{DateTime, Duration, Utc};

use super::deploy_order;
use super::known_bad::{KnownBad, is_known_bad};
use crate::domain::deploy::is_healthy_status;
use crate::domain::{DeployRecord, DeploySource};

/// A rollout and a Helm revision (or CI run) this close together are one change.
const SAME_STORY: Duration = Duration::seconds(60);
/// Kubernetes first: its revision is what an undo targets precisely.
fn source_rank(source: DeploySource) -> u8 {
    match source {
        DeploySource::Kubernetes => 3,
        DeploySource::Ci => 2,
        DeploySource::Helm => 1,
        DeploySource::Flagger | DeploySource::Argo => 0,
    }
}

/// The latest deploy at or before the regression start, inside the window; a
/// Kubernetes, CI or Helm one when there is one, and the rollout rather than the Helm
/// revision or CI run of the same change. A canary run still going whose start is
/// unknown (first seen mid-way) may have started before the regression: it is a
/// candidate whenever it was seen.
pub(super) fn find_suspect<'a>(
    deploys: &[&'a DeployRecord],
    start: DateTime<Utc>,
    window: Duration,
) -> Option<&'a DeployRecord> {
    let in_window: Vec<&DeployRecord> = deploys
        .iter()
        .copied()
        .filter(|d| {
            (d.deploy.started_at <= start && start - d.deploy.started_at <= window)
                || (!d.deploy.start_known() && is_running_canary(d))
        })
        .collect();
    let preferred: Vec<&DeployRecord> = in_window
        .iter()
        .copied()
        .filter(|d| source_rank(d.deploy.source) > 0)
        .collect();
    let pool = if preferred.is_empty() {
        in_window
    } else {
        preferred
    };
    let latest = pool.iter().copied().max_by(|a, b| {
        a.deploy
            .started_at
            .cmp(&b.deploy.started_at)
            .then(source_rank(a.deploy.source).cmp(&source_rank(b.deploy.source)))
            .then_with(|| deploy_order(a, b))
    })?;
    if latest.deploy.source != DeploySource::Kubernetes {
        let rollout = pool
            .iter()
            .copied()
            .filter(|d| {
                d.deploy.source == DeploySource::Kubernetes
                    && latest.deploy.started_at - d.deploy.started_at <= SAME_STORY
            })
            .max_by(|a, b| deploy_order(a, b));
        if rollout.is_some() {
            return rollout;
        }
    }
    Some(latest)
}

/// When a deploy completed: the end of its rollout, or its start when no end (or an
/// end before the start) was reported.
pub(super) fn completed_at(d: &DeployRecord) -> DateTime<Utc> {
    d.deploy
        .finished_at
        .filter(|f| *f >= d.deploy.started_at)
        .unwrap_or(d.deploy.started_at)
}

/// Whether a regression that started at `start` started "immediately after" `d`: no
/// later than `blame_window` after it completed. During its rollout counts, also a
/// rollout still in progress however long it has run (a progressive canary).
pub(super) fn immediately_after(
    d: &DeployRecord,
    start: DateTime<Utc>,
    blame_window: Duration,
) -> bool {
    (d.deploy.finished_at.is_none() && in_progress(&d.deploy.status))
        || start - completed_at(d) <= blame_window
}

/// Statuses of a deploy still rolling out.
fn in_progress(status: &str) -> bool {
    use crate::domain::deploy::status;
    matches!(
        status,
        status::PROGRESSING | status::WAITING | status::STARTED | status::INITIALIZING
    )
}

/// The latest healthy deploy of the same source and target that started before `d`
/// and is not known to be bad (a rollback went away from what it runs).
pub(super) fn known_good<'a>(
    deploys: &[&'a DeployRecord],
    d: &DeployRecord,
    bad: &[KnownBad],
) -> Option<&'a DeployRecord> {
    deploys
        .iter()
        .copied()
        .filter(|g| {
            g.deploy.source == d.deploy.source
                && g.deploy.target == d.deploy.target
                && g.deploy.started_at < d.deploy.started_at
                && is_healthy_status(&g.deploy.status)
                && !is_known_bad(bad, g)
        })
        .max_by(|a, b| deploy_order(a, b))
}

/// Whether a deploy has started: not a canary run still waiting at its controller's
/// gate (Flagger's `confirm-rollout`), which serves nothing yet.
pub(super) fn has_started(d: &DeployRecord) -> bool {
    !(is_canary_run(d) && d.deploy.status == crate::domain::deploy::status::WAITING)
}

/// The deploy of `source` that is part of the suspect's change: the suspect itself, or
/// the closest one of that source within a minute of it.
pub(super) fn story_member<'a>(
    deploys: &[&'a DeployRecord],
    suspect: &'a DeployRecord,
    source: DeploySource,
) -> Option<&'a DeployRecord> {
    if suspect.deploy.source == source {
        return Some(suspect);
    }
    deploys
        .iter()
        .copied()
        .filter(|d| {
            d.deploy.source == source
                && (d.deploy.started_at - suspect.deploy.started_at).abs() <= SAME_STORY
        })
        .min_by(|a, b| {
            let gap = |d: &DeployRecord| (d.deploy.started_at - suspect.deploy.started_at).abs();
            gap(a).cmp(&gap(b)).then_with(|| deploy_order(b, a))
        })
}
/// Whether a deploy is a canary controller's run (Flagger, Argo Rollouts).
pub(crate) fn is_canary_run(d: &DeployRecord) -> bool {
    matches!(d.deploy.source, DeploySource::Flagger | DeploySource::Argo)
}

/// Whether a deploy is a canary run its controller has not finished: rolling it back
/// is the controller's abort. A promoted run is history like any other deploy.
pub(crate) fn is_running_canary(d: &DeployRecord) -> bool {
    is_canary_run(d) && in_progress(&d.deploy.status)
}
