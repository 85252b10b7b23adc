-- rollwarden schema, SQLite. Timestamps are UTC text in one fixed format
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so that text order is time order; JSON is text.
-- Mirrors migrations/postgres. Written for the whole design at once so that
-- migrations stay few and deliberate; later features fill the tables.

-- Every accepted inbound payload, kept raw for audit and replay, once per distinct
-- content (re-deliveries only bump duplicate_count).
CREATE TABLE receipts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    source           TEXT        NOT NULL, -- alertmanager, flagger, argo, ci, signal
    dedupe_key       TEXT        NOT NULL UNIQUE,
    group_key        TEXT        NOT NULL DEFAULT '',
    body             TEXT        NOT NULL,
    received_at      TEXT        NOT NULL,
    last_received_at TEXT        NOT NULL,
    duplicate_count  INTEGER      NOT NULL DEFAULT 0
);
CREATE INDEX receipts_received_at ON receipts (received_at);

-- One row per alert occurrence: (fingerprint, starts_at).
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint     TEXT        NOT NULL,
    starts_at       TEXT        NOT NULL,
    ends_at         TEXT       ,
    status          TEXT        NOT NULL CHECK (status IN ('firing', 'resolved')),
    alertname       TEXT        NOT NULL,
    labels          TEXT        NOT NULL,
    annotations     TEXT        NOT NULL,
    generator_url   TEXT        NOT NULL DEFAULT '',
    receiver        TEXT        NOT NULL DEFAULT '',
    group_key       TEXT        NOT NULL DEFAULT '',
    first_receipt_id INTEGER     NOT NULL REFERENCES receipts (id),
    last_receipt_id INTEGER      NOT NULL REFERENCES receipts (id),
    first_seen_at   TEXT        NOT NULL,
    updated_at      TEXT        NOT NULL,
    UNIQUE (fingerprint, starts_at)
);
CREATE INDEX alerts_alertname ON alerts (alertname, id);
CREATE INDEX alerts_status ON alerts (status, id);
CREATE INDEX alerts_starts_at ON alerts (starts_at);

-- Deploy history: Kubernetes rollouts, Helm releases, CI callbacks, canary runs.
-- target is the canonical "cluster/namespace/kind/name".
CREATE TABLE deploys (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    target             TEXT        NOT NULL,
    cluster            TEXT        NOT NULL DEFAULT '',
    namespace          TEXT        NOT NULL,
    kind               TEXT        NOT NULL,
    name               TEXT        NOT NULL,
    source             TEXT        NOT NULL, -- kubernetes, helm, ci, flagger, argo
    revision           TEXT        NOT NULL,
    status             TEXT        NOT NULL,
    environment        TEXT,
    region             TEXT,
    version            TEXT,
    images             TEXT        NOT NULL DEFAULT '[]',
    commit_sha         TEXT,
    change_cause       TEXT,
    description        TEXT,
    helm_release       TEXT,
    chart              TEXT,
    chart_version      TEXT,
    app_version        TEXT,
    pod_template_hash  TEXT,
    link               TEXT,
    actor              TEXT,
    started_at         TEXT        NOT NULL,
    finished_at        TEXT       ,
    details            TEXT        NOT NULL DEFAULT '{}',
    receipt_id         INTEGER REFERENCES receipts (id),
    first_seen_at      TEXT        NOT NULL,
    updated_at         TEXT        NOT NULL,
    UNIQUE (target, source, revision)
);
CREATE INDEX deploys_target_started ON deploys (target, started_at DESC);
CREATE INDEX deploys_namespace ON deploys (namespace, id);

-- Observations normalised from alerts and callbacks.
CREATE TABLE signals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT,
    kind         TEXT        NOT NULL,
    scope        TEXT        NOT NULL DEFAULT 'any', -- canary, stable, any
    dependency   TEXT,
    value        REAL,
    baseline     REAL,
    source       TEXT        NOT NULL, -- alert, api, flagger, argo
    fingerprint  TEXT        NOT NULL,
    alert_id     INTEGER REFERENCES alerts (id),
    receipt_id   INTEGER REFERENCES receipts (id),
    started_at   TEXT        NOT NULL,
    ended_at     TEXT       ,
    observed_at  TEXT        NOT NULL,
    details      TEXT        NOT NULL DEFAULT '{}',
    UNIQUE (source, fingerprint, started_at)
);
CREATE INDEX signals_target_started ON signals (target, started_at);

-- Every decision the engine recorded, with its evidence.
CREATE TABLE decisions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    target            TEXT        NOT NULL,
    verdict           TEXT        NOT NULL
                      CHECK (verdict IN ('ok', 'monitor', 'investigate', 'hold', 'rollback', 'freeze')),
    reason            TEXT        NOT NULL,
    inputs_hash       TEXT        NOT NULL,
    policy_version    TEXT        NOT NULL,
    suspect_deploy_id INTEGER REFERENCES deploys (id),
    rollback_to_id    INTEGER REFERENCES deploys (id),
    evidence          TEXT        NOT NULL,
    decided_at        TEXT        NOT NULL
);
CREATE INDEX decisions_target ON decisions (target, id);
CREATE INDEX decisions_verdict ON decisions (verdict, id);

-- The action outbox: one row per idempotency key, claimed by workers with leases.
CREATE TABLE actions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id      INTEGER      NOT NULL REFERENCES decisions (id),
    target           TEXT        NOT NULL,
    kind             TEXT        NOT NULL, -- rollout_undo, helm_rollback, workflow_dispatch, command, webhook, freeze
    mode             TEXT        NOT NULL CHECK (mode IN ('observe', 'recommend', 'approve', 'auto')),
    idempotency_key  TEXT        NOT NULL UNIQUE,
    state            TEXT        NOT NULL,
    params           TEXT        NOT NULL DEFAULT '{}',
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TEXT       ,
    lease_owner      TEXT,
    lease_expires_at TEXT       ,
    approved_by      TEXT,
    approval_comment TEXT,
    expires_at       TEXT       ,
    executed_at      TEXT       , -- when the executor carried it out (loop guard)
    result           TEXT,
    last_error       TEXT,
    created_at       TEXT        NOT NULL,
    updated_at       TEXT        NOT NULL
);
CREATE INDEX actions_claim ON actions (state, next_attempt_at);
CREATE INDEX actions_target ON actions (target, id);

-- Outbound notifications (Slack, webhooks) and how their delivery went.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id    INTEGER REFERENCES actions (id),
    decision_id  INTEGER REFERENCES decisions (id),
    channel      TEXT        NOT NULL,
    payload      TEXT        NOT NULL,
    status       TEXT        NOT NULL,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   TEXT        NOT NULL,
    delivered_at TEXT       
);

-- Deployment freezes (M8) that the canary gates honour.
CREATE TABLE freezes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT        NOT NULL, -- a target, a namespace prefix, or '*'
    reason      TEXT        NOT NULL,
    created_by  TEXT        NOT NULL,
    decision_id INTEGER REFERENCES decisions (id),
    created_at  TEXT        NOT NULL,
    expires_at  TEXT       ,
    lifted_at   TEXT       ,
    lifted_by   TEXT
);
CREATE INDEX freezes_active ON freezes (scope) WHERE lifted_at IS NULL;

-- Who did what and when: approvals, rejections, freezes, executions.
CREATE TABLE audit_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT        NOT NULL,
    actor   TEXT        NOT NULL,
    kind    TEXT        NOT NULL,
    subject TEXT        NOT NULL,
    details TEXT        NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
