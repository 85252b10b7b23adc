-- The lists read through an index at 100,000 alerts and 100,000 decisions (issue 19):
-- each filter and its newest-first order. The decisions of a time range
-- (GET /api/v1/decisions?since=…&until=…) by decision time; the list sorts their ids.
CREATE INDEX decisions_decided ON decisions (decided_at, id);
-- GET /api/v1/deploys, newest first by start: the first page is the index's last
-- entries, a later one starts at its cursor (started_at, id). Filtered by name or
-- namespace, the same order within it (the namespace's index was in id order, so a
-- namespace's every deploy was read and sorted).
CREATE INDEX deploys_started ON deploys (started_at, id);
CREATE INDEX deploys_name ON deploys (name, started_at, id);
DROP INDEX deploys_namespace;
CREATE INDEX deploys_namespace ON deploys (namespace, started_at, id);

-- Each target's standing (latest) decision, kept as decisions are inserted: the console's
-- Now page, GET /api/v1/targets and the engine's unsettled targets read one row per
-- target here instead of finding the latest of every target's decisions (all 100,000
-- of them with MAX(id) … GROUP BY target). A trigger keeps it, as on PostgreSQL.
CREATE TABLE target_decisions (
    target      TEXT    PRIMARY KEY,
    decision_id INTEGER NOT NULL REFERENCES decisions (id)
);
INSERT INTO target_decisions (target, decision_id)
    SELECT target, MAX(id) FROM decisions GROUP BY target;
CREATE TRIGGER decisions_stand AFTER INSERT ON decisions
BEGIN
    INSERT INTO target_decisions (target, decision_id) VALUES (NEW.target, NEW.id)
    ON CONFLICT (target) DO UPDATE SET decision_id = excluded.decision_id
        WHERE target_decisions.decision_id < excluded.decision_id;
END;
