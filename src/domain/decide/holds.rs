//! The holds that stop a rollback a rule calls for, the loop guard among them.

use chrono::{DateTime, Duration, Utc};

use super::known_bad::rollbacks_away_from;
use super::suspect::{has_started, is_canary_run};
use super::{History, deploy_order, span};
use crate::domain::decision::HoldReason;
use crate::domain::policy::Policy;
use crate::domain::{DeployRecord, Signal, Target};

pub(super) struct HoldInputs<'a> {
    pub(super) policy: &'a Policy,
    pub(super) target: &'a Target,
    pub(super) deploys: &'a [&'a DeployRecord],
    pub(super) dependency_signals: &'a [&'a Signal],
    /// The outages the regression began during, recovered less than the grace ago.
    pub(super) recovering: &'a [Outage<'a>],
    pub(super) history: &'a History,
    pub(super) now: DateTime<Utc>,
    pub(super) start: DateTime<Utc>,
    pub(super) suspect: Option<&'a DeployRecord>,
    pub(super) rollback_to: Option<&'a DeployRecord>,
    /// Whether the regression started immediately after the suspect (the blame
    /// window): if not, the suspect is only a candidate, and the holds about carrying
    /// out its rollback (no known good, loop guard, GitOps) do not arise.
    pub(super) blamed: bool,
}

/// A dependency outage, over by `now`, during which the regression began.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outage<'a> {
    pub(super) signal: &'a Signal,
    pub(super) recovered_at: DateTime<Utc>,
}

impl Outage<'_> {
    pub(super) fn dependency(&self) -> &str {
        self.signal
            .dependency
            .as_deref()
            .unwrap_or("unknown")
            .trim()
    }
}

/// The dependency outages over by `now` that the regression starting at `start` began
/// during — between `grace` before the dependency's signal started (its alert may lag
/// the onset) and its recovery — the latest per dependency, and none for a dependency
/// degraded now (H2 holds for that). `dependency_signals` are sorted by start.
pub(super) fn outages_during<'a>(
    dependency_signals: &[&'a Signal],
    start: DateTime<Utc>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Vec<Outage<'a>> {
    let degraded_now = |name: &str| {
        dependency_signals.iter().any(|s| {
            s.is_active(now)
                && s.dependency
                    .as_deref()
                    .unwrap_or("unknown")
                    .trim()
                    .eq_ignore_ascii_case(name)
        })
    };
    let mut outages: Vec<Outage> = Vec::new();
    for s in dependency_signals {
        let Some(recovered_at) = s.ended_at.filter(|end| *end <= now) else {
            continue;
        };
        if start < s.started_at - grace || start > recovered_at {
            continue;
        }
        let outage = Outage {
            signal: s,
            recovered_at,
        };
        if degraded_now(outage.dependency()) {
            continue;
        }
        match outages
            .iter_mut()
            .find(|o| o.dependency().eq_ignore_ascii_case(outage.dependency()))
        {
            Some(known) if known.recovered_at < recovered_at => *known = outage,
            Some(_) => {}
            None => outages.push(outage),
        }
    }
    outages
}

/// The automatic rollbacks the loop guard counts, oldest first: executed by `now`,
/// after the target last recovered or — whenever they were — away from the revision
/// the suspect runs. The second list is those counted only for the latter.
fn counted_rollbacks(
    policy: &Policy,
    history: &History,
    deploys: &[&DeployRecord],
    suspect: Option<&DeployRecord>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let recovered = history.recovered_at.filter(|r| *r <= now);
    let mut counted: Vec<DateTime<Utc>> = history
        .automatic_rollbacks
        .iter()
        .copied()
        .filter(|t| *t <= now && recovered.is_none_or(|r| *t > r))
        .collect();
    let window = span(policy.correlation_window_secs);
    let repeated: Vec<DateTime<Utc>> = suspect
        .map(|s| rollbacks_away_from(deploys, history, s, window, now))
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !counted.contains(t))
        .collect();
    counted.extend(repeated.iter().copied());
    counted.sort();
    (counted, repeated)
}

fn in_window(policy: &Policy, rollbacks: &[DateTime<Utc>], now: DateTime<Utc>) -> u32 {
    let window = span(policy.loop_guard.window_secs);
    let n = rollbacks.iter().filter(|t| now - **t < window).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The loop guard: `Some` (a [`HoldReason::LoopGuard`]) when another automatic
/// rollback of the target away from `suspect` now would trip the circuit breaker —
/// `limit` in the window, or one less than `min_interval` ago. A recovery of the target
/// resets the count, except for rollbacks away from the revision `suspect` runs (a
/// bad deploy, rolled back, recovered from and deployed again is a loop). `deploys` is
/// the target's history, as decide() takes it. `decide()` holds on it, and the action
/// worker checks it again just before it executes an automatic rollback.
pub fn loop_guard(
    policy: &Policy,
    history: &History,
    deploys: &[DeployRecord],
    suspect: Option<&DeployRecord>,
    now: DateTime<Utc>,
) -> Option<HoldReason> {
    let mut deploys: Vec<&DeployRecord> = deploys
        .iter()
        .filter(|d| d.deploy.started_at <= now && has_started(d))
        .collect();
    deploys.sort_by(|a, b| deploy_order(a, b));
    guard(policy, history, &deploys, suspect, now)
}

fn guard(
    policy: &Policy,
    history: &History,
    deploys: &[&DeployRecord],
    suspect: Option<&DeployRecord>,
    now: DateTime<Utc>,
) -> Option<HoldReason> {
    let guard = &policy.loop_guard;
    let (rollbacks, repeated) = counted_rollbacks(policy, history, deploys, suspect, now);
    let count = in_window(policy, &rollbacks, now);
    let last = rollbacks.last().copied();
    let too_soon = last.is_some_and(|t| now - t < span(guard.min_interval_secs));
    (count >= guard.limit || too_soon).then_some(HoldReason::LoopGuard {
        rollbacks_in_window: count,
        limit: guard.limit,
        window_secs: guard.window_secs,
        last_rollback_at: last,
        min_interval_secs: guard.min_interval_secs,
        before_recovery: in_window(policy, &repeated, now),
    })
}

pub(super) fn hold_reasons(inputs: &HoldInputs) -> Vec<HoldReason> {
    let HoldInputs {
        policy,
        target,
        deploys,
        dependency_signals,
        recovering,
        history,
        now,
        start,
        suspect,
        rollback_to,
        blamed,
    } = *inputs;
    let mut holds = Vec::new();
    // A canary run first seen mid-way may have started before the regression: it does
    // not count as a deploy after it.
    if let Some(latest) = deploys
        .iter()
        .rev()
        .find(|d| d.deploy.started_at > start && d.deploy.start_known())
    {
        holds.push(HoldReason::PredatesDeploy {
            regression_started_at: start,
            deploy_id: latest.id,
            deploy_source: latest.deploy.source,
            deploy_revision: latest.deploy.revision.clone(),
            deploy_started_at: latest.deploy.started_at,
        });
    }
    // The caller passes only the dependency signals that concern this target (the
    // engine asks the classifier: the target's declared dependencies, the dependency's
    // configured dependents, or its namespace), so every active one holds. Signals are
    // sorted by start, so the first of each name is the earliest.
    let mut named: Vec<&str> = Vec::new();
    for s in dependency_signals.iter() {
        let name = s.dependency.as_deref().unwrap_or("unknown").trim();
        if named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        named.push(name);
        holds.push(HoldReason::DependencyDegraded {
            dependency: name.to_string(),
            fingerprint: s.fingerprint.clone(),
            since: s.started_at,
        });
    }
    for outage in recovering {
        holds.push(HoldReason::DependencyRecovered {
            dependency: outage.dependency().to_string(),
            fingerprint: outage.signal.fingerprint.clone(),
            since: outage.signal.started_at,
            recovered_at: outage.recovered_at,
            grace_secs: policy.outage_grace_secs_for(target.environment.as_deref()),
        });
    }
    if !blamed {
        // A candidate, not a culprit: investigate, do not plan its rollback.
        return holds;
    }
    match (suspect, rollback_to) {
        (None, _) => holds.push(HoldReason::NoDeployInWindow {
            regression_started_at: start,
            window_secs: policy.correlation_window_secs,
        }),
        // A canary run needs no earlier revision: rolling it back is its controller's
        // abort, which leaves the primary (the version serving before the canary).
        (Some(s), None) if is_canary_run(s) => {}
        (Some(s), None) => holds.push(HoldReason::NoKnownGood {
            suspect_id: s.id,
            source: s.deploy.source,
            revision: s.deploy.revision.clone(),
        }),
        (Some(_), Some(_)) => {}
    }
    holds.extend(guard(policy, history, deploys, suspect, now));
    // An Argo CD Application named in the config is rolled back through Argo CD
    // itself (auto-sync off, then its rollback), which self-heal does not undo.
    if let Some(controller) = &target.gitops
        && !(controller == "argocd" && target.argocd_app.is_some())
    {
        holds.push(HoldReason::Gitops {
            controller: controller.clone(),
            commit_sha: suspect.and_then(|s| s.deploy.commit_sha.clone()),
        });
    }
    holds
}
