-- The target each alert is about, as the classifier maps it at ingest: the target's
-- key; '*' for an alert about no target (a dependency's); '' for one the classifier
-- ignores; NULL when not mapped (rows older than this migration, or the classifier
-- changed since: they are mapped again at start, and read as unmapped meanwhile).
-- A canary read then loads one target's alerts, not the whole window.
ALTER TABLE alerts ADD COLUMN target TEXT;
-- Firing alerts by target and last delivery (the window's rule for firing ones);
-- resolved ones by target and end (its rule for resolved ones), a partial index that
-- a flood of firing alerts never writes.
CREATE INDEX alerts_target ON alerts (target, status, updated_at);
CREATE INDEX alerts_target_ended ON alerts (target, ends_at) WHERE status = 'resolved';

-- Which classifier mapped the alerts' targets (a fingerprint of its config): one row.
CREATE TABLE alert_mapping (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    classifier TEXT    NOT NULL
);

-- GET /api/v1/decisions/{id} reads a decision's actions and their notifications: by
-- index, not by a scan of every action and notification ever recorded.
CREATE INDEX actions_decision ON actions (decision_id, id);
CREATE INDEX notifications_action ON notifications (action_id, id);
