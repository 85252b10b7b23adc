//! The Argo Rollouts executors: `argo_abort` for a canary still running, `argo_undo`
//! for a promoted revision. Each looks at the Rollout first (an abort already asked
//! for, a template already at the revision: nothing is sent), and the undo journals
//! the ReplicaSet it restores, since the controller renumbers it.

use super::*;
use crate::domain::decision::argo_commands;
use crate::k8s::argo_ops::{self, AbortOutcome, ArgoError, UndoTo};

/// `kubectl argo rollouts abort`: traffic back to the stable version, the canary
/// scaled down. `spec.template` keeps the new version: the Git or CI revert follows.
pub struct ArgoAbort {
    pub client: kube::Client,
}

#[async_trait]
impl Executor for ArgoAbort {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        _journal: &dyn Journal,
    ) -> ExecOutcome {
        let (namespace, name) = match workload(action) {
            Ok(workload) => workload,
            Err(e) => return e,
        };
        let [command, _] = argo_commands("abort", namespace, name, None);
        match argo_ops::abort(&self.client, namespace, name, dry_run).await {
            Err(err) => argo_error(err),
            Ok(AbortOutcome::Aborted { dry_run: true, .. }) => ExecOutcome::DryRun {
                result: json!({ "would_run": command, "server_dry_run": true }),
            },
            Ok(AbortOutcome::Aborted { on_main, .. }) => ExecOutcome::Done {
                result: json!({
                    "command": command,
                    "patched": if on_main { "rollouts" } else { "rollouts/status" },
                    "note": "spec.template still holds the aborted version: revert it in Git or CI, or it rolls out again on retry",
                }),
                verify: true,
            },
            Ok(AbortOutcome::AlreadyAborted) if dry_run => ExecOutcome::DryRun {
                result: json!({ "would_run": command, "already_aborted": true }),
            },
            Ok(AbortOutcome::AlreadyAborted) => ExecOutcome::Done {
                result: json!({ "command": command, "already_aborted": true }),
                verify: true,
            },
            // Promoted meanwhile: an abort is no way back any more, argo_undo is.
            Ok(AbortOutcome::NothingRunning { stable }) => ExecOutcome::Escalate {
                error: format!(
                    "no canary is running on rollout {namespace}/{name} (stable {stable}): \
                     nothing to abort; the way back is an undo to the known-good revision"
                ),
                result: None,
            },
        }
    }
}

/// `kubectl argo rollouts undo NAME --to-revision=N`.
pub struct ArgoUndo {
    pub client: kube::Client,
}

/// The step an Argo undo notes before its PATCH: the ReplicaSet it restores.
pub const ARGO_PATCHING: &str = "argo_patching";

#[async_trait]
impl Executor for ArgoUndo {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        journal: &dyn Journal,
    ) -> ExecOutcome {
        let (namespace, name) = match workload(action) {
            Ok(workload) => workload,
            Err(e) => return e,
        };
        let to_revision = match required(action, "kubernetes_revision") {
            Ok(r) => match r.parse::<i64>() {
                Ok(r) if r > 0 => r,
                _ => return ExecOutcome::Failed(format!("revision {r:?} is not a number")),
            },
            // Never "the previous one": it may be the bad one.
            Err(e) => return e,
        };
        let revision = to_revision.to_string();
        let [command, _] = argo_commands("undo", namespace, name, Some(&revision));
        let noted = match noted(journal, ARGO_PATCHING).await {
            Ok(notes) => notes
                .into_iter()
                .find_map(|n| n["replicaset"].as_str().map(str::to_owned)),
            Err(e) => return e,
        };
        let to = match &noted {
            Some(rs) => UndoTo::ReplicaSet(rs.clone()),
            None => UndoTo::Revision(to_revision),
        };
        let plan = match argo_ops::plan_undo(&self.client, namespace, name, &to).await {
            Ok(plan) => plan,
            Err(err) => return argo_error(err),
        };
        if plan.patch.is_some() && !dry_run {
            let note = json!({
                "replicaset": plan.replicaset,
                "revision": plan.revision,
                "command": command,
            });
            if let Err(why) = journal.note(ARGO_PATCHING, &note).await {
                return ExecOutcome::Retry(format!(
                    "cannot record the undo's target before patching: {why}"
                ));
            }
        }
        match argo_ops::send_undo(&self.client, namespace, name, plan, dry_run).await {
            Err(err) => argo_error(err),
            Ok(argo_ops::UndoOutcome::Patched {
                revision,
                replicaset,
                images,
                dry_run: true,
            }) => ExecOutcome::DryRun {
                result: json!({
                    "would_run": command, "revision": revision, "replicaset": replicaset,
                    "images": images, "server_dry_run": true,
                }),
            },
            Ok(argo_ops::UndoOutcome::Patched {
                revision,
                replicaset,
                images,
                ..
            }) => ExecOutcome::Done {
                result: json!({
                    "command": command, "revision": revision, "replicaset": replicaset,
                    "images": images,
                }),
                verify: true,
            },
            Ok(argo_ops::UndoOutcome::Skipped {
                revision,
                replicaset,
            }) => {
                let result = json!({
                    "command": command, "revision": revision, "replicaset": replicaset,
                    "already_at_revision": true,
                });
                if dry_run {
                    ExecOutcome::DryRun { result }
                } else {
                    ExecOutcome::Done {
                        result,
                        verify: true,
                    }
                }
            }
        }
    }
}

fn argo_error(err: ArgoError) -> ExecOutcome {
    match &err {
        ArgoError::ReplicaSetGone(_) => ExecOutcome::Escalate {
            error: err.to_string(),
            result: None,
        },
        _ if err.is_transient() => ExecOutcome::Retry(err.to_string()),
        _ => ExecOutcome::Failed(err.to_string()),
    }
}
