//! The notification outbox: announcements of decisions and actions, and how their
//! delivery went.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Executor;
use sqlx::types::Json;
use tracing::instrument;

use super::{BindArg, Dialect, GetCol, SqlStore, Ts};
use crate::store::{
    MessageThread, NewNotification, NotificationFinish, NotificationRecord, NotificationStore,
    StoreError,
};

/// The columns of a notification row, in the order [`SqlStore::notification_row`] reads
/// them.
const NOTIFICATION_COLUMNS: &str = "id, action_id, decision_id, channel, event, \
     payload, status, attempts, last_error, response, next_attempt_at, created_at, delivered_at";

/// The notifications a sender may claim at the instant `now` (a placeholder): pending
/// ones that are due, and ones being sent whose lease expired.
fn claimable_notification(now: &str) -> String {
    format!(
        "(status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= {now}))
         OR (status = 'sending' AND lease_expires_at <= {now})"
    )
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    fn notification_row(row: &D::Row) -> Result<NotificationRecord, StoreError> {
        Ok(NotificationRecord {
            id: row.col("id")?,
            action_id: row.col("action_id")?,
            decision_id: row.col("decision_id")?,
            channel: row.col("channel")?,
            event: row.col("event")?,
            payload: row.col::<Json<serde_json::Value>>("payload")?.0,
            status: row.col("status")?,
            attempts: row.col("attempts")?,
            last_error: row.col("last_error")?,
            response: row.col("response")?,
            next_attempt_at: row.col::<Option<Ts>>("next_attempt_at")?.map(|t| t.0),
            created_at: row.col::<Ts>("created_at")?.0,
            delivered_at: row.col::<Option<Ts>>("delivered_at")?.map(|t| t.0),
        })
    }

    /// Inserts a notification unless its idempotency key exists; the new row, if any.
    pub(super) async fn insert_notification(
        conn: &mut D::Connection,
        n: &NewNotification,
        now: DateTime<Utc>,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO notifications (action_id, decision_id, channel, event, idempotency_key,
                 payload, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {NOTIFICATION_COLUMNS}"
        )))
        .arg(n.action_id)
        .arg(n.decision_id)
        .arg(&n.channel)
        .arg(&n.event)
        .arg(&n.idempotency_key)
        .arg(Json(&n.payload))
        .arg(Ts(now))
        .fetch_optional(conn)
        .await?;
        row.as_ref().map(Self::notification_row).transpose()
    }
}

#[async_trait]
impl<D: Dialect> NotificationStore for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    #[instrument(skip_all, fields(
        decision = n.decision_id, action = n.action_id, channel = n.channel, event = n.event,
    ))]
    async fn enqueue_notification(
        &self,
        n: &NewNotification,
        now: DateTime<Utc>,
    ) -> Result<(NotificationRecord, bool), StoreError> {
        let inserted = Self::insert_notification(&mut *self.pool.acquire().await?, n, now).await?;
        if let Some(record) = inserted {
            return Ok((record, true));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE idempotency_key = $1"
        )))
        .arg(&n.idempotency_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((Self::notification_row(&row)?, false))
    }

    #[instrument(level = "debug", skip_all, fields(owner = owner))]
    async fn claim_notification(
        &self,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        if !self
            .may_claim("notifications", &claimable_notification("$1"), now)
            .await?
        {
            return Ok(None);
        }
        // One statement picks and leases, so no two senders get the same notification.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET status = 'sending', lease_owner = $1,
                 lease_expires_at = $2, attempts = attempts + 1
             WHERE id = (
                 SELECT id FROM notifications WHERE {}
                 ORDER BY id{} LIMIT 1)
             RETURNING {NOTIFICATION_COLUMNS}",
            claimable_notification("$3"),
            Self::skip_locked()
        )))
        .arg(owner)
        .arg(Ts(now + lease))
        .arg(Ts(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::notification_row).transpose()
    }

    #[instrument(skip_all, fields(notification = id, owner = owner))]
    async fn finish_notification(
        &self,
        id: i64,
        owner: &str,
        finish: &NotificationFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (status, response, error, retry_at, delivered) = match finish {
            NotificationFinish::Delivered { response } => {
                ("delivered", Some(response.as_str()), None, None, true)
            }
            NotificationFinish::Retry { error, retry_at } => (
                "pending",
                None,
                Some(error.as_str()),
                Some(*retry_at),
                false,
            ),
            NotificationFinish::Failed { error } => {
                ("failed", None, Some(error.as_str()), None, false)
            }
        };
        let done = sqlx::query(
            "UPDATE notifications SET status = $3, response = COALESCE($4, response),
                 last_error = $5, next_attempt_at = $6,
                 delivered_at = CASE WHEN $8 THEN $7 ELSE delivered_at END,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
        )
        .arg(id)
        .arg(owner)
        .arg(status)
        .arg(response)
        .arg(error)
        .arg(retry_at.map(Ts))
        .arg(Ts(now))
        .arg(delivered)
        .execute(&self.pool)
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    #[instrument(level = "debug", skip_all, fields(decision = decision_id))]
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
        .arg(decision_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::notification_row).collect()
    }

    #[instrument(level = "debug", skip_all, fields(decision = decision_id, channel = channel))]
    async fn message_thread(
        &self,
        decision_id: i64,
        channel: &str,
    ) -> Result<Option<MessageThread>, StoreError> {
        let row = sqlx::query(
            "SELECT conversation, thread_ts FROM message_threads
             WHERE decision_id = $1 AND channel = $2",
        )
        .arg(decision_id)
        .arg(channel)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(MessageThread {
                decision_id,
                channel: channel.to_string(),
                conversation: row.col("conversation")?,
                thread_ts: row.col("thread_ts")?,
            })
        })
        .transpose()
    }

    #[instrument(skip_all, fields(decision = thread.decision_id, channel = thread.channel))]
    async fn record_message_thread(
        &self,
        thread: &MessageThread,
        now: DateTime<Utc>,
    ) -> Result<MessageThread, StoreError> {
        sqlx::query(
            "INSERT INTO message_threads (decision_id, channel, conversation, thread_ts, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (decision_id, channel) DO NOTHING",
        )
        .arg(thread.decision_id)
        .arg(&thread.channel)
        .arg(&thread.conversation)
        .arg(&thread.thread_ts)
        .arg(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(self
            .message_thread(thread.decision_id, &thread.channel)
            .await?
            .unwrap_or_else(|| thread.clone()))
    }
}
