//! The output of decide(): a verdict with everything that led to it — the rules that
//! fired with their thresholds and observed values, the holds that overrode a rollback,
//! the suspect deploy and the revision to return to, the commands a person would run —
//! and a hash of what it depends on, so that a new decision is recorded only when it
//! changes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::field::{Field, Rejected};
use super::policy::{Outcome, fmt_secs};
use super::render::argv::Argv;
use super::render::shell;
use super::{DeployRecord, DeploySource, Scope, SignalKind, SignalSource, TargetRef};

/// What to do about a target. Declared weakest first: the derived order is the
/// precedence `freeze > hold > rollback > investigate > monitor > ok`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing fired.
    Ok,
    /// Watch closely (M1, M3).
    Monitor,
    /// Someone looks now (M5).
    Investigate,
    /// Roll back to the known-good revision.
    Rollback,
    /// A rollback is called for (or cannot be ruled out) but must not happen; the
    /// decision's holds say why.
    Hold,
    /// Stop all deployments and escalate (M8); approved rollbacks are still admitted.
    Freeze,
}

impl Verdict {
    /// All verdicts, weakest first.
    pub const ALL: [Verdict; 6] = [
        Verdict::Ok,
        Verdict::Monitor,
        Verdict::Investigate,
        Verdict::Rollback,
        Verdict::Hold,
        Verdict::Freeze,
    ];

    /// The precedence: a larger rank wins.
    pub fn rank(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Monitor => 1,
            Verdict::Investigate => 2,
            Verdict::Rollback => 3,
            Verdict::Hold => 4,
            Verdict::Freeze => 5,
        }
    }

    /// The lowercase name, as serialised and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Monitor => "monitor",
            Verdict::Investigate => "investigate",
            Verdict::Rollback => "rollback",
            Verdict::Hold => "hold",
            Verdict::Freeze => "freeze",
        }
    }

    /// The verdict with this name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Outcome> for Verdict {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Monitor => Verdict::Monitor,
            Outcome::Investigate => Verdict::Investigate,
            Outcome::Rollback => Verdict::Rollback,
            Outcome::Freeze => Verdict::Freeze,
        }
    }
}

/// A rule that fired, with the evidence: one entry per rule, however many signals
/// fired it (the numbers of the one furthest over the threshold are shown, every
/// fingerprint is cited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FiredRule {
    pub rule_id: String,
    /// The runbook's words.
    pub description: String,
    /// The kind of the signal whose numbers are shown (the one furthest over).
    pub kind: SignalKind,
    /// The kinds of all the signals that fired it, sorted.
    pub kinds: Vec<SignalKind>,
    /// The rule's scope.
    pub scope: Scope,
    /// The condition in words (`> 5 %`).
    pub condition: String,
    /// The effective threshold the value exceeded (for relative rules, computed from
    /// the baseline); `None` for presence rules.
    pub threshold: Option<f64>,
    pub observed: Option<f64>,
    pub baseline: Option<f64>,
    /// How long the earliest firing signal had been active at decision time.
    pub duration_secs: Option<u64>,
    pub outcome: Outcome,
    /// Fingerprints of every signal that fired it, sorted.
    pub fingerprints: Vec<String>,
    /// Where those signals came from (an alert, the API, a canary controller), sorted.
    #[serde(default)]
    pub sources: Vec<SignalSource>,
    /// When the earliest firing signal started.
    pub started_at: DateTime<Utc>,
}

/// A rule whose condition an active signal meets but which does not fire yet: the
/// signal has not lasted long enough, has not been observed often enough, or no deploy
/// preceded it (an `after_deploy` rule). One entry per rule; the earliest to fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingRule {
    pub rule_id: String,
    pub outcome: Outcome,
    pub kind: SignalKind,
    /// Fingerprints of the signals that meet its condition, sorted.
    pub fingerprints: Vec<String>,
    /// Where those signals came from, sorted.
    pub sources: Vec<SignalSource>,
    /// When the earliest of them started.
    pub started_at: DateTime<Utc>,
    /// When the rule fires if the signal stays active; `None` when time alone does
    /// not make it fire (observations or a deploy are missing).
    pub fires_at: Option<DateTime<Utc>>,
    /// What the rule still waits for, in words.
    pub waiting_for: String,
}

/// What a list of targets shows of a stored decision, under the decision's own field
/// names: decoded from a whole decision (every field it does not name is skipped,
/// unparsed) or from the brief stored beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionBrief {
    pub region: Option<String>,
    pub environment: Option<String>,
    /// The ids of the rules that fired, and of those waiting to.
    pub fired: Vec<RuleId>,
    pub pending: Vec<RuleId>,
    pub suspect: Option<DeployBrief>,
    pub rollback_to: Option<DeployBrief>,
    pub regression_started_at: Option<DateTime<Utc>>,
}

/// A fired or pending rule, by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleId {
    pub rule_id: String,
}

/// A deploy, by what people call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployBrief {
    pub revision: String,
    pub version: Option<String>,
}

impl DecisionBrief {
    /// The brief of a decision as stored (JSON); empty when it is not one.
    pub fn of(decision: &serde_json::Value) -> Self {
        Self::deserialize(decision).unwrap_or_default()
    }
}

impl DeployBrief {
    /// Its version, else `revision N`.
    pub fn name(&self) -> String {
        self.version
            .clone()
            .unwrap_or_else(|| format!("revision {}", self.revision))
    }
}

/// An inconclusive hold lists at most this many of its signals' fingerprints; it counts
/// them all.
pub const MAX_LISTED_FINGERPRINTS: usize = 10;

fn one() -> u32 {
    1
}

/// What an inconclusive hold lists of its `signals` — `fingerprints`, or its one
/// `fingerprint` in a decision recorded before holds were grouped — and how many more
/// it counts.
pub fn inconclusive_listed<'a>(
    fingerprint: &'a String,
    fingerprints: &'a [String],
    signals: u32,
) -> (&'a [String], u32) {
    let listed = if fingerprints.is_empty() {
        std::slice::from_ref(fingerprint)
    } else {
        fingerprints
    };
    let more = signals.saturating_sub(u32::try_from(listed.len()).unwrap_or(u32::MAX));
    (listed, more)
}

/// Why a rollback is held. `code()` is stable: it is stored, hashed and filtered on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "code")]
pub enum HoldReason {
    /// H1: the regression started before the latest deploy, so that deploy did not
    /// cause it.
    #[serde(rename = "H1")]
    PredatesDeploy {
        regression_started_at: DateTime<Utc>,
        deploy_id: i64,
        deploy_source: DeploySource,
        deploy_revision: String,
        deploy_started_at: DateTime<Utc>,
    },
    /// H2: a dependency of the target is degraded.
    #[serde(rename = "H2")]
    DependencyDegraded {
        dependency: String,
        fingerprint: String,
        since: DateTime<Utc>,
    },
    /// H2's memory: the regression began while a dependency of the target was
    /// degraded, and the dependency recovered less than the outage grace ago; the
    /// regression is the outage's until the target keeps regressing past `grace_secs`.
    #[serde(rename = "dependency_recovered")]
    DependencyRecovered {
        dependency: String,
        fingerprint: String,
        since: DateTime<Utc>,
        recovered_at: DateTime<Utc>,
        grace_secs: u64,
    },
    /// The only evidence for a rollback cannot be trusted: the active signals of one
    /// kind that no rule can assess, for one reason.
    #[serde(rename = "inconclusive")]
    Inconclusive {
        kind: SignalKind,
        /// The earliest of them (by start, then fingerprint).
        fingerprint: String,
        why: String,
        /// When the earliest of them started.
        #[serde(default)]
        since: Option<DateTime<Utc>>,
        /// How many they are (1 in decisions recorded before holds were grouped).
        #[serde(default = "one")]
        signals: u32,
        /// Their fingerprints, earliest first, at most [`MAX_LISTED_FINGERPRINTS`]
        /// (empty in decisions recorded before holds were grouped: `fingerprint`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fingerprints: Vec<String>,
    },
    /// No deploy of the target started inside the correlation window before the
    /// regression: nothing to roll back.
    #[serde(rename = "no_deploy_in_window")]
    NoDeployInWindow {
        regression_started_at: DateTime<Utc>,
        window_secs: u64,
    },
    /// The suspect has no earlier healthy revision of the same source to return to.
    #[serde(rename = "no_known_good")]
    NoKnownGood {
        suspect_id: i64,
        source: DeploySource,
        revision: String,
    },
    /// The circuit breaker: too many automatic rollbacks, or the last one too recent.
    #[serde(rename = "loop_guard")]
    LoopGuard {
        rollbacks_in_window: u32,
        limit: u32,
        window_secs: u64,
        last_rollback_at: Option<DateTime<Utc>>,
        min_interval_secs: u64,
        /// How many of those rolled back away from the suspect's revision before the
        /// target last recovered: a recovery does not reset them (docs/loop-guard.md).
        #[serde(default)]
        before_recovery: u32,
    },
    /// A GitOps controller manages the target: an undo would be reverted by
    /// self-heal, so the change must be reverted in Git.
    #[serde(rename = "gitops")]
    Gitops {
        controller: String,
        commit_sha: Option<String>,
    },
}

impl HoldReason {
    /// The stable code: `H1`, `H2`, `dependency_recovered`, `inconclusive`,
    /// `no_deploy_in_window`, `no_known_good`, `loop_guard`, `gitops`.
    pub fn code(&self) -> &'static str {
        match self {
            HoldReason::PredatesDeploy { .. } => "H1",
            HoldReason::DependencyDegraded { .. } => "H2",
            HoldReason::DependencyRecovered { .. } => "dependency_recovered",
            HoldReason::Inconclusive { .. } => "inconclusive",
            HoldReason::NoDeployInWindow { .. } => "no_deploy_in_window",
            HoldReason::NoKnownGood { .. } => "no_known_good",
            HoldReason::LoopGuard { .. } => "loop_guard",
            HoldReason::Gitops { .. } => "gitops",
        }
    }

    /// The reason in words, for people.
    pub fn detail(&self) -> String {
        match self {
            HoldReason::PredatesDeploy {
                regression_started_at,
                deploy_id,
                deploy_source,
                deploy_revision,
                deploy_started_at,
            } => format!(
                "H1: the regression started at {} before the latest deploy \
                 ({} revision {deploy_revision}, deploy #{deploy_id}, started {}), \
                 so that deploy did not cause it; keep investigating",
                clock(*regression_started_at),
                deploy_source.as_str(),
                clock(*deploy_started_at),
            ),
            HoldReason::DependencyDegraded {
                dependency,
                fingerprint,
                since,
            } => format!(
                "H2: the dependency `{dependency}` is degraded since {} (signal {fingerprint}); \
                 keep investigating",
                clock(*since)
            ),
            HoldReason::DependencyRecovered {
                dependency,
                fingerprint,
                since,
                recovered_at,
                grace_secs,
            } => format!(
                "the regression began while the dependency `{dependency}` was degraded \
                 ({} to {}, signal {fingerprint}): it is the outage's until the target has \
                 kept regressing for {} after the recovery (until {}); keep investigating",
                clock(*since),
                clock(*recovered_at),
                fmt_secs(*grace_secs),
                clock(
                    *recovered_at
                        + chrono::Duration::seconds(i64::try_from(*grace_secs).unwrap_or(0))
                ),
            ),
            HoldReason::Inconclusive {
                kind,
                fingerprint,
                why,
                signals,
                fingerprints,
                ..
            } if *signals > 1 => {
                let (listed, more) = inconclusive_listed(fingerprint, fingerprints, *signals);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let listed = listed.join(", ");
                format!(
                    "{signals} {} signals are inconclusive ({why}): {listed}{more}",
                    kind.as_str()
                )
            }
            HoldReason::Inconclusive {
                kind,
                fingerprint,
                why,
                ..
            } => format!(
                "the {} signal {fingerprint} is inconclusive ({why})",
                kind.as_str()
            ),
            HoldReason::NoDeployInWindow {
                regression_started_at,
                window_secs,
            } => format!(
                "no deploy of the target started in the {} before the regression began at {}",
                fmt_secs(*window_secs),
                clock(*regression_started_at)
            ),
            HoldReason::NoKnownGood {
                suspect_id,
                source,
                revision,
            } => format!(
                "no healthy {} revision precedes the suspect (revision {revision}, deploy #{suspect_id})",
                source.as_str()
            ),
            HoldReason::LoopGuard {
                rollbacks_in_window,
                limit,
                window_secs,
                last_rollback_at,
                min_interval_secs,
                before_recovery,
            } => {
                let last = last_rollback_at
                    .map_or_else(String::new, |at| format!(", the last at {}", clock(at)));
                let repeated = match before_recovery {
                    0 => String::new(),
                    n => format!(
                        "; {n} of them rolled back this same revision before the target \
                         recovered, which a recovery does not reset"
                    ),
                };
                format!(
                    "loop guard: {rollbacks_in_window} automatic rollbacks in the last {} \
                     (limit {limit}, at least {} apart){last}{repeated}",
                    fmt_secs(*window_secs),
                    fmt_secs(*min_interval_secs)
                )
            }
            HoldReason::Gitops {
                controller,
                commit_sha,
            } => match commit_sha {
                Some(sha) => format!(
                    "{controller} manages the target and would revert a rollout undo by \
                     self-heal; revert commit {sha} in Git instead"
                ),
                None => format!(
                    "{controller} manages the target and would revert a rollout undo by \
                     self-heal; revert the change in Git instead"
                ),
            },
        }
    }
}

/// What a rollback returns to, for each way the runbooks roll back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct RollbackPlan {
    /// `kubectl rollout undo --to-revision`: the known-good ReplicaSet revision.
    pub kubernetes_revision: Option<String>,
    /// `helm rollback RELEASE REVISION -n NAMESPACE`.
    pub helm_release: Option<String>,
    pub helm_revision: Option<String>,
    pub helm_namespace: Option<String>,
    /// The environment and image tag the CD rollback workflow is dispatched with.
    pub environment: Option<String>,
    pub image_tag: Option<String>,
    pub cd_workflow: Option<String>,
    /// The suspect's revision and the known-good one, in their own source's numbering.
    pub suspect_revision: String,
    pub rollback_revision: String,
    /// The known-good revision's images.
    pub rollback_images: Vec<String>,
}

impl RollbackPlan {
    /// Whether a way back names its revision: a Deployment's ReplicaSet revision, a
    /// Helm revision, or an image tag for the CD rollback workflow.
    pub fn pins_a_revision(&self, target: &super::Target) -> bool {
        (matches!(target.target.kind.as_str(), "Deployment" | "Rollout")
            && self.kubernetes_revision.is_some())
            || (self.helm_release.is_some()
                && self.helm_revision.is_some()
                && self.helm_namespace.is_some())
            || (self.cd_workflow.is_some()
                && self.environment.is_some()
                && self.image_tag.is_some())
    }

    /// The exact commands a person would run, in order of preference: rollout undo
    /// and status, Helm rollback, the CD rollback workflow. Without any of them, for a
    /// Deployment: the images of the known-good revision set back (`kubectl set
    /// image`, after listing the containers it names), or, with no images either, the
    /// rollout history to look the revision up in — never an undo to whatever
    /// revision happens to be the previous one. Each is built as an argv of checked
    /// values and rendered as shell text once; a value on record that does not fit its
    /// grammar leaves a comment in its command's place.
    pub fn commands(&self, target: &super::Target) -> Vec<String> {
        let t = &target.target;
        let is_deployment = t.kind == "Deployment";
        let mut commands = Vec::new();
        if let (true, Some(revision)) = (is_deployment, &self.kubernetes_revision) {
            commands.extend(undo_commands(&t.namespace, &t.name, Some(revision)));
        }
        if let ("Rollout", Some(revision)) = (t.kind.as_str(), &self.kubernetes_revision) {
            commands.extend(argo_commands("undo", &t.namespace, &t.name, Some(revision)));
        }
        if let (Some(release), Some(revision), Some(namespace)) = (
            &self.helm_release,
            &self.helm_revision,
            &self.helm_namespace,
        ) {
            commands.push(command(
                "helm rollback",
                Argv::new("helm")
                    .arg("rollback")
                    .value(Field::HelmRelease, release)
                    .and_then(|a| a.value(Field::RevisionNumber, revision))
                    .and_then(|a| a.arg("-n").value(Field::Namespace, namespace))
                    .map(|a| a.arg("--cleanup-on-fail")),
            ));
        }
        if let (Some(workflow), Some(environment), Some(tag)) =
            (&self.cd_workflow, &self.environment, &self.image_tag)
        {
            commands.push(command(
                "gh workflow run",
                Argv::new("gh")
                    .arg("workflow")
                    .arg("run")
                    .value(Field::Workflow, workflow)
                    .and_then(|a| {
                        a.arg("-f")
                            .joined("environment=", Field::Environment, environment)
                    })
                    .and_then(|a| a.arg("-f").joined("image_tag=", Field::ImageTag, tag)),
            ));
        }
        if commands.is_empty() && is_deployment {
            commands.extend(image_revert_commands(
                &t.namespace,
                &t.name,
                &self.rollback_images,
            ));
        }
        commands
    }
}

/// `kubectl rollout undo` (to `revision`, else the previous one) and `rollout status`.
fn undo_commands(namespace: &str, name: &str, revision: Option<&str>) -> [String; 2] {
    let kubectl = |verb: &str| {
        Argv::new("kubectl")
            .arg("-n")
            .value(Field::Namespace, namespace)
            .map(|a| a.arg("rollout").arg(verb))
            .and_then(|a| a.joined("deployment/", Field::Name, name))
    };
    let undo = kubectl("undo").and_then(|a| match revision {
        Some(r) => a.joined("--to-revision=", Field::RevisionNumber, r),
        None => Ok(a),
    });
    let status = kubectl("status").map(|a| a.arg("--watch"));
    [
        command("kubectl rollout undo", undo),
        command("kubectl rollout status", status),
    ]
}

/// The shell text of `kubectl -n NAMESPACE rollout undo deployment/NAME
/// [--to-revision=N]`, as an executor reports what it ran.
pub fn undo_command(namespace: &str, name: &str, revision: Option<&str>) -> String {
    let [undo, _] = undo_commands(namespace, name, revision);
    undo
}

/// `git revert SHA`, for a target a GitOps controller manages.
pub fn git_revert(sha: &str) -> String {
    command(
        "git revert",
        Argv::new("git").arg("revert").value(Field::Commit, sha),
    )
}

/// What a person runs to roll an Argo CD Application back as `argocd_rollback` does:
/// auto-sync off (a rollback is refused while it is on), the history to find the
/// entry, the rollback to it, and a reminder to turn auto-sync back on once the Git
/// revert is merged. `good_commit` is the known-good revision when it is on record.
pub fn argocd_commands(app: &str, good_commit: Option<&str>) -> Vec<String> {
    let argocd = || Argv::new("argocd").arg("app");
    let entry = match good_commit.filter(|c| Field::Commit.fits(c)) {
        Some(sha) => format!("the ID whose revision is {sha}"),
        None => "the last ID synced before the bad revision".to_string(),
    };
    vec![
        command(
            "argocd app set",
            argocd()
                .arg("set")
                .value(Field::Name, app)
                .map(|a| a.arg("--sync-policy").arg("none")),
        ),
        command(
            "argocd app history",
            argocd().arg("history").value(Field::Name, app),
        ),
        shell::comment(&format!(
            "roll back to {entry}: argocd app rollback APP ID; once the Git revert is \
             merged, turn auto-sync back on: argocd app set APP --sync-policy automated"
        )),
    ]
}

/// `kubectl argo rollouts VERB NAME -n NAMESPACE [--to-revision=N]` (`undo` or
/// `abort`), then `kubectl argo rollouts status NAME -n NAMESPACE` to follow it.
pub fn argo_commands(
    verb: &str,
    namespace: &str,
    name: &str,
    revision: Option<&str>,
) -> [String; 2] {
    let plugin = |verb: &str| {
        Argv::new("kubectl")
            .arg("argo")
            .arg("rollouts")
            .arg(verb)
            .value(Field::Name, name)
            .and_then(|a| a.arg("-n").value(Field::Namespace, namespace))
    };
    let verb = if verb == "abort" { "abort" } else { "undo" };
    let act = plugin(verb).and_then(|a| match revision {
        Some(r) if verb == "undo" => a.joined("--to-revision=", Field::RevisionNumber, r),
        _ => Ok(a),
    });
    [
        command(&format!("kubectl argo rollouts {verb}"), act),
        command("kubectl argo rollouts status", plugin("status")),
    ]
}

/// `flux suspend|resume kustomization|helmrelease NAME -n NAMESPACE`, for a target Flux
/// applies: suspended, a manual rollback is not reconciled away while the Git revert
/// is on its way; resumed once it is merged. `None` for another kind.
pub fn flux_command(verb: &str, kind: &str, name: &str, namespace: &str) -> Option<String> {
    let kind = match kind {
        "kustomization" => "kustomization",
        "helmrelease" => "helmrelease",
        _ => return None,
    };
    let verb = match verb {
        "suspend" => "suspend",
        "resume" => "resume",
        _ => return None,
    };
    Some(command(
        &format!("flux {verb}"),
        Argv::new("flux")
            .arg(verb)
            .arg(kind)
            .value(Field::Name, name)
            .and_then(|a| a.arg("-n").value(Field::Namespace, namespace)),
    ))
}

/// A command as shell text a person can paste; when a value on record does not fit its
/// grammar, a comment saying which command is not shown and why (without the value,
/// which the decision's evidence has).
fn command(what: &str, argv: Result<Argv, Rejected>) -> String {
    match argv {
        Ok(argv) => shell::render(argv.as_slice()),
        Err(rejected) => shell::comment(&format!(
            "{what}: not shown, a value on record is not {}",
            rejected.field.expects()
        )),
    }
}

/// Without a pinned revision: with the known-good images, list the containers, set the
/// images back (`kubectl set image`), follow the rollout; without them, the rollout
/// history to look the revision up in.
fn image_revert_commands(namespace: &str, name: &str, images: &[String]) -> Vec<String> {
    let kubectl = || {
        Argv::new("kubectl")
            .arg("-n")
            .value(Field::Namespace, namespace)
    };
    if images.is_empty() {
        let history = kubectl()
            .map(|a| a.arg("rollout").arg("history"))
            .and_then(|a| a.joined("deployment/", Field::Name, name));
        return vec![command("kubectl rollout history", history)];
    }
    // kubectl names containers; the images name their repositories. The first command
    // lists which container runs which image.
    let list = kubectl()
        .map(|a| a.arg("get"))
        .and_then(|a| a.joined("deployment/", Field::Name, name))
        .map(|a| {
            a.arg("-o").arg(
                "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image}{\"\\n\"}{end}",
            )
        });
    let mut set = kubectl()
        .map(|a| a.arg("set").arg("image"))
        .and_then(|a| a.joined("deployment/", Field::Name, name));
    for image in images {
        let prefix = format!("{}=", container_of(image));
        set = set.and_then(|a| a.joined(&prefix, Field::Image, image));
    }
    let [_, status] = undo_commands(namespace, name, None);
    vec![
        command("kubectl get", list),
        command("kubectl set image", set),
        status,
    ]
}

/// The container a person would name for `image`: its repository's last segment
/// (`ghcr.io/acme/checkout:v2.4.9` → `checkout`).
fn container_of(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split(':').next().unwrap_or(last)
}

/// V1: whether the target meets the post-rollback thresholds while it is watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationStatus {
    /// When the rollback was executed.
    pub rolled_back_at: DateTime<Utc>,
    /// The end of the watch.
    pub watch_until: DateTime<Utc>,
    /// Every active signal meets its V1 threshold.
    pub passing: bool,
    /// What does not, in words (`error_rate 0.4 % >= 0.1 %`).
    pub failing: Vec<String>,
}

/// What decide() concluded about one target at one moment, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub verdict: Verdict,
    /// One sentence that says why — and, for a hold, why not.
    pub reason: String,
    pub target: TargetRef,
    /// The target's region and environment, from its configuration.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    /// The rules that fired, in policy order.
    pub fired: Vec<FiredRule>,
    /// Why a rollback is held; empty unless one is called for.
    pub holds: Vec<HoldReason>,
    /// Rules an active signal meets that do not fire yet, in policy order: while one
    /// is, the verdict is at least `monitor`.
    #[serde(default)]
    pub pending: Vec<PendingRule>,
    /// The deploy blamed: the latest one before the regression, inside the window.
    pub suspect: Option<DeployRecord>,
    /// The last healthy revision before the suspect, of the same source.
    pub rollback_to: Option<DeployRecord>,
    /// When the earliest signal behind a rollback or freeze rule started.
    pub regression_started_at: Option<DateTime<Utc>>,
    /// The exact commands a person would run, in order of preference.
    pub recommended: Vec<String>,
    /// The revisions a rollback returns to, per way of rolling back: what the
    /// executors act on (and what `recommended` is rendered from).
    #[serde(default)]
    pub plan: Option<RollbackPlan>,
    /// Why to escalate now (E1, M8, loop guard), if anything.
    pub escalate: Option<String>,
    /// V1 while a rolled-back target is watched.
    pub verification: Option<VerificationStatus>,
    /// The GitOps controller (`argocd`, `flux`) that manages the target.
    pub gitops: Option<String>,
    pub policy_version: String,
    /// sha256 over what the decision depends on (not the clock); see
    /// [`Decision::compute_inputs_hash`].
    pub inputs_hash: String,
    /// Alerts about the target that the engine left out of this evaluation (over its
    /// caps): the decision was reached without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_considered: Option<NotConsidered>,
    /// For a region of a multi-region release: the release, how far its rollback
    /// reaches, the other regions' verdicts and the regions the wave stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<super::release::ReleaseCheck>,
}

/// Alerts an evaluation did not weigh, and why: the engine holds at most
/// `engine.max_alerts_per_target` alerts per target (the newest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotConsidered {
    /// How many of the target's alerts were left out.
    pub alerts: u64,
    /// Why: `max_alerts_per_target`.
    pub reason: String,
}

impl Decision {
    /// The hash of what the decision depends on: verdict, fired rule ids with observed
    /// values, hold codes (with the dependency for H2), suspect and rollback-target ids,
    /// policy version, the escalation raised, whether verification passes and the
    /// release's scope, affected and wave-stopped regions. Durations and texts that move with the clock are left out, so that
    /// re-deciding an unchanged situation gives the same hash.
    pub fn compute_inputs_hash(&self) -> String {
        let mut canonical = format!("policy={}\nverdict={}\n", self.policy_version, self.verdict);
        for rule in &self.fired {
            let observed = rule
                .observed
                .map_or_else(|| "-".to_string(), |v| v.to_string());
            canonical.push_str(&format!("fired={}:{observed}\n", rule.rule_id));
        }
        for pending in &self.pending {
            canonical.push_str(&format!("pending={}\n", pending.rule_id));
        }
        for hold in &self.holds {
            match hold {
                // One line per signal, as when each had a hold of its own: grouping
                // them changed no decision's hash.
                HoldReason::Inconclusive { signals, .. } => {
                    for _ in 0..*signals {
                        canonical.push_str("hold=inconclusive\n");
                    }
                }
                HoldReason::DependencyDegraded { dependency, .. } => {
                    canonical.push_str(&format!("hold=H2:{dependency}\n"));
                }
                HoldReason::DependencyRecovered { dependency, .. } => {
                    canonical.push_str(&format!("hold=dependency_recovered:{dependency}\n"));
                }
                other => canonical.push_str(&format!("hold={}\n", other.code())),
            }
        }
        let id = |d: &Option<DeployRecord>| d.as_ref().map_or("-".into(), |d| d.id.to_string());
        canonical.push_str(&format!(
            "suspect={}\nrollback_to={}\n",
            id(&self.suspect),
            id(&self.rollback_to)
        ));
        if let Some(escalate) = &self.escalate {
            // decide() words escalations without elapsed times, so the text is stable.
            canonical.push_str(&format!("escalate={escalate}\n"));
        }
        if let Some(v) = &self.verification {
            canonical.push_str(&format!("verification={}\n", v.passing));
        }
        if let Some(r) = &self.release {
            // Its scope and the wave stop change what the region's gates answer; the
            // other regions' verdicts are read afresh by whoever shows them.
            canonical.push_str(&format!(
                "release={}:{}:affected={}:stopped={}\n",
                r.release,
                r.scope.as_str(),
                r.affected.join(","),
                r.wave_stopped.join(",")
            ));
        }
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The rules that fired with this outcome.
    pub fn fired_with(&self, outcome: Outcome) -> impl Iterator<Item = &FiredRule> {
        self.fired.iter().filter(move |f| f.outcome == outcome)
    }

    /// Whether the rule with this id fired.
    pub fn has_fired(&self, rule_id: &str) -> bool {
        self.fired.iter().any(|f| f.rule_id == rule_id)
    }

    /// Whether this decision, made after a rollback, shows service restored (V1): no
    /// rule calls for more than watching, and every watched signal meets its
    /// threshold.
    pub fn restores_service(&self) -> bool {
        matches!(self.verdict, Verdict::Ok | Verdict::Monitor)
            && self.verification.as_ref().is_none_or(|v| v.passing)
    }

    /// Whether a hold with this code is present.
    pub fn has_hold(&self, code: &str) -> bool {
        self.holds.iter().any(|h| h.code() == code)
    }
}

/// A time as people read it in a reason: `2026-08-22 10:05 UTC`.
pub(crate) fn clock(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn verdicts_order_by_precedence() {
        use Verdict::*;
        let mut shuffled = vec![Rollback, Ok, Freeze, Monitor, Hold, Investigate];
        shuffled.sort();
        assert_eq!(shuffled, [Ok, Monitor, Investigate, Rollback, Hold, Freeze]);
        for pair in Verdict::ALL.windows(2) {
            assert!(pair[0].rank() < pair[1].rank());
            assert!(pair[0] < pair[1]);
        }
        assert_eq!(Freeze.max(Hold), Freeze);
        assert_eq!(Hold.max(Rollback), Hold);
    }

    #[test]
    fn verdicts_serialise_lowercase_and_parse_back() {
        for verdict in Verdict::ALL {
            let json = serde_json::to_string(&verdict).unwrap();
            assert_eq!(json, format!("\"{}\"", verdict.as_str()));
            assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
        }
    }

    fn holds() -> Vec<HoldReason> {
        let t = at("2026-08-22T10:05:00Z");
        vec![
            HoldReason::PredatesDeploy {
                regression_started_at: t,
                deploy_id: 8,
                deploy_source: DeploySource::Kubernetes,
                deploy_revision: "8".into(),
                deploy_started_at: at("2026-08-22T10:10:00Z"),
            },
            HoldReason::DependencyDegraded {
                dependency: "database".into(),
                fingerprint: "fp-db".into(),
                since: t,
            },
            HoldReason::Inconclusive {
                kind: SignalKind::ErrorRate,
                fingerprint: "fp".into(),
                why: "no value".into(),
                since: Some(t),
                signals: 1,
                fingerprints: vec!["fp".into()],
            },
            HoldReason::NoDeployInWindow {
                regression_started_at: t,
                window_secs: 7200,
            },
            HoldReason::NoKnownGood {
                suspect_id: 7,
                source: DeploySource::Helm,
                revision: "12".into(),
            },
            HoldReason::LoopGuard {
                rollbacks_in_window: 3,
                limit: 3,
                window_secs: 3600,
                last_rollback_at: Some(t),
                min_interval_secs: 300,
                before_recovery: 0,
            },
            HoldReason::Gitops {
                controller: "argocd".into(),
                commit_sha: Some("abc123".into()),
            },
        ]
    }

    #[test]
    fn hold_codes_are_stable_and_serialised_as_the_tag() {
        let codes: Vec<&str> = holds().iter().map(HoldReason::code).collect();
        assert_eq!(
            codes,
            [
                "H1",
                "H2",
                "inconclusive",
                "no_deploy_in_window",
                "no_known_good",
                "loop_guard",
                "gitops"
            ]
        );
        for hold in holds() {
            let json = serde_json::to_value(&hold).unwrap();
            assert_eq!(json["code"], hold.code());
            assert_eq!(serde_json::from_value::<HoldReason>(json).unwrap(), hold);
        }
    }

    #[test]
    fn hold_details_say_what_holds() {
        let details: Vec<String> = holds().iter().map(HoldReason::detail).collect();
        assert!(details[0].starts_with("H1: the regression started at 2026-08-22 10:05 UTC"));
        assert!(details[1].contains("`database`"));
        assert!(details[2].contains("no value"));
        assert!(details[3].contains("2 h"));
        assert!(details[4].contains("helm revision"));
        assert!(details[5].contains("3 automatic rollbacks in the last 1 h (limit 3"));
        assert!(details[6].contains("revert commit abc123 in Git"));
    }

    fn decision() -> Decision {
        Decision {
            verdict: Verdict::Rollback,
            reason: "r".into(),
            target: TargetRef::deployment("c", "prod", "checkout"),
            region: None,
            environment: None,
            fired: vec![FiredRule {
                rule_id: "M2".into(),
                description: "d".into(),
                kind: SignalKind::ErrorRate,
                kinds: vec![SignalKind::ErrorRate],
                scope: Scope::Any,
                condition: "> 5 %".into(),
                threshold: Some(0.05),
                observed: Some(0.07),
                baseline: None,
                duration_secs: Some(60),
                outcome: Outcome::Rollback,
                fingerprints: vec!["fp".into()],
                sources: vec![SignalSource::Alert],
                started_at: at("2026-08-22T10:05:00Z"),
            }],
            holds: vec![],
            pending: vec![],
            suspect: None,
            rollback_to: None,
            regression_started_at: Some(at("2026-08-22T10:05:00Z")),
            recommended: vec![],
            plan: None,
            escalate: None,
            verification: None,
            gitops: None,
            policy_version: "runbooks-1".into(),
            inputs_hash: String::new(),
            not_considered: None,
            release: None,
        }
    }

    #[test]
    fn service_is_restored_when_nothing_calls_for_more_than_watching_and_v1_passes() {
        let watch = |passing: bool| VerificationStatus {
            rolled_back_at: at("2026-08-22T10:10:00Z"),
            watch_until: at("2026-08-22T10:25:00Z"),
            passing,
            failing: vec![],
        };
        let with = |verdict, verification| Decision {
            verdict,
            verification,
            ..decision()
        };
        assert!(with(Verdict::Ok, None).restores_service());
        assert!(with(Verdict::Monitor, Some(watch(true))).restores_service());
        assert!(!with(Verdict::Ok, Some(watch(false))).restores_service());
        for verdict in [
            Verdict::Investigate,
            Verdict::Rollback,
            Verdict::Hold,
            Verdict::Freeze,
        ] {
            assert!(
                !with(verdict, Some(watch(true))).restores_service(),
                "{verdict}"
            );
        }
    }

    #[test]
    fn the_inputs_hash_ignores_durations_and_wording() {
        let a = decision();
        let mut b = decision();
        b.fired[0].duration_secs = Some(600);
        b.reason = "another sentence".into();
        assert_eq!(a.compute_inputs_hash(), b.compute_inputs_hash());
        assert_eq!(a.compute_inputs_hash().len(), 64);
    }

    #[test]
    fn the_inputs_hash_changes_with_what_the_decision_depends_on() {
        let base = decision().compute_inputs_hash();
        type Change = Box<dyn Fn(&mut Decision)>;
        let changes: Vec<Change> = vec![
            Box::new(|d| d.verdict = Verdict::Hold),
            Box::new(|d| d.fired[0].observed = Some(0.08)),
            Box::new(|d| d.fired[0].rule_id = "G2".into()),
            Box::new(|d| d.holds = holds()[..1].to_vec()),
            Box::new(|d| d.policy_version = "runbooks-2".into()),
            Box::new(|d| d.escalate = Some("E1: not restored".into())),
        ];
        for change in changes {
            let mut d = decision();
            change(&mut d);
            assert_ne!(d.compute_inputs_hash(), base);
        }
    }

    #[test]
    fn a_decision_round_trips_through_json() {
        let mut d = decision();
        d.holds = holds();
        d.inputs_hash = d.compute_inputs_hash();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
    }

    fn full_plan() -> RollbackPlan {
        RollbackPlan {
            kubernetes_revision: Some("6".into()),
            helm_release: Some("checkout".into()),
            helm_revision: Some("3".into()),
            helm_namespace: Some("shop".into()),
            environment: Some("production".into()),
            image_tag: Some("v2.2230".into()),
            cd_workflow: Some("cd-rollback.yml".into()),
            ..RollbackPlan::default()
        }
    }

    fn checkout() -> super::super::Target {
        super::super::Target::discovered(TargetRef::deployment("prod-eu", "shop", "checkout"))
    }

    const ORDINARY: [&str; 4] = [
        "kubectl -n shop rollout undo deployment/checkout --to-revision=6",
        "kubectl -n shop rollout status deployment/checkout --watch",
        "helm rollback checkout 3 -n shop --cleanup-on-fail",
        "gh workflow run cd-rollback.yml -f environment=production -f image_tag=v2.2230",
    ];

    #[test]
    fn recommended_commands_read_as_people_write_them() {
        assert_eq!(full_plan().commands(&checkout()), ORDINARY);
        // No revision pinned and no images known: look the revision up first.
        assert_eq!(
            RollbackPlan::default().commands(&checkout()),
            ["kubectl -n shop rollout history deployment/checkout"]
        );
        assert_eq!(git_revert("abc123"), "git revert abc123");
        assert_eq!(
            undo_command("shop", "checkout", Some("6")),
            "kubectl -n shop rollout undo deployment/checkout --to-revision=6"
        );
    }

    #[test]
    fn a_hostile_value_on_record_turns_its_command_into_a_comment() {
        type Set = fn(&mut RollbackPlan, String);
        let fields: [(Set, &[usize]); 7] = [
            (|p, v| p.kubernetes_revision = Some(v), &[0]),
            (|p, v| p.helm_release = Some(v), &[2]),
            (|p, v| p.helm_revision = Some(v), &[2]),
            (|p, v| p.helm_namespace = Some(v), &[2]),
            (|p, v| p.environment = Some(v), &[3]),
            (|p, v| p.image_tag = Some(v), &[3]),
            (|p, v| p.cd_workflow = Some(v), &[3]),
        ];
        for value in crate::domain::field::tests::hostile() {
            for (set, affected) in &fields {
                let mut plan = full_plan();
                set(&mut plan, value.clone());
                let commands = plan.commands(&checkout());
                assert_eq!(commands.len(), 4);
                for (i, command) in commands.iter().enumerate() {
                    if affected.contains(&i) {
                        assert!(
                            command.starts_with("# ")
                                && command.contains("not shown")
                                && !command.contains('\n'),
                            "{value:?}: {command}"
                        );
                    } else {
                        assert_eq!(command, ORDINARY[i], "{value:?}");
                    }
                }
            }
            let mut target = checkout();
            target.target.namespace = value.clone();
            let commands = full_plan().commands(&target);
            assert!(
                commands[..2].iter().all(|c| c.starts_with("# ")),
                "{commands:?}"
            );
            assert_eq!(commands[2..], ORDINARY[2..]);
            assert!(git_revert(&value).starts_with("# git revert: not shown"));
        }
    }
}
