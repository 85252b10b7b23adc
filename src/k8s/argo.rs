//! Argo Rollouts as deploy history: a Rollout's ReplicaSet revisions, which one is
//! stable and which is the canary, and aborts, mapped to `argo` deploys of a target of
//! kind `Rollout` (PROTOCOLS.md C.3, H.3, H.4).
//!
//! The Rollout is read through its own small type (only the fields rollwarden uses;
//! serde ignores the rest), so no CRD schema or code generation is needed.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::rollouts::{
    ReplicaSetRevision, annotation, controller_uid, label, replicaset_deploy, selector_matches,
    to_chrono,
};
use crate::domain::deploy::status;
use crate::domain::{Deploy, DeploySource, TargetRef};

pub const GROUP: &str = "argoproj.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Rollout";
pub const PLURAL: &str = "rollouts";
/// The revision the Argo Rollouts controller gives a ReplicaSet.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// Earlier revisions of a ReplicaSet reused by an undo, as a comma list.
pub const REVISION_HISTORY_ANNOTATION: &str = "rollout.argoproj.io/revision-history";
/// The label the controller adds to tell a Rollout's ReplicaSets apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";

/// An `argoproj.io/v1alpha1` Rollout: the fields rollwarden reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RolloutSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RolloutStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    /// `{apiVersion, kind, name}` of a workload whose template the Rollout uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default)]
    pub abort: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Hash of the current `spec.template`: the desired (canary) ReplicaSet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// A pod-template hash, not a ReplicaSet name (H.3).
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    /// `Healthy`, `Progressing`, `Paused` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

impl kube::Resource for Rollout {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Rollout {
    /// Whether a canary is in progress: the desired template is not the stable one.
    pub fn canary_in_progress(&self) -> bool {
        let Some(st) = &self.status else { return false };
        match (non_empty(&st.current_pod_hash), non_empty(&st.stable_rs)) {
            (Some(current), Some(stable)) => current != stable,
            _ => false,
        }
    }

    fn aborted(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.abort)
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The ReplicaSets that belong to `rollout`, as `kubectl argo rollouts undo` finds
/// them (H.2): same namespace, labels matched by the Rollout's selector, controlled by
/// the Rollout's UID.
pub fn owned_replicasets<'a>(
    rollout: &Rollout,
    replicasets: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Vec<&'a ReplicaSet> {
    let Some(uid) = rollout.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    let Some(selector) = &rollout.spec.selector else {
        return Vec::new();
    };
    let no_labels = BTreeMap::new();
    replicasets
        .into_iter()
        .filter(|rs| {
            rs.metadata.namespace == rollout.metadata.namespace
                && selector_matches(selector, rs.metadata.labels.as_ref().unwrap_or(&no_labels))
                && controller_uid(&rs.metadata) == Some(uid)
        })
        .collect()
}

/// A ReplicaSet's Argo revision (H.2: missing → 0, unparsable → not a revision).
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(&rs.metadata, REVISION_ANNOTATION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// What a ReplicaSet is to its Rollout right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serving as the stable version (`status.stableRS`).
    Stable,
    /// The desired version while a canary runs (`status.currentPodHash`).
    Canary,
    /// Neither.
    Old,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Canary => "canary",
            Role::Old => "old",
        }
    }
}

/// One `argo` deploy per revision of `rollout`, newest first. `now` stands in for
/// times Kubernetes does not record.
///
/// Statuses: the canary of a run in progress is `progressing`; an aborted one is
/// `failed` (its `details.aborted` says why); the stable revision is `deployed`, and
/// so is a fully promoted current one; the rest are `superseded`.
pub fn deploys_for(
    rollout: &Rollout,
    replicasets: &[ReplicaSet],
    cluster: &str,
    now: DateTime<Utc>,
) -> Vec<Deploy> {
    let mut revisions: Vec<(i64, &ReplicaSet)> = owned_replicasets(rollout, replicasets)
        .into_iter()
        .filter_map(|rs| Some((revision(rs)?, rs)))
        .filter(|(rev, _)| *rev > 0)
        .collect();
    revisions.sort_by(|(a, a_rs), (b, b_rs)| {
        b.cmp(a)
            .then_with(|| a_rs.metadata.name.cmp(&b_rs.metadata.name))
    });
    let st = rollout.status.clone().unwrap_or_default();
    let current_hash = non_empty(&st.current_pod_hash).map(str::to_owned);
    let stable_hash = non_empty(&st.stable_rs).map(str::to_owned);
    let aborted = rollout.aborted();
    let degraded = st.phase.as_deref() == Some("Degraded");
    let completed_at = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Completed" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .and_then(to_chrono);

    let meta = &rollout.metadata;
    let target = TargetRef::new(
        cluster,
        meta.namespace.as_deref().unwrap_or(""),
        KIND,
        meta.name.as_deref().unwrap_or(""),
    );
    // Before the controller has written a status, the newest revision is the one rolling out.
    let newest = revisions.first().map(|(rev, _)| *rev);
    // The watch can show a new ReplicaSet before the Rollout's status names it: a revision
    // newer than the status's current one is the one rolling out (an undo renumbers the
    // ReplicaSet it reuses, so the newest revision is always the controller's next state).
    let status_current_rev = current_hash.as_deref().and_then(|current| {
        revisions
            .iter()
            .find(|(_, rs)| label(&rs.metadata, POD_TEMPLATE_HASH_LABEL) == Some(current))
            .map(|(rev, _)| *rev)
    });
    let ahead = matches!((newest, status_current_rev), (Some(n), Some(k)) if n > k);
    // The status (abort, phase) is about the revision it names, not the newer one.
    let current_hash = if ahead { None } else { current_hash };
    let (aborted, degraded) = if ahead {
        (false, false)
    } else {
        (aborted, degraded)
    };

    revisions
        .into_iter()
        .map(|(rev, rs)| {
            let hash = label(&rs.metadata, POD_TEMPLATE_HASH_LABEL).filter(|h| !h.is_empty());
            let is_current = match &current_hash {
                Some(current) => hash == Some(current.as_str()),
                None => Some(rev) == newest,
            };
            let is_stable = stable_hash.is_some() && hash == stable_hash.as_deref();
            let role = if is_current && !is_stable {
                Role::Canary
            } else if is_stable {
                Role::Stable
            } else {
                Role::Old
            };
            let rev_status = match role {
                Role::Canary if aborted || degraded => status::FAILED,
                Role::Canary => status::PROGRESSING,
                Role::Stable if is_current && degraded => status::FAILED,
                Role::Stable => status::DEPLOYED,
                Role::Old if is_current && current_hash.is_none() => status::PROGRESSING,
                Role::Old => status::SUPERSEDED,
            };
            // The stable revision of a canary run finished when it was promoted, which
            // its earlier record holds (a merge keeps the first finish time).
            let finished_at =
                (rev_status == status::DEPLOYED && is_current).then(|| completed_at.unwrap_or(now));
            let mut deploy = replicaset_deploy(
                ReplicaSetRevision {
                    target: &target,
                    source: DeploySource::Argo,
                    revision: rev,
                    status: rev_status,
                    finished_at,
                    hash_label: POD_TEMPLATE_HASH_LABEL,
                    history_annotation: REVISION_HISTORY_ANNOTATION,
                    workload: meta,
                },
                rs,
                now,
            );
            if let Some(details) = deploy.details.as_object_mut() {
                details.insert("role".into(), role.as_str().into());
                if role == Role::Canary && aborted {
                    details.insert("aborted".into(), true.into());
                    if let Some(message) = st.message.as_deref().filter(|m| !m.is_empty()) {
                        details.insert("message".into(), message.into());
                    }
                }
            }
            deploy
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn rs(name: &str, hash: &str, revision: &str, image: &str, created: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": "prod", "creationTimestamp": created,
                "labels": {"app": "checkout", POD_TEMPLATE_HASH_LABEL: hash},
                "annotations": {REVISION_ANNOTATION: revision},
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "name": "checkout", "uid": "uid-ro", "controller": true}]
            },
            "spec": {"selector": {"matchLabels": {"app": "checkout", POD_TEMPLATE_HASH_LABEL: hash}},
                "template": {"metadata": {"labels": {"app": "checkout", POD_TEMPLATE_HASH_LABEL: hash}},
                    "spec": {"containers": [{"name": "app", "image": image}]}}}
        }))
        .unwrap()
    }

    fn rollout(status: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "checkout", "namespace": "prod", "uid": "uid-ro"},
            "spec": {"selector": {"matchLabels": {"app": "checkout"}},
                "template": {"metadata": {"labels": {"app": "checkout"}},
                    "spec": {"containers": [{"name": "app", "image": "shop/checkout:v7"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
            "status": status
        }))
        .unwrap()
    }

    fn history() -> Vec<ReplicaSet> {
        vec![
            rs(
                "checkout-5c8f7d9b6",
                "5c8f7d9b6",
                "5",
                "shop/checkout:v5",
                "2026-12-01T09:00:00Z",
            ),
            rs(
                "checkout-6d4f9c8b7",
                "6d4f9c8b7",
                "6",
                "shop/checkout:v6",
                "2026-12-02T09:00:00Z",
            ),
            rs(
                "checkout-7b9d5c6f4",
                "7b9d5c6f4",
                "7",
                "shop/checkout:v7",
                "2026-12-03T09:00:00Z",
            ),
        ]
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap()
    }

    fn summary(deploys: &[Deploy]) -> Vec<(String, String, String)> {
        deploys
            .iter()
            .map(|d| {
                (
                    d.revision.clone(),
                    d.status.clone(),
                    d.details["role"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn row(rev: &str, status: &str, role: &str) -> (String, String, String) {
        (rev.into(), status.into(), role.into())
    }

    #[test]
    fn a_running_canary_is_progressing_beside_its_deployed_stable() {
        let ro = rollout(
            json!({"currentPodHash": "7b9d5c6f4", "stableRS": "6d4f9c8b7",
            "phase": "Paused"}),
        );
        let deploys = deploys_for(&ro, &history(), "eu-1", now());
        assert_eq!(
            summary(&deploys),
            [
                row("7", "progressing", "canary"),
                row("6", "deployed", "stable"),
                row("5", "superseded", "old"),
            ]
        );
        let canary = &deploys[0];
        assert_eq!(canary.target.key(), "eu-1/prod/Rollout/checkout");
        assert_eq!(canary.source, DeploySource::Argo);
        assert_eq!(canary.images, ["shop/checkout:v7"]);
        assert_eq!(canary.version.as_deref(), Some("v7"));
        assert_eq!(canary.pod_template_hash.as_deref(), Some("7b9d5c6f4"));
        assert_eq!(canary.details["replicaset"], "checkout-7b9d5c6f4");
        assert_eq!(canary.finished_at, None);
        assert_eq!(
            canary.started_at,
            Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap()
        );
    }

    #[test]
    fn an_aborted_canary_failed_and_says_so() {
        let ro = rollout(
            json!({"currentPodHash": "7b9d5c6f4", "stableRS": "6d4f9c8b7",
            "abort": true, "abortedAt": "2026-12-03T09:30:00Z", "phase": "Degraded",
            "message": "RolloutAborted: Rollout aborted update to revision 7"}),
        );
        let deploys = deploys_for(&ro, &history(), "eu-1", now());
        assert_eq!(deploys[0].status, "failed");
        assert_eq!(deploys[0].details["aborted"], true);
        assert_eq!(
            deploys[0].details["message"],
            "RolloutAborted: Rollout aborted update to revision 7"
        );
        assert_eq!(deploys[1].status, "deployed");
    }

    #[test]
    fn a_promoted_revision_is_deployed_and_stable() {
        let ro = rollout(
            json!({"currentPodHash": "7b9d5c6f4", "stableRS": "7b9d5c6f4",
            "phase": "Healthy", "conditions": [{"type": "Completed", "status": "True",
            "lastTransitionTime": "2026-12-03T09:20:00Z"}]}),
        );
        let deploys = deploys_for(&ro, &history(), "eu-1", now());
        assert_eq!(
            summary(&deploys),
            [
                row("7", "deployed", "stable"),
                row("6", "superseded", "old"),
                row("5", "superseded", "old"),
            ]
        );
        assert_eq!(
            deploys[0].finished_at,
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 9, 20, 0).unwrap())
        );
    }

    #[test]
    fn replicasets_of_another_owner_or_without_a_revision_are_not_history() {
        let mut sets = history();
        // A Deployment's ReplicaSet with the same labels, and one with a bad revision.
        let mut foreign = rs("checkout-abc", "abc", "9", "x:1", "2026-12-03T09:00:00Z");
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        let unparsable = rs(
            "checkout-def",
            "def",
            "seven",
            "x:2",
            "2026-12-03T09:00:00Z",
        );
        sets.extend([foreign, unparsable]);
        let ro = rollout(json!({"currentPodHash": "7b9d5c6f4", "stableRS": "7b9d5c6f4"}));
        let revisions: Vec<String> = deploys_for(&ro, &sets, "c", now())
            .into_iter()
            .map(|d| d.revision)
            .collect();
        assert_eq!(revisions, ["7", "6", "5"]);
    }

    #[test]
    fn before_any_status_the_newest_revision_is_rolling_out() {
        let ro = rollout(json!({}));
        let deploys = deploys_for(&ro, &history(), "c", now());
        assert_eq!(deploys[0].status, "progressing");
        assert_eq!(deploys[1].status, "superseded");
    }

    #[test]
    fn a_replicaset_seen_before_the_status_names_it_is_the_running_canary() {
        // Revision 7 exists; the status still speaks of the aborted revision 6.
        let ro = rollout(
            json!({"currentPodHash": "6d4f9c8b7", "stableRS": "5c8f7d9b6",
            "abort": true, "phase": "Degraded"}),
        );
        let deploys = deploys_for(&ro, &history(), "c", now());
        assert_eq!(
            summary(&deploys),
            [
                row("7", "progressing", "canary"),
                row("6", "superseded", "old"),
                row("5", "deployed", "stable"),
            ]
        );
    }

    #[test]
    fn the_rollout_reads_from_its_wire_format() {
        let ro = rollout(json!({"currentPodHash": "a", "stableRS": "b", "abort": true}));
        assert!(ro.canary_in_progress());
        assert!(ro.aborted());
        let back = serde_json::to_value(&ro).unwrap();
        assert_eq!(back["status"]["stableRS"], "b");
        assert_eq!(back["status"]["currentPodHash"], "a");
    }
}
