-- Signed heads of the audit chain (src/broker/audit.ts, signAuditHead): the
-- broker signs the newest entry's (seq, hash) with its Ed25519 key every
-- minute the chain moved and at each shutdown. `jit audit verify` checks
-- every head's signature against the key ring and reports entries missing
-- after the newest valid head, which the hash chain alone cannot see (a
-- chain cut at its end is still a valid chain). A separate table, so rows
-- deleted from audit_log leave their heads behind. Several heads may name
-- one seq (re-signed after a key rotation). Tamper evidence, not prevention:
-- whoever can write the file can also delete heads (docs/security.md).
CREATE TABLE audit_heads (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  seq        INTEGER NOT NULL,
  hash       TEXT NOT NULL,
  at         INTEGER NOT NULL,
  kid        TEXT NOT NULL,
  signature  TEXT NOT NULL
) STRICT;

CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END;

-- Policy refusals (403) of the last minute, per agent: they count toward
-- the per-agent rate limit (JIT_RATE_PER_MINUTE) with the requests created.
-- Bounded: a refusal is recorded only while the agent is under its limit,
-- and rows older than the minute are deleted as new ones come and by the
-- broker's audit upkeep.
CREATE TABLE agent_refusals (
  agent_id  TEXT NOT NULL,
  at        INTEGER NOT NULL
) STRICT;

CREATE INDEX agent_refusals_agent_at ON agent_refusals (agent_id, at);
