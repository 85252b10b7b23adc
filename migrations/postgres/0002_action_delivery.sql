-- Actions and notifications as the worker runs them.
--
-- `resumed`: set when a worker claims an action whose previous worker lost its lease
-- mid-attempt. Executors that cannot look at the world first (a workflow dispatch, a
-- command, a webhook) then stop and escalate instead of acting a second time.
ALTER TABLE actions ADD COLUMN resumed BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX actions_state ON actions (state, id);

-- Notifications are an outbox of their own: one row per (event, channel), delivered by
-- the workers with the same lease and retry scheme as actions.
ALTER TABLE notifications ADD COLUMN idempotency_key TEXT;
ALTER TABLE notifications ADD COLUMN event TEXT NOT NULL DEFAULT 'announce';
ALTER TABLE notifications ADD COLUMN next_attempt_at TIMESTAMPTZ;
ALTER TABLE notifications ADD COLUMN lease_owner TEXT;
ALTER TABLE notifications ADD COLUMN lease_expires_at TIMESTAMPTZ;
ALTER TABLE notifications ADD COLUMN response TEXT;
CREATE UNIQUE INDEX notifications_key ON notifications (idempotency_key);
CREATE INDEX notifications_claim ON notifications (status, next_attempt_at);
CREATE INDEX notifications_decision ON notifications (decision_id, id);
