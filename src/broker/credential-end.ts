import type { VaultClient } from '../vault/types.ts';
import type { BrokerDeps } from './deps.ts';
import { releaseVaultPolicy } from './grant-policies.ts';

/**
 * Ends a credential: for a Vault token, revokes it by accessor and releases
 * its policy, deleting the policy if no other credential holds it; a gate
 * credential has nothing outside the database (its jti is refused by
 * verification from now on). The row must already be `ending`; it becomes
 * `ended` once Vault confirmed what was needed. Throws if Vault failed (the
 * row stays `ending` and the reaper retries).
 *
 * A row that keeps the policy for others is marked ended in the same
 * transaction that counted them, and one that deletes it retires it in that
 * transaction, so of two credentials ending at once exactly one deletes.
 */
export async function endCredential(
  deps: Pick<BrokerDeps, 'storage' | 'clock'> & { vault?: VaultClient | undefined },
  cred: { id: string; accessor: string | null; vault_policy: string | null; request_id: string },
): Promise<void> {
  const { storage, clock } = deps;
  // A gate credential (neither accessor nor policy) needs no Vault client: its row is all there is.
  const vault = () => deps.vault ?? failNoVault(cred.request_id);
  if (cred.accessor) await vault().revokeAccessor(cred.accessor);
  const policy = cred.vault_policy;
  const deleteNow =
    policy !== null &&
    (await storage.transaction(async (tx) => {
      const now = clock.now();
      if (await releaseVaultPolicy(tx, policy, cred.id, now)) return true;
      await tx.credentials.move(cred.id, 'ending', 'ended', now);
      return false;
    }));
  if (policy !== null && !deleteNow) return;
  if (deleteNow) await vault().deletePolicy(policy);
  await storage.credentials.move(cred.id, 'ending', 'ended', clock.now());
}

/**
 * Closes an abandoned credential (an issue that failed after its row was
 * written) once its Vault policy is settled: `abandoned` → `failed`, with the
 * `credential.abandoned` audit entry, in one transaction. `policyDeleted`:
 * the policy was deleted from Vault (false when other credentials still hold
 * it). Nothing happens when another process closed the row first.
 */
export async function failAbandoned(
  deps: Pick<BrokerDeps, 'storage' | 'clock' | 'audit'>,
  cred: { id: string; request_id: string; vault_policy: string | null },
  policyDeleted: boolean,
): Promise<void> {
  const policy = cred.vault_policy;
  await deps.storage.transaction(async (tx) => {
    const now = deps.clock.now();
    if (await tx.credentials.move(cred.id, 'abandoned', 'failed', now)) {
      const data = { credential_id: cred.id, policy, ...(policyDeleted || policy === null ? {} : { policy_kept_for_other_credentials: true }) };
      await deps.audit.append(tx, { event: 'credential.abandoned', actor: 'broker', requestId: cred.request_id, data }, now);
    }
  });
}

function failNoVault(requestId: string): never {
  throw new Error(`the credential of request ${requestId} is a Vault token; ending it needs a Vault client`);
}
