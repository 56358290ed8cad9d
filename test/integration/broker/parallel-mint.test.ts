import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sweep } from '../../../src/broker/lifecycle.ts';
import type { CredentialRow } from '../../../src/broker/rows.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/*
 * The policy write and the token create of an issue go to Vault together.
 * When only the token create succeeds, the token must not outlive the
 * failed issue: revoked at once, or by the sweep if Vault refuses that too.
 */
let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
  await h.call('GET', '/healthz');
});
afterEach(async () => {
  h.proxy.setFault(undefined);
  await h.close();
});

const tier1 = { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
const jitTokens = () => h.devVault.listTokens().filter((t) => t.meta?.['jit_request_id'] !== undefined);
const credentialOf = (requestId: string) => h.db.prepare('SELECT * FROM credentials WHERE request_id = ?').all(requestId) as CredentialRow[];
const policyWrites = (_m: string, path: string) => path.includes('/sys/policies/acl/');

describe('policy write and token create in parallel', () => {
  it('issues a working token without logging Vault\'s "policy does not exist" warning', async () => {
    // Hold the policy write until the token exists, so Vault does warn that the policy is missing.
    const vault = h.broker.deps.vault;
    const writePolicy = vault.writePolicy;
    vault.writePolicy = async (name, text) => {
      for (let i = 0; i < 200 && jitTokens().length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      return writePolicy(name, text);
    };
    let res;
    try {
      res = await h.call('POST', '/jit/request', { token, body: tier1 });
    } finally {
      vault.writePolicy = writePolicy;
    }
    expect(res.status).toBe(201);
    const secret = await h.vaultAs(res.body.credential.token).read('homelab/data/docker/registry');
    expect(secret.data).toBeDefined();
    expect(h.proxy.seen.filter((s) => s.path.includes('create-orphan'))).toHaveLength(1);
    expect(h.logs()).not.toMatch(/succeeded with warnings/);
  });

  it('revokes the token at once when the policy write failed', async () => {
    h.proxy.setFault((m, path) => (policyWrites(m, path) && m !== 'DELETE' ? { status: 500, body: { errors: ['storage failure'] } } : undefined));
    const res = await h.call('POST', '/jit/request', { token, body: tier1 });
    expect(res.status).toBe(503);
    const requestId = h.db.prepare(`SELECT id FROM requests ORDER BY created_at DESC LIMIT 1`).pluck().get() as string;
    // The token create reached Vault, and its token is gone again.
    expect(h.proxy.seen.some((s) => s.path.includes('create-orphan'))).toBe(true);
    expect(h.proxy.seen.some((s) => s.path.includes('revoke-accessor'))).toBe(true);
    expect(jitTokens()).toEqual([]);
    expect(credentialOf(requestId).map((c) => c.state)).toEqual(['failed']);
    expect(await h.jitPolicies()).toEqual([]);
  });

  it('leaves the revoke to the sweep when Vault refuses it too', async () => {
    h.proxy.setFault((m, path) => {
      if (policyWrites(m, path) && m !== 'DELETE') return { status: 500, body: { errors: ['storage failure'] } };
      if (path.includes('revoke-accessor')) return 'reset';
      return undefined;
    });
    const res = await h.call('POST', '/jit/request', { token, body: tier1 });
    expect(res.status).toBe(503);
    const requestId = h.db.prepare(`SELECT id FROM requests ORDER BY created_at DESC LIMIT 1`).pluck().get() as string;
    expect(jitTokens()).toHaveLength(1);
    const [row] = credentialOf(requestId);
    expect(row).toMatchObject({ state: 'abandoned', accessor: jitTokens()[0]!.accessor });

    h.proxy.setFault(undefined);
    await sweep(h.broker.deps);
    expect(jitTokens()).toEqual([]);
    expect(credentialOf(requestId).map((c) => c.state)).toEqual(['failed']);
  });
});
