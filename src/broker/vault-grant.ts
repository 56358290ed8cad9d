import { createHash } from 'node:crypto';
import { canonicalJson } from '../lib/canonical-json.ts';
import type { VaultScope } from './repository.ts';

/**
 * Every ephemeral policy the broker writes starts with this prefix: the
 * shared grant policies below, and the per-request `jit-<request id>`
 * policies of older versions (which rows written before the upgrade still
 * name, and which are cleaned up exactly as before). Startup reconciliation
 * recognises all of them by it, and nothing else.
 */
export const EPHEMERAL_POLICY_PREFIX = 'jit-req_';

const GRANT_POLICY = /^jit-req_grant-([0-9a-f]{64})-([1-9][0-9]{0,15})$/;

/** Name of the policy of one credential (the default: no sharing). Starts with the prefix reconciliation knows. */
export function credentialPolicyName(credentialId: string): string {
  return `${EPHEMERAL_POLICY_PREFIX}${credentialId}`;
}

/** Name of generation `generation` of the shared policy for the grant whose content hashes to `hash`. */
export function grantPolicyName(hash: string, generation: number): string {
  return `${EPHEMERAL_POLICY_PREFIX}grant-${hash}-${generation}`;
}

/** The grant hash and generation of a shared grant policy name, or undefined for any other name. */
export function parseGrantPolicyName(name: string): { hash: string; generation: number } | undefined {
  const m = GRANT_POLICY.exec(name);
  return m ? { hash: m[1]!, generation: Number(m[2]) } : undefined;
}

/**
 * The ACL policy granting exactly the approved (path, capability) pairs.
 * Written in Vault's JSON policy form rather than HCL so that no path can
 * inject policy syntax (HCL strings interpolate `${…}`); paths were already
 * validated to hold no wildcards, so each rule is an exact-path match.
 * The text is canonical (paths and capabilities sorted, duplicates merged),
 * so equal grants render, and hash, equally.
 */
export function renderVaultPolicy(scope: VaultScope): string {
  // A Map, then own properties: a path such as `__proto__` or `constructor`
  // is a key like any other (assigning `paths['__proto__']` on a plain
  // object would set its prototype and drop the grant from the text).
  const paths = new Map<string, Set<string>>();
  for (const { path, capabilities } of scope.vault_paths) {
    let caps = paths.get(path);
    if (!caps) paths.set(path, (caps = new Set()));
    for (const c of capabilities) caps.add(c);
  }
  return canonicalJson({ path: Object.fromEntries([...paths].map(([path, caps]) => [path, { capabilities: [...caps].sort() }])) });
}

/** The policy text of a Vault grant and the hash that names it. */
export function renderGrant(scope: VaultScope): { text: string; hash: string } {
  const text = renderVaultPolicy(scope);
  return { text, hash: createHash('sha256').update(text).digest('hex') };
}
