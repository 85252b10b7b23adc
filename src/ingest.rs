//! Group commit: notifications that arrive together are committed in one transaction,
//! and each request is answered only after the transaction that holds it committed.
//!
//! Handlers `submit` a notification and wait; writer tasks take whatever is queued (up
//! to `batch_max`) and commit it. While one writer commits, the next one is already
//! collecting, so the database sees a steady stream of multi-row transactions instead
//! of one commit per request.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::domain::Notification;
use crate::store::{IngestOutcome, Store};
use crate::telemetry::Metrics;

/// Why a notification was not committed. Both are our own faults, worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store failed to commit: {0}")]
    Store(String),
    #[error("shutting down")]
    Closed,
}

struct Job {
    notification: Notification,
    reply: oneshot::Sender<Result<IngestOutcome, IngestError>>,
}

/// The handle handlers submit to. Dropping every clone lets the writers drain and stop.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts `writers` writer tasks on `tasks`.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
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
        Self { tx }
    }

    /// Commits `notification` and returns what became of it.
    pub async fn submit(&self, notification: Notification) -> Result<IngestOutcome, IngestError> {
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
