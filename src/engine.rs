//! The decision loop. A target is evaluated after each committed ingest that touches it
//! and on a tick (duration rules such as G1 need the clock to move); an evaluation
//! loads the target's signals, deploys, freezes and rollback history, calls the pure
//! `decide()`, and records the decision when its verdict or inputs changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::actions::Planner;
use crate::clock::Clock;
use crate::domain::alert::AlertStatus;
use crate::domain::classify::{Classified, Classifier};
use crate::domain::decide::{History, decide};
use crate::domain::policy::Policy;
use crate::domain::{Decision, DeployRecord, Freeze, Signal, Target, TargetRef, Verdict};
use crate::store::{DecisionQuery, NewDecision, Store, StoreError, StoredAlert, StoredDecision};
use crate::telemetry::Metrics;

/// Deploys of a target an evaluation looks at: the suspect and what came before it.
const HISTORY_DEPTH: u32 = 200;

/// Alerts read per query when the window is (re)loaded.
const WINDOW_PAGE: u32 = 1000;

/// Everything an evaluation needs. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub classifier: Arc<Classifier>,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Turns rollback and freeze decisions into actions; `None` records decisions only.
    pub planner: Option<Planner>,
}

/// What every evaluation at one instant reads, loaded and classified once: a tick
/// evaluates many targets against the same snapshot instead of re-reading (and
/// re-classifying) every alert per target.
pub struct Snapshot {
    pub now: chrono::DateTime<Utc>,
    /// Classified alerts and posted signals about a target, by target.
    pub by_target: BTreeMap<TargetRef, Vec<Arc<Classified>>>,
    /// Signals about no target (a dependency's): each concerns the targets that
    /// depend on it.
    pub untargeted: Vec<Arc<Classified>>,
    pub freezes: Vec<Freeze>,
}

impl Snapshot {
    fn new(now: DateTime<Utc>, signals: Vec<Arc<Classified>>, freezes: Vec<Freeze>) -> Self {
        let mut by_target: BTreeMap<TargetRef, Vec<Arc<Classified>>> = BTreeMap::new();
        let mut untargeted = Vec::new();
        for classified in signals {
            match &classified.signal.target {
                Some(target) => by_target
                    .entry(target.clone())
                    .or_default()
                    .push(classified),
                None => untargeted.push(classified),
            }
        }
        Self {
            now,
            by_target,
            untargeted,
            freezes,
        }
    }
}

/// The run loop's view of the correlation window: every alert still firing or
/// recently resolved, each classified once. A tick reloads it from the store; a batch
/// of ingests merges just the rows those ingests wrote. Under a flood of alerts an
/// evaluation then costs its own rows, not a re-read and re-classification of the
/// whole window (which made ingest with the engine on quadratic).
#[derive(Default)]
struct Window {
    /// By alert id; `None` until loaded (or after a failed read, to reload).
    alerts: Option<BTreeMap<i64, WindowAlert>>,
}

struct WindowAlert {
    updated_at: DateTime<Utc>,
    firing: bool,
    ends_at: Option<DateTime<Utc>>,
    /// `None` for an alert the classifier ignores.
    classified: Option<Arc<Classified>>,
}

impl Window {
    /// Forgets what it holds: the next snapshot reloads the window.
    fn invalidate(&mut self) {
        self.alerts = None;
    }

    fn is_loaded(&self) -> bool {
        self.alerts.is_some()
    }

    fn merge(alerts: &mut BTreeMap<i64, WindowAlert>, classifier: &Classifier, row: &StoredAlert) {
        if alerts
            .get(&row.id)
            .is_some_and(|held| held.updated_at > row.updated_at)
        {
            return;
        }
        alerts.insert(
            row.id,
            WindowAlert {
                updated_at: row.updated_at,
                firing: row.status == AlertStatus::Firing,
                ends_at: row.ends_at,
                classified: classifier.classify(&row.to_alert()).map(Arc::new),
            },
        );
    }
}

/// A message on the engine's queue.
#[derive(Debug, Clone)]
struct Touch {
    /// Targets to evaluate.
    targets: Vec<TargetRef>,
    /// The keys (fingerprint, start) of the alerts a committed ingest wrote: they are
    /// merged into the run loop's [`Window`] before the evaluations (also when they
    /// name no target: a dependency alert concerns the targets that depend on it).
    alerts: Vec<(String, DateTime<Utc>)>,
}

/// What one evaluation produced.
#[derive(Debug)]
pub struct Evaluation {
    pub decision: Decision,
    /// The decision now standing for the target.
    pub stored: StoredDecision,
    /// Whether this evaluation recorded a new decision (the verdict or inputs changed).
    pub changed: bool,
}

/// The loop guard's and verification's view of past rollbacks of `target_key`: its
/// automatic rollbacks inside the loop guard's window, and when it last recovered.
pub async fn load_history(
    store: &dyn Store,
    policy: &Policy,
    target_key: &str,
    now: chrono::DateTime<Utc>,
) -> Result<History, StoreError> {
    let window =
        chrono::Duration::seconds(i64::try_from(policy.loop_guard.window_secs).unwrap_or(i64::MAX));
    let automatic_rollbacks = store.automatic_rollbacks(target_key, now - window).await?;
    let recovered = store
        .list_decisions(&DecisionQuery {
            target: Some(target_key.to_string()),
            verdict: Some("ok".into()),
            limit: 1,
            ..DecisionQuery::default()
        })
        .await?;
    Ok(History {
        last_rollback: automatic_rollbacks.last().copied(),
        automatic_rollbacks,
        recovered_at: recovered.first().map(|d| d.decided_at),
    })
}

/// The deploys of `target` an evaluation looks at (its history, newest first).
pub async fn load_deploys(
    store: &dyn Store,
    target: &TargetRef,
) -> Result<Vec<DeployRecord>, StoreError> {
    Ok(store
        .target_history(target, None, HISTORY_DEPTH)
        .await?
        .into_iter()
        .map(|d| DeployRecord {
            id: d.id,
            deploy: d.deploy,
        })
        .collect())
}

/// Handlers tell the engine which targets an ingest touched.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Touch>,
    /// Set when an ingest's alerts could not be queued: the run loop then reloads its
    /// window instead of missing them until the next tick.
    overflowed: Arc<AtomicBool>,
}

/// The receiving end of the engine's queue, for [`Engine::run`].
pub struct EngineQueue {
    rx: mpsc::Receiver<Touch>,
    overflowed: Arc<AtomicBool>,
}

impl EngineHandle {
    /// Asks for an evaluation of `targets`. Never blocks a handler: when the queue is
    /// full the next tick evaluates them anyway.
    pub fn touched(&self, targets: Vec<TargetRef>) {
        if !targets.is_empty() {
            let _ = self.tx.try_send(Touch {
                targets,
                alerts: Vec::new(),
            });
        }
    }

    /// Reports a committed ingest: the keys (fingerprint, start) of the alerts it
    /// wrote and the targets they name. When the queue is full, the next tick reloads
    /// the window and evaluates them.
    pub fn ingested(&self, targets: Vec<TargetRef>, alerts: Vec<(String, DateTime<Utc>)>) {
        if self.tx.try_send(Touch { targets, alerts }).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }
}

impl Engine {
    /// The channel handlers send to, and its receiving end for [`Engine::run`].
    pub fn channel() -> (EngineHandle, EngineQueue) {
        let (tx, rx) = mpsc::channel(1024);
        let overflowed = Arc::new(AtomicBool::new(false));
        (
            EngineHandle {
                tx,
                overflowed: overflowed.clone(),
            },
            EngineQueue { rx, overflowed },
        )
    }

    /// The target as configured, or as discovered from its key.
    pub fn target(&self, key: &TargetRef) -> Target {
        self.classifier.target(key)
    }

    /// Loads what evaluations at this instant read: every alert still firing or
    /// recently resolved (classified once), posted signals, and freezes in force.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.snapshot_in(&mut Window::default(), &[]).await
    }

    /// [`Engine::snapshot`] through `window`: loaded when empty, else brought up to
    /// date with the alerts stored under `keys`. Posted signals and freezes (few) are read
    /// every time.
    async fn snapshot_in(
        &self,
        window: &mut Window,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<Snapshot, StoreError> {
        let now = self.clock.now();
        let since = now - chrono::Duration::seconds(self.policy.correlation_window_secs as i64);
        let mut alerts = match window.alerts.take() {
            Some(mut alerts) => {
                if !keys.is_empty() {
                    for row in self.store.alerts_by_key(keys).await? {
                        Window::merge(&mut alerts, &self.classifier, &row);
                    }
                }
                alerts
            }
            None => {
                // Page by page: under a flood the window holds 100,000s of alerts, and
                // one read and classification of them all would stall the runtime's
                // workers (and every ingest on them) for as long.
                let mut alerts = BTreeMap::new();
                let mut after = 0;
                loop {
                    let page = self
                        .store
                        .alerts_for_evaluation(since, after, WINDOW_PAGE)
                        .await?;
                    for row in &page {
                        Window::merge(&mut alerts, &self.classifier, row);
                    }
                    match page.last() {
                        Some(last) if page.len() == WINDOW_PAGE as usize => after = last.id,
                        _ => break,
                    }
                    tokio::task::yield_now().await;
                }
                alerts
            }
        };
        // The store's rule for the window (alerts_for_evaluation), as time moves on.
        alerts.retain(|_, a| a.firing || a.ends_at.is_some_and(|end| end >= since));
        let mut signals: Vec<Arc<Classified>> = alerts
            .values()
            .filter_map(|a| a.classified.clone())
            .collect();
        window.alerts = Some(alerts);
        signals.extend(
            self.store
                .signals_for_evaluation(since)
                .await?
                .into_iter()
                .map(|signal| {
                    Arc::new(Classified {
                        signal,
                        namespace: None,
                    })
                }),
        );
        let freezes = self.store.active_freezes(now).await?;
        Ok(Snapshot::new(now, signals, freezes))
    }

    /// Evaluates `target` now and records the decision if it changed.
    pub async fn evaluate(&self, target: &Target) -> Result<Evaluation, StoreError> {
        let snapshot = self.snapshot().await?;
        self.evaluate_in(target, &snapshot).await
    }

    /// Evaluates `target` against `snapshot` and records the decision if it changed.
    #[instrument(skip_all, fields(target = %target.target))]
    pub async fn evaluate_in(
        &self,
        target: &Target,
        snapshot: &Snapshot,
    ) -> Result<Evaluation, StoreError> {
        let decision = self.assess(target, snapshot).await?;
        self.record(target, decision, snapshot.now).await
    }

    /// What `decide()` makes of `target` in `snapshot`, recording nothing.
    async fn assess(&self, target: &Target, snapshot: &Snapshot) -> Result<Decision, StoreError> {
        let now = snapshot.now;
        // The target's signals: classified from its alerts, posted to the API, and the
        // dependency signals that concern it (decide() orders them).
        let signals: Vec<Signal> = snapshot
            .by_target
            .get(&target.target)
            .into_iter()
            .flatten()
            .chain(
                snapshot
                    .untargeted
                    .iter()
                    .filter(|c| self.classifier.depends_on(target, c)),
            )
            .map(|c| c.signal.clone())
            .collect();
        let deploys = load_deploys(&*self.store, &target.target).await?;
        let history = self.history(&target.target, now).await?;
        Ok(decide(
            &self.policy,
            target,
            &deploys,
            &signals,
            &snapshot.freezes,
            &history,
            now,
        ))
    }

    /// Records `decision` if it changed, and enqueues what it calls for.
    async fn record(
        &self,
        target: &Target,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<Evaluation, StoreError> {
        let new = NewDecision {
            target_key: target.target.key(),
            verdict: decision.verdict.as_str().to_string(),
            reason: decision.reason.clone(),
            inputs_hash: decision.inputs_hash.clone(),
            policy_version: decision.policy_version.clone(),
            suspect_deploy_id: decision.suspect.as_ref().map(|d| d.id),
            rollback_to_id: decision.rollback_to.as_ref().map(|d| d.id),
            decision: serde_json::to_value(&decision)?,
            decided_at: now,
        };
        let (stored, changed) = self.store.record_decision(&new).await?;
        // On every evaluation, not only a changed one: enqueueing is idempotent, so a
        // crash between recording the decision and enqueueing its actions loses nothing.
        if let Some(planner) = &self.planner
            && Planner::concerns(&decision)
        {
            planner.enqueue(&stored, &decision, target, now).await?;
        }
        if changed {
            self.metrics.decision(decision.verdict.as_str());
            tracing::info!(
                verdict = decision.verdict.as_str(),
                reason = %decision.reason,
                decision = stored.id,
                "new decision"
            );
        }
        Ok(Evaluation {
            decision,
            stored,
            changed,
        })
    }

    /// The loop guard's and verification's view of past rollbacks of `target`.
    async fn history(
        &self,
        target: &TargetRef,
        now: chrono::DateTime<Utc>,
    ) -> Result<History, StoreError> {
        load_history(&*self.store, &self.policy, &target.key(), now).await
    }

    /// Targets worth a tick: those with an active signal, and those whose standing
    /// decision is not `ok` (so they can recover).
    pub async fn due(&self, snapshot: &Snapshot) -> Result<Vec<TargetRef>, StoreError> {
        let mut due: BTreeSet<TargetRef> = snapshot.by_target.keys().cloned().collect();
        for key in self.store.unsettled_targets().await? {
            if let Some(target) = TargetRef::parse(&key) {
                due.insert(target);
            }
        }
        Ok(due.into_iter().collect())
    }

    /// Evaluates every due target; returns how many decisions changed.
    pub async fn tick(&self) -> usize {
        self.tick_in(&mut Window::default()).await
    }

    /// [`Engine::tick`], reloading `window` from the store first: a tick is also when
    /// alerts the queue did not carry (another replica's, or a full queue's) come in.
    #[instrument(skip_all)]
    async fn tick_in(&self, window: &mut Window) -> usize {
        window.invalidate();
        let loaded = match self.snapshot_in(window, &[]).await {
            Ok(snapshot) => self.due(&snapshot).await.map(|due| (snapshot, due)),
            Err(err) => Err(err),
        };
        let (snapshot, due) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => {
                self.metrics.store_error("engine_due", &err);
                tracing::error!(error = %err, "engine tick: cannot load its inputs");
                return 0;
            }
        };
        let mut changed = 0;
        for key in due {
            changed += usize::from(self.evaluate_logged(&key, &snapshot).await);
        }
        changed
    }

    async fn evaluate_logged(&self, key: &TargetRef, snapshot: &Snapshot) -> bool {
        match self.evaluate_in(&self.target(key), snapshot).await {
            Ok(evaluation) => evaluation.changed,
            Err(err) => {
                self.metrics.store_error("evaluate", &err);
                tracing::error!(error = %err, target = %key, "evaluation failed");
                false
            }
        }
    }

    /// Evaluates `targets` after merging the alerts under `keys` into `window`.
    ///
    /// Between ticks the window holds this replica's ingests; another replica's alert
    /// (a dependency going down, an earlier start that makes H1 hold) may be missing
    /// from it until the next tick. A missing signal can make a decision wait where it
    /// should act, which the next tick's reload catches up with, or act where it should
    /// hold, which must not happen: so a rollback that would be a new decision is
    /// confirmed against a window reloaded from the store before it is recorded.
    async fn evaluate_batch(
        &self,
        window: &mut Window,
        targets: BTreeSet<TargetRef>,
        keys: &[(String, DateTime<Utc>)],
    ) {
        let mut complete = !window.is_loaded();
        let mut snapshot = match self.snapshot_in(window, keys).await {
            Ok(snapshot) => snapshot,
            Err(err) => {
                // The next tick reloads the window and evaluates them.
                window.invalidate();
                self.metrics.store_error("engine_snapshot", &err);
                tracing::error!(error = %err, "engine: cannot load its inputs");
                return;
            }
        };
        for key in targets {
            let target = self.target(&key);
            let result = async {
                let mut decision = self.assess(&target, &snapshot).await?;
                if decision.verdict == Verdict::Rollback
                    && !complete
                    && !self.stands(&target, &decision).await?
                {
                    window.invalidate();
                    snapshot = self.snapshot_in(window, &[]).await?;
                    complete = true;
                    decision = self.assess(&target, &snapshot).await?;
                }
                self.record(&target, decision, snapshot.now).await
            }
            .await;
            if let Err(err) = result {
                self.metrics.store_error("evaluate", &err);
                tracing::error!(error = %err, target = %key, "evaluation failed");
            }
        }
    }

    /// Whether `decision` is already the target's standing decision.
    async fn stands(&self, target: &Target, decision: &Decision) -> Result<bool, StoreError> {
        Ok(self
            .store
            .latest_decision(&target.target.key())
            .await?
            .is_some_and(|d| {
                d.verdict == decision.verdict.as_str() && d.inputs_hash == decision.inputs_hash
            }))
    }

    /// Runs until `shutdown`: evaluates touched targets as they arrive and every due
    /// target each `tick`.
    pub async fn run(self, queue: EngineQueue, tick: Duration, shutdown: CancellationToken) {
        let EngineQueue { mut rx, overflowed } = queue;
        let mut window = Window::default();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                touch = rx.recv() => {
                    let Some(touch) = touch else { return };
                    let mut targets: BTreeSet<TargetRef> = BTreeSet::new();
                    let mut keys = Vec::new();
                    let more = std::iter::from_fn(|| rx.try_recv().ok());
                    for touch in std::iter::once(touch).chain(more) {
                        targets.extend(touch.targets);
                        keys.extend(touch.alerts);
                    }
                    if overflowed.swap(false, Ordering::Relaxed) {
                        // An ingest's keys were dropped with a full queue: reload.
                        window.invalidate();
                    }
                    self.evaluate_batch(&mut window, targets, &keys).await;
                }
                _ = interval.tick() => {
                    self.tick_in(&mut window).await;
                }
            }
        }
    }
}
