//! What an evaluation loads besides the alerts: the rollback history the loop guard and
//! verification read, and the target's deploys. The action worker loads the same.

use chrono::Utc;

use super::HISTORY_DEPTH;
use crate::domain::decide::History;
use crate::domain::policy::Policy;
use crate::domain::{DeployRecord, TargetRef};
use crate::store::{DecisionQuery, Store, StoreError};

/// The loop guard's and verification's view of past rollbacks of `target_key`: its
/// automatic rollbacks inside the loop guard's window, and when it last recovered.
pub async fn load_history(
    store: &dyn Store,
    policy: &Policy,
    target_key: &str,
    now: chrono::DateTime<Utc>,
) -> Result<History, StoreError> {
    let window =
        chrono::Duration::seconds(i64::try_from(policy.loop_guard.window_secs).unwrap_or(i64::MAX));
    let automatic_rollbacks = store.automatic_rollbacks(target_key, now - window).await?;
    // Its time only: the line, not the evidence (kilobytes, read on every evaluation).
    let recovered = store
        .list_decision_lines(&DecisionQuery {
            target: Some(target_key.to_string()),
            verdict: Some("ok".into()),
            limit: 1,
            ..DecisionQuery::default()
        })
        .await?;
    Ok(History {
        last_rollback: automatic_rollbacks.last().copied(),
        automatic_rollbacks,
        recovered_at: recovered.first().map(|d| d.decided_at),
    })
}

/// The deploys of `target` an evaluation looks at (its history, newest first).
pub async fn load_deploys(
    store: &dyn Store,
    target: &TargetRef,
) -> Result<Vec<DeployRecord>, StoreError> {
    Ok(store
        .target_history(target, None, HISTORY_DEPTH)
        .await?
        .into_iter()
        .map(|d| DeployRecord {
            id: d.id,
            deploy: d.deploy,
        })
        .collect())
}
