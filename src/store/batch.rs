//! An ingest batch planned once for both backends: which receipts and alert rows it
//! writes, and what each notification's outcome is once they are written.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};

use super::{EvaluationAlert, IngestOutcome};
use crate::domain::{Alert, AlertStatus, AlertTarget, Notification};

/// An alert row a batch writes.
pub struct PlannedAlert<'a> {
    pub alert: Alert,
    /// The notification that carried it last, and its place in the batch.
    pub notification: &'a Notification,
    index: usize,
    /// The receipt of the plan it came with (an index into [`PlannedBatch::receipts`]).
    pub receipt: usize,
    /// Its target key ([`AlertTarget::key`]); `None` when not mapped.
    pub target: Option<String>,
}

impl PlannedAlert<'_> {
    /// The row as written under `id`, for the outcome of the notification that
    /// carried it last.
    pub fn written(self, id: i64) -> (usize, EvaluationAlert) {
        // Its times as both stores keep them (the wire's already are).
        let mut alert = self.alert;
        alert.starts_at = alert.starts_at.trunc_subsecs(6);
        alert.ends_at = alert.ends_at.map(|t| t.trunc_subsecs(6));
        let alert = EvaluationAlert {
            id,
            updated_at: self.notification.received_at.trunc_subsecs(6),
            alert,
        };
        (self.index, alert)
    }
}

/// What a dialect's `insert_batch` wrote: per receipt of the plan, its id and whether
/// it is new; and the alert rows it wrote ([`PlannedAlert::written`]).
pub struct Inserted {
    pub receipt_ids: Vec<i64>,
    pub is_new: Vec<bool>,
    pub alerts: Vec<(usize, EvaluationAlert)>,
}

/// A batch reduced to the rows it writes: receipts unique by dedupe key (with how many
/// times each occurred) and alerts unique by occurrence, merged in arrival order.
/// Both backends write exactly this, so they agree on every outcome.
pub struct PlannedBatch<'a> {
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
    /// notification and receipt that carried it last, and the target key of the alert
    /// whose content it keeps (`None` when the notification was not mapped).
    pub fn alerts(&self, is_new: &[bool]) -> Vec<PlannedAlert<'a>> {
        type Merged<'n> = (Alert, (&'n Notification, usize), usize, Option<String>);
        let mut merged: HashMap<(&str, DateTime<Utc>), Merged<'a>> = HashMap::new();
        let mut taken = vec![false; self.receipts.len()];
        for (i, notification) in self.batch.iter().enumerate() {
            let r = self.receipt_of[i];
            if !is_new[r] || std::mem::replace(&mut taken[r], true) {
                continue;
            }
            for (j, alert) in notification.alerts.iter().enumerate() {
                let target = notification.targets.get(j).map(AlertTarget::key);
                // Keyed by the instant both stores keep (microseconds): two starts a
                // nanosecond apart are one row there, so one occurrence here.
                merged
                    .entry((alert.fingerprint.as_str(), alert.starts_at.trunc_subsecs(6)))
                    .and_modify(|(stored, n, receipt, kept)| {
                        // Alert::merge's rule: a resolved alert keeps its content.
                        if !(stored.status == AlertStatus::Resolved
                            && alert.status == AlertStatus::Firing)
                        {
                            kept.clone_from(&target);
                        }
                        stored.merge(alert);
                        *n = (notification, i);
                        *receipt = r;
                    })
                    .or_insert_with(|| (alert.clone(), (notification, i), r, target));
            }
        }
        let mut alerts: Vec<PlannedAlert<'a>> = merged
            .into_values()
            .map(
                |(alert, (notification, index), receipt, target)| PlannedAlert {
                    alert,
                    notification,
                    index,
                    receipt,
                    target,
                },
            )
            .collect();
        alerts.sort_by(|a, b| {
            (&a.alert.fingerprint, a.alert.starts_at)
                .cmp(&(&b.alert.fingerprint, b.alert.starts_at))
        });
        alerts
    }

    /// The alert rows of the plan when no occurrence comes twice in it: then each row is
    /// written exactly when its own receipt turns out new, as in [`PlannedBatch::alerts`]
    /// whichever receipts do, so a backend can write the receipts and these rows in one
    /// statement, deciding row by row. `None` when an occurrence comes twice (an update
    /// arriving with its first delivery, two starts a nanosecond apart): its merged
    /// content depends on which receipts are new, known only once they are written.
    pub fn unshared_alerts(&self) -> Option<Vec<PlannedAlert<'a>>> {
        let alerts = self.alerts(&vec![true; self.receipts.len()]);
        let carried: usize = self.receipts.iter().map(|(_, n, _)| n.alerts.len()).sum();
        (alerts.len() == carried).then_some(alerts)
    }

    /// One outcome per notification of the batch, from what was inserted. Only the
    /// first occurrence of a new receipt counts as fresh; the rest are duplicates.
    pub fn outcomes(&self, inserted: Inserted) -> Vec<IngestOutcome> {
        let Inserted {
            receipt_ids,
            is_new,
            alerts,
        } = inserted;
        let mut seen = vec![false; self.receipts.len()];
        let mut outcomes: Vec<IngestOutcome> = self
            .receipt_of
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
                    written: Vec::new(),
                }
            })
            .collect();
        for (index, alert) in alerts {
            outcomes[index].written.push(alert);
        }
        outcomes
    }
}
