//! The live event stream's source: the audit trail, read in order by one poller per
//! replica and fanned out to every open stream (`GET /api/v1/events`).
//!
//! The audit trail is the one ordered log every replica shares (decisions recorded,
//! action transitions, approvals, freezes declared and lifted), so a console connected
//! to either replica sees what both did, and a stream that reconnects resumes from its
//! last event id with nothing lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{AuditEvent, Store};

/// How often the poller reads the audit trail: the stream's latency at most.
pub const POLL: Duration = Duration::from_millis(250);
/// Events read per query (a burst larger than this is read over several polls).
pub const PAGE: u32 = 500;
/// How far below the newest id the poller reads again. On PostgreSQL an id is taken
/// at insert and becomes visible at commit, so a short transaction can commit after a
/// later id did; re-reading this overlap (and skipping ids already sent) catches it.
const OVERLAP: i64 = 256;
/// Events a slow stream may fall behind before it re-reads from the store.
const BUFFER: usize = 1024;

/// Hands each new audit event to every stream, once.
pub struct EventHub {
    sender: broadcast::Sender<Arc<AuditEvent>>,
    /// Open streams, bounded: a stream holds a permit while it lasts.
    pub streams: Arc<Semaphore>,
    /// Cancelled at shutdown: every stream ends, so the server can stop.
    pub closed: CancellationToken,
    /// True once the hub knows where the trail ended when it started: from then on it
    /// broadcasts every event written.
    ready: watch::Sender<bool>,
}

impl EventHub {
    pub fn new(max_streams: usize) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        Self {
            sender,
            streams: Arc::new(Semaphore::new(max_streams)),
            closed: CancellationToken::new(),
            ready: watch::Sender::new(false),
        }
    }

    /// Waits (at most `bound`) until the hub broadcasts every new event; false if it
    /// does not within `bound` (the store does not answer).
    pub async fn wait_ready(&self, bound: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        tokio::time::timeout(bound, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditEvent>> {
        self.sender.subscribe()
    }

    /// Reads the audit trail from its current end and broadcasts what is new, until
    /// `shutdown`; then closes every stream.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut sent = Sent::default();
        loop {
            // The trail's end, and what is visible in the overlap below it: all of
            // that happened before this replica started streaming.
            let start = match store.last_audit_event_id().await {
                Ok(high) => store
                    .audit_events_after((high - OVERLAP).max(0), PAGE)
                    .await
                    .map(|events| (high, events)),
                Err(err) => Err(err),
            };
            match start {
                Ok((high, events)) => {
                    sent.high = high;
                    for event in events {
                        sent.first_time(event.id);
                    }
                    self.ready.send_replace(true);
                    break;
                }
                Err(err) => tracing::warn!(error = %err, "events: cannot read the audit trail"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return self.closed.cancel(),
                () = tokio::time::sleep(POLL) => {}
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return self.closed.cancel(),
                () = tokio::time::sleep(POLL) => {}
            }
            let after = (sent.high - OVERLAP).max(0);
            if self.sender.receiver_count() == 0 {
                // No stream open: nobody to tell. Only the ids are read, to keep the
                // place; under a flood of decisions the whole rows of every overlap
                // re-read cost the database more than anything but ingest.
                match store.audit_event_ids_after(after, PAGE).await {
                    // Still nobody: a stream opened from here on reads the trail's end
                    // after this read, so it needs none of these.
                    Ok(ids) if self.sender.receiver_count() == 0 => {
                        for id in ids {
                            sent.first_time(id);
                        }
                        continue;
                    }
                    // A stream opened during the read: it may need them, read them whole.
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "events: cannot read the audit trail");
                        continue;
                    }
                }
            }
            match store.audit_events_after(after, PAGE).await {
                Ok(events) => {
                    for event in events {
                        if sent.first_time(event.id) {
                            // A stream that closed since: nobody to tell, which is fine.
                            let _ = self.sender.send(Arc::new(event));
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "events: cannot read the audit trail"),
            }
        }
    }
}

/// The ids already sent (by the hub, or to one stream), within the overlap re-read
/// below the highest.
#[derive(Default)]
pub struct Sent {
    high: i64,
    ids: BTreeSet<i64>,
}

impl Sent {
    /// Everything up to `id` counts as sent, except late commits within the overlap.
    pub fn starting_at(id: i64) -> Self {
        Self {
            high: id,
            ids: BTreeSet::new(),
        }
    }

    /// Where to read the store again after falling behind: the overlap below the
    /// highest id sent (what is re-read and was sent is skipped).
    pub fn resume_point(&self) -> i64 {
        (self.high - OVERLAP).max(0)
    }

    /// Whether `id` is new (and remembers it). Ids below the overlap are old.
    pub fn first_time(&mut self, id: i64) -> bool {
        if id <= self.high - OVERLAP || !self.ids.insert(id) {
            return false;
        }
        self.high = self.high.max(id);
        let floor = self.high - OVERLAP;
        while self.ids.first().is_some_and(|&oldest| oldest <= floor) {
            self.ids.pop_first();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_sent_once_and_a_late_commit_below_the_newest_still_goes_out() {
        let mut sent = Sent {
            high: 10,
            ..Sent::default()
        };
        // What the start read in the overlap is marked, not sent.
        sent.first_time(10);
        assert!(!sent.first_time(10), "seen at the start");
        assert!(sent.first_time(12));
        assert!(!sent.first_time(12), "sent once");
        // Id 11 committed after 12: read again in the overlap, and new.
        assert!(sent.first_time(11));
        assert!(!sent.first_time(11));
        assert!(sent.first_time(12 + OVERLAP + 5));
        assert!(!sent.first_time(12), "below the overlap now: old");
        assert!(sent.ids.len() <= usize::try_from(OVERLAP).unwrap());
    }
}
