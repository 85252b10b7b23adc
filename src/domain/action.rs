//! From a decision to actions: which executors act on a `rollback` or `freeze`
//! verdict, in which mode, under which idempotency key, and the words people read
//! about it (Slack and webhook notifications). Pure: the outbox worker does the I/O.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::render::templates::Templates;
use super::{Decision, Mode, Target, Verdict};

/// The built-in executors; `command:NAME` and `webhook:NAME` name configured ones.
pub const ROLLOUT_UNDO: &str = "rollout_undo";
pub const HELM_ROLLBACK: &str = "helm_rollback";
pub const WORKFLOW_DISPATCH: &str = "workflow_dispatch";
/// `kubectl argo rollouts abort`: a running Argo canary back to its stable version.
pub const ARGO_ABORT: &str = "argo_abort";
/// `kubectl argo rollouts undo --to-revision`: a promoted Argo revision undone.
pub const ARGO_UNDO: &str = "argo_undo";
/// Argo CD: auto-sync off, then a rollback to the history entry of the known-good
/// revision.
pub const ARGOCD_ROLLBACK: &str = "argocd_rollback";
/// The kind of target an Argo Rollouts watcher records and the argo executors act on.
pub const ROLLOUT_KIND: &str = "Rollout";
pub const FREEZE: &str = "freeze";
/// `federation_exclude:command:NAME` (or `webhook:NAME`): a region rolled back alone
/// taken out of federation routing by a configured executor.
pub const FEDERATION_EXCLUDE: &str = "federation_exclude";
/// `federation_include:…`: the region put back, once its rollback is verified.
pub const FEDERATION_INCLUDE: &str = "federation_include";

/// What an action does, parsed from its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    RolloutUndo,
    HelmRollback,
    WorkflowDispatch,
    ArgoAbort,
    ArgoUndo,
    ArgocdRollback,
    /// A configured argv template (`[[actions.commands]]`).
    Command(String),
    /// POST the decision to a configured URL (`[[actions.webhooks]]`).
    Webhook(String),
    /// Create a freeze record (M8).
    Freeze,
    /// Take a region out of federation routing (`include` false) or put it back, by
    /// the configured `command:NAME` or `webhook:NAME` it names.
    Federation {
        include: bool,
        executor: String,
    },
}

impl ActionKind {
    /// Parses `rollout_undo`, `helm_rollback`, `workflow_dispatch`, `argo_abort`,
    /// `argo_undo`, `freeze`, `command:NAME`, `webhook:NAME`.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            ROLLOUT_UNDO => Some(Self::RolloutUndo),
            HELM_ROLLBACK => Some(Self::HelmRollback),
            WORKFLOW_DISPATCH => Some(Self::WorkflowDispatch),
            ARGO_ABORT => Some(Self::ArgoAbort),
            ARGO_UNDO => Some(Self::ArgoUndo),
            ARGOCD_ROLLBACK => Some(Self::ArgocdRollback),
            FREEZE => Some(Self::Freeze),
            other => match other.split_once(':') {
                Some((FEDERATION_EXCLUDE | FEDERATION_INCLUDE, executor)) => {
                    match Self::parse(executor) {
                        Some(Self::Command(_) | Self::Webhook(_)) => Some(Self::Federation {
                            include: other.starts_with(FEDERATION_INCLUDE),
                            executor: executor.into(),
                        }),
                        _ => None,
                    }
                }
                Some(("command", name)) if !name.is_empty() => Some(Self::Command(name.into())),
                Some(("webhook", name)) if !name.is_empty() => Some(Self::Webhook(name.into())),
                _ => None,
            },
        }
    }

    /// Whether carrying it out rolls the target back (the loop guard counts those,
    /// and their outcome is verified).
    pub fn rolls_back(&self) -> bool {
        !matches!(
            self,
            Self::Webhook(_) | Self::Freeze | Self::Federation { .. }
        )
    }

    /// The configured executor that carries it out: the one a federation step names,
    /// else the kind itself.
    pub fn executor(kind: &str) -> &str {
        match kind.split_once(':') {
            Some((FEDERATION_EXCLUDE | FEDERATION_INCLUDE, executor)) => executor,
            _ => kind,
        }
    }
}

/// An action to enqueue for a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAction {
    pub kind: String,
    pub mode: Mode,
    /// `pending` (a worker runs it), `awaiting_approval`, `recommended` or `recorded`.
    pub state: &'static str,
    /// One action per key, ever: the target, the suspect deploy (or, for a freeze, the
    /// regression's start) and the kind.
    pub idempotency_key: String,
    /// What the executor needs, from the decision and the target.
    pub params: Value,
}

/// How the freeze of an M8 decision is scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezeScope {
    /// Every target: the runbook's "stop all deployments".
    #[default]
    All,
    /// The target's cluster and namespace.
    Namespace,
    /// The target alone.
    Target,
}

/// The executors that roll `target` back when none are configured: Helm when the
/// target is a Helm release with a known-good revision, else a rollout undo for a
/// Deployment (to the known-good ReplicaSet revision, or its images set back), else
/// the CD rollback workflow when it can be dispatched. An undo that knows neither
/// would land on whatever revision is the previous one: it is only recommended.
///
/// An Argo Rollout is rolled back through Argo: a canary still running is aborted
/// (traffic back to the stable version), a promoted revision is undone to the
/// known-good one.
pub fn default_executors(decision: &Decision, target: &Target) -> Vec<String> {
    let Some(plan) = &decision.plan else {
        return Vec::new();
    };
    if target.gitops.as_deref() == Some("argocd") && target.argocd_app.is_some() {
        return vec![ARGOCD_ROLLBACK.into()];
    }
    if target.target.kind == ROLLOUT_KIND {
        let argo_suspect = decision
            .suspect
            .as_ref()
            .filter(|s| s.deploy.source == super::DeploySource::Argo);
        return match argo_suspect {
            Some(s) if s.deploy.status == super::deploy::status::PROGRESSING => {
                vec![ARGO_ABORT.into()]
            }
            Some(_) if plan.kubernetes_revision.is_some() => vec![ARGO_UNDO.into()],
            _ => Vec::new(),
        };
    }
    // A canary run rolls back through its controller (Flagger's rollback hook, the Argo
    // analysis): an undo of the Deployment would fight the controller.
    if decision.suspect.as_ref().is_some_and(|s| {
        matches!(
            s.deploy.source,
            super::DeploySource::Flagger | super::DeploySource::Argo
        )
    }) {
        return Vec::new();
    }
    if target.helm_release.is_some() && plan.helm_revision.is_some() {
        vec![HELM_ROLLBACK.into()]
    } else if target.target.kind == "Deployment"
        && (plan.kubernetes_revision.is_some() || !plan.rollback_images.is_empty())
    {
        vec![ROLLOUT_UNDO.into()]
    } else if plan.cd_workflow.is_some() && plan.environment.is_some() && plan.image_tag.is_some() {
        vec![WORKFLOW_DISPATCH.into()]
    } else {
        Vec::new()
    }
}

/// The actions `decision` calls for, given the target's mode.
///
/// - `rollback` with a plan: one action per executor of the target (configured, or
///   [`default_executors`]).
/// - `freeze`: a freeze action (executed in every mode but `observe`: blocking new
///   rollouts is always safe); when a rollback also fired without a hold, the rollback
///   actions too, but never automatically — a freeze admits only approved rollbacks.
/// - anything else: nothing.
pub fn plan(decision: &Decision, target: &Target, freeze_scope: FreezeScope) -> Vec<PlannedAction> {
    let key = target.target.key();
    let mut planned = Vec::new();
    if decision.verdict == Verdict::Freeze {
        let since = decision
            .regression_started_at
            .map_or_else(|| "-".to_string(), |t| t.to_rfc3339());
        let scope = match freeze_scope {
            FreezeScope::All => "*".to_string(),
            FreezeScope::Namespace => {
                format!("{}/{}", target.target.cluster, target.target.namespace)
            }
            FreezeScope::Target => key.clone(),
        };
        planned.push(PlannedAction {
            kind: FREEZE.into(),
            mode: target.mode,
            state: if target.mode == Mode::Observe {
                "recorded"
            } else {
                "pending"
            },
            idempotency_key: format!("{key}|freeze@{since}|{FREEZE}"),
            params: json!({
                "target": key,
                "scope": scope,
                "reason": decision.reason,
            }),
        });
    }
    let rollback = matches!(decision.verdict, Verdict::Rollback | Verdict::Freeze)
        && decision.holds.is_empty();
    let (Some(plan), Some(suspect), true) = (&decision.plan, &decision.suspect, rollback) else {
        return planned;
    };
    let mode = match (decision.verdict, target.mode) {
        (Verdict::Freeze, Mode::Auto) => Mode::Approve,
        (_, mode) => mode,
    };
    let executors = if target.actions.is_empty() {
        default_executors(decision, target)
    } else {
        target.actions.clone()
    };
    let t = &target.target;
    for kind in executors {
        let image = plan.rollback_images.first().cloned();
        planned.push(PlannedAction {
            state: match mode {
                Mode::Observe => "recorded",
                Mode::Recommend => "recommended",
                Mode::Approve => "awaiting_approval",
                Mode::Auto => "pending",
            },
            mode,
            idempotency_key: format!("{key}|deploy:{}|{kind}", suspect.id),
            params: json!({
                "target": key,
                "cluster": t.cluster,
                "namespace": t.namespace,
                "kind": t.kind,
                "name": t.name,
                "region": target.region,
                "environment": plan.environment,
                "suspect_deploy_id": suspect.id,
                "suspect_revision": plan.suspect_revision,
                "rollback_revision": plan.rollback_revision,
                "kubernetes_revision": plan.kubernetes_revision,
                "helm_release": plan.helm_release,
                "helm_revision": plan.helm_revision,
                "helm_namespace": plan.helm_namespace,
                "cd_workflow": plan.cd_workflow,
                "image_tag": plan.image_tag,
                "image": image,
                "images": plan.rollback_images,
                "argocd_app": target.argocd_app,
                "known_good_commit": decision.rollback_to.as_ref().and_then(|g| g.deploy.commit_sha.clone()),
                "suspect_started_at": suspect.deploy.started_at,
                "reason": decision.reason,
                "commands": decision.recommended,
            }),
            kind,
        });
    }
    planned
}

/// The federation exclusion of a region its release rolled back alone
/// (`domain::release`, scope `region`): the configured `radius.federation_exclude`
/// executor, with the region and the rollback's params, in the rollback's mode, after
/// the rollback actions `planned` (the worker claims in order). `None` unless the
/// decision rolls this region back alone and an exclusion is configured.
pub fn federation_exclusion(
    decision: &Decision,
    target: &Target,
    radius: &super::release::BlastRadius,
    planned: &[PlannedAction],
) -> Option<PlannedAction> {
    let executor = radius.federation_exclude.as_deref()?;
    let check = decision.release.as_ref()?;
    let region = target.region.as_deref()?;
    if check.scope != super::release::ReleaseScope::Region
        || !check.rolled_back.iter().any(|r| r == region)
    {
        return None;
    }
    let rollback = planned
        .iter()
        .find(|p| ActionKind::parse(&p.kind).is_some_and(|k| k.rolls_back()))?;
    let suspect = decision.suspect.as_ref()?;
    let kind = format!("{FEDERATION_EXCLUDE}:{executor}");
    let mut params = rollback.params.clone();
    if let Some(object) = params.as_object_mut() {
        object.insert("release".into(), check.release.clone().into());
        object.insert("federation".into(), "exclude".into());
    }
    Some(PlannedAction {
        idempotency_key: format!("{}|deploy:{}|{kind}", target.target.key(), suspect.id),
        kind,
        mode: rollback.mode,
        state: rollback.state,
        params,
    })
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// recommend mode: the commands a person would run.
    Recommend,
    /// approve mode: waiting for a person.
    Approval,
    /// auto (or approved): the rollback has started.
    Announce,
    /// How it ended.
    Result,
    /// Service not restored, loop guard tripped, freeze: a person must act.
    Escalate,
    /// A rollback still running or being verified: where it stands (in its thread).
    Status,
}

impl Event {
    /// Every event, in the order an action's story goes.
    pub const ALL: [Event; 6] = [
        Event::Recommend,
        Event::Approval,
        Event::Announce,
        Event::Status,
        Event::Result,
        Event::Escalate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Recommend => "recommend",
            Event::Approval => "approval",
            Event::Announce => "announce",
            Event::Result => "result",
            Event::Escalate => "escalate",
            Event::Status => "status",
        }
    }
}

/// The facts a message is written from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub event: Event,
    pub decision_id: i64,
    pub decision: &'a Decision,
    /// The action's kind and state, when the message is about one.
    pub action: Option<(&'a str, &'a str)>,
    /// The outcome or error, for results and escalations.
    pub detail: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// When an announced rollback should be done by.
    pub eta: Option<DateTime<Utc>>,
    /// rollwarden's external URL for links (may be empty).
    pub public_url: &'a str,
    /// Who approved the action, when a person did.
    pub actor: Option<&'a str>,
}

impl Message<'_> {
    /// The text people read (Slack mrkdwn), from the built-in templates
    /// ([`Templates`]). Every value it interpolates is escaped
    /// ([`mrkdwn`](super::render::mrkdwn)): a deploy
    /// field cannot mention, ping or link.
    pub fn text(&self) -> String {
        Templates::builtin().slack_text(self)
    }

    /// The Slack incoming-webhook body, with `text` from the templates.
    pub fn slack(&self, text: &str) -> Value {
        json!({ "text": text })
    }

    /// The generic JSON webhook body: the event, the text, and the decision itself.
    pub fn webhook(&self, text: &str) -> Value {
        json!({
            "event": self.event.as_str(),
            "decision_id": self.decision_id,
            "target": self.decision.target.key(),
            "verdict": self.decision.verdict,
            "action": self.action.map(|(kind, state)| json!({"kind": kind, "state": state})),
            "detail": self.detail,
            "at": self.now,
            "text": text,
            "decision": self.decision,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Deploy, DeployRecord, DeploySource, RollbackPlan, TargetRef};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn target(mode: Mode) -> Target {
        let mut t = Target::discovered(TargetRef::deployment("default", "prod", "checkout"));
        t.mode = mode;
        t.region = Some("eu-west-1".into());
        t
    }

    fn record(id: i64, source: DeploySource, revision: &str) -> DeployRecord {
        DeployRecord {
            id,
            deploy: Deploy::new(
                TargetRef::deployment("default", "prod", "checkout"),
                source,
                revision,
                "deployed",
                at("2026-08-22T13:55:00Z"),
            ),
        }
    }

    pub(crate) fn decision(verdict: Verdict, source: DeploySource) -> Decision {
        Decision {
            verdict,
            reason: "M2: error rate 12.4 % > 5 %".into(),
            target: TargetRef::deployment("default", "prod", "checkout"),
            region: Some("eu-west-1".into()),
            environment: None,
            fired: Vec::new(),
            holds: Vec::new(),
            pending: Vec::new(),
            suspect: Some(record(42, source, "3")),
            rollback_to: Some(record(41, source, "2")),
            regression_started_at: Some(at("2026-08-22T13:59:00Z")),
            recommended: vec![
                "kubectl -n prod rollout undo deployment/checkout --to-revision=2".into(),
            ],
            plan: Some(RollbackPlan {
                kubernetes_revision: Some("2".into()),
                suspect_revision: "3".into(),
                rollback_revision: "2".into(),
                ..RollbackPlan::default()
            }),
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
    fn each_mode_enqueues_the_undo_in_its_state_under_one_key() {
        let d = decision(Verdict::Rollback, DeploySource::Kubernetes);
        for (mode, state) in [
            (Mode::Observe, "recorded"),
            (Mode::Recommend, "recommended"),
            (Mode::Approve, "awaiting_approval"),
            (Mode::Auto, "pending"),
        ] {
            let planned = plan(&d, &target(mode), FreezeScope::All);
            assert_eq!(planned.len(), 1, "{mode:?}");
            assert_eq!(planned[0].kind, ROLLOUT_UNDO);
            assert_eq!(planned[0].state, state);
            assert_eq!(
                planned[0].idempotency_key,
                "default/prod/Deployment/checkout|deploy:42|rollout_undo"
            );
            assert_eq!(planned[0].params["kubernetes_revision"], "2");
            assert_eq!(planned[0].params["region"], "eu-west-1");
        }
    }

    #[test]
    fn holds_and_other_verdicts_enqueue_nothing() {
        for verdict in [
            Verdict::Ok,
            Verdict::Monitor,
            Verdict::Investigate,
            Verdict::Hold,
        ] {
            let d = decision(verdict, DeploySource::Kubernetes);
            assert!(
                plan(&d, &target(Mode::Auto), FreezeScope::All).is_empty(),
                "{verdict}"
            );
        }
    }

    #[test]
    fn a_freeze_is_scoped_and_admits_the_rollback_only_for_approval() {
        let d = decision(Verdict::Freeze, DeploySource::Kubernetes);
        let planned = plan(&d, &target(Mode::Auto), FreezeScope::Namespace);
        let kinds: Vec<(&str, &str, Mode)> = planned
            .iter()
            .map(|p| (p.kind.as_str(), p.state, p.mode))
            .collect();
        assert_eq!(
            kinds,
            [
                (FREEZE, "pending", Mode::Auto),
                (ROLLOUT_UNDO, "awaiting_approval", Mode::Approve)
            ]
        );
        assert_eq!(planned[0].params["scope"], "default/prod");
        assert_eq!(
            planned[0].idempotency_key,
            "default/prod/Deployment/checkout|freeze@2026-08-22T13:59:00+00:00|freeze"
        );
        let observed = plan(&d, &target(Mode::Observe), FreezeScope::All);
        assert_eq!(observed[0].state, "recorded");
    }

    #[test]
    fn configured_executors_win_and_a_canary_run_is_left_to_its_controller() {
        let d = decision(Verdict::Rollback, DeploySource::Kubernetes);
        let mut t = target(Mode::Auto);
        t.actions = vec!["command:ecs-revert".into(), "webhook:federation".into()];
        let kinds: Vec<String> = plan(&d, &t, FreezeScope::All)
            .into_iter()
            .map(|p| p.kind)
            .collect();
        assert_eq!(kinds, ["command:ecs-revert", "webhook:federation"]);

        let canary = decision(Verdict::Rollback, DeploySource::Flagger);
        assert!(plan(&canary, &target(Mode::Auto), FreezeScope::All).is_empty());
    }

    #[test]
    fn kinds_parse_and_say_whether_they_roll_back() {
        assert_eq!(
            ActionKind::parse("command:x"),
            Some(ActionKind::Command("x".into()))
        );
        assert_eq!(ActionKind::parse("command:"), None);
        assert_eq!(ActionKind::parse("teleport"), None);
        assert!(ActionKind::parse(HELM_ROLLBACK).unwrap().rolls_back());
        assert!(!ActionKind::parse(FREEZE).unwrap().rolls_back());
        assert!(!ActionKind::parse("webhook:x").unwrap().rolls_back());
    }

    #[test]
    fn the_announcement_says_what_the_runbook_asks() {
        let d = decision(Verdict::Rollback, DeploySource::Kubernetes);
        let text = Message {
            event: Event::Announce,
            decision_id: 7,
            decision: &d,
            action: Some((ROLLOUT_UNDO, "running")),
            detail: None,
            now: at("2026-08-22T14:03:00Z"),
            eta: Some(at("2026-08-22T14:13:00Z")),
            public_url: "https://rollwarden.example.com/",
            actor: None,
        }
        .text();
        for needle in [
            "prod/checkout",
            "region eu-west-1",
            "Reason: M2",
            "From kubernetes revision 3 to revision 2",
            "Started: 2026-08-22 14:03 UTC. ETA: 2026-08-22 14:13 UTC.",
            "https://rollwarden.example.com/api/v1/decisions/7/report",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
    }

    /// Whether `text` holds no Slack control sequence: no `<` or `>`, and every `&`
    /// starts one of the three escapes.
    pub(crate) fn inert_mrkdwn(text: &str) -> bool {
        !text.contains(['<', '>'])
            && text.match_indices('&').all(|(i, _)| {
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| text[i..].starts_with(e))
            })
    }

    /// A message whose every interpolated value is `value`.
    pub(crate) struct HostileMessage {
        pub event: Event,
        pub decision: Decision,
        pub value: String,
    }

    impl HostileMessage {
        pub(crate) fn as_message(&self) -> Message<'_> {
            Message {
                event: self.event,
                decision_id: 7,
                decision: &self.decision,
                action: Some((&self.value, &self.value)),
                detail: Some(&self.value),
                now: at("2026-08-22T14:03:00Z"),
                eta: None,
                public_url: &self.value,
                actor: Some(&self.value),
            }
        }
    }

    /// Every event, with every hostile value in every field a message shows.
    pub(crate) fn hostile_messages() -> Vec<(HostileMessage, String)> {
        let mut values = crate::domain::field::tests::hostile();
        values.push("<!channel> <https://evil.example|Click to approve>".into());
        values.push("<@U123> &lt;!here&gt; > quote".into());
        let mut messages = Vec::new();
        for value in values {
            let mut d = decision(Verdict::Rollback, DeploySource::Ci);
            d.reason = format!("M2: error rate > 5 % after {value}");
            d.target = TargetRef::new("c", &value, &value, &value);
            d.region = Some(value.clone());
            d.environment = Some(value.clone());
            d.recommended = vec![value.clone(), format!("x ```{value}")];
            for record in [&mut d.suspect, &mut d.rollback_to].into_iter().flatten() {
                record.deploy.revision = value.clone();
            }
            d.release = Some(crate::domain::release::ReleaseCheck {
                release: format!("checkout@{value}"),
                scope: crate::domain::release::ReleaseScope::AllRegions,
                affected: vec![value.clone(), "eu-west-1".into()],
                rolled_back: vec![value.clone()],
                kept: vec![crate::domain::release::KeptRegion {
                    region: value.clone(),
                    verdict: value.clone(),
                    rules: vec![value.clone()],
                }],
                wave_stopped: vec![value.clone()],
                others_healthy: false,
                timeline: Vec::new(),
            });
            for event in Event::ALL {
                let message = HostileMessage {
                    event,
                    decision: d.clone(),
                    value: value.clone(),
                };
                messages.push((message, value.clone()));
            }
        }
        messages
    }

    #[test]
    fn slack_text_escapes_every_value_it_interpolates() {
        for (message, value) in hostile_messages() {
            let text = message.as_message().text();
            assert!(inert_mrkdwn(&text), "{:?} {value:?}: {text}", message.event);
        }
        let mut d = decision(Verdict::Rollback, DeploySource::Ci);
        d.reason = "<!channel> <https://evil.example|Click to approve>".into();
        let text = Message {
            event: Event::Recommend,
            decision_id: 7,
            decision: &d,
            action: None,
            detail: None,
            now: at("2026-08-22T14:03:00Z"),
            eta: None,
            public_url: "",
            actor: None,
        }
        .text();
        assert!(
            text.contains(
                "Reason: &lt;!channel&gt; &lt;https://evil.example|Click to approve&gt;\n"
            ),
            "{text}"
        );
        // Ordinary values read as before.
        assert!(text.contains("*Deployment* `prod/checkout` (region eu-west-1, environment -)"));
        assert!(text.contains(
            "```\nkubectl -n prod rollout undo deployment/checkout --to-revision=2\n```"
        ));
    }
}
