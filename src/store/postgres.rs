//! The PostgreSQL store: production and multi-replica deployments.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use tracing::instrument;

use super::{AlertQuery, IngestOutcome, PlannedBatch, Receipt, Store, StoreError, StoredAlert};
use crate::domain::{AlertStatus, Labels, Notification};

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

    async fn list_alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let mut q = QueryBuilder::new(
            "SELECT id, fingerprint, status, alertname, labels, annotations, starts_at, ends_at,
                    generator_url, receiver, group_key, first_receipt_id, last_receipt_id,
                    first_seen_at, updated_at
             FROM alerts WHERE TRUE",
        );
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

    async fn close(&self) {
        self.pool.close().await;
    }
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
