-- Decision webhook outbox. A row is written in the same transaction as the
-- decision it announces, then delivered at least once by the dispatcher.
-- `id` (evt_...) is the Standard Webhooks `webhook-id` and OpenClaw
-- `Idempotency-Key`, the same on every attempt. `body` is the exact JSON
-- sent (never a secret: tokens are added as headers at send time).
--
-- States: pending (due at next_attempt_at) -> delivering (leased to one
-- dispatcher until lease_expires_at; an expired lease means the sender
-- crashed and the row is due again) -> delivered | pending (retry) | dead.
CREATE TABLE webhook_outbox (
  id                TEXT PRIMARY KEY,
  request_id        TEXT NOT NULL REFERENCES requests (id),
  type              TEXT NOT NULL CHECK (type IN ('jit.request.approved', 'jit.request.denied', 'jit.request.timed_out', 'jit.request.revoked', 'jit.request.expired')),
  target            TEXT NOT NULL CHECK (target IN ('openclaw', 'standard')),
  url               TEXT,                  -- NULL only when no URL was configured (row is dead)
  url_source        TEXT NOT NULL CHECK (url_source IN ('config', 'policy')),
  session_key       TEXT,
  body              TEXT NOT NULL,
  state             TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
  attempts          INTEGER NOT NULL DEFAULT 0,
  next_attempt_at   INTEGER NOT NULL,
  lease_owner       TEXT,
  lease_expires_at  INTEGER,
  last_status       INTEGER,
  last_error        TEXT,
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  delivered_at      INTEGER
) STRICT;

-- One event per request and outcome: a decision recorded twice is stored once.
CREATE UNIQUE INDEX webhook_outbox_event ON webhook_outbox (request_id, type);
-- The dispatcher's two queries: due rows, and leases left by a crashed sender.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_lease ON webhook_outbox (lease_expires_at) WHERE state = 'delivering';
-- `jit webhooks list [--dead]`.
CREATE INDEX webhook_outbox_state ON webhook_outbox (state, created_at);
