//! Deploy history from Kubernetes: rollouts (Deployments and their ReplicaSets) and Helm
//! releases (Secrets or ConfigMaps). Named `k8s` so it does not shadow the kube crate.

pub mod helm;
pub mod rollouts;
pub mod undo;
pub mod watch;
