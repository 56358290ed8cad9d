-- Operator commands act with the service's settings (SPEC §10).
--
-- 1. `service_settings`: the running service's effective, non-secret
--    settings (claim window, approval timeout, tier-3 quorum, public URL,
--    policy directory, whether OpenClaw is configured), written by
--    `jit serve` at every start. `jit approve` / `jit deny` (and every
--    decision the CLI makes) read them, so a decision from a shell with only
--    JIT_DB set fixes the same claim deadline as one made in Telegram. One
--    row: one service per database. No secret is ever stored here (no
--    token, no key, no URL credentials).
CREATE TABLE service_settings (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  settings     TEXT NOT NULL,              -- JSON, see src/config/service-settings.ts
  recorded_at  INTEGER NOT NULL,
  pid          INTEGER NOT NULL
) STRICT;

-- 2. What an outbox row's `body` holds. 'rendered' (every row written before
--    this migration): the exact bytes to send, delivered as they are.
--    'facts': the event's facts (request, outcome, grant, claim deadline,
--    the policy's OpenClaw agentId/sessionMode); the dispatcher, inside the
--    service, renders the body from them with the service's JIT_PUBLIC_URL
--    at delivery, and resolves OPENCLAW_HOOKS_URL and its token then too.
--    Neither form ever holds a secret.
ALTER TABLE webhook_outbox ADD COLUMN body_format TEXT NOT NULL DEFAULT 'rendered' CHECK (body_format IN ('rendered', 'facts'));
