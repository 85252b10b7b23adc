-- GET /api/v1/alerts?label=name=value (and the console's alert list) on SQLite read
-- every alert's labels, newest first, until a page was full: for a label that 200 of
-- 100,000 alerts carry, the whole table, 33.9 ms p99 (issue 19, goal 5). PostgreSQL
-- answers from its GIN index on labels.
--
-- label_sig is a 64-bit signature of an alert's labels (two bits per label, from
-- SHA-256 of the name and value: src/store/sqlite.rs), and alerts_label_sig keeps it
-- beside each id in id order: a label list walks this narrow index newest first, tests
-- each signature against the labels asked for, and reads only the rows whose
-- signature holds their bits (a rare false match is then dropped by the labels
-- themselves). The index is appended to in id order, one page per commit: a table of
-- (name, value, alert) rows was measured first and cost ingest 35 % (a page written
-- per label value per commit).
ALTER TABLE alerts ADD COLUMN label_sig INTEGER;
CREATE INDEX alerts_label_sig ON alerts (id, label_sig);
-- The rows written before this migration (or by hand) have none: Store::maintain signs
-- them a batch at a time, finding them here; until then a label list reads their labels.
-- Ingest writes the signature, so this index holds nothing once they are signed.
CREATE INDEX alerts_unsigned ON alerts (id) WHERE label_sig IS NULL;
