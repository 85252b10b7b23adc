//! Rollout history: a Deployment's ReplicaSet revisions, as `kubectl rollout history`
//! shows them, mapped to deploys.
//!
//! Ownership, revisions and rollout status follow kubectl (PROTOCOLS.md E.1, E.3) so that
//! what we blame is what `kubectl rollout history` and `kubectl rollout undo` see.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use crate::domain::deploy::status;
use crate::domain::{Deploy, DeploySource, TargetRef};

/// The revision the Deployment controller gave a ReplicaSet (and the Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions of a ReplicaSet reused by a rollback, as a comma list.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// What `kubectl rollout history` prints as CHANGE-CAUSE.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The label the controller adds to tell a Deployment's ReplicaSets apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Set by Helm on every object of a release.
pub const HELM_RELEASE_ANNOTATION: &str = "meta.helm.sh/release-name";
/// The recommended label for an application's version.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

const PROGRESSING: &str = "Progressing";
const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";

/// The ReplicaSets that belong to `deployment`, as kubectl's `listReplicaSets` finds
/// them: same namespace, labels matched by the Deployment's selector, and controlled by
/// the Deployment's UID.
pub fn owned_replicasets<'a>(
    deployment: &Deployment,
    replicasets: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Vec<&'a ReplicaSet> {
    let Some(uid) = deployment.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    let Some(spec) = deployment.spec.as_ref() else {
        return Vec::new();
    };
    let no_labels = BTreeMap::new();
    replicasets
        .into_iter()
        .filter(|rs| {
            rs.metadata.namespace == deployment.metadata.namespace
                && selector_matches(
                    &spec.selector,
                    rs.metadata.labels.as_ref().unwrap_or(&no_labels),
                )
                && controller_uid(&rs.metadata) == Some(uid)
        })
        .collect()
}

/// The ReplicaSet's revision; 0 when the annotation is missing or not a number.
pub fn revision(rs: &ReplicaSet) -> i64 {
    revision_of(&rs.metadata).unwrap_or(0)
}

/// Whether `kubectl rollout status` would say "successfully rolled out".
pub fn rollout_complete(d: &Deployment) -> bool {
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    if st.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return false;
    }
    if rollout_failed(d) {
        return false;
    }
    // The API server defaults spec.replicas to 1.
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    // kubectl's checks, in its order and with its inequalities.
    updated >= desired
        && st.replicas.unwrap_or(0) <= updated
        && st.available_replicas.unwrap_or(0) >= updated
}

/// Whether the rollout exceeded its progress deadline (`kubectl rollout status` fails).
pub fn rollout_failed(d: &Deployment) -> bool {
    progressing_condition(d).is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT_REASON))
}

/// One deploy per revision of `deployment`, newest first, as `kubectl rollout history`
/// lists them. `now` stands in for times Kubernetes does not record.
pub fn deploys_for(
    deployment: &Deployment,
    replicasets: &[ReplicaSet],
    cluster: &str,
    now: DateTime<Utc>,
) -> Vec<Deploy> {
    let mut revisions: Vec<(i64, &ReplicaSet)> = owned_replicasets(deployment, replicasets)
        .into_iter()
        .map(|rs| (revision(rs), rs))
        .filter(|(rev, _)| *rev > 0)
        .collect();
    revisions.sort_by(|(a, a_rs), (b, b_rs)| {
        b.cmp(a)
            .then_with(|| a_rs.metadata.name.cmp(&b_rs.metadata.name))
    });
    // The controller writes the Deployment's revision when it creates or reuses the new
    // ReplicaSet; until it has, the highest revision is the best guess.
    // The watch can also show the new ReplicaSet before the Deployment that names it: a
    // revision newer than the Deployment's is the one rolling out, whatever its conditions
    // say about the previous one.
    let newest = revisions.first().map(|(rev, _)| *rev);
    let annotated = revision_of(&deployment.metadata).filter(|rev| *rev > 0);
    let ahead = matches!((newest, annotated), (Some(n), Some(a)) if n > a);
    let current = if ahead { newest } else { annotated.or(newest) };
    let current_status = if ahead {
        status::PROGRESSING
    } else if rollout_failed(deployment) {
        status::FAILED
    } else if rollout_complete(deployment) {
        status::DEPLOYED
    } else {
        status::PROGRESSING
    };
    let completed_at = progressing_condition(deployment)
        .filter(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON))
        .and_then(|c| c.last_update_time.as_ref())
        .and_then(to_chrono);

    let meta = &deployment.metadata;
    let target = TargetRef::deployment(
        cluster,
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    );
    let helm_release = annotation(meta, HELM_RELEASE_ANNOTATION)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);

    revisions
        .into_iter()
        .map(|(rev, rs)| {
            let rev_status = if Some(rev) == current {
                current_status
            } else {
                status::SUPERSEDED
            };
            let finished_at = (rev_status == status::DEPLOYED).then(|| completed_at.unwrap_or(now));
            let mut deploy = replicaset_deploy(
                ReplicaSetRevision {
                    target: &target,
                    source: DeploySource::Kubernetes,
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
            deploy.change_cause = annotation(&rs.metadata, CHANGE_CAUSE_ANNOTATION)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            deploy.helm_release = helm_release.clone();
            deploy
        })
        .collect()
}

/// What a controller says of one of its ReplicaSets' revisions.
pub(super) struct ReplicaSetRevision<'a> {
    pub target: &'a TargetRef,
    pub source: DeploySource,
    pub revision: i64,
    pub status: &'static str,
    pub finished_at: Option<DateTime<Utc>>,
    /// The controller's pod-template hash label and revision-history annotation.
    pub hash_label: &'a str,
    pub history_annotation: &'a str,
    /// The Deployment or Rollout: where GitOps and Flux labels are read.
    pub workload: &'a ObjectMeta,
}

/// The deploy of one ReplicaSet revision, as a Deployment's and a Rollout's history
/// both record it: images, version, hash, start (a reused ReplicaSet's rollout began
/// at most as late as it finished), and `details` (replicaset, revision history,
/// gitops, flux).
pub(super) fn replicaset_deploy(
    r: ReplicaSetRevision<'_>,
    rs: &ReplicaSet,
    now: DateTime<Utc>,
) -> Deploy {
    let history = revision_history(&rs.metadata, r.history_annotation);
    let started_at = match &history {
        Some(_) => r.finished_at.map_or(now, |done| done.min(now)),
        None => rs
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(to_chrono)
            .unwrap_or(now),
    };
    let mut deploy = Deploy::new(
        r.target.clone(),
        r.source,
        r.revision.to_string(),
        r.status,
        started_at,
    );
    deploy.finished_at = r.finished_at;
    deploy.images = images(rs);
    deploy.pod_template_hash = label(&rs.metadata, r.hash_label)
        .filter(|h| !h.is_empty())
        .map(str::to_owned);
    deploy.version = template_label(rs, VERSION_LABEL)
        .filter(|v| !v.is_empty())
        .or_else(|| deploy.images.first().and_then(|i| image_tag(i)))
        .map(str::to_owned);
    let mut details = serde_json::Map::new();
    details.insert(
        "replicaset".into(),
        rs.metadata.name.clone().unwrap_or_default().into(),
    );
    if let Some(history) = history {
        details.insert("revision_history".into(), history.into());
    }
    if let Some(tool) = gitops_tool(r.workload) {
        details.insert("gitops".into(), tool.into());
    }
    if let Some(owner) = flux_owner(r.workload) {
        details.insert("flux".into(), owner);
    }
    deploy.details = serde_json::Value::Object(details);
    deploy
}

/// Whether `labels` satisfy `selector`, as `metav1.LabelSelectorAsSelector` decides.
/// An unknown operator matches nothing, where Go would refuse the selector.
pub(super) fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let by_expressions = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The UID of the object's controller: the first owner reference with `controller: true`,
/// as `metav1.GetControllerOf` picks it.
pub(super) fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.as_str())
}

fn revision_of(meta: &ObjectMeta) -> Option<i64> {
    annotation(meta, REVISION_ANNOTATION).and_then(|v| v.parse().ok())
}

fn revision_history(meta: &ObjectMeta, key: &str) -> Option<Vec<String>> {
    let history: Vec<String> = annotation(meta, key)?
        .split(',')
        .map(str::trim)
        .filter(|rev| !rev.is_empty())
        .map(str::to_owned)
        .collect();
    (!history.is_empty()).then_some(history)
}

fn progressing_condition(d: &Deployment) -> Option<&DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == PROGRESSING)
}

/// `argocd` or `flux` when the Deployment carries that tool's tracking marks.
fn gitops_tool(meta: &ObjectMeta) -> Option<&'static str> {
    if label(meta, "argocd.argoproj.io/instance").is_some()
        || annotation(meta, "argocd.argoproj.io/tracking-id").is_some()
    {
        Some("argocd")
    } else if label(meta, "kustomize.toolkit.fluxcd.io/name").is_some()
        || label(meta, "helm.toolkit.fluxcd.io/name").is_some()
    {
        Some("flux")
    } else {
        None
    }
}

/// The Flux object that applied the Deployment, from the labels Flux sets on what it
/// applies: `{"kind": "kustomization" | "helmrelease", "name", "namespace"}`, as
/// `flux suspend` names it.
fn flux_owner(meta: &ObjectMeta) -> Option<serde_json::Value> {
    [
        ("kustomization", "kustomize.toolkit.fluxcd.io"),
        ("helmrelease", "helm.toolkit.fluxcd.io"),
    ]
    .into_iter()
    .find_map(|(kind, group)| {
        let name = label(meta, &format!("{group}/name")).filter(|n| !n.is_empty())?;
        let namespace = label(meta, &format!("{group}/namespace"))
            .filter(|n| !n.is_empty())
            .or(meta.namespace.as_deref())?;
        Some(serde_json::json!({ "kind": kind, "name": name, "namespace": namespace }))
    })
}

fn images(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|pod| {
            pod.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn template_label<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .metadata
        .as_ref()
        .and_then(|m| label(m, key))
}

/// The tag of an image reference, if it has one: `reg:5000/app:1.2@sha256:…` → `1.2`.
fn image_tag(image: &str) -> Option<&str> {
    let name = image.split_once('@').map_or(image, |(name, _digest)| name);
    let last = name.rsplit_once('/').map_or(name, |(_, last)| last);
    last.rsplit_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.is_empty())
}

pub(super) fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub(super) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

pub(super) fn to_chrono(time: &Time) -> Option<DateTime<Utc>> {
    let nanos = time.0.as_nanosecond();
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(seconds, subsec)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    use super::*;

    use crate::k8s::fixtures::deployment_with_replicasets as fixture;

    fn now() -> DateTime<Utc> {
        time("2026-08-23T08:00:00Z")
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    fn annotate(meta: &mut ObjectMeta, key: &str, value: &str) {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    fn relabel(meta: &mut ObjectMeta, key: &str, value: &str) {
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    /// A fourth ReplicaSet, copied from revision 3 under a new name and revision.
    fn extra_replicaset(replicasets: &[ReplicaSet], name: &str, revision: &str) -> ReplicaSet {
        let mut rs = replicasets[2].clone();
        rs.metadata.name = Some(name.into());
        annotate(&mut rs.metadata, REVISION_ANNOTATION, revision);
        rs
    }

    fn status_mut(d: &mut Deployment) -> &mut DeploymentStatus {
        d.status.as_mut().unwrap()
    }

    fn set_progressing(d: &mut Deployment, reason: &str, status: &str) {
        let conditions = status_mut(d).conditions.as_mut().unwrap();
        let progressing = conditions
            .iter_mut()
            .find(|c| c.type_ == "Progressing")
            .unwrap();
        progressing.reason = Some(reason.into());
        progressing.status = status.into();
    }

    fn names(rs: &[&ReplicaSet]) -> Vec<String> {
        rs.iter()
            .map(|rs| rs.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn the_fixture_gives_three_deploys_newest_first() {
        let (deployment, replicasets) = fixture();
        let deploys = deploys_for(&deployment, &replicasets, "prod-eu", now());
        let summary: Vec<_> = deploys
            .iter()
            .map(|d| {
                (
                    d.revision.as_str(),
                    d.status.as_str(),
                    d.change_cause.as_deref(),
                    d.version.as_deref(),
                    d.pod_template_hash.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "3",
                    "deployed",
                    Some("release 1.6.0 (pipeline 2231)"),
                    Some("1.6.0"),
                    Some("69c9cdb879")
                ),
                (
                    "2",
                    "superseded",
                    Some("release 1.5.0 (pipeline 2178)"),
                    Some("1.5.0"),
                    Some("7c67857fd")
                ),
                (
                    "1",
                    "superseded",
                    Some("release 1.4.0 (pipeline 2101)"),
                    Some("1.4.0"),
                    Some("c6df558d4")
                ),
            ]
        );
        for (deploy, tag) in deploys.iter().zip(["1.6.0", "1.5.0", "1.4.0"]) {
            assert_eq!(
                deploy.target,
                TargetRef::deployment("prod-eu", "prod", "checkout")
            );
            assert_eq!(deploy.source, DeploySource::Kubernetes);
            assert_eq!(
                deploy.images,
                [format!("registry.example.com/shop/checkout:{tag}")]
            );
            assert_eq!(deploy.helm_release.as_deref(), Some("checkout"));
        }
        let times: Vec<_> = deploys
            .iter()
            .map(|d| (d.started_at, d.finished_at))
            .collect();
        assert_eq!(
            times,
            [
                (
                    time("2026-08-22T13:55:21Z"),
                    Some(time("2026-08-22T13:55:58Z"))
                ),
                (time("2026-08-21T10:30:08Z"), None),
                (time("2026-08-20T09:12:45Z"), None),
            ]
        );
        assert_eq!(
            deploys[0].details,
            json!({"replicaset": "checkout-69c9cdb879"})
        );
    }

    #[test]
    fn the_fixture_rollout_is_complete() {
        let (deployment, _) = fixture();
        assert!(rollout_complete(&deployment));
        assert!(!rollout_failed(&deployment));
    }

    #[test]
    fn revisions_come_from_the_annotation_and_default_to_zero() {
        let (_, replicasets) = fixture();
        let mut rs = replicasets[0].clone();
        assert_eq!(revision(&rs), 1);
        for (value, expected) in [("12", 12), ("+7", 7), ("three", 0), ("", 0), (" 3", 0)] {
            annotate(&mut rs.metadata, REVISION_ANNOTATION, value);
            assert_eq!(revision(&rs), expected, "{value:?}");
        }
        rs.metadata.annotations = None;
        assert_eq!(revision(&rs), 0);
    }

    #[test]
    fn replicasets_of_another_deployment_are_ignored() {
        let (deployment, mut replicasets) = fixture();
        let mut foreign = extra_replicaset(&replicasets, "checkout-other", "9");
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid =
            "00000000-0000-0000-0000-000000000000".into();
        replicasets.push(foreign);
        let owned = owned_replicasets(&deployment, &replicasets);
        assert_eq!(
            names(&owned),
            [
                "checkout-c6df558d4",
                "checkout-7c67857fd",
                "checkout-69c9cdb879"
            ]
        );
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys.len(), 3);
    }

    #[test]
    fn an_owner_that_is_not_the_controller_does_not_own() {
        let (deployment, replicasets) = fixture();
        let mut rs = extra_replicaset(&replicasets, "checkout-adopted", "9");
        rs.metadata.owner_references.as_mut().unwrap()[0].controller = Some(false);
        assert!(owned_replicasets(&deployment, [&rs]).is_empty());
        rs.metadata.owner_references = None;
        assert!(owned_replicasets(&deployment, [&rs]).is_empty());
    }

    #[test]
    fn replicasets_the_selector_does_not_match_are_ignored() {
        let (deployment, replicasets) = fixture();
        let mut rs = extra_replicaset(&replicasets, "checkout-stray", "9");
        relabel(&mut rs.metadata, "app.kubernetes.io/name", "payments");
        assert!(owned_replicasets(&deployment, [&rs]).is_empty());
        rs.metadata.labels = None;
        assert!(owned_replicasets(&deployment, [&rs]).is_empty());
    }

    #[test]
    fn replicasets_in_another_namespace_are_ignored() {
        let (deployment, replicasets) = fixture();
        let mut rs = extra_replicaset(&replicasets, "checkout-elsewhere", "9");
        rs.metadata.namespace = Some("staging".into());
        assert!(owned_replicasets(&deployment, [&rs]).is_empty());
    }

    #[test]
    fn selector_expressions_are_honoured() {
        let (mut deployment, replicasets) = fixture();
        let requirement = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let cases = [
            (
                requirement("app.kubernetes.io/name", "In", &["checkout", "cart"]),
                true,
            ),
            (
                requirement("app.kubernetes.io/name", "In", &["cart"]),
                false,
            ),
            (
                requirement("app.kubernetes.io/name", "NotIn", &["cart"]),
                true,
            ),
            (requirement("tier", "NotIn", &["web"]), true),
            (requirement("pod-template-hash", "Exists", &[]), true),
            (requirement("tier", "Exists", &[]), false),
            (requirement("tier", "DoesNotExist", &[]), true),
            (requirement("pod-template-hash", "DoesNotExist", &[]), false),
            (
                requirement("app.kubernetes.io/name", "Matches", &["checkout"]),
                false,
            ),
        ];
        for (req, owned) in cases {
            let description = format!("{} {} {:?}", req.key, req.operator, req.values);
            deployment.spec.as_mut().unwrap().selector.match_expressions = Some(vec![req]);
            assert_eq!(
                owned_replicasets(&deployment, &replicasets).len(),
                if owned { 3 } else { 0 },
                "{description}"
            );
        }
    }

    #[test]
    fn replicasets_without_a_revision_are_ignored() {
        let (deployment, mut replicasets) = fixture();
        let mut unrevised = extra_replicaset(&replicasets, "checkout-unrevised", "9");
        unrevised
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(REVISION_ANNOTATION);
        replicasets.push(unrevised);
        assert_eq!(owned_replicasets(&deployment, &replicasets).len(), 4);
        let revisions: Vec<String> = deploys_for(&deployment, &replicasets, "c", now())
            .into_iter()
            .map(|d| d.revision)
            .collect();
        assert_eq!(revisions, ["3", "2", "1"]);
    }

    #[test]
    fn a_rollout_past_its_progress_deadline_is_failed() {
        let (mut deployment, replicasets) = fixture();
        set_progressing(&mut deployment, "ProgressDeadlineExceeded", "False");
        assert!(rollout_failed(&deployment));
        assert!(!rollout_complete(&deployment));
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].status, "failed");
        assert_eq!(deploys[0].finished_at, None);
        assert_eq!(deploys[1].status, "superseded");
    }

    #[test]
    fn a_replicaset_seen_before_its_deployment_is_the_one_rolling_out() {
        // The complete Deployment still names revision 3; revision 4 is already there.
        let (deployment, mut replicasets) = fixture();
        replicasets.push(extra_replicaset(&replicasets, "checkout-next", "4"));
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        let statuses: Vec<_> = deploys
            .iter()
            .map(|d| (d.revision.as_str(), d.status.as_str()))
            .collect();
        assert_eq!(statuses[..2], [("4", "progressing"), ("3", "superseded")]);
        assert_eq!(deploys[0].finished_at, None);
    }

    #[test]
    fn an_incomplete_rollout_is_progressing() {
        let (mut deployment, replicasets) = fixture();
        set_progressing(&mut deployment, "ReplicaSetUpdated", "True");
        status_mut(&mut deployment).updated_replicas = Some(1);
        status_mut(&mut deployment).replicas = Some(4);
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].status, "progressing");
        assert_eq!(deploys[0].finished_at, None);
        assert_eq!(deploys[0].started_at, time("2026-08-22T13:55:21Z"));
    }

    #[test]
    fn rollout_status_follows_kubectl() {
        type Tweak = fn(&mut Deployment);
        let cases: [(&str, Tweak, bool); 7] = [
            ("as fetched", |_| {}, true),
            (
                "generation not yet observed",
                |d| d.metadata.generation = Some(4),
                false,
            ),
            (
                "too few updated",
                |d| status_mut(d).updated_replicas = Some(2),
                false,
            ),
            (
                "old replicas left",
                |d| status_mut(d).replicas = Some(4),
                false,
            ),
            (
                "updated not yet available",
                |d| status_mut(d).available_replicas = Some(2),
                false,
            ),
            ("no status yet", |d| d.status = None, false),
            (
                "replicas defaults to one",
                |d| {
                    d.spec.as_mut().unwrap().replicas = None;
                    let st = status_mut(d);
                    st.replicas = Some(1);
                    st.updated_replicas = Some(1);
                    st.available_replicas = Some(1);
                },
                true,
            ),
        ];
        for (name, tweak, complete) in cases {
            let (mut deployment, _) = fixture();
            tweak(&mut deployment);
            assert_eq!(rollout_complete(&deployment), complete, "{name}");
        }
    }

    #[test]
    fn a_complete_rollout_without_its_condition_finishes_now() {
        let (mut deployment, replicasets) = fixture();
        status_mut(&mut deployment).conditions = None;
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].status, "deployed");
        assert_eq!(deploys[0].finished_at, Some(now()));
    }

    #[test]
    fn a_reused_replicaset_starts_when_its_rollback_happened() {
        // `kubectl rollout undo` from 3 to 2: the RS of revision 2 becomes revision 4.
        let (mut deployment, mut replicasets) = fixture();
        annotate(&mut deployment.metadata, REVISION_ANNOTATION, "4");
        set_progressing(&mut deployment, "ReplicaSetUpdated", "True");
        status_mut(&mut deployment).updated_replicas = Some(1);
        let reused = &mut replicasets[1].metadata;
        annotate(reused, REVISION_ANNOTATION, "4");
        annotate(reused, REVISION_HISTORY_ANNOTATION, "2");

        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        let revisions: Vec<&str> = deploys.iter().map(|d| d.revision.as_str()).collect();
        assert_eq!(revisions, ["4", "3", "1"]);
        assert_eq!(deploys[0].status, "progressing");
        assert_eq!(deploys[0].started_at, now());
        assert_eq!(deploys[0].version.as_deref(), Some("1.5.0"));
        assert_eq!(
            deploys[0].details,
            json!({"replicaset": "checkout-7c67857fd", "revision_history": ["2"]})
        );
        assert_eq!(deploys[1].status, "superseded");
        assert_eq!(deploys[1].started_at, time("2026-08-22T13:55:21Z"));
    }

    #[test]
    fn a_finished_reused_replicaset_does_not_start_after_it_finished() {
        let (mut deployment, mut replicasets) = fixture();
        annotate(&mut deployment.metadata, REVISION_ANNOTATION, "4");
        let reused = &mut replicasets[1].metadata;
        annotate(reused, REVISION_ANNOTATION, "4");
        annotate(reused, REVISION_HISTORY_ANNOTATION, "2");
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].status, "deployed");
        assert_eq!(deploys[0].started_at, time("2026-08-22T13:55:58Z"));
        assert_eq!(deploys[0].finished_at, Some(time("2026-08-22T13:55:58Z")));
    }

    #[test]
    fn a_deployment_the_controller_has_not_annotated_takes_the_highest_revision() {
        let (mut deployment, replicasets) = fixture();
        deployment
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(REVISION_ANNOTATION);
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].revision, "3");
        assert_eq!(deploys[0].status, "deployed");
    }

    #[test]
    fn gitops_markers_land_in_details() {
        type Mark = fn(&mut ObjectMeta);
        let cases: [(&str, Mark, Option<&str>); 5] = [
            ("none", |_| {}, None),
            (
                "argo label",
                |m| relabel(m, "argocd.argoproj.io/instance", "shop"),
                Some("argocd"),
            ),
            (
                "argo annotation",
                |m| {
                    annotate(
                        m,
                        "argocd.argoproj.io/tracking-id",
                        "shop:apps/Deployment:prod/checkout",
                    )
                },
                Some("argocd"),
            ),
            (
                "flux kustomization",
                |m| relabel(m, "kustomize.toolkit.fluxcd.io/name", "apps"),
                Some("flux"),
            ),
            (
                "flux helm release",
                |m| relabel(m, "helm.toolkit.fluxcd.io/name", "checkout"),
                Some("flux"),
            ),
        ];
        for (name, mark, expected) in cases {
            let (mut deployment, replicasets) = fixture();
            mark(&mut deployment.metadata);
            let deploys = deploys_for(&deployment, &replicasets, "c", now());
            for deploy in &deploys {
                assert_eq!(deploy.details["gitops"].as_str(), expected, "{name}");
            }
        }
    }

    #[test]
    fn the_flux_object_that_applied_it_is_recorded() {
        let (mut deployment, replicasets) = fixture();
        relabel(
            &mut deployment.metadata,
            "kustomize.toolkit.fluxcd.io/name",
            "apps",
        );
        relabel(
            &mut deployment.metadata,
            "kustomize.toolkit.fluxcd.io/namespace",
            "flux-system",
        );
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(
            deploys[0].details["flux"],
            serde_json::json!({"kind": "kustomization", "name": "apps", "namespace": "flux-system"})
        );
        // A HelmRelease without its namespace label: the Deployment's own namespace.
        let (mut deployment, replicasets) = fixture();
        relabel(
            &mut deployment.metadata,
            "helm.toolkit.fluxcd.io/name",
            "checkout",
        );
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].details["flux"]["kind"], "helmrelease");
        assert_eq!(
            deploys[0].details["flux"]["namespace"].as_str(),
            deployment.metadata.namespace.as_deref()
        );
        let (deployment, replicasets) = fixture();
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert!(deploys[0].details.get("flux").is_none());
    }

    #[test]
    fn the_version_label_wins_over_the_image_tag() {
        let (deployment, mut replicasets) = fixture();
        let template = replicasets[2]
            .spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap();
        relabel(
            template.metadata.as_mut().unwrap(),
            VERSION_LABEL,
            "1.6.0-rc.2",
        );
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert_eq!(deploys[0].version.as_deref(), Some("1.6.0-rc.2"));
    }

    #[test]
    fn a_deployment_outside_helm_has_no_helm_release() {
        let (mut deployment, replicasets) = fixture();
        deployment.metadata.annotations = None;
        let deploys = deploys_for(&deployment, &replicasets, "c", now());
        assert!(deploys.iter().all(|d| d.helm_release.is_none()));
    }

    #[test]
    fn image_tags_skip_registry_ports_and_digests() {
        for (image, tag) in [
            ("registry.example.com/shop/checkout:1.6.0", Some("1.6.0")),
            ("registry:5000/checkout", None),
            ("registry:5000/checkout:2.0", Some("2.0")),
            ("checkout:3@sha256:0123abcd", Some("3")),
            ("checkout@sha256:0123abcd", None),
            ("nginx", None),
        ] {
            assert_eq!(image_tag(image), tag, "{image}");
        }
    }
}
