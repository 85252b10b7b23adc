//! The SQL both backends share, written once over sqlx's `Database`. What really differs
//! (batch inserts, claiming work, locks, JSON containment, how a timestamp is kept) is
//! the [`Dialect`], implemented in `store/postgres.rs` and `store/sqlite.rs`.
//!
//! Placeholders are `$N` on both backends; values go in with `.arg(…)` and come out with
//! `.col(…)` (see [`Values`]), timestamps as [`Ts`], JSON as sqlx's `Json`.

mod actions;
mod alerts;
mod decisions;
mod deploys;
mod inputs;
mod notifications;

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::query::Query;
use sqlx::{
    Database, Decode, Encode, Executor, IntoArguments, Pool, Postgres, QueryBuilder, Row, Sqlite,
    Transaction, Type,
};
use tracing::instrument;

pub(crate) use alerts::{
    EVALUATION_COLUMNS, REDELIVERY_GRANULARITY_SECS, alert_on_conflict, alert_upsert,
};

use super::batch::{Inserted, PlannedBatch};
use super::{Lease, Store, StoreError};

/// A store over one sqlx database: PostgreSQL or SQLite. See [`super::PostgresStore`]
/// and [`super::SqliteStore`] for how each is opened.
pub struct SqlStore<D: Database> {
    pub(super) pool: Pool<D>,
}

/// Deadlocks and serialization failures are retried this many times.
const MAX_ATTEMPTS: usize = 3;

/// What the shared SQL cannot say the same way on both backends.
pub trait Dialect: Values + Database<Arguments: IntoArguments<Self>, Connection: Migrate> {
    /// `postgres` or `sqlite`.
    const BACKEND: &'static str;
    /// Whether rows are locked (`FOR UPDATE`) before they are written. Without row locks
    /// (SQLite), [`Dialect::begin_write`] takes the one write lock instead.
    const ROW_LOCKS: bool;
    /// A table of the strings in the JSON array bound as `$1`, one row each, in the
    /// column `k.value`: how one query reads the rows of many targets.
    const KEYS: &'static str;
    /// Where a subquery in `FROM` may name the tables before it (`LATERAL`): a table
    /// of the targets in the JSON array of `{key, cluster, namespace}` objects bound as
    /// `$1`, one row each, in the columns `k.key`, `k.cluster` and `k.namespace`, so
    /// that one query reads each target's newest deploys. Without it (SQLite, whose
    /// queries are calls in the process, not round trips) each target's are read by a
    /// query of its own.
    const TARGETS_LATERAL: Option<&'static str>;

    /// The backend's own migrations (`migrations/postgres`, `migrations/sqlite`).
    const MIGRATOR: Migrator;

    /// Begins a transaction that will write.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;

    /// Serialises the evaluations of `target` across replicas until the transaction
    /// (begun with [`Dialect::begin_write`]) ends.
    fn lock_target(
        tx: &mut Self::Connection,
        target: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// A deadlock or serialization failure: safe to run the transaction again.
    fn is_retryable(err: &sqlx::Error) -> bool;

    /// Writes the receipts and alerts of a planned ingest batch in the transaction `tx`:
    /// per receipt of the plan, its id and whether it is new, and the alert rows it
    /// wrote.
    fn insert_batch(
        tx: &mut Self::Connection,
        plan: &PlannedBatch<'_>,
    ) -> impl Future<Output = Result<Inserted, StoreError>> + Send;

    /// Writes a planned ingest batch in one statement that commits on its own, if the
    /// backend can for this plan: what [`Dialect::insert_batch`] and the re-deliveries
    /// of its duplicates would write in a transaction, without the transaction's round
    /// trips. `None`: it cannot, and nothing was written.
    fn insert_batch_at_once(
        pool: &Pool<Self>,
        plan: &PlannedBatch<'_>,
    ) -> impl Future<Output = Result<Option<Inserted>, StoreError>> + Send;

    /// The rows (`EVALUATION_COLUMNS`) of the alerts stored under `keys`, in id order.
    fn alerts_by_key(
        pool: &Pool<Self>,
        keys: &[(String, DateTime<Utc>)],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;

    /// What an alert listing filtered by labels reads when its range has no end, if
    /// not `alerts` itself: the same rows through an index that serves the labels.
    const LABELS_VIA: Option<&'static str>;

    /// Narrows an alert listing to rows whose labels hold all of `labels`; false when no
    /// row can (two values for one label).
    fn push_label_matchers(q: &mut QueryBuilder<Self>, labels: &[(String, String)]) -> bool;

    /// [`crate::store::Store::maintain`]: the labels index brought up to date off the
    /// commit path; how much was done (pages merged, rows signed).
    fn maintain(pool: &Pool<Self>) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Takes the singleton lease `name` if no other replica holds it.
    fn try_lease(
        pool: &Pool<Self>,
        name: &str,
    ) -> impl Future<Output = Result<Option<Box<dyn Lease>>, StoreError>> + Send;
}

/// A value both backends bind (a trait alias).
pub trait Arg<'t>:
    Encode<'t, Postgres> + Encode<'t, Sqlite> + Type<Postgres> + Type<Sqlite> + Send + 't
{
}

impl<'t, T> Arg<'t> for T where
    T: Encode<'t, Postgres> + Encode<'t, Sqlite> + Type<Postgres> + Type<Sqlite> + Send + 't
{
}

/// A column type both backends read (a trait alias).
pub trait Out:
    for<'r> Decode<'r, Postgres> + for<'r> Decode<'r, Sqlite> + Type<Postgres> + Type<Sqlite>
{
}

impl<T> Out for T where
    T: for<'r> Decode<'r, Postgres> + for<'r> Decode<'r, Sqlite> + Type<Postgres> + Type<Sqlite>
{
}

/// How values go in and out of a backend. sqlx implements `Encode` and `Decode` per
/// backend, so generic code reaches them through here rather than with a bound per
/// value type; the shared SQL calls [`BindArg::arg`], [`PushArg::push_arg`] and
/// [`GetCol::col`] where sqlx's own code says `bind`, `push_bind` and `try_get`.
pub trait Values: Database {
    fn bind<'q, 't, T: Arg<'t>>(
        q: Query<'q, Self, Self::Arguments>,
        value: T,
    ) -> Query<'q, Self, Self::Arguments>;
    fn push_bind<'t, T: Arg<'t>>(q: &mut QueryBuilder<Self>, value: T);
    fn get<T: Out>(row: &Self::Row, column: &str) -> Result<T, sqlx::Error>;
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

macro_rules! values {
    ($db:ty) => {
        impl Values for $db {
            fn bind<'q, 't, T: Arg<'t>>(
                q: Query<'q, Self, Self::Arguments>,
                value: T,
            ) -> Query<'q, Self, Self::Arguments> {
                q.bind(value)
            }

            fn push_bind<'t, T: Arg<'t>>(q: &mut QueryBuilder<Self>, value: T) {
                q.push_bind(value);
            }

            fn get<T: Out>(row: &Self::Row, column: &str) -> Result<T, sqlx::Error> {
                row.try_get(column)
            }

            fn rows_affected(done: &Self::QueryResult) -> u64 {
                done.rows_affected()
            }
        }
    };
}

values!(Postgres);
values!(Sqlite);

/// `query.arg(value)`: sqlx's `bind`, on either backend.
pub(crate) trait BindArg {
    fn arg<'t, T: Arg<'t>>(self, value: T) -> Self;
}

impl<'q, D: Values> BindArg for Query<'q, D, <D as Database>::Arguments> {
    fn arg<'t, T: Arg<'t>>(self, value: T) -> Self {
        D::bind(self, value)
    }
}

/// `builder.push_arg(value)`: sqlx's `push_bind`, on either backend.
pub(crate) trait PushArg {
    fn push_arg<'t, T: Arg<'t>>(&mut self, value: T) -> &mut Self;
}

impl<D: Values> PushArg for QueryBuilder<D> {
    fn push_arg<'t, T: Arg<'t>>(&mut self, value: T) -> &mut Self {
        D::push_bind(self, value);
        self
    }
}

/// A list page, newest first, of `table` (its `columns`), filtered on `time` by
/// `since` and `until` and paged by `before` (an id): [`page_start`] opens it, the
/// caller pushes its own filters (each `AND …`), [`page_end`] closes it. A range that
/// ends is read through `time`'s index in a materialized CTE and only its ids sorted:
/// asked for the newest first, PostgreSQL would walk the newest rows by id back to the
/// range instead, as if its rows were spread over every id (migration 0007).
pub(crate) struct Page<'a> {
    pub table: &'a str,
    pub columns: &'a str,
    pub time: &'a str,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: u32,
    /// What a page without `until` reads instead of `table` (`table INDEXED BY …`):
    /// the same rows through an index its filters use.
    pub via: Option<&'a str>,
}

/// Opens `page`'s query after `prefix` (empty, or `EXPLAIN …`).
pub(crate) fn page_start<D: Values>(prefix: &str, page: &Page<'_>) -> QueryBuilder<D> {
    let Page { table, columns, .. } = page;
    QueryBuilder::new(if page.until.is_some() {
        format!("{prefix}WITH w AS MATERIALIZED (SELECT id FROM {table} WHERE TRUE")
    } else {
        let from = page.via.unwrap_or(table);
        format!("{prefix}SELECT {columns} FROM {from} WHERE TRUE")
    })
}

/// Closes `page`'s query: the time range, the cursor, the order and the limit.
///
/// The limit is written into the statement, not bound, here and in every other query
/// of the store: SQLite plans a bound LIMIT with its value, so binding it makes the
/// statement expire, and every execution prepared it again (a tenth of a canary
/// read's CPU on SQLite). An integer is no injection; each distinct limit is one more
/// cached statement.
pub(crate) fn page_end<D: Values>(q: &mut QueryBuilder<D>, page: &Page<'_>) {
    let Page {
        table,
        columns,
        time,
        ..
    } = page;
    if let Some(since) = page.since {
        q.push(format!(" AND {time} >= ")).push_arg(Ts(since));
    }
    if let Some(until) = page.until {
        q.push(format!(" AND {time} < ")).push_arg(Ts(until));
    }
    if let Some(before) = page.before {
        q.push(" AND id < ").push_arg(before);
    }
    if page.until.is_some() {
        q.push(format!(
            ") SELECT {columns} FROM {table} WHERE id IN (SELECT id FROM w ORDER BY id DESC LIMIT "
        ))
        .push(page.limit)
        .push(") ORDER BY id DESC");
    } else {
        q.push(" ORDER BY id DESC LIMIT ").push(page.limit);
    }
}

/// `row.col(name)`: sqlx's `try_get` by name, on either backend.
pub(crate) trait GetCol {
    fn col<T: Out>(&self, column: &str) -> Result<T, sqlx::Error>;
}

impl<R: Row> GetCol for R
where
    R::Database: Values,
{
    fn col<T: Out>(&self, column: &str) -> Result<T, sqlx::Error> {
        <R::Database as Values>::get(self, column)
    }
}

/// An instant as each backend keeps it: `timestamptz` on PostgreSQL, fixed-width UTC
/// text (`2026-08-22T14:03:00.000000Z`) on SQLite, where text order is time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ts(pub DateTime<Utc>);

/// `$first, $first+1, …`: `n` placeholders for a list bound one value at a time.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<D: Dialect> SqlStore<D> {
    pub(super) fn new(pool: Pool<D>) -> Self {
        Self { pool }
    }

    /// Ends a `SELECT` of a row the transaction then writes.
    fn for_update() -> &'static str {
        if D::ROW_LOCKS { " FOR UPDATE" } else { "" }
    }

    /// Ends the subquery that picks one row of work to claim, so that concurrent
    /// workers each take a different row and none waits.
    fn skip_locked() -> &'static str {
        if D::ROW_LOCKS {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }

    /// Whether a claim would find a row of `table` where `claimable` holds (`$1` is the
    /// claim's instant). Asked first only where a write waits for the one write lock
    /// (no row locks: SQLite): there a claim's `UPDATE` takes the lock even when it
    /// changes nothing, so an idle worker's every poll queued behind the ingest's
    /// batches (under a flood up to 1 s a claim, logged as slow statements) and held up
    /// the rest of its pass; a read waits for no writer (WAL). A row that turns claimable
    /// after the look is claimed at the next poll or wake-up. With row locks a claim
    /// that finds nothing waits for nothing, and the look would only add a round trip.
    async fn may_claim(
        &self,
        table: &str,
        claimable: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>
    where
        for<'c> &'c mut D::Connection: sqlx::Executor<'c, Database = D>,
    {
        if D::ROW_LOCKS {
            return Ok(true);
        }
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 AS found FROM {table} WHERE {claimable} LIMIT 1"
        )))
        .arg(Ts(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Runs a transaction, again while it fails on a deadlock or serialization failure.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(StoreError::Query(err)) if tries < MAX_ATTEMPTS && D::is_retryable(&err) => {
                    tracing::debug!(attempt = tries, error = %err, "retrying transaction");
                    tries += 1;
                }
                done => return done,
            }
        }
    }
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    #[instrument(skip_all, fields(backend = D::BACKEND))]
    async fn migrate(&self) -> Result<(), StoreError> {
        D::MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn maintain(&self) -> Result<u64, StoreError> {
        Ok(D::maintain(&self.pool).await?)
    }

    #[instrument(skip_all, fields(lease = name))]
    async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        D::try_lease(&self.pool, name).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
