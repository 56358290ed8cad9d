-- Ephemeral Vault policies shared by identical grants (src/broker/vault-grant.ts).
-- A Vault credential's ACL policy is named by the SHA-256 of its canonical
-- JSON and a generation: `jit-req_grant-<hash>-<generation>`. Every live
-- token with the same grant is bound to the current generation, so a
-- repeated grant costs one Vault call (token create) instead of two. The
-- references are the credential rows themselves (states minting, live,
-- ending name the policy in `vault_policy`); the policy is deleted with its
-- last one. Deleting retires the generation first, in the same transaction
-- that saw no other holder, so a new credential never picks up a policy
-- that is being deleted: it gets the next generation and writes it anew.
CREATE TABLE grant_policies (
  grant_hash  TEXT PRIMARY KEY,   -- sha256 hex of the policy's canonical JSON
  generation  INTEGER NOT NULL,   -- current generation; bumped when retired
  written     INTEGER NOT NULL DEFAULT 0 CHECK (written IN (0, 1)),  -- the current generation was written to Vault, at updated_at
  updated_at  INTEGER NOT NULL    -- (a write older than a minute is repeated, so a Vault that lost the policy gets it back)
) STRICT;

-- Who still holds a Vault policy (reference count of a shared policy).
CREATE INDEX credentials_policy_holders ON credentials (vault_policy) WHERE state IN ('minting', 'live', 'ending');

-- The pending-requests limit, counted on every tier-2/3 request.
CREATE INDEX requests_agent_pending ON requests (agent_id) WHERE status = 'pending';
