import type { BrokerDeps } from './deps.ts';
import type { BrokerError } from './errors.ts';
import { mintGateCredential, type GatePushCredential } from './gate-credential.ts';
import { mintVaultCredential, type VaultTokenCredential } from './mint-credential.ts';
import type { RequestRow } from './repository.ts';

export type IssuedCredential = VaultTokenCredential | GatePushCredential;

/** Issues the credential of an approved request, whatever its resource; at most once either way. */
export async function issueCredential(deps: BrokerDeps, request: RequestRow): Promise<{ ok: true; credential: IssuedCredential } | { ok: false; error: BrokerError }> {
  if (request.resource === 'vault') return mintVaultCredential(deps, request);
  const started = performance.now();
  const outcome = mintGateCredential(deps, request);
  deps.metrics.issuance('gate', (performance.now() - started) / 1000, outcome.ok ? 'issued' : 'failed');
  return outcome;
}
