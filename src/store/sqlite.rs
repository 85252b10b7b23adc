//! SQLite: the embedded default, so `rollwarden serve` needs no database server. One
//! file, WAL journal, `synchronous = FULL` so a 2xx survives power loss. What its SQL
//! says its own way: one writer at a time (`BEGIN IMMEDIATE` takes the write lock up
//! front, so nothing needs row locks), label lists walk a signature of each alert's labels
//! and match with `json_extract`, lists go in as JSON, and timestamps are fixed-width
//! text.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, QueryBuilder, Row, Sqlite, SqliteConnection, Transaction, Type};

use super::batch::{Inserted, PlannedBatch};
use super::sql::{Dialect, EVALUATION_COLUMNS, SqlStore, Ts, alert_on_conflict, alert_upsert};
use super::{Lease, StoreError};
use crate::domain::Labels;

impl SqlStore<Sqlite> {
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
        Ok(Self::new(pool))
    }
}

static ALERTS_BY_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVALUATION_COLUMNS}
         FROM alerts WHERE id IN (
             SELECT a.id FROM json_each(?1) k
             JOIN alerts a ON a.fingerprint = k.value ->> 0 AND a.starts_at = k.value ->> 1)
         ORDER BY id"
    )
});

const INSERT_RECEIPT: &str = "INSERT INTO receipts
         (source, dedupe_key, group_key, body, received_at, last_received_at, duplicate_count)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (dedupe_key) DO UPDATE SET
         duplicate_count = receipts.duplicate_count + excluded.duplicate_count + 1,
         last_received_at = max(receipts.last_received_at, excluded.last_received_at)
     RETURNING id, duplicate_count";

static INSERT_ALERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {}
         RETURNING id",
        alert_upsert(", label_sig"),
        alert_on_conflict(", label_sig = EXCLUDED.label_sig")
    )
});

/// The bits of the label `name`=`value` in a label signature (`label_sig`, migration
/// 0010): two of 64, picked by the first twelve bits of SHA-256 of the name, a NUL and
/// the value. Signatures are stored: a different scheme needs a new column.
fn label_bits(name: &str, value: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(value.as_bytes())
        .finalize();
    let bits = u16::from_le_bytes([digest[0], digest[1]]);
    (1 << (bits & 63)) | (1 << ((bits >> 6) & 63))
}

/// The signature of a set of labels: the union of each label's bits, as SQLite's
/// INTEGER (the bits of an i64). An alert carries every label a list asks for only if
/// its signature holds all of their bits.
fn label_signature<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> i64 {
    let bits = labels
        .into_iter()
        .fold(0u64, |sig, (name, value)| sig | label_bits(name, value));
    i64::from_ne_bytes(bits.to_ne_bytes())
}

/// How many unsigned alerts one [`Dialect::maintain`] signs: a short write lock, every
/// 200 ms, so 100,000 alerts are signed in about 20 s after the migration.
const SIGN_BATCH: i64 = 1000;

impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const ROW_LOCKS: bool = false;
    const KEYS: &'static str = "json_each($1) AS k";
    const TARGETS_LATERAL: Option<&'static str> = None;
    const MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

    /// IMMEDIATE takes the write lock up front, so a reader never has to upgrade, and
    /// read-merge-write is atomic.
    async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The single writer (`BEGIN IMMEDIATE`) serialises evaluations of every target.
    async fn lock_target(_tx: &mut SqliteConnection, _target: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// One writer at a time: no deadlocks to retry (a busy database waits instead).
    fn is_retryable(_err: &sqlx::Error) -> bool {
        false
    }

    async fn insert_batch(
        tx: &mut SqliteConnection,
        plan: &PlannedBatch<'_>,
    ) -> Result<Inserted, StoreError> {
        let n = plan.receipts.len();
        let mut receipt_ids = vec![0i64; n];
        let mut is_new = vec![false; n];
        for (r, (key, notification, count)) in plan.receipts.iter().enumerate() {
            let dups = *count as i64 - 1;
            let at = Ts(notification.received_at);
            let row = sqlx::query(INSERT_RECEIPT)
                .bind(notification.source.as_str())
                .bind(key)
                .bind(&notification.group_key)
                .bind(&notification.raw)
                .bind(at)
                .bind(at)
                .bind(dups)
                .fetch_one(&mut *tx)
                .await?;
            receipt_ids[r] = row.try_get("id")?;
            is_new[r] = row.try_get::<i64, _>("duplicate_count")? == dups;
        }
        let mut alerts = Vec::new();
        for planned in plan.alerts(&is_new) {
            let (alert, notification, receipt_id) = (
                &planned.alert,
                planned.notification,
                receipt_ids[planned.receipt],
            );
            let seen = Ts(notification.received_at);
            // No row when the write left it alone (a resolved alert delivered firing).
            let id: Option<i64> = sqlx::query_scalar(INSERT_ALERT.as_str())
                .bind(&alert.fingerprint)
                .bind(Ts(alert.starts_at))
                .bind(alert.ends_at.map(Ts))
                .bind(alert.status.as_str())
                .bind(alert.alertname())
                .bind(serde_json::to_string(&alert.labels).expect("labels serialise"))
                .bind(serde_json::to_string(&alert.annotations).expect("labels serialise"))
                .bind(&alert.generator_url)
                .bind(&notification.receiver)
                .bind(&notification.group_key)
                .bind(receipt_id)
                .bind(receipt_id)
                .bind(seen)
                .bind(seen)
                .bind(planned.target.as_deref())
                .bind(label_signature(&alert.labels))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(id) = id {
                alerts.push(planned.written(id));
            }
        }
        Ok(Inserted {
            receipt_ids,
            is_new,
            alerts,
        })
    }

    /// A transaction here is calls in the process, not round trips: nothing to save.
    async fn insert_batch_at_once(
        _pool: &SqlitePool,
        _plan: &PlannedBatch<'_>,
    ) -> Result<Option<Inserted>, StoreError> {
        Ok(None)
    }

    /// Newest first through alerts_label_sig, which holds each id's label signature.
    const LABELS_VIA: Option<&'static str> = Some("alerts INDEXED BY alerts_label_sig");

    fn push_label_matchers(q: &mut QueryBuilder<Sqlite>, labels: &[(String, String)]) -> bool {
        if labels.is_empty() {
            return true;
        }
        // Rows whose signature lacks a label's bits are passed over in the index; the
        // rest (and rows not signed yet) are read and their labels compared.
        let sig = label_signature(labels.iter().map(|(name, value)| (name, value)));
        q.push(" AND (label_sig IS NULL OR label_sig & ")
            .push_bind(sig)
            .push(" = ")
            .push_bind(sig)
            .push(")");
        for (name, value) in labels {
            // The path quotes the name, so any label name is a single key.
            q.push(" AND json_extract(labels, '$.\"' || ")
                .push_bind(name.replace('"', "\\\""))
                .push(" || '\"') = ")
                .push_bind(value.clone());
        }
        true
    }

    async fn alerts_by_key(
        pool: &SqlitePool,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        // Starts in the text form the rows were written with.
        let keys: Vec<(&str, String)> = keys.iter().map(|(f, s)| (f.as_str(), ts(*s))).collect();
        let keys = serde_json::to_string(&keys).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query(ALERTS_BY_KEY.as_str())
            .bind(keys)
            .fetch_all(pool)
            .await
    }

    /// SQLite's indexes are written as rows are; what is left is the label signature of
    /// rows written before migration 0010 (or by hand): a batch of them signed. Returns
    /// how many.
    async fn maintain(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, labels FROM alerts INDEXED BY alerts_unsigned
             WHERE label_sig IS NULL ORDER BY id LIMIT {SIGN_BATCH}"
        )))
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let signed: Vec<(i64, i64)> = rows
            .iter()
            .map(|(id, labels)| {
                // Labels that do not parse (written by hand) get every bit: any list
                // reads them, and compares their labels.
                let sig =
                    serde_json::from_str::<Labels>(labels).map_or(-1, |l| label_signature(&l));
                (*id, sig)
            })
            .collect();
        let signed = serde_json::to_string(&signed).map_err(|e| sqlx::Error::Encode(e.into()))?;
        // Only rows still unsigned: a re-delivery may have signed one meanwhile. One
        // statement, so it needs no transaction of its own.
        let done = sqlx::query(
            "UPDATE alerts SET label_sig = s.value ->> 1
             FROM json_each(?) s
             WHERE alerts.id = s.value ->> 0 AND alerts.label_sig IS NULL",
        )
        .bind(signed)
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn try_lease(
        _pool: &SqlitePool,
        _name: &str,
    ) -> Result<Option<Box<dyn Lease>>, StoreError> {
        // An SQLite file serves one rollwarden process (the single-node setup), which is
        // therefore always the one that runs singleton jobs.
        Ok(Some(Box::new(SingleNodeLease)))
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

/// The one text form of a timestamp in SQLite: UTC, microseconds, `Z`. Fixed width, so
/// comparing the text compares the instants.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A timestamp is text in the one form [`ts`] writes.
impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(ts(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        parse_ts(text)
            .map(Ts)
            .ok_or_else(|| format!("timestamp {text:?} is not RFC 3339").into())
    }
}

/// The text [`ts`] writes, and also what it wrote for a year past 9999 (`+10000-…`)
/// before the API bounded the times it accepts: such a row must stay readable, or every
/// read that includes it fails.
fn parse_ts(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let offset = text.strip_suffix('Z').map(|t| format!("{t}+00:00"));
    DateTime::parse_from_str(offset.as_deref().unwrap_or(text), "%Y-%m-%dT%H:%M:%S%.f%:z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Signatures are stored: the scheme is pinned by two known values (the first
    /// twelve bits of SHA-256 of `service`, NUL, `svc-0042` pick bits 54 and 40).
    #[test]
    fn label_bits_are_the_pinned_scheme() {
        assert_eq!(label_bits("service", "svc-0042"), (1 << 54) | (1 << 40));
        assert_eq!(label_bits("namespace", "prod"), (1 << 44) | (1 << 46));
        assert_eq!(label_bits("service", "svc-0042").count_ones(), 2);
    }

    /// An alert's signature holds the bits of each of its labels, and of any subset.
    #[test]
    fn a_signature_holds_each_labels_bits() {
        let labels: Labels = [
            ("alertname", "A"),
            ("namespace", "it's \"prod\""),
            ("x", ""),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let sig = label_signature(&labels);
        for (name, value) in &labels {
            let bits = label_signature([(name, value)]);
            assert_eq!(sig & bits, bits, "{name}");
        }
        assert_eq!(label_signature(&Labels::new()), 0);
    }

    #[test]
    fn timestamp_text_sorts_like_time() {
        let a = Utc.with_ymd_and_hms(2026, 8, 22, 9, 0, 0).unwrap();
        let b = a + chrono::Duration::microseconds(1);
        let c = Utc.with_ymd_and_hms(2026, 8, 22, 10, 0, 0).unwrap();
        assert!(ts(a) < ts(b) && ts(b) < ts(c));
        assert_eq!(ts(b), "2026-08-22T09:00:00.000001Z");
    }

    #[test]
    fn a_year_past_9999_written_before_the_bound_reads_back() {
        let far = Utc.with_ymd_and_hms(10000, 1, 1, 23, 58, 59).unwrap();
        assert_eq!(ts(far), "+10000-01-01T23:58:59.000000Z");
        assert_eq!(parse_ts(&ts(far)), Some(far));
        let now = Utc.with_ymd_and_hms(2026, 8, 22, 9, 0, 0).unwrap();
        assert_eq!(parse_ts(&ts(now)), Some(now));
        assert_eq!(parse_ts("yesterday"), None);
    }
}
