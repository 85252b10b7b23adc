//! What an evaluation loads besides the alerts: the rollback history the loop guard and
//! verification read, and the target's deploys. The action worker loads the same.

use chrono::Utc;

use super::HISTORY_DEPTH;
use crate::domain::decide::History;
use crate::domain::policy::Policy;
use crate::domain::{DeployRecord, TargetRef};
use crate::store::{DecisionQuery, Store, StoreError, StoredDeploy, TargetInputs};

/// Where the loop guard's window of automatic rollbacks starts at `now`.
pub(super) fn rollbacks_since(
    policy: &Policy,
    now: chrono::DateTime<Utc>,
) -> chrono::DateTime<Utc> {
    let window =
        chrono::Duration::seconds(i64::try_from(policy.loop_guard.window_secs).unwrap_or(i64::MAX));
    now - window
}

/// The loop guard's and verification's view of past rollbacks of `target_key`: its
/// automatic rollbacks inside the loop guard's window, and when it last recovered.
pub async fn load_history(
    store: &dyn Store,
    policy: &Policy,
    target_key: &str,
    now: chrono::DateTime<Utc>,
) -> Result<History, StoreError> {
    let automatic_rollbacks = store
        .automatic_rollbacks(target_key, rollbacks_since(policy, now))
        .await?;
    // Its time only: the line, not the evidence (kilobytes, read on every evaluation).
    let recovered = store
        .list_decision_lines(&DecisionQuery {
            target: Some(target_key.to_string()),
            verdict: Some("ok".into()),
            limit: 1,
            ..DecisionQuery::default()
        })
        .await?;
    Ok(History::of(
        automatic_rollbacks,
        recovered.first().map(|d| d.decided_at),
    ))
}

/// What an evaluation of a target reads from the store besides its signals, read ahead
/// with the other targets of its batch ([`Store::evaluation_inputs`]).
pub(super) struct Ahead {
    /// As [`load_deploys`] reads them.
    pub deploys: Vec<DeployRecord>,
    /// As [`load_history`] reads it.
    pub history: History,
    /// The standing decision.
    pub head: Option<crate::store::DecisionHead>,
}

impl From<TargetInputs> for Ahead {
    fn from(inputs: TargetInputs) -> Self {
        Self {
            deploys: inputs.deploys.into_iter().map(deploy_record).collect(),
            history: History::of(inputs.automatic_rollbacks, inputs.recovered_at),
            head: inputs.head,
        }
    }
}

fn deploy_record(stored: StoredDeploy) -> DeployRecord {
    DeployRecord {
        id: stored.id,
        deploy: stored.deploy,
    }
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
        .map(deploy_record)
        .collect())
}
