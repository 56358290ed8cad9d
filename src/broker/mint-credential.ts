import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import type { RequestRow, VaultScope } from './repository.ts';
import { ephemeralPolicyName, renderVaultPolicy } from './vault-grant.ts';
import { vaultUnavailable } from './vault-errors.ts';

export interface VaultTokenCredential {
  type: 'vault_token';
  token: string;
  accessor: string;
  policies: string[];
  expires_at: string;
}

export type MintOutcome = { ok: true; credential: VaultTokenCredential } | { ok: false; error: BrokerError };

/**
 * Issues the credential of an `approved` request, at most once.
 *
 * 1. One transaction inserts a `minting` credential row; a unique index on
 *    live rows per request makes a racing second mint fail right here.
 * 2. Vault: write the ephemeral policy, then create an orphan,
 *    non-renewable token bound to it whose explicit max TTL is the grant.
 * 3. One transaction marks the row live and the request issued.
 *
 * If Vault fails in step 2 the policy is deleted again and the row
 * abandoned (the reaper finishes the deletion if Vault is still down), so
 * nothing half-issued outlives the call. A crash between 1 and 3 leaves a
 * `minting` row that startup reconciliation cleans up the same way.
 */
export async function mintVaultCredential(deps: BrokerDeps, request: RequestRow): Promise<MintOutcome> {
  const { repo, audit, vault, clock, ids, log, db } = deps;
  const policyName = ephemeralPolicyName(request.id);
  const credentialId = ids.next('cred');
  const startedAt = clock.now();

  try {
    db.transaction(() => {
      const current = repo.getRequest(request.id);
      if (current?.status !== 'approved') throw new BrokerError('CONFLICT', `request ${request.id} is ${current?.status ?? 'gone'}, not approved`);
      repo.insertCredential({
        id: credentialId,
        request_id: request.id,
        type: 'vault_token',
        state: 'minting',
        vault_policy: policyName,
        accessor: null,
        jti: null,
        issued_at: null,
        expires_at: startedAt + request.ttl_seconds * 1000,
      });
    })();
  } catch (err) {
    if (err instanceof BrokerError) return { ok: false, error: err };
    if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
      return { ok: false, error: new BrokerError('CONFLICT', `the credential of request ${request.id} has already been issued`) };
    }
    throw err;
  }

  const scope = JSON.parse(request.scope) as VaultScope;
  let created;
  try {
    await vault.writePolicy(policyName, renderVaultPolicy(scope));
    created = await vault.createOrphanToken({
      policies: [policyName],
      ttlSeconds: request.ttl_seconds,
      displayName: `jit-${request.agent_name}`,
      meta: { jit_request_id: request.id, jit_agent: request.agent_name },
    });
  } catch (err) {
    log.warn({ err, request_id: request.id }, 'vault refused or failed during issue; rolling back');
    await abandonMint(deps, credentialId, policyName, request.id);
    return { ok: false, error: vaultUnavailable(err, 'issue the credential') };
  }

  const now = clock.now();
  const expiresAt = now + created.leaseDurationSeconds * 1000;
  const committed = db.transaction(() => {
    if (!repo.markCredentialLive(credentialId, created.accessor, now, expiresAt)) return false;
    if (!repo.transition(request.id, 'approved', 'issued', now)) {
      repo.moveCredential(credentialId, 'live', 'ending', now, 'request changed during issue');
      return false;
    }
    audit.append(
      {
        event: 'credential.issued',
        actor: 'broker',
        requestId: request.id,
        data: { credential_id: credentialId, accessor: created.accessor, policy: policyName, expires_at: expiresAt, ttl_seconds: created.leaseDurationSeconds },
      },
      now,
    );
    return true;
  })();

  if (!committed) {
    // Revoked (or otherwise ended) while Vault was minting: the token must not live.
    await endCredential(deps, { id: credentialId, accessor: created.accessor, vault_policy: policyName, request_id: request.id });
    return { ok: false, error: new BrokerError('CONFLICT', `request ${request.id} changed while its credential was being issued; the credential was revoked`) };
  }

  return {
    ok: true,
    credential: {
      type: 'vault_token',
      token: created.token,
      accessor: created.accessor,
      policies: created.policies,
      expires_at: new Date(expiresAt).toISOString(),
    },
  };
}

/** Deletes the policy of a failed mint and settles its row; leaves it `abandoned` for the reaper if Vault is down. */
export async function abandonMint(deps: BrokerDeps, credentialId: string, policyName: string, requestId: string): Promise<void> {
  const { repo, vault, clock, audit, db, log } = deps;
  db.transaction(() => {
    repo.moveCredential(credentialId, 'minting', 'abandoned', clock.now(), 'vault failure during issue');
  })();
  try {
    await vault.deletePolicy(policyName);
  } catch (err) {
    log.warn({ err, request_id: requestId, policy: policyName }, 'could not delete ephemeral policy yet; the reaper will retry');
    return;
  }
  db.transaction(() => {
    if (repo.moveCredential(credentialId, 'abandoned', 'failed', clock.now())) {
      audit.append({ event: 'credential.abandoned', actor: 'broker', requestId, data: { credential_id: credentialId, policy: policyName } }, clock.now());
    }
  })();
}

/**
 * Ends a credential: for a Vault token, revokes it by accessor and deletes
 * its policy; a gate credential has nothing outside the database (its jti is
 * refused by verification from now on). The row must already be `ending`;
 * it becomes `ended` once Vault confirmed both. Throws if Vault failed (the
 * row stays `ending`).
 */
export async function endCredential(
  deps: BrokerDeps,
  cred: { id: string; accessor: string | null; vault_policy: string | null; request_id: string },
): Promise<void> {
  const { vault, repo, clock, db } = deps;
  if (cred.accessor) await deps.vault.revokeAccessor(cred.accessor);
  if (cred.vault_policy) await vault.deletePolicy(cred.vault_policy);
  db.transaction(() => {
    repo.moveCredential(cred.id, 'ending', 'ended', clock.now());
  })();
}
