-- The few fields of a decision that a list of every target shows (region,
-- environment, the rule ids fired and pending, suspect and rollback versions, since
-- when), named as in the evidence: the console's Now page and GET /api/v1/targets read
-- this small document instead of every standing decision's whole evidence (3 KB and
-- more each). NULL on rows older than this migration, which are read from the evidence.
ALTER TABLE decisions ADD COLUMN brief TEXT;
