import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/lib/clock.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { VaultError } from '../../../src/vault/errors.ts';
import { createVaultClient } from '../../../src/vault/node-vault-client.ts';
import type { VaultLogger } from '../../../src/vault/node-vault-client.ts';
import type { VaultClient } from '../../../src/vault/types.ts';
import { defineAdapterContract } from './adapter-contract.ts';
import { documentedBrokerPolicy } from './broker-policy.ts';
import { nodeVault } from './helpers.ts';

const BROKER_POLICY = documentedBrokerPolicy();

function recordingLog(): VaultLogger & { lines: { level: string; obj: Record<string, unknown>; msg: string }[] } {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
  };
}

describe('createVaultClient against the development Vault', () => {
  describe('contract, authenticated as root', () => {
    let vault: DevVault;
    let client: VaultClient;
    beforeAll(async () => {
      vault = await startDevVault({ port: 0 });
      client = createVaultClient({ endpoint: vault.url, token: vault.rootToken });
    });
    afterAll(async () => {
      await vault.close();
    });
    defineAdapterContract(() => ({ url: vault.url, rootToken: vault.rootToken, client, kv: 'secret', ns: 'contract' }));
  });

  describe('contract, authenticated by AppRole with the documented broker policy', () => {
    let vault: DevVault;
    let client: VaultClient;
    beforeAll(async () => {
      vault = await startDevVault({
        port: 0,
        seed: { policies: { 'vault-jit-broker': BROKER_POLICY } },
        approle: { roleId: 'rid', secretId: 'sid', policies: ['vault-jit-broker'], tokenTtlSeconds: 3600 },
      });
      client = createVaultClient({ endpoint: vault.url, roleId: 'rid', secretId: 'sid' });
      await client.start();
    });
    afterAll(async () => {
      client.stop();
      await vault.close();
    });
    defineAdapterContract(() => ({ url: vault.url, rootToken: vault.rootToken, client, kv: 'secret', ns: 'approle' }));

    it('cannot touch policies outside jit-*', async () => {
      const err = await client.writePolicy('admin', 'path "*" { capabilities = ["sudo"] }').catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'permission_denied' });
    });
  });

  describe('the node-vault token trap', () => {
    let vault: DevVault;
    afterEach(async () => {
      await vault.close();
    });

    it('every request after createOrphanToken still carries the adapter token', async () => {
      vault = await startDevVault({ port: 0 });
      const client = createVaultClient({ endpoint: vault.url, token: vault.rootToken });
      const rootAccessor = vault.listTokens()[0]!.accessor;
      await client.writePolicy('jit-a', 'path "x" { capabilities = ["read"] }');
      const minted = await client.createOrphanToken({ policies: ['jit-a'], ttlSeconds: 60, meta: {}, displayName: 'a' });
      await client.listPolicies();
      await client.lookupAccessor(minted.accessor);
      const authenticated = vault.requests().filter((r) => r.accessor !== null);
      expect(authenticated.length).toBe(4);
      expect(new Set(authenticated.map((r) => r.accessor))).toEqual(new Set([rootAccessor]));
    });

    it('lists go out as GET ?list=1, never the LIST verb', async () => {
      vault = await startDevVault({ port: 0 });
      const client = createVaultClient({ endpoint: vault.url, token: vault.rootToken });
      expect(await client.listPolicies()).toEqual(['default', 'root']);
      expect(vault.requests().at(-1)).toMatchObject({ method: 'GET', operation: 'list', status: 200 });
    });
  });

  describe('AppRole login and renewal', () => {
    let clock: ManualClock;
    let vault: DevVault;
    let client: VaultClient;
    let log: ReturnType<typeof recordingLog>;

    beforeEach(async () => {
      clock = new ManualClock();
      log = recordingLog();
      vault = await startDevVault({
        port: 0,
        clock,
        seed: { policies: { 'vault-jit-broker': BROKER_POLICY } },
        approle: { roleId: 'rid', secretId: 'sid', policies: ['vault-jit-broker'], tokenTtlSeconds: 600, tokenMaxTtlSeconds: 1500 },
      });
      client = createVaultClient({ endpoint: vault.url, roleId: 'rid', secretId: 'sid' }, { clock, log });
    });
    afterEach(async () => {
      client.stop();
      await vault.close();
    });

    const brokerTokens = () => vault.listTokens().filter((t) => t.path === 'auth/approle/login');

    it('start() logs in once', async () => {
      await client.start();
      expect(brokerTokens()).toHaveLength(1);
      expect(brokerTokens()[0]).toMatchObject({ policies: ['default', 'vault-jit-broker'], ttlSeconds: 600, orphan: true });
    });

    it('logs in lazily on first use when start() was not called', async () => {
      expect(await client.listPolicies()).toContain('vault-jit-broker');
      expect(brokerTokens()).toHaveLength(1);
    });

    it('renews its token with renew-self once two thirds of the TTL have passed', async () => {
      await client.start();
      const accessor = brokerTokens()[0]!.accessor;
      clock.advance(300_000);
      await client.listPolicies();
      expect(vault.requests().some((r) => r.path === '/v1/auth/token/renew-self')).toBe(false);
      clock.advance(101_000);
      await client.listPolicies();
      const renewals = vault.requests().filter((r) => r.path === '/v1/auth/token/renew-self');
      expect(renewals).toEqual([expect.objectContaining({ status: 200, accessor })]);
      expect(brokerTokens()).toEqual([expect.objectContaining({ accessor, ttlSeconds: 600 })]);
    });

    it('logs in again when renewal can no longer buy half a lease (near the max TTL)', async () => {
      await client.start();
      const first = brokerTokens()[0]!.accessor;
      clock.advance(401_000);
      await client.listPolicies(); // t=401 s: renewed to 600 s (max 1500 s from login)
      clock.advance(401_000);
      await client.listPolicies(); // t=802 s: renewed to 600 s (698 s left): still fine
      clock.advance(470_000);
      await client.listPolicies(); // t=1272 s: renewal capped at 228 s < 300 s: log in again
      const accessors = brokerTokens().map((t) => t.accessor);
      expect(accessors).toContain(first);
      expect(accessors).toHaveLength(2);
      const logins = vault.requests().filter((r) => r.path === '/v1/auth/approle/login');
      expect(logins).toHaveLength(2);
    });

    it('logs in again when renewal fails (token revoked behind its back)', async () => {
      await client.start();
      const first = brokerTokens()[0]!.accessor;
      await nodeVault(vault.url, vault.rootToken).write('auth/token/revoke-accessor', { accessor: first });
      clock.advance(401_000);
      await expect(client.listPolicies()).resolves.toContain('vault-jit-broker');
      const renewals = vault.requests().filter((r) => r.path === '/v1/auth/token/renew-self');
      expect(renewals.map((r) => r.status)).toEqual([403]);
      expect(brokerTokens()).toHaveLength(1);
      expect(brokerTokens()[0]!.accessor).not.toBe(first);
    });

    it('recovers from a revoked token before renewal is due: re-login and one retry', async () => {
      await client.start();
      const first = brokerTokens()[0]!.accessor;
      await nodeVault(vault.url, vault.rootToken).write('auth/token/revoke-accessor', { accessor: first });
      await expect(client.listPolicies()).resolves.toContain('vault-jit-broker');
      expect(brokerTokens()).toHaveLength(1);
      expect(brokerTokens()[0]!.accessor).not.toBe(first);
    });

    it('does not log in again on an ordinary ACL refusal', async () => {
      await client.start();
      const err = await client.writePolicy('not-jit', 'path "x" { capabilities = ["read"] }').catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'permission_denied', status: 403 });
      expect(vault.requests().filter((r) => r.path === '/v1/auth/approle/login')).toHaveLength(1);
    });

    it('keeps using a still-valid token when a due renewal and re-login fail', async () => {
      await client.start();
      clock.advance(401_000);
      vault.setSealed(true);
      const err = await client.listPolicies().catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'sealed', status: 503 });
      vault.setSealed(false);
      clock.advance(5_000);
      await expect(client.listPolicies()).resolves.toContain('vault-jit-broker');
    });

    it('wrong AppRole credentials fail start() with bad_request', async () => {
      const bad = createVaultClient({ endpoint: vault.url, roleId: 'rid', secretId: 'wrong' }, { clock });
      const err = await bad.start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VaultError);
      expect(err).toMatchObject({ kind: 'bad_request', status: 400 });
      expect((err as Error).message).toContain('invalid role or secret ID');
      expect((err as Error).message).not.toContain('wrong');
    });

    it('never logs a token or a secret id', async () => {
      await client.start();
      clock.advance(401_000);
      await client.listPolicies();
      await nodeVault(vault.url, vault.rootToken).write('auth/token/revoke-accessor', { accessor: brokerTokens()[0]!.accessor });
      clock.advance(401_000);
      await client.listPolicies();
      expect(log.lines.length).toBeGreaterThanOrEqual(3);
      const text = JSON.stringify(log.lines);
      expect(text).not.toMatch(/hvs\.[A-Za-z0-9]{8}/);
      expect(text).not.toContain('"sid"');
    });
  });

  describe('error mapping', () => {
    it('a stopped server is unreachable', async () => {
      const vault = await startDevVault({ port: 0 });
      const client = createVaultClient({ endpoint: vault.url, token: vault.rootToken });
      await expect(client.health()).resolves.toMatchObject({ sealed: false });
      await vault.close();
      for (const call of [() => client.health(), () => client.listPolicies(), () => client.lookupAccessor('x')]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VaultError);
        expect(err).toMatchObject({ kind: 'unreachable', status: undefined });
        // A pooled keep-alive socket may see the close as a reset first.
        expect((err as Error).message).toMatch(/ECONNREFUSED|ECONNRESET/);
        expect((err as Error).message).not.toContain(vault.rootToken);
      }
    });

    it('a server that never answers times out as unreachable', async () => {
      const sockets: import('node:net').Socket[] = [];
      const silent: Server = createServer((s) => sockets.push(s));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const port = (silent.address() as import('node:net').AddressInfo).port;
      try {
        const client = createVaultClient({ endpoint: `http://127.0.0.1:${port}`, token: 'hvs.whatever-token', timeoutMs: 200 });
        const started = Date.now();
        const err = await client.listPolicies().catch((e: unknown) => e);
        expect(err).toMatchObject({ kind: 'unreachable' });
        expect(Date.now() - started).toBeLessThan(2000);
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => silent.close(() => resolve()));
      }
    });

    it('a sealed Vault: health says sealed, other calls fail with kind sealed', async () => {
      const vault = await startDevVault({ port: 0 });
      try {
        const client = createVaultClient({ endpoint: vault.url, token: vault.rootToken });
        vault.setSealed(true);
        await expect(client.health()).resolves.toMatchObject({ sealed: true, initialized: true });
        await expect(client.listPolicies()).rejects.toMatchObject({ kind: 'sealed', status: 503 });
      } finally {
        await vault.close();
      }
    });

    it('rejects invalid configuration and arguments before calling Vault', async () => {
      expect(() => createVaultClient({ endpoint: '' , token: 't' })).toThrow(VaultError);
      expect(() => createVaultClient({ endpoint: 'http://127.0.0.1:1' })).toThrow(/token or AppRole/);
      expect(() => createVaultClient({ endpoint: 'http://127.0.0.1:1', roleId: 'r' })).toThrow(/both/);
      const client = createVaultClient({ endpoint: 'http://127.0.0.1:1', token: 't' });
      await expect(client.createOrphanToken({ policies: [], ttlSeconds: 0, meta: {}, displayName: 'x' })).rejects.toMatchObject({
        kind: 'bad_request',
      });
      await expect(client.writePolicy('a/b', 'x')).rejects.toMatchObject({ kind: 'bad_request' });
    });
  });
});
