//! The records the runbooks require for a decision: the control-plane runbook's
//! evidence record (JSON: reason, versions from and to, rules with their values,
//! fingerprints, deploy ids, who decided, log link) and the multi-region runbook's
//! incident report (Markdown, the fields of its template).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::decide::{label, summary};
use super::decision::{Decision, HoldReason, Verdict, VerificationStatus};
use super::policy::{Outcome, fmt_value};
use super::{DeployRecord, DeploySource, Scope, SignalKind};

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
    pub started_at: DateTime<Utc>,
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
        .chain(decision.holds.iter().filter_map(|h| match h {
            HoldReason::DependencyDegraded { fingerprint, .. }
            | HoldReason::Inconclusive { fingerprint, .. } => Some(fingerprint.clone()),
            _ => None,
        }))
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
    }
}

/// `10:05 UTC` on the day of the decision, the full date otherwise.
fn when(at: DateTime<Utc>, decided_at: DateTime<Utc>) -> String {
    if at.date_naive() == decided_at.date_naive() {
        at.format("%H:%M UTC").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
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
    let mut regions: Vec<&str> = [&decision.suspect, &decision.rollback_to]
        .into_iter()
        .flatten()
        .filter_map(|d| d.deploy.region.as_deref())
        .chain(decision.region.as_deref())
        .collect();
    regions.sort_unstable();
    regions.dedup();
    if regions.is_empty() {
        format!("not recorded (cluster {})", decision.target.cluster)
    } else {
        regions.join(", ")
    }
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
                |d| format!("{}, deploy #{}", label(d), d.id),
            );
            let how = decision
                .recommended
                .first()
                .map_or_else(String::new, |c| format!(", with `{c}`"));
            format!(
                "Roll back to {to}{how}, as decided by {}.",
                decided_by(decision)
            )
        }
        Verdict::Hold => format!(
            "Rollback held: {}.",
            decision
                .holds
                .iter()
                .map(HoldReason::detail)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Verdict::Freeze => format!(
            "All deployments frozen and escalated: {}.",
            decision.escalate.as_deref().unwrap_or("data corruption")
        ),
        Verdict::Ok | Verdict::Monitor | Verdict::Investigate => {
            format!("No rollback: {}", decision.reason)
        }
    }
}

/// The multi-region runbook's incident report for a decision, in Markdown.
pub fn incident_report(decision: &Decision, decided_at: DateTime<Utc>, decision_id: i64) -> String {
    let incident_id = format!("INC-{}-{decision_id:03}", decided_at.format("%Y%m%d"));
    let duration = match decision.regression_started_at {
        Some(start) => {
            let minutes = (decided_at - start).num_minutes().max(0);
            format!(
                "{} - {} ({minutes} minutes at the decision)",
                when(start, decided_at),
                when(decided_at, decided_at)
            )
        }
        None => "no regression detected".into(),
    };
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
        timeline.push((
            d.deploy.started_at,
            format!("Deployment {} started (deploy #{}, {role})", label(d), d.id),
        ));
    }
    // One line per alert: the rules one signal fired together share it.
    let mut alerts: Vec<(DateTime<Utc>, &[String], Vec<String>)> = Vec::new();
    for f in &decision.fired {
        match alerts
            .iter_mut()
            .find(|(at, fps, _)| *at == f.started_at && *fps == f.fingerprints.as_slice())
        {
            Some((_, _, rules)) => rules.push(summary(f)),
            None => alerts.push((f.started_at, &f.fingerprints, vec![summary(f)])),
        }
    }
    for (at, fingerprints, rules) in alerts {
        timeline.push((
            at,
            format!(
                "Alert triggered - {} [{}]",
                rules.join(", "),
                fingerprints.join(", ")
            ),
        ));
    }
    timeline.sort_by_key(|(at, _)| *at);
    timeline.push((
        decided_at,
        format!(
            "Decision #{decision_id}: {} by {}",
            decision.verdict,
            decided_by(decision)
        ),
    ));
    let mut out = String::new();
    out.push_str("## Incident Summary\n\n");
    out.push_str(&format!("- **Incident ID**: {incident_id}\n"));
    out.push_str(&format!("- **Severity**: {}\n", severity(decision.verdict)));
    out.push_str(&format!(
        "- **Affected Region(s)**: {}\n",
        regions(decision)
    ));
    out.push_str(&format!("- **Target**: `{}`\n", decision.target.key()));
    out.push_str(&format!("- **Duration**: {duration}\n"));
    out.push_str(&format!(
        "- **Customer Impact**: {}\n",
        customer_impact(decision)
    ));
    out.push_str("\n## Timeline\n\n");
    for (at, event) in &timeline {
        out.push_str(&format!("- {}: {event}\n", when(*at, decided_at)));
    }
    out.push_str("\n## Root Cause\n\n[To be completed after investigation]\n");
    out.push_str(&format!("\n## Resolution\n\n{}\n", resolution(decision)));
    if !decision.recommended.is_empty() {
        out.push_str("\n```bash\n");
        for command in &decision.recommended {
            out.push_str(command);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    if let Some(escalate) = &decision.escalate {
        out.push_str(&format!("\nEscalation: {escalate}.\n"));
    }
    out.push_str(&format!(
        "\nDecision reason: {}\n\n## Follow-up Actions\n\n",
        decision.reason
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
            environment: Some("production".into()),
            mode: Mode::Recommend,
            helm_release: None,
            cd_workflow: None,
            dependencies: vec!["database".into()],
            gitops: None,
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
        }];
        let report = incident_report(&d, at("10:08:00") + Duration::days(1), 12);
        assert!(report.contains("- **Incident ID**: INC-20260823-012\n"));
        assert!(report.contains("Rollback held: loop guard: 3 automatic rollbacks"));
        assert!(report.contains("- 2026-08-22 10:05 UTC: Alert triggered"));
    }
}
