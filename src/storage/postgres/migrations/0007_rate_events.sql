-- As SQLite's 0021_rate_events.sql: the per-agent rate limit's ledger, one
-- row per request made or policy refusal, numbered per agent, so the limit
-- is one index lookup however busy the agent is. Writers hold the
-- database-wide write lock, so numbering by MAX(seq) + 1 cannot race.
CREATE TABLE rate_events (
  agent_id  TEXT NOT NULL,
  seq       BIGINT NOT NULL,
  at        BIGINT NOT NULL,
  PRIMARY KEY (agent_id, seq)
);

CREATE INDEX rate_events_at ON rate_events (at);

INSERT INTO rate_events (agent_id, seq, at)
  SELECT agent_id, ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY at), at FROM (
    SELECT agent_id, created_at AS at FROM requests
    UNION ALL SELECT agent_id, at FROM agent_refusals) t
  WHERE at > (SELECT MAX(at) FROM (SELECT MAX(created_at) AS at FROM requests UNION ALL SELECT MAX(at) FROM agent_refusals) m) - 60000;

-- agent_refusals stays, unused by this version, so that a broker of the
-- previous version still running on this database (a rolling restart,
-- docs/operations.md) keeps working; a later release drops it.
