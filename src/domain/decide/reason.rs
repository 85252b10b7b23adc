//! The reason text, and deploys and fired rules as people name them.

use chrono::{DateTime, Utc};

use super::plan::image_tag;
use super::suspect::is_canary_run;
use crate::domain::decision::{FiredRule, HoldReason, Verdict, clock};
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
    pub(super) holds: &'a [HoldReason],
    pub(super) suspect: Option<&'a DeployRecord>,
    pub(super) rollback_to: Option<&'a DeployRecord>,
    pub(super) regression_started_at: Option<DateTime<Utc>>,
    pub(super) evidence_count: usize,
    pub(super) covering: &'a [&'a Freeze],
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
    let mut sentence = match r.verdict {
        Verdict::Ok if r.evidence_count == 0 => format!("No signal is active for {key}"),
        Verdict::Ok => format!(
            "No rule fires for {key}: its {} active signal(s) are within the policy",
            r.evidence_count
        ),
        Verdict::Monitor => format!("Monitor {key} closely: {}", with(Outcome::Monitor)),
        Verdict::Investigate => format!("Investigate {key} now: {}", with(Outcome::Investigate)),
        Verdict::Rollback => {
            let since = match (r.regression_started_at, r.suspect) {
                (Some(start), Some(s)) => format!(
                    " since {}, {} after the suspect deploy started",
                    clock(start),
                    fmt_secs(
                        u64::try_from((start - s.deploy.started_at).num_seconds()).unwrap_or(0)
                    )
                ),
                _ => String::new(),
            };
            format!(
                "Roll back {key} from {} to {}: {}{since}",
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
            "Hold the rollback of {key} that {} for: {}",
            ids_call(Outcome::Rollback),
            details()
        ),
        Verdict::Hold => format!(
            "Hold {key}: the only evidence that could call for a rollback is inconclusive: {}",
            details()
        ),
        Verdict::Freeze => {
            let mut s = format!(
                "Freeze all deployments of {key} and escalate: {}",
                with(Outcome::Freeze)
            );
            if rolling_back {
                if r.holds.is_empty() {
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
    for freeze in r.covering {
        sentence.push_str(&format!(
            "; freeze #{} ({}) covers the target, and rollbacks are still admitted",
            freeze.id, freeze.reason
        ));
    }
    sentence.push('.');
    sentence
}
