//! Rollout history: a Deployment's ReplicaSet revisions, as `kubectl rollout history`
//! shows them, mapped to deploys.
