//! Every source's way in: Alertmanager notifications, CI deploys, Flagger calls and
//! posted signals are recorded here, counted, and reported to the engine. Handlers only
//! parse, authorise and hand over; what an ingest does is written once, here.
//!
//! Notifications are group-committed: those that arrive together are committed in one
//! transaction, and each request is answered only after the transaction that holds it
//! committed. Handlers `submit` a notification and wait; writer tasks take whatever is
//! queued (up to `batch_max`) and commit it. While one writer commits, the next one is
//! already collecting, so the database sees a steady stream of multi-row transactions
//! instead of one commit per request. Deploys and signals arrive far more rarely and are
//! written one request at a time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::domain::classify::Classifier;
use crate::domain::{Deploy, Notification, Signal, TargetRef};
use crate::engine::{EngineHandle, IngestedAlert};
use crate::store::{DeployWrite, IngestOutcome, Store, StoreError};
use crate::telemetry::Metrics;
use crate::wire::flagger::{Answered, FlaggerCall};

/// Why an ingest was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A group commit failed (already logged by the writer); worth a retry.
    #[error("the store failed to commit: {0}")]
    Store(String),
    /// A single write failed; the store's error says whose fault it was.
    #[error(transparent)]
    Record(#[from] StoreError),
    #[error("shutting down")]
    Closed,
}

/// Who sent what is ingested: the `source` label of
/// `rollwarden_notifications_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Alertmanager,
    Ci,
    Flagger,
    Signal,
}

impl Sender {
    pub fn as_str(self) -> &'static str {
        match self {
            Sender::Alertmanager => "alertmanager",
            Sender::Ci => "ci",
            Sender::Flagger => "flagger",
            Sender::Signal => "signal",
        }
    }
}

struct Job {
    notification: Notification,
    reply: oneshot::Sender<Result<IngestOutcome, IngestError>>,
}

/// The handle handlers hand over to. Dropping every clone lets the writers drain and
/// stop.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Maps alerts to the targets the engine evaluates.
    classifier: Arc<Classifier>,
    /// Where committed ingests are reported; `None` with the engine off.
    engine: Option<EngineHandle>,
}

impl Ingestor {
    /// Starts `writers` writer tasks on `tasks`.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        classifier: Arc<Classifier>,
        engine: Option<EngineHandle>,
        writers: usize,
        batch_max: usize,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(batch_max * writers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tasks.spawn(write_batches(
                rx.clone(),
                store.clone(),
                metrics.clone(),
                batch_max,
            ));
        }
        Self {
            tx,
            store,
            metrics,
            classifier,
            engine,
        }
    }

    /// Counts (and logs) a payload that can never be accepted.
    pub fn rejected(&self, sender: Sender, code: &str, message: &str) {
        self.metrics.notification(sender.as_str(), "rejected");
        tracing::info!(source = sender.as_str(), code, message, "ingest rejected");
    }

    /// Counts an ingest that failed after it was recorded (a Flagger call whose
    /// evaluation failed).
    pub fn failed(&self, sender: Sender) {
        self.metrics.notification(sender.as_str(), "failed");
    }

    /// An Alertmanager notification: group-committed, counted, and its alerts and
    /// targets reported to the engine unless it was a duplicate.
    #[tracing::instrument(skip_all, fields(alerts = notification.alerts.len()))]
    pub async fn notification(
        &self,
        mut notification: Notification,
    ) -> Result<IngestOutcome, IngestError> {
        // What each alert is about, for the store's target index (the canary reads).
        notification.targets = notification
            .alerts
            .iter()
            .map(|a| self.classifier.alert_target(a))
            .collect();
        let mut outcome = self
            .submit(notification)
            .await
            .inspect_err(|_| self.failed(Sender::Alertmanager))?;
        self.count(Sender::Alertmanager, !outcome.duplicate);
        let written = std::mem::take(&mut outcome.written);
        if let Some(engine) = &self.engine
            && !outcome.duplicate
        {
            // The rows it wrote, classified here (on the handlers' tasks, not the
            // engine's), and the targets they are about: an alert it did not write (a
            // resolved one delivered firing) or that no rule classifies changes no
            // evaluation.
            let alerts: Vec<IngestedAlert> = written
                .into_iter()
                .map(|w| IngestedAlert::new(&self.classifier, w))
                .collect();
            let mut targets: Vec<TargetRef> = alerts
                .iter()
                .filter_map(|a| a.classified.as_ref()?.signal.target.clone())
                .collect();
            targets.sort();
            targets.dedup();
            tracing::debug!(
                receipt = outcome.receipt_id,
                targets = ?targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "notification recorded; its alerts go to the engine"
            );
            engine.ingested(targets, alerts);
        }
        Ok(outcome)
    }

    /// A CI deploy report, merged into its (target, revision); the target is evaluated
    /// when the row changed.
    #[tracing::instrument(skip_all, fields(target = %deploy.target, revision = %deploy.revision))]
    pub async fn ci_deploy(
        &self,
        deploy: &Deploy,
        now: DateTime<Utc>,
    ) -> Result<DeployWrite, IngestError> {
        let write = self.record_deploy(Sender::Ci, deploy, now).await?;
        self.count(Sender::Ci, write.changed);
        if write.changed {
            self.touch(&deploy.target);
        }
        Ok(write)
    }

    /// A Flagger call that asks (a gate, a check, the rollback hook), before it is
    /// answered: its canary run goes on record first, since the evaluation that answers
    /// it may blame that run. Counted once answered ([`Ingestor::flagger_call`]).
    pub async fn flagger_run(
        &self,
        call: &FlaggerCall,
        now: DateTime<Utc>,
    ) -> Result<DeployWrite, IngestError> {
        self.record_deploy(Sender::Flagger, &call.to_deploy(None), now)
            .await
    }

    /// A Flagger call on its canary run's timeline, with the answer it was given if it
    /// asked. A call that only reports (`post-rollout`, `event`) has the target
    /// evaluated when the run changed; one that asked was evaluated to be answered.
    #[tracing::instrument(skip_all, fields(target = %call.target, hook = ?call.hook))]
    pub async fn flagger_call(
        &self,
        call: &FlaggerCall,
        answered: Option<Answered<'_>>,
        now: DateTime<Utc>,
    ) -> Result<DeployWrite, IngestError> {
        let deploy = call.to_deploy(Some(call.entry(answered)));
        let write = self.record_deploy(Sender::Flagger, &deploy, now).await?;
        self.count(Sender::Flagger, true);
        if !call.hook.asks() && write.changed {
            self.touch(&call.target);
        }
        Ok(write)
    }

    /// A posted signal: `(id, created)`. A targeted signal has its target evaluated
    /// now; a dependency signal concerns every target that depends on it, which the
    /// next tick evaluates.
    #[tracing::instrument(skip_all, fields(kind = ?signal.kind))]
    pub async fn signal(
        &self,
        signal: &Signal,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), IngestError> {
        let (id, created) = self
            .store
            .record_signal(signal, now)
            .await
            .inspect_err(|err| {
                self.failed(Sender::Signal);
                self.metrics.store_error("record_signal", err);
            })?;
        self.count(Sender::Signal, created);
        if let Some(target) = &signal.target {
            self.touch(target);
        }
        Ok((id, created))
    }

    /// Commits `notification` with whatever else is queued and returns what became of
    /// it.
    async fn submit(&self, notification: Notification) -> Result<IngestOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job {
                notification,
                reply,
            })
            .await
            .map_err(|_| IngestError::Closed)?;
        answer.await.map_err(|_| IngestError::Closed)?
    }

    async fn record_deploy(
        &self,
        sender: Sender,
        deploy: &Deploy,
        now: DateTime<Utc>,
    ) -> Result<DeployWrite, IngestError> {
        let writes = self
            .store
            .record_deploys(std::slice::from_ref(deploy), now)
            .await
            .inspect_err(|err| {
                self.failed(sender);
                self.metrics.store_error("record_deploys", err);
            })?;
        let write = *writes.first().ok_or_else(|| {
            IngestError::Record(StoreError::Corrupt(
                "record_deploys wrote no row for a deploy".into(),
            ))
        })?;
        self.metrics
            .deploy_recorded(sender.as_str(), write.created, write.changed);
        Ok(write)
    }

    /// Counts an ingest that was recorded: new (or changed), or a repeat.
    fn count(&self, sender: Sender, new: bool) {
        let outcome = if new { "accepted" } else { "duplicate" };
        self.metrics.notification(sender.as_str(), outcome);
    }

    fn touch(&self, target: &TargetRef) {
        if let Some(engine) = &self.engine {
            engine.touched(vec![target.clone()]);
        }
    }
}

async fn write_batches(
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    batch_max: usize,
) {
    loop {
        let mut jobs = Vec::new();
        {
            // Holding the lock while waiting is the point: one writer collects while the
            // others commit.
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < batch_max {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.notification, j.reply)).unzip();
        metrics.ingest_batch_size.observe(batch.len() as f64);
        match store.record_notifications(&batch).await {
            Ok(outcomes) => {
                let written: usize = outcomes.iter().map(|o| o.alerts_written).sum();
                metrics.alerts_stored.inc_by(written as u64);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A requester that went away (timeout) still had its data committed.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                metrics.store_error("record_notifications", &err);
                tracing::error!(error = %err, batch = batch.len(), "ingest commit failed");
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Store(err.to_string())));
                }
            }
        }
    }
}
