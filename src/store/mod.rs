//! Durable state behind one trait, implemented for PostgreSQL (production, several
//! replicas) and SQLite (the embedded default). Methods are domain operations; each
//! keeps its transaction inside, so callers never hold one.

mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    Alert, AlertStatus, Deploy, DeploySource, Freeze, Labels, Notification, Signal, TargetRef,
    Verdict,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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
            other => StoreError::Query(other),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Corrupt(err.to_string())
    }
}

/// What became of one notification in [`Store::record_notifications`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub receipt_id: i64,
    /// The same content had been received before; only the duplicate count moved.
    pub duplicate: bool,
    /// Alert rows inserted or updated by this notification.
    pub alerts_written: usize,
}

/// A kept receipt: an inbound payload exactly as it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub id: i64,
    pub source: String,
    pub group_key: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub duplicate_count: i64,
}

/// An alert occurrence as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredAlert {
    pub id: i64,
    pub fingerprint: String,
    pub status: AlertStatus,
    pub alertname: String,
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub labels: Labels,
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    /// Set once resolved.
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: String,
    pub receiver: String,
    pub group_key: String,
    /// The receipts (kept raw bodies) that first and last carried it.
    pub first_receipt_id: i64,
    pub last_receipt_id: i64,
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredAlert {
    /// The alert itself, as the domain knows it.
    pub fn to_alert(&self) -> Alert {
        Alert {
            fingerprint: self.fingerprint.clone(),
            status: self.status,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            generator_url: self.generator_url.clone(),
        }
    }
}

/// Filters for [`Store::list_alerts`]; every filter narrows (AND).
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub status: Option<AlertStatus>,
    pub alertname: Option<String>,
    /// Label equality matchers, all of which must hold.
    pub labels: Vec<(String, String)>,
    /// Occurrences that started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Occurrences that started before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: only rows with an id below this one (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// A deploy as stored, with its row id.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredDeploy {
    pub id: i64,
    /// `cluster/namespace/kind/name`, the key the row is stored under.
    pub target_key: String,
    #[serde(flatten)]
    pub deploy: Deploy,
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What [`Store::record_deploys`] did with one deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeployWrite {
    pub id: i64,
    /// A new (target, source, revision).
    pub created: bool,
    /// The row was inserted or its content changed.
    pub changed: bool,
}

/// Keyset position in a deploy listing, which runs newest first by
/// `(started_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployCursor {
    pub started_at: DateTime<Utc>,
    pub id: i64,
}

impl DeployCursor {
    pub fn of(deploy: &StoredDeploy) -> Self {
        Self {
            started_at: deploy.deploy.started_at,
            id: deploy.id,
        }
    }

    /// The opaque text form handed out as `next`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.started_at.timestamp_micros(), self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (micros, id) = s.split_once('_')?;
        Some(Self {
            started_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok().filter(|id| *id > 0)?,
        })
    }
}

/// Filters for [`Store::list_deploys`]; every filter narrows (AND).
#[derive(Debug, Clone, Default)]
pub struct DeployQuery {
    /// A full target key, `cluster/namespace/kind/name`.
    pub target: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub source: Option<DeploySource>,
    pub environment: Option<String>,
    /// Deploys that started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Deploys that started before this instant.
    pub until: Option<DateTime<Utc>>,
    pub after: Option<DeployCursor>,
    pub limit: u32,
}

/// A decision to record: indexed columns plus the whole decision as JSON.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub target_key: String,
    pub verdict: String,
    pub reason: String,
    /// Equal for two evaluations with the same outcome and inputs.
    pub inputs_hash: String,
    pub policy_version: String,
    pub suspect_deploy_id: Option<i64>,
    pub rollback_to_id: Option<i64>,
    /// The decision with its evidence, as the API serves it.
    pub decision: serde_json::Value,
    pub decided_at: DateTime<Utc>,
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredDecision {
    pub id: i64,
    /// `cluster/namespace/kind/name`.
    pub target_key: String,
    #[schema(value_type = Verdict)]
    pub verdict: String,
    pub reason: String,
    pub inputs_hash: String,
    pub policy_version: String,
    pub suspect_deploy_id: Option<i64>,
    pub rollback_to_id: Option<i64>,
    pub decided_at: DateTime<Utc>,
    /// The decision with its evidence.
    #[schema(value_type = crate::domain::Decision)]
    pub decision: serde_json::Value,
}

/// Filters for [`Store::list_decisions`], newest first.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub target: Option<String>,
    pub verdict: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: only decisions with an id below this one.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// An action to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub decision_id: i64,
    pub target_key: String,
    /// rollout_undo, helm_rollback, workflow_dispatch, command, webhook, freeze
    pub kind: String,
    /// observe, recommend, approve, auto
    pub mode: String,
    /// One action per key, ever: (target, suspect deploy, kind). Duplicates of a
    /// decision (replicas, Alertmanager HA) find the existing action instead.
    pub idempotency_key: String,
    /// `pending` (a worker may claim it), `awaiting_approval`, or `recorded` (observe).
    pub state: String,
    pub params: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    /// Notifications announcing the new action, written in the same transaction as
    /// the action and its `action.created` audit event (never one without the other).
    /// The store sets their `action_id` and prefixes their idempotency keys with
    /// `action:{id}|`.
    pub notify: Vec<NewNotification>,
}

/// An action as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActionRecord {
    pub id: i64,
    pub decision_id: i64,
    pub target_key: String,
    pub kind: String,
    pub mode: String,
    pub idempotency_key: String,
    pub state: String,
    pub params: serde_json::Value,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub executed_at: Option<DateTime<Utc>>,
    pub result: Option<serde_json::Value>,
    pub last_error: Option<String>,
    /// The operator who approved or rejected it, and their comment.
    pub approved_by: Option<String>,
    pub approval_comment: Option<String>,
    /// When an action awaiting approval expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The current attempt resumes one whose worker lost its lease mid-attempt.
    pub resumed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a worker's attempt at an action ended.
#[derive(Debug, Clone)]
pub enum ActionFinish {
    /// Carried out; `executed_at` is set (the loop guard counts it). With `verify`, the
    /// action goes on to `verifying` (a rollback whose outcome is watched), else to
    /// `succeeded`.
    Succeeded {
        result: serde_json::Value,
        verify: bool,
    },
    /// Global dry run: what would have been done is recorded, nothing was.
    DryRun { result: serde_json::Value },
    /// Not carried out, and a person must look: a loop-guard trip, an interrupted
    /// attempt that cannot be checked against the world, a failed rollout.
    Escalated {
        error: String,
        result: Option<serde_json::Value>,
    },
    /// A transient failure: claimable again from `retry_at`.
    Retry {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// A permanent failure: never retried.
    Failed { error: String },
}

/// Filters for [`Store::list_actions`], newest first.
#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub target: Option<String>,
    pub state: Option<String>,
    pub kind: Option<String>,
    pub decision_id: Option<i64>,
    /// Keyset cursor: only actions with an id below this one.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// A conditional state change of an action by a person or the worker, audited.
#[derive(Debug, Clone)]
pub struct ActionTransition<'a> {
    /// The change happens only from one of these states.
    pub from: &'a [&'a str],
    pub to: &'a str,
    /// Who made it (a token's name, or `rollwarden`).
    pub actor: &'a str,
    /// Kept as the approval comment when moving to `approved` or `rejected`.
    pub comment: Option<&'a str>,
    /// Recorded with the audit event.
    pub details: serde_json::Value,
}

/// An entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `action.approved`, `action.executed`, `freeze.created`…
    pub kind: String,
    /// `action:12`, `freeze:3`…
    pub subject: String,
    pub details: serde_json::Value,
}

/// A notification to deliver.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub action_id: Option<i64>,
    pub decision_id: Option<i64>,
    /// `slack` or `webhook:NAME`.
    pub channel: String,
    /// What it announces: `recommend`, `approval`, `announce`, `result`, `escalate`…
    pub event: String,
    /// One notification per key, ever.
    pub idempotency_key: String,
    pub payload: serde_json::Value,
}

/// A notification as stored, with how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NotificationRecord {
    pub id: i64,
    pub action_id: Option<i64>,
    pub decision_id: Option<i64>,
    pub channel: String,
    pub event: String,
    pub payload: serde_json::Value,
    /// `pending`, `sending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The receiver's answer (status and a bounded excerpt of the body).
    pub response: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum NotificationFinish {
    Delivered {
        response: String,
    },
    Retry {
        error: String,
        retry_at: DateTime<Utc>,
    },
    Failed {
        error: String,
    },
}

/// A freeze to create.
#[derive(Debug, Clone)]
pub struct NewFreeze {
    pub scope: String,
    pub reason: String,
    pub created_by: String,
    pub decision_id: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A freeze as stored, lifted or not.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FreezeRecord {
    #[serde(flatten)]
    pub freeze: Freeze,
    pub decision_id: Option<i64>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<String>,
}

/// Held while this replica runs a singleton job (the Kubernetes watchers).
#[async_trait]
pub trait Lease: Send {
    /// Whether the lease is still held; false once the holding connection is lost.
    async fn still_held(&mut self) -> bool;
    /// Gives the lease up so another replica can take it at once.
    async fn release(self: Box<Self>);
}

/// Durable state. Implementations must pass the conformance suite in
/// `tests/it/store.rs` with identical results.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is: `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Succeeds when the database answers a query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Commits a batch of notifications in one transaction and returns one outcome per
    /// notification, in order. Receipts are deduplicated by content; the alerts of a new
    /// receipt are upserted by `(fingerprint, starts_at)` with [`Alert::merge`]'s rule.
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

    /// The target's deploys (as in [`Store::target_history`]) that started in
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

    /// Alerts still firing, or resolved at or after `since`: what an evaluation looks at.
    /// A page of at most `limit`, in id order, after id `after` (0 for the first).
    async fn alerts_for_evaluation(
        &self,
        since: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredAlert>, StoreError>;

    /// The alerts stored under `keys` (fingerprint and start, their identity), in id
    /// order, as they stand: what the engine merges into its view of the window after
    /// the ingests that carried them. Read through the table's unique key, so the
    /// ingest pays for no extra index.
    async fn alerts_by_key(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<StoredAlert>, StoreError>;

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

    /// Records `decision` unless the target's latest decision has the same verdict and
    /// inputs hash: one evaluation per target at a time, across replicas. Returns the
    /// decision now standing and whether it is new.
    async fn record_decision(
        &self,
        decision: &NewDecision,
    ) -> Result<(StoredDecision, bool), StoreError>;

    async fn latest_decision(&self, target_key: &str)
    -> Result<Option<StoredDecision>, StoreError>;

    async fn decision(&self, id: i64) -> Result<Option<StoredDecision>, StoreError>;

    async fn list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<Vec<StoredDecision>, StoreError>;

    /// Target keys whose latest decision is not `ok`: they need re-evaluation until
    /// they recover.
    async fn unsettled_targets(&self) -> Result<Vec<String>, StoreError>;

    /// Freezes in force at `now`.
    async fn active_freezes(&self, now: DateTime<Utc>) -> Result<Vec<Freeze>, StoreError>;

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

    /// The actions of a decision, oldest first.
    async fn decision_actions(&self, decision_id: i64) -> Result<Vec<ActionRecord>, StoreError>;

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

    /// When automatic rollbacks of `target_key` were executed at or after `since`,
    /// oldest first (the loop guard's input).
    async fn automatic_rollbacks(
        &self,
        target_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError>;

    /// Takes the singleton lease `name` if no other replica holds it.
    async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;

    /// Closes every connection; in-flight operations finish first.
    async fn close(&self);
}

/// The columns of an alert row that both backends read.
pub(crate) const ALERT_COLUMNS: &str = "id, fingerprint, status, alertname, labels, annotations, \
     starts_at, ends_at, generator_url, receiver, group_key, first_receipt_id, last_receipt_id, \
     first_seen_at, updated_at";

/// The columns of a deploy row, in the order both backends read and write them.
pub(crate) const DEPLOY_COLUMNS: &str = "id, target, cluster, namespace, kind, name, source, \
     revision, status, environment, region, version, images, commit_sha, change_cause, \
     description, helm_release, chart, chart_version, app_version, pod_template_hash, link, \
     actor, started_at, finished_at, details, first_seen_at, updated_at";

/// Rows of one target plus those of the Helm releases that manage it: `?1` is the target
/// key, `?2` its cluster, `?3` its namespace (placeholders are written per backend).
pub(crate) fn linked_target_sql(key: &str, cluster: &str, namespace: &str) -> String {
    format!(
        "(target = {key} OR (kind = '{}' AND cluster = {cluster} AND namespace = {namespace} \
         AND name IN (SELECT helm_release FROM deploys \
                      WHERE target = {key} AND helm_release IS NOT NULL)))",
        crate::domain::deploy::HELM_RELEASE_KIND
    )
}

/// Action kinds that roll a target back, and the state of one that was carried out.
pub(crate) const ROLLBACK_ACTION_KINDS: &str =
    "'rollout_undo', 'helm_rollback', 'workflow_dispatch', 'command'";
pub(crate) const ACTION_DONE_STATES: &str = "'succeeded', 'verifying', 'verified', 'escalated'";

/// The columns of an action row, in the order both backends read them.
pub(crate) const ACTION_COLUMNS: &str = "id, decision_id, target, kind, mode, idempotency_key, \
     state, params, attempts, next_attempt_at, lease_owner, lease_expires_at, executed_at, \
     result, last_error, approved_by, approval_comment, expires_at, resumed, created_at, \
     updated_at";

/// The columns of a notification row, in the order both backends read them.
pub(crate) const NOTIFICATION_COLUMNS: &str = "id, action_id, decision_id, channel, event, \
     payload, status, attempts, last_error, response, next_attempt_at, created_at, delivered_at";

/// The columns of an audit row.
pub(crate) const AUDIT_COLUMNS: &str = "id, at, actor, kind, subject, details";

/// States a worker may claim (besides `running` under an expired lease).
pub(crate) const CLAIMABLE_STATES: &str = "'pending', 'approved'";

/// The state and columns an attempt's end writes.
pub(crate) struct FinishColumns<'a> {
    pub state: &'static str,
    pub result: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
    pub retry_at: Option<DateTime<Utc>>,
    /// Whether the executor carried it out (sets `executed_at`).
    pub executed: bool,
}

/// The state and columns an attempt's end writes.
pub(crate) fn finish_columns(finish: &ActionFinish) -> FinishColumns<'_> {
    let (state, result, error, retry_at, executed) = match finish {
        ActionFinish::Succeeded { result, verify } => (
            if *verify { "verifying" } else { "succeeded" },
            Some(result),
            None,
            None,
            true,
        ),
        ActionFinish::DryRun { result } => ("dry_run", Some(result), None, None, false),
        ActionFinish::Escalated { error, result } => (
            "escalated",
            result.as_ref(),
            Some(error.as_str()),
            None,
            false,
        ),
        ActionFinish::Retry { error, retry_at } => (
            "pending",
            None,
            Some(error.as_str()),
            Some(*retry_at),
            false,
        ),
        ActionFinish::Failed { error } => ("failed", None, Some(error.as_str()), None, false),
    };
    FinishColumns {
        state,
        result,
        error,
        retry_at,
        executed,
    }
}

/// The status and columns a delivery attempt's end writes: (status, response, error,
/// retry_at, delivered).
pub(crate) fn notification_finish_columns(
    finish: &NotificationFinish,
) -> (
    &'static str,
    Option<&str>,
    Option<&str>,
    Option<DateTime<Utc>>,
    bool,
) {
    match finish {
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
        NotificationFinish::Failed { error } => ("failed", None, Some(error.as_str()), None, false),
    }
}

/// The columns of a freeze row, in the order both backends read them.
pub(crate) const FREEZE_COLUMNS: &str =
    "id, scope, reason, created_by, decision_id, created_at, expires_at, lifted_at, lifted_by";

/// The columns of a decision row, in the order both backends read them.
pub(crate) const DECISION_COLUMNS: &str = "id, target, verdict, reason, inputs_hash, \
     policy_version, suspect_deploy_id, rollback_to_id, evidence, decided_at";

/// The statuses `last_healthy_before` accepts, as an SQL list.
pub(crate) fn healthy_statuses_sql() -> String {
    use crate::domain::deploy::status;
    [status::DEPLOYED, status::SUPERSEDED, status::SUCCEEDED]
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
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

/// A batch reduced to the rows it writes: receipts unique by dedupe key (with how many
/// times each occurred) and alerts unique by occurrence, merged in arrival order.
/// Both backends write exactly this, so they agree on every outcome.
pub(crate) struct PlannedBatch<'a> {
    batch: &'a [Notification],
    /// (dedupe key, first notification with it, occurrences), sorted by key so that
    /// concurrent transactions lock rows in one order.
    pub receipts: Vec<(String, &'a Notification, usize)>,
    /// Index into `receipts` for each notification of the batch.
    receipt_of: Vec<usize>,
}

impl<'a> PlannedBatch<'a> {
    pub fn new(batch: &'a [Notification]) -> Self {
        let keys: Vec<String> = batch.iter().map(Notification::dedupe_key).collect();
        let mut sorted: Vec<usize> = (0..batch.len()).collect();
        sorted.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
        let mut receipts: Vec<(String, &Notification, usize)> = Vec::new();
        let mut receipt_of = vec![0; batch.len()];
        for i in sorted {
            match receipts.last_mut() {
                Some((key, _, count)) if *key == keys[i] => *count += 1,
                _ => receipts.push((keys[i].clone(), &batch[i], 1)),
            }
            receipt_of[i] = receipts.len() - 1;
        }
        Self {
            batch,
            receipts,
            receipt_of,
        }
    }

    /// The alerts of the receipts that turned out new (`is_new`, per receipt), merged per
    /// occurrence in arrival order and sorted by (fingerprint, starts_at), each with the
    /// notification and receipt id that carried it last.
    pub fn alerts(
        &self,
        receipt_ids: &[i64],
        is_new: &[bool],
    ) -> Vec<(Alert, &'a Notification, i64)> {
        type Merged<'n> = (Alert, &'n Notification, i64);
        let mut merged: HashMap<(&str, DateTime<Utc>), Merged<'a>> = HashMap::new();
        let mut taken = vec![false; self.receipts.len()];
        for (i, notification) in self.batch.iter().enumerate() {
            let r = self.receipt_of[i];
            if !is_new[r] || std::mem::replace(&mut taken[r], true) {
                continue;
            }
            for alert in &notification.alerts {
                merged
                    .entry((alert.fingerprint.as_str(), alert.starts_at))
                    .and_modify(|(stored, n, id)| {
                        stored.merge(alert);
                        *n = notification;
                        *id = receipt_ids[r];
                    })
                    .or_insert_with(|| (alert.clone(), notification, receipt_ids[r]));
            }
        }
        let mut alerts: Vec<_> = merged.into_values().collect();
        alerts.sort_by(|a, b| {
            (&a.0.fingerprint, a.0.starts_at).cmp(&(&b.0.fingerprint, b.0.starts_at))
        });
        alerts
    }

    /// One outcome per notification of the batch, from the per receipt results. Only the
    /// first occurrence of a new receipt counts as fresh; the rest are duplicates.
    pub fn outcomes(&self, receipt_ids: &[i64], is_new: &[bool]) -> Vec<IngestOutcome> {
        let mut seen = vec![false; self.receipts.len()];
        self.receipt_of
            .iter()
            .map(|&r| {
                let fresh = is_new[r] && !std::mem::replace(&mut seen[r], true);
                IngestOutcome {
                    receipt_id: receipt_ids[r],
                    duplicate: !fresh,
                    alerts_written: if fresh {
                        self.receipts[r].1.alerts.len()
                    } else {
                        0
                    },
                }
            })
            .collect()
    }
}
