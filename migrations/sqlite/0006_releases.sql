-- Multi-region releases (domain::release). Where a release regressed is read from the
-- decisions that blamed one of its deploys: by suspect deploy.
CREATE INDEX decisions_suspect ON decisions (suspect_deploy_id)
    WHERE suspect_deploy_id IS NOT NULL;

-- A release's own decisions: the first regression (scope 'region') and the moment it
-- regressed in enough regions to roll every region back ('all_regions'). One row per
-- release and scope, ever: two replicas racing to record it keep the first, and only
-- the one that recorded it announces it.
CREATE TABLE release_decisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    release      TEXT        NOT NULL,
    scope        TEXT        NOT NULL CHECK (scope IN ('region', 'all_regions')),
    decision_id  INTEGER     NOT NULL REFERENCES decisions (id),
    decided_at   TEXT        NOT NULL,
    body         TEXT        NOT NULL,
    UNIQUE (release, scope)
);
