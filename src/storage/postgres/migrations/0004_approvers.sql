-- Approvers as people (SPEC §12), as SQLite's 0018_approvers.sql: the
-- approver, their one-time enrolment links, passkeys (WebAuthn
-- credentials) and console sessions. A removed approver's row stays
-- (removed_at set) so votes and audit entries made as `approver:<id>` keep
-- naming someone; names and Telegram ids are unique among approvers not
-- removed. An enrolment token and a session id are kept as hashes only.
CREATE TABLE approvers (
  id           TEXT COLLATE "C" PRIMARY KEY,
  name         TEXT COLLATE "C" NOT NULL,
  telegram_id  TEXT COLLATE "C",
  created_at   BIGINT NOT NULL,
  removed_at   BIGINT
);
CREATE UNIQUE INDEX approvers_name_active ON approvers (name) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX approvers_telegram_active ON approvers (telegram_id) WHERE removed_at IS NULL AND telegram_id IS NOT NULL;

CREATE TABLE enrolment_tokens (
  token_hash   TEXT COLLATE "C" PRIMARY KEY,
  approver_id  TEXT NOT NULL REFERENCES approvers (id),
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT NOT NULL,
  used_at      BIGINT
);
CREATE INDEX enrolment_tokens_approver ON enrolment_tokens (approver_id);

CREATE TABLE passkeys (
  id            TEXT COLLATE "C" PRIMARY KEY,
  approver_id   TEXT NOT NULL REFERENCES approvers (id),
  public_key    TEXT NOT NULL,
  sign_count    BIGINT NOT NULL,
  transports    TEXT NOT NULL,
  created_at    BIGINT NOT NULL,
  last_used_at  BIGINT
);
CREATE INDEX passkeys_approver ON passkeys (approver_id);

CREATE TABLE console_sessions (
  id_hash       TEXT COLLATE "C" PRIMARY KEY,
  approver_id   TEXT NOT NULL REFERENCES approvers (id),
  created_at    BIGINT NOT NULL,
  last_seen_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_approver ON console_sessions (approver_id);
