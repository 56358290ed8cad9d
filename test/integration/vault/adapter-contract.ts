/**
 * Behaviour every VaultClient must show against a Vault, shared by the
 * development-Vault suite and the opt-in live suite (test/live).
 */
import { expect, it } from 'vitest';
import { VaultError } from '../../../src/vault/errors.ts';
import { createVaultClient } from '../../../src/vault/node-vault-client.ts';
import type { VaultClient } from '../../../src/vault/types.ts';
import { failureOf, nodeVault } from './helpers.ts';

export interface AdapterContext {
  url: string;
  /** A root (or equivalently privileged) token. */
  rootToken: string;
  /** The adapter under test, authenticated as `rootToken` or as a broker token. */
  client: VaultClient;
  /** KV v2 mount used for grant checks. */
  kv: string;
  /** Unique prefix for names created by this run. */
  ns: string;
}

/** Registers the shared adapter tests; `ctx()` is read when each test runs. */
export function defineAdapterContract(ctx: () => AdapterContext): void {
  const policyName = (suffix: string) => `jit-${ctx().ns}-${suffix}`;

  it('health reports an initialised, unsealed, active Vault', async () => {
    const h = await ctx().client.health();
    expect(h).toMatchObject({ initialized: true, sealed: false, standby: false });
    expect(typeof h.version).toBe('string');
  });

  it('writes, reads, lists and deletes ACL policies', async () => {
    const { client, kv, ns } = ctx();
    const name = policyName('crud');
    const text = JSON.stringify({ path: { [`${kv}/data/${ns}/crud`]: { capabilities: ['read'] } } });
    await client.writePolicy(name, text);
    expect(await client.readPolicy(name)).toBe(text);
    expect(await client.listPolicies()).toContain(name);
    await client.deletePolicy(name);
    expect(await client.readPolicy(name)).toBeNull();
    expect(await client.listPolicies()).not.toContain(name);
  });

  it('deleting a missing policy is not an error; reading one is null', async () => {
    const { client } = ctx();
    await expect(client.deletePolicy(policyName('never-existed'))).resolves.toBeUndefined();
    expect(await client.readPolicy(policyName('never-existed'))).toBeNull();
  });

  it('rejects a malformed policy with a bad_request VaultError', async () => {
    const err = await ctx()
      .client.writePolicy(policyName('bad'), 'path "x" { capabilities = ["fly"] }')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultError);
    expect(err).toMatchObject({ kind: 'bad_request', status: 400 });
  });

  it('mints an orphan, non-renewable token bound to exactly its policy, and the adapter keeps its own token', async () => {
    const { client, url, kv, ns, rootToken } = ctx();
    const name = policyName('grant');
    const granted = `${kv}/data/${ns}/granted`;
    await client.writePolicy(name, JSON.stringify({ path: { [granted]: { capabilities: ['read'] } } }));
    const root = nodeVault(url, rootToken);
    await root.write(granted, { data: { v: 1 } });
    await root.write(`${kv}/data/${ns}/other`, { data: { v: 2 } });
    try {
      const created = await client.createOrphanToken({
        policies: [name],
        ttlSeconds: 300,
        meta: { request_id: 'req_contract' },
        displayName: 'jit-contract',
      });
      expect(created.token).toMatch(/^hv[sb]\./);
      expect(created.policies).toEqual(['default', name]);
      expect(created.leaseDurationSeconds).toBe(300);

      // The node-vault trap: had the client adopted the minted token, it
      // could not list policies any more.
      await expect(client.listPolicies()).resolves.toContain(name);

      const agent = nodeVault(url, created.token);
      await expect(agent.read(granted)).resolves.toBeTruthy();
      expect((await failureOf(agent.read(`${kv}/data/${ns}/other`))).status).toBe(403);

      const info = await client.lookupAccessor(created.accessor);
      expect(info).toMatchObject({
        accessor: created.accessor,
        policies: ['default', name],
        meta: { request_id: 'req_contract' },
        orphan: true,
        renewable: false,
        numUses: 0,
      });
      expect(info!.ttlSeconds).toBeGreaterThan(290);
      expect(info!.ttlSeconds).toBeLessThanOrEqual(300);
      expect(typeof info!.expireTime).toBe('string');

      await client.revokeAccessor(created.accessor);
      expect(await client.lookupAccessor(created.accessor)).toBeNull();
      expect((await failureOf(agent.read(granted))).status).toBe(403);
      await expect(client.revokeAccessor(created.accessor)).resolves.toBeUndefined();
    } finally {
      await client.deletePolicy(name);
      await root.delete(`${kv}/metadata/${ns}/granted`);
      await root.delete(`${kv}/metadata/${ns}/other`);
    }
  });

  it('passes num_uses and no_default_policy through', async () => {
    const { client } = ctx();
    const created = await client.createOrphanToken({
      policies: [policyName('absent')],
      ttlSeconds: 60,
      meta: {},
      displayName: 'jit-uses',
      numUses: 3,
      noDefaultPolicy: true,
    });
    try {
      expect(created.policies).toEqual([policyName('absent')]);
      const info = await client.lookupAccessor(created.accessor);
      expect(info?.numUses).toBe(3);
    } finally {
      await client.revokeAccessor(created.accessor);
    }
  });

  it('lookupAccessor of an unknown accessor is null; revoking it is not an error', async () => {
    const { client } = ctx();
    expect(await client.lookupAccessor('nOtArEaLaCcEsSoRaTaLl123')).toBeNull();
    await expect(client.revokeAccessor('nOtArEaLaCcEsSoRaTaLl123')).resolves.toBeUndefined();
  });

  it('wraps data and unwraps it exactly once', async () => {
    const { client } = ctx();
    const info = await client.wrap({ credential: 'secret-value', n: 1 }, 120);
    expect(info.ttlSeconds).toBe(120);
    expect(info.token).toMatch(/^hv[sb]\./);
    expect(info.accessor).not.toBe('');
    expect(Number.isNaN(Date.parse(info.creationTime))).toBe(false);
    expect(await client.unwrap(info.token)).toEqual({ credential: 'secret-value', n: 1 });
    const second = await client.unwrap(info.token).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(VaultError);
    expect(second).toMatchObject({ kind: 'bad_request', status: 400 });
    expect((second as Error).message).not.toContain(info.token);
  });

  it('a broker token without sudo on create-orphan cannot attach a policy it does not hold', async () => {
    const { url, rootToken, ns, client } = ctx();
    const root = nodeVault(url, rootToken);
    const noSudo = `${ns}-nosudo`;
    const target = policyName('foreign');
    await root.write(`sys/policies/acl/${noSudo}`, { policy: 'path "auth/token/create-orphan" { capabilities = ["create", "update"] }' });
    await client.writePolicy(target, 'path "nothing/here" { capabilities = ["read"] }');
    const weak = (await root.write('auth/token/create-orphan', { policies: [noSudo], ttl: '60s' })) as {
      auth: { client_token: string; accessor: string };
    };
    try {
      const weakClient = createVaultClient({ endpoint: url, token: weak.auth.client_token });
      const err = await weakClient
        .createOrphanToken({ policies: [target], ttlSeconds: 60, meta: {}, displayName: 'nosudo' })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'bad_request', status: 400, vaultErrors: ['child policies must be subset of parent'] });
    } finally {
      await root.write('auth/token/revoke-accessor', { accessor: weak.auth.accessor });
      await root.delete(`sys/policies/acl/${noSudo}`);
      await client.deletePolicy(target);
    }
  });

  it('maps a 403 to permission_denied without leaking the token', async () => {
    const { url, rootToken, ns } = ctx();
    const root = nodeVault(url, rootToken);
    const weak = (await root.write('auth/token/create-orphan', { policies: [`${ns}-nothing`], ttl: '60s' })) as {
      auth: { client_token: string; accessor: string };
    };
    try {
      const weakClient = createVaultClient({ endpoint: url, token: weak.auth.client_token });
      const err = await weakClient.writePolicy(policyName('denied'), 'path "x" { capabilities = ["read"] }').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VaultError);
      expect(err).toMatchObject({ kind: 'permission_denied', status: 403 });
      expect(JSON.stringify(err)).not.toContain(weak.auth.client_token);
      expect(String((err as Error).message)).not.toContain(weak.auth.client_token);
      expect((err as Error).cause).toBeUndefined();
    } finally {
      await root.write('auth/token/revoke-accessor', { accessor: weak.auth.accessor });
    }
  });
}
