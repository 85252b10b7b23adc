//! PostgreSQL: production and multi-replica deployments. What its SQL says its own way:
//! batches go in as column arrays (`UNNEST`), workers claim with `SKIP LOCKED`,
//! evaluations and singleton jobs are serialised with advisory locks, labels match by
//! JSON containment, and timestamps are `timestamptz`.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeInfo, PgValueRef,
};
use sqlx::types::Json;
use sqlx::{Decode, Encode, PgConnection, Postgres, QueryBuilder, Row, Transaction, Type};

use super::batch::{Inserted, PlannedBatch};
use super::sql::{Dialect, EVALUATION_COLUMNS, SqlStore, Ts, alert_on_conflict, alert_upsert};
use super::{Lease, StoreError};
use crate::domain::Labels;

impl SqlStore<Postgres> {
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
        Ok(Self::new(pool))
    }

    /// Connects on first use; `ping` reports whether the database is reachable.
    pub fn connect_lazy_with(options: PgConnectOptions, max_connections: u32) -> Self {
        Self::new(pool_options(max_connections).connect_lazy_with(options))
    }
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
}

const INSERT_RECEIPTS: &str = "INSERT INTO receipts
         (source, dedupe_key, group_key, body, received_at, last_received_at, duplicate_count)
     SELECT s, k, g, b, r, r, d
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[])
          AS t(s, k, g, b, r, d)
     ON CONFLICT (dedupe_key) DO UPDATE SET
         duplicate_count = receipts.duplicate_count + EXCLUDED.duplicate_count + 1,
         last_received_at = GREATEST(receipts.last_received_at, EXCLUDED.last_received_at)
     RETURNING id, dedupe_key, duplicate_count";

static INSERT_ALERTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}
         SELECT f, s, e, st, an, l::jsonb, a::jsonb, g, rc, gk, rid, rid, t, t, tg
         FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                     $10::text[], $11::int8[], $12::timestamptz[], $13::text[])
              AS u(f, s, e, st, an, l, a, g, rc, gk, rid, t, tg)
         {}
         RETURNING id, fingerprint, starts_at",
        alert_upsert(""),
        alert_on_conflict("")
    )
});

static ALERTS_BY_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVALUATION_COLUMNS}
         FROM alerts WHERE (fingerprint, starts_at) IN
             (SELECT * FROM UNNEST($1::text[], $2::timestamptz[]))
         ORDER BY id"
    )
});

impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const ROW_LOCKS: bool = true;
    const KEYS: &'static str = "jsonb_array_elements_text($1::jsonb) AS k(value)";
    const TARGETS_LATERAL: Option<&'static str> =
        Some("jsonb_to_recordset($1::jsonb) AS k(key text, cluster text, namespace text)");
    const MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

    async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin().await
    }

    async fn lock_target(tx: &mut PgConnection, target: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('decision:' || $1))")
            .bind(target)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Deadlock (40P01) or serialization failure (40001).
    fn is_retryable(err: &sqlx::Error) -> bool {
        err.as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    }

    async fn insert_batch(
        tx: &mut PgConnection,
        plan: &PlannedBatch<'_>,
    ) -> Result<Inserted, StoreError> {
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
        let rows = sqlx::query(INSERT_RECEIPTS)
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
                .map_err(|_| StoreError::Corrupt("receipt key not in batch".into()))?;
            receipt_ids[r] = row.try_get("id")?;
            is_new[r] = row.try_get::<i64, _>("duplicate_count")? == dups[r];
        }

        let alerts = plan.alerts(&receipt_ids, &is_new);
        let mut ids: Vec<Option<i64>> = vec![None; alerts.len()];
        if !alerts.is_empty() {
            let mut cols = AlertColumns::default();
            for planned in &alerts {
                let (alert, notification, receipt_id) =
                    (&planned.alert, planned.notification, &planned.receipt_id);
                cols.target.push(planned.target.as_deref());
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
            let rows = sqlx::query(INSERT_ALERTS.as_str())
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
                .bind(&cols.target)
                .fetch_all(&mut *tx)
                .await?;
            // The rows written (a resolved alert delivered firing again is not), found
            // by their key: the plan is sorted and unique by it.
            for row in rows {
                let key = (
                    row.try_get::<String, _>("fingerprint")?,
                    row.try_get::<DateTime<Utc>, _>("starts_at")?,
                );
                let a = alerts
                    .binary_search_by(|p| {
                        // Stored to the microsecond (as parsed from the wire).
                        (
                            p.alert.fingerprint.as_str(),
                            p.alert.starts_at.trunc_subsecs(6),
                        )
                            .cmp(&(key.0.as_str(), key.1))
                    })
                    .map_err(|_| StoreError::Corrupt("written alert not in batch".into()))?;
                ids[a] = Some(row.try_get("id")?);
            }
        }
        let alerts = alerts
            .into_iter()
            .zip(ids)
            .filter_map(|(planned, id)| Some(planned.written(id?)))
            .collect();
        Ok(Inserted {
            receipt_ids,
            is_new,
            alerts,
        })
    }

    async fn alerts_by_key(
        pool: &PgPool,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let (fingerprints, starts): (Vec<&str>, Vec<DateTime<Utc>>) =
            keys.iter().map(|(f, s)| (f.as_str(), *s)).unzip();
        sqlx::query(ALERTS_BY_KEY.as_str())
            .bind(fingerprints)
            .bind(starts)
            .fetch_all(pool)
            .await
    }

    /// The GIN index on labels (alerts_labels) serves `@>` in any plan.
    const LABELS_VIA: Option<&'static str> = None;

    fn push_label_matchers(q: &mut QueryBuilder<Postgres>, labels: &[(String, String)]) -> bool {
        if labels.is_empty() {
            return true;
        }
        let matcher: Labels = labels.iter().cloned().collect();
        if matcher.len() < labels.len() {
            // Two different values for one label can never both match.
            return false;
        }
        q.push(" AND labels @> ")
            .push_bind(Json(matcher))
            .push("::jsonb");
        true
    }

    /// The labels index takes new entries into its pending list (`fastupdate`,
    /// migration 0008); merging them here, in bulk, costs ingest nothing.
    async fn maintain(pool: &PgPool) -> Result<u64, sqlx::Error> {
        let pages: i64 = sqlx::query_scalar("SELECT gin_clean_pending_list('alerts_labels')")
            .fetch_one(pool)
            .await?;
        Ok(u64::try_from(pages).unwrap_or(0))
    }

    async fn try_lease(pool: &PgPool, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        // A session-level advisory lock lives exactly as long as this one connection:
        // a crashed replica's lock goes with its connection.
        let mut conn = pool.acquire().await?.detach();
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
    target: Vec<Option<&'a str>>,
}

/// A held `pg_try_advisory_lock`, on the connection that took it.
struct AdvisoryLease {
    conn: Option<PgConnection>,
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

/// A timestamp is a `timestamptz`.
impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Ts)
    }
}
