-- WebAuthn challenges (SPEC §12), as SQLite's 0019_webauthn_challenges.sql:
-- one row per ceremony begun (enrolment, sign-in, step-up), used at most
-- once (using it deletes it) and only before it expires. Only the challenge's hash is stored.
CREATE TABLE webauthn_challenges (
  challenge_hash  TEXT COLLATE "C" PRIMARY KEY,
  purpose         TEXT NOT NULL CHECK (purpose IN ('enrol', 'sign-in', 'step-up')),
  approver_id     TEXT COLLATE "C",
  action_hash     TEXT,
  created_at      BIGINT NOT NULL,
  expires_at      BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at);
