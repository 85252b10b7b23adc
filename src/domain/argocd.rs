//! Argo CD's Application, as `argocd_rollback` reads it (PROTOCOLS.md I): whether
//! auto-sync is on, which history entry a rollback goes back to, and whether an
//! operation runs towards it. Pure: the executor does the HTTP.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A commit on record matches a revision Argo CD keeps when they are equal, or when
/// the shorter is a prefix of the longer and at least this long (`git`'s short SHA).
const MIN_SHORT_SHA: usize = 7;

/// Whether automated sync is on (`SyncPolicy.IsAutomatedSyncEnabled`, v3.1+; before,
/// `automated != nil`).
pub fn auto_sync_on(app: &Value) -> bool {
    let automated = &app["spec"]["syncPolicy"]["automated"];
    automated.is_object() && automated["enabled"] != Value::Bool(false)
}

/// The revisions of a history entry or of `status.sync`: `revision`, or `revisions`.
pub fn revisions(v: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = v["revisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(r) = v["revision"].as_str().filter(|r| !r.is_empty()) {
        out.push(r);
    }
    out
}

/// The history entry to go back to: the newest whose revision is the known-good
/// commit; without one, the newest deployed before the bad deploy started.
pub fn pick_entry<'a>(
    app: &'a Value,
    good_commit: Option<&str>,
    bad_started: Option<DateTime<Utc>>,
) -> Option<&'a Value> {
    let history = app["status"]["history"].as_array()?;
    let deployed_at = |e: &Value| {
        e["deployedAt"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let candidates = history.iter().rev();
    match (good_commit, bad_started) {
        (Some(sha), _) => candidates
            .filter(|e| revisions(e).iter().any(|r| same_commit(r, sha)))
            .find(|e| e["id"].is_i64()),
        (None, Some(start)) => candidates
            .filter(|e| deployed_at(e).is_some_and(|t| t < start))
            .find(|e| e["id"].is_i64()),
        (None, None) => None,
    }
}

pub fn operation_running(app: &Value) -> bool {
    matches!(
        app["status"]["operationState"]["phase"].as_str(),
        Some("Running" | "Terminating")
    )
}

/// Whether the Application's current operation syncs to `target`.
pub fn operation_towards(app: &Value, target: &[String]) -> bool {
    let sync = &app["status"]["operationState"]["operation"]["sync"];
    let revs = revisions(sync);
    !revs.is_empty() && revs.iter().all(|r| target.iter().any(|t| t == r))
}

/// Whether a revision Argo CD keeps and a commit on record name the same commit.
fn same_commit(revision: &str, commit: &str) -> bool {
    let (short, long) = if revision.len() <= commit.len() {
        (revision, commit)
    } else {
        (commit, revision)
    };
    revision == commit || (short.len() >= MIN_SHORT_SHA && long.starts_with(short))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_entry_is_the_known_good_commits_else_the_last_before_the_bad_deploy() {
        let app = json!({"status": {"history": [
            {"id": 40, "revision": "aaaa1111", "deployedAt": "2026-12-03T08:00:00Z"},
            {"id": 41, "revision": "bbbb2222", "deployedAt": "2026-12-03T09:00:00Z"},
            {"id": 42, "revision": "cccc3333", "deployedAt": "2026-12-03T10:00:00Z"}
        ]}});
        let id = |e: Option<&Value>| e.map(|e| e["id"].as_i64().unwrap());
        assert_eq!(id(pick_entry(&app, Some("aaaa1111"), None)), Some(40));
        // A short SHA on record matches the full one Argo CD keeps, and the other way;
        // too short a prefix matches nothing.
        assert_eq!(id(pick_entry(&app, Some("bbbb222"), None)), Some(41));
        assert_eq!(id(pick_entry(&app, Some("bbbb"), None)), None);
        let empty = json!({"status": {"history": [
            {"id": 7, "revisions": ["", "eeee5555"], "deployedAt": "2026-12-03T08:00:00Z"}
        ]}});
        assert_eq!(
            id(pick_entry(&empty, Some("aaaa1111"), None)),
            None,
            "an empty revision is no match"
        );
        let start = "2026-12-03T09:59:00Z".parse().unwrap();
        assert_eq!(id(pick_entry(&app, None, Some(start))), Some(41));
        assert_eq!(id(pick_entry(&app, Some("dddd4444"), Some(start))), None);
        assert_eq!(id(pick_entry(&app, None, None)), None);
    }

    #[test]
    fn auto_sync_is_on_unless_absent_or_disabled() {
        assert!(auto_sync_on(
            &json!({"spec": {"syncPolicy": {"automated": {}}}})
        ));
        assert!(auto_sync_on(
            &json!({"spec": {"syncPolicy": {"automated": {"selfHeal": true}}}})
        ));
        assert!(!auto_sync_on(
            &json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}})
        ));
        assert!(!auto_sync_on(&json!({"spec": {"syncPolicy": {}}})));
        assert!(!auto_sync_on(&json!({"spec": {}})));
    }
}
