//! `kubectl set image` for a Deployment, natively through the API: the image revert a
//! rollback takes when the known-good revision is known by its images only (a CI
//! deploy with no ReplicaSet revision on record).
//!
//! kubectl GETs the Deployment, sets the named containers' images, and PATCHes the
//! two-way strategic merge patch between the two (`application/strategic-merge-patch+json`,
//! `fieldManager=kubectl-set`): the changed containers by their merge key `name`, and
//! `$setElementOrder/containers` listing every container in order; init containers the
//! same way when one changes. [`set_image_patch`] computes exactly that patch without
//! I/O; [`set_images`] fetches, computes and patches. Where kubectl is told container
//! names, the images name their repositories: each image goes to the containers that
//! run that repository now.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Map, Value, json};

/// The field manager kubectl's `set` commands write with.
pub const FIELD_MANAGER: &str = "kubectl-set";

const DEPLOYMENTS: &str = "deployments.apps";

/// Why an image revert could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SetImageError {
    /// No container of the Deployment runs the image's repository.
    #[error("no container of deployment {name:?} runs {repository} (to set {image})")]
    NoContainer {
        name: String,
        repository: String,
        image: String,
    },
    /// The Deployment does not exist.
    #[error("deployment {name:?} not found in namespace {namespace}")]
    NotFound { namespace: String, name: String },
    /// RBAC refused a request.
    #[error(
        "rollwarden is not allowed to {verb} {DEPLOYMENTS} in namespace {namespace}: {message}"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        message: String,
    },
    /// Any other failed API request.
    #[error("cannot {verb} {DEPLOYMENTS} in namespace {namespace}: {source}")]
    Kube {
        verb: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl SetImageError {
    /// Whether another attempt may succeed (a 5xx, 429, or no answer).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(status) => status.code >= 500 || status.code == 429,
                _ => true,
            },
            _ => false,
        }
    }
}

/// What [`set_images`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetImageOutcome {
    /// The patch was sent (only validated by the API server when `dry_run`).
    Patched {
        /// `container=image` for each container set, in order.
        set: Vec<String>,
        dry_run: bool,
        /// The patch sent.
        patch: Value,
    },
    /// Every container already runs its image: nothing was sent (kubectl sends no
    /// empty patch either).
    Unchanged,
}

/// The repository of an image reference: without its digest and tag
/// (`reg:5000/acme/app:1.2@sha256:…` → `reg:5000/acme/app`).
pub fn repository(image: &str) -> &str {
    let name = image.split_once('@').map_or(image, |(name, _digest)| name);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// One list's part of the patch: the changed containers and the element order, or
/// nothing when none changed. Marks each repository in `images` that a container runs.
fn list_patch(
    containers: &[Container],
    images: &[String],
    found: &mut [bool],
    set: &mut Vec<String>,
) -> Option<(Value, Value)> {
    let mut changed = Vec::new();
    for c in containers {
        let current = c.image.as_deref().unwrap_or("");
        let wanted = images
            .iter()
            .enumerate()
            .find(|(_, image)| repository(image) == repository(current));
        if let Some((i, image)) = wanted {
            found[i] = true;
            if image != current {
                changed.push(json!({"image": image, "name": c.name}));
                set.push(format!("{}={image}", c.name));
            }
        }
    }
    if changed.is_empty() {
        return None;
    }
    let order: Vec<Value> = containers.iter().map(|c| json!({"name": c.name})).collect();
    Some((Value::Array(order), Value::Array(changed)))
}

/// The patch `kubectl set image deployment/NAME C=IMAGE…` sends to set each image to
/// the containers (and init containers) that run its repository; `None` when they all
/// run it already. Each image must be run by some container.
pub fn set_image_patch(
    deployment: &Deployment,
    images: &[String],
) -> Result<Option<(Value, Vec<String>)>, SetImageError> {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref());
    let containers = pod.map(|p| p.containers.as_slice()).unwrap_or_default();
    let init = pod
        .and_then(|p| p.init_containers.as_deref())
        .unwrap_or_default();
    let mut found = vec![false; images.len()];
    let mut set = Vec::new();
    let mut spec = Map::new();
    if let Some((order, changed)) = list_patch(containers, images, &mut found, &mut set) {
        spec.insert("$setElementOrder/containers".into(), order);
        spec.insert("containers".into(), changed);
    }
    if let Some((order, changed)) = list_patch(init, images, &mut found, &mut set) {
        spec.insert("$setElementOrder/initContainers".into(), order);
        spec.insert("initContainers".into(), changed);
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(SetImageError::NoContainer {
            name: deployment.metadata.name.clone().unwrap_or_default(),
            repository: repository(&images[i]).to_string(),
            image: images[i].clone(),
        });
    }
    if spec.is_empty() {
        return Ok(None);
    }
    // Keys in the order Go's encoder writes them: sorted, `$`-directives first.
    let spec: Map<String, Value> = {
        let mut keys: Vec<(String, Value)> = spec.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.into_iter().collect()
    };
    Ok(Some((
        json!({"spec": {"template": {"spec": Value::Object(spec)}}}),
        set,
    )))
}

fn api_error(err: kube::Error, verb: &'static str, namespace: &str, name: &str) -> SetImageError {
    match &err {
        kube::Error::Api(status) if status.code == 403 => SetImageError::Forbidden {
            verb,
            namespace: namespace.to_owned(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 404 => SetImageError::NotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        _ => SetImageError::Kube {
            verb,
            namespace: namespace.to_owned(),
            source: err,
        },
    }
}

/// `kubectl -n NAMESPACE set image deployment/NAME C=IMAGE… [--dry-run=server]`:
/// GETs the Deployment and PATCHes [`set_image_patch`]'s patch, unless every container
/// already runs its image.
#[tracing::instrument(skip_all, fields(%namespace, %name, dry_run = dry_run))]
pub async fn set_images(
    client: &Client,
    namespace: &str,
    name: &str,
    images: &[String],
    dry_run: bool,
) -> Result<SetImageOutcome, SetImageError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments
        .get(name)
        .await
        .map_err(|err| api_error(err, "get", namespace, name))?;
    let Some((patch, set)) = set_image_patch(&deployment, images)? else {
        tracing::info!("set image skipped: every container already runs its image");
        return Ok(SetImageOutcome::Unchanged);
    };
    let params = PatchParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    deployments
        .patch(name, &params, &Patch::Strategic(&patch))
        .await
        .map_err(|err| api_error(err, "patch", namespace, name))?;
    tracing::info!(?set, dry_run, "images set");
    Ok(SetImageOutcome::Patched {
        set,
        dry_run,
        patch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(containers: &[(&str, &str)], init: &[(&str, &str)]) -> Deployment {
        let list = |cs: &[(&str, &str)]| -> Vec<Value> {
            cs.iter()
                .map(|(name, image)| json!({"name": name, "image": image}))
                .collect()
        };
        let mut spec = json!({"containers": list(containers)});
        if !init.is_empty() {
            spec["initContainers"] = Value::Array(list(init));
        }
        serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "checkout"}},
                "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": spec}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_patch_is_the_one_kubectl_set_image_sends() {
        // kubectl -v=8 set image deployment/checkout app=ghcr.io/acme/checkout:v2.4.9
        let d = deployment(
            &[
                ("app", "ghcr.io/acme/checkout:v2.5.0"),
                ("log-shipper", "fluent/fluent-bit:3.0"),
            ],
            &[],
        );
        let (patch, set) = set_image_patch(&d, &["ghcr.io/acme/checkout:v2.4.9".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&patch).unwrap(),
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"log-shipper"}],"containers":[{"image":"ghcr.io/acme/checkout:v2.4.9","name":"app"}]}}}}"#
        );
        assert_eq!(set, ["app=ghcr.io/acme/checkout:v2.4.9"]);
    }

    #[test]
    fn init_containers_of_the_same_repository_are_set_too() {
        let d = deployment(
            &[("app", "ghcr.io/acme/checkout:v2.5.0")],
            &[("migrate", "ghcr.io/acme/checkout:v2.5.0")],
        );
        let (patch, _) = set_image_patch(&d, &["ghcr.io/acme/checkout:v2.4.9".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["$setElementOrder/initContainers"],
            json!([{"name": "migrate"}])
        );
        assert_eq!(
            patch["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "ghcr.io/acme/checkout:v2.4.9"
        );
    }

    #[test]
    fn nothing_is_sent_when_every_container_runs_its_image() {
        let d = deployment(&[("app", "ghcr.io/acme/checkout:v2.4.9")], &[]);
        assert!(
            set_image_patch(&d, &["ghcr.io/acme/checkout:v2.4.9".into()])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_image_no_container_runs_is_refused() {
        let d = deployment(&[("app", "ghcr.io/acme/checkout:v2.5.0")], &[]);
        let err = set_image_patch(&d, &["ghcr.io/acme/cart:v1".into()]).unwrap_err();
        assert!(matches!(err, SetImageError::NoContainer { .. }), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn repositories_keep_their_registry_port() {
        assert_eq!(repository("reg:5000/acme/app:1.2"), "reg:5000/acme/app");
        assert_eq!(repository("reg:5000/acme/app"), "reg:5000/acme/app");
        assert_eq!(repository("acme/app@sha256:abc"), "acme/app");
        assert_eq!(repository("app:1.2@sha256:abc"), "app");
    }
}
