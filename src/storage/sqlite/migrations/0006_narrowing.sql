-- Approve with narrowing (docs/narrowing.md): an approver may grant less
-- than a request asked for.
--
-- What was granted, written by decideRequest in the transaction that
-- approves the request (same JSON shape as `scope`). NULL for requests
-- approved as asked before this migration and for tier-1 requests: those
-- were granted their own scope and ttl_seconds. Minting reads these first.
ALTER TABLE requests ADD COLUMN granted_scope TEXT;
ALTER TABLE requests ADD COLUMN granted_ttl_seconds INTEGER;

-- What each approve vote approved (tier 3 folds them: a later approver can
-- only narrow what earlier votes approved). NULL on deny votes.
ALTER TABLE votes ADD COLUMN grant_scope TEXT;
ALTER TABLE votes ADD COLUMN grant_ttl_seconds INTEGER;

-- The Telegram narrowing panel of a pending request: the choice approvers
-- are composing, kept here because callback data is limited to 64 bytes.
-- Buttons carry only `g:<id>:<action>`; `id` is random, one per opened
-- panel, and bound to one request, so a button can never act on another
-- request and an old panel's buttons stop working once it is closed.
-- `version` goes up with every change; the approve button names the version
-- it was drawn with, so nobody approves a grant other than the one shown.
CREATE TABLE telegram_narrowing (
  id           TEXT PRIMARY KEY,
  request_id   TEXT NOT NULL UNIQUE,
  -- JSON {ttlSeconds?, dropCapabilities[], dropPaths[], dropRefs[]}, relative to the request.
  narrowing    TEXT NOT NULL,
  version      INTEGER NOT NULL DEFAULT 1,
  opened_by    TEXT NOT NULL,
  updated_by   TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
) STRICT;
