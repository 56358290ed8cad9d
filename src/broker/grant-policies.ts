import type { Repositories, Storage, Transaction } from '../storage/storage.ts';
import { grantPolicyName, installationPolicyPrefix, parseGrantPolicyName } from './vault-grant.ts';

/** A shared grant policy is written to Vault again when its last write is older than this. */
export const GRANT_POLICY_REFRESH_MS = 60_000;

const prefixes = new WeakMap<Storage, Promise<string>>();

/**
 * `jit-<installation id>-`: the prefix of every ephemeral Vault policy this
 * installation writes (vault-grant.ts), read once per storage: through `via`,
 * the caller's transaction when it has one (a call on `storage` itself
 * would wait for that transaction to end).
 */
export function policyPrefix(storage: Storage, via: Pick<Repositories, 'settings'> = storage): Promise<string> {
  let prefix = prefixes.get(storage);
  if (!prefix) {
    prefix = via.settings.installationId().then(installationPolicyPrefix);
    prefixes.set(storage, prefix);
    // A failed read is not cached: the next call tries again.
    prefix.catch(() => prefixes.delete(storage));
  }
  return prefix;
}

/**
 * Takes the shared Vault policy of a grant for a new credential: its
 * current name, and whether it must be written to Vault first — when this
 * generation was never written, or was last written more than
 * {@link GRANT_POLICY_REFRESH_MS} ago (so a Vault that lost it, say a
 * restarted development Vault, gets it back within that time). Call it in
 * the transaction that inserts the credential row naming the policy (the
 * row is the reference), so that no retirement can slip in between.
 */
export async function acquireGrantPolicy(storage: Storage, tx: Transaction, hash: string, now: number): Promise<{ name: string; generation: number; written: boolean }> {
  const row = await tx.grantPolicies.acquire(hash, now);
  return { name: grantPolicyName(await policyPrefix(storage, tx), hash, row.generation), generation: row.generation, written: row.written && now - row.updated_at < GRANT_POLICY_REFRESH_MS };
}

/** Records that a grant policy was just written to Vault (no-op for other names, or if its generation was retired meanwhile). */
export async function markGrantPolicyWritten(tx: Transaction, name: string, now: number): Promise<void> {
  const g = parseGrantPolicyName(name);
  if (g) await tx.grantPolicies.markWritten(g.hash, g.generation, now);
}

/**
 * Retires a shared grant policy if it is still the current generation, so
 * the next credential with that grant gets a fresh policy. Used when a
 * token bound to it may exist that the broker does not know (a mint that
 * failed half-way or was interrupted). No-op for other names.
 */
export async function retireGrantPolicy(tx: Transaction, name: string, now: number): Promise<void> {
  const g = parseGrantPolicyName(name);
  if (g) await tx.grantPolicies.retire(g.hash, g.generation, now);
}

/**
 * Releases `exceptCredentialId`'s reference to the Vault policy `name` (a
 * credential ending or abandoned, or none for a stray policy) and tells
 * whether the policy may now be deleted from Vault: true when no other
 * credential holds it. A shared policy is retired in the same step, so it
 * is never handed to a new credential again. Call it inside a transaction.
 */
export async function releaseVaultPolicy(tx: Transaction, name: string, exceptCredentialId: string | null, now: number): Promise<boolean> {
  if ((await tx.credentials.policyHolders(name, exceptCredentialId)) > 0) return false;
  await retireGrantPolicy(tx, name, now);
  return true;
}
