import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { failureOf, nodeVault, rawRequest } from './helpers.ts';

/**
 * Keys named like JavaScript's prototype properties (`__proto__`,
 * `constructor`, `toString`) are plain strings to Vault: kept where Vault
 * keeps them, refused where Vault refuses an unknown name, never dropped
 * or mistaken for something else. Bodies are built with JSON.parse, which
 * makes `__proto__` an own key, as a client's JSON would be.
 */
describe('development Vault and keys named like prototype properties', () => {
  let vault: DevVault;
  let root: ReturnType<typeof nodeVault>;
  beforeAll(async () => {
    vault = await startDevVault({ port: 0 });
    root = nodeVault(vault.url, vault.rootToken);
  });
  afterAll(async () => {
    await vault.close();
  });

  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])('refuses the capability %j as Vault does (400 invalid capability)', async (cap) => {
    const policy = `path "secret/data/x" {\n  capabilities = ["read", ${JSON.stringify(cap)}]\n}\n`;
    const f = await failureOf(root.write('sys/policies/acl/proto-cap', { policy }));
    expect(f.status).toBe(400);
    expect(JSON.stringify(f.errors)).toContain('invalid capability');
  });

  it.each(['constructor', 'toString', '__proto__'])('refuses the legacy policy value %j (400)', async (legacy) => {
    const policy = `path "secret/data/x" {\n  policy = ${JSON.stringify(legacy)}\n}\n`;
    const f = await failureOf(root.write('sys/policies/acl/proto-legacy', { policy }));
    expect(f.status).toBe(400);
    expect(JSON.stringify(f.errors)).toContain('invalid policy');
  });

  it('answers sys/capabilities-self for a path named __proto__ like any other', async () => {
    await root.write('sys/policies/acl/proto-paths', { policy: '{"path":{"__proto__":{"capabilities":["read"]},"constructor":{"capabilities":["list"]}}}' });
    const created = await root.write('auth/token/create-orphan', { policies: ['proto-paths'], ttl: '5m' });
    const agent = nodeVault(vault.url, created.auth.client_token);
    const caps = await agent.write('sys/capabilities-self', JSON.parse('{"paths":["__proto__","constructor","toString"]}'));
    expect(Object.hasOwn(caps.data, '__proto__')).toBe(true);
    expect(caps.data).toEqual(JSON.parse('{"__proto__":["read"],"constructor":["list"],"toString":["deny"]}'));
    // Copied to the top level too (as Vault does for this endpoint), as own keys.
    expect(Object.getOwnPropertyDescriptor(caps, '__proto__')?.value).toEqual(['read']);
    const one = await agent.write('sys/capabilities-self', { paths: ['__proto__'] });
    expect(one.capabilities).toEqual(['read']);
  });

  it('keeps KV keys named __proto__ through a JSON merge patch', async () => {
    // Raw HTTP: node-vault's axios copies a body object key by key, and drops `__proto__` itself.
    const put = (body: string, method = 'POST', headers: Record<string, string> = {}) =>
      rawRequest(vault.url, { method, path: '/v1/secret/data/proto', token: vault.rootToken, body, headers });
    expect((await put('{"data":{"keep":true,"n":{"__proto__":{"a":1}}}}')).status).toBe(200);
    expect((await put('{"data":{"__proto__":{"b":2},"constructor":"c","n":{"__proto__":{"b":2}}}}', 'PATCH', { 'Content-Type': 'application/merge-patch+json' })).status).toBe(200);
    const read = await root.read('secret/data/proto');
    expect(read.data.data).toEqual(JSON.parse('{"__proto__":{"b":2},"keep":true,"constructor":"c","n":{"__proto__":{"a":1,"b":2}}}'));
    expect(Object.hasOwn(read.data.data, '__proto__')).toBe(true);
  });

  it('keeps token metadata keys named __proto__', async () => {
    const created = await rawRequest(vault.url, { method: 'POST', path: '/v1/auth/token/create-orphan', token: vault.rootToken, body: '{"ttl":"5m","meta":{"__proto__":"p","constructor":"c"}}' });
    expect(created.status).toBe(200);
    const looked = await root.write('auth/token/lookup-accessor', { accessor: (created.json as { auth: { accessor: string } }).auth.accessor });
    expect(looked.data.meta).toEqual(JSON.parse('{"__proto__":"p","constructor":"c"}'));
  });
});
