-- Agents: bearer tokens are stored only as SHA-256 hashes, looked up by a
-- non-secret token id embedded in the token itself.
CREATE TABLE agents (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  token_id      TEXT NOT NULL UNIQUE,
  token_hash    TEXT NOT NULL,
  session_key   TEXT,
  created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE requests (
  id                  TEXT PRIMARY KEY,
  agent_id            TEXT NOT NULL,
  agent_name          TEXT NOT NULL,
  resource            TEXT NOT NULL CHECK (resource IN ('vault', 'gate')),
  tier                INTEGER NOT NULL CHECK (tier IN (1, 2, 3)),
  required_tier       INTEGER NOT NULL CHECK (required_tier IN (1, 2, 3)),
  status              TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'issued', 'denied', 'timed_out', 'expired', 'revoked', 'failed')),
  reason              TEXT NOT NULL,
  scope               TEXT NOT NULL,          -- JSON: {vault_paths} or {repo, refs}
  ttl_seconds         INTEGER NOT NULL,
  session_key         TEXT,
  rules               TEXT NOT NULL,          -- JSON array of rule names used
  idempotency_key     TEXT,
  body_hash           TEXT,
  created_at          INTEGER NOT NULL,
  updated_at          INTEGER NOT NULL,
  approval_expires_at INTEGER,
  claim_expires_at    INTEGER,
  decided_by          TEXT,
  decided_at          INTEGER,
  decision_reason     TEXT,
  failure             TEXT
) STRICT;

CREATE UNIQUE INDEX requests_idempotency ON requests (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_agent_created ON requests (agent_id, created_at);
CREATE INDEX requests_pending_expiry ON requests (approval_expires_at) WHERE status = 'pending';
CREATE INDEX requests_approved_expiry ON requests (claim_expires_at) WHERE status = 'approved';
CREATE INDEX requests_status ON requests (status, created_at);

-- Only identifiers are kept (accessor, policy name, jti), never the secret.
-- States: minting (Vault calls under way), live, ending (revocation under
-- way), ended; a mint that failed is abandoned until its policy is deleted
-- from Vault, then failed.
CREATE TABLE credentials (
  id            TEXT PRIMARY KEY,
  request_id    TEXT NOT NULL REFERENCES requests (id),
  type          TEXT NOT NULL CHECK (type IN ('vault_token', 'gate_push')),
  state         TEXT NOT NULL CHECK (state IN ('minting', 'live', 'ending', 'ended', 'abandoned', 'failed')),
  vault_policy  TEXT,
  accessor      TEXT,
  jti           TEXT,
  issued_at     INTEGER,
  expires_at    INTEGER NOT NULL,
  ended_at      INTEGER,
  end_reason    TEXT
) STRICT;

-- At most one credential per request that is not a failed attempt: a second
-- issue of the same request cannot even be inserted.
CREATE UNIQUE INDEX credentials_one_per_request ON credentials (request_id) WHERE state NOT IN ('abandoned', 'failed');
CREATE INDEX credentials_request ON credentials (request_id);
CREATE INDEX credentials_live_expiry ON credentials (expires_at) WHERE state = 'live';
CREATE INDEX credentials_unsettled ON credentials (state) WHERE state IN ('minting', 'ending', 'abandoned');

-- Append-only audit log, hash-chained: hash = sha256(prev_hash || canonical entry).
CREATE TABLE audit_log (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  at          INTEGER NOT NULL,
  event       TEXT NOT NULL,
  actor       TEXT NOT NULL,
  request_id  TEXT,
  data        TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
) STRICT;

CREATE INDEX audit_request ON audit_log (request_id) WHERE request_id IS NOT NULL;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
