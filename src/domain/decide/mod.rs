//! decide(): the pure function that turns a target's deploys, signals, freezes and
//! rollback history into a [`Decision`] by a [`Policy`]. The clock is a parameter; the
//! same inputs in any order give the same decision.
//!
//! # How a decision is reached
//!
//! 1. Only signals active at `now` count, and only deploys that started by `now`.
//!    `dependency` signals are never rule evidence; they are H2 evidence (and, once
//!    ended, `dependency_recovered` evidence).
//! 2. A rule fires for an active signal of one of its kinds whose scope it matches
//!    (rule `any`: every signal; `canary`: canary signals; `stable`: stable and
//!    whole-workload signals) when its condition holds strictly (`>`, with a 1e-9
//!    relative tolerance so that float noise never decides an edge), the signal has
//!    been active for at least `min_duration_secs` and observed `min_observations`
//!    times, its value passes the rule's `floor` for its kind, and — for
//!    `after_deploy` rules — a deploy started at or before the signal inside the
//!    correlation window, or — for `immediately_after_deploy` rules — one completed at
//!    most the blame window before it.
//! 3. The verdict is the strongest outcome fired. If a rollback rule fires, the holds
//!    below are checked and any one of them turns the rollback into `hold`. Else, when
//!    the regression started more than the blame window (per environment) after the
//!    suspect completed, the verdict is `investigate`: the runbook's "If the
//!    regression started immediately after a deploy or config change, proceed to
//!    rollback; otherwise continue investigation." The suspect is then a candidate,
//!    and the holds about carrying out its rollback (`no_known_good`, `loop_guard`,
//!    `gitops`) do not arise. M8 (a `freeze` rule) makes the verdict `freeze` whatever
//!    else fires.
//! 4. A rule is *pending* when an active signal meets its condition but a gate of
//!    step 2 is not met yet (duration, observations, a deploy before it). Nothing fired
//!    but something pending (G1's failing health check in its first three minutes)
//!    is `monitor`, never `ok`, with the rule and when it fires in the reason; a
//!    canary controller's gates read a target with a pending rule that calls for more
//!    than watching as not healthy.
//! 5. Deploys: a canary run waiting at its controller's gate has not started and is
//!    no deploy yet; a canary run first seen mid-way has an unknown start (at or before
//!    it was first seen).
//!
//! # Inconclusive evidence
//!
//! A signal is *assessable* by a rule when the rule can evaluate its condition on it:
//! a presence rule always can; a value rule needs a usable value (present, finite, not
//! negative, at most 1 for ratio kinds — a larger one is a percentage sent by mistake);
//! a relative rule also needs a usable baseline (for a factor, a positive one). A
//! signal flagged `inconclusive` by its source is assessable by no rule.
//!
//! An active signal is **inconclusive** when at least one rollback or freeze rule
//! matches its kind and scope, and *no* rule that matches it can assess it. So an error
//! rate with a value but no baseline is not inconclusive (M1/M2 assess it; G4 simply
//! cannot fire), while an error rate with no value, or a latency with no baseline, is.
//!
//! An inconclusive signal never fires a rule. It becomes a hold (code `inconclusive`)
//! only when **no rollback or freeze rule fires**: then it is the only evidence that a
//! rollback might be needed, and the verdict is `hold` — above `monitor` and
//! `investigate` — naming each such signal and why. When a rollback rule fires on
//! conclusive evidence, inconclusive signals elsewhere change nothing.
//!
//! # Holds (only when a rollback rule fires)
//!
//! - `H1`: a deploy started after the regression started (the earliest start of a
//!   signal behind a rollback or freeze rule): the regression predates the latest
//!   deploy. A deploy whose start is unknown is not one.
//! - `H2`: an active `dependency` signal was passed in (the caller passes only those
//!   that concern the target: see `Classifier::depends_on`)
//!   (case-insensitive).
//! - `dependency_recovered`: the regression began while a dependency was degraded (or
//!   up to the outage grace before its signal started), the dependency recovered less
//!   than the outage grace ago, and it is not degraded again: the regression is the
//!   outage's. After the grace the deploy may be blamed, and the reason says the
//!   outage came first.
//! - `no_deploy_in_window`: no deploy started in the correlation window before the
//!   regression.
//! - `no_known_good`: the suspect has no earlier healthy revision of its source that
//!   is not known bad (a rollback went away from what it runs).
//! - `loop_guard`: counting automatic rollbacks after `recovered_at` (the guard resets
//!   when the target recovers) and, whenever they were, those away from the revision
//!   the suspect runs: `limit` or more inside the window, or the last one less than
//!   `min_interval` ago (docs/loop-guard.md).
//! - `gitops`: a GitOps controller manages the target; the Git revert is recommended.
//!
//! An active [`Freeze`] covering the target changes no verdict (a freeze admits
//! rollbacks); the reason says it is there.
//!
//! # Known-bad revisions
//!
//! A revision a rollback went away from, as the deploy history shows it, is never a
//! rollback target; a deploy of it again is named in the reason, and with nothing
//! firing makes the verdict `monitor`.

use std::borrow::Borrow;
use std::cmp::Ordering;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::decision::{Decision, HoldReason, Verdict};
use super::policy::{Condition, Outcome, Policy, Rule};
use super::{DeployRecord, Freeze, Signal, SignalKind, Target};

mod holds;
mod known_bad;
mod pending;
mod plan;
mod reason;
mod rules;
mod suspect;
mod verify;

pub use holds::loop_guard;
use holds::{HoldInputs, Outage, hold_reasons, outages_during};
use known_bad::{known_bad, redeployed};
use pending::pending_rules;
use plan::{gitops_commands, rollback_plan};
use reason::{ReasonInputs, reason};
pub(crate) use reason::{label, summary};
use rules::{Windows, fire_rules, inconclusive_signals};
use suspect::{find_suspect, has_started, immediately_after, known_good};
pub(crate) use suspect::{is_canary_run, is_running_canary};
use verify::{escalation, verification};

/// Longer settings are treated as this (a century), keeping time arithmetic in range.
const MAX_SECS: u64 = 100 * 365 * 86_400;

/// A target's rollback history, as the engine recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When automatic rollbacks of this target were executed.
    pub automatic_rollbacks: Vec<DateTime<Utc>>,
    /// When the last rollback of this target (automatic or not) was executed.
    pub last_rollback: Option<DateTime<Utc>>,
    /// The last time the target was seen healthy after a rollback; resets the loop
    /// guard and ends E1.
    pub recovered_at: Option<DateTime<Utc>>,
}

impl History {
    /// The history the store holds: the automatic rollbacks (oldest first) in the loop
    /// guard's window, the newest of them as the last rollback, and the last recovery.
    pub fn of(
        automatic_rollbacks: Vec<DateTime<Utc>>,
        recovered_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            last_rollback: automatic_rollbacks.last().copied(),
            automatic_rollbacks,
            recovered_at,
        }
    }
}

/// Decides what to do about `target` at `now`.
///
/// `deploys` is the target's history (its rollouts and CI deploys and the linked Helm
/// revisions) and `signals` its signals plus dependency signals, both in any order and
/// not filtered by time (owned or borrowed: an evaluation lends its snapshot's). `policy`
/// should have passed [`Policy::validate`]; a rule without exactly one condition never
/// fires.
pub fn decide<S: Borrow<Signal>>(
    policy: &Policy,
    target: &Target,
    deploys: &[DeployRecord],
    signals: &[S],
    freezes: &[Freeze],
    history: &History,
    now: DateTime<Utc>,
) -> Decision {
    let window = span(policy.correlation_window_secs);
    let environment = target.environment.as_deref();
    let blame_window = span(policy.blame_window_secs_for(environment));
    let grace = span(policy.outage_grace_secs_for(environment));
    let mut deploys: Vec<&DeployRecord> = deploys
        .iter()
        .filter(|d| d.deploy.started_at <= now && has_started(d))
        .collect();
    deploys.sort_by(|a, b| deploy_order(a, b));
    let signals = || signals.iter().map(Borrow::borrow);
    let mut active: Vec<&Signal> = signals().filter(|s| s.is_active(now)).collect();
    active.sort_by(|a, b| signal_order(a, b));
    let (dependency_signals, evidence): (Vec<&Signal>, Vec<&Signal>) = active
        .into_iter()
        .partition(|s| s.kind == SignalKind::Dependency);
    // Dependency signals that have ended too: an outage is remembered (H2's memory).
    let mut dependency_history: Vec<&Signal> = signals()
        .filter(|s| s.kind == SignalKind::Dependency && s.started_at <= now)
        .collect();
    dependency_history.sort_by(|a, b| signal_order(a, b));
    // R1 (a release regressed in enough regions) is every policy's unless the policy
    // has its own rule for `release_regressed` signals.
    let release_rule = Rule::release();
    let implicit = (!policy
        .rules
        .iter()
        .any(|r| r.kinds.contains(&SignalKind::ReleaseRegressed)))
    .then_some(&release_rule);
    let rules: Vec<(&Rule, Condition)> = policy
        .rules
        .iter()
        .chain(implicit)
        .filter_map(|rule| rule.condition().ok().map(|c| (rule, c)))
        .collect();

    let bad = known_bad(&deploys);
    let windows = Windows {
        correlation: window,
        blame: blame_window,
    };
    let fired = fire_rules(&rules, &evidence, &deploys, windows, now);
    let pending = pending_rules(&rules, &evidence, &deploys, &fired, windows, now);
    let strongest = fired.iter().map(|f| f.outcome).max();
    let rollback_fires = fired.iter().any(|f| f.outcome == Outcome::Rollback);
    let regression_started_at = fired
        .iter()
        .filter(|f| f.outcome >= Outcome::Rollback)
        .map(|f| f.started_at)
        .min();
    let suspect = regression_started_at.and_then(|start| find_suspect(&deploys, start, window));
    let rollback_to = suspect.and_then(|s| known_good(&deploys, s, &bad));
    // A redeploy of a revision a rollback went away from is evidence: of the suspect,
    // or, with no regression, of the latest deploy in the window.
    let latest = suspect.or_else(|| {
        deploys
            .iter()
            .rev()
            .copied()
            .find(|d| !is_canary_run(d) && now - d.deploy.started_at <= window)
    });
    let redeploy = latest.and_then(|d| redeployed(&bad, d).map(|b| (d, b)));
    // "If the regression started immediately after a deploy or config change, proceed
    // to rollback; otherwise continue investigation."
    let blamed = match (regression_started_at, suspect) {
        (Some(start), Some(s)) => immediately_after(s, start, blame_window),
        _ => true,
    };
    let outages = regression_started_at.map_or_else(Vec::new, |start| {
        outages_during(&dependency_history, start, grace, now)
    });
    let (recovering, outages_first): (Vec<Outage>, Vec<Outage>) = outages
        .into_iter()
        .partition(|o| now - o.recovered_at < grace);

    let holds = match regression_started_at {
        Some(start) if rollback_fires => hold_reasons(&HoldInputs {
            policy,
            target,
            deploys: &deploys,
            dependency_signals: &dependency_signals,
            recovering: &recovering,
            history,
            now,
            start,
            suspect,
            rollback_to,
            blamed,
        }),
        _ if strongest.is_none_or(|o| o < Outcome::Rollback) => {
            inconclusive_signals(&rules, &evidence)
        }
        _ => Vec::new(),
    };
    let verdict = if strongest == Some(Outcome::Freeze) {
        Verdict::Freeze
    } else if !holds.is_empty() {
        Verdict::Hold
    } else if rollback_fires && !blamed {
        Verdict::Investigate
    } else {
        match strongest.map_or(Verdict::Ok, Verdict::from) {
            // An active signal that fires no rule yet, or a known-bad revision back.
            Verdict::Ok if !pending.is_empty() || redeploy.is_some() => Verdict::Monitor,
            verdict => verdict,
        }
    };
    let relative_only = rollback_fires
        && fired
            .iter()
            .filter(|f| f.outcome == Outcome::Rollback)
            .all(|f| {
                rules
                    .iter()
                    .any(|(rule, c)| rule.id == f.rule_id && c.is_relative())
            });

    let plan = if verdict == Verdict::Rollback
        || (verdict == Verdict::Freeze && rollback_fires && holds.is_empty() && blamed)
    {
        rollback_plan(target, &deploys, suspect, rollback_to, &bad)
    } else {
        None
    };
    let recommended = if suspect.is_some_and(is_running_canary) {
        // Its controller aborts the run (Flagger's rollback hook, Argo's analysis):
        // a person's undo of the Deployment would fight it. An Argo Rollout's own
        // abort is what a person runs when the analysis has not caught it.
        match (target.target.kind.as_str(), plan.is_some()) {
            (crate::domain::action::ROLLOUT_KIND, true) => {
                let t = &target.target;
                crate::domain::decision::argo_commands("abort", &t.namespace, &t.name, None)
                    .to_vec()
            }
            _ => Vec::new(),
        }
    } else if let (Some(app), Some(_)) = (
        target
            .argocd_app
            .as_deref()
            .filter(|_| target.gitops.as_deref() == Some("argocd")),
        &plan,
    ) {
        let good = rollback_to.and_then(|g| g.deploy.commit_sha.as_deref());
        let mut commands = crate::domain::decision::argocd_commands(app, good);
        if let Some(sha) = suspect.and_then(|s| s.deploy.commit_sha.as_deref()) {
            commands.push(crate::domain::decision::git_revert(sha));
        }
        commands
    } else if let Some(plan) = &plan {
        plan.commands(target)
    } else if verdict == Verdict::Hold
        && holds.iter().any(|h| matches!(h, HoldReason::Gitops { .. }))
        && holds.iter().all(|h| {
            matches!(
                h,
                HoldReason::Gitops { .. } | HoldReason::NoKnownGood { .. }
            )
        })
    {
        gitops_commands(target, suspect)
    } else {
        Vec::new()
    };

    let covering: Vec<&Freeze> = {
        let mut covering: Vec<&Freeze> = freezes
            .iter()
            .filter(|f| f.covers(&target.target, now))
            .collect();
        covering.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.reason.cmp(&b.reason)));
        covering
    };
    let reason = reason(&ReasonInputs {
        verdict,
        target,
        fired: &fired,
        pending: &pending,
        holds: &holds,
        suspect,
        rollback_to,
        redeploy,
        plan: plan.as_ref(),
        regression_started_at,
        evidence_count: evidence.len(),
        covering: &covering,
        blamed,
        blame_window_secs: policy.blame_window_secs_for(environment),
        relative_only,
        outages_first: &outages_first,
        now,
    });

    let mut decision = Decision {
        verdict,
        reason,
        target: target.target.clone(),
        region: target.region.clone(),
        environment: target.environment.clone(),
        escalate: escalation(policy, history, &fired, &holds, now),
        verification: verification(policy, history, &evidence, now),
        fired,
        holds,
        pending,
        suspect: suspect.cloned(),
        rollback_to: rollback_to.cloned(),
        regression_started_at,
        recommended,
        plan,
        gitops: target.gitops.clone(),
        policy_version: policy.version.clone(),
        inputs_hash: String::new(),
        not_considered: None,
        release: None,
    };
    decision.inputs_hash = decision.compute_inputs_hash();
    decision
}

fn span(secs: u64) -> Duration {
    Duration::seconds(i64::try_from(secs.min(MAX_SECS)).unwrap_or(i64::MAX))
}

fn cmp_f64(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// A total order on signals over every field decide() reads, so that sorting makes
/// the input order irrelevant.
fn signal_order(a: &Signal, b: &Signal) -> Ordering {
    a.started_at
        .cmp(&b.started_at)
        .then(a.kind.cmp(&b.kind))
        .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        .then_with(|| a.scope.as_str().cmp(b.scope.as_str()))
        .then_with(|| a.dependency.cmp(&b.dependency))
        .then_with(|| cmp_f64(a.value, b.value))
        .then_with(|| cmp_f64(a.baseline, b.baseline))
        .then_with(|| a.inconclusive.cmp(&b.inconclusive))
        .then_with(|| a.ended_at.cmp(&b.ended_at))
        .then_with(|| a.observations.cmp(&b.observations))
        .then_with(|| a.summary.cmp(&b.summary))
        .then_with(|| a.target.cmp(&b.target))
}

/// A total order on deploys: by start, then row id, then everything else.
fn deploy_order(a: &DeployRecord, b: &DeployRecord) -> Ordering {
    a.deploy
        .started_at
        .cmp(&b.deploy.started_at)
        .then(a.id.cmp(&b.id))
        .then_with(|| a.deploy.source.as_str().cmp(b.deploy.source.as_str()))
        .then_with(|| a.deploy.target.cmp(&b.deploy.target))
        .then_with(|| a.deploy.revision.cmp(&b.deploy.revision))
        .then_with(|| a.deploy.status.cmp(&b.deploy.status))
        .then_with(|| {
            serde_json::to_string(a)
                .ok()
                .cmp(&serde_json::to_string(b).ok())
        })
}

#[cfg(test)]
mod argo_tests;
#[cfg(test)]
mod hard_cases_tests;
#[cfg(test)]
mod precision_tests;
#[cfg(test)]
mod tests;
