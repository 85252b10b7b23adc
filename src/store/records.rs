//! What the store takes and gives back: records as stored, the filters of the listings,
//! and how an attempt at an action or a delivery ended.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    Alert, AlertStatus, DecisionBrief, Deploy, DeploySource, Freeze, Labels, Verdict,
};

#[cfg(doc)]
use super::{ActionStore, AlertStore, DecisionStore, DeployStore};

/// What became of one notification in [`AlertStore::record_notifications`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestOutcome {
    pub receipt_id: i64,
    /// The same content had been received before; only the duplicate count moved.
    pub duplicate: bool,
    /// Alert rows inserted or updated by this notification.
    pub alerts_written: usize,
    /// The alert rows its batch wrote that this notification carried last, as written:
    /// what the engine merges into its window without reading them back. A row the
    /// write left alone (a resolved alert delivered firing again) is not here.
    #[serde(skip)]
    pub written: Vec<EvaluationAlert>,
}

/// An alert row as an evaluation takes it: its id, its last delivery and its content,
/// without the receipt bookkeeping a list shows. An ingest hands the rows it wrote to
/// the engine in this form (what a read of the row would return right after the
/// commit), and every evaluation read returns stored rows in it: the canary reads',
/// the engine window's.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationAlert {
    pub id: i64,
    /// The delivery that last wrote it (a notification's arrival, to the microsecond).
    pub updated_at: DateTime<Utc>,
    /// Its content; from an ingest, the batch's alerts of this occurrence merged in
    /// arrival order.
    pub alert: Alert,
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
    /// When it was last delivered: written, or re-sent unchanged (to the minute).
    pub updated_at: DateTime<Utc>,
    /// Firing, but not delivered again within `engine.alert_stale_secs`: its resolve
    /// was presumably lost, and evaluation leaves it out. Kept, never deleted.
    pub stale: bool,
}

impl StoredAlert {
    /// Whether it is firing and was last delivered before `fresh_since`.
    pub fn is_stale(&self, fresh_since: DateTime<Utc>) -> bool {
        self.status == AlertStatus::Firing && self.updated_at < fresh_since
    }

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

/// Filters for [`AlertStore::list_alerts`]; every filter narrows (AND).
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

/// What [`DeployStore::record_deploys`] did with one deploy.
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

/// Filters for [`DeployStore::list_deploys`]; every filter narrows (AND).
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

/// A release's own decision to record: its first regression (`region`) or its
/// all-region rollback (`all_regions`), with the release check that decided it.
#[derive(Debug, Clone)]
pub struct NewReleaseDecision {
    /// `SERVICE@VERSION`.
    pub release: String,
    /// `region` or `all_regions`.
    pub scope: String,
    /// The region's decision that made it.
    pub decision_id: i64,
    pub decided_at: DateTime<Utc>,
    /// The release check ([`crate::domain::release::ReleaseCheck`]) as JSON.
    pub body: serde_json::Value,
}

/// A release decision as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReleaseDecision {
    pub id: i64,
    pub release: String,
    /// `region` or `all_regions`.
    pub scope: String,
    /// The region's decision that made it.
    pub decision_id: i64,
    pub decided_at: DateTime<Utc>,
    /// The release check at that moment: affected regions, those rolled back, those
    /// kept running and why, those the wave stopped.
    #[schema(value_type = crate::domain::release::ReleaseCheck)]
    pub check: serde_json::Value,
}

/// A recorded decision without its evidence: what the engine compares an evaluation
/// with, and what its callers cite.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionHead {
    pub id: i64,
    pub verdict: String,
    pub inputs_hash: String,
    pub decided_at: DateTime<Utc>,
}

/// What an evaluation of one target reads from the store besides its signals, read for
/// many targets at once by [`DecisionStore::evaluation_inputs`](super::DecisionStore::evaluation_inputs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetInputs {
    /// Its deploys, newest first, as [`DeployStore::target_history`](super::DeployStore::target_history)
    /// reads them.
    pub deploys: Vec<StoredDeploy>,
    /// When its automatic rollbacks ran, oldest first, as
    /// [`ActionStore::automatic_rollbacks`](super::ActionStore::automatic_rollbacks)
    /// reads them.
    pub automatic_rollbacks: Vec<DateTime<Utc>>,
    /// When its latest `ok` decision was recorded.
    pub recovered_at: Option<DateTime<Utc>>,
    /// Its standing decision, as [`DecisionStore::decision_head`](super::DecisionStore::decision_head)
    /// reads it.
    pub head: Option<DecisionHead>,
}

impl From<&StoredDecision> for DecisionHead {
    fn from(d: &StoredDecision) -> Self {
        Self {
            id: d.id,
            verdict: d.verdict.clone(),
            inputs_hash: d.inputs_hash.clone(),
            decided_at: d.decided_at,
        }
    }
}

/// A target's standing (latest) decision, briefly: what a list of every target reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StandingDecision {
    pub id: i64,
    /// `cluster/namespace/kind/name`.
    pub target_key: String,
    pub verdict: String,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
    pub brief: DecisionBrief,
}

/// A recorded decision's line in a list: what the console's decisions page shows,
/// without the evidence (kilobytes a decision, most of a page's cost to read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionLine {
    pub id: i64,
    /// `cluster/namespace/kind/name`.
    pub target_key: String,
    pub verdict: String,
    pub reason: String,
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

/// Filters for [`DecisionStore::list_decisions`], newest first.
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

/// Filters for [`ActionStore::list_actions`], newest first.
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

/// Where a chat channel keeps a decision's messages: its first message (Slack: the
/// conversation id and the message's `ts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageThread {
    pub decision_id: i64,
    /// The notification channel (`slack_app`).
    pub channel: String,
    /// The chat's own conversation id (Slack: `C…`).
    pub conversation: String,
    /// The first message's id in it (Slack: `ts`).
    pub thread_ts: String,
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
