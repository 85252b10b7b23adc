-- rollwarden schema, PostgreSQL. Written for the whole design at once so that
-- migrations stay few and deliberate; later features fill the tables.

-- Every accepted inbound payload, kept raw for audit and replay, once per distinct
-- content (re-deliveries only bump duplicate_count).
CREATE TABLE receipts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source           TEXT        NOT NULL, -- alertmanager, flagger, argo, ci, signal
    dedupe_key       TEXT        NOT NULL UNIQUE,
    group_key        TEXT        NOT NULL DEFAULT '',
    body             TEXT        NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    last_received_at TIMESTAMPTZ NOT NULL,
    duplicate_count  BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX receipts_received_at ON receipts (received_at);

-- One row per alert occurrence: (fingerprint, starts_at).
CREATE TABLE alerts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint     TEXT        NOT NULL,
    starts_at       TIMESTAMPTZ NOT NULL,
    ends_at         TIMESTAMPTZ,
    status          TEXT        NOT NULL CHECK (status IN ('firing', 'resolved')),
    alertname       TEXT        NOT NULL,
    labels          JSONB       NOT NULL,
    annotations     JSONB       NOT NULL,
    generator_url   TEXT        NOT NULL DEFAULT '',
    receiver        TEXT        NOT NULL DEFAULT '',
    group_key       TEXT        NOT NULL DEFAULT '',
    first_receipt_id BIGINT     NOT NULL REFERENCES receipts (id),
    last_receipt_id BIGINT      NOT NULL REFERENCES receipts (id),
    first_seen_at   TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (fingerprint, starts_at)
);
CREATE INDEX alerts_alertname ON alerts (alertname, id);
CREATE INDEX alerts_status ON alerts (status, id);
CREATE INDEX alerts_starts_at ON alerts (starts_at);
-- fastupdate off: a pending-list flush would stall one ingest transaction for
-- tens of milliseconds; paying a little on every insert keeps p99 flat.
CREATE INDEX alerts_labels ON alerts USING GIN (labels jsonb_path_ops) WITH (fastupdate = off);

-- Deploy history: Kubernetes rollouts, Helm releases, CI callbacks, canary runs.
-- target is the canonical "cluster/namespace/kind/name".
CREATE TABLE deploys (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    images             JSONB       NOT NULL DEFAULT '[]',
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
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    details            JSONB       NOT NULL DEFAULT '{}',
    receipt_id         BIGINT REFERENCES receipts (id),
    first_seen_at      TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (target, source, revision)
);
CREATE INDEX deploys_target_started ON deploys (target, started_at DESC);
CREATE INDEX deploys_namespace ON deploys (namespace, id);

-- Observations normalised from alerts and callbacks.
CREATE TABLE signals (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target       TEXT,
    kind         TEXT        NOT NULL,
    scope        TEXT        NOT NULL DEFAULT 'any', -- canary, stable, any
    dependency   TEXT,
    value        DOUBLE PRECISION,
    baseline     DOUBLE PRECISION,
    source       TEXT        NOT NULL, -- alert, api, flagger, argo
    fingerprint  TEXT        NOT NULL,
    alert_id     BIGINT REFERENCES alerts (id),
    receipt_id   BIGINT REFERENCES receipts (id),
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    observed_at  TIMESTAMPTZ NOT NULL,
    details      JSONB       NOT NULL DEFAULT '{}',
    UNIQUE (source, fingerprint, started_at)
);
CREATE INDEX signals_target_started ON signals (target, started_at);

-- Every decision the engine recorded, with its evidence.
CREATE TABLE decisions (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target            TEXT        NOT NULL,
    verdict           TEXT        NOT NULL
                      CHECK (verdict IN ('ok', 'monitor', 'investigate', 'hold', 'rollback', 'freeze')),
    reason            TEXT        NOT NULL,
    inputs_hash       TEXT        NOT NULL,
    policy_version    TEXT        NOT NULL,
    suspect_deploy_id BIGINT REFERENCES deploys (id),
    rollback_to_id    BIGINT REFERENCES deploys (id),
    evidence          JSONB       NOT NULL,
    decided_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX decisions_target ON decisions (target, id);
CREATE INDEX decisions_verdict ON decisions (verdict, id);

-- The action outbox: one row per idempotency key, claimed by workers with leases.
CREATE TABLE actions (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decision_id      BIGINT      NOT NULL REFERENCES decisions (id),
    target           TEXT        NOT NULL,
    kind             TEXT        NOT NULL, -- rollout_undo, helm_rollback, workflow_dispatch, command, webhook, freeze
    mode             TEXT        NOT NULL CHECK (mode IN ('observe', 'recommend', 'approve', 'auto')),
    idempotency_key  TEXT        NOT NULL UNIQUE,
    state            TEXT        NOT NULL,
    params           JSONB       NOT NULL DEFAULT '{}',
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    approved_by      TEXT,
    approval_comment TEXT,
    expires_at       TIMESTAMPTZ,
    executed_at      TIMESTAMPTZ, -- when the executor carried it out (loop guard)
    result           JSONB,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX actions_claim ON actions (state, next_attempt_at);
CREATE INDEX actions_target ON actions (target, id);

-- Outbound notifications (Slack, webhooks) and how their delivery went.
CREATE TABLE notifications (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id    BIGINT REFERENCES actions (id),
    decision_id  BIGINT REFERENCES decisions (id),
    channel      TEXT        NOT NULL,
    payload      JSONB       NOT NULL,
    status       TEXT        NOT NULL,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ
);

-- Deployment freezes (M8) that the canary gates honour.
CREATE TABLE freezes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope       TEXT        NOT NULL, -- a target, a namespace prefix, or '*'
    reason      TEXT        NOT NULL,
    created_by  TEXT        NOT NULL,
    decision_id BIGINT REFERENCES decisions (id),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ,
    lifted_at   TIMESTAMPTZ,
    lifted_by   TEXT
);
CREATE INDEX freezes_active ON freezes (scope) WHERE lifted_at IS NULL;

-- Who did what and when: approvals, rejections, freezes, executions.
CREATE TABLE audit_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT        NOT NULL,
    kind    TEXT        NOT NULL,
    subject TEXT        NOT NULL,
    details JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
