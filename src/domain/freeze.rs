//! Deployment freezes (M8): while one covers a target, no new rollout proceeds; a
//! rollback, or a deploy an operator explicitly approves, still may.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TargetRef;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Freeze {
    pub id: i64,
    /// `*` (everything), `cluster/namespace` (a namespace), or a full target key.
    pub scope: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Checks a freeze scope: `*`, `cluster/namespace`, or a full target key
/// `cluster/namespace/kind/name`, with Kubernetes names in it.
pub fn check_scope(scope: &str) -> Result<(), &'static str> {
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    let ok = scope == "*"
        || matches!(scope.split_once('/'), Some((c, ns)) if name(c) && name(ns))
        || TargetRef::parse(scope)
            .is_some_and(|t| name(&t.cluster) && name(&t.namespace) && name(&t.name));
    if ok {
        Ok(())
    } else {
        Err("must be *, cluster/namespace, or cluster/namespace/kind/name")
    }
}

impl Freeze {
    /// Whether this freeze holds `target` at `now`.
    pub fn covers(&self, target: &TargetRef, now: DateTime<Utc>) -> bool {
        if self.created_at > now || self.expires_at.is_some_and(|end| end <= now) {
            return false;
        }
        self.scope == "*"
            || self.scope == target.key()
            || self.scope == format!("{}/{}", target.cluster, target.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze(scope: &str) -> Freeze {
        Freeze {
            id: 1,
            scope: scope.into(),
            reason: "data corruption".into(),
            created_by: "engine".into(),
            created_at: "2026-08-22T10:00:00Z".parse().unwrap(),
            expires_at: Some("2026-08-22T12:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn scopes_are_everything_a_namespace_or_a_target() {
        for ok in ["*", "eu/prod", "eu/prod/Deployment/checkout"] {
            assert_eq!(check_scope(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "prod",
            "eu/Prod",
            "eu/prod/Deployment",
            "eu/prod/Deployment/x/y",
            "**",
        ] {
            assert!(check_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_freeze_covers_its_scope_while_it_lasts() {
        let t = TargetRef::deployment("eu", "prod", "checkout");
        let during = "2026-08-22T11:00:00Z".parse().unwrap();
        for scope in ["*", "eu/prod", "eu/prod/Deployment/checkout"] {
            assert!(freeze(scope).covers(&t, during), "{scope}");
        }
        for scope in ["us/prod", "eu/staging", "eu/prod/Deployment/cart"] {
            assert!(!freeze(scope).covers(&t, during), "{scope}");
        }
        assert!(!freeze("*").covers(&t, "2026-08-22T12:00:00Z".parse().unwrap()));
        assert!(!freeze("*").covers(&t, "2026-08-22T09:59:59Z".parse().unwrap()));
    }
}
