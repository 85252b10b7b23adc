//! Durable state behind one trait, implemented once in SQL for PostgreSQL (production,
//! several replicas) and SQLite (the embedded default): the shared SQL lives in `sql/`,
//! what differs in `postgres.rs` and `sqlite.rs`. Methods are domain operations; each
//! keeps its transaction inside, so callers never hold one.

mod batch;
pub mod lock;
mod postgres;
mod records;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[cfg(doc)]
use crate::domain::Alert;
use crate::domain::{Deploy, Freeze, Notification, Signal, TargetRef};

pub use records::{
    ActionFinish, ActionQuery, ActionRecord, ActionTransition, AlertQuery, AuditEvent,
    DecisionHead, DecisionLine, DecisionQuery, DeployCursor, DeployQuery, DeployWrite,
    EvaluationAlert, FreezeRecord, IngestOutcome, MessageThread, NewAction, NewDecision, NewFreeze,
    NewNotification, NewReleaseDecision, NotificationFinish, NotificationRecord, Receipt,
    ReleaseDecision, StandingDecision, StoredAlert, StoredDecision, StoredDeploy, TargetInputs,
};
pub use sql::SqlStore;

/// The PostgreSQL store: production and multi-replica deployments.
pub type PostgresStore = SqlStore<sqlx::Postgres>;
/// The SQLite store: the embedded default, so `rollwarden serve` needs no database server.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

/// Store failures. Every variant but [`StoreError::Invalid`] is our own transient
/// fault: the HTTP layer answers it with 503 so that senders retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// A label for the `rollwarden_store_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Query(_) => "query",
            StoreError::Migrate(_) => "migrate",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Invalid(_) => "invalid",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            // A column that does not decode (a timestamp, a JSON document) is bad data.
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(err.to_string())
            }
            other => StoreError::Query(other),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Corrupt(err.to_string())
    }
}

/// Held while this replica runs a singleton job (the Kubernetes watchers).
#[async_trait]
pub trait Lease: Send {
    /// Whether the lease is still held; false once the holding connection is lost.
    async fn still_held(&mut self) -> bool;
    /// Gives the lease up so another replica can take it at once.
    async fn release(self: Box<Self>);
}

/// Durable state: every role below, plus the database itself. Implementations must pass
/// the conformance suite in `tests/it/store.rs` with identical results.
#[async_trait]
pub trait Store:
    AlertStore + DeployStore + DecisionStore + ActionStore + NotificationStore + FreezeStore
{
    /// Which backend this is: `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Succeeds when the database answers a query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Brings the labels index up to date off the commit path, and returns how much it
    /// did: PostgreSQL merges the index's pending list (pages merged); SQLite signs the
    /// labels of alerts stored before migration 0010 (rows signed, a batch per call).
    /// Run every [`MAINTAIN_EVERY`] by each replica.
    async fn maintain(&self) -> Result<u64, StoreError>;

    /// Takes the singleton lease `name` if no other replica holds it.
    async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;

    /// Closes every connection; in-flight operations finish first.
    async fn close(&self);
}

/// How often each replica runs [`Store::maintain`]: a pending list of about a fifth of a
/// second's alerts at full ingest is merged in a few milliseconds, and a label query
/// reads what is not merged yet.
pub const MAINTAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Inbound payloads and what they carry: receipts, alerts, posted signals.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Commits a batch of notifications in one transaction and returns one outcome per
    /// notification, in order. Receipts are deduplicated by content; the alerts of a new
    /// receipt are upserted by `(fingerprint, starts_at)` with [`Alert::merge`]'s rule.
    /// A duplicate receipt (Alertmanager's re-send after `repeat_interval`) moves the
    /// `updated_at` of the firing alerts it carries, at most once a minute, so that
    /// `updated_at` says when an alert was last delivered.
    async fn record_notifications(
        &self,
        batch: &[Notification],
    ) -> Result<Vec<IngestOutcome>, StoreError>;

    async fn receipt(&self, id: i64) -> Result<Option<Receipt>, StoreError>;

    /// Receipts of `source` received in `[since, until)`, oldest first, after the id
    /// `after_id`, at most `limit`: what `rollwarden export` pages through.
    async fn receipts_between(
        &self,
        source: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Receipt>, StoreError>;

    /// Alerts matching `query`, newest first, at most `query.limit`.
    async fn list_alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;

    /// Alerts still firing and delivered (last written or re-delivered, `updated_at`)
    /// at or after `fresh_since`, or resolved at or after `since`: what an evaluation
    /// looks at. A firing alert delivered before `fresh_since` is stale and left out.
    /// A page of at most `limit`, in id order, after id `after` (0 for the first).
    async fn alerts_for_evaluation(
        &self,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EvaluationAlert>, StoreError>;

    /// [`AlertStore::alerts_for_evaluation`]'s alerts mapped to the target
    /// `target_key` at ingest, and those not mapped (which the caller classifies), in id
    /// order: what an evaluation of that one target reads, through the target index.
    async fn target_alerts_for_evaluation(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
    ) -> Result<Vec<EvaluationAlert>, StoreError>;

    /// [`AlertStore::alerts_for_evaluation`]'s alerts mapped to no target (a
    /// dependency's): the `limit` firing ones delivered last (by `updated_at`, then
    /// id) and every resolved one, in id order. The engine holds at most `limit` of
    /// them, the newest.
    async fn untargeted_alerts_for_evaluation(
        &self,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<EvaluationAlert>, StoreError>;

    /// Forgets every alert's target when `classifier` (a fingerprint) is not the one
    /// that mapped them, and records it as the one that maps them now. Returns whether
    /// it did.
    async fn reset_alert_targets(&self, classifier: &str) -> Result<bool, StoreError>;

    /// A page of [`AlertStore::alerts_for_evaluation`]'s alerts that are not mapped to a
    /// target, in id order after id `after`.
    async fn unmapped_alerts(
        &self,
        since: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EvaluationAlert>, StoreError>;

    /// Maps alerts to targets ([`crate::domain::AlertTarget::key`]), by id; an alert
    /// mapped meanwhile (by an ingest) is left as it is.
    async fn map_alert_targets(&self, targets: &[(i64, String)]) -> Result<(), StoreError>;

    /// How many firing alerts were last delivered before `fresh_since`: the stale ones,
    /// which evaluation leaves out.
    async fn count_stale_alerts(&self, fresh_since: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The alerts stored under `keys` (fingerprint and start, their identity), in id
    /// order, as they stand: what the engine merges into its view of the window after
    /// the ingests that carried them. Read through the table's unique key, so the
    /// ingest pays for no extra index.
    async fn alerts_by_key(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<EvaluationAlert>, StoreError>;

    /// Stores a signal, idempotent on its poster's id (`fingerprint`) for API signals
    /// and on (source, fingerprint, start) for others; a repeat updates its value and
    /// end (its start stands). Returns the row id and whether it was new.
    async fn record_signal(
        &self,
        signal: &Signal,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError>;

    /// Posted signals still active, or ended at or after `since`.
    async fn signals_for_evaluation(&self, since: DateTime<Utc>)
    -> Result<Vec<Signal>, StoreError>;

    /// [`AlertStore::signals_for_evaluation`]'s signals about the target `target_key`
    /// or about no target, in id order.
    async fn target_signals_for_evaluation(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Signal>, StoreError>;
}

/// The deploy history of every target.
#[async_trait]
pub trait DeployStore: Send + Sync + 'static {
    /// Stores deploys idempotently by (target, source, revision), merging a report of a
    /// known revision with [`Deploy::merge`]. One transaction; one result per deploy.
    async fn record_deploys(
        &self,
        deploys: &[Deploy],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeployWrite>, StoreError>;

    /// Deploys matching `query`, newest first by start time.
    async fn list_deploys(&self, query: &DeployQuery) -> Result<Vec<StoredDeploy>, StoreError>;

    /// One target's timeline, newest first: its own deploys (rollouts, pipelines,
    /// canaries) and the revisions of the Helm release that manages it.
    async fn target_history(
        &self,
        target: &TargetRef,
        after: Option<DeployCursor>,
        limit: u32,
    ) -> Result<Vec<StoredDeploy>, StoreError>;

    /// The target's deploys (as in [`DeployStore::target_history`]) that started in
    /// `[from, to)`, newest first: the suspects for a regression seen at `to`.
    async fn deploys_between(
        &self,
        target: &TargetRef,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredDeploy>, StoreError>;

    /// The newest deploy of the same target and source that started before `deploy`
    /// and stayed healthy: the revision to roll back to.
    async fn last_healthy_before(
        &self,
        deploy: &StoredDeploy,
    ) -> Result<Option<StoredDeploy>, StoreError>;
}

/// The decisions the engine recorded.
#[async_trait]
pub trait DecisionStore: Send + Sync + 'static {
    /// Records `decision` unless the target's latest decision has the same verdict and
    /// inputs hash: one evaluation per target at a time, across replicas. Returns the
    /// decision now standing and whether it is new.
    async fn record_decision(
        &self,
        decision: &NewDecision,
    ) -> Result<(StoredDecision, bool), StoreError>;

    async fn latest_decision(&self, target_key: &str)
    -> Result<Option<StoredDecision>, StoreError>;

    /// [`DecisionStore::latest_decision`] without its evidence (large under a flood of
    /// alerts): what an evaluation compares itself with before it serialises its own.
    async fn decision_head(&self, target_key: &str) -> Result<Option<DecisionHead>, StoreError>;

    /// What evaluations of `targets` read besides their signals, one query each for
    /// all of them instead of four per target: per target, in the order given, its
    /// newest `depth` deploys, its automatic rollbacks since `rollbacks_since`, when it
    /// last recovered, and its standing decision. The same as the per-target reads.
    async fn evaluation_inputs(
        &self,
        targets: &[TargetRef],
        rollbacks_since: DateTime<Utc>,
        depth: u32,
    ) -> Result<Vec<TargetInputs>, StoreError>;

    async fn decision(&self, id: i64) -> Result<Option<StoredDecision>, StoreError>;

    async fn list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<Vec<StoredDecision>, StoreError>;

    /// [`DecisionStore::list_decisions`] without the evidence: the same decisions, in
    /// the same order, as lines.
    async fn list_decision_lines(
        &self,
        query: &DecisionQuery,
    ) -> Result<Vec<DecisionLine>, StoreError>;

    /// Target keys whose latest decision is not `ok`: they need re-evaluation until
    /// they recover.
    async fn unsettled_targets(&self) -> Result<Vec<String>, StoreError>;

    /// Each target's standing (latest) decision, briefly, by target key, after
    /// `after_target` when given, at most `limit`.
    async fn standing_decisions(
        &self,
        after_target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StandingDecision>, StoreError>;

    /// The `rollback` decisions that blamed one of `deploy_ids` (their suspect), oldest
    /// first, at most 1,000: where a release regressed.
    async fn decisions_blaming(
        &self,
        deploy_ids: &[i64],
    ) -> Result<Vec<StoredDecision>, StoreError>;

    /// Records a release decision unless one of its release and scope exists. Returns
    /// the one standing and whether it is new: across replicas, exactly one records it.
    async fn record_release_decision(
        &self,
        decision: &NewReleaseDecision,
    ) -> Result<(ReleaseDecision, bool), StoreError>;

    /// A release's decisions, oldest first.
    async fn release_decisions(&self, release: &str) -> Result<Vec<ReleaseDecision>, StoreError>;
}

/// The action outbox, the loop guard's record of rollbacks, and the audit trail.
#[async_trait]
pub trait ActionStore: Send + Sync + 'static {
    /// Puts an action in the outbox unless one with its idempotency key exists; returns
    /// the action standing for the key and whether it is new. A new action is committed
    /// together with its `action.created` audit event and its `notify` notifications,
    /// so no worker can start it before it is on record, and no crash can leave it
    /// unannounced.
    async fn enqueue_action(
        &self,
        action: &NewAction,
        now: DateTime<Utc>,
    ) -> Result<(ActionRecord, bool), StoreError>;

    /// Claims the oldest action a worker may run now — `pending` or `approved` and due,
    /// or `running` under an expired lease (its worker died; the next one resumes it) —
    /// and leases it to `owner` until `now + lease`. No two claims get the same action
    /// while a lease holds.
    async fn claim_action(
        &self,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError>;

    /// Records how `owner`'s attempt ended. `false` when `owner` no longer holds the
    /// lease (it expired and another worker claimed the action): nothing is written.
    async fn finish_action(
        &self,
        id: i64,
        owner: &str,
        finish: &ActionFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// How many actions are in `state`, counted up to `cap` (a page header's figure).
    async fn count_actions(&self, state: &str, cap: u32) -> Result<u64, StoreError>;

    /// The actions of these decisions (one, or a page's worth), oldest first.
    async fn decision_actions(&self, decision_ids: &[i64])
    -> Result<Vec<ActionRecord>, StoreError>;

    /// Ends the leases `owner` holds on running actions now (a worker shutting down
    /// mid-attempt): the next claim resumes them at once, as `resumed`, instead of
    /// after the lease would have run out. Returns how many.
    async fn expire_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Actions matching `query`, newest first.
    async fn list_actions(&self, query: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError>;

    /// Moves action `id` to `change.to` if it is in one of `change.from`, with an audit
    /// event `action.<to>`, in one transaction. `None` when it is not (or does not
    /// exist): the caller lost a race or asked for something no longer possible.
    async fn transition_action(
        &self,
        id: i64,
        change: &ActionTransition<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError>;

    /// When automatic rollbacks of `target_key` were executed at or after `since`,
    /// oldest first (the loop guard's input).
    async fn automatic_rollbacks(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError>;

    /// Appends an event to the audit trail of `subject` (`action:12`).
    async fn record_audit(
        &self,
        actor: &str,
        kind: &str,
        subject: &str,
        details: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The audit trail of these subjects, oldest first.
    async fn audit_trail(&self, subjects: &[String]) -> Result<Vec<AuditEvent>, StoreError>;

    /// Every audit event with an id above `after`, oldest first, at most `limit`: the
    /// event stream's source (`GET /api/v1/events`), one ordered log for every replica.
    async fn audit_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// The ids of [`ActionStore::audit_events_after`]'s events, read from the primary
    /// key's index alone: what the event hub marks as seen while no stream is open.
    async fn audit_event_ids_after(&self, after: i64, limit: u32) -> Result<Vec<i64>, StoreError>;

    /// The id of the newest audit event (0 when there is none): where a stream that
    /// asks for no backlog starts.
    async fn last_audit_event_id(&self) -> Result<i64, StoreError>;
}

/// The notification outbox.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Puts a notification in the outbox unless one with its key exists; returns the
    /// one standing for the key and whether it is new.
    async fn enqueue_notification(
        &self,
        notification: &NewNotification,
        now: DateTime<Utc>,
    ) -> Result<(NotificationRecord, bool), StoreError>;

    /// Claims the oldest notification due for delivery (or one whose sender's lease
    /// expired) and leases it to `owner`.
    async fn claim_notification(
        &self,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<NotificationRecord>, StoreError>;

    /// Records how `owner`'s delivery attempt ended; `false` when it lost the lease.
    async fn finish_notification(
        &self,
        id: i64,
        owner: &str,
        finish: &NotificationFinish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The notifications about a decision and its actions, oldest first.
    async fn decision_notifications(
        &self,
        decision_id: i64,
    ) -> Result<Vec<NotificationRecord>, StoreError>;

    /// The thread `channel` keeps `decision_id`'s messages in, once its first is out.
    async fn message_thread(
        &self,
        decision_id: i64,
        channel: &str,
    ) -> Result<Option<MessageThread>, StoreError>;

    /// Records a decision's thread unless one is recorded; returns the one standing
    /// (the first sender's, when two race).
    async fn record_message_thread(
        &self,
        thread: &MessageThread,
        now: DateTime<Utc>,
    ) -> Result<MessageThread, StoreError>;
}

/// Deployment freezes.
#[async_trait]
pub trait FreezeStore: Send + Sync + 'static {
    /// Freezes in force at `now`.
    async fn active_freezes(&self, now: DateTime<Utc>) -> Result<Vec<Freeze>, StoreError>;

    /// Creates a freeze and its audit event, in one transaction.
    async fn create_freeze(
        &self,
        freeze: &NewFreeze,
        now: DateTime<Utc>,
    ) -> Result<FreezeRecord, StoreError>;

    /// Lifts a freeze (and records who did, with an audit event). Lifting a lifted
    /// freeze changes nothing. `None` when there is no such freeze.
    async fn lift_freeze(
        &self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FreezeRecord>, StoreError>;

    /// Freezes newest first: only those in force at `now`, or all (lifted and expired
    /// too); keyset `before_id`.
    async fn list_freezes(
        &self,
        active_at: Option<DateTime<Utc>>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FreezeRecord>, StoreError>;
}

/// Opens the store that `url` names: `sqlite:PATH` or `postgres://…`.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else {
        Err(StoreError::Invalid(
            "database.url must start with sqlite: or postgres://".into(),
        ))
    }
}
