import { hash } from 'node:crypto';
import { canonicalJson } from '../lib/canonical-json.ts';
import type { VaultScope } from './rows.ts';

/**
 * The prefix every ephemeral policy of one installation starts with:
 * `jit-<installation id>-`, the id being 16 random hex digits made with the
 * database (migration 0011) and shared by every broker using it. Start-up
 * reconciliation deletes strays under this prefix only, so installations
 * sharing one Vault never touch each other's policies. Still under `jit-`,
 * which the operator's broker policy covers (docs/vault.md).
 */
export function installationPolicyPrefix(installationId: string): string {
  if (!INSTALLATION_ID.test(installationId)) throw new Error(`installation id must be 16 lowercase hex digits, got ${JSON.stringify(installationId)}`);
  return `jit-${installationId}-`;
}

const INSTALLATION_ID = /^[0-9a-f]{16}$/;

/**
 * The prefix of versions before installation prefixes, shared by every
 * installation: the per-credential `jit-req_cred_…`, the shared
 * `jit-req_grant-…` and the per-request `jit-req_<ulid>` policies. Rows
 * written then still name them and are cleaned up by that name;
 * reconciliation deletes one only when this database names it (hex digits
 * never spell `req_`, so no installation prefix starts with it).
 */
export const LEGACY_POLICY_PREFIX = 'jit-req_';

const GRANT_POLICY = /^jit-(?:req_|[0-9a-f]{16}-)grant-([0-9a-f]{64})-([1-9][0-9]{0,15})$/;

/** Name of the policy of one credential (the default: no sharing), under the installation's prefix. */
export function credentialPolicyName(prefix: string, credentialId: string): string {
  return `${prefix}${credentialId}`;
}

/** Name of generation `generation` of the shared policy for the grant whose content hashes to `hash`. */
export function grantPolicyName(prefix: string, hash: string, generation: number): string {
  return `${prefix}grant-${hash}-${generation}`;
}

/** The grant hash and generation of a shared grant policy name (either prefix), or undefined for any other name. */
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
  return { text, hash: hash('sha256', text, 'hex') };
}
