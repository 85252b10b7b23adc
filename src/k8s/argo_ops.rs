//! What `kubectl argo rollouts abort` and `kubectl argo rollouts undo --to-revision`
//! send, natively (PROTOCOLS.md H.1, H.2), each after a look at the Rollout: an abort
//! already requested, or a template already at the revision, sends nothing.

use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::argo::{self, POD_TEMPLATE_HASH_LABEL, Rollout};
use super::undo::{selector_query, strip_label};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};

/// A failed step of an abort or undo.
#[derive(Debug, thiserror::Error)]
pub enum ArgoError {
    #[error("cannot {verb} {resource} {namespace}/{name}: {source}")]
    Kube {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// H.2's errors, worded as the plugin words them.
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(i64),
    #[error("no revision found for rollout {0:?}")]
    NoRevision(String),
    #[error(
        "rollout {0:?} takes its template from a workloadRef: undo it there (rollwarden does not patch the referenced workload)"
    )]
    WorkloadRef(String),
    /// The ReplicaSet an earlier attempt restored is gone.
    #[error("replicaset {0:?}, named when the undo began, is gone")]
    ReplicaSetGone(String),
}

impl ArgoError {
    /// Worth another attempt: a 5xx, 429 or a transport failure.
    pub fn is_transient(&self) -> bool {
        match self {
            ArgoError::Kube { source, .. } => match source {
                kube::Error::Api(status) => status.code >= 500 || status.code == 429,
                _ => true,
            },
            _ => false,
        }
    }
}

const ROLLOUTS: &str = "rollouts.argoproj.io";
const REPLICASETS: &str = "replicasets.apps";

fn kube_error(
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ArgoError {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    move |source| ArgoError::Kube {
        verb,
        resource,
        namespace,
        name,
        source,
    }
}

/// How an abort ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AbortOutcome {
    /// The merge patch was sent: on the status subresource, or (`on_main`) on the
    /// Rollout itself, for a cluster whose CRD has no status subresource.
    Aborted { dry_run: bool, on_main: bool },
    /// `status.abort` was already true: nothing sent.
    AlreadyAborted,
    /// No canary is running (fully promoted): an abort would do nothing.
    NothingRunning { stable: String },
}

/// `kubectl argo rollouts abort NAME -n NAMESPACE`: GET the Rollout, then the merge
/// patch `{"status":{"abort":true}}` on `rollouts/status`, and only on a 404 on the
/// Rollout.
pub async fn abort(
    client: &Client,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> Result<AbortOutcome, ArgoError> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let rollout = api
        .get(name)
        .await
        .map_err(kube_error("get", ROLLOUTS, namespace, name))?;
    let status = rollout.status.clone().unwrap_or_default();
    if status.abort {
        return Ok(AbortOutcome::AlreadyAborted);
    }
    if !rollout.canary_in_progress() {
        return Ok(AbortOutcome::NothingRunning {
            stable: status.stable_rs.unwrap_or_default(),
        });
    }
    let params = PatchParams {
        dry_run,
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"status": {"abort": true}}));
    match api.patch_status(name, &params, &patch).await {
        Ok(_) => Ok(AbortOutcome::Aborted {
            dry_run,
            on_main: false,
        }),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            api.patch(name, &params, &patch)
                .await
                .map_err(kube_error("patch", ROLLOUTS, namespace, name))?;
            Ok(AbortOutcome::Aborted {
                dry_run,
                on_main: true,
            })
        }
        Err(err) => Err(kube_error("patch", "rollouts/status", namespace, name)(err)),
    }
}

/// Which revision an undo restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoTo {
    /// By `rollout.argoproj.io/revision`; 0 is the second newest, as the plugin has it.
    Revision(i64),
    /// The ReplicaSet an earlier attempt named (an undo renumbers it).
    ReplicaSet(String),
}

/// How an undo ended.
#[derive(Debug, Clone, PartialEq)]
pub enum UndoOutcome {
    Patched {
        revision: i64,
        replicaset: String,
        images: Vec<String>,
        dry_run: bool,
    },
    /// The Rollout's template already is the revision's: nothing sent.
    Skipped { revision: i64, replicaset: String },
}

/// The ReplicaSet an undo restores, found before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoPlan {
    pub revision: i64,
    pub replicaset: String,
    /// The JSON patch, or `None` when the template already matches.
    pub patch: Option<Value>,
    pub images: Vec<String>,
}

/// GET the Rollout, LIST its ReplicaSets by its selector, keep those it controls, pick
/// the revision and compare templates (H.2 steps 1–4).
///
/// Both are read as the API server sent them (the plugin reads the Rollout with the
/// dynamic client), so that the templates are compared field for field as the plugin
/// compares them, defaults and nulls included; the typed views are taken from the
/// same answers.
pub async fn plan_undo(
    client: &Client,
    namespace: &str,
    name: &str,
    to: &UndoTo,
) -> Result<UndoPlan, ArgoError> {
    let raw = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<Rollout>(&()),
    )
    .get(name)
    .await
    .map_err(kube_error("get", ROLLOUTS, namespace, name))?;
    let rollout: Rollout = serde_json::to_value(&raw)
        .and_then(serde_json::from_value)
        .map_err(|e| kube_error("get", ROLLOUTS, namespace, name)(kube::Error::SerdeError(e)))?;
    if rollout.spec.workload_ref.is_some() {
        return Err(ArgoError::WorkloadRef(name.to_owned()));
    }
    let mut params = ListParams::default();
    let selector = rollout
        .spec
        .selector
        .as_ref()
        .map(selector_query)
        .unwrap_or_default();
    if !selector.is_empty() {
        params = params.labels(&selector);
    }
    let listed = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<ReplicaSet>(&()),
    )
    .list(&params)
    .await
    .map_err(kube_error("list", REPLICASETS, namespace, name))?;
    let replicasets = listed
        .items
        .into_iter()
        .map(|item| {
            let spec: Option<ReplicaSetSpec> = item
                .data
                .get("spec")
                .cloned()
                .map(serde_json::from_value)
                .transpose()?;
            let raw_template = item.data.pointer("/spec/template").cloned();
            let rs = ReplicaSet {
                metadata: item.metadata,
                spec,
                status: None,
            };
            Ok((rs, raw_template))
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .map_err(|e| {
            kube_error("list", REPLICASETS, namespace, name)(kube::Error::SerdeError(e))
        })?;
    let owned = argo::owned_replicasets(&rollout, replicasets.iter().map(|(rs, _)| rs));
    let mut owned: Vec<(i64, &ReplicaSet, Option<&Value>)> = replicasets
        .iter()
        .filter(|(rs, _)| owned.iter().any(|o| std::ptr::eq(*o, rs)))
        .filter_map(|(rs, raw)| Some((argo::revision(rs)?, rs, raw.as_ref())))
        .collect();
    owned.sort_by_key(|(rev, _, _)| std::cmp::Reverse(*rev));
    let (revision, rs, rs_template) = match to {
        UndoTo::Revision(0) => *owned
            .get(1)
            .ok_or_else(|| ArgoError::NoRevision(name.to_owned()))?,
        UndoTo::Revision(n) => *owned
            .iter()
            .find(|(rev, _, _)| rev == n)
            .ok_or(ArgoError::RevisionNotFound(*n))?,
        UndoTo::ReplicaSet(wanted) => *owned
            .iter()
            .find(|(_, rs, _)| rs.metadata.name.as_deref() == Some(wanted.as_str()))
            .ok_or_else(|| ArgoError::ReplicaSetGone(wanted.clone()))?,
    };
    let replicaset = rs.metadata.name.clone().unwrap_or_default();
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    strip_label(&mut template, POD_TEMPLATE_HASH_LABEL);
    let images = template
        .spec
        .iter()
        .flat_map(|pod| &pod.containers)
        .filter_map(|c| c.image.clone())
        .collect();
    let ro_template = raw.data.pointer("/spec/template");
    let patch = (!equal_ignore_hash(ro_template, rs_template))
        .then(|| json!([{"op": "replace", "path": "/spec/template", "value": to_json(&template)}]));
    Ok(UndoPlan {
        revision,
        replicaset,
        patch,
        images,
    })
}

/// Sends the plan's JSON patch to the Rollout (H.2 step 5), or nothing.
pub async fn send_undo(
    client: &Client,
    namespace: &str,
    name: &str,
    plan: UndoPlan,
    dry_run: bool,
) -> Result<UndoOutcome, ArgoError> {
    let UndoPlan {
        revision,
        replicaset,
        patch,
        images,
    } = plan;
    let Some(patch) = patch else {
        return Ok(UndoOutcome::Skipped {
            revision,
            replicaset,
        });
    };
    let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| ArgoError::Kube {
        verb: "patch",
        resource: ROLLOUTS,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: kube::Error::SerdeError(e),
    })?;
    let params = PatchParams {
        dry_run,
        ..PatchParams::default()
    };
    Api::<Rollout>::namespaced(client.clone(), namespace)
        .patch(name, &params, &Patch::Json::<()>(ops))
        .await
        .map_err(kube_error("patch", ROLLOUTS, namespace, name))?;
    Ok(UndoOutcome::Patched {
        revision,
        replicaset,
        images,
        dry_run,
    })
}

fn to_json(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Value {
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// The plugin's `equalIgnoreHash(ro, rs)` (`cmd/undo/undo.go`): both templates as
/// `map[string]any` (the Rollout's as the API server sent it, the ReplicaSet's through
/// `ToUnstructured`, which writes what the API server writes), the
/// `rollouts-pod-template-hash` label removed from each, then
/// `apiequality.Semantic.DeepDerivative(roTemplate, rsTemplate)`: the Rollout's
/// template first. A Rollout without a template is never equal.
fn equal_ignore_hash(rollout: Option<&Value>, replicaset: Option<&Value>) -> bool {
    let Some(rollout @ Value::Object(_)) = rollout else {
        return false;
    };
    let without_hash = |template: &Value| {
        let mut template = template.clone();
        if let Some(Value::Object(labels)) = template.pointer_mut("/metadata/labels") {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        template
    };
    let replicaset = replicaset.map_or_else(|| json!({}), without_hash);
    derivative(&without_hash(rollout), Some(&replicaset))
}

/// `DeepDerivative(a, b)` (k8s.io/apimachinery
/// `third_party/forked/golang/reflect/deep_equal.go`, `deepValueDerive`) on JSON
/// decoded as Go decodes it into `any`; `b` is `None` where `a`'s map has a key that
/// `b`'s lacks (an invalid `reflect.Value`). What `a` leaves unset (null, `""`, an empty
/// list or map) is not compared; everything else `a` sets must be in `b`, of the same
/// type and value. A list of `a` may be shorter than `b`'s (its elements are compared
/// with `b`'s first ones), a map may have fewer keys; neither may be longer.
fn derivative(a: &Value, b: Option<&Value>) -> bool {
    // Checked first, before `a`'s own emptiness: a key `b` lacks is a difference.
    let Some(b) = b else {
        return false;
    };
    match (a, b) {
        // A nil interface in `a`.
        (Value::Null, _) => true,
        (Value::String(a), Value::String(b)) => a.is_empty() || a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.is_empty()
                || (a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| derivative(x, Some(y))))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.is_empty() || (a.len() <= b.len() && a.iter().all(|(k, v)| derivative(v, b.get(k))))
        }
        // int64 and float64 are different Go types, as serde_json's integers and
        // floats are never equal.
        (Value::Number(_), Value::Number(_)) | (Value::Bool(_), Value::Bool(_)) => a == b,
        // Different types, or `b` null (its `Elem()` is invalid).
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_derivative_of_one_with_more_fields_set() {
        // The plugin's order: the Rollout's template first, the ReplicaSet's second.
        let ro = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut rs = ro.clone();
        rs["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        rs["metadata"]["creationTimestamp"] = Value::Null;
        assert!(
            derivative(&ro, Some(&rs)),
            "what the API server adds is not compared"
        );
        assert!(
            !derivative(&rs, Some(&ro)),
            "the other way round, the defaults count"
        );
        rs["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(!derivative(&ro, Some(&rs)));
        // A key of `a` that `b` lacks is a difference, even an empty one.
        assert!(!derivative(&json!({"a": 1}), Some(&json!({}))));
        assert!(!derivative(&json!({"a": {}}), Some(&json!({}))));
        assert!(!derivative(&json!({"a": null}), Some(&json!({}))));
        assert!(derivative(&json!({"a": null}), Some(&json!({"a": 1}))));
        assert!(derivative(&json!({"a": ""}), Some(&json!({"a": "x"}))));
        assert!(derivative(&json!({"a": []}), Some(&json!({"a": [1]}))));
        // A list may be a prefix of `b`'s, never longer; types must agree.
        assert!(derivative(&json!([1]), Some(&json!([1, 2]))));
        assert!(!derivative(&json!([1, 2]), Some(&json!([1]))));
        assert!(!derivative(&json!({"a": 1}), Some(&json!({"a": 1.0}))));
        assert!(!derivative(&json!({"a": "1"}), Some(&json!({"a": 1}))));
        assert!(!derivative(&json!({"a": "x"}), Some(&json!({"a": null}))));
        // The hash label is removed from both; a Rollout without a template never matches.
        let with_hash =
            |h: &str| json!({"metadata": {"labels": {"app": "a", POD_TEMPLATE_HASH_LABEL: h}}});
        assert!(equal_ignore_hash(
            Some(&with_hash("1")),
            Some(&with_hash("2"))
        ));
        assert!(!equal_ignore_hash(None, Some(&with_hash("2"))));
    }

    #[test]
    fn the_hash_label_is_not_sent_back() {
        let mut t: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(
            json!({"metadata": {"labels": {"app": "a", POD_TEMPLATE_HASH_LABEL: "h"}}}),
        )
        .unwrap();
        strip_label(&mut t, POD_TEMPLATE_HASH_LABEL);
        assert_eq!(to_json(&t), json!({"metadata": {"labels": {"app": "a"}}}));
    }
}
