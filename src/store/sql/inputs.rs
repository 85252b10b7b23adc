//! What an evaluation reads besides its signals, for many targets at once: an ingest
//! batch's evaluations read their deploys, rollbacks, recoveries and standing decisions
//! in four queries instead of four per target (under a flood of new services, thousands
//! of round trips a batch on the database the ingest writes to).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, Postgres};

use super::actions::ACTION_DONE_STATES;
use super::decisions::EXPLAIN;
use super::deploys::{DEPLOY_COLUMNS, linked_target_sql_of};
use super::{BindArg, Dialect, GetCol, SqlStore, Ts};
use crate::domain::TargetRef;
use crate::domain::action::ActionKind;
use crate::store::{DecisionHead, DeployStore, StoreError, TargetInputs};

/// Each target's standing decision, through target_decisions (one row per target, kept
/// by a trigger). (`id IN (…)` over a subquery per target let the planner hash all of
/// decisions instead.)
fn heads_sql<D: Dialect>() -> String {
    format!(
        "SELECT d.id, d.target, d.verdict, d.inputs_hash, d.decided_at
         FROM target_decisions s JOIN decisions d ON d.id = s.decision_id
         WHERE s.target IN (SELECT k.value FROM {})",
        D::KEYS
    )
}

/// When each target's latest `ok` decision was recorded: a subquery per target, through
/// decisions_target (target, id).
fn recovered_sql<D: Dialect>() -> String {
    format!(
        "SELECT k.value AS target,
             (SELECT decided_at FROM decisions WHERE target = k.value AND verdict = 'ok'
              ORDER BY id DESC LIMIT 1) AS decided_at
         FROM {}",
        D::KEYS
    )
}

/// The targets' executed automatic actions since `$2`, through actions_auto_executed.
fn rollbacks_sql<D: Dialect>() -> String {
    format!(
        "SELECT a.target, a.kind, a.executed_at
         FROM {} JOIN actions a ON a.target = k.value
         WHERE a.mode = 'auto' AND a.state IN ({ACTION_DONE_STATES}) AND a.executed_at >= $2
         ORDER BY a.executed_at",
        D::KEYS
    )
}

/// Each target's newest `depth` deploys, as target_history reads them (through
/// deploys_target_started), from the table of targets `targets_table`
/// ([`Dialect::TARGETS_LATERAL`]).
fn deploys_sql(targets_table: &str, depth: u32) -> String {
    let linked = linked_target_sql_of("k.key", "k.cluster", "k.namespace");
    format!(
        "SELECT k.key AS for_target, d.* FROM {targets_table} CROSS JOIN LATERAL
             (SELECT {DEPLOY_COLUMNS} FROM deploys WHERE {linked}
              ORDER BY started_at DESC, id DESC LIMIT {depth}) d
         ORDER BY for_target, d.started_at DESC, d.id DESC"
    )
}

/// The JSON the queries read their targets from: the keys ([`Dialect::KEYS`]) and the
/// targets ([`Dialect::TARGETS_LATERAL`]).
fn targets_json(unique: &[(&TargetRef, &str)]) -> Result<(String, String), StoreError> {
    let keys: Vec<&str> = unique.iter().map(|(_, k)| *k).collect();
    let targets: Vec<serde_json::Value> = unique
        .iter()
        .map(|(t, key)| serde_json::json!({"key": key, "cluster": t.cluster, "namespace": t.namespace}))
        .collect();
    Ok((
        serde_json::to_string(&keys)?,
        serde_json::to_string(&targets)?,
    ))
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    /// See [`crate::store::DecisionStore::evaluation_inputs`].
    pub(super) async fn read_evaluation_inputs(
        &self,
        targets: &[TargetRef],
        rollbacks_since: DateTime<Utc>,
        depth: u32,
    ) -> Result<Vec<TargetInputs>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = targets.iter().map(TargetRef::key).collect();
        // Each target once: the queries' rows are matched back by key.
        let mut inputs: HashMap<&str, TargetInputs> = HashMap::with_capacity(keys.len());
        let mut unique: Vec<(&TargetRef, &str)> = Vec::with_capacity(keys.len());
        for (target, key) in targets.iter().zip(&keys) {
            if inputs.insert(key, TargetInputs::default()).is_none() {
                unique.push((target, key));
            }
        }
        let (json, targets_json) = targets_json(&unique)?;

        let heads = sqlx::query(sqlx::AssertSqlSafe(heads_sql::<D>()))
            .arg(&json)
            .fetch_all(&self.pool)
            .await?;
        for row in &heads {
            let target: String = row.col("target")?;
            if let Some(input) = inputs.get_mut(target.as_str()) {
                input.head = Some(DecisionHead {
                    id: row.col("id")?,
                    verdict: row.col("verdict")?,
                    inputs_hash: row.col("inputs_hash")?,
                    decided_at: row.col::<Ts>("decided_at")?.0,
                });
            }
        }
        let recovered = sqlx::query(sqlx::AssertSqlSafe(recovered_sql::<D>()))
            .arg(&json)
            .fetch_all(&self.pool)
            .await?;
        for row in &recovered {
            let target: String = row.col("target")?;
            if let Some(input) = inputs.get_mut(target.as_str()) {
                input.recovered_at = row.col::<Option<Ts>>("decided_at")?.map(|t| t.0);
            }
        }

        // Which kinds roll back is the domain's to say, as in automatic_rollbacks.
        let rollbacks = sqlx::query(sqlx::AssertSqlSafe(rollbacks_sql::<D>()))
            .arg(&json)
            .arg(Ts(rollbacks_since))
            .fetch_all(&self.pool)
            .await?;
        for row in &rollbacks {
            let kind: String = row.col("kind")?;
            if !ActionKind::parse(&kind).is_some_and(|k| k.rolls_back()) {
                continue;
            }
            let target: String = row.col("target")?;
            if let Some(input) = inputs.get_mut(target.as_str()) {
                input
                    .automatic_rollbacks
                    .push(row.col::<Ts>("executed_at")?.0);
            }
        }

        if let Some(targets_table) = D::TARGETS_LATERAL {
            let rows = sqlx::query(sqlx::AssertSqlSafe(deploys_sql(targets_table, depth)))
                .arg(&targets_json)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                let target: String = row.col("for_target")?;
                if let Some(input) = inputs.get_mut(target.as_str()) {
                    input.deploys.push(Self::deploy_row(row)?);
                }
            }
        } else {
            for (target, key) in &unique {
                let deploys = self.target_history(target, None, depth).await?;
                if let Some(input) = inputs.get_mut(key) {
                    input.deploys = deploys;
                }
            }
        }

        // In the order given; a target named twice gets the same inputs twice.
        let mut out: Vec<TargetInputs> = Vec::with_capacity(keys.len());
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            match inputs.remove(key.as_str()) {
                Some(input) => {
                    first.insert(key, i);
                    out.push(input);
                }
                None => out.push(out[first[key.as_str()]].clone()),
            }
        }
        Ok(out)
    }
}

impl SqlStore<Postgres> {
    /// The plans of [`crate::store::DecisionStore::evaluation_inputs`]' four queries
    /// for `targets`, as [`SqlStore::explain_list_alerts`]: standing decisions, latest
    /// `ok` decisions, automatic rollbacks, deploys.
    pub async fn explain_evaluation_inputs(
        &self,
        targets: &[TargetRef],
        rollbacks_since: DateTime<Utc>,
        depth: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let keys: Vec<String> = targets.iter().map(TargetRef::key).collect();
        let unique: Vec<(&TargetRef, &str)> = targets
            .iter()
            .zip(&keys)
            .map(|(t, k)| (t, k.as_str()))
            .collect();
        let (json, targets_json) = targets_json(&unique)?;
        let targets_table = Postgres::TARGETS_LATERAL.unwrap_or_default();
        let explain = |sql: String| sqlx::query(sqlx::AssertSqlSafe(format!("{EXPLAIN}{sql}")));
        let queries = [
            explain(heads_sql::<Postgres>()).arg(&json),
            explain(recovered_sql::<Postgres>()).arg(&json),
            explain(rollbacks_sql::<Postgres>())
                .arg(&json)
                .arg(Ts(rollbacks_since)),
            explain(deploys_sql(targets_table, depth)).arg(&targets_json),
        ];
        let mut plans = Vec::new();
        for q in queries {
            let row = q.fetch_one(&self.pool).await?;
            plans.push(row.col::<Json<serde_json::Value>>("QUERY PLAN")?.0);
        }
        Ok(plans)
    }
}
