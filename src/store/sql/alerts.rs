//! Receipts, alerts and posted signals: what ingest writes and the engine reads.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, Postgres, QueryBuilder, Sqlite};
use tracing::instrument;

use super::decisions::EXPLAIN;
use super::{BindArg, Dialect, GetCol, Page, PushArg, SqlStore, Ts, page_end, page_start};
use crate::domain::{Alert, AlertStatus, Labels, Notification, Signal, TargetRef};
use crate::store::batch::PlannedBatch;
use crate::store::{
    AlertQuery, AlertStore, EvaluationAlert, IngestOutcome, Receipt, StoreError, StoredAlert,
};

/// The columns of an alert row, in the order [`SqlStore::alert_row`] reads them.
pub(crate) const ALERT_COLUMNS: &str = "id, fingerprint, status, alertname, labels, annotations, \
     starts_at, ends_at, generator_url, receiver, group_key, first_receipt_id, last_receipt_id, \
     first_seen_at, updated_at";

/// What an evaluation reads of an alert row ([`EvaluationAlert`]): nine of the
/// fifteen columns. The canary reads take a busy target's thousand rows at a time, and
/// on SQLite every column of every row is copied from the statement to the caller.
pub(crate) const EVALUATION_COLUMNS: &str =
    "id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, updated_at";

/// How an alert insert begins, with the backend's `extra` columns (`, name…`); the
/// dialects add the rows.
pub(crate) fn alert_upsert(extra: &str) -> String {
    format!(
        "INSERT INTO alerts
         (fingerprint, starts_at, ends_at, status, alertname, labels, annotations,
          generator_url, receiver, group_key, first_receipt_id, last_receipt_id,
          first_seen_at, updated_at, target{extra})"
    )
}

/// How an alert insert ends, its `extra` columns set too (`, name = EXCLUDED.name…`):
/// a known occurrence is merged by [`crate::domain::Alert::merge`]'s rule (resolution
/// is final).
pub(crate) fn alert_on_conflict(extra: &str) -> String {
    format!(
        "ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
         status = EXCLUDED.status,
         ends_at = EXCLUDED.ends_at,
         alertname = EXCLUDED.alertname,
         labels = EXCLUDED.labels,
         annotations = EXCLUDED.annotations,
         generator_url = EXCLUDED.generator_url,
         receiver = EXCLUDED.receiver,
         group_key = EXCLUDED.group_key,
         last_receipt_id = EXCLUDED.last_receipt_id,
         updated_at = EXCLUDED.updated_at,
         target = EXCLUDED.target{extra}
     WHERE NOT (alerts.status = 'resolved' AND EXCLUDED.status = 'firing')"
    )
}

const RECEIPT_COLUMNS: &str =
    "id, source, group_key, body, received_at, last_received_at, duplicate_count";

/// A re-delivery moves an alert's `updated_at` only when it is older than this: HA
/// duplicates seconds apart then write nothing.
pub(crate) const REDELIVERY_GRANULARITY_SECS: i64 = 60;

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    /// Records that `notification`, a duplicate of a stored receipt, was delivered again:
    /// the firing alerts it carries were re-sent (`repeat_interval`), so they are not
    /// stale. Their content is unchanged; only `updated_at` moves.
    async fn redelivered(
        tx: &mut sqlx::Transaction<'static, D>,
        notification: &Notification,
    ) -> Result<(), StoreError> {
        let at = notification.received_at;
        let before = at - chrono::Duration::seconds(REDELIVERY_GRANULARITY_SECS);
        let mut firing: Vec<_> = notification
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| (a.fingerprint.as_str(), a.starts_at))
            .collect();
        // One order for every transaction, as the inserts keep.
        firing.sort_unstable();
        for (fingerprint, starts_at) in firing {
            sqlx::query(
                "UPDATE alerts SET updated_at = $3
                 WHERE fingerprint = $1 AND starts_at = $2 AND status = 'firing'
                   AND updated_at < $4",
            )
            .arg(fingerprint)
            .arg(Ts(starts_at))
            .arg(Ts(at))
            .arg(Ts(before))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

impl<D: Dialect> SqlStore<D> {
    /// `prefix` and the query of [`AlertStore::list_alerts`]: newest first, each filter
    /// and the cursor served by an index. `None` when no alert can match.
    fn list_alerts_sql(prefix: &str, query: &AlertQuery) -> Option<QueryBuilder<D>> {
        // A range that ends is read through alerts_starts_at (see Page); labels
        // otherwise through the backend's index for them, if it has one.
        let page = Page {
            table: "alerts",
            columns: ALERT_COLUMNS,
            time: "starts_at",
            since: query.since,
            until: query.until,
            before: query.before_id,
            limit: query.limit,
            via: D::LABELS_VIA.filter(|_| !query.labels.is_empty()),
        };
        let mut q = page_start(prefix, &page);
        if let Some(status) = query.status {
            q.push(" AND status = ").push_arg(status.as_str());
        }
        if let Some(name) = &query.alertname {
            q.push(" AND alertname = ").push_arg(name.clone());
        }
        if !D::push_label_matchers(&mut q, &query.labels) {
            return None;
        }
        page_end(&mut q, &page);
        Some(q)
    }

    /// A row of [`ALERT_COLUMNS`]: [`SqlStore::evaluation_row`]'s columns and the
    /// receipt bookkeeping.
    pub(crate) fn alert_row(row: &D::Row) -> Result<StoredAlert, StoreError> {
        let EvaluationAlert {
            id,
            updated_at,
            alert,
        } = Self::evaluation_row(row)?;
        Ok(StoredAlert {
            id,
            fingerprint: alert.fingerprint,
            status: alert.status,
            alertname: row.col("alertname")?,
            labels: alert.labels,
            annotations: alert.annotations,
            starts_at: alert.starts_at,
            ends_at: alert.ends_at,
            generator_url: alert.generator_url,
            receiver: row.col("receiver")?,
            group_key: row.col("group_key")?,
            first_receipt_id: row.col("first_receipt_id")?,
            last_receipt_id: row.col("last_receipt_id")?,
            first_seen_at: row.col::<Ts>("first_seen_at")?.0,
            updated_at,
            // The API sets it; the store knows no clock.
            stale: false,
        })
    }

    /// A row of [`EVALUATION_COLUMNS`].
    fn evaluation_row(row: &D::Row) -> Result<EvaluationAlert, StoreError> {
        let status: String = row.col("status")?;
        Ok(EvaluationAlert {
            id: row.col("id")?,
            updated_at: row.col::<Ts>("updated_at")?.0,
            alert: Alert {
                fingerprint: row.col("fingerprint")?,
                status: AlertStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("alert status {status:?}")))?,
                labels: row.col::<Json<Labels>>("labels")?.0,
                annotations: row.col::<Json<Labels>>("annotations")?.0,
                starts_at: row.col::<Ts>("starts_at")?.0,
                ends_at: row.col::<Option<Ts>>("ends_at")?.map(|t| t.0),
                generator_url: row.col("generator_url")?,
            },
        })
    }

    fn receipt_row(row: &D::Row) -> Result<Receipt, StoreError> {
        Ok(Receipt {
            id: row.col("id")?,
            source: row.col("source")?,
            group_key: row.col("group_key")?,
            body: row.col("body")?,
            received_at: row.col::<Ts>("received_at")?.0,
            last_received_at: row.col::<Ts>("last_received_at")?.0,
            duplicate_count: row.col("duplicate_count")?,
        })
    }
}

#[async_trait]
impl<D: Dialect> AlertStore for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    #[instrument(skip_all, fields(batch = batch.len()))]
    async fn record_notifications(
        &self,
        batch: &[Notification],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let plan = PlannedBatch::new(batch);
        self.retrying(|| async {
            // One statement when the backend can (PostgreSQL: a round trip, not four).
            if let Some(inserted) = D::insert_batch_at_once(&self.pool, &plan).await? {
                return Ok(plan.outcomes(inserted));
            }
            let mut tx = D::begin_write(&self.pool).await?;
            let inserted = D::insert_batch(&mut tx, &plan).await?;
            for ((_, notification, _), new) in plan.receipts.iter().zip(&inserted.is_new) {
                if !new {
                    Self::redelivered(&mut tx, notification).await?;
                }
            }
            tx.commit().await?;
            Ok(plan.outcomes(inserted))
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(receipt = id))]
    async fn receipt(&self, id: i64) -> Result<Option<Receipt>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts WHERE id = $1"
        )))
        .arg(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::receipt_row).transpose()
    }

    #[instrument(level = "debug", skip_all, fields(source = source, after = after_id))]
    async fn receipts_between(
        &self,
        source: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Receipt>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts
             WHERE source = $1 AND received_at >= $2 AND received_at < $3 AND id > $4
             ORDER BY id LIMIT {limit}"
        )))
        .arg(source)
        .arg(Ts(since))
        .arg(Ts(until))
        .arg(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::receipt_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let Some(mut q) = Self::list_alerts_sql("", query) else {
            return Ok(Vec::new());
        };
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(Self::alert_row).collect()
    }

    #[instrument(level = "debug", skip_all, fields(after = after, limit = limit))]
    async fn alerts_for_evaluation(
        &self,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EvaluationAlert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVALUATION_COLUMNS}
             FROM alerts
             WHERE ((status = 'firing' AND updated_at >= $2)
                    OR (status = 'resolved' AND ends_at >= $1))
               AND id > $3
             ORDER BY id LIMIT {limit}"
        )))
        .arg(Ts(since))
        .arg(Ts(fresh_since))
        .arg(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::evaluation_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn target_alerts_for_evaluation(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
    ) -> Result<Vec<EvaluationAlert>, StoreError> {
        // One branch per index range (alerts_target, alerts_target_ended), for the
        // target and for the unmapped rows, so that both backends read ranges only. No
        // ORDER BY: SQLite would rather walk alerts_status, in id order, than sort.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVALUATION_COLUMNS} FROM alerts
             WHERE target = $1 AND status = 'firing' AND updated_at >= $3
             UNION ALL
             SELECT {EVALUATION_COLUMNS} FROM alerts
             WHERE target = $1 AND status = 'resolved' AND ends_at >= $2
             UNION ALL
             SELECT {EVALUATION_COLUMNS} FROM alerts
             WHERE target IS NULL AND status = 'firing' AND updated_at >= $3
             UNION ALL
             SELECT {EVALUATION_COLUMNS} FROM alerts
             WHERE target IS NULL AND status = 'resolved' AND ends_at >= $2"
        )))
        .arg(target_key)
        .arg(Ts(since))
        .arg(Ts(fresh_since))
        .fetch_all(&self.pool)
        .await?;
        let mut alerts = rows
            .iter()
            .map(Self::evaluation_row)
            .collect::<Result<Vec<_>, _>>()?;
        alerts.sort_unstable_by_key(|a| a.id);
        Ok(alerts)
    }

    #[instrument(level = "debug", skip_all, fields(limit = limit))]
    async fn untargeted_alerts_for_evaluation(
        &self,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<EvaluationAlert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM (
                 SELECT {EVALUATION_COLUMNS} FROM alerts
                 WHERE target = '*' AND status = 'firing' AND updated_at >= $2
                 ORDER BY updated_at DESC, id DESC LIMIT {limit}) AS firing
             UNION ALL
             SELECT {EVALUATION_COLUMNS} FROM alerts
             WHERE target = '*' AND status = 'resolved' AND ends_at >= $1"
        )))
        .arg(Ts(since))
        .arg(Ts(fresh_since))
        .fetch_all(&self.pool)
        .await?;
        let mut alerts = rows
            .iter()
            .map(Self::evaluation_row)
            .collect::<Result<Vec<_>, _>>()?;
        alerts.sort_unstable_by_key(|a| a.id);
        Ok(alerts)
    }

    #[instrument(skip_all)]
    async fn reset_alert_targets(&self, classifier: &str) -> Result<bool, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let row = sqlx::query("SELECT classifier FROM alert_mapping WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        let current: Option<String> = row.map(|r| r.col("classifier")).transpose()?;
        if current.as_deref() == Some(classifier) {
            return Ok(false);
        }
        sqlx::query("UPDATE alerts SET target = NULL WHERE target IS NOT NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO alert_mapping (id, classifier) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET classifier = EXCLUDED.classifier",
        )
        .arg(classifier)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    #[instrument(level = "debug", skip_all, fields(after = after, limit = limit))]
    async fn unmapped_alerts(
        &self,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EvaluationAlert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVALUATION_COLUMNS}
             FROM alerts
             WHERE target IS NULL
               AND ((status = 'firing' AND updated_at >= $2)
                    OR (status = 'resolved' AND ends_at >= $1))
               AND id > $3
             ORDER BY id LIMIT {limit}"
        )))
        .arg(Ts(since))
        .arg(Ts(fresh_since))
        .arg(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::evaluation_row).collect()
    }

    #[instrument(skip_all, fields(alerts = targets.len()))]
    async fn map_alert_targets(&self, targets: &[(i64, String)]) -> Result<(), StoreError> {
        let mut by_target: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
        for (id, target) in targets {
            by_target.entry(target).or_default().push(*id);
        }
        let mut tx = D::begin_write(&self.pool).await?;
        for (target, ids) in by_target {
            for ids in ids.chunks(500) {
                let mut q = QueryBuilder::new("UPDATE alerts SET target = ");
                q.push_arg(target.to_string());
                q.push(" WHERE target IS NULL AND id IN (");
                let mut first = true;
                for id in ids {
                    if !std::mem::take(&mut first) {
                        q.push(", ");
                    }
                    q.push_arg(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn count_stale_alerts(&self, fresh_since: DateTime<Utc>) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM alerts WHERE status = 'firing' AND updated_at < $1",
        )
        .arg(Ts(fresh_since))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.col::<i64>("n")?).unwrap_or(0))
    }

    #[instrument(level = "debug", skip_all, fields(keys = keys.len()))]
    async fn alerts_by_key(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<EvaluationAlert>, StoreError> {
        let rows = D::alerts_by_key(&self.pool, keys).await?;
        rows.iter().map(Self::evaluation_row).collect()
    }

    #[instrument(skip_all, fields(kind = signal.kind.as_str()))]
    async fn record_signal(
        &self,
        signal: &Signal,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let source = serde_json::to_value(signal.source)?;
        let source = source.as_str().unwrap_or("api");
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, started_at FROM signals WHERE source = $1 AND fingerprint = $2
               AND (source = 'api' OR started_at = $3)
             ORDER BY id DESC LIMIT 1{}",
            Self::for_update()
        )))
        .arg(source)
        .arg(&signal.fingerprint)
        .arg(Ts(signal.started_at))
        .fetch_optional(&mut *tx)
        .await?;
        let result = match existing {
            Some(row) => {
                let id: i64 = row.col("id")?;
                let kept = Signal {
                    started_at: row.col::<Ts>("started_at")?.0,
                    ..signal.clone()
                };
                sqlx::query(
                    "UPDATE signals SET value = $2, baseline = $3, ended_at = $4,
                         observed_at = $5, details = $6 WHERE id = $1",
                )
                .arg(id)
                .arg(signal.value)
                .arg(signal.baseline)
                .arg(signal.ended_at.map(Ts))
                .arg(Ts(now))
                .arg(Json(&serde_json::to_value(&kept)?))
                .execute(&mut *tx)
                .await?;
                (id, false)
            }
            None => {
                let row = sqlx::query(
                    "INSERT INTO signals (target, kind, scope, dependency, value, baseline, source,
                         fingerprint, started_at, ended_at, observed_at, details)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                )
                .arg(signal.target.as_ref().map(TargetRef::key))
                .arg(signal.kind.as_str())
                .arg(signal.scope.as_str())
                .arg(&signal.dependency)
                .arg(signal.value)
                .arg(signal.baseline)
                .arg(source)
                .arg(&signal.fingerprint)
                .arg(Ts(signal.started_at))
                .arg(signal.ended_at.map(Ts))
                .arg(Ts(now))
                .arg(Json(&serde_json::to_value(signal)?))
                .fetch_one(&mut *tx)
                .await?;
                (row.col("id")?, true)
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    #[instrument(level = "debug", skip_all)]
    async fn signals_for_evaluation(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Signal>, StoreError> {
        let rows = sqlx::query(
            "SELECT details FROM signals WHERE ended_at IS NULL OR ended_at >= $1 ORDER BY id",
        )
        .arg(Ts(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.col::<Json<Signal>>("details")?.0))
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn target_signals_for_evaluation(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Signal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, details FROM signals
             WHERE target = $1 AND (ended_at IS NULL OR ended_at >= $2)
             UNION ALL
             SELECT id, details FROM signals
             WHERE target IS NULL AND (ended_at IS NULL OR ended_at >= $2)
             ORDER BY id",
        )
        .arg(target_key)
        .arg(Ts(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.col::<Json<Signal>>("details")?.0))
            .collect()
    }
}

impl SqlStore<Postgres> {
    /// The plan PostgreSQL makes for the query of [`AlertStore::list_alerts`], exactly
    /// as the store sends it, parameters bound (`EXPLAIN (FORMAT JSON)`): how a test
    /// shows that the list is read through an index. `Invalid` when the query matches
    /// nothing (the store then sends none).
    pub async fn explain_list_alerts(
        &self,
        query: &AlertQuery,
    ) -> Result<serde_json::Value, StoreError> {
        let q = Self::list_alerts_sql(EXPLAIN, query)
            .ok_or_else(|| StoreError::Invalid("the query matches nothing".into()))?;
        self.explain(q).await
    }
}

impl SqlStore<Sqlite> {
    /// SQLite's plan for the query of [`AlertStore::list_alerts`], exactly as the store
    /// sends it (`EXPLAIN QUERY PLAN`), one line per step: how a test shows that a label
    /// list walks the label signatures in id order. `Invalid` when the query matches
    /// nothing.
    pub async fn query_plan_list_alerts(
        &self,
        query: &AlertQuery,
    ) -> Result<Vec<String>, StoreError> {
        let mut q = Self::list_alerts_sql("EXPLAIN QUERY PLAN ", query)
            .ok_or_else(|| StoreError::Invalid("the query matches nothing".into()))?;
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok(row.col::<String>("detail")?))
            .collect()
    }
}
