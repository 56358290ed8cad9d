import type { VaultScope } from './repository.ts';

/** Name of the ephemeral ACL policy of one request. Vault lower-cases names; ids are lower-case already. */
export function ephemeralPolicyName(requestId: string): string {
  return `jit-${requestId}`;
}

export const EPHEMERAL_POLICY_PREFIX = 'jit-req_';

/**
 * The ACL policy granting exactly the approved (path, capability) pairs.
 * Written in Vault's JSON policy form rather than HCL so that no path can
 * inject policy syntax (HCL strings interpolate `${…}`); paths were already
 * validated to hold no wildcards, so each rule is an exact-path match.
 */
export function renderVaultPolicy(scope: VaultScope): string {
  const paths: Record<string, { capabilities: string[] }> = {};
  for (const { path, capabilities } of scope.vault_paths) {
    const caps = new Set([...(paths[path]?.capabilities ?? []), ...capabilities]);
    paths[path] = { capabilities: [...caps].sort() };
  }
  return JSON.stringify({ path: paths });
}
