//! `kubectl rollout undo` and `kubectl rollout status` for Deployments, natively through
//! the API.
//!
//! The undo sends exactly the JSON patch kubectl sends (PROTOCOLS.md E.2), not a
//! server-side apply, so the Deployment controller reuses the old ReplicaSet and
//! `kubectl rollout history` stays truthful. [`undo_patch`] computes it without I/O;
//! [`plan_rollout_undo`] fetches and computes, [`send_rollout_undo`] patches (the
//! executor records the [`UndoTarget`] in between), [`rollout_undo`] does both;
//! [`rollout_status`] waits for the result.
//!
//! A rollback renumbers its target: the controller makes the reused ReplicaSet revision
//! max+1 (revision 2 of 3 becomes 4). So the target is also named by identity
//! ([`UndoTarget`]: ReplicaSet name, UID, template hash), and an undo to a revision the
//! controller renumbered finds it in the ReplicaSet's `revision-history`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use json_patch::jsonptr::Pointer;
use json_patch::{PatchOperation, ReplaceOperation};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::rollouts::{self, POD_TEMPLATE_HASH_LABEL};

/// Annotations a rollback never copies from a ReplicaSet and never removes from the
/// Deployment (kubectl's `annotationsToSkip`, the controller's copy exclusions).
pub const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    rollouts::REVISION_ANNOTATION,
    rollouts::REVISION_HISTORY_ANNOTATION,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The shortest poll interval [`rollout_status`] uses, whatever it is given.
pub const MIN_POLL: Duration = Duration::from_millis(10);

const DEPLOYMENTS: &str = "deployments.apps";
const REPLICASETS: &str = "replicasets.apps";

/// The ReplicaSet whose pod template an undo restores, named so that it is found again
/// whatever revision the controller gives it later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoTarget {
    /// Its name, `<deployment>-<pod-template-hash>`.
    pub replicaset: String,
    /// Its UID: a ReplicaSet deleted and created again under the same name is another.
    pub uid: String,
    /// Its `pod-template-hash` label.
    pub pod_template_hash: Option<String>,
    /// Its revision when it was looked up.
    pub revision: i64,
    /// sha256 of its pod template without the `pod-template-hash` label: what the
    /// Deployment runs once rolled back to it.
    pub template_sha256: String,
}

impl UndoTarget {
    /// The ReplicaSet as it is now.
    pub fn of(rs: &ReplicaSet) -> Self {
        identity(rs, &stripped_template(rs))
    }
}

/// Which ReplicaSet an undo restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UndoTo {
    /// kubectl's default: the owned ReplicaSet with the second-highest revision.
    Previous,
    /// `--to-revision=N`: the ReplicaSet of revision N or, when a rollback to it made
    /// the controller renumber it, the one whose `revision-history` lists N (kubectl
    /// refuses that one; it is the same template).
    Revision(i64),
    /// A ReplicaSet named before (what an interrupted attempt set out to restore),
    /// whatever its revision is now.
    ReplicaSet(UndoTarget),
}

impl UndoTo {
    /// kubectl's `--to-revision=N`: 0 is the previous revision.
    pub fn revision(to_revision: i64) -> Self {
        if to_revision == 0 {
            Self::Previous
        } else {
            Self::Revision(to_revision)
        }
    }
}

/// What undoing a Deployment to a ReplicaSet takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UndoPlan {
    /// The Deployment's template already is the target's: nothing to send.
    Skip {
        /// The ReplicaSet whose template is already in place.
        target: UndoTarget,
    },
    /// Send this JSON patch to the Deployment.
    Patch {
        /// The ReplicaSet rolled back to.
        target: UndoTarget,
        /// kubectl's two operations: replace `/spec/template`, then `/metadata/annotations`.
        patch: json_patch::Patch,
    },
}

impl UndoPlan {
    /// The ReplicaSet the plan restores.
    pub fn target(&self) -> &UndoTarget {
        match self {
            Self::Skip { target } | Self::Patch { target, .. } => target,
        }
    }
}

/// What [`rollout_undo`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UndoOutcome {
    /// The Deployment's template was set back to the target's (only validated by the
    /// API server when `dry_run`).
    RolledBack {
        /// The ReplicaSet rolled back to.
        target: UndoTarget,
        /// The container images of the restored template, in order.
        images: Vec<String>,
        /// Whether this was a server-side dry run that changed nothing.
        dry_run: bool,
    },
    /// The template already matched the target's; nothing was sent.
    Skipped {
        /// The ReplicaSet whose template is already in place.
        target: UndoTarget,
    },
}

impl fmt::Display for UndoOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RolledBack {
                target,
                images,
                dry_run,
            } => {
                write!(f, "rolled back to revision {}", target.revision)?;
                if !images.is_empty() {
                    write!(f, " ({})", images.join(", "))?;
                }
                if *dry_run {
                    f.write_str(" (server dry run)")?;
                }
                Ok(())
            }
            Self::Skipped { target } => write!(
                f,
                "skipped rollback (current template already matches revision {})",
                target.revision
            ),
        }
    }
}

/// Where a rollout ended up, as `kubectl rollout status` judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Every replica runs the current template and is available.
    Complete,
    /// The rollout exceeded its progress deadline (`ProgressDeadlineExceeded`).
    Failed {
        /// kubectl's error, followed by the Progressing condition's message.
        message: String,
    },
    /// Neither happened before our own deadline.
    TimedOut,
}

/// Why a rollback or a status check failed; the rollback messages are kubectl's.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    /// A negative revision, or one no ReplicaSet of the Deployment carries.
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(i64),
    /// "Previous" was asked for, but there is at most one revision.
    #[error("no rollout history found for deployment {name:?}")]
    NoHistory {
        /// The Deployment's name.
        name: String,
    },
    /// The ReplicaSet named before is gone, and the Deployment does not run its
    /// template.
    #[error(
        "replicaset {replicaset:?} (revision {revision} when the rollback began) is gone, and the deployment does not run its template"
    )]
    TargetGone {
        /// The ReplicaSet's name.
        replicaset: String,
        /// Its revision when it was named.
        revision: i64,
    },
    /// The Deployment is paused; the controller would not roll it back.
    #[error(
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
    )]
    Paused,
    /// The Deployment does not exist.
    #[error("deployment {name:?} not found in namespace {namespace}")]
    NotFound {
        /// The namespace looked in.
        namespace: String,
        /// The Deployment's name.
        name: String,
    },
    /// RBAC refused a request.
    #[error("rollwarden is not allowed to {verb} {resource} in namespace {namespace}: {message}")]
    Forbidden {
        /// The refused verb: `get`, `list` or `patch`.
        verb: &'static str,
        /// The resource, e.g. `deployments.apps`.
        resource: &'static str,
        /// The namespace of the request.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// Any other failed API request.
    #[error("cannot {verb} {resource} in namespace {namespace}: {source}")]
    Kube {
        /// The verb that failed.
        verb: &'static str,
        /// The resource, e.g. `deployments.apps`.
        resource: &'static str,
        /// The namespace of the request.
        namespace: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The ReplicaSet's pod template could not be turned into JSON.
    #[error("cannot encode the pod template of revision {revision}: {source}")]
    Encode {
        /// The revision being restored.
        revision: i64,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl UndoError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::RevisionNotFound(_) => "revision_not_found",
            Self::NoHistory { .. } => "no_history",
            Self::TargetGone { .. } => "target_gone",
            Self::Paused => "paused",
            Self::NotFound { .. } => "not_found",
            Self::Forbidden { .. } => "forbidden",
            Self::Kube { .. } => "api",
            Self::Encode { .. } => "encode",
        }
    }
}

/// The patch `kubectl rollout undo` would send to `deployment` (PROTOCOLS.md E.2), given
/// the ReplicaSets of its namespace, to restore the template of the ReplicaSet `to`
/// names.
pub fn undo_patch(
    deployment: &Deployment,
    replicasets: &[ReplicaSet],
    to: &UndoTo,
) -> Result<UndoPlan, UndoError> {
    let owned = rollouts::owned_replicasets(deployment, replicasets);
    let rs = match to {
        UndoTo::Previous => previous(deployment, &owned)?,
        UndoTo::Revision(revision) => by_revision(&owned, *revision)?,
        UndoTo::ReplicaSet(target) => match by_identity(&owned, target) {
            Some(rs) => rs,
            // The controller never deletes the ReplicaSet the Deployment runs, so the
            // rollback is done only if the gone one's template is in place.
            None if template_sha256(&current_template(deployment)?) == target.template_sha256 => {
                return Ok(UndoPlan::Skip {
                    target: target.clone(),
                });
            }
            None => {
                return Err(UndoError::TargetGone {
                    replicaset: target.replicaset.clone(),
                    revision: target.revision,
                });
            }
        },
    };
    // kubectl looks the revision up before it refuses a paused Deployment.
    let current = current_template(deployment)?;
    let template = stripped_template(rs);
    let target = identity(rs, &template);
    // kubectl compares with apimachinery's semantic equality; the API server returns
    // both templates in the same canonical form (quantities, omitted empties), so
    // structural equality after removing the hash label agrees with it.
    if template == current {
        return Ok(UndoPlan::Skip { target });
    }

    let annotations = rollback_annotations(deployment, rs);
    // Go's encoding of the template may also carry `"creationTimestamp": null` in its
    // metadata; the API server ignores it, so leaving it out changes nothing.
    let template = serde_json::to_value(&template).map_err(|source| UndoError::Encode {
        revision: target.revision,
        source,
    })?;
    let patch = json_patch::Patch(vec![
        replace("/spec/template", template),
        replace("/metadata/annotations", annotations),
    ]);
    Ok(UndoPlan::Patch { target, patch })
}

/// `kubectl rollout undo deployment/NAME -n NAMESPACE [--to-revision=N]
/// [--dry-run=server]`: [`plan_rollout_undo`], then [`send_rollout_undo`].
pub async fn rollout_undo(
    client: &Client,
    namespace: &str,
    name: &str,
    to: &UndoTo,
    dry_run: bool,
) -> Result<UndoOutcome, UndoError> {
    let plan = plan_rollout_undo(client, namespace, name, to).await?;
    send_rollout_undo(client, namespace, name, plan, dry_run).await
}

/// GETs the Deployment, LISTs its ReplicaSets by its selector, and computes
/// [`undo_patch`]'s plan.
#[tracing::instrument(skip_all, fields(%namespace, %name, ?to))]
pub async fn plan_rollout_undo(
    client: &Client,
    namespace: &str,
    name: &str,
    to: &UndoTo,
) -> Result<UndoPlan, UndoError> {
    if let UndoTo::Revision(revision) = to
        && *revision < 0
    {
        return Err(UndoError::RevisionNotFound(*revision));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments
        .get(name)
        .await
        .map_err(|err| api_error(err, "get", DEPLOYMENTS, namespace, name))?;

    let selector = deployment
        .spec
        .as_ref()
        .map(|spec| selector_query(&spec.selector))
        .unwrap_or_default();
    let mut params = ListParams::default();
    if !selector.is_empty() {
        params = params.labels(&selector);
    }
    let replicasets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(|err| api_error(err, "list", REPLICASETS, namespace, name))?;
    undo_patch(&deployment, &replicasets.items, to)
}

/// Carries `plan` out: PATCHes the Deployment with its JSON patch (`dryRun=All` when
/// `dry_run`), or sends nothing when the template already matches.
#[tracing::instrument(skip_all, fields(%namespace, %name, dry_run = dry_run))]
pub async fn send_rollout_undo(
    client: &Client,
    namespace: &str,
    name: &str,
    plan: UndoPlan,
    dry_run: bool,
) -> Result<UndoOutcome, UndoError> {
    match plan {
        UndoPlan::Skip { target } => {
            tracing::info!(revision = target.revision, replicaset = %target.replicaset, "rollout undo skipped: template already matches");
            Ok(UndoOutcome::Skipped { target })
        }
        UndoPlan::Patch { target, patch } => {
            let images = template_images(&patch);
            let params = PatchParams {
                dry_run,
                ..PatchParams::default()
            };
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .patch(name, &params, &Patch::Json::<()>(patch))
                .await
                .map_err(|err| api_error(err, "patch", DEPLOYMENTS, namespace, name))?;
            tracing::info!(revision = target.revision, replicaset = %target.replicaset, ?images, dry_run, "rolled back");
            Ok(UndoOutcome::RolledBack {
                target,
                images,
                dry_run,
            })
        }
    }
}

/// `kubectl rollout status deployment/NAME --timeout=DEADLINE`, by polling: GETs the
/// Deployment every `poll` (at least [`MIN_POLL`]) until its rollout is complete or
/// failed, or `deadline` has passed. A slow request counts against the deadline too.
#[tracing::instrument(skip_all, fields(%namespace, %name))]
pub async fn rollout_status(
    client: &Client,
    namespace: &str,
    name: &str,
    deadline: Duration,
    poll: Duration,
) -> Result<RolloutStatus, UndoError> {
    let poll = poll.max(MIN_POLL);
    let until = Instant::now() + deadline;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    loop {
        let Ok(fetched) = tokio::time::timeout_at(until, deployments.get(name)).await else {
            return Ok(RolloutStatus::TimedOut);
        };
        let deployment =
            fetched.map_err(|err| api_error(err, "get", DEPLOYMENTS, namespace, name))?;
        if let Some(status) = settled(&deployment, name) {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(RolloutStatus::TimedOut);
        }
        tokio::time::sleep_until((now + poll).min(until)).await;
        if Instant::now() >= until {
            return Ok(RolloutStatus::TimedOut);
        }
    }
}

/// The final status of the rollout, or `None` while it is still going.
fn settled(deployment: &Deployment, name: &str) -> Option<RolloutStatus> {
    if rollouts::rollout_complete(deployment) {
        return Some(RolloutStatus::Complete);
    }
    let observed = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    // Like kubectl, a deadline is only believed once the controller has seen the
    // current spec: right after an undo the status still describes the failed rollout.
    if observed < deployment.metadata.generation.unwrap_or(0)
        || !rollouts::rollout_failed(deployment)
    {
        return None;
    }
    let mut message = format!("deployment {name:?} exceeded its progress deadline");
    let condition = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Progressing"))
        .and_then(|c| c.message.as_deref())
        .filter(|m| !m.is_empty());
    if let Some(condition) = condition {
        message.push_str(": ");
        message.push_str(condition);
    }
    Some(RolloutStatus::Failed { message })
}

/// The owned ReplicaSet of the previous revision, chosen as kubectl's
/// `deploymentRevision` does (same scan, same tie-breaking).
fn previous<'a>(
    deployment: &Deployment,
    owned: &[&'a ReplicaSet],
) -> Result<&'a ReplicaSet, UndoError> {
    // kubectl starts both at -1, so a ReplicaSet with a negative revision never counts.
    let (mut latest, mut latest_rs) = (-1, None);
    let (mut previous, mut previous_rs) = (-1, None);
    for &rs in owned {
        let revision = rollouts::revision(rs);
        if latest < revision {
            (previous, previous_rs) = (latest, latest_rs);
            (latest, latest_rs) = (revision, Some(rs));
        } else if previous < revision {
            (previous, previous_rs) = (revision, Some(rs));
        }
    }
    previous_rs.ok_or_else(|| UndoError::NoHistory {
        name: deployment.metadata.name.clone().unwrap_or_default(),
    })
}

/// The owned ReplicaSet of `revision`; failing that, the one the controller renumbered
/// away from it on a rollback (it appends the old number to `revision-history`, and
/// revisions are never given twice).
fn by_revision<'a>(owned: &[&'a ReplicaSet], revision: i64) -> Result<&'a ReplicaSet, UndoError> {
    let renumbered = |rs: &ReplicaSet| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(rollouts::REVISION_HISTORY_ANNOTATION))
            .is_some_and(|history| {
                history
                    .split(',')
                    .any(|r| r.trim().parse::<i64>() == Ok(revision))
            })
    };
    if revision < 0 {
        return Err(UndoError::RevisionNotFound(revision));
    }
    owned
        .iter()
        .find(|rs| rollouts::revision(rs) == revision)
        .or_else(|| owned.iter().find(|rs| renumbered(rs)))
        .copied()
        .ok_or(UndoError::RevisionNotFound(revision))
}

/// The owned ReplicaSet `target` names: by UID, or by name with the same template.
fn by_identity<'a>(owned: &[&'a ReplicaSet], target: &UndoTarget) -> Option<&'a ReplicaSet> {
    owned
        .iter()
        .find(|rs| rs.metadata.uid.as_deref() == Some(target.uid.as_str()))
        .or_else(|| {
            owned.iter().find(|rs| {
                rs.metadata.name.as_deref() == Some(target.replicaset.as_str())
                    && UndoTarget::of(rs).template_sha256 == target.template_sha256
            })
        })
        .copied()
}

/// `rs` as an [`UndoTarget`]; `template` is its pod template without the hash label.
fn identity(rs: &ReplicaSet, template: &PodTemplateSpec) -> UndoTarget {
    UndoTarget {
        replicaset: rs.metadata.name.clone().unwrap_or_default(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        pod_template_hash: rs
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            .cloned(),
        revision: rollouts::revision(rs),
        template_sha256: template_sha256(template),
    }
}

/// The Deployment's pod template without the hash label; a paused Deployment is
/// refused, as the controller would not roll it back.
fn current_template(deployment: &Deployment) -> Result<PodTemplateSpec, UndoError> {
    let no_spec = DeploymentSpec::default();
    let spec = deployment.spec.as_ref().unwrap_or(&no_spec);
    if spec.paused == Some(true) {
        return Err(UndoError::Paused);
    }
    let mut current = spec.template.clone();
    strip_hash_label(&mut current);
    Ok(current)
}

/// The ReplicaSet's pod template without the hash label.
fn stripped_template(rs: &ReplicaSet) -> PodTemplateSpec {
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    strip_hash_label(&mut template);
    template
}

/// sha256 of a pod template's JSON (k8s-openapi writes fields in a fixed order and
/// maps sorted, so equal templates give equal digests).
fn template_sha256(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// The Deployment's annotations after the rollback: its own ones from the skip list,
/// plus every ReplicaSet annotation that is not on it.
fn rollback_annotations(deployment: &Deployment, target: &ReplicaSet) -> Value {
    let no_annotations = BTreeMap::new();
    let own = deployment
        .metadata
        .annotations
        .as_ref()
        .unwrap_or(&no_annotations);
    let restored = target
        .metadata
        .annotations
        .as_ref()
        .unwrap_or(&no_annotations);
    let mut annotations = serde_json::Map::new();
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(value) = own.get(key) {
            annotations.insert(key.to_owned(), value.clone().into());
        }
    }
    for (key, value) in restored {
        if !ANNOTATIONS_TO_SKIP.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone().into());
        }
    }
    Value::Object(annotations)
}

/// Removes the `pod-template-hash` label; labels left empty are dropped, as Go's
/// `omitempty` drops them.
fn strip_hash_label(template: &mut PodTemplateSpec) {
    strip_label(template, POD_TEMPLATE_HASH_LABEL);
}

/// Removes a controller's hash label (`pod-template-hash`, Argo's
/// `rollouts-pod-template-hash`); labels left empty are dropped, as Go's `omitempty`
/// drops them.
pub(super) fn strip_label(template: &mut PodTemplateSpec, label: &str) {
    let Some(meta) = template.metadata.as_mut() else {
        return;
    };
    if let Some(labels) = meta.labels.as_mut() {
        labels.remove(label);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
}

fn replace(path: &'static str, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: Pointer::from_static(path).to_buf(),
        value,
    })
}

/// The container images of the template a patch restores.
fn template_images(patch: &json_patch::Patch) -> Vec<String> {
    patch
        .0
        .iter()
        .find_map(|op| match op {
            PatchOperation::Replace(op) if op.path.as_str() == "/spec/template" => {
                op.value.pointer("/spec/containers")?.as_array()
            }
            _ => None,
        })
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("image")?.as_str().map(str::to_owned))
        .collect()
}

/// The label selector as a `labelSelector` query, as `metav1.LabelSelectorAsSelector`
/// prints it. An expression with an unknown operator is left out: the server then lists
/// more, and [`rollouts::owned_replicasets`] matches nothing against it.
pub(super) fn selector_query(selector: &LabelSelector) -> String {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let values = || req.values.as_deref().unwrap_or_default().join(",");
        let key = &req.key;
        match req.operator.as_str() {
            "In" => terms.push(format!("{key} in ({})", values())),
            "NotIn" => terms.push(format!("{key} notin ({})", values())),
            "Exists" => terms.push(key.clone()),
            "DoesNotExist" => terms.push(format!("!{key}")),
            _ => {}
        }
    }
    terms.join(",")
}

/// Maps a client error to ours: RBAC refusals name the verb and resource, a missing
/// Deployment names itself.
fn api_error(
    err: kube::Error,
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
    name: &str,
) -> UndoError {
    match &err {
        kube::Error::Api(status) if status.code == 403 => UndoError::Forbidden {
            verb,
            resource,
            namespace: namespace.to_owned(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 404 && resource == DEPLOYMENTS => {
            UndoError::NotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }
        }
        _ => UndoError::Kube {
            verb,
            resource,
            namespace: namespace.to_owned(),
            source: err,
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};
    use serde_json::json;

    use super::*;

    use crate::k8s::fixtures::deployment_with_replicasets as fixture;

    fn annotate(meta: &mut ObjectMeta, key: &str, value: &str) {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    fn patch_of(plan: UndoPlan) -> (i64, Value) {
        match plan {
            UndoPlan::Patch { target, patch } => {
                (target.revision, serde_json::to_value(patch).unwrap())
            }
            UndoPlan::Skip { target } => panic!("expected a patch, got a skip of {target:?}"),
        }
    }

    fn error_of(result: Result<UndoPlan, UndoError>) -> String {
        match result {
            Err(err) => err.to_string(),
            Ok(plan) => panic!("expected an error, got {plan:?}"),
        }
    }

    /// The fixture's pod template at `version`, without the pod-template-hash label.
    fn template(version: &str) -> Value {
        json!({
            "metadata": {
                "labels": {
                    "app.kubernetes.io/instance": "checkout",
                    "app.kubernetes.io/name": "checkout"
                }
            },
            "spec": {
                "containers": [{
                    "image": format!("registry.example.com/shop/checkout:{version}"),
                    "imagePullPolicy": "IfNotPresent",
                    "name": "checkout",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "readinessProbe": {
                        "failureThreshold": 3,
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "timeoutSeconds": 1
                    },
                    "resources": {
                        "limits": {"memory": "256Mi"},
                        "requests": {"cpu": "100m", "memory": "128Mi"}
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30
            }
        })
    }

    #[test]
    fn undoing_revision_3_restores_revision_2_with_kubectls_patch() {
        let (mut deployment, replicasets) = fixture();
        annotate(
            &mut deployment.metadata,
            "example.com/on-call",
            "team-payments",
        );
        let (revision, patch) =
            patch_of(undo_patch(&deployment, &replicasets, &UndoTo::Previous).unwrap());
        assert_eq!(revision, 2);
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/spec/template", "value": template("1.5.0")},
                {"op": "replace", "path": "/metadata/annotations", "value": {
                    "deployment.kubernetes.io/revision": "3",
                    "kubernetes.io/change-cause": "release 1.5.0 (pipeline 2178)",
                    "meta.helm.sh/release-name": "checkout",
                    "meta.helm.sh/release-namespace": "prod"
                }}
            ])
        );
    }

    #[test]
    fn an_explicit_revision_restores_that_revision() {
        let (deployment, replicasets) = fixture();
        let (revision, patch) =
            patch_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(1)).unwrap());
        assert_eq!(revision, 1);
        assert_eq!(patch[0]["value"], template("1.4.0"));
        assert_eq!(
            patch[1]["value"],
            json!({
                "deployment.kubernetes.io/revision": "3",
                "kubernetes.io/change-cause": "release 1.4.0 (pipeline 2101)",
                "meta.helm.sh/release-name": "checkout",
                "meta.helm.sh/release-namespace": "prod"
            })
        );
    }

    #[test]
    fn skip_list_annotations_stay_with_the_deployment_and_are_not_copied_from_the_replicaset() {
        let (mut deployment, mut replicasets) = fixture();
        let meta = &mut deployment.metadata;
        annotate(
            meta,
            "kubectl.kubernetes.io/last-applied-configuration",
            "{}",
        );
        annotate(meta, "deployment.kubernetes.io/revision-history", "1");
        annotate(meta, "meta.helm.sh/release-name", "checkout-renamed");
        let rs = &mut replicasets[1].metadata;
        annotate(rs, "deprecated.deployment.rollback.to", "1");
        annotate(
            rs,
            "kubectl.kubernetes.io/last-applied-configuration",
            "{\"old\":1}",
        );
        let (_, patch) =
            patch_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(2)).unwrap());
        assert_eq!(
            patch[1]["value"],
            json!({
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "deployment.kubernetes.io/revision": "3",
                "deployment.kubernetes.io/revision-history": "1",
                "kubernetes.io/change-cause": "release 1.5.0 (pipeline 2178)",
                "meta.helm.sh/release-name": "checkout",
                "meta.helm.sh/release-namespace": "prod"
            })
        );
    }

    #[test]
    fn a_deployment_and_replicaset_without_annotations_get_an_empty_map() {
        let (mut deployment, mut replicasets) = fixture();
        deployment.metadata.annotations = None;
        // Without the revision annotation the ReplicaSet is revision 0, still a revision.
        replicasets[1].metadata.annotations = None;
        let (revision, patch) =
            patch_of(undo_patch(&deployment, &replicasets[1..], &UndoTo::Previous).unwrap());
        assert_eq!(revision, 0);
        assert_eq!(
            patch[1],
            json!({"op": "replace", "path": "/metadata/annotations", "value": {}})
        );
    }

    #[test]
    fn a_revision_that_does_not_exist_is_refused() {
        let (deployment, replicasets) = fixture();
        assert_eq!(
            error_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(7))),
            "unable to find specified revision 7 in history"
        );
    }

    #[test]
    fn a_revision_of_another_deployment_is_not_history() {
        let (deployment, mut replicasets) = fixture();
        let mut foreign = replicasets[0].clone();
        annotate(&mut foreign.metadata, rollouts::REVISION_ANNOTATION, "9");
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid =
            "00000000-0000-0000-0000-000000000000".into();
        replicasets.push(foreign);
        assert_eq!(
            error_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(9))),
            "unable to find specified revision 9 in history"
        );
    }

    #[test]
    fn previous_needs_a_second_revision() {
        let (deployment, replicasets) = fixture();
        for history in [&replicasets[2..], &[]] {
            assert_eq!(
                error_of(undo_patch(&deployment, history, &UndoTo::Previous)),
                "no rollout history found for deployment \"checkout\""
            );
        }
    }

    #[test]
    fn previous_is_the_second_highest_revision_in_any_order() {
        let (mut deployment, mut replicasets) = fixture();
        // The Deployment now runs revision 10, a redeploy of 1.4.0.
        let mut newest = replicasets[0].clone();
        newest.metadata.name = Some("checkout-5d8f7b9c4".into());
        annotate(&mut newest.metadata, rollouts::REVISION_ANNOTATION, "10");
        deployment.spec.as_mut().unwrap().template =
            newest.spec.as_ref().unwrap().template.clone().unwrap();
        replicasets.reverse();
        replicasets.insert(1, newest);
        let (revision, patch) =
            patch_of(undo_patch(&deployment, &replicasets, &UndoTo::Previous).unwrap());
        assert_eq!(revision, 3);
        assert_eq!(patch[0]["value"], template("1.6.0"));
    }

    #[test]
    fn a_paused_deployment_is_not_rolled_back() {
        let (mut deployment, replicasets) = fixture();
        deployment.spec.as_mut().unwrap().paused = Some(true);
        assert_eq!(
            error_of(undo_patch(&deployment, &replicasets, &UndoTo::Previous)),
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
        );
        // kubectl looks the revision up first.
        assert_eq!(
            error_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(7))),
            "unable to find specified revision 7 in history"
        );
    }

    #[test]
    fn a_negative_revision_is_refused() {
        let (deployment, replicasets) = fixture();
        let err = undo_patch(&deployment, &replicasets, &UndoTo::Revision(-1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find specified revision -1 in history"
        );
        assert_eq!(err.metric_label(), "revision_not_found");
    }

    #[test]
    fn the_revision_already_running_is_skipped() {
        let (deployment, replicasets) = fixture();
        let target = skipped(undo_patch(&deployment, &replicasets, &UndoTo::Revision(3)));
        assert_eq!(target.revision, 3);
        assert_eq!(target.replicaset, "checkout-69c9cdb879");
    }

    #[test]
    fn a_previous_revision_with_the_current_template_is_skipped_ignoring_the_hash() {
        let (mut deployment, mut replicasets) = fixture();
        let current = replicasets[2].spec.as_ref().unwrap().template.clone();
        let spec = replicasets[1].spec.as_mut().unwrap();
        spec.template = current;
        let labels = spec.template.as_mut().unwrap().metadata.as_mut().unwrap();
        labels
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "7c67857fd".into());
        let target = skipped(undo_patch(&deployment, &replicasets, &UndoTo::Previous));
        assert_eq!(target.revision, 2);
        // Any other difference is a rollback.
        deployment
            .spec
            .as_mut()
            .unwrap()
            .template
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "web".into());
        let (revision, _) =
            patch_of(undo_patch(&deployment, &replicasets, &UndoTo::Previous).unwrap());
        assert_eq!(revision, 2);
    }

    /// The fixture after an undo of revision 3 to revision 2 that the controller has
    /// synced: revision 2's ReplicaSet is revision 4 and remembers "2".
    fn renumbered() -> (Deployment, Vec<ReplicaSet>) {
        let (mut deployment, mut replicasets) = fixture();
        let rs = &mut replicasets[1];
        annotate(&mut rs.metadata, rollouts::REVISION_ANNOTATION, "4");
        annotate(&mut rs.metadata, rollouts::REVISION_HISTORY_ANNOTATION, "2");
        let mut template = rs.spec.as_ref().unwrap().template.clone().unwrap();
        strip_hash_label(&mut template);
        deployment.spec.as_mut().unwrap().template = template;
        annotate(&mut deployment.metadata, rollouts::REVISION_ANNOTATION, "4");
        (deployment, replicasets)
    }

    fn skipped(plan: Result<UndoPlan, UndoError>) -> UndoTarget {
        match plan {
            Ok(UndoPlan::Skip { target }) => target,
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn a_target_is_named_by_its_replicaset_and_template_not_only_its_revision() {
        let (deployment, replicasets) = fixture();
        let plan = undo_patch(&deployment, &replicasets, &UndoTo::Revision(2)).unwrap();
        let target = plan.target();
        assert_eq!(target.replicaset, "checkout-7c67857fd");
        assert_eq!(target.pod_template_hash.as_deref(), Some("7c67857fd"));
        assert_eq!(target.revision, 2);
        assert_eq!(
            Some(target.uid.as_str()),
            replicasets[1].metadata.uid.as_deref()
        );
        // The fingerprint is the template's without the hash label: the Deployment's
        // once rolled back.
        let (rolled_back, _) = renumbered();
        assert_eq!(
            target.template_sha256,
            template_sha256(&current_template(&rolled_back).unwrap())
        );
        assert_ne!(
            target.template_sha256,
            template_sha256(&current_template(&deployment).unwrap())
        );
    }

    #[test]
    fn a_revision_the_controller_renumbered_is_found_in_its_history() {
        // Revision 2 was rolled back to (it is revision 4 now): the undo to 2 is done.
        let (deployment, replicasets) = renumbered();
        let target = skipped(undo_patch(&deployment, &replicasets, &UndoTo::Revision(2)));
        assert_eq!(
            (target.replicaset.as_str(), target.revision),
            ("checkout-7c67857fd", 4)
        );
        // From any other template, it is restored.
        let (fresh, _) = fixture();
        let (revision, patch) =
            patch_of(undo_patch(&fresh, &replicasets, &UndoTo::Revision(2)).unwrap());
        assert_eq!(revision, 4);
        assert_eq!(patch[0]["value"], template("1.5.0"));
        // A revision never given is still not history.
        assert_eq!(
            error_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(5))),
            "unable to find specified revision 5 in history"
        );
    }

    #[test]
    fn a_named_replicaset_is_found_whatever_its_revision_now() {
        let (deployment, replicasets) = fixture();
        let plan = undo_patch(&deployment, &replicasets, &UndoTo::Previous).unwrap();
        let to = UndoTo::ReplicaSet(plan.target().clone());
        let (rolled_back, mut after) = renumbered();
        after[1]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(rollouts::REVISION_HISTORY_ANNOTATION);
        let target = skipped(undo_patch(&rolled_back, &after, &to));
        assert_eq!(
            (target.replicaset.as_str(), target.revision),
            ("checkout-7c67857fd", 4)
        );
        // "Previous" now means revision 3, the bad one: an undo that resumed by it
        // would roll forward again.
        let (revision, patch) =
            patch_of(undo_patch(&rolled_back, &after, &UndoTo::Previous).unwrap());
        assert_eq!(revision, 3);
        assert_eq!(patch[0]["value"], template("1.6.0"));
        // Not yet rolled back: the named ReplicaSet's template is restored.
        let (revision, patch) = patch_of(undo_patch(&deployment, &after, &to).unwrap());
        assert_eq!(revision, 4);
        assert_eq!(patch[0]["value"], template("1.5.0"));
    }

    #[test]
    fn a_named_replicaset_that_is_gone_is_done_only_if_its_template_runs() {
        let (deployment, replicasets) = fixture();
        let plan = undo_patch(&deployment, &replicasets, &UndoTo::Revision(2)).unwrap();
        let to = UndoTo::ReplicaSet(plan.target().clone());
        let (rolled_back, mut after) = renumbered();
        after.remove(1);
        assert_eq!(
            &skipped(undo_patch(&rolled_back, &after, &to)),
            plan.target()
        );
        let err = undo_patch(&deployment, &after, &to).unwrap_err();
        assert_eq!(
            err.to_string(),
            "replicaset \"checkout-7c67857fd\" (revision 2 when the rollback began) is gone, \
             and the deployment does not run its template"
        );
        assert_eq!(err.metric_label(), "target_gone");
    }

    #[test]
    fn a_template_with_only_the_hash_label_is_sent_without_labels() {
        let (deployment, mut replicasets) = fixture();
        let meta = replicasets[1]
            .spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .metadata
            .as_mut()
            .unwrap();
        meta.labels
            .as_mut()
            .unwrap()
            .retain(|key, _| key == POD_TEMPLATE_HASH_LABEL);
        let (_, patch) =
            patch_of(undo_patch(&deployment, &replicasets, &UndoTo::Revision(2)).unwrap());
        assert_eq!(patch[0]["value"]["metadata"], json!({}));
    }

    #[test]
    fn the_images_come_from_the_restored_template() {
        let (deployment, replicasets) = fixture();
        let UndoPlan::Patch { patch, .. } =
            undo_patch(&deployment, &replicasets, &UndoTo::Revision(1)).unwrap()
        else {
            panic!("expected a patch");
        };
        assert_eq!(
            template_images(&patch),
            ["registry.example.com/shop/checkout:1.4.0"]
        );
    }

    #[test]
    fn selectors_become_label_queries() {
        let requirement = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([
                ("app".to_owned(), "checkout".to_owned()),
                ("team".to_owned(), "shop".to_owned()),
            ])),
            match_expressions: Some(vec![
                requirement("tier", "In", &["web", "api"]),
                requirement("track", "NotIn", &["canary"]),
                requirement("owner", "Exists", &[]),
                requirement("legacy", "DoesNotExist", &[]),
                requirement("odd", "Matches", &["x"]),
            ]),
        };
        assert_eq!(
            selector_query(&selector),
            "app=checkout,team=shop,tier in (web,api),track notin (canary),owner,!legacy"
        );
        assert_eq!(selector_query(&LabelSelector::default()), "");
    }

    #[test]
    fn outcomes_read_like_kubectl() {
        let (deployment, replicasets) = fixture();
        let target = |revision| {
            undo_patch(&deployment, &replicasets, &UndoTo::Revision(revision))
                .unwrap()
                .target()
                .clone()
        };
        let rolled_back = UndoOutcome::RolledBack {
            target: target(2),
            images: vec!["registry.example.com/shop/checkout:1.5.0".into()],
            dry_run: true,
        };
        assert_eq!(
            rolled_back.to_string(),
            "rolled back to revision 2 (registry.example.com/shop/checkout:1.5.0) (server dry run)"
        );
        assert_eq!(
            UndoOutcome::Skipped { target: target(3) }.to_string(),
            "skipped rollback (current template already matches revision 3)"
        );
    }

    #[test]
    fn a_deadline_is_only_believed_once_the_spec_is_observed() {
        let (mut deployment, _) = fixture();
        let status = deployment.status.as_mut().unwrap();
        status.updated_replicas = Some(1);
        let progressing = status
            .conditions
            .as_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c.type_ == "Progressing")
            .unwrap();
        progressing.reason = Some("ProgressDeadlineExceeded".into());
        progressing.status = "False".into();
        progressing.message =
            Some("ReplicaSet \"checkout-69c9cdb879\" has timed out progressing.".into());
        assert_eq!(
            settled(&deployment, "checkout"),
            Some(RolloutStatus::Failed {
                message: "deployment \"checkout\" exceeded its progress deadline: ReplicaSet \"checkout-69c9cdb879\" has timed out progressing.".into()
            })
        );
        deployment.metadata.generation = Some(4);
        assert_eq!(settled(&deployment, "checkout"), None);
    }
}
