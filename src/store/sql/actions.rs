//! The action outbox, the loop guard's record of executed rollbacks, and the audit trail.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, Postgres, QueryBuilder};
use tracing::instrument;

use super::decisions::EXPLAIN;
use super::{BindArg, Dialect, GetCol, PushArg, SqlStore, Ts, placeholders};
use crate::domain::action::ActionKind;
use crate::store::{
    ActionFinish, ActionQuery, ActionRecord, ActionStore, ActionTransition, AuditEvent, NewAction,
    NewNotification, StoreError,
};

/// The columns of an action row, in the order [`SqlStore::action_row`] reads them.
const ACTION_COLUMNS: &str = "id, decision_id, target, kind, mode, idempotency_key, \
     state, params, attempts, next_attempt_at, lease_owner, lease_expires_at, executed_at, \
     result, last_error, approved_by, approval_comment, expires_at, resumed, created_at, \
     updated_at";

/// The columns of an audit row.
const AUDIT_COLUMNS: &str = "id, at, actor, kind, subject, details";

/// The actions a worker may claim at the instant `now` (a placeholder): pending or
/// approved ones that are due, and running ones whose lease expired.
fn claimable_action(now: &str) -> String {
    format!(
        "(state IN ('pending', 'approved') AND (next_attempt_at IS NULL OR next_attempt_at <= {now}))
         OR (state = 'running' AND lease_expires_at <= {now})"
    )
}

/// The states of an action that was carried out.
pub(super) const ACTION_DONE_STATES: &str = "'succeeded', 'verifying', 'verified', 'escalated'";

/// The state and columns an attempt's end writes.
struct FinishColumns<'a> {
    state: &'static str,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
    retry_at: Option<DateTime<Utc>>,
    /// Whether the executor carried it out (sets `executed_at`).
    executed: bool,
}

impl<'a> FinishColumns<'a> {
    fn of(finish: &'a ActionFinish) -> Self {
        let (state, result, error, retry_at, executed) = match finish {
            ActionFinish::Succeeded { result, verify } => (
                if *verify { "verifying" } else { "succeeded" },
                Some(result),
                None,
                None,
                true,
            ),
            ActionFinish::DryRun { result } => ("dry_run", Some(result), None, None, false),
            ActionFinish::Escalated { error, result } => (
                "escalated",
                result.as_ref(),
                Some(error.as_str()),
                None,
                false,
            ),
            ActionFinish::Retry { error, retry_at } => (
                "pending",
                None,
                Some(error.as_str()),
                Some(*retry_at),
                false,
            ),
            ActionFinish::Failed { error } => ("failed", None, Some(error.as_str()), None, false),
        };
        Self {
            state,
            result,
            error,
            retry_at,
            executed,
        }
    }
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    /// `prefix` and the query of [`ActionStore::list_actions`]: newest first, through
    /// actions_state, actions_target or actions_decision when filtered by one.
    fn list_actions_sql(prefix: &str, query: &ActionQuery) -> QueryBuilder<D> {
        let mut q = QueryBuilder::new(format!(
            "{prefix}SELECT {ACTION_COLUMNS} FROM actions WHERE TRUE"
        ));
        if let Some(target) = &query.target {
            q.push(" AND target = ").push_arg(target.clone());
        }
        if let Some(state) = &query.state {
            q.push(" AND state = ").push_arg(state.clone());
        }
        if let Some(kind) = &query.kind {
            q.push(" AND kind = ").push_arg(kind.clone());
        }
        if let Some(decision) = query.decision_id {
            q.push(" AND decision_id = ").push_arg(decision);
        }
        if let Some(before) = query.before_id {
            q.push(" AND id < ").push_arg(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push(query.limit);
        q
    }

    fn action_row(row: &D::Row) -> Result<ActionRecord, StoreError> {
        Ok(ActionRecord {
            id: row.col("id")?,
            decision_id: row.col("decision_id")?,
            target_key: row.col("target")?,
            kind: row.col("kind")?,
            mode: row.col("mode")?,
            idempotency_key: row.col("idempotency_key")?,
            state: row.col("state")?,
            params: row.col::<Json<serde_json::Value>>("params")?.0,
            attempts: row.col("attempts")?,
            next_attempt_at: row.col::<Option<Ts>>("next_attempt_at")?.map(|t| t.0),
            lease_owner: row.col("lease_owner")?,
            lease_expires_at: row.col::<Option<Ts>>("lease_expires_at")?.map(|t| t.0),
            executed_at: row.col::<Option<Ts>>("executed_at")?.map(|t| t.0),
            result: row
                .col::<Option<Json<serde_json::Value>>>("result")?
                .map(|j| j.0),
            last_error: row.col("last_error")?,
            approved_by: row.col("approved_by")?,
            approval_comment: row.col("approval_comment")?,
            expires_at: row.col::<Option<Ts>>("expires_at")?.map(|t| t.0),
            resumed: row.col("resumed")?,
            created_at: row.col::<Ts>("created_at")?.0,
            updated_at: row.col::<Ts>("updated_at")?.0,
        })
    }

    /// Records who did what, inside the caller's transaction: `kind` `action.approved`
    /// is about subject `action:{subject_id}`.
    pub(super) async fn audit(
        tx: &mut D::Connection,
        at: DateTime<Utc>,
        actor: &str,
        kind: &str,
        subject_id: i64,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let subject = format!("{}:{subject_id}", kind.split('.').next().unwrap_or(kind));
        Self::insert_audit(tx, at, actor, kind, &subject, details).await
    }

    fn audit_row(row: &D::Row) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            id: row.col("id")?,
            at: row.col::<Ts>("at")?.0,
            actor: row.col("actor")?,
            kind: row.col("kind")?,
            subject: row.col("subject")?,
            details: row.col::<Json<serde_json::Value>>("details")?.0,
        })
    }

    async fn insert_audit(
        conn: &mut D::Connection,
        at: DateTime<Utc>,
        actor: &str,
        kind: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events (at, actor, kind, subject, details)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .arg(Ts(at))
        .arg(actor)
        .arg(kind)
        .arg(subject)
        .arg(Json(details))
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> ActionStore for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    #[instrument(skip_all, fields(
        decision = action.decision_id, target = action.target_key, kind = action.kind,
    ))]
    async fn enqueue_action(
        &self,
        action: &NewAction,
        now: DateTime<Utc>,
    ) -> Result<(ActionRecord, bool), StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state, params,
                 expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {ACTION_COLUMNS}"
        )))
        .arg(action.decision_id)
        .arg(&action.target_key)
        .arg(&action.kind)
        .arg(&action.mode)
        .arg(&action.idempotency_key)
        .arg(&action.state)
        .arg(Json(&action.params))
        .arg(action.expires_at.map(Ts))
        .arg(Ts(now))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = inserted {
            let record = Self::action_row(&row)?;
            let created = serde_json::json!({
                "decision_id": record.decision_id, "state": record.state, "mode": record.mode,
            });
            Self::audit(
                &mut tx,
                now,
                "rollwarden",
                "action.created",
                record.id,
                &created,
            )
            .await?;
            for n in &action.notify {
                let n = NewNotification {
                    action_id: Some(record.id),
                    idempotency_key: format!("action:{}|{}", record.id, n.idempotency_key),
                    ..n.clone()
                };
                Self::insert_notification(&mut tx, &n, now).await?;
            }
            tx.commit().await?;
            return Ok((record, true));
        }
        tx.commit().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE idempotency_key = $1"
        )))
        .arg(&action.idempotency_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((Self::action_row(&row)?, false))
    }

    #[instrument(level = "debug", skip_all, fields(owner = owner, action = tracing::field::Empty))]
    async fn claim_action(
        &self,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        if !self
            .may_claim("actions", &claimable_action("$1"), now)
            .await?
        {
            return Ok(None);
        }
        // One statement picks and leases, so no two workers get the same action.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET state = 'running', lease_owner = $1, lease_expires_at = $2,
                 attempts = attempts + 1, updated_at = $3, resumed = (state = 'running')
             WHERE id = (
                 SELECT id FROM actions WHERE {}
                 ORDER BY id{} LIMIT 1)
             RETURNING {ACTION_COLUMNS}",
            claimable_action("$3"),
            Self::skip_locked()
        )))
        .arg(owner)
        .arg(Ts(now + lease))
        .arg(Ts(now))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = &row {
            tracing::Span::current().record("action", row.col::<i64>("id")?);
        }
        row.as_ref().map(Self::action_row).transpose()
    }

    #[instrument(skip_all, fields(action = id, owner = owner))]
    async fn finish_action(
        &self,
        id: i64,
        owner: &str,
        finish: &ActionFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let cols = FinishColumns::of(finish);
        let done = sqlx::query(
            "UPDATE actions SET state = $3, result = COALESCE($4, result), last_error = $5,
                 next_attempt_at = $6,
                 executed_at = CASE WHEN $8 THEN $7 ELSE executed_at END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $7
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .arg(id)
        .arg(owner)
        .arg(cols.state)
        .arg(cols.result.map(Json))
        .arg(cols.error)
        .arg(cols.retry_at.map(Ts))
        .arg(Ts(now))
        .arg(cols.executed)
        .execute(&self.pool)
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    #[instrument(level = "debug", skip_all, fields(state))]
    async fn count_actions(&self, state: &str, cap: u32) -> Result<u64, StoreError> {
        // actions_state (state, id) answers it; the cap bounds the walk.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM actions WHERE state = $1 LIMIT {cap}) AS capped"
        )))
        .arg(state)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.col::<i64>("n")?).unwrap_or(0))
    }

    #[instrument(level = "debug", skip_all, fields(decisions = decision_ids.len()))]
    async fn decision_actions(
        &self,
        decision_ids: &[i64],
    ) -> Result<Vec<ActionRecord>, StoreError> {
        if decision_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE decision_id IN ({}) ORDER BY id",
            placeholders(1, decision_ids.len())
        )));
        for id in decision_ids {
            q = q.arg(*id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(Self::action_row).collect()
    }

    #[instrument(skip_all, fields(owner = owner))]
    async fn expire_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE actions SET lease_expires_at = $2
             WHERE lease_owner = $1 AND state = 'running' AND lease_expires_at > $2",
        )
        .arg(owner)
        .arg(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(D::rows_affected(&done))
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_actions(&self, query: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = Self::list_actions_sql("", query)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::action_row).collect()
    }

    #[instrument(skip_all, fields(action = id, to = change.to, actor = change.actor))]
    async fn transition_action(
        &self,
        id: i64,
        change: &ActionTransition<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        if change.from.is_empty() {
            return Ok(None);
        }
        let mut tx = D::begin_write(&self.pool).await?;
        let decided = matches!(change.to, "approved" | "rejected");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET state = $2, updated_at = $3,
                 approved_by = CASE WHEN $4 THEN $5 ELSE approved_by END,
                 approval_comment = CASE WHEN $4 THEN $6 ELSE approval_comment END,
                 next_attempt_at = CASE WHEN $4 THEN NULL ELSE next_attempt_at END
             WHERE id = $1 AND state IN ({}) RETURNING {ACTION_COLUMNS}",
            placeholders(7, change.from.len())
        )))
        .arg(id)
        .arg(change.to)
        .arg(Ts(now))
        .arg(decided)
        .arg(change.actor)
        .arg(change.comment);
        for state in change.from {
            q = q.arg(*state);
        }
        let Some(row) = q.fetch_optional(&mut *tx).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        let record = Self::action_row(&row)?;
        let kind = format!("action.{}", change.to);
        Self::audit(&mut tx, now, change.actor, &kind, id, &change.details).await?;
        tx.commit().await?;
        Ok(Some(record))
    }

    #[instrument(level = "debug", skip_all, fields(target = target_key))]
    async fn automatic_rollbacks(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        // Which kinds roll back is the domain's to say (`ActionKind::rolls_back`), not a
        // list here: `command:NAME` and `webhook:NAME` are open-ended.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT kind, executed_at FROM actions
             WHERE target = $1 AND mode = 'auto'
               AND state IN ({ACTION_DONE_STATES}) AND executed_at >= $2
             ORDER BY executed_at"
        )))
        .arg(target_key)
        .arg(Ts(since))
        .fetch_all(&self.pool)
        .await?;
        let mut executed = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.col("kind")?;
            if ActionKind::parse(&kind).is_some_and(|k| k.rolls_back()) {
                executed.push(row.col::<Ts>("executed_at")?.0);
            }
        }
        Ok(executed)
    }

    #[instrument(skip_all, fields(subject = subject, kind = kind))]
    async fn record_audit(
        &self,
        actor: &str,
        kind: &str,
        subject: &str,
        details: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::insert_audit(&mut conn, now, actor, kind, subject, details).await
    }

    #[instrument(level = "debug", skip_all, fields(subjects = subjects.len()))]
    async fn audit_trail(&self, subjects: &[String]) -> Result<Vec<AuditEvent>, StoreError> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE subject IN ({}) ORDER BY id",
            placeholders(1, subjects.len())
        )));
        for subject in subjects {
            q = q.arg(subject.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(Self::audit_row).collect()
    }

    #[instrument(level = "debug", skip_all, fields(after))]
    async fn audit_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE id > $1 ORDER BY id LIMIT {limit}"
        )))
        .arg(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::audit_row).collect()
    }

    async fn audit_event_ids_after(&self, after: i64, limit: u32) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM audit_events WHERE id > $1 ORDER BY id LIMIT {limit}"
        )))
        .arg(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.col("id")?)).collect()
    }

    async fn last_audit_event_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.col("id")?)
    }
}

impl SqlStore<Postgres> {
    /// The plan of [`ActionStore::list_actions`]' query, as
    /// [`SqlStore::explain_list_alerts`].
    pub async fn explain_list_actions(
        &self,
        query: &ActionQuery,
    ) -> Result<serde_json::Value, StoreError> {
        self.explain(Self::list_actions_sql(EXPLAIN, query)).await
    }
}
