//! Deploy history from Kubernetes: rollouts (Deployments and their ReplicaSets), Argo
//! Rollouts (Rollouts and theirs) and Helm releases (Secrets or ConfigMaps). Named `k8s` so
//! it does not shadow the kube crate.

pub mod argo;
pub mod argo_ops;
pub mod clusters;
pub mod helm;
pub mod rollouts;
pub mod set_image;
pub mod undo;
pub mod watch;

/// Fixtures shared by the unit tests of this module.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use serde_json::Value;

    const DEPLOYMENT_WITH_REPLICASETS: &str =
        include_str!("../../tests/fixtures/deployment-with-replicasets.json");

    /// The fixture's Deployment (prod/checkout at revision 3) and its ReplicaSets for
    /// revisions 1, 2 and 3.
    pub fn deployment_with_replicasets() -> (Deployment, Vec<ReplicaSet>) {
        let list: Value = serde_json::from_str(DEPLOYMENT_WITH_REPLICASETS).unwrap();
        let items = list["items"].as_array().unwrap();
        let deployment = serde_json::from_value(items[0].clone()).unwrap();
        let replicasets = items[1..]
            .iter()
            .map(|item| serde_json::from_value(item.clone()).unwrap())
            .collect();
        (deployment, replicasets)
    }
}
