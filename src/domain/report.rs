//! The records the runbooks require for a decision: the control-plane runbook's
//! evidence record (JSON: reason, versions from and to, rules with their values,
//! fingerprints, deploy ids, who decided, log link) and the multi-region runbook's
//! incident report (Markdown, the fields of its template).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::decide::{label, summary};
use super::decision::{
    Decision, HoldReason, NotConsidered, Verdict, VerificationStatus, inconclusive_listed,
};
use super::policy::{Outcome, fmt_value};
use super::render::markdown;
use super::{DeployRecord, DeploySource, Scope, SignalKind, SignalSource};

/// Who or what decided, as evidence and reports name it.
pub fn decided_by(decision: &Decision) -> String {
    format!("rollwarden policy {}", decision.policy_version)
}

/// One side of the rollback: the suspect deploy (`from`) or the one to return to (`to`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvidenceVersion {
    pub deploy_id: i64,
    /// The target key, `cluster/namespace/kind/name`.
    pub target: String,
    pub source: DeploySource,
    pub revision: String,
    pub version: Option<String>,
    pub images: Vec<String>,
    pub commit_sha: Option<String>,
    pub helm_release: Option<String>,
    /// When it started — or, when `started_at_known` is false (a canary run first
    /// seen mid-way), when it was first seen: it started at or before then.
    pub started_at: DateTime<Utc>,
    pub started_at_known: bool,
    pub link: Option<String>,
}

fn version(d: Option<&DeployRecord>) -> Option<EvidenceVersion> {
    d.map(|d| EvidenceVersion {
        deploy_id: d.id,
        target: d.deploy.target.key(),
        source: d.deploy.source,
        revision: d.deploy.revision.clone(),
        version: d.deploy.version.clone(),
        images: d.deploy.images.clone(),
        commit_sha: d.deploy.commit_sha.clone(),
        helm_release: d.deploy.helm_release.clone(),
        started_at: d.deploy.started_at,
        started_at_known: d.deploy.start_known(),
        link: d.deploy.link.clone(),
    })
}

/// The versions a rollback goes from and to.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvidenceVersions {
    pub from: Option<EvidenceVersion>,
    pub to: Option<EvidenceVersion>,
}

/// The deploy ids a decision cites.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvidenceDeployIds {
    pub suspect: Option<i64>,
    pub rollback_to: Option<i64>,
}

/// A rule that fired, with its values.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvidenceRule {
    pub id: String,
    pub description: String,
    pub outcome: Outcome,
    pub condition: String,
    pub kinds: Vec<SignalKind>,
    pub scope: Scope,
    pub threshold: Option<f64>,
    pub observed: Option<f64>,
    pub baseline: Option<f64>,
    pub duration_secs: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub fingerprints: Vec<String>,
}

/// One entry of a decision's timeline: the deploys and signals it rests on, and the
/// decision itself.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvidenceEvent {
    pub at: DateTime<Utc>,
    pub event: String,
}

/// A hold with its reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvidenceHold {
    #[serde(flatten)]
    pub hold: HoldReason,
    pub detail: String,
}

/// The control-plane runbook's evidence record of one decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Evidence {
    pub decision_id: i64,
    pub decided_at: DateTime<Utc>,
    pub decided_by: String,
    pub policy_version: String,
    /// The target key, `cluster/namespace/kind/name`.
    pub target: String,
    pub verdict: Verdict,
    pub reason: String,
    /// The deploys and signals the decision rests on, oldest first, then the decision.
    pub timeline: Vec<EvidenceEvent>,
    pub versions: EvidenceVersions,
    pub deploy_ids: EvidenceDeployIds,
    pub regression_started_at: Option<DateTime<Utc>>,
    pub rules: Vec<EvidenceRule>,
    /// Every alert fingerprint cited, sorted.
    pub fingerprints: Vec<String>,
    pub holds: Vec<EvidenceHold>,
    pub recommended: Vec<String>,
    pub escalate: Option<String>,
    pub verification: Option<VerificationStatus>,
    pub gitops: Option<String>,
    /// The runbook's DEPLOYMENT_LOG_URL: the suspect deploy's pipeline run, if known.
    pub log_link: Option<String>,
    pub inputs_hash: String,
    /// Alerts about the target the engine did not weigh (over its caps), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_considered: Option<NotConsidered>,
    /// For a region of a multi-region release: the affected regions, those rolled back
    /// and those kept running (with their verdicts), the wave stop, and each region's
    /// timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<super::release::ReleaseCheck>,
}

/// The evidence record for one decision, as JSON (see [`evidence_record`]).
pub fn evidence(
    decision: &Decision,
    decided_at: DateTime<Utc>,
    decision_id: i64,
    log_link: Option<&str>,
) -> Value {
    serde_json::to_value(evidence_record(decision, decided_at, decision_id, log_link))
        .unwrap_or(Value::Null)
}

/// The evidence record for one decision, as `GET /api/v1/decisions/{id}/evidence`
/// serves it and as the control-plane runbook's rollback script wrote it.
pub fn evidence_record(
    decision: &Decision,
    decided_at: DateTime<Utc>,
    decision_id: i64,
    log_link: Option<&str>,
) -> Evidence {
    let rules = decision
        .fired
        .iter()
        .map(|f| EvidenceRule {
            id: f.rule_id.clone(),
            description: f.description.clone(),
            outcome: f.outcome,
            condition: f.condition.clone(),
            kinds: f.kinds.clone(),
            scope: f.scope,
            threshold: f.threshold,
            observed: f.observed,
            baseline: f.baseline,
            duration_secs: f.duration_secs,
            started_at: f.started_at,
            fingerprints: f.fingerprints.clone(),
        })
        .collect();
    let mut fingerprints: Vec<String> = decision
        .fired
        .iter()
        .flat_map(|f| f.fingerprints.iter().cloned())
        .chain(decision.holds.iter().flat_map(|h| {
            match h {
                HoldReason::DependencyDegraded { fingerprint, .. } => vec![fingerprint.clone()],
                HoldReason::Inconclusive {
                    fingerprint,
                    fingerprints,
                    signals,
                    ..
                } => inconclusive_listed(fingerprint, fingerprints, *signals)
                    .0
                    .to_vec(),
                _ => Vec::new(),
            }
        }))
        .chain(
            decision
                .pending
                .iter()
                .flat_map(|p| p.fingerprints.iter().cloned()),
        )
        .collect();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    let holds = decision
        .holds
        .iter()
        .map(|h| EvidenceHold {
            hold: h.clone(),
            detail: h.detail(),
        })
        .collect();
    Evidence {
        decision_id,
        decided_at,
        decided_by: decided_by(decision),
        policy_version: decision.policy_version.clone(),
        target: decision.target.key(),
        verdict: decision.verdict,
        reason: decision.reason.clone(),
        timeline: timeline(decision, decided_at, decision_id)
            .into_iter()
            .map(|(at, event)| EvidenceEvent { at, event })
            .collect(),
        versions: EvidenceVersions {
            from: version(decision.suspect.as_ref()),
            to: version(decision.rollback_to.as_ref()),
        },
        deploy_ids: EvidenceDeployIds {
            suspect: decision.suspect.as_ref().map(|d| d.id),
            rollback_to: decision.rollback_to.as_ref().map(|d| d.id),
        },
        regression_started_at: decision.regression_started_at,
        rules,
        fingerprints,
        holds,
        recommended: decision.recommended.clone(),
        escalate: decision.escalate.clone(),
        verification: decision.verification.clone(),
        gitops: decision.gitops.clone(),
        log_link: log_link.map(str::to_string),
        inputs_hash: decision.inputs_hash.clone(),
        not_considered: decision.not_considered.clone(),
        release: decision.release.clone(),
    }
}

/// `10:05 UTC` when every time of the report is on one day, else `2026-08-22 10:05
/// UTC`: a time without its date would read as that day's.
fn when(at: DateTime<Utc>, one_day: bool) -> String {
    if one_day {
        at.format("%H:%M UTC").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// A length of time the way people say it: `3 minutes`, `2 h 5 min`, `102 days 2 h`.
fn lasted(minutes: i64) -> String {
    let (days, hours, mins) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" }),
        (0, _) => format!("{hours} h {mins} min"),
        _ => format!(
            "{days} day{} {hours} h {mins} min",
            if days == 1 { "" } else { "s" }
        ),
    }
}

/// How signals from these sources are said to have started.
fn started_words(sources: &[SignalSource]) -> &'static str {
    match sources {
        [SignalSource::Alert] => "Alert triggered",
        [SignalSource::Api] => "Signal posted through the API",
        [SignalSource::Canary] => "Canary controller reported a failure",
        _ => "Signals started",
    }
}

/// An inconclusive hold's fingerprints as listed, escaped, and how many more it counts.
fn listed(fingerprint: &String, fingerprints: &[String], signals: u32) -> String {
    let (listed, more) = inconclusive_listed(fingerprint, fingerprints, signals);
    let shown: Vec<String> = listed.iter().map(|f| markdown::text(f)).collect();
    match more {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The deploys and signals a decision rests on, oldest first, then the decision: the
/// suspect and the revision to return to, every rule that fired or is pending with its
/// signals, and the signals behind its holds (a degraded dependency, inconclusive
/// data).
fn timeline(
    decision: &Decision,
    decided_at: DateTime<Utc>,
    decision_id: i64,
) -> Vec<(DateTime<Utc>, String)> {
    let mut timeline: Vec<(DateTime<Utc>, String)> = Vec::new();
    for d in [&decision.rollback_to, &decision.suspect]
        .into_iter()
        .flatten()
    {
        let role = if decision.suspect.as_ref() == Some(d) {
            "suspect"
        } else {
            "last known good"
        };
        let event = if d.deploy.start_known() {
            "started"
        } else {
            "first seen, mid-run (its start is unknown)"
        };
        timeline.push((
            d.deploy.started_at,
            format!(
                "Deployment {} {event} (deploy #{}, {role})",
                markdown::text(&label(d)),
                d.id
            ),
        ));
    }
    // One line per alert: the rules one signal fired together share it.
    type Line<'a> = (DateTime<Utc>, &'a [String], &'a [SignalSource], Vec<String>);
    let mut alerts: Vec<Line> = Vec::new();
    let fired = decision.fired.iter().map(|f| {
        (
            f.started_at,
            f.fingerprints.as_slice(),
            f.sources.as_slice(),
            summary(f),
        )
    });
    // Pending rules are what a decision rests on when nothing stronger fired.
    let rests_on_pending = decision.fired.iter().all(|f| f.outcome < Outcome::Rollback);
    let pending = decision
        .pending
        .iter()
        .filter(|_| rests_on_pending)
        .map(|p| {
            (
                p.started_at,
                p.fingerprints.as_slice(),
                p.sources.as_slice(),
                format!(
                    "{} pending ({}: needs {})",
                    p.rule_id,
                    p.kind.as_str(),
                    p.waiting_for
                ),
            )
        });
    for (at, fingerprints, sources, rule) in fired.chain(pending) {
        match alerts
            .iter_mut()
            .find(|(t, fps, _, _)| *t == at && *fps == fingerprints)
        {
            Some((_, _, _, rules)) => rules.push(rule),
            None => alerts.push((at, fingerprints, sources, vec![rule])),
        }
    }
    for (at, fingerprints, sources, rules) in alerts {
        timeline.push((
            at,
            format!(
                "{} - {} [{}]",
                started_words(sources),
                markdown::text(&rules.join(", ")),
                markdown::text(&fingerprints.join(", "))
            ),
        ));
    }
    for hold in &decision.holds {
        match hold {
            HoldReason::DependencyDegraded {
                dependency,
                fingerprint,
                since,
            } => timeline.push((
                *since,
                format!(
                    "Dependency {} degraded - H2 holds the rollback [{}]",
                    markdown::text(dependency),
                    markdown::text(fingerprint)
                ),
            )),
            HoldReason::Inconclusive {
                kind,
                fingerprint,
                why,
                since: Some(since),
                signals,
                fingerprints,
            } => timeline.push((
                *since,
                if *signals <= 1 {
                    format!(
                        "Inconclusive {} signal ({}) - no rule can assess it [{}]",
                        kind.as_str(),
                        markdown::text(why),
                        markdown::text(fingerprint)
                    )
                } else {
                    format!(
                        "{signals} inconclusive {} signals ({}) from here - no rule can \
                         assess them [{}]",
                        kind.as_str(),
                        markdown::text(why),
                        listed(fingerprint, fingerprints, *signals)
                    )
                },
            )),
            _ => {}
        }
    }
    timeline.sort_by_key(|(at, _)| *at);
    timeline.push((
        decided_at,
        format!(
            "Decision #{decision_id}: {} by {}",
            decision.verdict,
            markdown::text(&decided_by(decision))
        ),
    ));
    timeline
}

fn severity(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Freeze => "Critical",
        Verdict::Rollback | Verdict::Hold => "High",
        Verdict::Investigate => "Medium",
        Verdict::Monitor | Verdict::Ok => "Low",
    }
}

fn regions(decision: &Decision) -> String {
    if let Some(release) = decision.release.as_ref().filter(|r| !r.affected.is_empty()) {
        return format!(
            "{} (release {})",
            markdown::text(&release.affected.join(", ")),
            markdown::code(&release.release)
        );
    }
    let mut regions: Vec<&str> = [&decision.suspect, &decision.rollback_to]
        .into_iter()
        .flatten()
        .filter_map(|d| d.deploy.region.as_deref())
        .chain(decision.region.as_deref())
        .collect();
    regions.sort_unstable();
    regions.dedup();
    if regions.is_empty() {
        format!(
            "not recorded (cluster {})",
            markdown::text(&decision.target.cluster)
        )
    } else {
        markdown::text(&regions.join(", "))
    }
}

/// The multi-region playbook's account of a release: how far the rollback reaches,
/// which regions rolled back and which kept running and why, the wave stop, and each
/// region's timeline.
fn release_section(release: &super::release::ReleaseCheck, one_day: bool) -> String {
    let list = |regions: &[String]| {
        if regions.is_empty() {
            "none".to_string()
        } else {
            markdown::text(&regions.join(", "))
        }
    };
    let scope = match release.scope {
        super::release::ReleaseScope::AllRegions => {
            "Multi-Region Rollback: every region on it rolls back, in parallel"
        }
        super::release::ReleaseScope::Region => {
            "Region-Specific Rollback: the affected region rolls back, the others keep running"
        }
        super::release::ReleaseScope::Healthy => "no region regressed on it",
    };
    let mut out = format!(
        "\n## Release\n\n- **Release**: {} ({scope})\n- **Rolled back**: {}\n",
        markdown::code(&release.release),
        list(&release.rolled_back)
    );
    let kept: Vec<String> = release
        .kept
        .iter()
        .map(|k| {
            let why = if k.rules.is_empty() {
                k.verdict.clone()
            } else {
                format!("{}: {}", k.verdict, k.rules.join(", "))
            };
            format!("{} ({why})", k.region)
        })
        .collect();
    out.push_str(&format!(
        "- **Kept running**: {}{}\n",
        list(&kept),
        if release.others_healthy || kept.is_empty() {
            ""
        } else {
            " (not all healthy: watch them)"
        }
    ));
    out.push_str(&format!(
        "- **Wave stopped for**: {}\n",
        list(&release.wave_stopped)
    ));
    if !release.timeline.is_empty() {
        out.push_str("\nPer region:\n\n");
        for e in &release.timeline {
            out.push_str(&format!(
                "- {} {}: {}\n",
                when(e.at, one_day),
                markdown::text(&e.region),
                markdown::text(&e.event)
            ));
        }
    }
    out
}

fn customer_impact(decision: &Decision) -> String {
    let mut impacts: Vec<String> = Vec::new();
    for f in &decision.fired {
        let observed = f.observed.map(|v| fmt_value(f.kind, v));
        let impact = match (f.kind, observed) {
            (SignalKind::CustomerReports, Some(n)) => format!("{n} customer reports in 5 min"),
            (SignalKind::ErrorRate, Some(v)) => format!("elevated error rates ({v})"),
            (SignalKind::LatencyP95, Some(v)) => format!("elevated latency (p95 {v})"),
            (SignalKind::Cpu | SignalKind::Memory, Some(v)) => {
                format!("resource saturation ({} {v})", f.kind.as_str())
            }
            (SignalKind::SlaViolation, _) => "the SLA was violated".into(),
            (SignalKind::DataCorruption, _) => "data corruption reported".into(),
            (SignalKind::HealthCheck | SignalKind::Readiness | SignalKind::CrashLoop, _) => {
                "service unavailable or degraded (failing health)".into()
            }
            (SignalKind::SloBurn, _) => "error budget burning (SLO burn alert)".into(),
            _ => continue,
        };
        if !impacts.contains(&impact) {
            impacts.push(impact);
        }
    }
    if impacts.is_empty() {
        "none observed by rollwarden; to be assessed".into()
    } else {
        format!(
            "{}; number of customers affected to be assessed",
            impacts.join(", ")
        )
    }
}

fn resolution(decision: &Decision) -> String {
    match decision.verdict {
        Verdict::Rollback => {
            let to = decision.rollback_to.as_ref().map_or_else(
                || "the last known good revision".into(),
                |d| format!("{}, deploy #{}", markdown::text(&label(d)), d.id),
            );
            let how = decision
                .recommended
                .first()
                .map_or_else(String::new, |c| format!(", with {}", markdown::code(c)));
            format!(
                "Roll back to {to}{how}, as decided by {}.",
                markdown::text(&decided_by(decision))
            )
        }
        Verdict::Hold => format!(
            "Rollback held: {}.",
            markdown::text(
                &decision
                    .holds
                    .iter()
                    .map(HoldReason::detail)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        ),
        Verdict::Freeze => format!(
            "Freeze deployments and escalate: {}.",
            markdown::text(decision.escalate.as_deref().unwrap_or("data corruption"))
        ),
        Verdict::Ok | Verdict::Monitor | Verdict::Investigate => {
            format!("No rollback: {}", markdown::text(&decision.reason))
        }
    }
}

/// The multi-region runbook's incident report for a decision, in Markdown. Every value
/// it interpolates goes through [`markdown`]: running text escaped, code fenced.
pub fn incident_report(decision: &Decision, decided_at: DateTime<Utc>, decision_id: i64) -> String {
    let incident_id = format!("INC-{}-{decision_id:03}", decided_at.format("%Y%m%d"));
    let timeline = timeline(decision, decided_at, decision_id);
    let one_day = timeline
        .iter()
        .map(|(at, _)| *at)
        .chain(decision.regression_started_at)
        .all(|at| at.date_naive() == decided_at.date_naive());
    let duration = match decision.regression_started_at {
        Some(start) => {
            let minutes = (decided_at - start).num_minutes().max(0);
            format!(
                "{} - {} ({} at the decision)",
                when(start, one_day),
                when(decided_at, one_day),
                lasted(minutes)
            )
        }
        None => "no regression detected".into(),
    };
    let mut out = String::new();
    out.push_str("## Incident Summary\n\n");
    out.push_str(&format!("- **Incident ID**: {incident_id}\n"));
    out.push_str(&format!("- **Severity**: {}\n", severity(decision.verdict)));
    out.push_str(&format!(
        "- **Affected Region(s)**: {}\n",
        regions(decision)
    ));
    out.push_str(&format!(
        "- **Target**: {}\n",
        markdown::code(&decision.target.key())
    ));
    out.push_str(&format!("- **Duration**: {duration}\n"));
    out.push_str(&format!(
        "- **Customer Impact**: {}\n",
        customer_impact(decision)
    ));
    out.push_str("\n## Timeline\n\n");
    for (at, event) in &timeline {
        out.push_str(&format!("- {}: {event}\n", when(*at, one_day)));
    }
    if let Some(release) = &decision.release {
        out.push_str(&release_section(release, one_day));
    }
    out.push_str("\n## Root Cause\n\n[To be completed after investigation]\n");
    out.push_str(&format!("\n## Resolution\n\n{}\n", resolution(decision)));
    if !decision.recommended.is_empty() {
        let mut commands = decision.recommended.join("\n");
        commands.push('\n');
        out.push('\n');
        out.push_str(&markdown::code_block("bash", &commands));
    }
    if let Some(escalate) = &decision.escalate {
        out.push_str(&format!("\nEscalation: {}.\n", markdown::text(escalate)));
    }
    if let Some(left_out) = &decision.not_considered {
        out.push_str(&format!(
            "\nNot considered: {} more alerts about this target (over the engine's {}).\n",
            left_out.alerts,
            markdown::text(&left_out.reason)
        ));
    }
    out.push_str(&format!(
        "\nDecision reason: {}\n\n## Follow-up Actions\n\n",
        markdown::text(&decision.reason)
    ));
    for item in [
        "Complete root cause analysis",
        "Fix identified bug",
        "Add additional test coverage",
        "Update deployment procedures",
        "Schedule post-mortem meeting",
    ] {
        out.push_str(&format!("- [ ] {item}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::policy::Policy;
    use crate::domain::{
        Deploy, DeploySource, History, Mode, Scope, Signal, SignalKind, SignalSource, Target,
        TargetRef, decide,
    };

    fn at(hms: &str) -> DateTime<Utc> {
        format!("2026-08-22T{hms}Z").parse().unwrap()
    }

    fn rollout(id: i64, revision: &str, status: &str, started: &str, tag: &str) -> DeployRecord {
        let mut deploy = Deploy::new(
            TargetRef::deployment("prod-eu", "shop", "checkout"),
            DeploySource::Kubernetes,
            revision,
            status,
            at(started),
        );
        deploy.images = vec![format!("ghcr.io/acme/checkout:{tag}")];
        deploy.region = Some("us-east-1".into());
        deploy.link = Some(format!("https://ci.example.com/runs/{id}"));
        DeployRecord { id, deploy }
    }

    fn rollback_decision() -> Decision {
        let target = Target {
            target: TargetRef::deployment("prod-eu", "shop", "checkout"),
            region: Some("us-east-1".into()),
            service: None,
            environment: Some("production".into()),
            mode: Mode::Recommend,
            helm_release: None,
            cd_workflow: None,
            dependencies: vec!["database".into()],
            gitops: None,
            argocd_app: None,
            actions: Vec::new(),
        };
        let deploys = [
            rollout(41, "6", "superseded", "09:00:00", "v2.4.9"),
            rollout(42, "7", "deployed", "10:00:00", "v2.5.0"),
        ];
        let signal = |kind, value, started, fingerprint: &str| Signal {
            kind,
            target: Some(target.target.clone()),
            scope: Scope::Any,
            dependency: None,
            value: Some(value),
            baseline: None,
            inconclusive: None,
            started_at: at(started),
            ended_at: None,
            observations: 1,
            source: SignalSource::Alert,
            fingerprint: fingerprint.into(),
            summary: String::new(),
        };
        let signals = [
            signal(SignalKind::ErrorRate, 0.07, "10:05:00", "3f2a9c"),
            signal(SignalKind::CustomerReports, 25.0, "10:06:00", "support-1"),
        ];
        decide(
            &Policy::default(),
            &target,
            &deploys,
            &signals,
            &[],
            &History::default(),
            at("10:08:00"),
        )
    }

    #[test]
    fn alerts_the_engine_left_out_are_named_in_the_evidence_and_the_report() {
        let mut d = rollback_decision();
        let e = evidence(&d, at("10:08:00"), 7, None);
        assert!(e.get("not_considered").is_none(), "{e}");
        d.not_considered = Some(NotConsidered {
            alerts: 2,
            reason: "max_alerts_per_target".into(),
        });
        let e = evidence(&d, at("10:08:00"), 7, None);
        assert_eq!(e["not_considered"]["alerts"], 2);
        assert_eq!(e["not_considered"]["reason"], "max_alerts_per_target");
        let report = incident_report(&d, at("10:08:00"), 7);
        assert!(
            report.contains("Not considered: 2 more alerts about this target"),
            "{report}"
        );
    }

    #[test]
    fn a_release_is_covered_by_the_evidence_and_the_report() {
        use crate::domain::release::{KeptRegion, ReleaseCheck, ReleaseEvent, ReleaseScope};
        let mut d = rollback_decision();
        d.release = Some(ReleaseCheck {
            release: "checkout@1.6.0".into(),
            scope: ReleaseScope::Region,
            affected: vec!["us-east-1".into()],
            rolled_back: vec!["us-east-1".into()],
            kept: vec![
                KeptRegion {
                    region: "eu-west-1".into(),
                    verdict: "ok".into(),
                    rules: Vec::new(),
                },
                KeptRegion {
                    region: "ap_*south*".into(),
                    verdict: "monitor".into(),
                    rules: vec!["M1".into()],
                },
            ],
            wave_stopped: vec!["us-west-2".into()],
            others_healthy: true,
            timeline: vec![
                ReleaseEvent {
                    at: at("09:50:00"),
                    region: "eu-west-1".into(),
                    event: "deploy of 1.6.0 started (revision 7, deploy #3)".into(),
                },
                ReleaseEvent {
                    at: at("10:05:00"),
                    region: "us-east-1".into(),
                    event: "regressed (M2)".into(),
                },
            ],
        });
        let e = evidence(&d, at("10:08:00"), 7, None);
        assert_eq!(e["release"]["affected"], serde_json::json!(["us-east-1"]));
        assert_eq!(e["release"]["kept"][1]["rules"], serde_json::json!(["M1"]));
        let report = incident_report(&d, at("10:08:00"), 7);
        for needle in [
            "- **Affected Region(s)**: us-east-1 (release `checkout@1.6.0`)",
            "## Release",
            "Region-Specific Rollback",
            "- **Rolled back**: us-east-1",
            "- **Kept running**: eu-west-1 (ok), ap\\_\\*south\\* (monitor: M1)",
            "- **Wave stopped for**: us-west-2",
            "- 09:50 UTC eu-west-1: deploy of 1.6.0 started (revision 7, deploy #3)",
            "- 10:05 UTC us-east-1: regressed (M2)",
        ] {
            assert!(report.contains(needle), "{needle:?} missing from\n{report}");
        }
    }

    #[test]
    fn the_evidence_record_has_what_the_control_plane_runbook_asks_for() {
        let d = rollback_decision();
        assert_eq!(d.verdict, Verdict::Rollback);
        let e = evidence(
            &d,
            at("10:08:00"),
            7,
            Some("https://logs.example.com/deployments/7"),
        );
        assert_eq!(e["decision_id"], 7);
        assert_eq!(e["decided_at"], "2026-08-22T10:08:00Z");
        assert_eq!(e["decided_by"], "rollwarden policy runbooks-2");
        assert_eq!(e["target"], "prod-eu/shop/Deployment/checkout");
        assert_eq!(e["verdict"], "rollback");
        assert_eq!(e["reason"], d.reason.as_str());
        assert_eq!(e["versions"]["from"]["deploy_id"], 42);
        assert_eq!(e["versions"]["from"]["revision"], "7");
        assert_eq!(
            e["versions"]["from"]["images"][0],
            "ghcr.io/acme/checkout:v2.5.0"
        );
        assert_eq!(e["versions"]["to"]["deploy_id"], 41);
        assert_eq!(e["versions"]["to"]["source"], "kubernetes");
        assert_eq!(e["deploy_ids"]["suspect"], 42);
        assert_eq!(e["deploy_ids"]["rollback_to"], 41);
        let rules = e["rules"].as_array().unwrap();
        let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["M1", "M2", "M5", "M6"]);
        let m2 = &rules[1];
        assert_eq!(m2["observed"], 0.07);
        assert_eq!(m2["threshold"], 0.05);
        assert_eq!(m2["condition"], "> 5 %");
        assert_eq!(m2["outcome"], "rollback");
        assert_eq!(m2["fingerprints"][0], "3f2a9c");
        assert_eq!(
            e["fingerprints"],
            serde_json::json!(["3f2a9c", "support-1"])
        );
        assert_eq!(e["log_link"], "https://logs.example.com/deployments/7");
        assert_eq!(e["inputs_hash"], d.inputs_hash.as_str());
        assert_eq!(
            e["recommended"][0],
            "kubectl -n shop rollout undo deployment/checkout --to-revision=6"
        );
    }

    #[test]
    fn held_evidence_carries_each_hold_with_its_code_and_detail() {
        let mut d = rollback_decision();
        d.verdict = Verdict::Hold;
        d.holds = vec![HoldReason::DependencyDegraded {
            dependency: "database".into(),
            fingerprint: "db-1".into(),
            since: at("10:01:00"),
        }];
        let e = evidence(&d, at("10:08:00"), 8, None);
        assert_eq!(e["holds"][0]["code"], "H2");
        assert_eq!(e["holds"][0]["dependency"], "database");
        assert!(
            e["holds"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("`database` is degraded")
        );
        assert!(
            e["fingerprints"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("db-1"))
        );
        assert_eq!(e["log_link"], Value::Null);
    }

    #[test]
    fn the_incident_report_fills_the_multi_region_runbook_template() {
        let d = rollback_decision();
        let report = incident_report(&d, at("10:08:00"), 7);
        for expected in [
            "## Incident Summary\n",
            "- **Incident ID**: INC-20260822-007\n",
            "- **Severity**: High\n",
            "- **Affected Region(s)**: us-east-1\n",
            "- **Duration**: 10:05 UTC - 10:08 UTC (3 minutes at the decision)\n",
            "- **Customer Impact**: elevated error rates (7 %), 25 customer reports in 5 min; \
             number of customers affected to be assessed\n",
            "## Timeline\n",
            "- 09:00 UTC: Deployment kubernetes revision 6 (v2.4.9) started (deploy #41, last known good)\n",
            "- 10:00 UTC: Deployment kubernetes revision 7 (v2.5.0) started (deploy #42, suspect)\n",
            "- 10:05 UTC: Alert triggered - M1 (error_rate at 7 %, > 1 %), M2 (error_rate at 7 %, > 5 %) [3f2a9c]\n",
            "- 10:06 UTC: Alert triggered - M5 (customer_reports at 25, > 5 in 5 min), M6 \
             (customer_reports at 25, > 20 in 5 min) [support-1]\n",
            "- 10:08 UTC: Decision #7: rollback by rollwarden policy runbooks-2\n",
            "## Root Cause\n\n[To be completed after investigation]\n",
            "## Resolution\n\nRoll back to kubernetes revision 6 (v2.4.9), deploy #41, with \
             `kubectl -n shop rollout undo deployment/checkout --to-revision=6`, as decided by \
             rollwarden policy runbooks-2.\n",
            "## Follow-up Actions\n\n- [ ] Complete root cause analysis\n- [ ] Fix identified bug\n\
             - [ ] Add additional test coverage\n- [ ] Update deployment procedures\n\
             - [ ] Schedule post-mortem meeting\n",
        ] {
            assert!(
                report.contains(expected),
                "missing {expected:?} in\n{report}"
            );
        }
        let first_alert = report.find("10:05 UTC: Alert").unwrap();
        assert!(report.find("10:00 UTC: Deployment").unwrap() < first_alert);
        assert!(first_alert < report.find("10:08 UTC: Decision").unwrap());
    }

    #[test]
    fn the_incident_report_of_a_hold_says_why_the_rollback_was_held() {
        let mut d = rollback_decision();
        d.verdict = Verdict::Hold;
        d.holds = vec![HoldReason::LoopGuard {
            rollbacks_in_window: 3,
            limit: 3,
            window_secs: 3600,
            last_rollback_at: Some(at("09:50:00")),
            min_interval_secs: 300,
            before_recovery: 0,
        }];
        let report = incident_report(&d, at("10:08:00") + Duration::days(1), 12);
        assert!(report.contains("- **Incident ID**: INC-20260823-012\n"));
        assert!(report.contains("Rollback held: loop guard: 3 automatic rollbacks"));
        assert!(report.contains("- 2026-08-22 10:05 UTC: Alert triggered"));
    }

    /// The report of `decision` with `value` put in every text a deploy, an alert or a
    /// hold can carry, for each way the report ends.
    fn reports_with(value: &str) -> Vec<String> {
        let mut base = rollback_decision();
        base.reason = format!("M2 after {value}");
        base.region = Some(value.to_string());
        base.target.namespace = value.to_string();
        for d in [&mut base.suspect, &mut base.rollback_to]
            .into_iter()
            .flatten()
        {
            d.deploy.revision = value.to_string();
            d.deploy.version = Some(value.to_string());
            d.deploy.region = Some(value.to_string());
        }
        for f in &mut base.fired {
            f.fingerprints = vec![value.to_string()];
        }
        let mut held = base.clone();
        held.verdict = Verdict::Hold;
        held.holds = vec![
            HoldReason::DependencyDegraded {
                dependency: value.into(),
                fingerprint: value.into(),
                since: at("10:01:00"),
            },
            HoldReason::NoKnownGood {
                suspect_id: 42,
                source: DeploySource::Ci,
                revision: value.into(),
            },
            HoldReason::Inconclusive {
                kind: SignalKind::ErrorRate,
                fingerprint: value.into(),
                why: value.into(),
                since: Some(at("10:02:00")),
                signals: 1,
                fingerprints: vec![value.into()],
            },
            HoldReason::Inconclusive {
                kind: SignalKind::LatencyP95,
                fingerprint: value.into(),
                why: value.into(),
                since: Some(at("10:03:00")),
                signals: 40,
                fingerprints: vec![value.into(), format!("{value}-2")],
            },
        ];
        let mut frozen = base.clone();
        frozen.verdict = Verdict::Freeze;
        frozen.escalate = Some(format!("M8: {value}"));
        let mut ok = base.clone();
        ok.verdict = Verdict::Ok;
        [base, held, frozen, ok]
            .iter()
            .map(|d| incident_report(d, at("10:08:00"), 7))
            .collect()
    }

    /// Markdown syntax characters that no backslash escapes, outside code blocks and
    /// code spans. (`>` and `!` are left out: mid-line, and without `[`, they are text.)
    fn unescaped(report: &str) -> usize {
        let mut count = 0;
        let mut in_block = false;
        for line in report.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if in_block {
                continue;
            }
            let chars: Vec<char> = line.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 1,
                    '`' => {
                        // Skip the code span: to the next run of as many backticks.
                        let run = chars[i..].iter().take_while(|c| **c == '`').count();
                        let mut j = i + run;
                        loop {
                            let next = chars[j..].iter().take_while(|c| **c == '`').count();
                            if next == run || j >= chars.len() {
                                i = j + next;
                                break;
                            }
                            j += next.max(1);
                        }
                        continue;
                    }
                    '<' | '[' | ']' | '*' | '|' | '~' | '&' => count += 1,
                    _ => {}
                }
                i += 1;
            }
        }
        count
    }

    #[test]
    fn the_incident_report_has_one_line_per_group_of_inconclusive_signals() {
        let held = &reports_with("fp-1")[1];
        assert!(
            held.contains("Inconclusive error_rate signal (fp-1) - no rule can assess it [fp-1]"),
            "{held}"
        );
        assert!(
            held.contains(
                "40 inconclusive latency_p95 signals (fp-1) from here - no rule can assess \
                 them [fp-1, fp-1-2 and 38 more]"
            ),
            "{held}"
        );
    }

    #[test]
    fn the_incident_report_escapes_every_value_it_interpolates() {
        let baseline = reports_with("ordinary-1");
        let mut values = crate::domain::field::tests::hostile();
        values.extend(
            [
                "[Click to approve](https://evil.example)",
                "![x](https://evil.example/p.png)",
                "<img src=x onerror=alert(1)>",
                "**bold** _it_ ~~gone~~",
                "x\n# Heading\n- [x] done\n```\nrm -rf /",
                "a | b\n| c | d |",
                "`code` ``more`` \\",
                "&lt;script&gt;",
            ]
            .map(String::from),
        );
        for value in values {
            for (report, base) in reports_with(&value).iter().zip(&baseline) {
                let lines: Vec<&str> = report.lines().collect();
                let base_lines: Vec<&str> = base.lines().collect();
                assert_eq!(lines.len(), base_lines.len(), "{value:?}:\n{report}");
                for (line, base_line) in lines.iter().zip(&base_lines) {
                    // Every line starts as it does with ordinary values: a value starts
                    // no heading, list item, quote or fence.
                    let start = |l: &str| l.chars().take(3).collect::<String>();
                    assert_eq!(start(line), start(base_line), "{value:?}:\n{report}");
                }
                assert_eq!(unescaped(report), unescaped(base), "{value:?}:\n{report}");
            }
        }
    }
}
