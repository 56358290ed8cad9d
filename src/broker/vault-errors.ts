import { BrokerError } from './errors.ts';

/** Seconds an agent should wait before retrying after Vault failed. */
export const VAULT_RETRY_AFTER_SECONDS = 5;

/**
 * Turns a failure of a Vault call into the broker's answer. Whatever Vault
 * said, the agent gets a 503: a refusal of the broker's own token is an
 * operator problem, not the agent's, and is logged as such by the caller.
 */
export function vaultUnavailable(err: unknown, action: string): BrokerError {
  const kind = (err as { kind?: string } | null)?.kind ?? 'unreachable';
  const detail =
    kind === 'permission_denied'
      ? `Vault refused the broker's own token while trying to ${action}; the operator must check the broker's Vault policy`
      : kind === 'sealed'
        ? `Vault is sealed; could not ${action}`
        : `Vault is unavailable (${kind}); could not ${action}`;
  return new BrokerError('VAULT_UNAVAILABLE', `${detail}. Nothing was issued; retry later.`, {
    retryAfterSeconds: kind === 'rate_limited' ? 30 : VAULT_RETRY_AFTER_SECONDS,
  });
}
