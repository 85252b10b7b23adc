//! The outbox worker. Each step: expire approvals nobody gave, run every claimable
//! action (loop guard first, announcement before, result after), verify executed
//! rollbacks against the target's latest decision (V1) and escalate those that have
//! not restored service in time (E1), and deliver pending notifications.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::executor::{ExecOutcome, Executor, Executors, Journal, Posted};
use super::notify::{Channels, News};
use crate::clock::Clock;
use crate::domain::action::{ActionKind, Event, Message};
use crate::domain::policy::Policy;
use crate::domain::{Decision, TargetRef, loop_guard};
use crate::engine::{load_deploys, load_history};
use crate::store::{
    ActionFinish, ActionQuery, ActionRecord, ActionTransition, NotificationFinish, Store,
    StoreError,
};
use crate::telemetry::Metrics;

/// Most actions, verifications or notifications handled per step and kind of work.
const BATCH: u32 = 64;

/// The longest a rollback waits for its announcement to be delivered before it starts
/// (docs/approvals.md): channels that answer promptly are told first, a hanging one
/// does not delay the rollback.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub dry_run: bool,
    pub lease: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub notify_max_attempts: u32,
    /// How long an announced rollback is expected to take (the ETA).
    pub eta: Duration,
    /// How often an idle worker looks for work.
    pub poll: Duration,
    /// How often a rollback that is running or being verified gets a status update
    /// in its Slack thread.
    pub status_interval: Duration,
}

impl WorkerConfig {
    pub fn from_config(
        config: &crate::config::ActionsConfig,
        notify: &crate::config::NotifyConfig,
    ) -> Self {
        Self {
            dry_run: config.dry_run,
            lease: Duration::from_secs(config.lease_secs),
            max_attempts: config.max_attempts,
            retry_base: Duration::from_secs(config.retry_base_secs),
            retry_max: Duration::from_secs(config.retry_max_secs),
            notify_max_attempts: notify.max_attempts,
            eta: Duration::from_secs(config.rollout_timeout_secs),
            poll: Duration::from_millis(config.poll_ms),
            status_interval: Duration::from_secs(notify.slack.status_interval_secs),
        }
    }

    /// The wait before attempt `attempts + 1`: the base doubled per attempt, capped.
    fn backoff(&self, attempts: i32) -> chrono::Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let wait = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.retry_max);
        chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub expired: usize,
    pub ran: usize,
    pub verified: usize,
    pub escalated: usize,
    pub delivered: usize,
    pub undelivered: usize,
}

impl StepReport {
    fn busy(&self) -> bool {
        self.ran + self.delivered + self.undelivered > 0
    }
}

/// One worker; run several (in one replica or many) on one store.
#[derive(Clone)]
pub struct Worker {
    /// Names this worker in leases and the audit trail.
    pub owner: String,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<Policy>,
    pub executors: Executors,
    pub channels: Channels,
    pub http: reqwest::Client,
    pub config: WorkerConfig,
    pub wake: Arc<tokio::sync::Notify>,
    /// The status update each running or verifying action last got from this worker,
    /// by its count: the store is asked again only when the next one is due.
    pub status_sent: Arc<std::sync::Mutex<std::collections::HashMap<i64, i64>>>,
}

impl Worker {
    /// Runs steps until `shutdown`, sleeping between idle ones (new work wakes it).
    /// A shutdown abandons an attempt in progress as a crash would, except that it ends
    /// its lease at once: the next worker (this replica after a restart, or another)
    /// resumes it without waiting, checking the world before acting again.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            // Listening before the step: a wake-up that comes while it runs (an action
            // enqueued just after its claim found none) is kept, not lost to wait for
            // the next poll.
            let woken = self.wake.notified();
            let step = tokio::select! {
                () = shutdown.cancelled() => {
                    self.release().await;
                    return;
                }
                step = self.step() => step,
            };
            let busy = match step {
                Ok(report) => report.busy(),
                Err(err) => {
                    self.metrics.store_error("actions_worker", &err);
                    tracing::error!(error = %err, worker = %self.owner, "actions worker step failed");
                    false
                }
            };
            if busy && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    async fn release(&self) {
        match self
            .store
            .expire_leases(&self.owner, self.clock.now())
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(worker = %self.owner, actions = n, "shutting down mid-attempt: lease released, the next worker resumes it")
            }
            Err(err) => {
                tracing::error!(worker = %self.owner, error = %err, "shutting down: cannot release leases; they expire by themselves")
            }
        }
    }

    /// One pass over every kind of work.
    pub async fn step(&self) -> Result<StepReport, StoreError> {
        let mut report = StepReport {
            expired: self.expire_approvals().await?,
            ..StepReport::default()
        };
        for _ in 0..BATCH {
            let now = self.clock.now();
            let lease =
                chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
            let Some(action) = self.store.claim_action(&self.owner, lease, now).await? else {
                break;
            };
            self.run_action(action, &mut report).await?;
            report.ran += 1;
        }
        self.verify(&mut report).await?;
        self.status_updates().await?;
        self.deliver(&mut report).await?;
        Ok(report)
    }

    async fn decision(&self, id: i64) -> Result<Option<Decision>, StoreError> {
        Ok(self
            .store
            .decision(id)
            .await?
            .and_then(|stored| serde_json::from_value(stored.decision).ok()))
    }

    /// Enqueues a message about `action` on every channel.
    async fn announce(
        &self,
        action: &ActionRecord,
        state: &str,
        event: Event,
        detail: Option<&str>,
        eta: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let news = News {
            state,
            event,
            detail,
            eta,
        };
        self.channels
            .announce(&*self.store, action, &news, self.clock.now())
            .await?;
        Ok(())
    }

    async fn audit(
        &self,
        action: &ActionRecord,
        kind: &str,
        details: Value,
    ) -> Result<(), StoreError> {
        self.store
            .record_audit(
                &self.owner,
                kind,
                &format!("action:{}", action.id),
                &details,
                self.clock.now(),
            )
            .await
    }

    #[tracing::instrument(skip_all, fields(
        action = action.id,
        decision = action.decision_id,
        kind = %action.kind,
        target = %action.target_key,
    ))]
    async fn run_action(
        &self,
        action: ActionRecord,
        report: &mut StepReport,
    ) -> Result<(), StoreError> {
        let kind = ActionKind::parse(&action.kind);
        let executor = self.executors.get(&action.kind);
        let (Some(kind), Some(executor)) = (kind, executor) else {
            let error = format!(
                "no executor for {:?} here (is Kubernetes access configured, or the \
                 command/webhook still in the config?)",
                action.kind
            );
            return self
                .finish(&action, ActionFinish::Failed { error }, report)
                .await;
        };
        let dry_run = self.config.dry_run;
        if kind.rolls_back()
            && action.mode == "auto"
            && !dry_run
            && let Some(trip) = self.loop_guard(&action).await?
        {
            let finish = ActionFinish::Escalated {
                error: trip,
                result: None,
            };
            return self.finish(&action, finish, report).await;
        }
        self.audit(
            &action,
            "action.started",
            json!({ "attempt": action.attempts, "resumed": action.resumed, "dry_run": dry_run }),
        )
        .await?;
        let announce = kind.rolls_back() && !dry_run;
        if announce {
            // The runbook's announcement goes out before the rollback starts.
            let eta = self.clock.now()
                + chrono::Duration::from_std(self.config.eta).unwrap_or(chrono::Duration::zero());
            self.announce(&action, "running", Event::Announce, None, Some(eta))
                .await?;
        }
        // ...but a slow channel (a receiver that answers only at the HTTP timeout) holds
        // the rollback back no longer than ANNOUNCE_WAIT: the delivery goes on beside
        // it, never cut short once it has claimed a message, and what fails is retried.
        let (announced, announced_rx) = tokio::sync::oneshot::channel::<()>();
        let mut deliveries = StepReport::default();
        let delivery = async {
            let outcome = if announce {
                self.deliver(&mut deliveries).await
            } else {
                Ok(())
            };
            drop(announced);
            outcome
        };
        let execution = async {
            if announce
                && tokio::time::timeout(ANNOUNCE_WAIT, announced_rx)
                    .await
                    .is_err()
            {
                tracing::warn!(action = action.id, wait = ?ANNOUNCE_WAIT, "the announcement is not delivered yet: rolling back without waiting longer");
            }
            self.execute(&action, &kind, &*executor, report).await
        };
        let (delivered, executed) = tokio::join!(delivery, execution);
        report.delivered += deliveries.delivered;
        report.undelivered += deliveries.undelivered;
        executed.and(delivered)
    }

    /// Runs the executor once and records how the attempt ended.
    async fn execute(
        &self,
        action: &ActionRecord,
        kind: &ActionKind,
        executor: &dyn Executor,
        report: &mut StepReport,
    ) -> Result<(), StoreError> {
        let dry_run = self.config.dry_run;
        tracing::info!(action = action.id, kind = %action.kind, target = %action.target_key, dry_run, attempt = action.attempts, "executing");
        let journal = AuditJournal {
            worker: self,
            action,
        };
        let outcome = executor
            .execute(action, dry_run, &journal)
            .instrument(tracing::info_span!("execute", dry_run))
            .await;
        let finish = match outcome {
            ExecOutcome::Done { result, verify } => ActionFinish::Succeeded {
                result,
                verify: verify && kind.rolls_back(),
            },
            ExecOutcome::DryRun { result } => ActionFinish::DryRun { result },
            ExecOutcome::Retry(error) if action.attempts < self.config.max_attempts as i32 => {
                ActionFinish::Retry {
                    retry_at: self.clock.now() + self.config.backoff(action.attempts),
                    error,
                }
            }
            ExecOutcome::Retry(error) => ActionFinish::Failed {
                error: format!("gave up after {} attempts: {error}", action.attempts),
            },
            ExecOutcome::Failed(error) => ActionFinish::Failed { error },
            ExecOutcome::Escalate { error, result } => ActionFinish::Escalated { error, result },
        };
        self.finish(action, finish, report).await
    }

    /// The loop guard, enforced at execution time too (the same rule `decide()` holds
    /// on): `Some(why)` when another automatic rollback of the target now would trip it.
    async fn loop_guard(&self, action: &ActionRecord) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        let history = load_history(&*self.store, &self.policy, &action.target_key, now).await?;
        // The deploys show which revision each past rollback went away from: those away
        // from this action's suspect count even across a recovery.
        let deploys = match TargetRef::parse(&action.target_key) {
            Some(target) => load_deploys(&*self.store, &target).await?,
            None => Vec::new(),
        };
        let suspect_id = action
            .params
            .get("suspect_deploy_id")
            .and_then(Value::as_i64);
        let suspect = deploys.iter().find(|d| Some(d.id) == suspect_id);
        Ok(loop_guard(&self.policy, &history, &deploys, suspect, now).map(|hold| hold.detail()))
    }

    async fn finish(
        &self,
        action: &ActionRecord,
        finish: ActionFinish,
        report: &mut StepReport,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        if !self
            .store
            .finish_action(action.id, &self.owner, &finish, now)
            .await?
        {
            tracing::warn!(action = action.id, worker = %self.owner, "lease lost before the attempt ended; its outcome is left to the next claim");
            return Ok(());
        }
        let (state, detail, details): (&str, Option<String>, Value) = match &finish {
            ActionFinish::Succeeded { result, verify } => (
                if *verify { "verifying" } else { "succeeded" },
                None,
                result.clone(),
            ),
            ActionFinish::DryRun { result } => ("dry_run", None, result.clone()),
            ActionFinish::Escalated { error, result } => (
                "escalated",
                Some(error.clone()),
                json!({ "error": error, "result": result }),
            ),
            ActionFinish::Retry { error, retry_at } => (
                "retry",
                Some(error.clone()),
                json!({ "error": error, "retry_at": retry_at }),
            ),
            ActionFinish::Failed { error } => {
                ("failed", Some(error.clone()), json!({ "error": error }))
            }
        };
        self.metrics.action(metric_kind(&action.kind), state);
        tracing::info!(action = action.id, kind = %action.kind, state, error = detail.as_deref().unwrap_or(""), "action attempt ended");
        self.audit(action, &format!("action.{state}"), details)
            .await?;
        let announced = match state {
            "retry" => None,
            "escalated" => {
                report.escalated += 1;
                Some(Event::Escalate)
            }
            _ => Some(Event::Result),
        };
        if let Some(event) = announced {
            let detail = detail.or_else(|| match state {
                "verifying" => Some(format!(
                    "Executed; now verifying that service is restored (escalation after {} s).",
                    self.policy.verification.escalate_after_secs
                )),
                "dry_run" => {
                    Some("Dry run: recorded what would have been done; nothing was.".into())
                }
                _ => None,
            });
            // What the executor says people must still do (Argo CD's auto-sync to turn
            // back on, a Git revert) is part of the news, not only of the result.
            let detail = match (detail, result_note(&finish)) {
                (Some(detail), Some(note)) => Some(format!("{detail}\nNote: {note}")),
                (None, Some(note)) => Some(format!("Note: {note}")),
                (detail, None) => detail,
            };
            self.announce(action, state, event, detail.as_deref(), None)
                .await?;
        }
        Ok(())
    }

    /// Moves approvals past their expiry to `expired`.
    async fn expire_approvals(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let waiting = self
            .store
            .list_actions(&ActionQuery {
                state: Some("awaiting_approval".into()),
                limit: BATCH * 4,
                ..ActionQuery::default()
            })
            .await?;
        let mut expired = 0;
        for action in waiting {
            if action.expires_at.is_none_or(|at| at > now) {
                continue;
            }
            let details = json!({ "expires_at": action.expires_at });
            let moved = Self::expire_approval(
                &*self.store,
                &self.channels,
                &self.metrics,
                &action,
                &self.owner,
                details,
                now,
            )
            .await?;
            expired += usize::from(moved.is_some());
        }
        Ok(expired)
    }

    /// Moves `action`, awaiting approval past its expiry, to `expired` (recorded as
    /// `by` with its details), counts it and announces it on every channel: the
    /// result, and PagerDuty's `approval-expired` trigger. The one way an approval
    /// expires, whoever notices first: the workers' sweep, or a press or API call that
    /// comes too late (the approval gate). `None` when the action had already moved.
    pub async fn expire_approval(
        store: &dyn Store,
        channels: &Channels,
        metrics: &Metrics,
        action: &ActionRecord,
        by: &str,
        details: Value,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        let change = ActionTransition {
            from: &["awaiting_approval"],
            to: "expired",
            actor: by,
            comment: None,
            details,
        };
        let Some(action) = store.transition_action(action.id, &change, now).await? else {
            return Ok(None);
        };
        metrics.action(metric_kind(&action.kind), "expired");
        let news = News {
            state: "expired",
            event: Event::Result,
            detail: Some("Nobody approved it in time; nothing was done."),
            eta: None,
        };
        channels.announce(store, &action, &news, now).await?;
        Ok(Some(action))
    }

    /// V1/E1: a rollback being verified is `verified` once the target's latest
    /// decision after it shows service restored, and `escalated` when that has not
    /// happened within `verification.escalate_after_secs`.
    #[tracing::instrument(skip_all)]
    async fn verify(&self, report: &mut StepReport) -> Result<(), StoreError> {
        let now = self.clock.now();
        let verifying = self
            .store
            .list_actions(&ActionQuery {
                state: Some("verifying".into()),
                limit: BATCH * 4,
                ..ActionQuery::default()
            })
            .await?;
        let window = chrono::Duration::seconds(
            i64::try_from(self.policy.verification.escalate_after_secs).unwrap_or(i64::MAX),
        );
        for action in verifying {
            let executed_at = action.executed_at.unwrap_or(action.updated_at);
            let latest = self.store.latest_decision(&action.target_key).await?;
            let restored = latest
                .as_ref()
                .filter(|d| d.decided_at >= executed_at)
                .filter(|d| {
                    serde_json::from_value::<Decision>(d.decision.clone())
                        .is_ok_and(|decision| decision.restores_service())
                })
                .map(|d| d.id);
            let (to, event, detail) = if let Some(decision_id) = restored {
                (
                    "verified",
                    Event::Result,
                    format!("Service restored: decision #{decision_id} shows the target healthy."),
                )
            } else if now - executed_at >= window {
                (
                    "escalated",
                    Event::Escalate,
                    format!(
                        "E1: the rollback has not restored service within {} s; escalate to \
                         the platform on-call (and the database owners).",
                        self.policy.verification.escalate_after_secs
                    ),
                )
            } else {
                continue;
            };
            let change = ActionTransition {
                from: &["verifying"],
                to,
                actor: &self.owner,
                comment: None,
                details: json!({ "detail": detail, "latest_decision": latest.as_ref().map(|d| d.id) }),
            };
            if let Some(action) = self
                .store
                .transition_action(action.id, &change, now)
                .await?
            {
                if to == "verified" {
                    report.verified += 1;
                    self.recommend_inclusion(&action).await?;
                } else {
                    report.escalated += 1;
                }
                self.metrics.action(metric_kind(&action.kind), to);
                self.announce(&action, to, event, Some(&detail), None)
                    .await?;
            }
        }
        Ok(())
    }

    /// A region rolled back alone and taken out of federation routing, now verified:
    /// its re-inclusion (`policy.releases.federation_include`) is put to a person, as an
    /// action awaiting approval, once (by its key).
    async fn recommend_inclusion(&self, rollback: &ActionRecord) -> Result<(), StoreError> {
        let Some(include) = self.policy.releases.federation_include.as_deref() else {
            return Ok(());
        };
        let actions = self.store.decision_actions(&[rollback.decision_id]).await?;
        let Some(exclusion) = actions.iter().find(|a| {
            a.target_key == rollback.target_key
                && a.state == "succeeded"
                && matches!(
                    ActionKind::parse(&a.kind),
                    Some(ActionKind::Federation { include: false, .. })
                )
        }) else {
            return Ok(());
        };
        let kind = format!("{}:{include}", crate::domain::action::FEDERATION_INCLUDE);
        let mut params = exclusion.params.clone();
        if let Some(object) = params.as_object_mut() {
            object.insert("federation".into(), "include".into());
        }
        let deploy = params["suspect_deploy_id"].as_i64().unwrap_or_default();
        let new = crate::store::NewAction {
            decision_id: rollback.decision_id,
            target_key: rollback.target_key.clone(),
            idempotency_key: format!("{}|deploy:{deploy}|{kind}", rollback.target_key),
            kind,
            mode: "approve".into(),
            state: "awaiting_approval".into(),
            params,
            expires_at: None,
            notify: Vec::new(),
        };
        let (record, created) = self.store.enqueue_action(&new, self.clock.now()).await?;
        if created {
            let region = record.params["region"].as_str().unwrap_or("-").to_string();
            let detail = format!(
                "The rollback of region {region} is verified: approve action #{} to put the \
                 region back in federation routing ({include}).",
                record.id
            );
            self.announce(
                &record,
                "awaiting_approval",
                Event::Approval,
                Some(&detail),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// The runbook's "status updates every 2 minutes": each rollback running or being
    /// verified gets one in its thread per `status_interval` elapsed since it started
    /// (keyed by that count, so once each however many workers look), saying what the
    /// latest decision about its target shows. Only the Slack app has threads.
    async fn status_updates(&self) -> Result<(), StoreError> {
        if !self.channels.threads() {
            return Ok(());
        }
        let interval = chrono::Duration::from_std(self.config.status_interval)
            .unwrap_or(chrono::Duration::MAX);
        let now = self.clock.now();
        let mut due = Vec::new();
        for state in ["running", "verifying"] {
            let actions = self
                .store
                .list_actions(&ActionQuery {
                    state: Some(state.into()),
                    limit: BATCH * 4,
                    ..ActionQuery::default()
                })
                .await?;
            for action in actions {
                let since = match state {
                    "verifying" => action.executed_at.unwrap_or(action.updated_at),
                    _ => action.created_at,
                };
                let elapsed = now - since;
                let count = elapsed.num_seconds() / interval.num_seconds().max(1);
                due.push((action, state, elapsed, count));
            }
        }
        // Forget actions that are no longer running or verifying; skip those whose
        // current update this worker already enqueued (enqueueing is idempotent, but
        // a poll is not the moment to ask the store every time).
        let due: Vec<_> = {
            let mut sent = self
                .status_sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sent.retain(|id, _| due.iter().any(|(a, ..)| a.id == *id));
            due.into_iter()
                .filter(|(a, _, _, count)| *count >= 1 && sent.get(&a.id) < Some(count))
                .collect()
        };
        for (action, state, elapsed, count) in due {
            let latest = self.store.latest_decision(&action.target_key).await?;
            let detail = status_detail(state, elapsed, latest.as_ref());
            let Some(decision) = self.decision(action.decision_id).await? else {
                continue;
            };
            let message = Message {
                event: Event::Status,
                decision_id: action.decision_id,
                decision: &decision,
                action: Some((&action.kind, state)),
                detail: Some(&detail),
                now,
                eta: None,
                public_url: &self.channels.public_url,
                actor: action.approved_by.as_deref(),
            };
            self.channels
                .enqueue_status(&*self.store, &message, action.id, count, now)
                .await?;
            self.status_sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(action.id, count);
        }
        Ok(())
    }

    /// Delivers every notification due.
    #[tracing::instrument(skip_all)]
    async fn deliver(&self, report: &mut StepReport) -> Result<(), StoreError> {
        let lease = chrono::Duration::seconds(60);
        for _ in 0..BATCH {
            let now = self.clock.now();
            let Some(n) = self
                .store
                .claim_notification(&self.owner, lease, now)
                .await?
            else {
                break;
            };
            let posted = self.channels.deliver(&self.http, &*self.store, &n).await;
            let retry = n.attempts < self.config.notify_max_attempts as i32;
            let finish = match posted {
                Posted::Ok { status, body } => {
                    report.delivered += 1;
                    NotificationFinish::Delivered {
                        response: format!("{status} {body}"),
                    }
                }
                Posted::Transient(error) if retry => {
                    report.undelivered += 1;
                    NotificationFinish::Retry {
                        retry_at: self.clock.now() + self.config.backoff(n.attempts),
                        error,
                    }
                }
                // The receiver said when: no sooner than that, nor than the backoff.
                Posted::Throttled { error, after } if retry => {
                    report.undelivered += 1;
                    let after = chrono::Duration::from_std(after)
                        .unwrap_or(chrono::Duration::MAX)
                        .max(self.config.backoff(n.attempts));
                    NotificationFinish::Retry {
                        retry_at: self.clock.now() + after,
                        error,
                    }
                }
                Posted::Transient(error)
                | Posted::Throttled { error, .. }
                | Posted::Rejected(error) => {
                    report.undelivered += 1;
                    NotificationFinish::Failed { error }
                }
            };
            let outcome = match &finish {
                NotificationFinish::Delivered { .. } => "delivered",
                NotificationFinish::Retry { .. } => "retry",
                NotificationFinish::Failed { .. } => "failed",
            };
            self.metrics.notification_sent(&n.channel, outcome);
            if outcome != "delivered" {
                tracing::warn!(notification = n.id, channel = %n.channel, outcome, "notification not delivered");
            }
            self.store
                .finish_notification(n.id, &self.owner, &finish, self.clock.now())
                .await?;
        }
        Ok(())
    }
}

/// An action's [`Journal`]: its notes are `action.<step>` events on its audit trail,
/// recorded by the worker running the attempt, so they are also in its timeline.
struct AuditJournal<'a> {
    worker: &'a Worker,
    action: &'a ActionRecord,
}

#[async_trait::async_trait]
impl Journal for AuditJournal<'_> {
    async fn note(&self, step: &str, details: &Value) -> Result<(), String> {
        self.worker
            .audit(self.action, &format!("action.{step}"), details.clone())
            .await
            .map_err(|err| err.to_string())
    }

    async fn noted(&self, step: &str) -> Result<Vec<Value>, String> {
        let kind = format!("action.{step}");
        let events = self
            .worker
            .store
            .audit_trail(&[format!("action:{}", self.action.id)])
            .await
            .map_err(|err| err.to_string())?;
        Ok(events
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.details)
            .collect())
    }
}

/// The `note` of an attempt's result: what the executor says people must still do.
fn result_note(finish: &ActionFinish) -> Option<&str> {
    let result = match finish {
        ActionFinish::Succeeded { result, .. } | ActionFinish::DryRun { result } => result,
        ActionFinish::Escalated {
            result: Some(result),
            ..
        } => result,
        _ => return None,
    };
    result["note"]
        .as_str()
        .filter(|note| !note.trim().is_empty())
}

/// The kind as a metric label: configured names are dropped to bound cardinality.
fn metric_kind(kind: &str) -> &str {
    kind.split(':').next().unwrap_or(kind)
}

/// What a status update says: how long the rollback has been in `state`, and what the
/// target's latest decision shows.
fn status_detail(
    state: &str,
    elapsed: chrono::Duration,
    latest: Option<&crate::store::StoredDecision>,
) -> String {
    let minutes = elapsed.num_seconds() / 60;
    let seconds = elapsed.num_seconds() % 60;
    let doing = if state == "verifying" {
        "Executed; waiting for service to be restored"
    } else {
        "Rolling out the known-good revision"
    };
    let mut text = format!("{doing} ({minutes} min {seconds:02} s so far).");
    if let Some(d) = latest {
        text.push_str(&format!(
            " Latest decision #{} at {}: {} ({}).",
            d.id,
            d.decided_at.format("%H:%M:%S UTC"),
            d.verdict,
            d.reason
        ));
    }
    text
}
