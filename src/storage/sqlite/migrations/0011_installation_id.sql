-- The installation's id: 16 random hex digits, made once, when this database
-- is created or upgraded, and shared by every broker process using it. Vault
-- policies the broker writes are named `jit-<installation id>-…`
-- (src/broker/vault-grant.ts), so that two installations sharing one Vault
-- (production and staging, say) never take each other's policies for strays.
INSERT INTO settings (key, value) VALUES ('installation_id', lower(hex(randomblob(8)))) ON CONFLICT (key) DO NOTHING;

-- Shared grant policies get new names (the installation prefix instead of
-- `jit-req_`): none of the new names has been written to Vault yet.
UPDATE grant_policies SET written = 0;

-- Reconciliation asks whether this database ever named a policy of the old
-- shared `jit-req_` prefix (only those it deletes), one lookup per policy.
-- Only rows from before this migration have such names, so the index stays
-- as it is; the policy-holder count keeps its own index.
CREATE INDEX credentials_legacy_policy ON credentials (vault_policy) WHERE substr(vault_policy, 1, 8) = 'jit-req_';
