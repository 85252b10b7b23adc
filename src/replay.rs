//! Shadow mode. `rollwarden replay` runs a recorded stream through a policy and says,
//! decision by decision, what rollwarden would have done; `rollwarden export` writes the
//! stream from what a running rollwarden stored.
//!
//! Replay uses the server's own engine on a throwaway in-memory store with a manual
//! clock, so its answers are the server's answers, and nothing outside it is touched.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::ManualClock;
use crate::domain::classify::Classifier;
use crate::domain::policy::Policy;
use crate::domain::{Deploy, Signal, TargetRef};
use crate::engine::{Engine, Snapshot, WindowLimits};
use crate::store::{DeployQuery, SqliteStore, Store};
use crate::telemetry::Metrics;
use crate::wire::Bounds;
use crate::wire::alertmanager::AlertmanagerPayload;

/// One line of a recorded stream (NDJSON): when it happened and what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened. Exactly one key per line besides `at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An Alertmanager webhook body, as received.
    Alertmanager(serde_json::Value),
    /// A deploy, as rollwarden stores it (`GET /api/v1/deploys` items work too).
    Deploy(Box<Deploy>),
    /// A signal, as rollwarden stores it.
    Signal(Box<Signal>),
}

/// One decision a replay produced.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRow {
    pub at: DateTime<Utc>,
    pub target: String,
    pub verdict: String,
    pub rules: Vec<String>,
    pub holds: Vec<String>,
    pub suspect: Option<String>,
    pub rollback_to: Option<String>,
    pub reason: String,
    pub decision: serde_json::Value,
}

/// Reads NDJSON records; a bad line is an error naming its number.
pub fn read_records(input: impl BufRead) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .with_context(|| format!("line {}: not a replay record", n + 1))?;
        records.push(record);
    }
    Ok(records)
}

/// Replays `records` (in time order) through `policy`, ticking every `tick` between
/// records so that duration rules see time pass, and returns every decision that
/// changed.
pub async fn replay(
    mut records: Vec<Record>,
    policy: Policy,
    classifier: Classifier,
    tick: Duration,
) -> anyhow::Result<Vec<ReplayRow>> {
    if tick <= Duration::zero() {
        bail!("the tick must be positive");
    }
    records.sort_by_key(|r| r.at);
    let Some(first) = records.first() else {
        return Ok(Vec::new());
    };
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect("sqlite::memory:", 1).await?);
    store.migrate().await?;
    let clock = Arc::new(ManualClock::new(first.at));
    let engine = Engine {
        store: store.clone(),
        classifier: Arc::new(classifier),
        policy: Arc::new(policy),
        clock: clock.clone(),
        metrics: Arc::new(Metrics::new()),
        // Shadow mode records decisions only: nothing is enqueued, nothing acts.
        planner: None,
        limits: WindowLimits::default(),
    };
    let mut rows = Vec::new();
    let mut now = first.at;
    // Whether the last tick found no target due: then none is until the next record (a
    // target becomes due by a signal or an unsettled decision, which only records
    // bring), and the ticks up to it are skipped, which keeps hours of quiet cheap.
    let mut idle = false;
    for record in &records {
        // Let the clock run to this record, ticking, as the server would.
        while now + tick < record.at {
            now += tick;
            if idle {
                continue;
            }
            clock.set(now);
            idle = tick_into(&engine, &mut rows).await? == 0;
        }
        now = record.at;
        clock.set(now);
        let touched = apply(&engine, record).await?;
        if !touched.is_empty() {
            let snapshot = engine.snapshot().await?;
            for target in touched {
                evaluate_into(&engine, &snapshot, &target, &mut rows).await?;
            }
        }
        idle = false;
    }
    // One last look after the stream, for decisions that only a tick reaches.
    clock.set(now + tick);
    tick_into(&engine, &mut rows).await?;
    store.close().await;
    Ok(rows)
}

async fn apply(engine: &Engine, record: &Record) -> anyhow::Result<BTreeSet<TargetRef>> {
    let mut touched = BTreeSet::new();
    match &record.event {
        Event::Alertmanager(body) => {
            let raw = serde_json::to_vec(body)?;
            let notification = AlertmanagerPayload::parse(&raw, &Bounds::default(), record.at)
                .map_err(|e| anyhow::anyhow!("alertmanager record at {}: {e}", record.at))?;
            for alert in &notification.alerts {
                if let Some(target) = engine.classifier.target_for(&alert.labels) {
                    touched.insert(target.target);
                }
            }
            engine.store.record_notifications(&[notification]).await?;
        }
        Event::Deploy(deploy) => {
            engine
                .store
                .record_deploys(std::slice::from_ref(deploy), record.at)
                .await?;
            touched.insert(deploy.target.clone());
        }
        Event::Signal(signal) => {
            engine.store.record_signal(signal, record.at).await?;
            touched.extend(signal.target.clone());
        }
    }
    Ok(touched)
}

/// Evaluates every due target against one snapshot, as the server's tick does; returns
/// how many were due.
async fn tick_into(engine: &Engine, rows: &mut Vec<ReplayRow>) -> anyhow::Result<usize> {
    let snapshot = engine.snapshot().await?;
    let due = engine.due(&snapshot).await?;
    for target in &due {
        evaluate_into(engine, &snapshot, target, rows).await?;
    }
    Ok(due.len())
}

async fn evaluate_into(
    engine: &Engine,
    snapshot: &Snapshot,
    target: &TargetRef,
    rows: &mut Vec<ReplayRow>,
) -> anyhow::Result<()> {
    let evaluation = engine.evaluate_in(&engine.target(target), snapshot).await?;
    if evaluation.changed {
        let d = &evaluation.decision;
        let deploy = |r: &Option<crate::domain::DeployRecord>| {
            r.as_ref()
                .map(|r| format!("{} {}", r.deploy.source.as_str(), r.deploy.revision))
        };
        rows.push(ReplayRow {
            at: evaluation.stored.decided_at,
            target: target.key(),
            verdict: d.verdict.as_str().to_string(),
            rules: d.fired.iter().map(|f| f.rule_id.clone()).collect(),
            holds: d.holds.iter().map(|h| h.code().to_string()).collect(),
            suspect: deploy(&d.suspect),
            rollback_to: deploy(&d.rollback_to),
            reason: d.reason.clone(),
            decision: serde_json::to_value(d)?,
        });
    }
    Ok(())
}

/// The rows as a fixed-width table.
pub fn table(rows: &[ReplayRow]) -> String {
    let mut out = format!(
        "{:<24} {:<40} {:<11} {:<14} {:<22} {:<16} {:<16}\n",
        "AT", "TARGET", "VERDICT", "RULES", "HOLDS", "SUSPECT", "ROLLBACK TO"
    );
    for r in rows {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        out.push_str(&format!(
            "{:<24} {:<40} {:<11} {:<14} {:<22} {:<16} {:<16}\n",
            r.at.format("%Y-%m-%dT%H:%M:%SZ"),
            r.target,
            r.verdict,
            list(&r.rules),
            list(&r.holds),
            dash(&r.suspect),
            dash(&r.rollback_to),
        ));
    }
    out
}

/// A decision as a cell of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub verdict: String,
    pub rules: Vec<String>,
    pub holds: Vec<String>,
    pub suspect: Option<String>,
    pub reason: String,
}

impl Standing {
    fn of(row: &ReplayRow) -> Self {
        Self {
            verdict: row.verdict.clone(),
            rules: row.rules.clone(),
            holds: row.holds.clone(),
            suspect: row.suspect.clone(),
            reason: row.reason.clone(),
        }
    }

    /// `rollback M1,M2 (ci 2232)`, `hold M2 [H2]`, `ok`.
    fn cell(&self) -> String {
        let mut cell = self.verdict.clone();
        if !self.rules.is_empty() {
            cell.push(' ');
            cell.push_str(&self.rules.join(","));
        }
        if !self.holds.is_empty() {
            cell.push_str(&format!(" [{}]", self.holds.join(",")));
        }
        if let (Some(suspect), "rollback" | "investigate") = (&self.suspect, self.verdict.as_str())
        {
            cell.push_str(&format!(" ({suspect})"));
        }
        cell
    }
}

/// One instant of two replays of the same stream: the decision standing for the target
/// under each policy once either changed.
#[derive(Debug, Clone, Serialize)]
pub struct ComparedRow {
    pub at: DateTime<Utc>,
    pub target: String,
    /// Under the policy compared against (`--compare`); `None` before its first
    /// decision about the target.
    pub old: Option<Standing>,
    /// Under the replay's own policy.
    pub new: Option<Standing>,
}

impl ComparedRow {
    /// Whether the two policies' verdicts differ here.
    pub fn differs(&self) -> bool {
        self.old.as_ref().map(|s| &s.verdict) != self.new.as_ref().map(|s| &s.verdict)
    }
}

/// Two replays of one stream, side by side, in time order: a row whenever either
/// policy's verdict, rules, holds or suspect for a target changed (not for a new
/// observed value alone).
pub fn compare(old: &[ReplayRow], new: &[ReplayRow]) -> Vec<ComparedRow> {
    let mut changes: Vec<(DateTime<Utc>, &str, bool, &ReplayRow)> = old
        .iter()
        .map(|r| (r.at, r.target.as_str(), false, r))
        .chain(new.iter().map(|r| (r.at, r.target.as_str(), true, r)))
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)).then(a.2.cmp(&b.2)));
    let mut standing: std::collections::BTreeMap<&str, (Option<Standing>, Option<Standing>)> =
        std::collections::BTreeMap::new();
    let mut shown: std::collections::BTreeMap<&str, (String, String)> =
        std::collections::BTreeMap::new();
    let cells = |row: &ComparedRow| {
        let cell = |s: &Option<Standing>| s.as_ref().map_or_else(String::new, Standing::cell);
        (cell(&row.old), cell(&row.new))
    };
    let mut rows: Vec<ComparedRow> = Vec::new();
    for (at, target, is_new, row) in changes {
        let entry = standing.entry(target).or_default();
        if is_new {
            entry.1 = Some(Standing::of(row));
        } else {
            entry.0 = Some(Standing::of(row));
        }
        let compared = ComparedRow {
            at,
            target: target.to_string(),
            old: entry.0.clone(),
            new: entry.1.clone(),
        };
        let now_shown = cells(&compared);
        if shown.get(target) == Some(&now_shown) {
            continue;
        }
        shown.insert(target, now_shown);
        match rows.last_mut() {
            // Both changed at the same instant: one row.
            Some(last) if last.at == at && last.target == target => *last = compared,
            _ => rows.push(compared),
        }
    }
    rows
}

/// The side-by-side table, rows where the verdicts differ marked `*`, and a summary of
/// the rollbacks each policy decided.
pub fn compare_table(rows: &[ComparedRow], old_name: &str, new_name: &str) -> String {
    let cell = |s: &Option<Standing>| s.as_ref().map_or_else(|| "-".into(), Standing::cell);
    let width = rows
        .iter()
        .map(|r| cell(&r.old).chars().count())
        .chain(std::iter::once(old_name.len()))
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "  {:<20} {:<40} {:<width$}  {}\n",
        "AT", "TARGET", old_name, new_name
    );
    for r in rows {
        out.push_str(&format!(
            "{} {:<20} {:<40} {:<width$}  {}\n",
            if r.differs() { "*" } else { " " },
            r.at.format("%Y-%m-%dT%H:%M:%SZ"),
            r.target,
            cell(&r.old),
            cell(&r.new),
        ));
    }
    let rollbacks = |side: fn(&ComparedRow) -> &Option<Standing>| {
        let mut decisions = BTreeSet::new();
        for r in rows {
            if let Some(s) = side(r).as_ref().filter(|s| s.verdict == "rollback") {
                decisions.insert((r.target.clone(), s.suspect.clone()));
            }
        }
        decisions
    };
    let old = rollbacks(|r| &r.old);
    let new = rollbacks(|r| &r.new);
    let targets = |set: &BTreeSet<(String, Option<String>)>| {
        set.iter().map(|(t, _)| t.clone()).collect::<BTreeSet<_>>()
    };
    let (old_targets, new_targets) = (targets(&old), targets(&new));
    out.push_str(&format!(
        "\nrollbacks (target, suspect): {old_name} {} on {} targets, {new_name} {} on {} targets\n",
        old.len(),
        old_targets.len(),
        new.len(),
        new_targets.len()
    ));
    for (name, only) in [
        (old_name, old_targets.difference(&new_targets)),
        (new_name, new_targets.difference(&old_targets)),
    ] {
        let only: Vec<&String> = only.collect();
        if !only.is_empty() {
            out.push_str(&format!(
                "rolled back only by {name}: {}\n",
                only.iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// Writes what `store` holds between `since` and `until` as replay records, in time
/// order: Alertmanager receipts, deploys and posted signals.
pub async fn export(
    store: &dyn Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .receipts_between("alertmanager", since, until, after, 1000)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for receipt in page {
            let body: serde_json::Value = serde_json::from_str(&receipt.body)
                .with_context(|| format!("receipt {} is not JSON", receipt.id))?;
            records.push(Record {
                at: receipt.received_at,
                event: Event::Alertmanager(body),
            });
        }
    }
    let mut query = DeployQuery {
        since: Some(since),
        until: Some(until),
        limit: 1000,
        ..DeployQuery::default()
    };
    loop {
        let page = store.list_deploys(&query).await?;
        let Some(last) = page.last() else { break };
        query.after = Some(crate::store::DeployCursor::of(last));
        for deploy in page {
            records.push(Record {
                at: deploy.deploy.started_at,
                event: Event::Deploy(Box::new(deploy.deploy)),
            });
        }
    }
    for signal in store.signals_for_evaluation(since).await? {
        if signal.started_at < until {
            records.push(Record {
                at: signal.started_at,
                event: Event::Signal(Box::new(signal)),
            });
        }
    }
    records.sort_by_key(|r| r.at);
    for record in &records {
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")?;
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: &str, target: &str, verdict: &str, rules: &[&str], reason: &str) -> ReplayRow {
        ReplayRow {
            at: at.parse().unwrap(),
            target: target.into(),
            verdict: verdict.into(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            holds: Vec::new(),
            suspect: Some("ci 7".into()),
            rollback_to: None,
            reason: reason.into(),
            decision: serde_json::Value::Null,
        }
    }

    #[test]
    fn compare_shows_a_row_when_either_side_changes_and_not_for_a_new_value_alone() {
        let old = [
            row("2026-08-22T10:00:00Z", "a", "rollback", &["G4"], "at 0.7 %"),
            // A re-sent alert with a new value: a new decision, the same cell.
            row("2026-08-22T10:00:15Z", "a", "rollback", &["G4"], "at 0.8 %"),
            row("2026-08-22T10:01:00Z", "a", "ok", &[], ""),
        ];
        let new = [
            row("2026-08-22T10:00:00Z", "a", "ok", &[], ""),
            row("2026-08-22T10:00:30Z", "b", "monitor", &["M1"], ""),
        ];
        let rows = compare(&old, &new);
        let shown: Vec<(String, Option<String>, Option<String>, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r.target.clone(),
                    r.old.as_ref().map(Standing::cell),
                    r.new.as_ref().map(Standing::cell),
                    r.differs(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "a".into(),
                    Some("rollback G4 (ci 7)".into()),
                    Some("ok".into()),
                    true
                ),
                ("b".into(), None, Some("monitor M1".into()), true),
                ("a".into(), Some("ok".into()), Some("ok".into()), false),
            ]
        );
        let table = compare_table(&rows, "runbooks-1", "runbooks-2");
        assert!(
            table.contains(
                "rollbacks (target, suspect): runbooks-1 1 on 1 targets, runbooks-2 0 on 0 targets"
            ),
            "{table}"
        );
        assert!(
            table.contains("rolled back only by runbooks-1: a\n"),
            "{table}"
        );
    }
}
