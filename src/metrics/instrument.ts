import type { DecisionSink } from '../storage/decision-sink.ts';
import { VaultError } from '../vault/errors.ts';
import type { VaultClient } from '../vault/types.ts';
import type { BrokerMetrics } from './metrics.ts';

type TimedMethod = Exclude<keyof VaultClient, 'start' | 'stop'>;

/** Operation label of each timed Vault call. */
const VAULT_OPERATIONS: Record<TimedMethod, string> = {
  health: 'health',
  writePolicy: 'write_policy',
  deletePolicy: 'delete_policy',
  listPolicies: 'list_policies',
  readPolicy: 'read_policy',
  createOrphanToken: 'create_token',
  lookupAccessor: 'lookup_accessor',
  revokeAccessor: 'revoke_accessor',
  wrap: 'wrap',
  unwrap: 'unwrap',
};

/**
 * The same Vault client, with every call timed into
 * `jit_vault_request_duration_seconds` and failures counted by
 * {@link VaultError} kind (`unknown` for anything else) in
 * `jit_vault_request_errors_total`.
 */
export function instrumentVault(vault: VaultClient, metrics: BrokerMetrics): VaultClient {
  const timed = { ...vault } as VaultClient;
  for (const [method, operation] of Object.entries(VAULT_OPERATIONS) as [TimedMethod, string][]) {
    if (typeof vault[method] !== 'function') continue; // a partial test double
    const call = vault[method].bind(vault) as (...args: unknown[]) => Promise<unknown>;
    (timed as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
      const started = performance.now();
      try {
        const result = await call(...args);
        metrics.vaultCall(operation, (performance.now() - started) / 1000);
        return result;
      } catch (err) {
        metrics.vaultCall(operation, (performance.now() - started) / 1000, err instanceof VaultError ? err.kind : 'unknown');
        throw err;
      }
    };
  }
  return timed;
}

/**
 * Wraps the decision sink (the webhook outbox) to count the decisions this
 * process records: timeouts, revocations and expiries. Approvals and
 * denials are counted from the `votes` table instead, so that those made by
 * `jit approve` / `jit deny` in their own process count too.
 */
export function metricsDecisionSink(inner: DecisionSink, metrics: BrokerMetrics): DecisionSink {
  return {
    async record(tx, request, type, at) {
      await inner.record(tx, request, type, at);
      if (type !== 'approved' && type !== 'denied') metrics.decision(request.resource, request.required_tier, type);
    },
  };
}
