//! From decisions to actions, exactly once. The engine hands every `rollback` and
//! `freeze` decision to the [`Planner`], which puts its actions (one per idempotency
//! key, ever) and notifications in the outbox; [`Worker`]s claim them with leases,
//! run the executors, verify rollbacks (E1/V1), enforce the loop guard and deliver
//! notifications, recording every step on the action.

pub mod command;
pub mod executor;
mod notify;
mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

pub use notify::Channels;
pub use worker::{StepReport, Worker, WorkerConfig};

use crate::domain::action::{self, Event, FreezeScope, Message};
use crate::domain::{Decision, Mode, Target, Verdict};
use crate::store::{ActionRecord, NewAction, Store, StoreError, StoredDecision};

/// Enqueues the actions and notifications of decisions. Cheap to clone.
#[derive(Clone)]
pub struct Planner {
    pub store: Arc<dyn Store>,
    pub freeze_scope: FreezeScope,
    pub approval_ttl: chrono::Duration,
    pub channels: Channels,
    /// Wakes idle workers when there is new work.
    pub wake: Arc<tokio::sync::Notify>,
}

impl Planner {
    /// Puts `decision`'s actions in the outbox (idempotent: call it on every
    /// evaluation, so a crash between recording a decision and enqueueing its actions
    /// loses nothing), with the notifications a new action or escalation calls for.
    /// Returns the actions standing for the decision's keys, and whether each is new.
    pub async fn enqueue(
        &self,
        stored: &StoredDecision,
        decision: &Decision,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ActionRecord, bool)>, StoreError> {
        let mut enqueued = Vec::new();
        let mut wake = false;
        for planned in action::plan(decision, target, self.freeze_scope) {
            let new = NewAction {
                decision_id: stored.id,
                target_key: stored.target_key.clone(),
                kind: planned.kind.clone(),
                mode: mode_name(planned.mode).into(),
                idempotency_key: planned.idempotency_key,
                state: planned.state.into(),
                params: planned.params,
                expires_at: (planned.mode == Mode::Approve).then(|| now + self.approval_ttl),
            };
            let (record, created) = self.store.enqueue_action(&new, now).await?;
            if created {
                tracing::info!(
                    action = record.id,
                    kind = %record.kind,
                    mode = %record.mode,
                    state = %record.state,
                    decision = stored.id,
                    "action enqueued"
                );
                self.store
                    .record_audit(
                        "rollwarden",
                        "action.created",
                        &format!("action:{}", record.id),
                        &json!({ "decision_id": stored.id, "state": record.state, "mode": record.mode }),
                        now,
                    )
                    .await?;
                let event = match record.state.as_str() {
                    "recommended" => Some(Event::Recommend),
                    "awaiting_approval" => Some(Event::Approval),
                    _ => None,
                };
                if let Some(event) = event {
                    let message = Message {
                        event,
                        decision_id: stored.id,
                        decision,
                        action: Some((&record.kind, &record.state)),
                        detail: None,
                        now,
                        eta: None,
                        public_url: &self.channels.public_url,
                    };
                    self.channels
                        .enqueue(&*self.store, &message, Some(record.id), now)
                        .await?;
                }
                wake |= matches!(
                    record.state.as_str(),
                    "pending" | "recommended" | "awaiting_approval"
                );
            }
            enqueued.push((record, created));
        }
        // Decision-level escalations (E1, a loop-guard hold, M8): once per decision.
        if let Some(escalate) = &decision.escalate {
            let message = Message {
                event: Event::Escalate,
                decision_id: stored.id,
                decision,
                action: None,
                detail: Some(escalate),
                now,
                eta: None,
                public_url: &self.channels.public_url,
            };
            wake |= self
                .channels
                .enqueue(&*self.store, &message, None, now)
                .await?;
        }
        if wake {
            self.wake.notify_waiters();
        }
        Ok(enqueued)
    }

    /// Whether a decision may call for actions or notifications.
    pub fn concerns(decision: &Decision) -> bool {
        matches!(decision.verdict, Verdict::Rollback | Verdict::Freeze)
            || decision.escalate.is_some()
    }
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Observe => "observe",
        Mode::Recommend => "recommend",
        Mode::Approve => "approve",
        Mode::Auto => "auto",
    }
}
