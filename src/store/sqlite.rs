//! The SQLite store: the embedded default, so `rollwarden serve` needs no database
//! server. One file, WAL journal, `synchronous = FULL` so a 2xx survives power loss.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
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
use crate::domain::{AlertStatus, Deploy, DeploySource, Freeze, Notification, Signal, TargetRef};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file that `url` names, e.g.
    /// `sqlite:./rollwarden.db`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    async fn try_record(&self, plan: &PlannedBatch<'_>) -> Result<Vec<IngestOutcome>, sqlx::Error> {
        // IMMEDIATE takes the write lock up front, so a reader never has to upgrade.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = plan.receipts.len();
        let mut receipt_ids = vec![0i64; n];
        let mut is_new = vec![false; n];
        for (r, (key, notification, count)) in plan.receipts.iter().enumerate() {
            let dups = *count as i64 - 1;
            let at = ts(notification.received_at);
            let row = sqlx::query(
                "INSERT INTO receipts
                     (source, dedupe_key, group_key, body, received_at, last_received_at,
                      duplicate_count)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (dedupe_key) DO UPDATE SET
                     duplicate_count = receipts.duplicate_count + excluded.duplicate_count + 1,
                     last_received_at = max(receipts.last_received_at, excluded.last_received_at)
                 RETURNING id, duplicate_count",
            )
            .bind(notification.source.as_str())
            .bind(key)
            .bind(&notification.group_key)
            .bind(&notification.raw)
            .bind(&at)
            .bind(&at)
            .bind(dups)
            .fetch_one(&mut *tx)
            .await?;
            receipt_ids[r] = row.try_get("id")?;
            is_new[r] = row.try_get::<i64, _>("duplicate_count")? == dups;
        }
        for (alert, notification, receipt_id) in plan.alerts(&receipt_ids, &is_new) {
            let seen = ts(notification.received_at);
            sqlx::query(
                "INSERT INTO alerts
                     (fingerprint, starts_at, ends_at, status, alertname, labels, annotations,
                      generator_url, receiver, group_key, first_receipt_id, last_receipt_id,
                      first_seen_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                     status = excluded.status,
                     ends_at = excluded.ends_at,
                     alertname = excluded.alertname,
                     labels = excluded.labels,
                     annotations = excluded.annotations,
                     generator_url = excluded.generator_url,
                     receiver = excluded.receiver,
                     group_key = excluded.group_key,
                     last_receipt_id = excluded.last_receipt_id,
                     updated_at = excluded.updated_at
                 WHERE NOT (alerts.status = 'resolved' AND excluded.status = 'firing')",
            )
            .bind(&alert.fingerprint)
            .bind(ts(alert.starts_at))
            .bind(alert.ends_at.map(ts))
            .bind(alert.status.as_str())
            .bind(alert.alertname())
            .bind(serde_json::to_string(&alert.labels).expect("labels serialise"))
            .bind(serde_json::to_string(&alert.annotations).expect("labels serialise"))
            .bind(&alert.generator_url)
            .bind(&notification.receiver)
            .bind(&notification.group_key)
            .bind(receipt_id)
            .bind(receipt_id)
            .bind(&seen)
            .bind(&seen)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes(&receipt_ids, &is_new))
    }
}

/// The one text form of a timestamp in SQLite: UTC, microseconds, `Z`. Fixed width, so
/// comparing the text compares the instants.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
        Ok(self.try_record(&plan).await?)
    }

    async fn receipt(&self, id: i64) -> Result<Option<Receipt>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, group_key, body, received_at, last_received_at, duplicate_count
             FROM receipts WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Receipt {
            id: row.try_get("id")?,
            source: row.try_get("source")?,
            group_key: row.try_get("group_key")?,
            body: row.try_get("body")?,
            received_at: parse_ts(row.try_get("received_at")?)?,
            last_received_at: parse_ts(row.try_get("last_received_at")?)?,
            duplicate_count: row.try_get("duplicate_count")?,
        }))
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
             WHERE source = ? AND received_at >= ? AND received_at < ? AND id > ?
             ORDER BY id LIMIT ?",
        )
        .bind(source)
        .bind(ts(since))
        .bind(ts(until))
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
                    received_at: parse_ts(row.try_get("received_at")?)?,
                    last_received_at: parse_ts(row.try_get("last_received_at")?)?,
                    duplicate_count: row.try_get("duplicate_count")?,
                })
            })
            .collect()
    }

    async fn list_alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let mut q = QueryBuilder::new(format!(
            "SELECT {ALERT_COLUMNS}
             FROM alerts WHERE 1"
        ));
        if let Some(status) = query.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(name) = &query.alertname {
            q.push(" AND alertname = ").push_bind(name.clone());
        }
        for (name, value) in &query.labels {
            // The path quotes the name, so any label name is a single key.
            q.push(" AND json_extract(labels, '$.\"' || ")
                .push_bind(name.replace('"', "\\\""))
                .push(" || '\"') = ")
                .push_bind(value.clone());
        }
        if let Some(since) = query.since {
            q.push(" AND starts_at >= ").push_bind(ts(since));
        }
        if let Some(until) = query.until {
            q.push(" AND starts_at < ").push_bind(ts(until));
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut writes = Vec::with_capacity(deploys.len());
        for deploy in deploys {
            let key = deploy.target.key();
            let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOY_COLUMNS} FROM deploys \
                 WHERE target = ? AND source = ? AND revision = ?"
            )))
            .bind(&key)
            .bind(deploy.source.as_str())
            .bind(&deploy.revision)
            .fetch_optional(&mut *tx)
            .await?;
            // The write lock taken by BEGIN IMMEDIATE makes read-merge-write atomic.
            let write = match existing {
                Some(row) => {
                    let stored = deploy_from_row(&row)?;
                    let mut merged = stored.deploy.clone();
                    let changed = merged.merge(deploy);
                    if changed {
                        sqlx::query(
                            "UPDATE deploys SET status = ?, environment = ?, region = ?,
                                 version = ?, images = ?, commit_sha = ?, change_cause = ?,
                                 description = ?, helm_release = ?, chart = ?,
                                 chart_version = ?, app_version = ?, pod_template_hash = ?,
                                 link = ?, actor = ?, finished_at = ?, details = ?,
                                 updated_at = ?
                             WHERE id = ?",
                        )
                        .bind(&merged.status)
                        .bind(&merged.environment)
                        .bind(&merged.region)
                        .bind(&merged.version)
                        .bind(serde_json::to_string(&merged.images)?)
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
                        .bind(merged.finished_at.map(ts))
                        .bind(serde_json::to_string(&merged.details)?)
                        .bind(ts(now))
                        .bind(stored.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    DeployWrite {
                        id: stored.id,
                        created: false,
                        changed,
                    }
                }
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO deploys (target, cluster, namespace, kind, name, source,
                             revision, status, environment, region, version, images,
                             commit_sha, change_cause, description, helm_release, chart,
                             chart_version, app_version, pod_template_hash, link, actor,
                             started_at, finished_at, details, first_seen_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?26)
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
                    .bind(serde_json::to_string(&deploy.images)?)
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
                    .bind(ts(deploy.started_at))
                    .bind(deploy.finished_at.map(ts))
                    .bind(serde_json::to_string(&deploy.details)?)
                    .bind(ts(now))
                    .fetch_one(&mut *tx)
                    .await?;
                    DeployWrite {
                        id,
                        created: true,
                        changed: true,
                    }
                }
            };
            writes.push(write);
        }
        tx.commit().await?;
        Ok(writes)
    }

    async fn list_deploys(&self, query: &DeployQuery) -> Result<Vec<StoredDeploy>, StoreError> {
        let mut q = QueryBuilder::new(format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE 1"));
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
            q.push(" AND started_at >= ").push_bind(ts(since));
        }
        if let Some(until) = query.until {
            q.push(" AND started_at < ").push_bind(ts(until));
        }
        if let Some(after) = query.after {
            q.push(" AND (started_at, id) < (")
                .push_bind(ts(after.started_at))
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
             AND (?4 IS NULL OR (started_at, id) < (?4, ?5)) \
             ORDER BY started_at DESC, id DESC LIMIT ?6",
            linked_target_sql("?1", "?2", "?3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(target.key())
            .bind(&target.cluster)
            .bind(&target.namespace)
            .bind(after.map(|c| ts(c.started_at)))
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
             AND started_at >= ?4 AND started_at < ?5 ORDER BY started_at DESC, id DESC",
            linked_target_sql("?1", "?2", "?3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(target.key())
            .bind(&target.cluster)
            .bind(&target.namespace)
            .bind(ts(from))
            .bind(ts(to))
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
             WHERE target = ? AND source = ? AND (started_at, id) < (?, ?) \
               AND status IN ({}) \
             ORDER BY started_at DESC, id DESC LIMIT 1",
            healthy_statuses_sql()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&deploy.target_key)
            .bind(deploy.deploy.source.as_str())
            .bind(ts(deploy.deploy.started_at))
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
             FROM alerts WHERE (status = 'firing' OR ends_at >= ?) AND id > ?
             ORDER BY id LIMIT ?"
        )))
        .bind(ts(since))
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
        // Starts in the text form the rows were written with (`ts`).
        let keys: Vec<(&str, String)> = keys.iter().map(|(f, s)| (f.as_str(), ts(*s))).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS}
             FROM alerts WHERE id IN (
                 SELECT a.id FROM json_each(?1) k
                 JOIN alerts a ON a.fingerprint = k.value ->> 0 AND a.starts_at = k.value ->> 1)
             ORDER BY id"
        )))
        .bind(serde_json::to_string(&keys)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn record_signal(
        &self,
        signal: &Signal,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let source = serde_json::to_value(signal.source)?;
        let source = source.as_str().unwrap_or("api");
        let existing: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, started_at FROM signals WHERE source = ?1 AND fingerprint = ?2
               AND (source = 'api' OR started_at = ?3)
             ORDER BY id DESC LIMIT 1",
        )
        .bind(source)
        .bind(&signal.fingerprint)
        .bind(ts(signal.started_at))
        .fetch_optional(&mut *tx)
        .await?;
        let result = match existing {
            Some((id, started_at)) => {
                let kept = Signal {
                    started_at: parse_ts(&started_at)?,
                    ..signal.clone()
                };
                let details = serde_json::to_string(&kept)?;
                sqlx::query(
                    "UPDATE signals SET value = ?, baseline = ?, ended_at = ?, observed_at = ?,
                         details = ? WHERE id = ?",
                )
                .bind(signal.value)
                .bind(signal.baseline)
                .bind(signal.ended_at.map(ts))
                .bind(ts(now))
                .bind(&details)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                (id, false)
            }
            None => {
                let details = serde_json::to_string(signal)?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO signals (target, kind, scope, dependency, value, baseline, source,
                         fingerprint, started_at, ended_at, observed_at, details)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(signal.target.as_ref().map(TargetRef::key))
                .bind(signal.kind.as_str())
                .bind(signal.scope.as_str())
                .bind(&signal.dependency)
                .bind(signal.value)
                .bind(signal.baseline)
                .bind(source)
                .bind(&signal.fingerprint)
                .bind(ts(signal.started_at))
                .bind(signal.ended_at.map(ts))
                .bind(ts(now))
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
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT details FROM signals WHERE ended_at IS NULL OR ended_at >= ? ORDER BY id",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|d| serde_json::from_str(d).map_err(StoreError::from))
            .collect()
    }

    async fn record_decision(
        &self,
        decision: &NewDecision,
    ) -> Result<(StoredDecision, bool), StoreError> {
        // BEGIN IMMEDIATE: the single writer serialises evaluations of every target.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // The standing decision's verdict and hash decide; its evidence (large, under a
        // flood of alerts) is read only when it stays the standing one.
        let latest: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, verdict, inputs_hash FROM decisions WHERE target = ?
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
                "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?"
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, decided_at",
        )
        .bind(&decision.target_key)
        .bind(&decision.verdict)
        .bind(&decision.reason)
        .bind(&decision.inputs_hash)
        .bind(&decision.policy_version)
        .bind(decision.suspect_deploy_id)
        .bind(decision.rollback_to_id)
        .bind(serde_json::to_string(&decision.decision)?)
        .bind(ts(decision.decided_at))
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
            decided_at: parse_ts(row.try_get("decided_at")?)?,
            decision: decision.decision.clone(),
        };
        Ok((stored, true))
    }

    async fn latest_decision(
        &self,
        target_key: &str,
    ) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE target = ? ORDER BY id DESC LIMIT 1"
        )))
        .bind(target_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decision_from_row).transpose()
    }

    async fn decision(&self, id: i64) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?"
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
        let mut q = QueryBuilder::new(format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE 1"));
        if let Some(target) = &query.target {
            q.push(" AND target = ").push_bind(target.clone());
        }
        if let Some(verdict) = &query.verdict {
            q.push(" AND verdict = ").push_bind(verdict.clone());
        }
        if let Some(since) = query.since {
            q.push(" AND decided_at >= ").push_bind(ts(since));
        }
        if let Some(until) = query.until {
            q.push(" AND decided_at < ").push_bind(ts(until));
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
        let now = ts(now);
        let rows = sqlx::query(
            "SELECT id, scope, reason, created_by, created_at, expires_at FROM freezes
             WHERE lifted_at IS NULL AND created_at <= ?1 AND (expires_at IS NULL OR expires_at > ?1)
             ORDER BY id",
        )
        .bind(&now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let expires_at: Option<String> = row.try_get("expires_at")?;
                Ok(Freeze {
                    id: row.try_get("id")?,
                    scope: row.try_get("scope")?,
                    reason: row.try_get("reason")?,
                    created_by: row.try_get("created_by")?,
                    created_at: parse_ts(row.try_get("created_at")?)?,
                    expires_at: expires_at.as_deref().map(parse_ts).transpose()?,
                })
            })
            .collect()
    }

    async fn enqueue_action(
        &self,
        action: &NewAction,
        now: DateTime<Utc>,
    ) -> Result<(ActionRecord, bool), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state, params,
                 expires_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {ACTION_COLUMNS}"
        )))
        .bind(action.decision_id)
        .bind(&action.target_key)
        .bind(&action.kind)
        .bind(&action.mode)
        .bind(&action.idempotency_key)
        .bind(&action.state)
        .bind(serde_json::to_string(&action.params)?)
        .bind(action.expires_at.map(ts))
        .bind(ts(now))
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
            "SELECT {ACTION_COLUMNS} FROM actions WHERE idempotency_key = ?"
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
        // The single writer (BEGIN IMMEDIATE) makes pick-and-lease atomic.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now_ts = ts(now);
        let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM actions
             WHERE (state IN ({CLAIMABLE_STATES})
                    AND (next_attempt_at IS NULL OR next_attempt_at <= ?1))
                OR (state = 'running' AND lease_expires_at <= ?1)
             ORDER BY id LIMIT 1"
        )))
        .bind(&now_ts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            tx.commit().await?;
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET state = 'running', lease_owner = ?1, lease_expires_at = ?2,
                 attempts = attempts + 1, updated_at = ?3, resumed = (state = 'running')
             WHERE id = ?4 RETURNING {ACTION_COLUMNS}"
        )))
        .bind(owner)
        .bind(ts(now + lease))
        .bind(&now_ts)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(action_from_row(&row)?))
    }

    async fn finish_action(
        &self,
        id: i64,
        owner: &str,
        finish: &ActionFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let cols = finish_columns(finish);
        let result = cols.result.map(serde_json::to_string).transpose()?;
        let done = sqlx::query(
            "UPDATE actions SET state = ?3, result = COALESCE(?4, result), last_error = ?5,
                 next_attempt_at = ?6,
                 executed_at = CASE WHEN ?8 THEN ?7 ELSE executed_at END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = ?7
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(cols.state)
        .bind(result)
        .bind(cols.error)
        .bind(cols.retry_at.map(ts))
        .bind(ts(now))
        .bind(cols.executed)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn decision_actions(&self, decision_id: i64) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE decision_id = ? ORDER BY id"
        )))
        .bind(decision_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    async fn expire_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = ts(now);
        let done = sqlx::query(
            "UPDATE actions SET lease_expires_at = ?2
             WHERE lease_owner = ?1 AND state = 'running' AND lease_expires_at > ?2",
        )
        .bind(owner)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_actions(&self, query: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM actions
             WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR state = ?2)
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR decision_id = ?4)
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6"
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let from = serde_json::to_string(change.from)?;
        let decided = matches!(change.to, "approved" | "rejected");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET state = ?3, updated_at = ?4,
                 approved_by = CASE WHEN ?5 THEN ?6 ELSE approved_by END,
                 approval_comment = CASE WHEN ?5 THEN ?7 ELSE approval_comment END,
                 next_attempt_at = CASE WHEN ?5 THEN NULL ELSE next_attempt_at END
             WHERE id = ?1 AND state IN (SELECT value FROM json_each(?2))
             RETURNING {ACTION_COLUMNS}"
        )))
        .bind(id)
        .bind(&from)
        .bind(change.to)
        .bind(ts(now))
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
            "INSERT INTO audit_events (at, actor, kind, subject, details) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(ts(now))
        .bind(actor)
        .bind(kind)
        .bind(subject)
        .bind(serde_json::to_string(details)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_trail(&self, subjects: &[String]) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events
             WHERE subject IN (SELECT value FROM json_each(?1)) ORDER BY id"
        )))
        .bind(serde_json::to_string(subjects)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    at: parse_ts(row.try_get("at")?)?,
                    actor: row.try_get("actor")?,
                    kind: row.try_get("kind")?,
                    subject: row.try_get("subject")?,
                    details: serde_json::from_str(row.try_get("details")?)?,
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
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE idempotency_key = ?"
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now_ts = ts(now);
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM notifications
             WHERE (status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?1))
                OR (status = 'sending' AND lease_expires_at <= ?1)
             ORDER BY id LIMIT 1",
        )
        .bind(&now_ts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            tx.commit().await?;
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET status = 'sending', lease_owner = ?1,
                 lease_expires_at = ?2, attempts = attempts + 1
             WHERE id = ?3 RETURNING {NOTIFICATION_COLUMNS}"
        )))
        .bind(owner)
        .bind(ts(now + lease))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(notification_from_row(&row)?))
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
            "UPDATE notifications SET status = ?3, response = COALESCE(?4, response),
                 last_error = ?5, next_attempt_at = ?6,
                 delivered_at = CASE WHEN ?8 THEN ?7 ELSE delivered_at END,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'sending'",
        )
        .bind(id)
        .bind(owner)
        .bind(status)
        .bind(response)
        .bind(error)
        .bind(retry_at.map(ts))
        .bind(ts(now))
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
             WHERE decision_id = ?1
                OR action_id IN (SELECT id FROM actions WHERE decision_id = ?1)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO freezes (scope, reason, created_by, decision_id, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {FREEZE_COLUMNS}"
        )))
        .bind(&freeze.scope)
        .bind(&freeze.reason)
        .bind(&freeze.created_by)
        .bind(freeze.decision_id)
        .bind(ts(now))
        .bind(freeze.expires_at.map(ts))
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let lifted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE freezes SET lifted_at = ?2, lifted_by = ?3
             WHERE id = ?1 AND lifted_at IS NULL RETURNING {FREEZE_COLUMNS}"
        )))
        .bind(id)
        .bind(ts(now))
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
                "SELECT {FREEZE_COLUMNS} FROM freezes WHERE id = ?"
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
        let mut q = QueryBuilder::new(format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE 1"));
        if let Some(now) = active_at {
            q.push(" AND lifted_at IS NULL AND created_at <= ")
                .push_bind(ts(now))
                .push(" AND (expires_at IS NULL OR expires_at > ")
                .push_bind(ts(now))
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
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT executed_at FROM actions
             WHERE target = ? AND mode = 'auto' AND kind IN ({ROLLBACK_ACTION_KINDS})
               AND state IN ({ACTION_DONE_STATES}) AND executed_at >= ?
             ORDER BY executed_at"
        )))
        .bind(target_key)
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|t| parse_ts(t)).collect()
    }

    async fn try_lease(&self, _name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        // An SQLite file serves one rollwarden process (the single-node setup), which is
        // therefore always the one that runs singleton jobs.
        Ok(Some(Box::new(SingleNodeLease)))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

struct SingleNodeLease;

#[async_trait]
impl Lease for SingleNodeLease {
    async fn still_held(&mut self) -> bool {
        true
    }

    async fn release(self: Box<Self>) {}
}

/// Records who did what, inside the caller's transaction.
async fn audit(
    tx: &mut sqlx::SqliteConnection,
    at: DateTime<Utc>,
    actor: &str,
    kind: &str,
    subject_id: i64,
    details: &impl serde::Serialize,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, kind, subject, details) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(ts(at))
    .bind(actor)
    .bind(kind)
    .bind(format!(
        "{}:{subject_id}",
        kind.split('.').next().unwrap_or(kind)
    ))
    .bind(serde_json::to_string(details)?)
    .execute(tx)
    .await?;
    Ok(())
}

fn action_from_row(row: &SqliteRow) -> Result<ActionRecord, StoreError> {
    let opt_ts = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.as_deref().map(parse_ts).transpose()
    };
    let result: Option<String> = row.try_get("result")?;
    Ok(ActionRecord {
        id: row.try_get("id")?,
        decision_id: row.try_get("decision_id")?,
        target_key: row.try_get("target")?,
        kind: row.try_get("kind")?,
        mode: row.try_get("mode")?,
        idempotency_key: row.try_get("idempotency_key")?,
        state: row.try_get("state")?,
        params: serde_json::from_str(row.try_get("params")?)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: opt_ts("next_attempt_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: opt_ts("lease_expires_at")?,
        executed_at: opt_ts("executed_at")?,
        result: result.as_deref().map(serde_json::from_str).transpose()?,
        last_error: row.try_get("last_error")?,
        approved_by: row.try_get("approved_by")?,
        approval_comment: row.try_get("approval_comment")?,
        expires_at: opt_ts("expires_at")?,
        resumed: row.try_get("resumed")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
    })
}

fn notification_from_row(row: &SqliteRow) -> Result<NotificationRecord, StoreError> {
    let opt_ts = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.as_deref().map(parse_ts).transpose()
    };
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        action_id: row.try_get("action_id")?,
        decision_id: row.try_get("decision_id")?,
        channel: row.try_get("channel")?,
        event: row.try_get("event")?,
        payload: serde_json::from_str(row.try_get("payload")?)?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        response: row.try_get("response")?,
        next_attempt_at: opt_ts("next_attempt_at")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        delivered_at: opt_ts("delivered_at")?,
    })
}

fn freeze_from_row(row: &SqliteRow) -> Result<FreezeRecord, StoreError> {
    let expires_at: Option<String> = row.try_get("expires_at")?;
    let lifted_at: Option<String> = row.try_get("lifted_at")?;
    Ok(FreezeRecord {
        freeze: Freeze {
            id: row.try_get("id")?,
            scope: row.try_get("scope")?,
            reason: row.try_get("reason")?,
            created_by: row.try_get("created_by")?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            expires_at: expires_at.as_deref().map(parse_ts).transpose()?,
        },
        decision_id: row.try_get("decision_id")?,
        lifted_at: lifted_at.as_deref().map(parse_ts).transpose()?,
        lifted_by: row.try_get("lifted_by")?,
    })
}

fn decision_from_row(row: &SqliteRow) -> Result<StoredDecision, StoreError> {
    Ok(StoredDecision {
        id: row.try_get("id")?,
        target_key: row.try_get("target")?,
        verdict: row.try_get("verdict")?,
        reason: row.try_get("reason")?,
        inputs_hash: row.try_get("inputs_hash")?,
        policy_version: row.try_get("policy_version")?,
        suspect_deploy_id: row.try_get("suspect_deploy_id")?,
        rollback_to_id: row.try_get("rollback_to_id")?,
        decided_at: parse_ts(row.try_get("decided_at")?)?,
        decision: serde_json::from_str(row.try_get("evidence")?)?,
    })
}

fn deploy_from_row(row: &SqliteRow) -> Result<StoredDeploy, StoreError> {
    let source: String = row.try_get("source")?;
    let source = DeploySource::parse(&source)
        .ok_or_else(|| StoreError::Corrupt(format!("deploy source {source:?}")))?;
    let finished_at: Option<String> = row.try_get("finished_at")?;
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
        images: serde_json::from_str(row.try_get("images")?)?,
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
        started_at: parse_ts(row.try_get("started_at")?)?,
        finished_at: finished_at.as_deref().map(parse_ts).transpose()?,
        details: serde_json::from_str(row.try_get("details")?)?,
    };
    Ok(StoredDeploy {
        id: row.try_get("id")?,
        target_key: row.try_get("target")?,
        deploy,
        first_seen_at: parse_ts(row.try_get("first_seen_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
    })
}

fn alert_from_row(row: &SqliteRow) -> Result<StoredAlert, StoreError> {
    let status: String = row.try_get("status")?;
    let ends_at: Option<String> = row.try_get("ends_at")?;
    Ok(StoredAlert {
        id: row.try_get("id")?,
        fingerprint: row.try_get("fingerprint")?,
        status: AlertStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("alert status {status:?}")))?,
        alertname: row.try_get("alertname")?,
        labels: serde_json::from_str(row.try_get("labels")?)?,
        annotations: serde_json::from_str(row.try_get("annotations")?)?,
        starts_at: parse_ts(row.try_get("starts_at")?)?,
        ends_at: ends_at.as_deref().map(parse_ts).transpose()?,
        generator_url: row.try_get("generator_url")?,
        receiver: row.try_get("receiver")?,
        group_key: row.try_get("group_key")?,
        first_receipt_id: row.try_get("first_receipt_id")?,
        last_receipt_id: row.try_get("last_receipt_id")?,
        first_seen_at: parse_ts(row.try_get("first_seen_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
    })
}

/// Inserts a notification unless its idempotency key exists; the new row, if any.
async fn insert_notification(
    tx: &mut sqlx::SqliteConnection,
    n: &NewNotification,
    now: DateTime<Utc>,
) -> Result<Option<sqlx::sqlite::SqliteRow>, StoreError> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO notifications (action_id, decision_id, channel, event, idempotency_key,
                 payload, status, created_at)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {NOTIFICATION_COLUMNS}"
    )))
    .bind(n.action_id)
    .bind(n.decision_id)
    .bind(&n.channel)
    .bind(&n.event)
    .bind(&n.idempotency_key)
    .bind(serde_json::to_string(&n.payload)?)
    .bind(ts(now))
    .fetch_optional(tx)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamp_text_sorts_like_time() {
        let a = Utc.with_ymd_and_hms(2026, 8, 22, 9, 0, 0).unwrap();
        let b = a + chrono::Duration::microseconds(1);
        let c = Utc.with_ymd_and_hms(2026, 8, 22, 10, 0, 0).unwrap();
        assert!(ts(a) < ts(b) && ts(b) < ts(c));
        assert_eq!(parse_ts(&ts(b)).unwrap(), b);
    }
}
