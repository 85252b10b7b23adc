-- The loop guard's input: each target's executed automatic actions since a time. An
-- ingest batch's evaluations read them for a hundred targets in one query (issue 19);
-- through actions_target each probe read every action of the target, and at 50,000
-- actions PostgreSQL's planner read every done action by state instead. This index
-- holds only the automatic, executed ones, by target and time.
CREATE INDEX actions_auto_executed ON actions (target, executed_at)
    WHERE mode = 'auto' AND executed_at IS NOT NULL;
