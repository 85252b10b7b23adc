-- Where a chat channel keeps a decision's messages: the Slack app posts one message per
-- decision and threads every later one under it, updating it in place. The first
-- delivery records the thread; later ones find it here. One row per decision and
-- channel: two senders racing to open it keep the first.
CREATE TABLE message_threads (
    decision_id  INTEGER     NOT NULL REFERENCES decisions (id),
    channel      TEXT        NOT NULL,
    conversation TEXT        NOT NULL,
    thread_ts    TEXT        NOT NULL,
    created_at   TEXT        NOT NULL,
    PRIMARY KEY (decision_id, channel)
);
