//! The run loop's view of the correlation window, indexed by target.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{IngestedAlert, WindowLimits, target_hash};
use crate::domain::TargetRef;
use crate::domain::classify::{Classified, Classifier};
use crate::store::EvaluationAlert;

/// A tick reloads the window in full when its last load is older than this (by the
/// engine's clock or the machine's). Between, each ingest brings its own alerts in, and a
/// rollback is confirmed on a reload; what a reload alone brings (another replica's
/// alerts, an alert going stale) waits at most this long. Reloading at every tick made
/// an idle engine read and classify the whole window every 10 s.
const RELOAD_SECS: u64 = 60;

/// An alert's place in its target's order: last delivery, then id.
pub(super) type Newest = (DateTime<Utc>, i64);

/// The run loop's view of the correlation window: every classified alert still firing
/// (and not stale) or recently resolved, within the caps. A tick reloads it from the
/// store; a batch of ingests merges just the rows those ingests wrote. Under a flood of
/// alerts an evaluation then costs its own rows, not a re-read and re-classification of
/// the whole window (which made ingest with the engine on quadratic).
///
/// Each target's alerts are held in their own group, ordered by last delivery, so the
/// caps are kept as alerts come in: a merged alert over `max_alerts_per_target` pushes
/// out its target's oldest, and a batch costs the alerts it merged and the targets it
/// evaluates, never a pass over the whole window.
#[derive(Default)]
pub(super) struct Window {
    /// `None` until loaded (or after a failed read, to reload).
    held: Option<Held>,
    /// What the caps left out since the last load.
    pub(super) dropped: Dropped,
    /// When it was last loaded in full, by the engine's clock and by the machine's.
    loaded: Option<(DateTime<Utc>, std::time::Instant)>,
}

/// What the caps left out of the window.
#[derive(Default)]
pub(super) struct Dropped {
    /// Alerts left out of targets that are held, by target.
    pub(super) per_target: HashMap<TargetRef, u64>,
    /// Alerts about no target (dependency alerts) left out.
    pub(super) untargeted: u64,
    /// Targets left out entirely, by [`target_hash`], and their alerts.
    pub(super) targets: Arc<HashSet<u64>>,
    pub(super) target_alerts: u64,
}

/// The window's alerts: by id (the snapshots' order), and by target.
#[derive(Default)]
pub(super) struct Held {
    alerts: BTreeMap<i64, WindowAlert>,
    /// The groups, by slot; an emptied slot is reused.
    groups: Vec<Group>,
    free: Vec<u32>,
    /// The slot of each target's group (`None`: the alerts about no target).
    slots: HashMap<Option<TargetRef>, u32>,
}

/// One target's alerts (or those about no target), newest last.
struct Group {
    target: Option<TargetRef>,
    newest: BTreeSet<Newest>,
}

/// What the window keeps of an alert row besides its classification: read from the
/// store, or as an ingest wrote it ([`super::IngestedAlert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    /// Its last delivery: of two versions of a row, the later one is held.
    pub updated_at: DateTime<Utc>,
    pub firing: bool,
    /// Set once resolved.
    pub ends_at: Option<DateTime<Utc>>,
}

struct WindowAlert {
    /// Its group's slot.
    slot: u32,
    updated_at: DateTime<Utc>,
    firing: bool,
    ends_at: Option<DateTime<Utc>>,
    classified: Arc<Classified>,
}

impl Window {
    /// Forgets what it holds: the next snapshot reloads the window.
    pub(super) fn invalidate(&mut self) {
        self.held = None;
    }

    pub(super) fn is_loaded(&self) -> bool {
        self.held.is_some()
    }

    /// Whether a tick at `now` should reload it.
    pub(super) fn due_for_reload(&self, now: DateTime<Utc>) -> bool {
        let every = Duration::from_secs(RELOAD_SECS);
        match self.loaded {
            Some((at, instant)) if self.is_loaded() => {
                (now - at).to_std().is_ok_and(|d| d >= every)
                    || now < at
                    || instant.elapsed() >= every
            }
            _ => true,
        }
    }

    /// What it holds, taken out to be brought up to date (`None`: not loaded).
    pub(super) fn take(&mut self) -> Option<Held> {
        self.held.take()
    }

    /// Starts a load in full at `now`: what it held and left out is forgotten.
    pub(super) fn start_load(&mut self, now: DateTime<Utc>) -> Held {
        self.loaded = Some((now, std::time::Instant::now()));
        self.dropped = Dropped::default();
        Held::default()
    }

    /// Puts back what [`Window::take`] or [`Window::start_load`] gave.
    pub(super) fn put(&mut self, held: Held) {
        self.held = Some(held);
    }
}

impl Held {
    /// How many alerts it holds.
    pub(super) fn len(&self) -> usize {
        self.alerts.len()
    }

    /// How many targets it holds alerts of.
    fn targets(&self) -> usize {
        self.slots.len() - usize::from(self.slots.contains_key(&None))
    }

    /// Brings a row read from the store in, classified as an ingest's rows are
    /// ([`IngestedAlert::new`], [`Held::merge`]).
    pub(super) fn merge_row(
        &mut self,
        dropped: &mut Dropped,
        classifier: &Classifier,
        limits: &WindowLimits,
        row: EvaluationAlert,
    ) {
        let read = IngestedAlert::new(classifier, row);
        self.merge(dropped, limits, read.row, read.classified);
    }

    /// Brings `row` in (or out, when the classifier ignored it: `classified` is
    /// `None`), keeping its target's newest `limits.max_alerts_per_target`; what the
    /// cap pushes out is counted in `dropped`. A row older than the one held (two
    /// ingests' reports crossing) is left out.
    pub(super) fn merge(
        &mut self,
        dropped: &mut Dropped,
        limits: &WindowLimits,
        row: Row,
        classified: Option<Classified>,
    ) {
        if self
            .alerts
            .get(&row.id)
            .is_some_and(|held| held.updated_at > row.updated_at)
        {
            return;
        }
        // Its labels (so its target) may have changed with a redelivery.
        self.remove(row.id);
        // An alert the classifier ignores concerns no evaluation: not held at all.
        let Some(classified) = classified else {
            return;
        };
        let target = &classified.signal.target;
        if let Some(target) = target
            && !dropped.targets.is_empty()
            && dropped.targets.contains(&target_hash(target))
        {
            dropped.target_alerts += 1;
            return;
        }
        let slot = self.slot(target);
        let group = &mut self.groups[slot as usize];
        group.newest.insert((row.updated_at, row.id));
        self.alerts.insert(
            row.id,
            WindowAlert {
                slot,
                updated_at: row.updated_at,
                firing: row.firing,
                ends_at: row.ends_at,
                classified: Arc::new(classified),
            },
        );
        let mut over = 0;
        while group.newest.len() > limits.max_alerts_per_target {
            if let Some((_, id)) = group.newest.pop_first() {
                self.alerts.remove(&id);
                over += 1;
            }
        }
        if over > 0 {
            match &group.target {
                Some(target) => match dropped.per_target.get_mut(target) {
                    Some(n) => *n += over,
                    None => {
                        dropped.per_target.insert(target.clone(), over);
                    }
                },
                None => dropped.untargeted += over,
            }
        }
    }

    /// The slot of `target`'s group, made when it has none (the target is cloned only
    /// then: a flood's batch merges tens of thousands of alerts of a few targets).
    fn slot(&mut self, target: &Option<TargetRef>) -> u32 {
        if let Some(&slot) = self.slots.get(target) {
            return slot;
        }
        let group = Group {
            target: target.clone(),
            newest: BTreeSet::new(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.groups[slot as usize] = group;
                slot
            }
            None => {
                self.groups.push(group);
                u32::try_from(self.groups.len() - 1).expect("fewer groups than alerts")
            }
        };
        self.slots.insert(target.clone(), slot);
        slot
    }

    /// Takes the alert `id` out, if held.
    fn remove(&mut self, id: i64) {
        if let Some(held) = self.alerts.remove(&id) {
            let group = &mut self.groups[held.slot as usize];
            group.newest.remove(&(held.updated_at, id));
            if group.newest.is_empty() {
                self.release(held.slot);
            }
        }
    }

    /// Frees an emptied group's slot.
    fn release(&mut self, slot: u32) {
        let target = self.groups[slot as usize].target.take();
        self.slots.remove(&target);
        self.free.push(slot);
    }

    /// Keeps the `max_targets` targets with the newest alerts once it holds more than
    /// `max_targets + slack`; the targets left out (and their alerts) are counted in
    /// `dropped`, and their later alerts are not merged until the next load. A load
    /// passes a slack of `max_targets`, so ranking the targets costs it amortised
    /// O(n log n) and it holds at most twice the cap while loading.
    pub(super) fn cap_targets(&mut self, dropped: &mut Dropped, max_targets: usize, slack: usize) {
        let held = self.targets();
        if held <= max_targets.saturating_add(slack) {
            return;
        }
        let mut ranked: Vec<(Newest, u32)> = self
            .slots
            .iter()
            .filter(|(target, _)| target.is_some())
            .filter_map(|(_, &slot)| {
                let group = &self.groups[slot as usize];
                group.newest.last().map(|&top| (top, slot))
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let gone = ranked.split_off(max_targets);
        let targets = Arc::make_mut(&mut dropped.targets);
        for (_, slot) in gone {
            let group = &mut self.groups[slot as usize];
            let newest = std::mem::take(&mut group.newest);
            dropped.target_alerts += newest.len() as u64;
            for (_, id) in newest {
                self.alerts.remove(&id);
            }
            if let Some(target) = &group.target {
                // A target left out counts its earlier trims as left out with it.
                dropped.target_alerts += dropped.per_target.remove(target).unwrap_or(0);
                targets.insert(target_hash(target));
            }
            self.release(slot);
        }
    }

    /// Lets go of the alerts no longer in the window at `since` (resolved before it).
    pub(super) fn retain_current(&mut self, since: DateTime<Utc>) {
        let gone: Vec<i64> = self
            .alerts
            .iter()
            .filter(|(_, a)| !a.current(since))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(id);
        }
    }

    /// Every alert it holds, in id order.
    pub(super) fn all(&self) -> Vec<Arc<Classified>> {
        self.alerts.values().map(|a| a.classified.clone()).collect()
    }

    /// The alerts of `targets` and those about no target that are in the window at
    /// `since`, in id order: what a batch's evaluations of `targets` read. It costs
    /// their alerts, not the window's.
    pub(super) fn of(
        &self,
        targets: &BTreeSet<TargetRef>,
        since: DateTime<Utc>,
    ) -> Vec<Arc<Classified>> {
        let mut ids: Vec<i64> = std::iter::once(None)
            .chain(targets.iter().map(|t| Some(t.clone())))
            .filter_map(|target| self.slots.get(&target))
            .flat_map(|&slot| self.groups[slot as usize].newest.iter().map(|&(_, id)| id))
            .collect();
        ids.sort_unstable();
        ids.iter()
            .filter_map(|id| self.alerts.get(id))
            .filter(|a| a.current(since))
            .map(|a| a.classified.clone())
            .collect()
    }
}

impl WindowAlert {
    /// The store's rule for the window (alerts_for_evaluation), as time moves on; a
    /// firing alert going stale leaves at the next tick's reload.
    fn current(&self, since: DateTime<Utc>) -> bool {
        self.firing || self.ends_at.is_some_and(|end| end >= since)
    }
}
