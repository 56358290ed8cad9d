-- Several brokers on one database (docs/architecture.md, "Several brokers on
-- one database").
--
-- `leases`: named, expiring leases, one holder each. A serving broker holds
-- `node:<its node id>` and renews it on a timer; the Telegram bot's leader
-- holds `telegram:leader`. Taking or renewing one is a single conditional
-- upsert (free, expired, or already ours), so of racing callers exactly one
-- holds it. Times are ms since the epoch, from the writer's clock.
CREATE TABLE leases (
  name        TEXT PRIMARY KEY,
  holder      TEXT NOT NULL,
  expires_at  INTEGER NOT NULL,
  acquired_at INTEGER NOT NULL
) STRICT;

-- The node (broker process) that reserved a credential row. A `minting` row
-- is settled as interrupted only when provably dead: its node's lease has
-- expired or is gone, or it is older than the stale-mint bound. NULL on rows
-- from before this migration and from processes without a node: only the
-- bound applies to them.
ALTER TABLE credentials ADD COLUMN node_id TEXT;

-- The node that created a request. A tier-1 request approved by policy and
-- committed without its credential row (a gate credential is signed and
-- recorded in a second transaction) is settled as interrupted by the same
-- rule as a `minting` row.
ALTER TABLE requests ADD COLUMN node_id TEXT;
