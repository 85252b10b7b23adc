//! The decision loop. A target is evaluated after each committed ingest that touches it
//! and on a tick (duration rules such as G1 need the clock to move); an evaluation
//! loads the target's signals, deploys, freezes and rollback history, calls the pure
//! `decide()`, and records the decision when its verdict or inputs changed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::actions::Planner;
use crate::clock::Clock;
use crate::domain::classify::{Classified, Classifier};
use crate::domain::decide::{History, decide};
use crate::domain::policy::Policy;
use crate::domain::{Decision, Freeze, NotConsidered, Signal, Target, TargetRef, Verdict};
use crate::store::{DecisionHead, EvaluationAlert, NewDecision, Store, StoreError};
use crate::telemetry::Metrics;

mod budget;
mod load;
mod release;
mod window;

pub use budget::Budget;
use load::{Ahead, rollbacks_since};
pub use load::{load_deploys, load_history};
pub use release::ServiceView;
use window::{Newest, Window};

pub use window::Row;

/// Deploys of a target an evaluation looks at: the suspect and what came before it.
const HISTORY_DEPTH: u32 = 200;

/// Alerts read per query when the window is (re)loaded.
const WINDOW_PAGE: u32 = 1000;

/// Targets whose store inputs a batch or tick reads at once, just before it evaluates
/// them ([`Engine::read_ahead`]): four queries for each this many instead of four per
/// target, and inputs at most one such run of evaluations old.
const READ_AHEAD: usize = 100;

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
    /// What the window holds: staleness and caps (`[engine]`).
    pub limits: WindowLimits,
}

/// One tick's or batch's evaluations: whether its window was loaded whole from the
/// store (its decisions need no confirmation), and the targets whose standing decision
/// is not `ok`, read at its first `ok`.
struct Pass {
    complete: bool,
    unsettled: Option<HashSet<String>>,
}

/// The bounds of the engine's window: how long a firing alert stays in it without a
/// delivery, and how many alerts and targets it holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// `engine.alert_stale_secs`.
    pub stale_secs: u64,
    /// `engine.max_alerts_per_target`.
    pub max_alerts_per_target: usize,
    /// `engine.max_targets`.
    pub max_targets: usize,
}

impl Default for WindowLimits {
    /// The defaults of `[engine]`.
    fn default() -> Self {
        Self {
            stale_secs: 16_200,
            max_alerts_per_target: 1000,
            max_targets: 10_000,
        }
    }
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
    /// Alerts the window left out of each target it holds (over
    /// `max_alerts_per_target`).
    pub not_considered: BTreeMap<TargetRef, u64>,
    /// Targets the window left out (over `max_targets`), by [`target_hash`]: they are
    /// not evaluated, rather than evaluated without their alerts.
    pub dropped_targets: Arc<HashSet<u64>>,
}

impl Snapshot {
    fn new(now: DateTime<Utc>, signals: Vec<Arc<Classified>>, freezes: Vec<Freeze>) -> Self {
        let mut by_target: BTreeMap<TargetRef, Vec<Arc<Classified>>> = BTreeMap::new();
        let mut untargeted = Vec::new();
        for classified in signals {
            match &classified.signal.target {
                // The key is cloned once per target, not once per signal.
                Some(target) => match by_target.get_mut(target) {
                    Some(signals) => signals.push(classified),
                    None => {
                        by_target.insert(target.clone(), vec![classified]);
                    }
                },
                None => untargeted.push(classified),
            }
        }
        Self {
            now,
            by_target,
            untargeted,
            freezes,
            not_considered: BTreeMap::new(),
            dropped_targets: Arc::default(),
        }
    }

    /// Whether `target` was left out of the window (over `max_targets`).
    pub fn dropped(&self, target: &TargetRef) -> bool {
        !self.dropped_targets.is_empty() && self.dropped_targets.contains(&target_hash(target))
    }
}

/// A target's key hashed: the window remembers the targets it left out by this (8
/// bytes each), not by their names.
fn target_hash(target: &TargetRef) -> u64 {
    let mut hasher = DefaultHasher::new();
    target.hash(&mut hasher);
    hasher.finish()
}

/// Keys read back per query when an ingest batch is merged: a flood's batch of tens of
/// thousands of alerts is read (and capped) a page at a time, not all at once.
const MERGE_PAGE: usize = 1000;

/// Keeps the `cap` newest of `entries` (by last delivery, then id), as the window's
/// trim does; returns how many it left out.
fn newest<T>(entries: &mut Vec<(Newest, T)>, cap: usize) -> u64 {
    if entries.len() <= cap {
        return 0;
    }
    entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    let over = entries.len() - cap;
    entries.truncate(cap);
    over as u64
}

/// An alert row an ingest wrote, classified by the handler that ingested it: what the
/// run loop's window takes of it, without reading it back or classifying it again.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedAlert {
    pub row: Row,
    /// Its key (fingerprint, start), to read it back by when the inbox holds too many.
    pub key: (String, DateTime<Utc>),
    /// `None` when the classifier ignores it (a redelivery may have changed its labels:
    /// the window lets go of it).
    pub classified: Option<Classified>,
}

impl IngestedAlert {
    /// `written` as `classifier` classifies it.
    pub fn new(classifier: &Classifier, written: EvaluationAlert) -> Self {
        let classified = classifier.classify(&written.alert);
        let alert = written.alert;
        Self {
            row: Row {
                id: written.id,
                updated_at: written.updated_at,
                firing: alert.status == crate::domain::AlertStatus::Firing,
                ends_at: alert.ends_at,
            },
            key: (alert.fingerprint, alert.starts_at),
            classified,
        }
    }
}

/// What the handlers reported and the engine has not taken yet: one inbox, merged as
/// reports arrive, so that a flood of notifications is one batch for the engine (and a
/// message per notification never fills a queue).
#[derive(Debug, Default)]
struct Touch {
    /// Targets to evaluate, each once however many reports named it.
    targets: BTreeSet<TargetRef>,
    /// The alert rows committed ingests wrote, classified: they are merged into the
    /// run loop's [`Window`] before the evaluations (also when they name no target: a
    /// dependency alert concerns the targets that depend on it).
    alerts: Written,
    /// The keys (fingerprint, start) of written alert rows past
    /// [`MAX_PENDING_ALERTS`]: read back from the store, then merged the same way.
    keys: Vec<(String, DateTime<Utc>)>,
    /// Keys or targets were dropped ([`MAX_PENDING_KEYS`], [`MAX_PENDING_TARGETS`]):
    /// the run loop reloads its window, and the next tick evaluates every due target.
    overflowed: bool,
}

/// Alert rows reported to the inbox, in arrival order, as the reports brought them: a
/// report's rows are moved in whole, never copied into one growing buffer. One buffer
/// (re-grown from empty after each batch took it, under the inbox's lock) cost the
/// handlers 2 % of rollwarden's CPU under the bench's flood, in copies and page faults.
#[derive(Debug, Default)]
struct Written {
    reports: Vec<Vec<IngestedAlert>>,
    len: usize,
}

impl Written {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, alerts: Vec<IngestedAlert>) {
        self.len += alerts.len();
        if !alerts.is_empty() {
            self.reports.push(alerts);
        }
    }
}

impl IntoIterator for Written {
    type Item = IngestedAlert;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<IngestedAlert>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.reports.into_iter().flatten()
    }
}

/// Written alert rows the inbox holds at most (about 40 MB, at some 750 bytes a
/// classified alert); beyond, it keeps their keys. Handing the engine the rows an
/// ingest wrote, classified, saves reading them back and classifying them on its one
/// task: under the bench's flood that read back was a third of the engine's work (see
/// docs/performance.md). A flood's batch at 6,000 notifications a second is about
/// 50,000 alerts.
const MAX_PENDING_ALERTS: usize = 50_000;

/// Alert keys the inbox holds at most (about 6 MB); beyond, the engine reloads its
/// window instead, as a tick would. At 8,000 notifications of two alerts a second,
/// with [`MAX_PENDING_ALERTS`], that is seven seconds of backlog.
const MAX_PENDING_KEYS: usize = 100_000;
/// Distinct targets the inbox holds at most: webhook callers choose the labels that
/// name targets, so a stalled engine must not hold every name they send.
const MAX_PENDING_TARGETS: usize = 10_000;

/// The inbox and its doorbell, shared by [`EngineHandle`] and [`EngineQueue`].
#[derive(Default)]
struct Inbox {
    pending: std::sync::Mutex<Touch>,
    bell: tokio::sync::Notify,
    /// Reports put so far: a rest ends once they stop coming ([`QUIET`]).
    reports: std::sync::atomic::AtomicU64,
}

/// A rest ends early when no report came for this long and at most [`LITTLE`] alert
/// keys and targets are pending: it leaves the CPU to a flood's ingest, and an alert
/// that comes alone has no flood to leave it to.
const QUIET: Duration = Duration::from_millis(10);

/// See [`QUIET`].
const LITTLE: usize = 64;

/// A rest ends when no report came for this long, however much is pending: the flood
/// has stopped.
const SILENT: Duration = Duration::from_millis(100);

impl Inbox {
    fn put(&self, targets: Vec<TargetRef>, alerts: Vec<IngestedAlert>) {
        self.reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for target in targets {
                if pending.targets.len() < MAX_PENDING_TARGETS {
                    pending.targets.insert(target);
                } else if !pending.targets.contains(&target) {
                    pending.overflowed = true;
                }
            }
            if pending.alerts.len() + alerts.len() <= MAX_PENDING_ALERTS {
                pending.alerts.push(alerts);
            } else if pending.keys.len() + alerts.len() <= MAX_PENDING_KEYS {
                pending.keys.extend(alerts.into_iter().map(|a| a.key));
            } else {
                pending.overflowed = true;
            }
        }
        self.bell.notify_one();
    }

    /// How many alerts (written or by key) and targets are pending.
    fn pending(&self) -> usize {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.alerts.len() + pending.keys.len() + pending.targets.len()
    }

    /// What is pending, if anything.
    fn take(&self) -> Option<Touch> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let empty = pending.targets.is_empty()
            && pending.alerts.is_empty()
            && pending.keys.is_empty()
            && !pending.overflowed;
        (!empty).then(|| std::mem::take(&mut *pending))
    }
}

/// What one evaluation produced.
#[derive(Debug)]
pub struct Evaluation {
    pub decision: Decision,
    /// The decision now standing for the target.
    pub stored: DecisionHead,
    /// Whether this evaluation recorded a new decision (the verdict or inputs changed).
    pub changed: bool,
}

/// Handlers tell the engine which targets an ingest touched.
#[derive(Clone)]
pub struct EngineHandle {
    inbox: Arc<Inbox>,
}

/// The receiving end of the engine's inbox, for [`Engine::run`].
pub struct EngineQueue {
    inbox: Arc<Inbox>,
}

impl EngineQueue {
    /// Waits for reports and takes them all.
    async fn recv(&mut self) -> Touch {
        loop {
            if let Some(touch) = self.inbox.take() {
                return touch;
            }
            self.inbox.bell.notified().await;
        }
    }

    fn try_recv(&self) -> Option<Touch> {
        self.inbox.take()
    }

    /// Rests for `rest`, or less: until no report has come for [`QUIET`] and little is
    /// pending (an alert after a flood), or none for [`SILENT`] (the flood has stopped).
    /// A flood's reports come in bursts as its commits land, with gaps between them;
    /// what is pending by then is the flood's, and the rest goes on.
    async fn rest(&self, rest: Duration) {
        let until = tokio::time::Instant::now() + rest;
        let mut quiet = Duration::ZERO;
        loop {
            let seen = self
                .inbox
                .reports
                .load(std::sync::atomic::Ordering::Relaxed);
            let step = until.min(tokio::time::Instant::now() + QUIET);
            let started = tokio::time::Instant::now();
            tokio::time::sleep_until(step).await;
            if step >= until {
                return;
            }
            if self
                .inbox
                .reports
                .load(std::sync::atomic::Ordering::Relaxed)
                != seen
            {
                quiet = Duration::ZERO;
                continue;
            }
            quiet += started.elapsed();
            if quiet >= SILENT || self.inbox.pending() <= LITTLE {
                return;
            }
        }
    }
}

/// The run loop's [`Budget`], kept within a batch too: a batch rests between its runs
/// of [`READ_AHEAD`] evaluations once the budget is spent. A flood of notifications
/// that each name a new service makes batches of thousands of targets, seconds of
/// work each; checked only between batches, one such batch ran for the whole flood
/// and the budget never applied (no rest in an 8 s run, ingest at 0.85-0.92 of
/// engine off).
struct Pace<'a> {
    budget: &'a mut Budget,
    queue: &'a EngineQueue,
    shutdown: &'a CancellationToken,
    metrics: &'a Metrics,
    /// Since when the work not yet spent from the budget ran.
    since: std::time::Instant,
}

impl<'a> Pace<'a> {
    fn new(
        budget: &'a mut Budget,
        queue: &'a EngineQueue,
        shutdown: &'a CancellationToken,
        metrics: &'a Metrics,
    ) -> Self {
        Self {
            budget,
            queue,
            shutdown,
            metrics,
            since: std::time::Instant::now(),
        }
    }

    /// Spends the work since the last call from the budget.
    fn spend(&mut self) {
        let now = std::time::Instant::now();
        self.budget.spend(now - self.since, now);
        self.since = now;
    }

    /// Rests as long as the budget asks (see [`EngineQueue::rest`]); whether it did.
    /// `None` once shut down.
    async fn rest(&mut self) -> Option<bool> {
        let rest = self.budget.rest(std::time::Instant::now());
        if !rest.is_zero() {
            let started = tokio::time::Instant::now();
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = self.queue.rest(rest) => {}
            }
            self.metrics.engine_rest(started.elapsed());
            self.since = std::time::Instant::now();
        }
        (!self.shutdown.is_cancelled()).then_some(!rest.is_zero())
    }

    /// Between two runs of a batch: spends the work so far and rests if the budget is
    /// spent. `None` once shut down.
    async fn checkpoint(&mut self) -> Option<bool> {
        self.spend();
        self.rest().await
    }
}

/// Between two runs of [`READ_AHEAD`] evaluations of a batch or tick (at `at`), keeps
/// the run loop's budget ([`Pace`]). After a rest the snapshot and the inputs read
/// `ahead` may lack what came in meanwhile: new rollbacks and recoveries are then
/// confirmed on the store, and the inputs read again. False once shut down: the next
/// start's tick evaluates the rest.
async fn keep_pace(
    pace: Option<&mut Pace<'_>>,
    at: usize,
    pass: &mut Pass,
    ahead: &mut HashMap<TargetRef, Ahead>,
) -> bool {
    let Some(pace) = pace else {
        return true;
    };
    if at == 0 || !at.is_multiple_of(READ_AHEAD) {
        return true;
    }
    match pace.checkpoint().await {
        None => false,
        Some(rested) => {
            if rested {
                pass.complete = false;
                ahead.clear();
            }
            true
        }
    }
}

impl EngineHandle {
    /// Asks for an evaluation of `targets`. Never blocks a handler.
    pub fn touched(&self, targets: Vec<TargetRef>) {
        if !targets.is_empty() {
            self.inbox.put(targets, Vec::new());
        }
    }

    /// Reports a committed ingest: the alert rows it wrote and the targets they name.
    /// Never blocks a handler; past [`MAX_PENDING_ALERTS`] the engine reads the rows
    /// back by key, past [`MAX_PENDING_KEYS`] it reloads its window.
    pub fn ingested(&self, targets: Vec<TargetRef>, alerts: Vec<IngestedAlert>) {
        self.inbox.put(targets, alerts);
    }
}

impl Engine {
    /// The inbox handlers report to, and its receiving end for [`Engine::run`].
    pub fn channel() -> (EngineHandle, EngineQueue) {
        let inbox = Arc::new(Inbox::default());
        (
            EngineHandle {
                inbox: inbox.clone(),
            },
            EngineQueue { inbox },
        )
    }

    /// How long a firing alert stays in evaluation without a delivery.
    pub fn stale_after(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.limits.stale_secs).unwrap_or(i64::MAX))
    }

    /// The target as configured, or as discovered from its key.
    pub fn target(&self, key: &TargetRef) -> Target {
        self.classifier.target(key)
    }

    /// Loads what evaluations at this instant read: every alert still firing or
    /// recently resolved (classified once), posted signals, and freezes in force.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.snapshot_in(&mut Window::default(), Written::default(), &[], None)
            .await
    }

    /// [`Engine::snapshot`] through `window`: loaded when empty, else brought up to
    /// date with the `written` alert rows and those stored under `keys`. Posted signals
    /// and freezes (few) are read every time. With `only`, the snapshot holds the alerts of those targets and the
    /// alerts about no target, not the whole window: what an
    /// ingest batch's evaluations read.
    async fn snapshot_in(
        &self,
        window: &mut Window,
        written: Written,
        keys: &[(String, DateTime<Utc>)],
        only: Option<&BTreeSet<TargetRef>>,
    ) -> Result<Snapshot, StoreError> {
        let now = self.clock.now();
        let since = now - chrono::Duration::seconds(self.policy.correlation_window_secs as i64);
        let fresh_since = now - self.stale_after();
        let limits = self.limits;
        let mut held = match window.take() {
            Some(mut held) => {
                for (n, alert) in written.into_iter().enumerate() {
                    held.merge(&mut window.dropped, &limits, alert.row, alert.classified);
                    if (n + 1) % MERGE_PAGE == 0 {
                        held.cap_targets(&mut window.dropped, limits.max_targets, 0);
                        tokio::task::yield_now().await;
                    }
                }
                held.cap_targets(&mut window.dropped, limits.max_targets, 0);
                for page in keys.chunks(MERGE_PAGE) {
                    for row in self.store.alerts_by_key(page).await? {
                        held.merge_row(&mut window.dropped, &self.classifier, &limits, row);
                    }
                    held.cap_targets(&mut window.dropped, limits.max_targets, 0);
                }
                held
            }
            None => {
                // Page by page: under a flood the window holds 100,000s of alerts, and
                // one read and classification of them all would stall the runtime's
                // workers (and every ingest on them) for as long. Capped as it grows,
                // so the load itself stays within the caps.
                let mut held = window.start_load(now);
                let mut after = 0;
                loop {
                    let page = self
                        .store
                        .alerts_for_evaluation(since, fresh_since, after, WINDOW_PAGE)
                        .await?;
                    let full = page.len() == WINDOW_PAGE as usize;
                    let last = page.last().map(|row| row.id);
                    for row in page {
                        held.merge_row(&mut window.dropped, &self.classifier, &limits, row);
                    }
                    held.cap_targets(&mut window.dropped, limits.max_targets, limits.max_targets);
                    match last {
                        Some(last) if full => after = last,
                        _ => break,
                    }
                    tokio::task::yield_now().await;
                }
                held.cap_targets(&mut window.dropped, limits.max_targets, 0);
                held
            }
        };
        self.metrics.engine_window(
            held.len() as u64,
            window.dropped.per_target.values().sum::<u64>() + window.dropped.untargeted,
            window.dropped.target_alerts,
        );
        // A batch leaves the alerts that left the window since in it and out of its
        // snapshot (the next full snapshot removes them), not to walk the whole window
        // for its few targets.
        let mut signals = match only {
            Some(targets) => held.of(targets, since),
            None => {
                held.retain_current(since);
                held.all()
            }
        };
        window.put(held);
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
        let mut snapshot = Snapshot::new(now, signals, freezes);
        snapshot.not_considered = window
            .dropped
            .per_target
            .iter()
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        snapshot.dropped_targets = window.dropped.targets.clone();
        Ok(snapshot)
    }

    /// [`Engine::snapshot`] for one target: what an evaluation of `key` alone reads,
    /// through the store's target index, so that it costs the target's own alerts (and
    /// the dependency alerts, at most `max_alerts_per_target` of them), not the window.
    ///
    /// `key` decides exactly as in [`Engine::snapshot`]: its alerts capped to the
    /// newest `max_alerts_per_target` (the rest counted as not considered), the newest
    /// dependency alerts under the same cap, its posted signals and the dependency
    /// ones, every freeze in force. One difference: a target that `max_targets` left
    /// out of the full window is evaluated here with its alerts (the full snapshot has
    /// none of them).
    #[instrument(skip_all, fields(target = %key))]
    pub async fn snapshot_for(&self, key: &TargetRef) -> Result<Snapshot, StoreError> {
        let now = self.clock.now();
        let since = now - chrono::Duration::seconds(self.policy.correlation_window_secs as i64);
        let fresh_since = now - self.stale_after();
        let cap = self.limits.max_alerts_per_target;
        let target_key = key.key();
        let mut rows = self
            .store
            .target_alerts_for_evaluation(&target_key, since, fresh_since)
            .await?;
        rows.extend(
            self.store
                .untargeted_alerts_for_evaluation(
                    since,
                    fresh_since,
                    u32::try_from(cap).unwrap_or(u32::MAX),
                )
                .await?,
        );
        // Classified as the full window classifies them; an unmapped row (or one a
        // replica with other config mapped) lands where its classification says.
        let mut own: Vec<(Newest, Arc<Classified>)> = Vec::new();
        let mut untargeted: Vec<(Newest, Arc<Classified>)> = Vec::new();
        let mut seen = HashSet::new();
        for row in rows {
            if !seen.insert(row.id) {
                continue;
            }
            let Some(classified) = self.classifier.classify(&row.alert) else {
                continue;
            };
            let entry = ((row.updated_at, row.id), Arc::new(classified));
            match &entry.1.signal.target {
                Some(target) if target == key => own.push(entry),
                Some(_) => {}
                None => untargeted.push(entry),
            }
        }
        let own_left_out = newest(&mut own, cap);
        newest(&mut untargeted, cap);
        // The full snapshot's order: alerts by id, then posted signals by id.
        let mut alerts: Vec<(i64, Arc<Classified>)> = own
            .into_iter()
            .chain(untargeted)
            .map(|((_, id), c)| (id, c))
            .collect();
        alerts.sort_unstable_by_key(|(id, _)| *id);
        let mut signals: Vec<Arc<Classified>> = alerts.into_iter().map(|(_, c)| c).collect();
        signals.extend(
            self.store
                .target_signals_for_evaluation(&target_key, since)
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
        let mut snapshot = Snapshot::new(now, signals, freezes);
        if own_left_out > 0 {
            snapshot.not_considered.insert(key.clone(), own_left_out);
        }
        Ok(snapshot)
    }

    /// The target's own signals that went on at any time since `since`: its alerts
    /// (classified as an evaluation classifies them) and the signals posted for it.
    /// What the console's timeline draws.
    #[instrument(skip_all, fields(target = %key))]
    pub async fn target_signals(
        &self,
        key: &TargetRef,
        since: DateTime<Utc>,
    ) -> Result<Vec<Signal>, StoreError> {
        let target_key = key.key();
        let rows = self
            .store
            .target_alerts_for_evaluation(&target_key, since, since)
            .await?;
        let mut signals: Vec<Signal> = rows
            .iter()
            .filter_map(|row| self.classifier.classify(&row.alert))
            .map(|classified| classified.signal)
            .filter(|signal| signal.target.as_ref() == Some(key))
            .collect();
        signals.extend(
            self.store
                .target_signals_for_evaluation(&target_key, since)
                .await?,
        );
        Ok(signals)
    }

    /// Maps the window's alerts to their targets for the store's target index
    /// ([`Engine::snapshot_for`]) when they are not: after an upgrade, and after a change
    /// of the classifier's config (every mapping is then forgotten first). Returns how
    /// many it mapped.
    #[instrument(skip_all)]
    pub async fn map_alert_targets(&self) -> Result<u64, StoreError> {
        if self
            .store
            .reset_alert_targets(&self.classifier.fingerprint())
            .await?
        {
            tracing::info!("the classifier changed: alerts are mapped to targets again");
        }
        let now = self.clock.now();
        let since = now - chrono::Duration::seconds(self.policy.correlation_window_secs as i64);
        let fresh_since = now - self.stale_after();
        let mut after = 0;
        let mut mapped = 0;
        loop {
            let page = self
                .store
                .unmapped_alerts(since, fresh_since, after, WINDOW_PAGE)
                .await?;
            let targets: Vec<(i64, String)> = page
                .iter()
                .map(|row| (row.id, self.classifier.alert_target(&row.alert).key()))
                .collect();
            self.store.map_alert_targets(&targets).await?;
            mapped += targets.len() as u64;
            match page.last() {
                Some(last) if page.len() == WINDOW_PAGE as usize => after = last.id,
                _ => return Ok(mapped),
            }
        }
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
        self.record(target, decision, snapshot.now, None).await
    }

    /// What `decide()` makes of `target` in `snapshot`, recording nothing.
    pub async fn assess(
        &self,
        target: &Target,
        snapshot: &Snapshot,
    ) -> Result<Decision, StoreError> {
        self.assess_with(target, snapshot, None).await
    }

    /// [`Engine::assess`] with the target's store inputs read `ahead`, or read now.
    async fn assess_with(
        &self,
        target: &Target,
        snapshot: &Snapshot,
        ahead: Option<&Ahead>,
    ) -> Result<Decision, StoreError> {
        let now = snapshot.now;
        // The target's signals: classified from its alerts, posted to the API, and the
        // dependency signals that concern it (decide() orders them).
        let mut signals: Vec<&Signal> = snapshot
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
            .map(|c| &c.signal)
            .collect();
        let loaded;
        let (deploys, history) = match ahead {
            Some(ahead) => (&ahead.deploys, &ahead.history),
            None => {
                loaded = (
                    load_deploys(&*self.store, &target.target).await?,
                    self.history(&target.target, now).await?,
                );
                (&loaded.0, &loaded.1)
            }
        };
        // A region of a release that regressed in enough regions: R1's evidence.
        let view = self.view_for(target).await?;
        let released = match (&view, target.region.as_deref()) {
            (Some(view), Some(region)) => view
                .release_of(&target.target, None)
                .and_then(|release| crate::domain::release::release_signal(release, region)),
            _ => None,
        };
        signals.extend(released.as_ref());
        let mut decision = decide(
            &self.policy,
            target,
            deploys,
            &signals,
            &snapshot.freezes,
            history,
            now,
        );
        decision.not_considered =
            snapshot
                .not_considered
                .get(&target.target)
                .map(|&alerts| NotConsidered {
                    alerts,
                    reason: "max_alerts_per_target".into(),
                });
        if let Some(view) = &view {
            self.check_release(view, target, &mut decision);
        }
        Ok(decision)
    }

    /// Records `decision` if it changed, and enqueues what it calls for. The standing
    /// decision is the one read `ahead` with the target's inputs, or read now.
    async fn record(
        &self,
        target: &Target,
        decision: Decision,
        now: DateTime<Utc>,
        ahead: Option<&Ahead>,
    ) -> Result<Evaluation, StoreError> {
        let target_key = target.target.key();
        // The standing decision is read without its evidence, and this one serialised
        // only when it differs: under a flood of alerts most evaluations change nothing,
        // and their 1,000-signal evidence need not be built, sent or read back.
        let standing = self.standing(&target_key, ahead).await?;
        let (stored, changed) = match standing {
            Some(head)
                if head.verdict == decision.verdict.as_str()
                    && head.inputs_hash == decision.inputs_hash =>
            {
                (head, false)
            }
            _ => {
                let new = NewDecision {
                    target_key,
                    verdict: decision.verdict.as_str().to_string(),
                    reason: decision.reason.clone(),
                    inputs_hash: decision.inputs_hash.clone(),
                    policy_version: decision.policy_version.clone(),
                    suspect_deploy_id: decision.suspect.as_ref().map(|d| d.id),
                    rollback_to_id: decision.rollback_to.as_ref().map(|d| d.id),
                    decision: serde_json::to_value(&decision)?,
                    decided_at: now,
                };
                // It checks again under the target's lock: another replica may have
                // recorded one since.
                let (stored, changed) = self.store.record_decision(&new).await?;
                if changed {
                    // Counted once recorded: what follows may fail, and the decision
                    // stands (and shows in the API) all the same.
                    self.metrics.decision(decision.verdict.as_str());
                }
                (DecisionHead::from(&stored), changed)
            }
        };
        self.record_release(&stored, &decision, now).await?;
        // On every evaluation, not only a changed one: enqueueing is idempotent, so a
        // crash between recording the decision and enqueueing its actions loses nothing.
        if let Some(planner) = &self.planner
            && Planner::concerns(&decision)
        {
            planner.enqueue(&stored, &decision, target, now).await?;
        }
        if changed {
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
            if let Some(target) = TargetRef::parse(&key)
                && !snapshot.dropped(&target)
            {
                due.insert(target);
            }
        }
        self.with_release_peers(&mut due);
        Ok(due.into_iter().collect())
    }

    /// Evaluates every due target; returns how many decisions changed.
    pub async fn tick(&self) -> usize {
        self.tick_in(&mut Window::default(), None).await
    }

    /// [`Engine::tick`], reloading `window` from the store first when its last load is
    /// [`RELOAD_SECS`] old: a reload is also when alerts the queue did not carry
    /// (another replica's) come in, and stale alerts leave.
    #[instrument(skip_all)]
    ///
    /// With `pace` (the run loop's), the ingests that arrive while the tick walks its
    /// due targets are evaluated between two of them, first: an alert's decision does
    /// not wait behind a tick over a large fleet. The targets they evaluated leave the
    /// tick (its snapshot is older), and from then on the tick's new rollbacks and
    /// recoveries are confirmed on the store, since its snapshot may lack what they
    /// brought. Its evaluations (not its reload) keep the run loop's budget like a
    /// batch's: under a flood of new services the due targets are thousands.
    async fn tick_in(&self, window: &mut Window, mut pace: Option<&mut Pace<'_>>) -> usize {
        if window.due_for_reload(self.clock.now()) {
            window.invalidate();
            match self
                .store
                .count_stale_alerts(self.clock.now() - self.stale_after())
                .await
            {
                Ok(stale) => {
                    self.metrics
                        .engine_alerts_stale
                        .set(i64::try_from(stale).unwrap_or(i64::MAX));
                }
                Err(err) => self.metrics.store_error("engine_stale", &err),
            }
        }
        // Loaded from the store now, it holds every replica's alerts.
        let complete = !window.is_loaded();
        let loaded = match self
            .snapshot_in(window, Written::default(), &[], None)
            .await
        {
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
        let mut pass = Pass {
            complete,
            unsettled: None,
        };
        let mut fresher: BTreeSet<TargetRef> = BTreeSet::new();
        let mut ahead = HashMap::new();
        if let Some(pace) = pace.as_deref_mut() {
            // The reload is not spent: it grows with the fleet, and a rest after it
            // would hold back the next alert's decision.
            pace.since = std::time::Instant::now();
        }
        for (at, key) in due.iter().enumerate() {
            if !keep_pace(pace.as_deref_mut(), at, &mut pass, &mut ahead).await {
                break;
            }
            if let Some(pace) = pace.as_deref()
                && let Some(evaluated) = self.pending_batch(window, pace.queue).await
            {
                pass.complete = false;
                // What it recorded is newer than the inputs read ahead before it.
                ahead.clear();
                fresher.extend(evaluated);
            }
            if fresher.contains(key) {
                continue;
            }
            let target = self.target(key);
            let inputs = self.read_ahead(&mut ahead, &due, at, snapshot.now).await;
            let result = self
                .evaluate_confirmed(&snapshot, &mut pass, &target, inputs)
                .await;
            match result {
                Ok(evaluation) => changed += usize::from(evaluation.changed),
                Err(err) => {
                    self.metrics.store_error("evaluate", &err);
                    tracing::error!(error = %err, target = %key, "evaluation failed");
                }
            }
        }
        changed
    }

    /// Whether `decision` would settle `target`: `ok` where the standing decision is
    /// not. A recovery verifies the target's rollbacks and resets its loop guard, so,
    /// like a new rollback, it is never recorded from a window that may lack another
    /// replica's alerts (they come in with the next reload): it is confirmed against
    /// a reloaded one first. Recoveries are rare; the targets whose standing decision
    /// is not `ok` are read once per tick or batch (`unsettled`), at its first `ok`.
    async fn settles(
        &self,
        target: &Target,
        decision: &Decision,
        unsettled: &mut Option<HashSet<String>>,
    ) -> Result<bool, StoreError> {
        if decision.verdict != Verdict::Ok {
            return Ok(false);
        }
        if unsettled.is_none() {
            *unsettled = Some(self.store.unsettled_targets().await?.into_iter().collect());
        }
        Ok(unsettled
            .as_ref()
            .is_some_and(|keys| keys.contains(&target.target.key())))
    }

    /// Evaluates `targets` after merging the alerts under `keys` into `window`.
    ///
    /// Between ticks the window holds this replica's ingests; another replica's alert
    /// (a dependency going down, an earlier start that makes H1 hold) may be missing
    /// from it until the next tick. A missing signal can make a decision wait where it
    /// should act, which the next tick's reload catches up with, or act where it should
    /// hold, which must not happen: so a rollback that would be a new decision, or a
    /// recovery of a target whose standing decision is not `ok` (which would verify its
    /// rollback; see [`Engine::settles`]), is confirmed against the target's rows read
    /// from the store before it is recorded. A tick does the same.
    ///
    /// Returns the targets it evaluated.
    async fn evaluate_batch(
        &self,
        window: &mut Window,
        mut targets: BTreeSet<TargetRef>,
        written: Written,
        keys: &[(String, DateTime<Utc>)],
        mut pace: Option<&mut Pace<'_>>,
    ) -> BTreeSet<TargetRef> {
        self.with_release_peers(&mut targets);
        let mut pass = Pass {
            complete: !window.is_loaded(),
            unsettled: None,
        };
        let snapshot = match self
            .snapshot_in(window, written, keys, Some(&targets))
            .await
        {
            Ok(snapshot) => snapshot,
            Err(err) => {
                // The next tick reloads the window and evaluates them.
                window.invalidate();
                self.metrics.store_error("engine_snapshot", &err);
                tracing::error!(error = %err, "engine: cannot load its inputs");
                return BTreeSet::new();
            }
        };
        // Over engine.max_targets: not evaluated without its alerts.
        let keys: Vec<TargetRef> = targets
            .iter()
            .filter(|key| !snapshot.dropped(key))
            .cloned()
            .collect();
        let mut ahead = HashMap::new();
        for (at, key) in keys.iter().enumerate() {
            if !keep_pace(pace.as_deref_mut(), at, &mut pass, &mut ahead).await {
                break;
            }
            let target = self.target(key);
            let inputs = self.read_ahead(&mut ahead, &keys, at, snapshot.now).await;
            let result = self
                .evaluate_confirmed(&snapshot, &mut pass, &target, inputs)
                .await;
            if let Err(err) = result {
                self.metrics.store_error("evaluate", &err);
                tracing::error!(error = %err, target = %key, "evaluation failed");
            }
        }
        targets
    }

    /// Assesses `target` and records its decision. A decision that must not rest on a
    /// window missing another replica's alerts — a new rollback, a recovery (see
    /// [`Engine::settles`]) — is first confirmed against the target's own rows read
    /// from the store ([`Engine::snapshot_for`]: its alerts through the target index,
    /// the dependency alerts, its posted signals, the freezes). That is as fresh as
    /// reloading the whole window, and costs the target's own alerts instead of every
    /// alert in the window: at 100,000 firing alerts a reload took seconds, on the path
    /// from the alert to the rollback.
    ///
    /// Its store inputs are those read `ahead` with its batch's, if any; a confirmation
    /// reads them again, with its rows.
    async fn evaluate_confirmed(
        &self,
        snapshot: &Snapshot,
        pass: &mut Pass,
        target: &Target,
        ahead: Option<&Ahead>,
    ) -> Result<Evaluation, StoreError> {
        let decision = self.assess_with(target, snapshot, ahead).await?;
        let unconfirmed = !pass.complete
            && match decision.verdict {
                Verdict::Rollback => !self.stands(target, &decision, ahead).await?,
                _ => self.settles(target, &decision, &mut pass.unsettled).await?,
            };
        if unconfirmed {
            let fresh = self.snapshot_for(&target.target).await?;
            let decision = self.assess(target, &fresh).await?;
            return self.record(target, decision, fresh.now, None).await;
        }
        self.record(target, decision, snapshot.now, ahead).await
    }

    /// Whether `decision` is already the target's standing decision (read `ahead`, or
    /// now).
    async fn stands(
        &self,
        target: &Target,
        decision: &Decision,
        ahead: Option<&Ahead>,
    ) -> Result<bool, StoreError> {
        let head = self.standing(&target.target.key(), ahead).await?;
        Ok(head.is_some_and(|d| {
            d.verdict == decision.verdict.as_str() && d.inputs_hash == decision.inputs_hash
        }))
    }

    /// The standing decision of the target `target_key`: the one read `ahead` with its
    /// inputs, or read now.
    async fn standing(
        &self,
        target_key: &str,
        ahead: Option<&Ahead>,
    ) -> Result<Option<DecisionHead>, StoreError> {
        match ahead {
            Some(ahead) => Ok(ahead.head.clone()),
            None => self.store.decision_head(target_key).await,
        }
    }

    /// The store inputs of `keys[at]`, read ahead with those of the next targets of
    /// `keys` (at most [`READ_AHEAD`] in all) unless `ahead` has them from an earlier
    /// read: one query per input for the run instead of one per target and input. On a
    /// store error, none: the evaluation reads its own (and reports the error).
    async fn read_ahead<'a>(
        &self,
        ahead: &'a mut HashMap<TargetRef, Ahead>,
        keys: &[TargetRef],
        at: usize,
        now: DateTime<Utc>,
    ) -> Option<&'a Ahead> {
        let key = &keys[at];
        if !ahead.contains_key(key) {
            ahead.clear();
            let run = &keys[at..keys.len().min(at + READ_AHEAD)];
            let since = rollbacks_since(&self.policy, now);
            match self
                .store
                .evaluation_inputs(run, since, HISTORY_DEPTH)
                .await
            {
                Ok(inputs) => {
                    ahead.extend(run.iter().cloned().zip(inputs.into_iter().map(Ahead::from)))
                }
                Err(err) => {
                    self.metrics.store_error("engine_inputs", &err);
                    tracing::warn!(error = %err, "engine: cannot read its targets' inputs ahead");
                    return None;
                }
            }
        }
        ahead.get(key)
    }

    /// Runs until `shutdown`: evaluates touched targets as they arrive and every due
    /// target each `tick`, resting whenever its batches have spent `budget` (see
    /// [`Budget`]).
    pub async fn run(
        self,
        mut queue: EngineQueue,
        tick: Duration,
        mut budget: Budget,
        shutdown: CancellationToken,
    ) {
        let mut window = Window::default();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if Pace::new(&mut budget, &queue, &shutdown, &self.metrics)
                .rest()
                .await
                .is_none()
            {
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                touch = queue.recv() => {
                    let mut pace = Pace::new(&mut budget, &queue, &shutdown, &self.metrics);
                    self.batch(&mut window, touch, Some(&mut pace)).await;
                    pace.spend();
                }
                _ = interval.tick() => {
                    // Its evaluations are spent from the budget, not its reload (see
                    // tick_in).
                    let started = std::time::Instant::now();
                    let mut pace = Pace::new(&mut budget, &queue, &shutdown, &self.metrics);
                    self.tick_in(&mut window, Some(&mut pace)).await;
                    pace.spend();
                    self.metrics.engine_evaluated("tick", started.elapsed());
                }
            }
        }
    }

    /// Evaluates `first` and whatever else is queued as one batch; returns the targets
    /// it evaluated.
    async fn batch(
        &self,
        window: &mut Window,
        first: Touch,
        pace: Option<&mut Pace<'_>>,
    ) -> BTreeSet<TargetRef> {
        let Touch {
            targets,
            alerts,
            keys,
            overflowed,
        } = first;
        if overflowed {
            // An ingest's keys or targets were dropped from a full inbox: reload.
            window.invalidate();
        }
        let started = std::time::Instant::now();
        let evaluated = self
            .evaluate_batch(window, targets, alerts, &keys, pace)
            .await;
        self.metrics.engine_evaluated("batch", started.elapsed());
        evaluated
    }

    /// The batch queued now, if any, evaluated ([`Engine::batch`]).
    async fn pending_batch(
        &self,
        window: &mut Window,
        queue: &EngineQueue,
    ) -> Option<BTreeSet<TargetRef>> {
        let first = queue.try_recv()?;
        Some(self.batch(window, first, None).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn keys(from: usize, n: usize) -> Vec<(String, DateTime<Utc>)> {
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        (from..from + n).map(|i| (format!("fp-{i}"), at)).collect()
    }

    /// The alert rows an ingest wrote, with the [`keys`] `from..from + n`.
    fn written(from: usize, n: usize) -> Vec<IngestedAlert> {
        keys(from, n)
            .into_iter()
            .zip(from..)
            .map(|(key, id)| IngestedAlert {
                row: Row {
                    id: id as i64,
                    updated_at: key.1,
                    firing: true,
                    ends_at: None,
                },
                key,
                classified: None,
            })
            .collect()
    }

    /// Within a batch, a checkpoint spends the work so far and rests once the budget
    /// is spent (while a flood's reports keep coming), and says so; with budget left
    /// it goes on at once; shut down during a rest, it stops the batch.
    #[tokio::test(start_paused = true)]
    async fn a_batch_rests_at_a_checkpoint_once_its_budget_is_spent() {
        let (handle, queue) = Engine::channel();
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let now = std::time::Instant::now();
        // Budget left: on at once, no rest.
        let mut budget = Budget::new(0.2, now);
        let started = tokio::time::Instant::now();
        let mut pace = Pace::new(&mut budget, &queue, &shutdown, &metrics);
        assert_eq!(pace.checkpoint().await, Some(false));
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Overspent by 2 s at 0.2: a rest of 10 s, which lasts while reports come.
        let mut budget = Budget::new(0.2, now);
        budget.spend(Duration::from_secs(3), now);
        let target = TargetRef::new("default", "prod", "Deployment", "checkout");
        let flood = tokio::spawn({
            let handle = handle.clone();
            async move {
                for i in 0..60 {
                    handle.ingested(vec![target.clone()], written(i * 100, 100));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let started = tokio::time::Instant::now();
        let mut pace = Pace::new(&mut budget, &queue, &shutdown, &metrics);
        assert_eq!(pace.checkpoint().await, Some(true));
        let rested = started.elapsed();
        assert!(rested >= Duration::from_millis(300), "{rested:?}");
        assert!(
            metrics.engine_rest.get() >= 0.3,
            "{}",
            metrics.engine_rest.get()
        );
        flood.await.unwrap();
        // Shut down during a rest: the batch stops.
        let mut budget = Budget::new(0.2, now);
        budget.spend(Duration::from_secs(3), now);
        let mut pace = Pace::new(&mut budget, &queue, &shutdown, &metrics);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            stop.cancel();
        });
        // A report keeps the rest from ending quietly before the shutdown.
        handle.ingested(Vec::new(), written(10_000, 100));
        assert_eq!(pace.checkpoint().await, None);
    }

    /// A rest lasts while reports keep coming (a flood's ingest needs the CPU), and
    /// ends once none came for [`QUIET`] with little pending (an alert after a flood
    /// does not wait out the rest the flood's batches earned), or for [`SILENT`].
    #[tokio::test(start_paused = true)]
    async fn a_rest_lasts_while_reports_come_and_ends_when_they_stop() {
        let (handle, queue) = Engine::channel();
        let rest = Duration::from_secs(2);
        let ms = Duration::from_millis;
        // Nothing comes: it ends after QUIET.
        let started = tokio::time::Instant::now();
        queue.rest(rest).await;
        assert_eq!(started.elapsed(), QUIET);
        // A report every 5 ms for 300 ms, little pending: until they stop, and QUIET.
        let target = TargetRef::new("default", "prod", "Deployment", "checkout");
        let flood = |handle: EngineHandle, per_report: usize| {
            let target = target.clone();
            tokio::spawn(async move {
                for i in 0..60 {
                    handle.ingested(vec![target.clone()], written(i * per_report, per_report));
                    tokio::time::sleep(ms(5)).await;
                }
                handle
            })
        };
        let sent = flood(handle, 1);
        let started = tokio::time::Instant::now();
        queue.rest(rest).await;
        let took = started.elapsed();
        assert!((ms(300)..=ms(300) + 2 * QUIET).contains(&took), "{took:?}");
        let handle = sent.await.unwrap();
        assert_eq!(queue.try_recv().unwrap().alerts.len(), 60);
        // A flood's bursts, 30 ms apart, much pending: the gaps do not end it; SILENT
        // after the last burst does.
        let bursts = tokio::spawn({
            let target = target.clone();
            async move {
                for i in 0..10 {
                    handle.ingested(vec![target.clone()], written(i * 100, 100));
                    tokio::time::sleep(ms(30)).await;
                }
                handle
            }
        });
        let started = tokio::time::Instant::now();
        queue.rest(rest).await;
        let took = started.elapsed();
        assert!(
            (ms(270) + SILENT..=ms(270) + SILENT + 2 * QUIET).contains(&took),
            "{took:?}"
        );
        let handle = bursts.await.unwrap();
        queue.try_recv().unwrap();
        // Reports that never stop: the whole rest, no more.
        let endless = tokio::spawn(async move {
            loop {
                handle.touched(vec![target.clone()]);
                tokio::time::sleep(ms(1)).await;
            }
        });
        let started = tokio::time::Instant::now();
        queue.rest(rest).await;
        assert_eq!(started.elapsed(), rest);
        endless.abort();
    }

    /// Reports that arrive while the engine is busy merge into one batch, in order; the
    /// inbox never refuses one, holds each target once, keeps only the keys of alerts
    /// past its bound on alerts, and past its bounds on keys and targets asks for a
    /// reload instead of holding more.
    #[tokio::test]
    async fn reports_merge_into_one_batch_and_past_the_bound_ask_for_a_reload() {
        let (handle, mut queue) = Engine::channel();
        assert!(queue.try_recv().is_none(), "nothing reported yet");
        let checkout = TargetRef::deployment("eu-1", "prod", "checkout");
        let cart = TargetRef::deployment("eu-1", "prod", "cart");
        for i in 0..3000 {
            let target = if i % 2 == 0 { &checkout } else { &cart };
            handle.ingested(vec![target.clone()], written(i * 2, 2));
        }
        handle.touched(vec![cart.clone()]);
        let batch = queue.recv().await;
        assert_eq!(
            batch.alerts.into_iter().collect::<Vec<_>>(),
            written(0, 6000),
            "every alert, in arrival order"
        );
        assert!(batch.keys.is_empty());
        assert_eq!(
            batch.targets,
            BTreeSet::from([checkout.clone(), cart.clone()]),
            "each target once"
        );
        assert!(!batch.overflowed);
        assert!(queue.try_recv().is_none(), "taken whole");

        // Past the bound on distinct targets: the ones held stay, the rest are left to
        // the tick that follows the reload.
        let many: Vec<TargetRef> = (0..MAX_PENDING_TARGETS + 5)
            .map(|i| TargetRef::deployment("eu-1", "prod", &format!("svc-{i}")))
            .collect();
        handle.touched(many.clone());
        handle.touched(vec![many[0].clone()]);
        let batch = queue.try_recv().expect("pending");
        assert_eq!(batch.targets.len(), MAX_PENDING_TARGETS);
        assert!(batch.targets.contains(&many[0]));
        assert!(
            batch.overflowed,
            "the window is reloaded and the tick evaluates the rest"
        );

        // Past the bound on alerts, their keys; past the bound on keys, a reload.
        let alerts = MAX_PENDING_ALERTS - 1;
        handle.ingested(vec![checkout.clone()], written(0, alerts));
        handle.ingested(vec![checkout.clone()], written(alerts, 2));
        handle.ingested(vec![checkout.clone()], written(alerts + 2, 1));
        let batch = queue.try_recv().expect("pending");
        assert_eq!(
            batch.alerts.into_iter().collect::<Vec<_>>(),
            [written(0, alerts), written(alerts + 2, 1)].concat()
        );
        assert_eq!(
            batch.keys,
            keys(alerts, 2),
            "the report past the bound, by key"
        );
        assert!(!batch.overflowed);

        handle.ingested(vec![checkout.clone()], written(0, MAX_PENDING_ALERTS));
        handle.ingested(vec![checkout.clone()], written(0, MAX_PENDING_KEYS));
        handle.ingested(vec![cart.clone()], written(MAX_PENDING_KEYS, 1));
        let batch = queue.try_recv().expect("pending");
        assert!(batch.overflowed, "the window is reloaded instead");
        assert_eq!(batch.alerts.len(), MAX_PENDING_ALERTS);
        assert_eq!(batch.keys.len(), MAX_PENDING_KEYS);
        assert_eq!(
            batch.targets,
            BTreeSet::from([checkout, cart]),
            "both still evaluated"
        );
        assert!(queue.try_recv().is_none());
    }
}
