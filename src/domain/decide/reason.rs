//! The reason text, and deploys and fired rules as people name them.

use chrono::{DateTime, Duration, Utc};

use super::holds::Outage;
use super::known_bad::KnownBad;
use super::pending::pending_words;
use super::plan::image_tag;
use super::suspect::{completed_at, is_canary_run};
use crate::domain::decision::{FiredRule, HoldReason, PendingRule, RollbackPlan, Verdict, clock};
use crate::domain::policy::{Outcome, fmt_secs, fmt_value};
use crate::domain::{DeployRecord, Freeze, Target};

/// A deploy as people name it: `kubernetes revision 7 (v2.5.0)`.
pub(crate) fn label(d: &DeployRecord) -> String {
    let version = d
        .deploy
        .version
        .clone()
        .or_else(|| image_tag(d))
        .map_or_else(String::new, |v| format!(" ({v})"));
    format!(
        "{} revision {}{version}",
        d.deploy.source.as_str(),
        d.deploy.revision
    )
}

/// A fired rule as evidence in a sentence: `M2 (error_rate at 7 %, > 5 %)`.
pub(crate) fn summary(f: &FiredRule) -> String {
    match f.observed {
        Some(observed) if f.threshold.is_some() => {
            let baseline = f
                .baseline
                .filter(|_| f.condition.contains("baseline"))
                .map_or_else(String::new, |b| {
                    format!(" with baseline {}", fmt_value(f.kind, b))
                });
            format!(
                "{} ({} at {}, {}{baseline})",
                f.rule_id,
                f.kind.as_str(),
                fmt_value(f.kind, observed),
                f.condition
            )
        }
        _ => format!(
            "{} ({})",
            f.rule_id,
            f.kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(super) struct ReasonInputs<'a> {
    pub(super) verdict: Verdict,
    pub(super) target: &'a Target,
    pub(super) fired: &'a [FiredRule],
    pub(super) pending: &'a [PendingRule],
    pub(super) holds: &'a [HoldReason],
    pub(super) suspect: Option<&'a DeployRecord>,
    pub(super) rollback_to: Option<&'a DeployRecord>,
    /// A deploy that runs a revision a rollback went away from, and that rollback.
    pub(super) redeploy: Option<(&'a DeployRecord, KnownBad<'a>)>,
    pub(super) plan: Option<&'a RollbackPlan>,
    pub(super) regression_started_at: Option<DateTime<Utc>>,
    pub(super) evidence_count: usize,
    pub(super) covering: &'a [&'a Freeze],
    /// Whether the regression started within the blame window after the suspect.
    pub(super) blamed: bool,
    pub(super) blame_window_secs: u64,
    /// Whether every rollback rule that fired compares against a baseline.
    pub(super) relative_only: bool,
    /// Outages the regression began during, recovered more than the grace ago.
    pub(super) outages_first: &'a [Outage<'a>],
    pub(super) now: DateTime<Utc>,
}

/// A suspect deployed longer ago than this is called old in a rollback's reason.
const LONG_AGO: Duration = Duration::hours(1);

/// A span as people say it, rounded down: `45 s`, `62 min`, `3 h 5 min`.
pub(super) fn fmt_span(span: Duration) -> String {
    let secs = span.num_seconds().max(0);
    if secs < 120 {
        format!("{secs} s")
    } else if secs < 2 * 3600 {
        format!("{} min", secs / 60)
    } else if (secs / 60) % 60 == 0 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} h {} min", secs / 3600, (secs / 60) % 60)
    }
}

/// Why the suspect is only a candidate: the regression began too long after it.
fn not_immediately_after(r: &ReasonInputs) -> String {
    match (r.suspect, r.regression_started_at) {
        (Some(s), Some(start)) => format!(
            "the regression started at {}, {} after {} completed, beyond the {} blame \
             window: that deploy is a candidate, not to blame (\"If the regression started \
             immediately after a deploy or config change, proceed to rollback; otherwise \
             continue investigation.\")",
            clock(start),
            fmt_span(start - completed_at(s)),
            label(s),
            fmt_secs(r.blame_window_secs)
        ),
        _ => String::new(),
    }
}

/// What a person should know before trusting a rollback: a relative-only trigger, an
/// old suspect, an outage that came first.
fn caveats(r: &ReasonInputs) -> Vec<String> {
    let mut caveats = Vec::new();
    if r.relative_only {
        caveats.push(
            "only relative rules fire (against the signals' baselines); no absolute threshold \
             is crossed"
                .to_string(),
        );
    }
    if let Some(s) = r.suspect {
        let age = r.now - completed_at(s);
        if age > LONG_AGO {
            caveats.push(format!(
                "{} was deployed long ago ({} before now)",
                label(s),
                fmt_span(age)
            ));
        }
    }
    for outage in r.outages_first {
        let grace = r.now - outage.recovered_at;
        caveats.push(format!(
            "the dependency `{}` was degraded first ({} to {}, signal {}), and the target \
             has kept regressing for {} since it recovered",
            outage.dependency(),
            clock(outage.signal.started_at),
            clock(outage.recovered_at),
            outage.signal.fingerprint,
            fmt_span(grace)
        ));
    }
    caveats
}

/// When the regression started, and what is known of the suspect's start.
fn since(start: DateTime<Utc>, suspect: &DeployRecord) -> String {
    if suspect.deploy.start_known() {
        format!(
            " since {}, {} after the suspect deploy started",
            clock(start),
            fmt_span(start - suspect.deploy.started_at)
        )
    } else {
        format!(
            " since {}; the suspect was first seen at {}, mid-run, so when it started is \
             unknown",
            clock(start),
            clock(suspect.deploy.started_at)
        )
    }
}

/// `kubernetes revision 9 (v2.5.0) deploys kubernetes revision 7 (v2.5.0) again, which
/// was rolled back at 10:12 UTC`.
fn redeploy_words(d: &DeployRecord, bad: &KnownBad) -> String {
    format!(
        "{} deploys {} again, which was rolled back at {} ({})",
        label(d),
        label(bad.deploy),
        clock(bad.at),
        label(bad.by)
    )
}

/// What the plan says of a rollback that names no revision of a known source.
fn unpinned_words(r: &ReasonInputs, plan: &RollbackPlan) -> String {
    if plan.pins_a_revision(r.target) || r.target.target.kind != "Deployment" {
        String::new()
    } else if plan.rollback_images.is_empty() {
        "; the Kubernetes revision to return to is unknown (no rollout of it is on \
         record, and it names no images): look it up with `kubectl rollout history` \
         before undoing"
            .to_string()
    } else {
        format!(
            "; no Kubernetes revision of it is on record, so the rollback sets the images \
             back to {}",
            plan.rollback_images.join(", ")
        )
    }
}

pub(super) fn reason(r: &ReasonInputs) -> String {
    let key = r.target.target.key();
    let with = |outcome: Outcome| {
        r.fired
            .iter()
            .filter(|f| f.outcome == outcome)
            .map(summary)
            .collect::<Vec<_>>()
            .join(", ")
    };
    // "M2 calls for" or "M2, G2 call for".
    let ids_call = |outcome: Outcome| {
        let ids: Vec<&str> = r
            .fired
            .iter()
            .filter(|f| f.outcome == outcome)
            .map(|f| f.rule_id.as_str())
            .collect();
        let verb = if ids.len() == 1 { "calls" } else { "call" };
        format!("{} {verb}", ids.join(", "))
    };
    let details = || {
        r.holds
            .iter()
            .map(HoldReason::detail)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rolling_back = r.fired.iter().any(|f| f.outcome == Outcome::Rollback);
    let pending = || {
        r.pending
            .iter()
            .map(|p| pending_words(p, r.now))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let and_pending = || {
        if r.pending.is_empty() {
            String::new()
        } else {
            format!("; pending: {}", pending())
        }
    };
    let redeploy = r.redeploy.map_or_else(String::new, |(d, bad)| {
        format!("; {}", redeploy_words(d, &bad))
    });
    let mut sentence = match r.verdict {
        Verdict::Ok if r.evidence_count == 0 => format!("No signal is active for {key}"),
        Verdict::Ok => format!(
            "No rule fires for {key}: its {} active signal(s) are within the policy",
            r.evidence_count
        ),
        // Nothing fires or waits: the verdict comes from a redeploy of a known-bad revision.
        Verdict::Monitor if r.fired.is_empty() && r.pending.is_empty() => format!(
            "Monitor {key} closely: no rule fires, but {}",
            r.redeploy
                .map_or_else(String::new, |(d, bad)| redeploy_words(d, &bad))
        ),
        Verdict::Monitor if r.fired.is_empty() => format!(
            "Monitor {key} closely: no rule fires yet, but {}{redeploy}",
            pending()
        ),
        Verdict::Monitor => format!(
            "Monitor {key} closely: {}{}{redeploy}",
            with(Outcome::Monitor),
            and_pending()
        ),
        Verdict::Investigate if rolling_back && !r.blamed => {
            let investigate = with(Outcome::Investigate);
            let also = if investigate.is_empty() {
                String::new()
            } else {
                format!("; {investigate}")
            };
            format!(
                "Investigate {key} now: {} for a rollback, but {}{also}",
                ids_call(Outcome::Rollback),
                not_immediately_after(r)
            )
        }
        Verdict::Investigate => format!(
            "Investigate {key} now: {}{}{redeploy}",
            with(Outcome::Investigate),
            and_pending()
        ),
        Verdict::Rollback => {
            let since = match (r.regression_started_at, r.suspect) {
                (Some(start), Some(s)) => since(start, s),
                _ => String::new(),
            };
            let unpinned = r
                .plan
                .map_or_else(String::new, |plan| unpinned_words(r, plan));
            format!(
                "Roll back {key} from {} to {}: {}{since}{redeploy}{unpinned}",
                r.suspect.map_or_else(|| "?".into(), label),
                r.rollback_to.map_or_else(
                    || match r.suspect {
                        Some(s) if is_canary_run(s) => {
                            "the primary (the canary controller aborts the run)".into()
                        }
                        _ => "?".into(),
                    },
                    label
                ),
                with(Outcome::Rollback)
            )
        }
        Verdict::Hold if rolling_back => format!(
            "Hold the rollback of {key} that {} for: {}{redeploy}",
            ids_call(Outcome::Rollback),
            details()
        ),
        Verdict::Hold => format!(
            "Hold {key}: the only evidence that could call for a rollback is inconclusive: {}",
            details()
        ),
        Verdict::Freeze => {
            // The freeze's scope (every target, the namespace, the target) is the
            // actions configuration's: the sentence names the evidence's target only.
            let mut s = format!(
                "Freeze deployments and escalate: {} on {key}",
                with(Outcome::Freeze)
            );
            if rolling_back {
                if r.holds.is_empty() && !r.blamed {
                    s.push_str(&format!(
                        "; {} also for a rollback, but {}",
                        ids_call(Outcome::Rollback),
                        not_immediately_after(r)
                    ));
                } else if r.holds.is_empty() {
                    s.push_str(&format!(
                        "; {} also for a rollback, admitted once an operator approves it",
                        ids_call(Outcome::Rollback)
                    ));
                } else {
                    s.push_str(&format!(
                        "; the rollback that {} for is held: {}",
                        ids_call(Outcome::Rollback),
                        details()
                    ));
                }
            }
            s
        }
    };
    if matches!(r.verdict, Verdict::Rollback | Verdict::Investigate) && rolling_back {
        for caveat in caveats(r) {
            sentence.push_str(&format!("; note: {caveat}"));
        }
    }
    for freeze in r.covering {
        // A freeze admits rollbacks: say so only of a rollback this decision calls for.
        let admits = if r.verdict == Verdict::Rollback {
            " and admits this rollback"
        } else {
            ""
        };
        sentence.push_str(&format!(
            "; freeze #{} ({}) covers the target{admits}",
            freeze.id, freeze.reason
        ));
    }
    sentence.push('.');
    sentence
}
