-- WebAuthn challenges (SPEC §12): one row per ceremony the broker began
-- (enrolment, sign-in, step-up), used at most once and only before it
-- expires (using it deletes it). Only the challenge's hash is stored; a step-up challenge also
-- carries the approver it was made for and the hash of the action it is
-- bound to (broker/passkeys.ts).
CREATE TABLE webauthn_challenges (
  challenge_hash  TEXT PRIMARY KEY,
  purpose         TEXT NOT NULL CHECK (purpose IN ('enrol', 'sign-in', 'step-up')),
  approver_id     TEXT,
  action_hash     TEXT,
  created_at      INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at);
