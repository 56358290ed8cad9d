/**
 * Opt-in: runs the adapter contract and the shared ACL table against a real
 * Vault. `VAULT_ADDR=… VAULT_TOKEN=… npm run test:vault-live` (see
 * docs/vault.md §5). Without both variables the suite is skipped.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVaultClient } from '../../src/vault/node-vault-client.ts';
import type { VaultClient } from '../../src/vault/types.ts';
import { aclCases } from '../integration/vault/acl-cases.ts';
import { runAclCase } from '../integration/vault/acl-runner.ts';
import { defineAdapterContract } from '../integration/vault/adapter-contract.ts';
import { documentedBrokerPolicy } from '../integration/vault/broker-policy.ts';
import { nodeVault } from '../integration/vault/helpers.ts';

const url = process.env['VAULT_ADDR'] ?? '';
const rootToken = process.env['VAULT_TOKEN'] ?? '';
const kv = process.env['VAULT_LIVE_KV_MOUNT'] ?? 'secret';
const enabled = url !== '' && rootToken !== '';
const ns = `jitlive${randomBytes(4).toString('hex')}`;

if (!enabled) {
  console.log('[vault-live] skipped: set VAULT_ADDR and VAULT_TOKEN to run the Vault suite against a real Vault (docs/vault.md §5)');
}

describe.skipIf(!enabled)(`real Vault at ${url || '(unset)'}`, () => {
  beforeAll(async () => {
    const health = (await nodeVault(url).read('sys/health')) as { sealed?: boolean; version?: string };
    if (health.sealed !== false) throw new Error('the Vault under test is sealed or not a Vault');
    console.log(`[vault-live] Vault ${health.version ?? '?'}; KV v2 mount "${kv}"; run prefix ${ns}`);
  });

  describe('adapter contract with the token from VAULT_TOKEN', () => {
    let client: VaultClient;
    beforeAll(() => {
      client = createVaultClient({ endpoint: url, token: rootToken });
    });
    defineAdapterContract(() => ({ url, rootToken, client, kv, ns }));
  });

  describe('adapter contract with a token holding only the documented broker policy', () => {
    const brokerPolicy = `${ns}-broker`;
    let client: VaultClient;
    let accessor = '';
    beforeAll(async () => {
      const root = nodeVault(url, rootToken);
      await root.write(`sys/policies/acl/${brokerPolicy}`, { policy: documentedBrokerPolicy() });
      const created = (await root.write('auth/token/create-orphan', { policies: [brokerPolicy], ttl: '15m' })) as {
        auth: { client_token: string; accessor: string };
      };
      accessor = created.auth.accessor;
      client = createVaultClient({ endpoint: url, token: created.auth.client_token });
    });
    afterAll(async () => {
      const root = nodeVault(url, rootToken);
      if (accessor) await root.write('auth/token/revoke-accessor', { accessor });
      await root.delete(`sys/policies/acl/${brokerPolicy}`);
    });
    defineAdapterContract(() => ({ url, rootToken, client, kv, ns: `${ns}b` }));
  });

  describe('ACL table', () => {
    const scope = { kv, ns };
    it.each(aclCases(scope).map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
      const status = await runAclCase({ url, rootToken, ...scope }, c, String(i));
      if (c.expect === 'allowed') expect([200, 204]).toContain(status);
      else expect(status).toBe(403);
    });
  });
});
