-- The per-agent rate limit's ledger (JIT_RATE_PER_MINUTE): one row per event
-- that counts toward it, a request made or a policy refusal, numbered per
-- agent in the order they were recorded. "Has the agent made n in the last
-- minute?" is then one lookup, the agent's n-th newest row by number,
-- however busy the agent is. Before, the limit walked up to n index entries
-- of requests and agent_refusals per request: 5 ms a request for an agent
-- at a limit of 100,000 a minute (docs/benchmarks.md, issue 22).
-- Rows are pruned by the broker's audit upkeep five minutes after the fact
-- (a margin for brokers whose clocks disagree: broker/audit-upkeep.ts).
CREATE TABLE rate_events (
  agent_id  TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  at        INTEGER NOT NULL,
  PRIMARY KEY (agent_id, seq)
) STRICT;

CREATE INDEX rate_events_at ON rate_events (at);

-- The last minute's events carry over (the minute before the newest
-- request or refusal: no clock is read here), numbered in time order.
INSERT INTO rate_events (agent_id, seq, at)
  SELECT agent_id, ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY at), at FROM (
    SELECT agent_id, created_at AS at FROM requests
    UNION ALL SELECT agent_id, at FROM agent_refusals)
  WHERE at > (SELECT MAX(at) FROM (SELECT MAX(created_at) AS at FROM requests UNION ALL SELECT MAX(at) FROM agent_refusals)) - 60000;

-- agent_refusals stays, unused by this version, so that a broker of the
-- previous version still running on this database (a rolling restart,
-- docs/operations.md) keeps working; a later release drops it.
