-- Approvers as people (SPEC §12): the approver, their one-time enrolment
-- links, passkeys (WebAuthn credentials) and console sessions. A removed
-- approver's row stays (removed_at set) so the votes and audit entries
-- made as `approver:<id>` keep naming someone; names and Telegram ids are
-- unique among approvers not removed. Secrets are never stored: an
-- enrolment token and a session id are kept as hashes only.
CREATE TABLE approvers (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  telegram_id  TEXT,
  created_at   INTEGER NOT NULL,
  removed_at   INTEGER
) STRICT;
CREATE UNIQUE INDEX approvers_name_active ON approvers (name) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX approvers_telegram_active ON approvers (telegram_id) WHERE removed_at IS NULL AND telegram_id IS NOT NULL;

CREATE TABLE enrolment_tokens (
  token_hash   TEXT PRIMARY KEY,
  approver_id  TEXT NOT NULL REFERENCES approvers (id),
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  used_at      INTEGER
) STRICT;
CREATE INDEX enrolment_tokens_approver ON enrolment_tokens (approver_id);

CREATE TABLE passkeys (
  id            TEXT PRIMARY KEY,
  approver_id   TEXT NOT NULL REFERENCES approvers (id),
  public_key    TEXT NOT NULL,
  sign_count    INTEGER NOT NULL,
  transports    TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  last_used_at  INTEGER
) STRICT;
CREATE INDEX passkeys_approver ON passkeys (approver_id);

CREATE TABLE console_sessions (
  id_hash       TEXT PRIMARY KEY,
  approver_id   TEXT NOT NULL REFERENCES approvers (id),
  created_at    INTEGER NOT NULL,
  last_seen_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_approver ON console_sessions (approver_id);
