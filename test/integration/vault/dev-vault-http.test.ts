import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { failureOf, nodeVault, rawRequest } from './helpers.ts';

/** Sends raw bytes and returns everything the server answers before closing. */
function rawSocket(url: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1', () => socket.end(text));
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
  });
}

describe('development Vault HTTP contract', () => {
  let vault: DevVault;
  beforeAll(async () => {
    vault = await startDevVault({ port: 0, rootToken: 'dev-root' });
  });
  afterAll(async () => {
    await vault.close();
  });

  it('binds loopback on the requested port and refuses other hosts', async () => {
    expect(vault.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await expect(startDevVault({ port: 0, host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });

  it('answers sys/health unenveloped, without a token', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/sys/health' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ initialized: true, sealed: false, standby: false });
    expect(res.json).not.toHaveProperty('request_id');
    expect(String((res.json as { version: string }).version)).toContain('jit-dev-vault');
    const head = await rawRequest(vault.url, { method: 'HEAD', path: '/v1/sys/health' });
    expect([head.status, head.text]).toEqual([200, '']);
  });

  it('wraps successes in Vault\'s envelope', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/auth/token/lookup-self', token: 'dev-root' });
    expect(res.status).toBe(200);
    expect(Object.keys(res.json as object).sort()).toEqual(
      ['auth', 'data', 'lease_duration', 'lease_id', 'mount_type', 'renewable', 'request_id', 'warnings', 'wrap_info'].sort(),
    );
    expect((res.json as { request_id: string }).request_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('accepts Authorization: Bearer as well as X-Vault-Token', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/auth/token/lookup-self', headers: { Authorization: 'Bearer dev-root' } });
    expect(res.status).toBe(200);
  });

  it('malformed JSON → 400 envelope', async () => {
    const res = await rawRequest(vault.url, { method: 'POST', path: '/v1/sys/policies/acl/x', token: 'dev-root', body: '{"policy": ' });
    expect(res.status).toBe(400);
    expect((res.json as { errors: string[] }).errors[0]).toMatch(/^failed to parse JSON input: /);
  });

  it('a JSON body that is not an object → 400 envelope', async () => {
    const res = await rawRequest(vault.url, { method: 'POST', path: '/v1/auth/token/create', token: 'dev-root', body: '[1,2]' });
    expect(res.status).toBe(400);
    expect(res.json).toEqual({ errors: ['failed to parse JSON input: the request body must be a JSON object'] });
  });

  it('unknown paths → 404 envelope', async () => {
    expect(await rawRequest(vault.url, { path: '/v1/sys/nope', token: 'dev-root' })).toMatchObject({
      status: 404,
      json: { errors: ['unsupported path'] },
    });
    expect(await rawRequest(vault.url, { path: '/v1/auth/userpass/login/bob', token: 'dev-root' })).toMatchObject({
      status: 404,
      json: { errors: ['no handler for route "auth/userpass/login/bob". route entry not found.'] },
    });
    expect(await rawRequest(vault.url, { path: '/v1/secret/nodata/x', token: 'dev-root' })).toMatchObject({ status: 404 });
    expect(await rawRequest(vault.url, { path: '/not-v1' })).toMatchObject({ status: 404, json: { errors: [] } });
  });

  it('missing token → 403 permission denied', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/auth/token/lookup-self' });
    expect(res).toMatchObject({ status: 403, json: { errors: ['permission denied'] } });
  });

  it('wrong token → 403 permission denied, without echoing the token', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/secret/data/x', token: 'hvs.not-a-real-token-at-all' });
    expect(res).toMatchObject({ status: 403, json: { errors: ['permission denied'] } });
    expect(res.text).not.toContain('not-a-real-token');
  });

  it('unsupported operations → 405', async () => {
    const res = await rawRequest(vault.url, { method: 'DELETE', path: '/v1/auth/token/create', token: 'dev-root' });
    expect(res).toMatchObject({ status: 405, json: { errors: ['unsupported operation'] } });
    const opts = await rawRequest(vault.url, { method: 'OPTIONS', path: '/v1/sys/health' });
    expect(opts.status).toBe(405);
  });

  it('the LIST verb (which Node cannot parse) gets a 400 JSON answer and the server keeps serving', async () => {
    const reply = await rawSocket(vault.url, 'LIST /v1/sys/policies/acl HTTP/1.1\r\nHost: x\r\nX-Vault-Token: dev-root\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect(reply).toContain('?list=true');
    const keys = (await nodeVault(vault.url, 'dev-root').list('sys/policies/acl')) as { data: { keys: string[] } };
    expect(keys.data.keys).toEqual(['default', 'root']);
  });

  it.each([
    ['an absolute URL that does not parse', 'GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['garbage instead of HTTP', 'hello vault\r\n\r\n'],
    ['a truncated JSON body', 'POST /v1/sys/wrapping/wrap HTTP/1.1\r\nHost: x\r\nX-Vault-Token: dev-root\r\nContent-Length: 50\r\n\r\n{"a":'],
  ])('survives %s with a 4xx or a closed connection', async (_name, text) => {
    const reply = await rawSocket(vault.url, text);
    if (reply !== '') expect(reply).toMatch(/^HTTP\/1\.1 4\d\d/);
    expect((await rawRequest(vault.url, { path: '/v1/sys/health' })).status).toBe(200);
    expect(vault.requests().filter((r) => r.status >= 500)).toEqual([]);
  });

  it('an invalid ?list value → 400', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/sys/policies/acl?list=maybe', token: 'dev-root' });
    expect(res.status).toBe(400);
  });

  it('a body over 32 MB → 413, and the server keeps serving', async () => {
    const big = Buffer.alloc(32 * 1024 * 1024 + 10, 0x20);
    const res = await rawRequest(vault.url, { method: 'POST', path: '/v1/sys/wrapping/wrap', token: 'dev-root', body: big });
    expect(res).toMatchObject({ status: 413, json: { errors: ['http: request body too large'] } });
    expect((await rawRequest(vault.url, { path: '/v1/sys/health' })).status).toBe(200);
  });

  it('bad percent-encoding in the path → 400', async () => {
    const res = await rawRequest(vault.url, { path: '/v1/secret/data/%E0%A4%A', token: 'dev-root' });
    expect(res.status).toBe(400);
  });

  it('policies: HCL and JSON, lowercased names, parse errors as 400', async () => {
    const root = nodeVault(vault.url, 'dev-root');
    await root.write('sys/policies/acl/Mixed-Case', { policy: 'path "a/*" { capabilities = ["read"] }' });
    const read = (await root.read('sys/policies/acl/mixed-case')) as { data: { name: string; policy: string } };
    expect(read.data).toEqual({ name: 'mixed-case', policy: 'path "a/*" { capabilities = ["read"] }' });
    expect(await failureOf(root.write('sys/policies/acl/bad', { policy: 'path "a" { capabilities = ["fly"] }' }))).toEqual({
      status: 400,
      errors: ['failed to parse policy: path "a": invalid capability "fly"'],
    });
    expect(await failureOf(root.write('sys/policies/acl/bad', { policy: 'foo "a" {}' }))).toEqual({
      status: 400,
      errors: ['failed to parse policy: invalid key "foo" on line 1'],
    });
    expect(await failureOf(root.write('sys/policies/acl/bad', { policy: '' }))).toEqual({
      status: 400,
      errors: ["'policy' parameter not supplied or empty"],
    });
    expect((await failureOf(root.write('sys/policies/acl/root', { policy: 'path "a" {}' }))).status).toBe(400);
    expect((await failureOf(root.delete('sys/policies/acl/default'))).status).toBe(400);
    expect(await failureOf(root.read('sys/policies/acl/absent'))).toEqual({ status: 404, errors: [] });
    await expect(root.delete('sys/policies/acl/absent')).resolves.toBe('');
    await root.delete('sys/policies/acl/mixed-case');
  });

  it('a policy may be sent base64-encoded', async () => {
    const root = nodeVault(vault.url, 'dev-root');
    const text = 'path "b64/*" { capabilities = ["list"] }';
    await root.write('sys/policies/acl/b64', { policy: Buffer.from(text).toString('base64') });
    expect(vault.policyText('b64')).toBe(text);
    await root.delete('sys/policies/acl/b64');
  });

  it('sys/capabilities-self reports capabilities, root and deny', async () => {
    const root = nodeVault(vault.url, 'dev-root');
    await root.write('sys/policies/acl/caps', {
      policy: 'path "secret/data/app/*" { capabilities = ["read", "list", "update"] }\npath "secret/data/app/x" { capabilities = ["deny"] }',
    });
    const t = (await root.write('auth/token/create-orphan', { policies: ['caps'], ttl: '5m' })) as { auth: { client_token: string } };
    const res = (await nodeVault(vault.url, t.auth.client_token).write('sys/capabilities-self', {
      paths: ['secret/data/app/y', 'secret/data/app/x', 'cubbyhole/foo', 'sys/mounts'],
    })) as Record<string, unknown>;
    expect(res['secret/data/app/y']).toEqual(['list', 'read', 'update']);
    expect(res['secret/data/app/x']).toEqual(['deny']);
    expect(res['cubbyhole/foo']).toEqual(['create', 'delete', 'list', 'read', 'update']);
    expect(res['sys/mounts']).toEqual(['deny']);
    expect(res).not.toHaveProperty('capabilities');
    const one = (await root.write('sys/capabilities-self', { paths: ['anything'] })) as { capabilities: string[]; data: object };
    expect(one.capabilities).toEqual(['root']);
    expect(one.data).toEqual({ anything: ['root'], capabilities: ['root'] });
    await root.delete('sys/policies/acl/caps');
  });

  it('sealed: 503 "Vault is sealed" everywhere but sys/health', async () => {
    vault.setSealed(true);
    try {
      const health = await rawRequest(vault.url, { path: '/v1/sys/health' });
      expect(health).toMatchObject({ status: 503, json: { sealed: true } });
      expect(await rawRequest(vault.url, { path: '/v1/auth/token/lookup-self', token: 'dev-root' })).toMatchObject({
        status: 503,
        json: { errors: ['Vault is sealed'] },
      });
      expect((await rawRequest(vault.url, { path: '/v1/sys/health?sealedcode=200' })).status).toBe(200);
    } finally {
      vault.setSealed(false);
    }
  });

  it('keeps a request log without secrets', async () => {
    await rawRequest(vault.url, { path: '/v1/auth/token/lookup/hvs.SomeTokenInTheUrl123', token: 'dev-root' });
    const log = vault.requests();
    const last = log[log.length - 1]!;
    expect(last.path).toBe('/v1/auth/token/lookup/hvs.[redacted]');
    expect(JSON.stringify(log)).not.toContain('dev-root');
    expect(JSON.stringify(log)).not.toContain('SomeTokenInTheUrl123');
  });
});
