//! The Kubernetes rollout undo executor: looks at the Deployment first, journals the
//! ReplicaSet it is about to restore, and on resume recognises an undo that already
//! happened by the pod template, not by the revision number the undo changed.

use super::*;

/// `kubectl rollout undo` natively, then `kubectl rollout status`.
pub struct RolloutUndo {
    pub client: kube::Client,
    /// Longest wait for the rollout to settle.
    pub timeout: Duration,
    pub poll: Duration,
}

#[async_trait]
impl Executor for RolloutUndo {
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
        // The known-good revision known by its images only (a CI deploy): set them back.
        let images: Vec<String> = action
            .params
            .get("images")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if param(action, "kubernetes_revision").is_none() && !images.is_empty() {
            return self.revert_images(namespace, name, &images, dry_run).await;
        }
        // The known-good revision; without one, kubectl's "previous".
        let to_revision = match param(action, "kubernetes_revision") {
            None => 0,
            Some(r) => match r.parse::<i64>() {
                Ok(r) if r > 0 => r,
                _ => return ExecOutcome::Failed(format!("revision {r:?} is not a number")),
            },
        };
        let revision = (to_revision > 0).then(|| to_revision.to_string());
        let command = undo_command(namespace, name, revision.as_deref());
        // An earlier attempt that got as far as the PATCH named its ReplicaSet: the
        // rollback to it renumbered it (revision 2 of 3 becomes 4), and "previous" now
        // means the bad revision. So the target is that ReplicaSet, by identity.
        let noted = match noted(journal, PATCHING).await {
            Ok(notes) => notes
                .into_iter()
                .find_map(|note| serde_json::from_value::<UndoTarget>(note).ok()),
            Err(e) => return e,
        };
        let to = match &noted {
            Some(target) => UndoTo::ReplicaSet(target.clone()),
            None => UndoTo::revision(to_revision),
        };
        let plan = match undo::plan_rollout_undo(&self.client, namespace, name, &to).await {
            Ok(plan) => plan,
            Err(err) => return undo_error(err),
        };
        if let (UndoPlan::Patch { target, .. }, false) = (&plan, dry_run) {
            let mut note = json!(target);
            note["command"] = json!(command);
            if let Err(why) = journal.note(PATCHING, &note).await {
                return ExecOutcome::Retry(format!(
                    "cannot record the rollback's target before patching: {why}"
                ));
            }
        }
        // A dry run still asks the API server, which validates the patch and changes
        // nothing (`dryRun=All`).
        let outcome =
            match undo::send_rollout_undo(&self.client, namespace, name, plan, dry_run).await {
                Ok(outcome) => outcome,
                Err(err) => return undo_error(err),
            };
        let renumbered_from = noted.map(|n| n.revision);
        match outcome {
            UndoOutcome::RolledBack {
                dry_run: true,
                target,
                images,
            } => ExecOutcome::DryRun {
                result: json!({
                    "would_run": command,
                    "revision": target.revision,
                    "replicaset": target.replicaset,
                    "images": images,
                    "server_dry_run": true,
                }),
            },
            UndoOutcome::Skipped { target } if dry_run => ExecOutcome::DryRun {
                result: json!({
                    "would_run": command,
                    "revision": target.revision,
                    "replicaset": target.replicaset,
                    "already_at_revision": true,
                }),
            },
            UndoOutcome::Skipped { target } => {
                // The world already shows the rollback (a previous attempt of ours, or
                // a person): do not send it again, but still watch the rollout.
                let mut result = json!({
                    "command": command,
                    "revision": target.revision,
                    "replicaset": target.replicaset,
                    "already_at_revision": true,
                });
                if let Some(from) = renumbered_from.filter(|r| *r != target.revision) {
                    result["renumbered_from"] = json!(from);
                }
                self.follow(namespace, name, result).await
            }
            UndoOutcome::RolledBack { target, images, .. } => {
                self.follow(
                    namespace,
                    name,
                    json!({
                        "command": command,
                        "revision": target.revision,
                        "replicaset": target.replicaset,
                        "images": images,
                    }),
                )
                .await
            }
        }
    }
}

impl RolloutUndo {
    /// `kubectl set image` back to the known-good images, then the rollout status.
    async fn revert_images(
        &self,
        namespace: &str,
        name: &str,
        images: &[String],
        dry_run: bool,
    ) -> ExecOutcome {
        let command = format!(
            "kubectl -n {namespace} set image deployment/{name} (images: {})",
            images.join(" ")
        );
        match set_image::set_images(&self.client, namespace, name, images, dry_run).await {
            Err(err) if err.is_transient() => ExecOutcome::Retry(err.to_string()),
            Err(err) => ExecOutcome::Failed(err.to_string()),
            Ok(SetImageOutcome::Patched {
                set, dry_run: true, ..
            }) => ExecOutcome::DryRun {
                result: json!({ "would_run": command, "set": set, "server_dry_run": true }),
            },
            Ok(SetImageOutcome::Unchanged) if dry_run => ExecOutcome::DryRun {
                result: json!({ "would_run": command, "already_at_images": true }),
            },
            Ok(SetImageOutcome::Unchanged) => {
                self.follow(
                    namespace,
                    name,
                    json!({ "command": command, "images": images, "already_at_images": true }),
                )
                .await
            }
            Ok(SetImageOutcome::Patched { set, .. }) => {
                self.follow(
                    namespace,
                    name,
                    json!({ "command": command, "images": images, "set": set }),
                )
                .await
            }
        }
    }

    async fn follow(&self, namespace: &str, name: &str, mut result: Value) -> ExecOutcome {
        let status = match undo::rollout_status(
            &self.client,
            namespace,
            name,
            self.timeout,
            self.poll,
        )
        .await
        {
            Ok(status) => status,
            Err(err) => {
                result["rollout"] = json!("unknown");
                return ExecOutcome::Escalate {
                    error: format!("rolled back, but rollout status failed: {err}"),
                    result: Some(result),
                };
            }
        };
        match status {
            RolloutStatus::Complete => {
                result["rollout"] = json!("complete");
                ExecOutcome::Done {
                    result,
                    verify: true,
                }
            }
            RolloutStatus::Failed { message } => {
                result["rollout"] = json!("failed");
                ExecOutcome::Escalate {
                    error: message,
                    result: Some(result),
                }
            }
            RolloutStatus::TimedOut => {
                result["rollout"] = json!("timed_out");
                ExecOutcome::Escalate {
                    error: format!(
                        "the rollout did not complete within {} s",
                        self.timeout.as_secs()
                    ),
                    result: Some(result),
                }
            }
        }
    }
}

fn undo_error(err: UndoError) -> ExecOutcome {
    match &err {
        // What an earlier attempt restored is gone from under it: a person looks.
        UndoError::TargetGone { .. } => ExecOutcome::Escalate {
            error: err.to_string(),
            result: None,
        },
        UndoError::Kube { source, .. } => {
            let transient = match source {
                kube::Error::Api(status) => status.code >= 500 || status.code == 429,
                _ => true,
            };
            if transient {
                ExecOutcome::Retry(err.to_string())
            } else {
                ExecOutcome::Failed(err.to_string())
            }
        }
        _ => ExecOutcome::Failed(err.to_string()),
    }
}
