import type { AclCase } from './acl-cases.ts';
import { nodeVault, statusOf } from './helpers.ts';

/** A Vault to run ACL cases against: its address, a root-capable token, and the case scope. */
export interface AclTarget {
  url: string;
  rootToken: string;
  kv: string;
  ns: string;
}

/**
 * Runs one case the way an operator would see it: as root, write the case's
 * policies and any pre-existing KV keys, create an orphan token with those
 * policies, then perform the operation with a separate node-vault client
 * holding that token. Cleans up everything it created. Returns the HTTP status.
 */
export async function runAclCase(target: AclTarget, c: AclCase, id: string): Promise<number> {
  const root = nodeVault(target.url, target.rootToken);
  const names = c.policies.map((_, i) => `${target.ns}-c${id}-${i}`);
  const kvData = `${target.kv}/data/`;
  const toMetadata = (p: string) => `${target.kv}/metadata/${p.slice(kvData.length)}`;
  const kvKeys = new Set<string>();
  let accessor: string | undefined;
  try {
    for (const [i, policy] of c.policies.entries()) {
      await root.write(`sys/policies/acl/${names[i]}`, { policy });
    }
    for (const p of c.existing ?? []) {
      kvKeys.add(toMetadata(p));
      await root.write(p, { data: { seeded: true } });
    }
    // A token with no policies of its own gets a policy that does not exist
    // (an empty policy), never root's policies by inheritance.
    const created = (await root.write('auth/token/create-orphan', {
      policies: names.length > 0 ? names : [`${target.ns}-none`],
      ttl: '5m',
      no_default_policy: c.noDefaultPolicy ?? false,
    })) as { auth: { client_token: string; accessor: string } };
    accessor = created.auth.accessor;
    if (c.action === 'write' && c.path.startsWith(kvData)) kvKeys.add(toMetadata(c.path));

    const client = nodeVault(target.url, created.auth.client_token);
    const body = c.body ?? { data: { written: c.name } };
    const perform: Record<AclCase['action'], () => Promise<unknown>> = {
      read: () => client.read(c.path),
      list: () => client.list(c.path),
      write: () => client.write(c.path, body),
      delete: () => client.delete(c.path),
      patch: () => client.update(c.path, body),
    };
    return await statusOf(perform[c.action]());
  } finally {
    if (accessor) await root.write('auth/token/revoke-accessor', { accessor });
    for (const name of names) await root.delete(`sys/policies/acl/${name}`);
    if (c.action === 'write' && c.path.startsWith('sys/policies/acl/')) await statusOf(root.delete(c.path));
    for (const key of kvKeys) await root.delete(key);
  }
}
