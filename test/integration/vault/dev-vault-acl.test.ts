import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { aclCases } from './acl-cases.ts';
import { runAclCase } from './acl-runner.ts';

const scope = { kv: 'secret', ns: 'acltest' };
const cases = aclCases(scope);

describe('development Vault ACLs over HTTP through node-vault', () => {
  let vault: DevVault;
  beforeAll(async () => {
    vault = await startDevVault({ port: 0 });
  });
  afterAll(async () => {
    await vault.close();
  });

  it('has a table of at least 40 cases with both outcomes', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    expect(cases.filter((c) => c.expect === 'denied').length).toBeGreaterThan(15);
    expect(cases.filter((c) => c.expect === 'allowed').length).toBeGreaterThan(15);
  });

  it.each(cases.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const status = await runAclCase({ url: vault.url, rootToken: vault.rootToken, ...scope }, c, String(i));
    if (c.expect === 'allowed') expect([200, 204]).toContain(status);
    else expect(status).toBe(403);
  });

  it('cleans up after every case (no case policies, tokens or keys left)', () => {
    expect(vault.policyNames()).toEqual(['default']);
    expect(vault.listTokens().map((t) => t.policies)).toEqual([['root']]);
    expect(vault.kvKeys()).toEqual([]);
  });
});
