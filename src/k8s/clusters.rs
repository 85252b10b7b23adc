//! What each watched cluster looks like from this replica: whether it watches it (holds
//! its lease), whether its API server answers, and the last error. `/readyz` shows it
//! and `rollwarden_kubernetes_cluster_reachable` counts it; an unreachable cluster
//! never makes the replica unready, since the other clusters and the API still work.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// One cluster, as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClusterState {
    pub name: String,
    /// This replica holds the cluster's watcher lease.
    pub watching: bool,
    /// Whether the API server answered the watches last; `null` when this replica does
    /// not watch it or has not heard back yet.
    pub reachable: Option<bool>,
    /// The last watch error (`transport`, `forbidden`, …), cleared by the next answer.
    pub last_error: Option<String>,
    /// When `reachable` or `last_error` last changed.
    pub since: Option<DateTime<Utc>>,
}

/// Every configured cluster's state. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Clusters(Mutex<BTreeMap<String, ClusterState>>);

impl Clusters {
    /// The configured clusters, none watched yet.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let states = names
            .into_iter()
            .map(|name| {
                (
                    name.to_string(),
                    ClusterState {
                        name: name.to_string(),
                        watching: false,
                        reachable: None,
                        last_error: None,
                        since: None,
                    },
                )
            })
            .collect();
        Self(Mutex::new(states))
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ClusterState)) {
        let mut states = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = states.get_mut(name) {
            f(state);
        }
    }

    /// This replica took (`true`) or gave up (`false`) the cluster's lease.
    pub fn watching(&self, name: &str, watching: bool) {
        self.update(name, |s| {
            s.watching = watching;
            if !watching {
                s.reachable = None;
                s.last_error = None;
                s.since = None;
            }
        });
    }

    /// The API server answered. Returns whether that changed the state.
    pub fn answered(&self, name: &str, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        self.update(name, |s| {
            if s.reachable != Some(true) || s.last_error.is_some() {
                s.reachable = Some(true);
                s.last_error = None;
                s.since = Some(now);
                changed = true;
            }
        });
        changed
    }

    /// A watch failed for `reason` (a [`super::watch`] error reason); `transport`
    /// means the API server could not be reached at all.
    pub fn failed(&self, name: &str, reason: &str, now: DateTime<Utc>) {
        self.update(name, |s| {
            let reachable = reason != "transport";
            if s.reachable != Some(reachable) || s.last_error.as_deref() != Some(reason) {
                s.since = Some(now);
            }
            s.reachable = Some(reachable);
            s.last_error = Some(reason.to_string());
        });
    }

    /// Every cluster, by name.
    pub fn snapshot(&self) -> Vec<ClusterState> {
        let states = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        states.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_cluster_is_unreachable_only_when_its_api_server_cannot_be_reached() {
        let at = |s| Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, s).unwrap();
        let clusters = Clusters::new(["eu-1", "us-1"]);
        clusters.watching("eu-1", true);
        assert!(clusters.answered("eu-1", at(0)));
        assert!(!clusters.answered("eu-1", at(1)), "no change, no update");
        clusters.failed("eu-1", "forbidden", at(2));
        assert_eq!(clusters.snapshot()[0].reachable, Some(true));
        clusters.failed("eu-1", "transport", at(3));
        let eu = &clusters.snapshot()[0];
        assert_eq!(
            (eu.reachable, eu.last_error.as_deref()),
            (Some(false), Some("transport"))
        );
        assert_eq!(eu.since, Some(at(3)));
        // Another replica's cluster, and an unknown name, stay as they were.
        clusters.failed("ap-1", "transport", at(4));
        assert_eq!(clusters.snapshot()[1].reachable, None);
        clusters.watching("eu-1", false);
        assert_eq!(clusters.snapshot()[0].reachable, None);
    }
}
