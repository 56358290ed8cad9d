import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/lib/clock.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { failureOf, nodeVault } from './helpers.ts';

interface Auth {
  client_token: string;
  accessor: string;
  policies: string[];
  lease_duration: number;
  renewable: boolean;
  orphan: boolean;
}
type Created = { auth: Auth; warnings: string[] | null };

describe('development Vault token lifecycle', () => {
  let clock: ManualClock;
  let vault: DevVault;
  let root: ReturnType<typeof nodeVault>;

  beforeEach(async () => {
    clock = new ManualClock();
    vault = await startDevVault({ port: 0, clock, rootToken: 'root-token-for-tests' });
    root = nodeVault(vault.url, vault.rootToken);
    await root.write('sys/policies/acl/reader', { policy: 'path "secret/data/*" { capabilities = ["read"] }' });
  });
  afterEach(async () => {
    await vault.close();
  });

  const create = (body: Record<string, unknown>, as = root, path = 'auth/token/create-orphan') =>
    as.write(path, body) as Promise<Created>;
  const lookupSelf = (token: string) => nodeVault(vault.url, token).read('auth/token/lookup-self');

  it('issues hvs. tokens with random accessors, sorted policies and default added', async () => {
    const a = await create({ policies: ['reader'], ttl: '1h' });
    const b = await create({ policies: ['reader'], ttl: '1h' });
    expect(a.auth.client_token).toMatch(/^hvs\.[A-Za-z0-9]{20,}$/);
    expect(a.auth.accessor).toMatch(/^[A-Za-z0-9]{24}$/);
    expect(a.auth.client_token).not.toBe(b.auth.client_token);
    expect(a.auth.accessor).not.toBe(b.auth.accessor);
    expect(a.auth.policies).toEqual(['default', 'reader']);
    expect(a.auth).toMatchObject({ lease_duration: 3600, renewable: true, orphan: true, token_policies: ['default', 'reader'] });
  });

  it('expires a token at its TTL: 403 permission denied afterwards', async () => {
    const t = await create({ policies: ['reader'], ttl: '60s' });
    const info = (await lookupSelf(t.auth.client_token)) as { data: { ttl: number; expire_time: string } };
    expect(info.data.ttl).toBe(60);
    expect(info.data.expire_time).toBe('2026-01-01T00:01:00Z');
    clock.advance(59_000);
    expect(((await lookupSelf(t.auth.client_token)) as { data: { ttl: number } }).data.ttl).toBe(1);
    clock.advance(1_000);
    expect(await failureOf(lookupSelf(t.auth.client_token))).toEqual({ status: 403, errors: ['permission denied'] });
    expect(vault.listTokens().some((x) => x.accessor === t.auth.accessor)).toBe(false);
  });

  it('caps the TTL at explicit_max_ttl with a warning', async () => {
    const t = await create({ policies: ['reader'], ttl: '2h', explicit_max_ttl: '30m' });
    expect(t.auth.lease_duration).toBe(1800);
    expect(t.warnings).toEqual(['TTL of "2h" exceeded the effective max_ttl of "30m"; TTL value is capped accordingly']);
  });

  it('caps the TTL at the system max TTL', async () => {
    const t = await create({ policies: ['reader'], ttl: '1000h' });
    expect(t.auth.lease_duration).toBe(768 * 3600);
    expect(t.warnings?.[0]).toMatch(/exceeded the effective max_ttl of "768h"/);
  });

  it('renewal cannot pass the max TTL', async () => {
    const t = await create({ policies: ['reader'], ttl: '10m', explicit_max_ttl: '15m' });
    const client = nodeVault(vault.url, t.auth.client_token);
    clock.advance(8 * 60_000);
    const renewed = (await client.write('auth/token/renew-self', {})) as Created;
    expect(renewed.auth.lease_duration).toBe(7 * 60);
    expect(renewed.warnings?.[0]).toMatch(/capped accordingly/);
    clock.advance(7 * 60_000);
    expect((await failureOf(lookupSelf(t.auth.client_token))).status).toBe(403);
  });

  it('renew-self extends the lease by the creation TTL', async () => {
    const t = await create({ policies: ['reader'], ttl: '10m' });
    const client = nodeVault(vault.url, t.auth.client_token);
    clock.advance(9 * 60_000);
    const renewed = (await client.write('auth/token/renew-self', {})) as Created;
    expect(renewed.auth.lease_duration).toBe(600);
    clock.advance(9 * 60_000);
    expect(((await lookupSelf(t.auth.client_token)) as { data: { ttl: number } }).data.ttl).toBe(60);
  });

  it('refuses to renew a non-renewable token', async () => {
    const t = await create({ policies: ['reader'], ttl: '10m', renewable: false });
    expect(t.auth.renewable).toBe(false);
    const res = await failureOf(nodeVault(vault.url, t.auth.client_token).write('auth/token/renew-self', {}));
    expect(res).toEqual({ status: 400, errors: ['lease is not renewable'] });
  });

  it('num_uses: the last use succeeds, then the token is revoked', async () => {
    const t = await create({ policies: ['reader'], ttl: '1h', num_uses: 2 });
    const first = (await lookupSelf(t.auth.client_token)) as { data: { num_uses: number } };
    expect(first.data.num_uses).toBe(1);
    await expect(lookupSelf(t.auth.client_token)).resolves.toBeTruthy();
    expect((await failureOf(lookupSelf(t.auth.client_token))).status).toBe(403);
    expect(vault.listTokens().some((x) => x.accessor === t.auth.accessor)).toBe(false);
  });

  it('num_uses: a denied request still spends a use', async () => {
    const t = await create({ policies: ['reader'], ttl: '1h', num_uses: 2 });
    const client = nodeVault(vault.url, t.auth.client_token);
    expect((await failureOf(client.read('sys/policies/acl/reader'))).status).toBe(403);
    await expect(lookupSelf(t.auth.client_token)).resolves.toBeTruthy();
    expect((await failureOf(lookupSelf(t.auth.client_token))).status).toBe(403);
  });

  it('a use-limited token cannot create child tokens', async () => {
    await root.write('sys/policies/acl/creator', { policy: 'path "auth/token/create" { capabilities = ["update"] }' });
    const t = await create({ policies: ['creator'], ttl: '1h', num_uses: 5 });
    const res = await failureOf(create({ ttl: '1m' }, nodeVault(vault.url, t.auth.client_token), 'auth/token/create'));
    expect(res).toEqual({ status: 400, errors: ['restricted use token cannot generate child tokens'] });
  });

  it('revoke-accessor revokes the token; lookup of a revoked token is 403 / invalid accessor', async () => {
    const t = await create({ policies: ['reader'], ttl: '1h' });
    await expect(root.write('auth/token/revoke-accessor', { accessor: t.auth.accessor })).resolves.toBe('');
    expect((await failureOf(lookupSelf(t.auth.client_token))).status).toBe(403);
    expect(await failureOf(root.write('auth/token/lookup', { token: t.auth.client_token }))).toEqual({ status: 403, errors: ['bad token'] });
    expect(await failureOf(root.write('auth/token/lookup-accessor', { accessor: t.auth.accessor }))).toEqual({
      status: 400,
      errors: ['invalid accessor'],
    });
  });

  it('revoke-accessor of an unknown accessor answers 200 with a warning', async () => {
    const res = (await root.write('auth/token/revoke-accessor', { accessor: 'nope' })) as { warnings: string[] };
    expect(res.warnings).toEqual(['No token found with this accessor']);
  });

  it('lookup-accessor hides the token id', async () => {
    const t = await create({ policies: ['reader'], ttl: '1h', meta: { request: 'req_1' }, display_name: 'jit req_1' });
    const res = (await root.write('auth/token/lookup-accessor', { accessor: t.auth.accessor })) as { data: Record<string, unknown> };
    expect(res.data).toMatchObject({
      id: '',
      accessor: t.auth.accessor,
      policies: ['default', 'reader'],
      meta: { request: 'req_1' },
      display_name: 'token-jit-req-1',
      orphan: true,
      ttl: 3600,
      path: 'auth/token/create-orphan',
    });
    expect(JSON.stringify(res)).not.toContain(t.auth.client_token);
  });

  it('revoking a parent revokes its children, but not orphans it created', async () => {
    await root.write('sys/policies/acl/creator', {
      policy: 'path "auth/token/create" { capabilities = ["update"] }\npath "auth/token/create-orphan" { capabilities = ["update"] }',
    });
    const parent = await create({ policies: ['creator', 'reader'], ttl: '1h' });
    const asParent = nodeVault(vault.url, parent.auth.client_token);
    const child = await create({ policies: ['reader'], ttl: '1h' }, asParent, 'auth/token/create');
    const grandchild = await create({ ttl: '1h' }, nodeVault(vault.url, child.auth.client_token), 'auth/token/create').catch(() => undefined);
    const orphan = await create({ policies: ['reader'], ttl: '1h' }, asParent, 'auth/token/create-orphan');
    expect(child.auth.orphan).toBe(false);
    expect(orphan.auth.orphan).toBe(true);
    expect(grandchild).toBeUndefined(); // the child holds no token-create capability
    const snap = vault.listTokens().find((t) => t.accessor === child.auth.accessor);
    expect(snap?.parentAccessor).toBe(parent.auth.accessor);

    await root.write('auth/token/revoke-accessor', { accessor: parent.auth.accessor });
    expect((await failureOf(lookupSelf(child.auth.client_token))).status).toBe(403);
    await expect(lookupSelf(orphan.auth.client_token)).resolves.toBeTruthy();
  });

  it('a child expires with its parent', async () => {
    await root.write('sys/policies/acl/creator', { policy: 'path "auth/token/create" { capabilities = ["update"] }' });
    const parent = await create({ policies: ['creator', 'reader'], ttl: '1m' });
    const child = await create({ ttl: '1h' }, nodeVault(vault.url, parent.auth.client_token), 'auth/token/create');
    expect(child.auth.lease_duration).toBe(3600);
    clock.advance(61_000);
    expect((await failureOf(lookupSelf(child.auth.client_token))).status).toBe(403);
  });

  it('revoke-self and revoke (by token) revoke the token tree', async () => {
    const a = await create({ policies: ['reader'], ttl: '1h' });
    await nodeVault(vault.url, a.auth.client_token).write('auth/token/revoke-self', {});
    expect((await failureOf(lookupSelf(a.auth.client_token))).status).toBe(403);
    const b = await create({ policies: ['reader'], ttl: '1h' });
    await root.write('auth/token/revoke', { token: b.auth.client_token });
    expect((await failureOf(lookupSelf(b.auth.client_token))).status).toBe(403);
  });

  it('non-root callers may only give policies they hold, unless they have sudo on the endpoint', async () => {
    await root.write('sys/policies/acl/minter', { policy: 'path "auth/token/create-orphan" { capabilities = ["update"] }' });
    await root.write('sys/policies/acl/minter-sudo', {
      policy: 'path "auth/token/create-orphan" { capabilities = ["update", "sudo"] }',
    });
    const plain = nodeVault(vault.url, (await create({ policies: ['minter'], ttl: '1h' })).auth.client_token);
    const sudo = nodeVault(vault.url, (await create({ policies: ['minter-sudo'], ttl: '1h' })).auth.client_token);

    expect(await failureOf(create({ policies: ['reader'], ttl: '5m' }, plain))).toEqual({
      status: 400,
      errors: ['child policies must be subset of parent'],
    });
    const subset = await create({ policies: ['minter'], ttl: '5m' }, plain);
    expect(subset.auth.policies).toEqual(['default', 'minter']);
    const granted = await create({ policies: ['reader'], ttl: '5m' }, sudo);
    expect(granted.auth.policies).toEqual(['default', 'reader']);
    expect(await failureOf(create({ policies: ['root'], ttl: '5m' }, sudo))).toEqual({
      status: 400,
      errors: ['root tokens may not be created without parent token being root'],
    });
  });

  it('sudo on auth/token/create does not help on create-orphan (sudo is per endpoint)', async () => {
    await root.write('sys/policies/acl/mixed', {
      policy: 'path "auth/token/create" { capabilities = ["update", "sudo"] }\npath "auth/token/create-orphan" { capabilities = ["update"] }',
    });
    const t = nodeVault(vault.url, (await create({ policies: ['mixed'], ttl: '1h' })).auth.client_token);
    expect((await failureOf(create({ policies: ['reader'], ttl: '5m' }, t))).status).toBe(400);
    await expect(create({ policies: ['reader'], ttl: '5m' }, t, 'auth/token/create')).resolves.toBeTruthy();
  });

  it('creating a token with a nonexistent policy only warns', async () => {
    const t = await create({ policies: ['ghost'], ttl: '5m' });
    expect(t.auth.policies).toEqual(['default', 'ghost']);
    expect(t.warnings).toEqual(['Policy "ghost" does not exist']);
  });

  it('a deleted policy referenced by a token acts as an empty policy', async () => {
    await root.write('secret/data/app', { data: { v: 1 } });
    const t = await create({ policies: ['reader'], ttl: '1h' });
    const client = nodeVault(vault.url, t.auth.client_token);
    await expect(client.read('secret/data/app')).resolves.toBeTruthy();
    await root.delete('sys/policies/acl/reader');
    expect((await failureOf(client.read('secret/data/app'))).status).toBe(403);
    await root.write('sys/policies/acl/reader', { policy: 'path "secret/data/*" { capabilities = ["read"] }' });
    await expect(client.read('secret/data/app')).resolves.toBeTruthy();
  });

  it('no_default_policy leaves default off', async () => {
    const t = await create({ policies: ['reader'], ttl: '5m', no_default_policy: true });
    expect(t.auth.policies).toEqual(['reader']);
  });

  it('root tokens never expire and report renewable false', async () => {
    const res = (await root.read('auth/token/lookup-self')) as { data: Record<string, unknown> };
    expect(res.data).toMatchObject({ policies: ['root'], expire_time: null, ttl: 0, renewable: false, orphan: true });
    clock.advance(400 * 24 * 3600_000);
    await expect(root.read('auth/token/lookup-self')).resolves.toBeTruthy();
  });

  it('rejects bad token parameters with 400', async () => {
    expect(await failureOf(create({ ttl: 'soon' }))).toEqual({ status: 400, errors: ['time: invalid duration "soon"'] });
    expect(await failureOf(create({ ttl: '-5s' }))).toEqual({ status: 400, errors: ['ttl must be positive'] });
    expect(await failureOf(create({ num_uses: -1 }))).toEqual({ status: 400, errors: ['number of uses cannot be negative'] });
    expect(await failureOf(create({ policies: ['response-wrapping'] }))).toEqual({
      status: 400,
      errors: ['cannot assign policy "response-wrapping"'],
    });
  });

  describe('response wrapping', () => {
    it('wraps any response with X-Vault-Wrap-TTL and unwraps it exactly once', async () => {
      const wrapped = (await root.write(
        'auth/token/create-orphan',
        { policies: ['reader'], ttl: '10m' },
        { headers: { 'X-Vault-Wrap-TTL': '5m' } },
      )) as { auth: null; wrap_info: { token: string; accessor: string; ttl: number; creation_path: string; wrapped_accessor: string } };
      expect(wrapped.auth).toBeNull();
      expect(wrapped.wrap_info).toMatchObject({ ttl: 300, creation_path: 'auth/token/create-orphan' });

      const unwrapper = nodeVault(vault.url, wrapped.wrap_info.token);
      const inner = (await unwrapper.write('sys/wrapping/unwrap', {})) as Created;
      expect(inner.auth.accessor).toBe(wrapped.wrap_info.wrapped_accessor);
      await expect(lookupSelf(inner.auth.client_token)).resolves.toBeTruthy();

      expect(await failureOf(unwrapper.write('sys/wrapping/unwrap', {}))).toEqual({
        status: 400,
        errors: ['wrapping token is not valid or does not exist'],
      });
      expect((await failureOf(root.write('sys/wrapping/unwrap', { token: wrapped.wrap_info.token }))).status).toBe(400);
    });

    it('sys/wrapping/wrap wraps arbitrary data; a third party unwraps it once', async () => {
      const wrapped = (await root.write('sys/wrapping/wrap', { secret: 's3' }, { headers: { 'X-Vault-Wrap-TTL': '60' } })) as {
        wrap_info: { token: string; ttl: number };
      };
      expect(wrapped.wrap_info.ttl).toBe(60);
      const other = await create({ policies: ['reader'], ttl: '1h' });
      const asOther = nodeVault(vault.url, other.auth.client_token);
      const first = (await asOther.write('sys/wrapping/unwrap', { token: wrapped.wrap_info.token })) as { data: unknown };
      expect(first.data).toEqual({ secret: 's3' });
      expect((await failureOf(asOther.write('sys/wrapping/unwrap', { token: wrapped.wrap_info.token }))).status).toBe(400);
    });

    it('a wrapping token expires at its TTL', async () => {
      const wrapped = (await root.write('sys/wrapping/wrap', { a: 1 }, { headers: { 'X-Vault-Wrap-TTL': '1m' } })) as {
        wrap_info: { token: string };
      };
      clock.advance(60_000);
      expect(await failureOf(root.write('sys/wrapping/unwrap', { token: wrapped.wrap_info.token }))).toEqual({
        status: 400,
        errors: ['wrapping token is not valid or does not exist'],
      });
    });

    it('sys/wrapping/wrap without a wrap TTL and a bad wrap TTL are 400', async () => {
      expect((await failureOf(root.write('sys/wrapping/wrap', { a: 1 }))).errors).toEqual([
        'endpoint requires response wrapping to be used',
      ]);
      const bad = await failureOf(root.write('sys/wrapping/wrap', { a: 1 }, { headers: { 'X-Vault-Wrap-TTL': 'soon' } }));
      expect(bad.status).toBe(400);
      expect(String((bad.errors as string[])[0])).toMatch(/^error parsing X-Vault-Wrap-TTL header/);
    });
  });

  describe('AppRole', () => {
    let approleVault: DevVault;
    beforeEach(async () => {
      approleVault = await startDevVault({
        port: 0,
        clock,
        approle: { roleId: 'role-1', secretId: 'secret-1', policies: ['broker'], tokenTtlSeconds: 600, tokenMaxTtlSeconds: 1800 },
      });
    });
    afterEach(async () => {
      await approleVault.close();
    });

    it('logs in with the right ids and returns an orphan, renewable token', async () => {
      const res = (await nodeVault(approleVault.url).write('auth/approle/login', { role_id: 'role-1', secret_id: 'secret-1' })) as {
        auth: Auth & { metadata: Record<string, string> };
      };
      expect(res.auth).toMatchObject({
        policies: ['broker', 'default'],
        lease_duration: 600,
        renewable: true,
        orphan: true,
        metadata: { role_name: 'jit-broker' },
      });
      const renewed = (await nodeVault(approleVault.url, res.auth.client_token).write('auth/token/renew-self', {})) as Created;
      expect(renewed.auth.lease_duration).toBe(600);
    });

    it('rejects wrong ids with 400 invalid role or secret ID', async () => {
      const anon = nodeVault(approleVault.url);
      for (const body of [
        { role_id: 'role-1', secret_id: 'wrong' },
        { role_id: 'wrong', secret_id: 'secret-1' },
      ]) {
        expect(await failureOf(anon.write('auth/approle/login', body))).toEqual({ status: 400, errors: ['invalid role or secret ID'] });
      }
      expect(await failureOf(anon.write('auth/approle/login', {}))).toEqual({ status: 400, errors: ['missing role_id'] });
    });
  });
});
