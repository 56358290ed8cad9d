-- The lifecycle sweep deletes console sessions idle or past their absolute
-- timeout (broker/passkeys.ts prunePasskeyState): through these indexes,
-- never a scan. A WebAuthn challenge is deleted by its use, so its table's
-- prune needs only webauthn_challenges_expires (0019).
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);
CREATE INDEX console_sessions_created ON console_sessions (created_at);
