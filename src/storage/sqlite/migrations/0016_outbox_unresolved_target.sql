-- A decision event whose webhook target is not known when it is written:
-- target 'unresolved'. `jit requests revoke` / `jit agent remove` revoke even
-- when the policy files are invalid (stopping access must not wait for a
-- policy fix), and the agent's webhook entry lives in those files. The row
-- then holds the event's facts with no URL (url_source 'config': the
-- service's configuration decides); the service's dispatcher addresses it
-- from the policy it has loaded (the agent's `webhook`), or drops it when
-- the agent has none, as it would have been written then.
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt
-- with the same columns, rows and indexes.
CREATE TABLE webhook_outbox_new (
  id                TEXT PRIMARY KEY,
  request_id        TEXT NOT NULL REFERENCES requests (id),
  type              TEXT NOT NULL CHECK (type IN ('jit.request.approved', 'jit.request.denied', 'jit.request.timed_out', 'jit.request.revoked', 'jit.request.expired')),
  target            TEXT NOT NULL CHECK (target IN ('openclaw', 'standard', 'unresolved')),
  url               TEXT,
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
  delivered_at      INTEGER,
  body_format       TEXT NOT NULL DEFAULT 'rendered' CHECK (body_format IN ('rendered', 'facts')),
  CHECK (target != 'unresolved' OR (url IS NULL AND url_source = 'config' AND body_format = 'facts'))
) STRICT;

INSERT INTO webhook_outbox_new (id, request_id, type, target, url, url_source, session_key, body, state, attempts, next_attempt_at,
  lease_owner, lease_expires_at, last_status, last_error, created_at, updated_at, delivered_at, body_format)
SELECT id, request_id, type, target, url, url_source, session_key, body, state, attempts, next_attempt_at,
  lease_owner, lease_expires_at, last_status, last_error, created_at, updated_at, delivered_at, body_format
FROM webhook_outbox;

DROP TABLE webhook_outbox;
ALTER TABLE webhook_outbox_new RENAME TO webhook_outbox;

CREATE UNIQUE INDEX webhook_outbox_event ON webhook_outbox (request_id, type);
CREATE INDEX webhook_outbox_lease ON webhook_outbox (lease_expires_at) WHERE state = 'delivering';
CREATE INDEX webhook_outbox_state ON webhook_outbox (state, created_at);
CREATE INDEX webhook_outbox_target_due ON webhook_outbox (url, next_attempt_at) WHERE state = 'pending';
-- The dispatcher looks for rows to address on every claim: one index seek, nothing found nearly always.
CREATE INDEX webhook_outbox_unresolved ON webhook_outbox (created_at) WHERE target = 'unresolved';
