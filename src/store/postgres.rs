//! The PostgreSQL store: production and multi-replica deployments.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use tracing::instrument;

use super::{
    ACTION_COLUMNS, ACTION_DONE_STATES, ALERT_COLUMNS, AUDIT_COLUMNS, ActionFinish, ActionQuery,
    ActionRecord, ActionTransition, AlertQuery, AuditEvent, CLAIMABLE_STATES, DECISION_COLUMNS,
    DEPLOY_COLUMNS, DecisionQuery, DeployCursor, DeployQuery, DeployWrite, FREEZE_COLUMNS,
    FreezeRecord, IngestOutcome, Lease, NOTIFICATION_COLUMNS, NewAction, NewDecision, NewFreeze,
    NewNotification, NotificationFinish, NotificationRecord, PlannedBatch, ROLLBACK_ACTION_KINDS,
    Receipt, Store, StoreError, StoredAlert, StoredDecision, StoredDeploy, finish_columns,
    healthy_statuses_sql, linked_target_sql, notification_finish_columns,
};
use crate::domain::{
    AlertStatus, Deploy, DeploySource, Freeze, Labels, Notification, Signal, TargetRef,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Deadlocks and serialization failures are retried this many times.
const MAX_ATTEMPTS: usize = 3;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects now, so that a wrong URL or a database that is down fails at start.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Unavailable)?;
        Self::connect_with(options, max_connections).await
    }

    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let pool = pool_options(max_connections).connect_with(options).await?;
        Ok(Self { pool })
    }

    /// Connects on first use; `ping` reports whether the database is reachable.
    pub fn connect_lazy_with(options: PgConnectOptions, max_connections: u32) -> Self {
        Self {
            pool: pool_options(max_connections).connect_lazy_with(options),
        }
    }

    async fn try_record(
        &self,
        batch: &[Notification],
        plan: &PlannedBatch<'_>,
    ) -> Result<Vec<IngestOutcome>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;

        let n = plan.receipts.len();
        let (mut sources, mut keys, mut groups, mut bodies, mut times, mut dups) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (key, notification, count) in &plan.receipts {
            sources.push(notification.source.as_str());
            keys.push(key.as_str());
            groups.push(notification.group_key.as_str());
            bodies.push(notification.raw.as_str());
            times.push(notification.received_at);
            dups.push(*count as i64 - 1);
        }
        let rows = sqlx::query(
            "INSERT INTO receipts
                 (source, dedupe_key, group_key, body, received_at, last_received_at, duplicate_count)
             SELECT s, k, g, b, r, r, d
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[])
                  AS t(s, k, g, b, r, d)
             ON CONFLICT (dedupe_key) DO UPDATE SET
                 duplicate_count = receipts.duplicate_count + EXCLUDED.duplicate_count + 1,
                 last_received_at = GREATEST(receipts.last_received_at, EXCLUDED.last_received_at)
             RETURNING id, dedupe_key, duplicate_count",
        )
        .bind(&sources)
        .bind(&keys)
        .bind(&groups)
        .bind(&bodies)
        .bind(&times)
        .bind(&dups)
        .fetch_all(&mut *tx)
        .await?;

        let mut receipt_ids = vec![0i64; n];
        let mut is_new = vec![false; n];
        for row in rows {
            let key: String = row.try_get("dedupe_key")?;
            let r = plan
                .receipts
                .binary_search_by(|(k, _, _)| k.as_str().cmp(&key))
                .map_err(|_| sqlx::Error::Protocol("receipt key not in batch".into()))?;
            receipt_ids[r] = row.try_get("id")?;
            is_new[r] = row.try_get::<i64, _>("duplicate_count")? == dups[r];
        }

        let alerts = plan.alerts(&receipt_ids, &is_new);
        if !alerts.is_empty() {
            let mut cols = AlertColumns::default();
            for (alert, notification, receipt_id) in &alerts {
                cols.fingerprint.push(alert.fingerprint.as_str());
                cols.starts_at.push(alert.starts_at);
                cols.ends_at.push(alert.ends_at);
                cols.status.push(alert.status.as_str());
                cols.alertname.push(alert.alertname());
                cols.labels
                    .push(serde_json::to_string(&alert.labels).expect("labels serialise"));
                cols.annotations
                    .push(serde_json::to_string(&alert.annotations).expect("labels serialise"));
                cols.generator_url.push(alert.generator_url.as_str());
                cols.receiver.push(notification.receiver.as_str());
                cols.group_key.push(notification.group_key.as_str());
                cols.receipt_id.push(*receipt_id);
                cols.seen_at.push(notification.received_at);
            }
            sqlx::query(
                "INSERT INTO alerts
                     (fingerprint, starts_at, ends_at, status, alertname, labels, annotations,
                      generator_url, receiver, group_key, first_receipt_id, last_receipt_id,
                      first_seen_at, updated_at)
                 SELECT f, s, e, st, an, l::jsonb, a::jsonb, g, rc, gk, rid, rid, t, t
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::text[], $11::int8[], $12::timestamptz[])
                      AS u(f, s, e, st, an, l, a, g, rc, gk, rid, t)
                 ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                     status = EXCLUDED.status,
                     ends_at = EXCLUDED.ends_at,
                     alertname = EXCLUDED.alertname,
                     labels = EXCLUDED.labels,
                     annotations = EXCLUDED.annotations,
                     generator_url = EXCLUDED.generator_url,
                     receiver = EXCLUDED.receiver,
                     group_key = EXCLUDED.group_key,
                     last_receipt_id = EXCLUDED.last_receipt_id,
                     updated_at = EXCLUDED.updated_at
                 -- Alert::merge: resolution is final.
                 WHERE NOT (alerts.status = 'resolved' AND EXCLUDED.status = 'firing')",
            )
            .bind(&cols.fingerprint)
            .bind(&cols.starts_at)
            .bind(&cols.ends_at)
            .bind(&cols.status)
            .bind(&cols.alertname)
            .bind(&cols.labels)
            .bind(&cols.annotations)
            .bind(&cols.generator_url)
            .bind(&cols.receiver)
            .bind(&cols.group_key)
            .bind(&cols.receipt_id)
            .bind(&cols.seen_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        debug_assert_eq!(batch.len(), plan.outcomes(&receipt_ids, &is_new).len());
        Ok(plan.outcomes(&receipt_ids, &is_new))
    }
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
}

/// Column arrays for one UNNEST insert into `alerts`.
#[derive(Default)]
struct AlertColumns<'a> {
    fingerprint: Vec<&'a str>,
    starts_at: Vec<DateTime<Utc>>,
    ends_at: Vec<Option<DateTime<Utc>>>,
    status: Vec<&'a str>,
    alertname: Vec<&'a str>,
    labels: Vec<String>,
    annotations: Vec<String>,
    generator_url: Vec<&'a str>,
    receiver: Vec<&'a str>,
    group_key: Vec<&'a str>,
    receipt_id: Vec<i64>,
    seen_at: Vec<DateTime<Utc>>,
}

/// Deadlock (40P01) or serialization failure (40001): safe to run the transaction again.
fn is_retryable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    #[instrument(skip_all, fields(batch = batch.len()))]
    async fn record_notifications(
        &self,
        batch: &[Notification],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let plan = PlannedBatch::new(batch);
        let mut attempt = 1;
        loop {
            match self.try_record(batch, &plan).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(err) if attempt < MAX_ATTEMPTS && is_retryable(&err) => {
                    tracing::debug!(attempt, error = %err, "retrying ingest transaction");
                    attempt += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn receipt(&self, id: i64) -> Result<Option<Receipt>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, group_key, body, received_at, last_received_at, duplicate_count
             FROM receipts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Receipt {
                id: row.try_get("id")?,
                source: row.try_get("source")?,
                group_key: row.try_get("group_key")?,
                body: row.try_get("body")?,
                received_at: row.try_get("received_at")?,
                last_received_at: row.try_get("last_received_at")?,
                duplicate_count: row.try_get("duplicate_count")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    async fn receipts_between(
        &self,
        source: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Receipt>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, group_key, body, received_at, last_received_at, duplicate_count
             FROM receipts
             WHERE source = $1 AND received_at >= $2 AND received_at < $3 AND id > $4
             ORDER BY id LIMIT $5",
        )
        .bind(source)
        .bind(since)
        .bind(until)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Receipt {
                    id: row.try_get("id")?,
                    source: row.try_get("source")?,
                    group_key: row.try_get("group_key")?,
                    body: row.try_get("body")?,
                    received_at: row.try_get("received_at")?,
                    last_received_at: row.try_get("last_received_at")?,
                    duplicate_count: row.try_get("duplicate_count")?,
                })
            })
            .collect()
    }

    async fn list_alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let mut q = QueryBuilder::new(format!(
            "SELECT {ALERT_COLUMNS}
             FROM alerts WHERE TRUE"
        ));
        if let Some(status) = query.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(name) = &query.alertname {
            q.push(" AND alertname = ").push_bind(name.clone());
        }
        if !query.labels.is_empty() {
            let matcher: Labels = query.labels.iter().cloned().collect();
            if matcher.len() < query.labels.len() {
                // Two different values for one label can never both match.
                return Ok(Vec::new());
            }
            q.push(" AND labels @> ")
                .push_bind(Json(matcher))
                .push("::jsonb");
        }
        if let Some(since) = query.since {
            q.push(" AND starts_at >= ").push_bind(since);
        }
        if let Some(until) = query.until {
            q.push(" AND starts_at < ").push_bind(until);
        }
        if let Some(before) = query.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(alert_from_row).collect()
    }

    #[instrument(skip_all, fields(deploys = deploys.len()))]
    async fn record_deploys(
        &self,
        deploys: &[Deploy],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeployWrite>, StoreError> {
        let mut attempt = 1;
        loop {
            match self.try_record_deploys(deploys, now).await {
                Ok(writes) => return Ok(writes),
                Err(err) if attempt < MAX_ATTEMPTS && is_retryable(&err) => attempt += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn list_deploys(&self, query: &DeployQuery) -> Result<Vec<StoredDeploy>, StoreError> {
        let mut q = QueryBuilder::new(format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE TRUE"));
        if let Some(target) = &query.target {
            q.push(" AND target = ").push_bind(target.clone());
        }
        if let Some(namespace) = &query.namespace {
            q.push(" AND namespace = ").push_bind(namespace.clone());
        }
        if let Some(name) = &query.name {
            q.push(" AND name = ").push_bind(name.clone());
        }
        if let Some(source) = query.source {
            q.push(" AND source = ").push_bind(source.as_str());
        }
        if let Some(environment) = &query.environment {
            q.push(" AND environment = ").push_bind(environment.clone());
        }
        if let Some(since) = query.since {
            q.push(" AND started_at >= ").push_bind(since);
        }
        if let Some(until) = query.until {
            q.push(" AND started_at < ").push_bind(until);
        }
        if let Some(after) = query.after {
            q.push(" AND (started_at, id) < (")
                .push_bind(after.started_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(deploy_from_row).collect()
    }

    async fn target_history(
        &self,
        target: &TargetRef,
        after: Option<DeployCursor>,
        limit: u32,
    ) -> Result<Vec<StoredDeploy>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE {} \
             AND ($4::timestamptz IS NULL OR (started_at, id) < ($4, $5)) \
             ORDER BY started_at DESC, id DESC LIMIT $6",
            linked_target_sql("$1", "$2", "$3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(target.key())
            .bind(&target.cluster)
            .bind(&target.namespace)
            .bind(after.map(|c| c.started_at))
            .bind(after.map_or(0, |c| c.id))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(deploy_from_row).collect()
    }

    async fn deploys_between(
        &self,
        target: &TargetRef,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredDeploy>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE {} \
             AND started_at >= $4 AND started_at < $5 ORDER BY started_at DESC, id DESC",
            linked_target_sql("$1", "$2", "$3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(target.key())
            .bind(&target.cluster)
            .bind(&target.namespace)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(deploy_from_row).collect()
    }

    async fn last_healthy_before(
        &self,
        deploy: &StoredDeploy,
    ) -> Result<Option<StoredDeploy>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys \
             WHERE target = $1 AND source = $2 AND (started_at, id) < ($3, $4) \
               AND status IN ({}) \
             ORDER BY started_at DESC, id DESC LIMIT 1",
            healthy_statuses_sql()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&deploy.target_key)
            .bind(deploy.deploy.source.as_str())
            .bind(deploy.deploy.started_at)
            .bind(deploy.id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(deploy_from_row).transpose()
    }

    async fn alerts_for_evaluation(
        &self,
        since: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS}
             FROM alerts WHERE (status = 'firing' OR ends_at >= $1) AND id > $2
             ORDER BY id LIMIT $3"
        )))
        .bind(since)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn alerts_by_key(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let (fingerprints, starts): (Vec<&str>, Vec<DateTime<Utc>>) =
            keys.iter().map(|(f, s)| (f.as_str(), *s)).unzip();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS}
             FROM alerts WHERE (fingerprint, starts_at) IN
                 (SELECT * FROM UNNEST($1::text[], $2::timestamptz[]))
             ORDER BY id"
        )))
        .bind(fingerprints)
        .bind(starts)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn record_signal(
        &self,
        signal: &Signal,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
        let source = serde_json::to_value(signal.source)?;
        let source = source.as_str().unwrap_or("api");
        let existing: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, started_at FROM signals WHERE source = $1 AND fingerprint = $2
               AND (source = 'api' OR started_at = $3)
             ORDER BY id DESC LIMIT 1 FOR UPDATE",
        )
        .bind(source)
        .bind(&signal.fingerprint)
        .bind(signal.started_at)
        .fetch_optional(&mut *tx)
        .await?;
        let result = match existing {
            Some((id, started_at)) => {
                let kept = Signal {
                    started_at,
                    ..signal.clone()
                };
                let details = Json(serde_json::to_value(&kept)?);
                sqlx::query(
                    "UPDATE signals SET value = $2, baseline = $3, ended_at = $4,
                         observed_at = $5, details = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(signal.value)
                .bind(signal.baseline)
                .bind(signal.ended_at)
                .bind(now)
                .bind(&details)
                .execute(&mut *tx)
                .await?;
                (id, false)
            }
            None => {
                let details = Json(serde_json::to_value(signal)?);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO signals (target, kind, scope, dependency, value, baseline, source,
                         fingerprint, started_at, ended_at, observed_at, details)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                )
                .bind(signal.target.as_ref().map(TargetRef::key))
                .bind(signal.kind.as_str())
                .bind(signal.scope.as_str())
                .bind(&signal.dependency)
                .bind(signal.value)
                .bind(signal.baseline)
                .bind(source)
                .bind(&signal.fingerprint)
                .bind(signal.started_at)
                .bind(signal.ended_at)
                .bind(now)
                .bind(&details)
                .fetch_one(&mut *tx)
                .await?;
                (id, true)
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    async fn signals_for_evaluation(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Signal>, StoreError> {
        let rows: Vec<Json<Signal>> = sqlx::query_scalar(
            "SELECT details FROM signals WHERE ended_at IS NULL OR ended_at >= $1 ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|j| j.0).collect())
    }

    async fn record_decision(
        &self,
        decision: &NewDecision,
    ) -> Result<(StoredDecision, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialises evaluations of one target across replicas until commit.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('decision:' || $1))")
            .bind(&decision.target_key)
            .execute(&mut *tx)
            .await?;
        // The standing decision's verdict and hash decide; its evidence (large, under a
        // flood of alerts) is read only when it stays the standing one.
        let latest: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, verdict, inputs_hash FROM decisions WHERE target = $1
             ORDER BY id DESC LIMIT 1",
        )
        .bind(&decision.target_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, verdict, inputs_hash)) = latest
            && verdict == decision.verdict
            && inputs_hash == decision.inputs_hash
        {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = $1"
            )))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok((decision_from_row(&row)?, false));
        }
        let row = sqlx::query(
            "INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 suspect_deploy_id, rollback_to_id, evidence, decided_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id, decided_at",
        )
        .bind(&decision.target_key)
        .bind(&decision.verdict)
        .bind(&decision.reason)
        .bind(&decision.inputs_hash)
        .bind(&decision.policy_version)
        .bind(decision.suspect_deploy_id)
        .bind(decision.rollback_to_id)
        .bind(Json(&decision.decision))
        .bind(decision.decided_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        // Built from what was written rather than decoded back from the row.
        let stored = StoredDecision {
            id: row.try_get("id")?,
            target_key: decision.target_key.clone(),
            verdict: decision.verdict.clone(),
            reason: decision.reason.clone(),
            inputs_hash: decision.inputs_hash.clone(),
            policy_version: decision.policy_version.clone(),
            suspect_deploy_id: decision.suspect_deploy_id,
            rollback_to_id: decision.rollback_to_id,
            decided_at: row.try_get("decided_at")?,
            decision: decision.decision.clone(),
        };
        Ok((stored, true))
    }

    async fn latest_decision(
        &self,
        target_key: &str,
    ) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE target = $1 ORDER BY id DESC LIMIT 1"
        )))
        .bind(target_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decision_from_row).transpose()
    }

    async fn decision(&self, id: i64) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decision_from_row).transpose()
    }

    async fn list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let mut q = QueryBuilder::new(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE TRUE"
        ));
        if let Some(target) = &query.target {
            q.push(" AND target = ").push_bind(target.clone());
        }
        if let Some(verdict) = &query.verdict {
            q.push(" AND verdict = ").push_bind(verdict.clone());
        }
        if let Some(since) = query.since {
            q.push(" AND decided_at >= ").push_bind(since);
        }
        if let Some(until) = query.until {
            q.push(" AND decided_at < ").push_bind(until);
        }
        if let Some(before) = query.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(decision_from_row).collect()
    }

    async fn unsettled_targets(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT target FROM decisions
             WHERE id IN (SELECT MAX(id) FROM decisions GROUP BY target) AND verdict <> 'ok'
             ORDER BY target",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn active_freezes(&self, now: DateTime<Utc>) -> Result<Vec<Freeze>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, scope, reason, created_by, created_at, expires_at FROM freezes
             WHERE lifted_at IS NULL AND created_at <= $1 AND (expires_at IS NULL OR expires_at > $1)
             ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Freeze {
                    id: row.try_get("id")?,
                    scope: row.try_get("scope")?,
                    reason: row.try_get("reason")?,
                    created_by: row.try_get("created_by")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .collect()
    }

    async fn enqueue_action(
        &self,
        action: &NewAction,
        now: DateTime<Utc>,
    ) -> Result<(ActionRecord, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state, params,
                 expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {ACTION_COLUMNS}"
        )))
        .bind(action.decision_id)
        .bind(&action.target_key)
        .bind(&action.kind)
        .bind(&action.mode)
        .bind(&action.idempotency_key)
        .bind(&action.state)
        .bind(Json(&action.params))
        .bind(action.expires_at)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = inserted {
            let record = action_from_row(&row)?;
            let created = serde_json::json!({
                "decision_id": record.decision_id, "state": record.state, "mode": record.mode,
            });
            audit(
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
                insert_notification(&mut tx, &n, now).await?;
            }
            tx.commit().await?;
            return Ok((record, true));
        }
        tx.commit().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE idempotency_key = $1"
        )))
        .bind(&action.idempotency_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((action_from_row(&row)?, false))
    }

    async fn claim_action(
        &self,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        // SKIP LOCKED: concurrent workers each take a different row, none waits.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET state = 'running', lease_owner = $1, lease_expires_at = $2,
                 attempts = attempts + 1, updated_at = $3, resumed = (state = 'running')
             WHERE id = (
                 SELECT id FROM actions
                 WHERE (state IN ({CLAIMABLE_STATES})
                        AND (next_attempt_at IS NULL OR next_attempt_at <= $3))
                    OR (state = 'running' AND lease_expires_at <= $3)
                 ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING {ACTION_COLUMNS}"
        )))
        .bind(owner)
        .bind(now + lease)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    async fn finish_action(
        &self,
        id: i64,
        owner: &str,
        finish: &ActionFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let cols = finish_columns(finish);
        let done = sqlx::query(
            "UPDATE actions SET state = $3, result = COALESCE($4, result), last_error = $5,
                 next_attempt_at = $6,
                 executed_at = CASE WHEN $8 THEN $7 ELSE executed_at END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $7
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(cols.state)
        .bind(cols.result.map(Json))
        .bind(cols.error)
        .bind(cols.retry_at)
        .bind(now)
        .bind(cols.executed)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn decision_actions(&self, decision_id: i64) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE decision_id = $1 ORDER BY id"
        )))
        .bind(decision_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    async fn expire_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE actions SET lease_expires_at = $2
             WHERE lease_owner = $1 AND state = 'running' AND lease_expires_at > $2",
        )
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_actions(&self, query: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions
             WHERE ($1::text IS NULL OR target = $1) AND ($2::text IS NULL OR state = $2)
               AND ($3::text IS NULL OR kind = $3) AND ($4::bigint IS NULL OR decision_id = $4)
               AND ($5::bigint IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        )))
        .bind(&query.target)
        .bind(&query.state)
        .bind(&query.kind)
        .bind(query.decision_id)
        .bind(query.before_id)
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    async fn transition_action(
        &self,
        id: i64,
        change: &ActionTransition<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let from: Vec<String> = change.from.iter().map(|s| (*s).to_string()).collect();
        let decided = matches!(change.to, "approved" | "rejected");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET state = $3, updated_at = $4,
                 approved_by = CASE WHEN $5 THEN $6 ELSE approved_by END,
                 approval_comment = CASE WHEN $5 THEN $7 ELSE approval_comment END,
                 next_attempt_at = CASE WHEN $5 THEN NULL ELSE next_attempt_at END
             WHERE id = $1 AND state = ANY($2) RETURNING {ACTION_COLUMNS}"
        )))
        .bind(id)
        .bind(&from)
        .bind(change.to)
        .bind(now)
        .bind(decided)
        .bind(change.actor)
        .bind(change.comment)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let record = action_from_row(&row)?;
        let kind = format!("action.{}", change.to);
        audit(&mut tx, now, change.actor, &kind, id, &change.details).await?;
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn record_audit(
        &self,
        actor: &str,
        kind: &str,
        subject: &str,
        details: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events (at, actor, kind, subject, details)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now)
        .bind(actor)
        .bind(kind)
        .bind(subject)
        .bind(Json(details))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_trail(&self, subjects: &[String]) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE subject = ANY($1) ORDER BY id"
        )))
        .bind(subjects)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    kind: row.try_get("kind")?,
                    subject: row.try_get("subject")?,
                    details: row.try_get::<Json<serde_json::Value>, _>("details")?.0,
                })
            })
            .collect()
    }

    async fn enqueue_notification(
        &self,
        n: &NewNotification,
        now: DateTime<Utc>,
    ) -> Result<(NotificationRecord, bool), StoreError> {
        let inserted = insert_notification(&mut *self.pool.acquire().await?, n, now).await?;
        if let Some(row) = inserted {
            return Ok((notification_from_row(&row)?, true));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE idempotency_key = $1"
        )))
        .bind(&n.idempotency_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((notification_from_row(&row)?, false))
    }

    async fn claim_notification(
        &self,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET status = 'sending', lease_owner = $1,
                 lease_expires_at = $2, attempts = attempts + 1
             WHERE id = (
                 SELECT id FROM notifications
                 WHERE (status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $3))
                    OR (status = 'sending' AND lease_expires_at <= $3)
                 ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING {NOTIFICATION_COLUMNS}"
        )))
        .bind(owner)
        .bind(now + lease)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(notification_from_row).transpose()
    }

    async fn finish_notification(
        &self,
        id: i64,
        owner: &str,
        finish: &NotificationFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (status, response, error, retry_at, delivered) = notification_finish_columns(finish);
        let done = sqlx::query(
            "UPDATE notifications SET status = $3, response = COALESCE($4, response),
                 last_error = $5, next_attempt_at = $6,
                 delivered_at = CASE WHEN $8 THEN $7 ELSE delivered_at END,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
        )
        .bind(id)
        .bind(owner)
        .bind(status)
        .bind(response)
        .bind(error)
        .bind(retry_at)
        .bind(now)
        .bind(delivered)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn decision_notifications(
        &self,
        decision_id: i64,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications
             WHERE decision_id = $1
                OR action_id IN (SELECT id FROM actions WHERE decision_id = $1)
             ORDER BY id"
        )))
        .bind(decision_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notification_from_row).collect()
    }

    async fn create_freeze(
        &self,
        freeze: &NewFreeze,
        now: DateTime<Utc>,
    ) -> Result<FreezeRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO freezes (scope, reason, created_by, decision_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {FREEZE_COLUMNS}"
        )))
        .bind(&freeze.scope)
        .bind(&freeze.reason)
        .bind(&freeze.created_by)
        .bind(freeze.decision_id)
        .bind(now)
        .bind(freeze.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let record = freeze_from_row(&row)?;
        audit(
            &mut tx,
            now,
            &freeze.created_by,
            "freeze.created",
            record.freeze.id,
            &record,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn lift_freeze(
        &self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FreezeRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lifted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE freezes SET lifted_at = $2, lifted_by = $3
             WHERE id = $1 AND lifted_at IS NULL RETURNING {FREEZE_COLUMNS}"
        )))
        .bind(id)
        .bind(now)
        .bind(by)
        .fetch_optional(&mut *tx)
        .await?;
        let record = match lifted {
            Some(row) => {
                let record = freeze_from_row(&row)?;
                audit(&mut tx, now, by, "freeze.lifted", id, &record).await?;
                Some(record)
            }
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {FREEZE_COLUMNS} FROM freezes WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(freeze_from_row)
            .transpose()?,
        };
        tx.commit().await?;
        Ok(record)
    }

    async fn list_freezes(
        &self,
        active_at: Option<DateTime<Utc>>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FreezeRecord>, StoreError> {
        let mut q = QueryBuilder::new(format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE TRUE"));
        if let Some(now) = active_at {
            q.push(" AND lifted_at IS NULL AND created_at <= ")
                .push_bind(now)
                .push(" AND (expires_at IS NULL OR expires_at > ")
                .push_bind(now)
                .push(")");
        }
        if let Some(before) = before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(freeze_from_row).collect()
    }

    async fn automatic_rollbacks(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT executed_at FROM actions
             WHERE target = $1 AND mode = 'auto' AND kind IN ({ROLLBACK_ACTION_KINDS})
               AND state IN ({ACTION_DONE_STATES}) AND executed_at >= $2
             ORDER BY executed_at"
        )))
        .bind(target_key)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        // A session-level advisory lock lives exactly as long as this one connection:
        // a crashed replica's lock goes with its connection.
        let mut conn = self.pool.acquire().await?.detach();
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        if held {
            Ok(Some(Box::new(AdvisoryLease {
                conn: Some(conn),
                name: name.to_string(),
            })))
        } else {
            let _ = sqlx::Connection::close(conn).await;
            Ok(None)
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl PostgresStore {
    async fn try_record_deploys(
        &self,
        deploys: &[Deploy],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeployWrite>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut writes = Vec::with_capacity(deploys.len());
        for deploy in deploys {
            let key = deploy.target.key();
            loop {
                let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {DEPLOY_COLUMNS} FROM deploys \
                     WHERE target = $1 AND source = $2 AND revision = $3 FOR UPDATE"
                )))
                .bind(&key)
                .bind(deploy.source.as_str())
                .bind(&deploy.revision)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = existing {
                    let stored =
                        deploy_from_row(&row).map_err(|e| sqlx::Error::Decode(e.into()))?;
                    let mut merged = stored.deploy.clone();
                    let changed = merged.merge(deploy);
                    if changed {
                        sqlx::query(
                            "UPDATE deploys SET status = $2, environment = $3, region = $4,
                                 version = $5, images = $6, commit_sha = $7, change_cause = $8,
                                 description = $9, helm_release = $10, chart = $11,
                                 chart_version = $12, app_version = $13, pod_template_hash = $14,
                                 link = $15, actor = $16, finished_at = $17, details = $18,
                                 updated_at = $19
                             WHERE id = $1",
                        )
                        .bind(stored.id)
                        .bind(&merged.status)
                        .bind(&merged.environment)
                        .bind(&merged.region)
                        .bind(&merged.version)
                        .bind(Json(&merged.images))
                        .bind(&merged.commit_sha)
                        .bind(&merged.change_cause)
                        .bind(&merged.description)
                        .bind(&merged.helm_release)
                        .bind(&merged.chart)
                        .bind(&merged.chart_version)
                        .bind(&merged.app_version)
                        .bind(&merged.pod_template_hash)
                        .bind(&merged.link)
                        .bind(&merged.actor)
                        .bind(merged.finished_at)
                        .bind(Json(&merged.details))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    writes.push(DeployWrite {
                        id: stored.id,
                        created: false,
                        changed,
                    });
                    break;
                }
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO deploys (target, cluster, namespace, kind, name, source,
                         revision, status, environment, region, version, images, commit_sha,
                         change_cause, description, helm_release, chart, chart_version,
                         app_version, pod_template_hash, link, actor, started_at, finished_at,
                         details, first_seen_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $26)
                     ON CONFLICT (target, source, revision) DO NOTHING
                     RETURNING id",
                )
                .bind(&key)
                .bind(&deploy.target.cluster)
                .bind(&deploy.target.namespace)
                .bind(&deploy.target.kind)
                .bind(&deploy.target.name)
                .bind(deploy.source.as_str())
                .bind(&deploy.revision)
                .bind(&deploy.status)
                .bind(&deploy.environment)
                .bind(&deploy.region)
                .bind(&deploy.version)
                .bind(Json(&deploy.images))
                .bind(&deploy.commit_sha)
                .bind(&deploy.change_cause)
                .bind(&deploy.description)
                .bind(&deploy.helm_release)
                .bind(&deploy.chart)
                .bind(&deploy.chart_version)
                .bind(&deploy.app_version)
                .bind(&deploy.pod_template_hash)
                .bind(&deploy.link)
                .bind(&deploy.actor)
                .bind(deploy.started_at)
                .bind(deploy.finished_at)
                .bind(Json(&deploy.details))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                // None: a concurrent transaction inserted it first; read and merge it.
                if let Some(id) = inserted {
                    writes.push(DeployWrite {
                        id,
                        created: true,
                        changed: true,
                    });
                    break;
                }
            }
        }
        tx.commit().await?;
        Ok(writes)
    }
}

/// A held `pg_try_advisory_lock`, on the connection that took it.
struct AdvisoryLease {
    conn: Option<sqlx::PgConnection>,
    name: String,
}

#[async_trait]
impl Lease for AdvisoryLease {
    async fn still_held(&mut self) -> bool {
        match self.conn.as_mut() {
            Some(conn) => sqlx::query("SELECT 1").execute(conn).await.is_ok(),
            None => false,
        }
    }

    async fn release(mut self: Box<Self>) {
        if let Some(mut conn) = self.conn.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(&self.name)
                .execute(&mut conn)
                .await;
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

/// Records who did what, inside the caller's transaction.
async fn audit(
    tx: &mut sqlx::PgConnection,
    at: DateTime<Utc>,
    actor: &str,
    kind: &str,
    subject_id: i64,
    details: &impl serde::Serialize,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, kind, subject, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(actor)
    .bind(kind)
    .bind(format!(
        "{}:{subject_id}",
        kind.split('.').next().unwrap_or(kind)
    ))
    .bind(Json(serde_json::to_value(details)?))
    .execute(tx)
    .await?;
    Ok(())
}

fn action_from_row(row: &PgRow) -> Result<ActionRecord, StoreError> {
    Ok(ActionRecord {
        id: row.try_get("id")?,
        decision_id: row.try_get("decision_id")?,
        target_key: row.try_get("target")?,
        kind: row.try_get("kind")?,
        mode: row.try_get("mode")?,
        idempotency_key: row.try_get("idempotency_key")?,
        state: row.try_get("state")?,
        params: row.try_get::<Json<serde_json::Value>, _>("params")?.0,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        executed_at: row.try_get("executed_at")?,
        result: row
            .try_get::<Option<Json<serde_json::Value>>, _>("result")?
            .map(|j| j.0),
        last_error: row.try_get("last_error")?,
        approved_by: row.try_get("approved_by")?,
        approval_comment: row.try_get("approval_comment")?,
        expires_at: row.try_get("expires_at")?,
        resumed: row.try_get("resumed")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn notification_from_row(row: &PgRow) -> Result<NotificationRecord, StoreError> {
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        action_id: row.try_get("action_id")?,
        decision_id: row.try_get("decision_id")?,
        channel: row.try_get("channel")?,
        event: row.try_get("event")?,
        payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        response: row.try_get("response")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

fn freeze_from_row(row: &PgRow) -> Result<FreezeRecord, StoreError> {
    Ok(FreezeRecord {
        freeze: Freeze {
            id: row.try_get("id")?,
            scope: row.try_get("scope")?,
            reason: row.try_get("reason")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        },
        decision_id: row.try_get("decision_id")?,
        lifted_at: row.try_get("lifted_at")?,
        lifted_by: row.try_get("lifted_by")?,
    })
}

fn decision_from_row(row: &PgRow) -> Result<StoredDecision, StoreError> {
    Ok(StoredDecision {
        id: row.try_get("id")?,
        target_key: row.try_get("target")?,
        verdict: row.try_get("verdict")?,
        reason: row.try_get("reason")?,
        inputs_hash: row.try_get("inputs_hash")?,
        policy_version: row.try_get("policy_version")?,
        suspect_deploy_id: row.try_get("suspect_deploy_id")?,
        rollback_to_id: row.try_get("rollback_to_id")?,
        decided_at: row.try_get("decided_at")?,
        decision: row.try_get::<Json<serde_json::Value>, _>("evidence")?.0,
    })
}

fn deploy_from_row(row: &PgRow) -> Result<StoredDeploy, StoreError> {
    let source: String = row.try_get("source")?;
    let source = DeploySource::parse(&source)
        .ok_or_else(|| StoreError::Corrupt(format!("deploy source {source:?}")))?;
    let deploy = Deploy {
        target: TargetRef {
            cluster: row.try_get("cluster")?,
            namespace: row.try_get("namespace")?,
            kind: row.try_get("kind")?,
            name: row.try_get("name")?,
        },
        source,
        revision: row.try_get("revision")?,
        status: row.try_get("status")?,
        environment: row.try_get("environment")?,
        region: row.try_get("region")?,
        version: row.try_get("version")?,
        images: row.try_get::<Json<Vec<String>>, _>("images")?.0,
        commit_sha: row.try_get("commit_sha")?,
        change_cause: row.try_get("change_cause")?,
        description: row.try_get("description")?,
        helm_release: row.try_get("helm_release")?,
        chart: row.try_get("chart")?,
        chart_version: row.try_get("chart_version")?,
        app_version: row.try_get("app_version")?,
        pod_template_hash: row.try_get("pod_template_hash")?,
        link: row.try_get("link")?,
        actor: row.try_get("actor")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        details: row.try_get::<Json<serde_json::Value>, _>("details")?.0,
    };
    Ok(StoredDeploy {
        id: row.try_get("id")?,
        target_key: row.try_get("target")?,
        deploy,
        first_seen_at: row.try_get("first_seen_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn alert_from_row(row: &PgRow) -> Result<StoredAlert, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(StoredAlert {
        id: row.try_get("id")?,
        fingerprint: row.try_get("fingerprint")?,
        status: AlertStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("alert status {status:?}")))?,
        alertname: row.try_get("alertname")?,
        labels: row.try_get::<Json<Labels>, _>("labels")?.0,
        annotations: row.try_get::<Json<Labels>, _>("annotations")?.0,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        generator_url: row.try_get("generator_url")?,
        receiver: row.try_get("receiver")?,
        group_key: row.try_get("group_key")?,
        first_receipt_id: row.try_get("first_receipt_id")?,
        last_receipt_id: row.try_get("last_receipt_id")?,
        first_seen_at: row.try_get("first_seen_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a notification unless its idempotency key exists; the new row, if any.
async fn insert_notification(
    tx: &mut sqlx::PgConnection,
    n: &NewNotification,
    now: DateTime<Utc>,
) -> Result<Option<sqlx::postgres::PgRow>, StoreError> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO notifications (action_id, decision_id, channel, event, idempotency_key,
                 payload, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {NOTIFICATION_COLUMNS}"
    )))
    .bind(n.action_id)
    .bind(n.decision_id)
    .bind(&n.channel)
    .bind(&n.event)
    .bind(&n.idempotency_key)
    .bind(Json(&n.payload))
    .bind(now)
    .fetch_optional(tx)
    .await?)
}
