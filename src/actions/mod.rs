//! From decisions to actions, exactly once. The engine hands every `rollback` and
//! `freeze` decision to the [`Planner`], which puts its actions (one per idempotency
//! key, ever) and notifications in the outbox; [`Worker`]s claim them with leases,
//! run the executors, verify rollbacks (E1/V1), enforce the loop guard and deliver
//! notifications, recording every step on the action.

mod email;
pub mod executor;
mod notify;
pub mod slack;
mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use notify::Channels;
pub use worker::{StepReport, Worker, WorkerConfig};

use crate::domain::action::{self, Event, FreezeScope, Message};
use crate::domain::{Decision, Mode, Target, Verdict};
use crate::store::{ActionRecord, DecisionHead, NewAction, Store, StoreError};

/// Enqueues the actions and notifications of decisions. Cheap to clone.
#[derive(Clone)]
pub struct Planner {
    pub store: Arc<dyn Store>,
    pub freeze_scope: FreezeScope,
    /// The blast-radius policy: its federation exclusion is planned with a region's
    /// rollback.
    pub releases: crate::domain::release::BlastRadius,
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
    #[tracing::instrument(skip_all, fields(decision = stored.id, target = %target.target))]
    pub async fn enqueue(
        &self,
        stored: &DecisionHead,
        decision: &Decision,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ActionRecord, bool)>, StoreError> {
        let mut enqueued = Vec::new();
        let mut wake = false;
        let mut plan = action::plan(decision, target, self.freeze_scope);
        if let Some(exclusion) =
            action::federation_exclusion(decision, target, &self.releases, &plan)
        {
            plan.push(exclusion);
        }
        for planned in plan {
            // A new recommendation or approval request is announced by notifications
            // written with the action itself. A federation step is the decision's
            // second action: the rollback's message speaks for the decision (approving
            // it approves both), so it gets none of its own.
            let federation = matches!(
                action::ActionKind::parse(&planned.kind),
                Some(action::ActionKind::Federation { .. })
            );
            let event = match planned.state {
                _ if federation => None,
                "recommended" => Some(Event::Recommend),
                "awaiting_approval" => Some(Event::Approval),
                _ => None,
            };
            let notify = event.map_or_else(Vec::new, |event| {
                self.channels.render(&Message {
                    event,
                    decision_id: stored.id,
                    decision,
                    action: Some((&planned.kind, planned.state)),
                    detail: None,
                    now,
                    eta: None,
                    public_url: &self.channels.public_url,
                    actor: None,
                })
            });
            let new = NewAction {
                decision_id: stored.id,
                target_key: target.target.key(),
                kind: planned.kind.clone(),
                mode: mode_name(planned.mode).into(),
                idempotency_key: planned.idempotency_key,
                state: planned.state.into(),
                params: planned.params,
                expires_at: (planned.mode == Mode::Approve).then(|| now + self.approval_ttl),
                notify,
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
                wake |= matches!(
                    record.state.as_str(),
                    "pending" | "recommended" | "awaiting_approval"
                );
            }
            enqueued.push((record, created));
        }
        // Decision-level escalations (a loop-guard hold, M8): once per decision. An E1
        // alone is announced by the worker's verification of the rollback it executed
        // (rollwarden's own rollbacks are the only ones decide() counts), not twice.
        let e1_only = |e: &str| e.starts_with("E1:") && !e.contains("; ");
        if let Some(escalate) = decision.escalate.as_deref().filter(|e| !e1_only(e)) {
            let message = Message {
                event: Event::Escalate,
                decision_id: stored.id,
                decision,
                action: None,
                detail: Some(escalate),
                now,
                eta: None,
                public_url: &self.channels.public_url,
                actor: None,
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
