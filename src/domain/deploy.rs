//! Deploys: every revision of every target, from whichever source saw it. The decision
//! engine can only blame a deploy it knows about.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The key of a canary run's timeline in [`Deploy::details`].
pub const EVENTS: &str = "events";

/// The key in [`Deploy::details`] that qualifies `started_at`: [`START_UNKNOWN`] for a
/// canary run first seen mid-way, which started at or before it. Like the start
/// itself, only the first report says it (see [`Deploy::merge`]).
pub const START: &str = "start";
/// The value of [`START`] when the deploy's start is unknown.
pub const START_UNKNOWN: &str = "unknown";
use utoipa::ToSchema;

/// A deployable unit: a workload in a namespace of a cluster, or a Helm release.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct TargetRef {
    pub cluster: String,
    pub namespace: String,
    /// `Deployment`, or `HelmRelease` for a release's own history.
    pub kind: String,
    pub name: String,
}

/// The `kind` of a Helm release's own rows.
pub const HELM_RELEASE_KIND: &str = "HelmRelease";

impl TargetRef {
    pub fn new(cluster: &str, namespace: &str, kind: &str, name: &str) -> Self {
        Self {
            cluster: cluster.into(),
            namespace: namespace.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    pub fn deployment(cluster: &str, namespace: &str, name: &str) -> Self {
        Self::new(cluster, namespace, "Deployment", name)
    }

    pub fn helm_release(cluster: &str, namespace: &str, release: &str) -> Self {
        Self::new(cluster, namespace, HELM_RELEASE_KIND, release)
    }

    /// Parses a key made by [`TargetRef::key`]. Kubernetes names contain no `/`.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split('/');
        let (cluster, namespace, kind, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || namespace.is_empty() || kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self::new(cluster, namespace, kind, name))
    }

    /// The canonical key stored with every row: `cluster/namespace/kind/name`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.cluster, self.namespace, self.kind, self.name
        )
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Who told us about a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeploySource {
    /// A Deployment's ReplicaSet revision (`kubectl rollout history`).
    Kubernetes,
    /// A Helm release revision (`helm history`).
    Helm,
    /// A CI/CD pipeline's callback.
    Ci,
    /// A Flagger canary run.
    Flagger,
    /// An Argo Rollouts analysis.
    Argo,
}

impl DeploySource {
    pub const ALL: [DeploySource; 5] = [
        DeploySource::Kubernetes,
        DeploySource::Helm,
        DeploySource::Ci,
        DeploySource::Flagger,
        DeploySource::Argo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploySource::Kubernetes => "kubernetes",
            DeploySource::Helm => "helm",
            DeploySource::Ci => "ci",
            DeploySource::Flagger => "flagger",
            DeploySource::Argo => "argo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }
}

/// Statuses a deploy may carry. Sources keep their own words (Helm's `pending-upgrade`,
/// a pipeline's `started`); these are the ones rules look at.
pub mod status {
    /// The live revision, rolled out (Kubernetes) or released (Helm).
    pub const DEPLOYED: &str = "deployed";
    /// Replaced by a later revision after having been live.
    pub const SUPERSEDED: &str = "superseded";
    /// Still rolling out.
    pub const PROGRESSING: &str = "progressing";
    /// The rollout failed (progress deadline exceeded, Helm or pipeline failure).
    pub const FAILED: &str = "failed";
    /// A pipeline reported the deploy finished well.
    pub const SUCCEEDED: &str = "succeeded";
    /// A pipeline reported the deploy started.
    pub const STARTED: &str = "started";
    /// A canary run waiting to start (at its controller's confirm-rollout gate).
    pub const WAITING: &str = "waiting";
    /// A canary controller setting a workload up for the first time.
    pub const INITIALIZING: &str = "initializing";
    /// A canary controller tearing its set-up down (the Canary object is deleted).
    pub const TERMINATING: &str = "terminating";
    pub const TERMINATED: &str = "terminated";

    /// Statuses that say nothing of how a revision fared: a report of one never
    /// replaces a status already on record (see [`super::merge_status`]).
    pub fn is_neutral(status: &str) -> bool {
        matches!(status, WAITING | INITIALIZING | TERMINATING | TERMINATED)
    }
}

/// One revision of one target, as a source reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deploy {
    pub target: TargetRef,
    pub source: DeploySource,
    /// The source's revision: ReplicaSet revision, Helm revision, pipeline run id.
    pub revision: String,
    pub status: String,
    pub environment: Option<String>,
    pub region: Option<String>,
    /// A version string: app version, image tag, release number.
    pub version: Option<String>,
    pub images: Vec<String>,
    pub commit_sha: Option<String>,
    /// `kubernetes.io/change-cause`, as `kubectl rollout history` shows it.
    pub change_cause: Option<String>,
    pub description: Option<String>,
    /// The Helm release that manages the target, linking rollouts to upgrades.
    pub helm_release: Option<String>,
    pub chart: Option<String>,
    pub chart_version: Option<String>,
    pub app_version: Option<String>,
    pub pod_template_hash: Option<String>,
    /// Where to read more: the pipeline run, the release notes.
    pub link: Option<String>,
    pub actor: Option<String>,
    pub started_at: DateTime<Utc>,
    /// When the rollout of this revision completed, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// Source-specific facts that have no column.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl Deploy {
    /// A deploy with only the identifying fields set.
    pub fn new(
        target: TargetRef,
        source: DeploySource,
        revision: impl Into<String>,
        status: impl Into<String>,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            target,
            source,
            revision: revision.into(),
            status: status.into(),
            environment: None,
            region: None,
            version: None,
            images: Vec::new(),
            commit_sha: None,
            change_cause: None,
            description: None,
            helm_release: None,
            chart: None,
            chart_version: None,
            app_version: None,
            pod_template_hash: None,
            link: None,
            actor: None,
            started_at,
            finished_at: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// Merges a later report of the same revision (same target, source and revision)
    /// into this one, and says whether anything changed.
    ///
    /// The first report's start and finish times stand; a later report fills in what it knows
    /// (a pipeline's `succeeded` adds the finish time, a relist adds nothing) and never
    /// erases what an earlier one said; a failure stays on record. `details` merge key
    /// by key, except the timeline `details.events`, which grows.
    pub fn merge(&mut self, later: &Deploy) -> bool {
        let before = self.clone();
        self.status = merge_status(&self.status, &later.status).to_string();
        let fill = |mine: &mut Option<String>, theirs: &Option<String>| {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        };
        fill(&mut self.environment, &later.environment);
        fill(&mut self.region, &later.region);
        fill(&mut self.version, &later.version);
        fill(&mut self.commit_sha, &later.commit_sha);
        fill(&mut self.change_cause, &later.change_cause);
        fill(&mut self.description, &later.description);
        fill(&mut self.helm_release, &later.helm_release);
        fill(&mut self.chart, &later.chart);
        fill(&mut self.chart_version, &later.chart_version);
        fill(&mut self.app_version, &later.app_version);
        fill(&mut self.pod_template_hash, &later.pod_template_hash);
        fill(&mut self.link, &later.link);
        fill(&mut self.actor, &later.actor);
        if !later.images.is_empty() {
            self.images.clone_from(&later.images);
        }
        // Like the start, the first report of completion stands: a watcher that only
        // knows "complete by now" must not move it on every re-evaluation.
        if self.finished_at.is_none() {
            self.finished_at = later.finished_at;
        }
        if let (Some(mine), Some(theirs)) =
            (self.details.as_object_mut(), later.details.as_object())
        {
            for (key, value) in theirs {
                // What is known of the start is the first report's, like the start.
                if key == START {
                    continue;
                }
                // A canary run's timeline grows; see `canary::merge_events`.
                let grown = match (mine.get_mut(key), value) {
                    (Some(Value::Array(events)), Value::Array(later_events)) if key == EVENTS => {
                        super::canary::merge_events(events, later_events);
                        true
                    }
                    _ => false,
                };
                if !grown {
                    mine.insert(key.clone(), value.clone());
                }
            }
        }
        *self != before
    }

    /// Whether this revision ran without failing: a candidate rollback target.
    pub fn stayed_healthy(&self) -> bool {
        is_healthy_status(&self.status)
    }

    /// Whether `started_at` is when the deploy started; `false` for a canary run first
    /// seen mid-way, which started at an unknown time at or before it.
    pub fn start_known(&self) -> bool {
        self.details.get(START).and_then(Value::as_str) != Some(START_UNKNOWN)
    }

    /// Whether this deploy and `other` run the same thing, judged by the first fact
    /// both carry: the pod template (a Kubernetes ReplicaSet's hash), the images, the
    /// commit, the chart and its version (a Helm revision), the version. `None` when
    /// they carry none of these in common.
    pub fn runs_same_as(&self, other: &Deploy) -> Option<bool> {
        fn both<T: PartialEq>(a: Option<T>, b: Option<T>) -> Option<bool> {
            Some(a? == b?)
        }
        let images = |d: &Deploy| {
            let mut images = d.images.clone();
            images.sort();
            Some(images).filter(|i| !i.is_empty())
        };
        let chart = |d: &Deploy| {
            d.chart_version
                .as_ref()
                .map(|v| (d.chart.clone(), v.clone(), d.app_version.clone()))
        };
        both(
            self.pod_template_hash.as_ref(),
            other.pod_template_hash.as_ref(),
        )
        .or_else(|| both(images(self), images(other)))
        .or_else(|| both(self.commit_sha.as_ref(), other.commit_sha.as_ref()))
        .or_else(|| both(chart(self), chart(other)))
        .or_else(|| both(self.version.as_ref(), other.version.as_ref()))
    }
}

/// A deploy with its row id, as decisions cite it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeployRecord {
    pub id: i64,
    #[serde(flatten)]
    pub deploy: Deploy,
}

/// The statuses of a revision that ran without failing.
pub fn is_healthy_status(status: &str) -> bool {
    matches!(
        status,
        status::DEPLOYED | status::SUPERSEDED | status::SUCCEEDED
    )
}

/// The status to keep when a source reports `new` for a revision stored as `old`.
///
/// A failure is history: a failed revision that a later one replaces stays `failed`,
/// or the engine would pick it as the last good version.
///
/// A neutral status ([`status::is_neutral`]: a canary run still waiting, or its
/// controller tearing down) never replaces another: a gate that Flagger asks about a
/// finished run must not make it look unfinished.
pub fn merge_status<'a>(old: &'a str, new: &'a str) -> &'a str {
    if (old == status::FAILED && new == status::SUPERSEDED) || status::is_neutral(new) {
        old
    } else {
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_are_stable() {
        let t = TargetRef::deployment("prod-eu", "shop", "checkout");
        assert_eq!(t.key(), "prod-eu/shop/Deployment/checkout");
        assert_eq!(
            TargetRef::helm_release("prod-eu", "shop", "checkout").key(),
            "prod-eu/shop/HelmRelease/checkout"
        );
    }

    #[test]
    fn keys_parse_back_and_nonsense_does_not() {
        let t = TargetRef::deployment("prod-eu", "shop", "checkout");
        assert_eq!(TargetRef::parse(&t.key()), Some(t));
        for bad in [
            "",
            "a/b/c",
            "a/b/c/d/e",
            "a//Deployment/x",
            "a/b/Deployment/",
        ] {
            assert_eq!(TargetRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_failed_revision_stays_failed_when_superseded() {
        assert_eq!(merge_status("failed", "superseded"), "failed");
        assert_eq!(merge_status("progressing", "deployed"), "deployed");
        assert_eq!(merge_status("deployed", "superseded"), "superseded");
        assert_eq!(merge_status("failed", "deployed"), "deployed");
    }

    #[test]
    fn only_revisions_that_ran_well_are_healthy() {
        for s in ["deployed", "superseded", "succeeded"] {
            assert!(is_healthy_status(s), "{s}");
        }
        for s in [
            "failed",
            "progressing",
            "pending-upgrade",
            "started",
            "uninstalled",
        ] {
            assert!(!is_healthy_status(s), "{s}");
        }
    }

    fn deploy(status: &str) -> Deploy {
        let t0 = DateTime::parse_from_rfc3339("2026-08-22T14:00:00Z")
            .unwrap()
            .to_utc();
        Deploy::new(
            TargetRef::deployment("c", "prod", "checkout"),
            DeploySource::Ci,
            "2231",
            status,
            t0,
        )
    }

    #[test]
    fn a_later_report_fills_in_and_never_erases() {
        let mut stored = deploy("started");
        stored.commit_sha = Some("abc123".into());
        stored.details = serde_json::json!({"pipeline": "deploy"});
        let mut later = deploy("succeeded");
        later.started_at += chrono::Duration::minutes(5);
        later.finished_at = Some(later.started_at);
        later.link = Some("https://ci.example.com/runs/2231".into());
        later.details = serde_json::json!({"attempt": 2});

        assert!(stored.merge(&later));
        assert_eq!(stored.status, "succeeded");
        assert_eq!(
            stored.started_at,
            deploy("x").started_at,
            "the first start time stands"
        );
        assert_eq!(stored.commit_sha.as_deref(), Some("abc123"));
        assert_eq!(stored.link, later.link);
        assert_eq!(stored.finished_at, later.finished_at);
        assert_eq!(
            stored.details,
            serde_json::json!({"pipeline": "deploy", "attempt": 2})
        );
    }

    #[test]
    fn the_first_finish_time_stands() {
        let mut stored = deploy("deployed");
        stored.finished_at = Some(stored.started_at + chrono::Duration::minutes(3));
        let mut later = stored.clone();
        later.finished_at = Some(stored.started_at + chrono::Duration::minutes(9));
        assert!(!stored.merge(&later));
        assert_eq!(
            stored.finished_at,
            Some(stored.started_at + chrono::Duration::minutes(3))
        );
    }

    #[test]
    fn a_neutral_report_never_replaces_a_known_status() {
        for neutral in ["waiting", "initializing", "terminating", "terminated"] {
            for known in ["succeeded", "failed", "progressing", "deployed"] {
                assert_eq!(
                    merge_status(known, neutral),
                    known,
                    "{neutral} over {known}"
                );
            }
            assert_eq!(merge_status(neutral, "progressing"), "progressing");
        }
        assert_eq!(merge_status("waiting", "failed"), "failed");
    }

    #[test]
    fn a_canary_timeline_grows_while_other_details_are_replaced() {
        let mut stored = deploy("progressing");
        stored.details = serde_json::json!({"phase": "Progressing",
            "events": [{"at": "t1", "hook": "event", "message": "New revision"}]});
        let mut later = deploy("succeeded");
        later.details = serde_json::json!({"phase": "Succeeded",
            "events": [{"at": "t2", "hook": "event", "message": "Promotion completed"}]});
        assert!(stored.merge(&later));
        assert_eq!(stored.details["phase"], "Succeeded");
        let messages: Vec<&str> = stored.details["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["New revision", "Promotion completed"]);
        assert!(
            !stored.merge(&later),
            "the same event again changes nothing"
        );
    }

    #[test]
    fn what_is_known_of_the_start_is_the_first_reports() {
        let mut first = deploy("progressing");
        first.details = serde_json::json!({START: START_UNKNOWN});
        assert!(!first.start_known());
        let later = deploy("succeeded");
        first.merge(&later);
        assert!(!first.start_known(), "a later report does not erase it");
        let mut known = deploy("progressing");
        let mut mid_run = deploy("progressing");
        mid_run.details = serde_json::json!({START: START_UNKNOWN});
        known.merge(&mid_run);
        assert!(known.start_known(), "nor add it");
    }

    #[test]
    fn two_deploys_run_the_same_thing_by_the_first_fact_both_carry() {
        let with = |hash: Option<&str>, images: &[&str], version: Option<&str>| {
            let mut d = deploy("deployed");
            d.pod_template_hash = hash.map(str::to_owned);
            d.images = images.iter().map(|i| (*i).to_owned()).collect();
            d.version = version.map(str::to_owned);
            d
        };
        let a = with(Some("7c67857fd"), &["app:1.5"], Some("1.5"));
        // Another template (a changed setting) with the same image is another revision.
        assert_eq!(
            a.runs_same_as(&with(Some("69c9cdb879"), &["app:1.5"], Some("1.5"))),
            Some(false)
        );
        // A CI run carries no template: its images decide.
        assert_eq!(a.runs_same_as(&with(None, &["app:1.5"], None)), Some(true));
        assert_eq!(a.runs_same_as(&with(None, &[], Some("1.6"))), Some(false));
        assert_eq!(with(None, &[], None).runs_same_as(&a), None);
    }

    #[test]
    fn the_same_report_twice_changes_nothing() {
        let mut stored = deploy("succeeded");
        let again = stored.clone();
        assert!(!stored.merge(&again));
    }

    #[test]
    fn sources_round_trip() {
        for source in DeploySource::ALL {
            assert_eq!(DeploySource::parse(source.as_str()), Some(source));
        }
        assert_eq!(DeploySource::parse("jenkins"), None);
    }
}
