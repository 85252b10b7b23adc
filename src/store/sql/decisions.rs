//! Decisions and deployment freezes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, Postgres, QueryBuilder};
use tracing::instrument;

use super::{BindArg, Dialect, GetCol, Page, PushArg, SqlStore, Ts, page_end, page_start};
use crate::domain::{DecisionBrief, Freeze, TargetRef};
use crate::store::{
    DecisionHead, DecisionLine, DecisionQuery, DecisionStore, FreezeRecord, FreezeStore,
    NewDecision, NewFreeze, NewReleaseDecision, ReleaseDecision, StandingDecision, StoreError,
    StoredDecision, TargetInputs,
};

/// Deploy ids per query of [`DecisionStore::decisions_blaming`]: far under both
/// databases' bind limits.
const BLAMING_PAGE: usize = 500;

/// At most this many decisions blaming a release's deploys are read.
const BLAMING_CAP: usize = 1000;

/// The columns of a decision row, in the order [`SqlStore::decision_row`] reads them.
const DECISION_COLUMNS: &str = "id, target, verdict, reason, inputs_hash, \
     policy_version, suspect_deploy_id, rollback_to_id, evidence, decided_at";

/// The columns of [`DecisionLine`].
const DECISION_LINE_COLUMNS: &str = "id, target, verdict, reason, decided_at";

/// The columns of a freeze row, in the order [`SqlStore::freeze_row`] reads them.
const FREEZE_COLUMNS: &str =
    "id, scope, reason, created_by, decision_id, created_at, expires_at, lifted_at, lifted_by";

impl<D: Dialect> SqlStore<D> {
    /// `prefix` and the query of [`DecisionStore::list_decisions`]: newest first, each
    /// filter and the cursor served by an index (migration 0007 has the time range's).
    fn list_decisions_sql(prefix: &str, query: &DecisionQuery, columns: &str) -> QueryBuilder<D> {
        // A range that ends is read through decisions_decided, whatever its size (see
        // Page): walked newest first by id, a range mid-way read 50,000 rows, 33-107 ms.
        let page = Page {
            table: "decisions",
            columns,
            time: "decided_at",
            since: query.since,
            until: query.until,
            before: query.before_id,
            limit: query.limit,
            via: None,
        };
        let mut q = page_start(prefix, &page);
        if let Some(target) = &query.target {
            q.push(" AND target = ").push_arg(target.clone());
        }
        if let Some(verdict) = &query.verdict {
            q.push(" AND verdict = ").push_arg(verdict.clone());
        }
        page_end(&mut q, &page);
        q
    }

    /// `prefix` and each target's standing (latest) decision, by target after `after`,
    /// at most `limit`, only those not `ok` when `unsettled`: one row per target of
    /// target_decisions (migration 0007, kept by a trigger) and its decision by id.
    fn standing_decisions_sql(
        prefix: &str,
        after: Option<&str>,
        limit: Option<u32>,
        unsettled: bool,
    ) -> QueryBuilder<D> {
        let mut q = QueryBuilder::new(format!(
            "{prefix}SELECT d.id, d.target, d.verdict, d.reason, d.decided_at,
                 COALESCE(d.brief, d.evidence) AS brief
             FROM target_decisions s JOIN decisions d ON d.id = s.decision_id WHERE TRUE"
        ));
        if let Some(after) = after {
            q.push(" AND s.target > ").push_arg(after.to_string());
        }
        if unsettled {
            q.push(" AND d.verdict <> 'ok'");
        }
        q.push(" ORDER BY s.target");
        if let Some(limit) = limit {
            q.push(" LIMIT ").push(limit);
        }
        q
    }

    fn decision_row(row: &D::Row) -> Result<StoredDecision, StoreError> {
        Ok(StoredDecision {
            id: row.col("id")?,
            target_key: row.col("target")?,
            verdict: row.col("verdict")?,
            reason: row.col("reason")?,
            inputs_hash: row.col("inputs_hash")?,
            policy_version: row.col("policy_version")?,
            suspect_deploy_id: row.col("suspect_deploy_id")?,
            rollback_to_id: row.col("rollback_to_id")?,
            decided_at: row.col::<Ts>("decided_at")?.0,
            decision: row.col::<Json<serde_json::Value>>("evidence")?.0,
        })
    }

    fn freeze(row: &D::Row) -> Result<Freeze, StoreError> {
        Ok(Freeze {
            id: row.col("id")?,
            scope: row.col("scope")?,
            reason: row.col("reason")?,
            created_by: row.col("created_by")?,
            created_at: row.col::<Ts>("created_at")?.0,
            expires_at: row.col::<Option<Ts>>("expires_at")?.map(|t| t.0),
        })
    }

    fn freeze_row(row: &D::Row) -> Result<FreezeRecord, StoreError> {
        Ok(FreezeRecord {
            freeze: Self::freeze(row)?,
            decision_id: row.col("decision_id")?,
            lifted_at: row.col::<Option<Ts>>("lifted_at")?.map(|t| t.0),
            lifted_by: row.col("lifted_by")?,
        })
    }
}

#[async_trait]
impl<D: Dialect> DecisionStore for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    #[instrument(skip_all, fields(target = decision.target_key, verdict = decision.verdict))]
    async fn record_decision(
        &self,
        decision: &NewDecision,
    ) -> Result<(StoredDecision, bool), StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        D::lock_target(&mut *tx, &decision.target_key).await?;
        // The standing decision's verdict and hash decide; its evidence (large, under a
        // flood of alerts) is read only when it stays the standing one.
        let latest = sqlx::query(
            "SELECT id, verdict, inputs_hash FROM decisions WHERE target = $1
             ORDER BY id DESC LIMIT 1",
        )
        .arg(&decision.target_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = latest
            && row.col::<String>("verdict")? == decision.verdict
            && row.col::<String>("inputs_hash")? == decision.inputs_hash
        {
            let id: i64 = row.col("id")?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = $1"
            )))
            .arg(id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok((Self::decision_row(&row)?, false));
        }
        let row = sqlx::query(
            "INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 suspect_deploy_id, rollback_to_id, evidence, decided_at, brief)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id, decided_at",
        )
        .arg(&decision.target_key)
        .arg(&decision.verdict)
        .arg(&decision.reason)
        .arg(&decision.inputs_hash)
        .arg(&decision.policy_version)
        .arg(decision.suspect_deploy_id)
        .arg(decision.rollback_to_id)
        .arg(Json(&decision.decision))
        .arg(Ts(decision.decided_at))
        .arg(Json(DecisionBrief::of(&decision.decision)))
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.col("id")?;
        // The event stream's `decision.recorded`: enough to show it, the rest by id.
        let details = serde_json::json!({
            "target": decision.target_key, "verdict": decision.verdict,
            "reason": decision.reason,
        });
        Self::audit(
            &mut tx,
            decision.decided_at,
            "rollwarden",
            "decision.recorded",
            id,
            &details,
        )
        .await?;
        tx.commit().await?;
        // Built from what was written rather than decoded back from the row.
        let stored = StoredDecision {
            id,
            target_key: decision.target_key.clone(),
            verdict: decision.verdict.clone(),
            reason: decision.reason.clone(),
            inputs_hash: decision.inputs_hash.clone(),
            policy_version: decision.policy_version.clone(),
            suspect_deploy_id: decision.suspect_deploy_id,
            rollback_to_id: decision.rollback_to_id,
            decided_at: row.col::<Ts>("decided_at")?.0,
            decision: decision.decision.clone(),
        };
        Ok((stored, true))
    }

    #[instrument(level = "debug", skip_all, fields(target = target_key))]
    async fn latest_decision(
        &self,
        target_key: &str,
    ) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE target = $1 ORDER BY id DESC LIMIT 1"
        )))
        .arg(target_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::decision_row).transpose()
    }

    #[instrument(level = "debug", skip_all, fields(targets = targets.len()))]
    async fn evaluation_inputs(
        &self,
        targets: &[TargetRef],
        rollbacks_since: DateTime<Utc>,
        depth: u32,
    ) -> Result<Vec<TargetInputs>, StoreError> {
        self.read_evaluation_inputs(targets, rollbacks_since, depth)
            .await
    }

    async fn decision_head(&self, target_key: &str) -> Result<Option<DecisionHead>, StoreError> {
        let row = sqlx::query(
            "SELECT id, verdict, inputs_hash, decided_at FROM decisions WHERE target = $1
             ORDER BY id DESC LIMIT 1",
        )
        .arg(target_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(DecisionHead {
                id: row.col("id")?,
                verdict: row.col("verdict")?,
                inputs_hash: row.col("inputs_hash")?,
                decided_at: row.col::<Ts>("decided_at")?.0,
            })
        })
        .transpose()
    }

    #[instrument(level = "debug", skip_all, fields(decision = id))]
    async fn decision(&self, id: i64) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = $1"
        )))
        .arg(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::decision_row).transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let rows = Self::list_decisions_sql("", query, DECISION_COLUMNS)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::decision_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_decision_lines(
        &self,
        query: &DecisionQuery,
    ) -> Result<Vec<DecisionLine>, StoreError> {
        let rows = Self::list_decisions_sql("", query, DECISION_LINE_COLUMNS)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DecisionLine {
                    id: row.col("id")?,
                    target_key: row.col("target")?,
                    verdict: row.col("verdict")?,
                    reason: row.col("reason")?,
                    decided_at: row.col::<Ts>("decided_at")?.0,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn unsettled_targets(&self) -> Result<Vec<String>, StoreError> {
        let rows = Self::standing_decisions_sql("", None, None, true)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.col("target")?)).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn standing_decisions(
        &self,
        after_target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StandingDecision>, StoreError> {
        let rows = Self::standing_decisions_sql("", after_target, Some(limit), false)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StandingDecision {
                    id: row.col("id")?,
                    target_key: row.col("target")?,
                    verdict: row.col("verdict")?,
                    reason: row.col("reason")?,
                    decided_at: row.col::<Ts>("decided_at")?.0,
                    // Straight from the column's bytes to the few fields a list shows
                    // (the whole evidence of a row written before the brief column).
                    brief: row.col::<Json<DecisionBrief>>("brief")?.0,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all, fields(deploys = deploy_ids.len()))]
    async fn decisions_blaming(
        &self,
        deploy_ids: &[i64],
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let mut out = Vec::new();
        for page in deploy_ids.chunks(BLAMING_PAGE) {
            // decisions_suspect answers it.
            let mut q = QueryBuilder::new(format!(
                "SELECT {DECISION_COLUMNS} FROM decisions \
                 WHERE suspect_deploy_id IS NOT NULL AND suspect_deploy_id IN ("
            ));
            for (i, id) in page.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push_arg(*id);
            }
            q.push(") AND verdict = 'rollback' ORDER BY id LIMIT ")
                .push(BLAMING_CAP);
            let rows = q.build().fetch_all(&self.pool).await?;
            for row in &rows {
                out.push(Self::decision_row(row)?);
            }
        }
        out.sort_by_key(|d| d.id);
        out.truncate(BLAMING_CAP);
        Ok(out)
    }

    #[instrument(level = "debug", skip_all, fields(release = decision.release, scope = decision.scope))]
    async fn record_release_decision(
        &self,
        decision: &NewReleaseDecision,
    ) -> Result<(ReleaseDecision, bool), StoreError> {
        let done = sqlx::query(
            "INSERT INTO release_decisions (release, scope, decision_id, decided_at, body)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (release, scope) DO NOTHING",
        )
        .arg(&decision.release)
        .arg(&decision.scope)
        .arg(decision.decision_id)
        .arg(Ts(decision.decided_at))
        .arg(Json(&decision.body))
        .execute(&self.pool)
        .await?;
        let inserted = D::rows_affected(&done) > 0;
        let standing = self
            .release_decisions(&decision.release)
            .await?
            .into_iter()
            .find(|d| d.scope == decision.scope)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "release decision {} {} vanished",
                    decision.release, decision.scope
                ))
            })?;
        Ok((standing, inserted))
    }

    #[instrument(level = "debug", skip_all, fields(release))]
    async fn release_decisions(&self, release: &str) -> Result<Vec<ReleaseDecision>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, release, scope, decision_id, decided_at, body FROM release_decisions
             WHERE release = $1 ORDER BY id",
        )
        .arg(release)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReleaseDecision {
                    id: row.col("id")?,
                    release: row.col("release")?,
                    scope: row.col("scope")?,
                    decision_id: row.col("decision_id")?,
                    decided_at: row.col::<Ts>("decided_at")?.0,
                    check: row.col::<Json<serde_json::Value>>("body")?.0,
                })
            })
            .collect()
    }
}

#[async_trait]
impl<D: Dialect> FreezeStore for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    #[instrument(level = "debug", skip_all)]
    async fn active_freezes(&self, now: DateTime<Utc>) -> Result<Vec<Freeze>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, scope, reason, created_by, created_at, expires_at FROM freezes
             WHERE lifted_at IS NULL AND created_at <= $1 AND (expires_at IS NULL OR expires_at > $1)
             ORDER BY id",
        )
        .arg(Ts(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::freeze).collect()
    }

    #[instrument(skip_all, fields(scope = freeze.scope, decision = freeze.decision_id))]
    async fn create_freeze(
        &self,
        freeze: &NewFreeze,
        now: DateTime<Utc>,
    ) -> Result<FreezeRecord, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO freezes (scope, reason, created_by, decision_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {FREEZE_COLUMNS}"
        )))
        .arg(&freeze.scope)
        .arg(&freeze.reason)
        .arg(&freeze.created_by)
        .arg(freeze.decision_id)
        .arg(Ts(now))
        .arg(freeze.expires_at.map(Ts))
        .fetch_one(&mut *tx)
        .await?;
        let record = Self::freeze_row(&row)?;
        let details = serde_json::to_value(&record)?;
        Self::audit(
            &mut tx,
            now,
            &freeze.created_by,
            "freeze.created",
            record.freeze.id,
            &details,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    #[instrument(skip_all, fields(freeze = id))]
    async fn lift_freeze(
        &self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FreezeRecord>, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let lifted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE freezes SET lifted_at = $2, lifted_by = $3
             WHERE id = $1 AND lifted_at IS NULL RETURNING {FREEZE_COLUMNS}"
        )))
        .arg(id)
        .arg(Ts(now))
        .arg(by)
        .fetch_optional(&mut *tx)
        .await?;
        let record = match lifted {
            Some(row) => {
                let record = Self::freeze_row(&row)?;
                let details = serde_json::to_value(&record)?;
                Self::audit(&mut tx, now, by, "freeze.lifted", id, &details).await?;
                Some(record)
            }
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {FREEZE_COLUMNS} FROM freezes WHERE id = $1"
            )))
            .arg(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(Self::freeze_row)
            .transpose()?,
        };
        tx.commit().await?;
        Ok(record)
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_freezes(
        &self,
        active_at: Option<DateTime<Utc>>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FreezeRecord>, StoreError> {
        let mut q = QueryBuilder::new(format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE TRUE"));
        if let Some(now) = active_at {
            q.push(" AND lifted_at IS NULL AND created_at <= ")
                .push_arg(Ts(now))
                .push(" AND (expires_at IS NULL OR expires_at > ")
                .push_arg(Ts(now))
                .push(")");
        }
        if let Some(before) = before_id {
            q.push(" AND id < ").push_arg(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push(limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(Self::freeze_row).collect()
    }
}

/// How a plan is asked for: PostgreSQL's, as JSON, of the statement that follows.
pub(super) const EXPLAIN: &str = "EXPLAIN (FORMAT JSON) ";

impl SqlStore<Postgres> {
    /// The plan of `q` (a list's query behind [`EXPLAIN`]), parameters bound.
    pub(super) async fn explain(
        &self,
        mut q: QueryBuilder<Postgres>,
    ) -> Result<serde_json::Value, StoreError> {
        let row = q.build().fetch_one(&self.pool).await?;
        Ok(row.col::<Json<serde_json::Value>>("QUERY PLAN")?.0)
    }

    /// The plan of [`DecisionStore::list_decisions`]' query, as
    /// [`SqlStore::explain_list_alerts`].
    pub async fn explain_list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<serde_json::Value, StoreError> {
        self.explain(Self::list_decisions_sql(EXPLAIN, query, DECISION_COLUMNS))
            .await
    }

    /// The plan of [`DecisionStore::standing_decisions`]' query, as
    /// [`SqlStore::explain_list_alerts`].
    pub async fn explain_standing_decisions(
        &self,
        after_target: Option<&str>,
        limit: u32,
    ) -> Result<serde_json::Value, StoreError> {
        let q = Self::standing_decisions_sql(EXPLAIN, after_target, Some(limit), false);
        self.explain(q).await
    }
}
