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

use super::batch::{Inserted, PlannedAlert, PlannedBatch};
use super::sql::{
    Dialect, EVALUATION_COLUMNS, REDELIVERY_GRANULARITY_SECS, SqlStore, Ts, alert_on_conflict,
    alert_upsert,
};
use super::{EvaluationAlert, Lease, StoreError};
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

/// The arrays of [`AlertColumns::bind`] as `UNNEST`'s arguments, numbered from `first`.
fn alert_arrays(first: usize) -> String {
    const TYPES: [&str; 13] = [
        "text",
        "timestamptz",
        "timestamptz",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "int8",
        "timestamptz",
        "text",
    ];
    let arrays: Vec<String> = TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    arrays.join(", ")
}

static INSERT_ALERTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}
         SELECT f, s, e, st, an, l::jsonb, a::jsonb, g, rc, gk, rid, rid, t, t, tg
         FROM UNNEST({}) AS u(f, s, e, st, an, l, a, g, rc, gk, rid, t, tg)
         {}
         RETURNING id, fingerprint, starts_at",
        alert_upsert(""),
        alert_arrays(1),
        alert_on_conflict("")
    )
});

/// A whole batch in one statement ([`Dialect::insert_batch_at_once`]): the receipts
/// (`$1`–`$6`, as [`INSERT_RECEIPTS`]); which of them are new (`fresh`: a receipt
/// that was there already comes back with more duplicates than the batch brought); the
/// alert rows (`$7`–`$19`, each with its receipt's ordinal in `$17` instead of an id),
/// written when their receipt is new and in the plan's order (the lock order of every
/// writer), and otherwise re-delivered as `SqlStore::redelivered` does. It answers one
/// row per receipt (`receipt` set) and one per alert row written (`receipt` null).
static INSERT_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH receipt AS ({INSERT_RECEIPTS}),
         fresh AS (
             SELECT receipt.id, i.o, receipt.duplicate_count = i.d AS new
             FROM receipt
             JOIN UNNEST($2::text[], $6::int8[]) WITH ORDINALITY AS i(k, d, o)
               ON i.k = receipt.dedupe_key),
         carried AS (
             SELECT u.*, fresh.id AS rid, fresh.new
             FROM UNNEST({arrays}) WITH ORDINALITY
                  AS u(f, s, e, st, an, l, a, g, rc, gk, ri, t, tg, o)
             JOIN fresh ON fresh.o = u.ri),
         written AS (
             {upsert}
             SELECT f, s, e, st, an, l::jsonb, a::jsonb, g, rc, gk, rid, rid, t, t, tg
             FROM carried WHERE new ORDER BY o
             {on_conflict}
             RETURNING id, fingerprint, starts_at),
         redelivered AS (
             UPDATE alerts SET updated_at = carried.t
             FROM carried
             WHERE NOT carried.new AND carried.st = 'firing'
               AND alerts.fingerprint = carried.f AND alerts.starts_at = carried.s
               AND alerts.status = 'firing'
               AND alerts.updated_at < carried.t - interval '{REDELIVERY_GRANULARITY_SECS} seconds')
         SELECT o AS receipt, id, new, NULL::text AS fingerprint, NULL::timestamptz AS starts_at
         FROM fresh
         UNION ALL
         SELECT NULL, id, NULL, fingerprint, starts_at FROM written",
        arrays = alert_arrays(7),
        upsert = alert_upsert(""),
        on_conflict = alert_on_conflict(""),
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
        let receipts = ReceiptColumns::new(plan);
        let rows = receipts
            .bind(sqlx::query(INSERT_RECEIPTS))
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
            is_new[r] = row.try_get::<i64, _>("duplicate_count")? == receipts.dups[r];
        }

        let alerts = plan.alerts(&is_new);
        let mut written = Vec::new();
        if !alerts.is_empty() {
            let cols = AlertColumns::new(&alerts, |planned| receipt_ids[planned.receipt]);
            let rows = cols
                .bind(sqlx::query(INSERT_ALERTS.as_str()))
                .fetch_all(&mut *tx)
                .await?;
            written = rows.iter().map(written_alert).collect::<Result<_, _>>()?;
        }
        Ok(Inserted {
            receipt_ids,
            is_new,
            alerts: with_ids(alerts, written)?,
        })
    }

    async fn insert_batch_at_once(
        pool: &PgPool,
        plan: &PlannedBatch<'_>,
    ) -> Result<Option<Inserted>, StoreError> {
        let Some(alerts) = plan.unshared_alerts() else {
            return Ok(None);
        };
        let n = plan.receipts.len();
        let receipts = ReceiptColumns::new(plan);
        // Each alert row names its receipt by ordinal (`WITH ORDINALITY` counts from 1).
        let cols = AlertColumns::new(&alerts, |planned| planned.receipt as i64 + 1);
        let rows = cols
            .bind(receipts.bind(sqlx::query(INSERT_BATCH.as_str())))
            .fetch_all(pool)
            .await?;
        let mut receipt_ids = vec![0i64; n];
        let mut is_new = vec![false; n];
        let mut answered = 0;
        let mut written = Vec::new();
        for row in &rows {
            match row.try_get::<Option<i64>, _>("receipt")? {
                Some(ordinal) => {
                    let r = usize::try_from(ordinal - 1)
                        .ok()
                        .filter(|&r| r < n)
                        .ok_or_else(|| StoreError::Corrupt("receipt not in batch".into()))?;
                    receipt_ids[r] = row.try_get("id")?;
                    is_new[r] = row.try_get("new")?;
                    answered += 1;
                }
                None => written.push(written_alert(row)?),
            }
        }
        if answered != n {
            return Err(StoreError::Corrupt(format!(
                "{answered} of the batch's {n} receipts came back"
            )));
        }
        Ok(Some(Inserted {
            receipt_ids,
            is_new,
            alerts: with_ids(alerts, written)?,
        }))
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

/// Column arrays for one UNNEST insert into `receipts`, in the plan's order.
struct ReceiptColumns<'a> {
    sources: Vec<&'a str>,
    keys: Vec<&'a str>,
    groups: Vec<&'a str>,
    bodies: Vec<&'a str>,
    times: Vec<DateTime<Utc>>,
    /// How many more times than once each came in the batch: a new receipt's count.
    dups: Vec<i64>,
}

impl<'a> ReceiptColumns<'a> {
    fn new(plan: &'a PlannedBatch<'_>) -> Self {
        let receipts = &plan.receipts;
        Self {
            sources: receipts.iter().map(|(_, n, _)| n.source.as_str()).collect(),
            keys: receipts.iter().map(|(k, _, _)| k.as_str()).collect(),
            groups: receipts
                .iter()
                .map(|(_, n, _)| n.group_key.as_str())
                .collect(),
            bodies: receipts.iter().map(|(_, n, _)| n.raw.as_str()).collect(),
            times: receipts.iter().map(|(_, n, _)| n.received_at).collect(),
            dups: receipts.iter().map(|(_, _, c)| *c as i64 - 1).collect(),
        }
    }

    /// Binds `$1`–`$6` of [`INSERT_RECEIPTS`].
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.sources)
            .bind(&self.keys)
            .bind(&self.groups)
            .bind(&self.bodies)
            .bind(&self.times)
            .bind(&self.dups)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Column arrays for one UNNEST insert into `alerts` ([`alert_arrays`]).
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
    /// The receipt each row came with, as the statement names it (an id or an ordinal).
    receipt: Vec<i64>,
    seen_at: Vec<DateTime<Utc>>,
    target: Vec<Option<&'a str>>,
}

impl<'a> AlertColumns<'a> {
    fn new(alerts: &'a [PlannedAlert<'_>], receipt: impl Fn(&PlannedAlert<'_>) -> i64) -> Self {
        let mut cols = Self {
            fingerprint: Vec::with_capacity(alerts.len()),
            starts_at: Vec::with_capacity(alerts.len()),
            ends_at: Vec::with_capacity(alerts.len()),
            status: Vec::with_capacity(alerts.len()),
            alertname: Vec::with_capacity(alerts.len()),
            labels: Vec::with_capacity(alerts.len()),
            annotations: Vec::with_capacity(alerts.len()),
            generator_url: Vec::with_capacity(alerts.len()),
            receiver: Vec::with_capacity(alerts.len()),
            group_key: Vec::with_capacity(alerts.len()),
            receipt: Vec::with_capacity(alerts.len()),
            seen_at: Vec::with_capacity(alerts.len()),
            target: Vec::with_capacity(alerts.len()),
        };
        for planned in alerts {
            let (alert, notification) = (&planned.alert, planned.notification);
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
            cols.receipt.push(receipt(planned));
            cols.seen_at.push(notification.received_at);
            cols.target.push(planned.target.as_deref());
        }
        cols
    }

    /// Binds the thirteen arrays, in [`alert_arrays`]' order, after what `query` has.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.fingerprint)
            .bind(&self.starts_at)
            .bind(&self.ends_at)
            .bind(&self.status)
            .bind(&self.alertname)
            .bind(&self.labels)
            .bind(&self.annotations)
            .bind(&self.generator_url)
            .bind(&self.receiver)
            .bind(&self.group_key)
            .bind(&self.receipt)
            .bind(&self.seen_at)
            .bind(&self.target)
    }
}

/// The key of an alert row a statement wrote: `(id, fingerprint, starts_at)`.
fn written_alert(row: &PgRow) -> Result<(i64, String, DateTime<Utc>), StoreError> {
    Ok((
        row.try_get("id")?,
        row.try_get("fingerprint")?,
        row.try_get("starts_at")?,
    ))
}

/// The planned rows that were written, with their ids (a resolved alert delivered
/// firing again is not written), found by their key: the plan is sorted and unique by
/// it.
fn with_ids(
    alerts: Vec<PlannedAlert<'_>>,
    written: Vec<(i64, String, DateTime<Utc>)>,
) -> Result<Vec<(usize, EvaluationAlert)>, StoreError> {
    let mut ids: Vec<Option<i64>> = vec![None; alerts.len()];
    for (id, fingerprint, starts_at) in written {
        let a = alerts
            .binary_search_by(|p| {
                // Stored to the microsecond (as parsed from the wire).
                (
                    p.alert.fingerprint.as_str(),
                    p.alert.starts_at.trunc_subsecs(6),
                )
                    .cmp(&(fingerprint.as_str(), starts_at))
            })
            .map_err(|_| StoreError::Corrupt("written alert not in batch".into()))?;
        ids[a] = Some(id);
    }
    Ok(alerts
        .into_iter()
        .zip(ids)
        .filter_map(|(planned, id)| Some(planned.written(id?)))
        .collect())
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
