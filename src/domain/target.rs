//! Targets as the decision engine sees them: a deployable unit with the settings that
//! decide how a rollback of it is carried out.

use serde::{Deserialize, Serialize};

use super::TargetRef;

/// How a decision about a target is acted on (from its environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Record the decision only.
    Observe,
    /// Notify with the exact commands a person would run.
    #[default]
    Recommend,
    /// Wait for an operator's approval, then execute.
    Approve,
    /// Execute.
    Auto,
}

/// A target with everything decide() needs to know about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub target: TargetRef,
    pub region: Option<String>,
    /// The service it is a region of: deploys of one version to the targets of one
    /// service are one release (see `domain::release`). None: the workload name
    /// without the region suffix.
    #[serde(default)]
    pub service: Option<String>,
    pub environment: Option<String>,
    pub mode: Mode,
    /// The Helm release that manages it, for `helm rollback` recommendations.
    pub helm_release: Option<String>,
    /// The CD rollback workflow file (e.g. `cd-rollback.yml`) for `gh workflow run`.
    pub cd_workflow: Option<String>,
    /// Names of dependencies (database, cache, ingress…) whose degradation holds a
    /// rollback of this target (H2).
    pub dependencies: Vec<String>,
    /// `argocd` or `flux` when a GitOps controller manages it: an undo would be
    /// reverted by self-heal, so the Git revert is recommended instead.
    pub gitops: Option<String>,
    /// With `gitops = "argocd"`: the Argo CD Application that syncs it. Named, a
    /// rollback goes through Argo CD (`argocd_rollback`: auto-sync off, then a rollback
    /// to the history entry that deployed the known-good revision) instead of a hold.
    #[serde(default)]
    pub argocd_app: Option<String>,
    /// The executors that roll it back (`rollout_undo`, `helm_rollback`,
    /// `workflow_dispatch`, `command:NAME`, `webhook:NAME`); empty picks them from its
    /// deploy history (see `domain::action::default_executors`).
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Target {
    /// A target known only from an alert's labels: default mode, no extras.
    pub fn discovered(target: TargetRef) -> Self {
        Self {
            target,
            region: None,
            service: None,
            environment: None,
            mode: Mode::default(),
            helm_release: None,
            cd_workflow: None,
            dependencies: Vec::new(),
            gitops: None,
            argocd_app: None,
            actions: Vec::new(),
        }
    }
}
