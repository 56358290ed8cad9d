import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/lib/clock.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { failureOf, nodeVault, rawRequest } from './helpers.ts';

type Read = { data: { data: Record<string, unknown> | null; metadata: Record<string, unknown> } };

describe('development Vault KV v2 on any mount', () => {
  const clock = new ManualClock();
  let vault: DevVault;
  let root: ReturnType<typeof nodeVault>;
  beforeAll(async () => {
    vault = await startDevVault({ port: 0, clock, seed: { kv: { 'homelab/docker/registry': { user: 'u', pass: 'p' } } } });
    root = nodeVault(vault.url, vault.rootToken);
  });
  afterAll(async () => {
    await vault.close();
  });

  it('serves seeded data on an arbitrary mount name', async () => {
    const res = (await root.read('homelab/data/docker/registry')) as Read;
    expect(res.data.data).toEqual({ user: 'u', pass: 'p' });
    expect(res.data.metadata).toMatchObject({ version: 1, deletion_time: '', destroyed: false, created_time: '2026-01-01T00:00:00Z' });
  });

  it('versions writes and reads a given version', async () => {
    const w1 = (await root.write('kv/data/app/cfg', { data: { a: 1 } })) as { data: { version: number } };
    const w2 = (await root.write('kv/data/app/cfg', { data: { a: 2 } })) as { data: { version: number } };
    expect([w1.data.version, w2.data.version]).toEqual([1, 2]);
    expect(((await root.read('kv/data/app/cfg')) as Read).data.data).toEqual({ a: 2 });
    expect(((await root.read('kv/data/app/cfg?version=1')) as Read).data.data).toEqual({ a: 1 });
  });

  it('check-and-set', async () => {
    expect(await failureOf(root.write('kv/data/app/cfg', { data: { a: 3 }, options: { cas: 1 } }))).toEqual({
      status: 400,
      errors: ['check-and-set parameter did not match the current version'],
    });
    await expect(root.write('kv/data/app/cfg', { data: { a: 3 }, options: { cas: 2 } })).resolves.toBeTruthy();
    expect((await failureOf(root.write('kv/data/app/new', { data: {}, options: { cas: 1 } }))).status).toBe(400);
  });

  it('a write without data is 400', async () => {
    expect(await failureOf(root.write('kv/data/app/x', { nodata: true }))).toEqual({ status: 400, errors: ['no data provided'] });
  });

  it('a missing secret is 404 with an empty error list', async () => {
    expect(await failureOf(root.read('kv/data/app/missing'))).toEqual({ status: 404, errors: [] });
  });

  it('soft delete: 204, then 404 carrying the envelope with deletion_time; undelete restores', async () => {
    await root.write('kv/data/del/me', { data: { v: 1 } });
    clock.advance(1000);
    await expect(root.delete('kv/data/del/me')).resolves.toBe('');
    const raw = await rawRequest(vault.url, { path: '/v1/kv/data/del/me', token: vault.rootToken });
    expect(raw.status).toBe(404);
    expect((raw.json as Read).data.data).toBeNull();
    expect((raw.json as Read).data.metadata['deletion_time']).toBe('2026-01-01T00:00:01Z');
    await root.write('kv/undelete/del/me', { versions: [1] });
    expect(((await root.read('kv/data/del/me')) as Read).data.data).toEqual({ v: 1 });
    await root.write('kv/destroy/del/me', { versions: [1] });
    const destroyed = await rawRequest(vault.url, { path: '/v1/kv/data/del/me', token: vault.rootToken });
    expect(destroyed.status).toBe(404);
    expect((destroyed.json as Read).data.metadata['destroyed']).toBe(true);
  });

  it('metadata: read, list with folders, delete everything', async () => {
    await root.write('kv/data/tree/a', { data: { x: 1 } });
    await root.write('kv/data/tree/b/c', { data: { x: 1 } });
    await root.write('kv/data/tree/b/d', { data: { x: 1 } });
    const meta = (await root.read('kv/metadata/tree/a')) as { data: Record<string, unknown> };
    expect(meta.data).toMatchObject({ current_version: 1, oldest_version: 1, max_versions: 0, versions: { '1': { destroyed: false } } });
    const list = (await root.list('kv/metadata/tree')) as { data: { keys: string[] } };
    expect(list.data.keys).toEqual(['a', 'b/']);
    const top = (await root.list('kv/metadata/')) as { data: { keys: string[] } };
    expect(top.data.keys).toEqual(expect.arrayContaining(['app/', 'tree/']));
    await root.delete('kv/metadata/tree/a');
    expect(await failureOf(root.read('kv/data/tree/a'))).toEqual({ status: 404, errors: [] });
    expect(await failureOf(root.list('kv/metadata/empty'))).toEqual({ status: 404, errors: [] });
  });

  it('patch merges with JSON merge patch and needs the merge-patch content type', async () => {
    await root.write('kv/data/p/x', { data: { keep: 1, drop: 2 } });
    await root.update('kv/data/p/x', { data: { drop: null, add: 3 } });
    expect(((await root.read('kv/data/p/x')) as Read).data.data).toEqual({ keep: 1, add: 3 });
    const wrongType = await rawRequest(vault.url, {
      method: 'PATCH',
      path: '/v1/kv/data/p/x',
      token: vault.rootToken,
      body: JSON.stringify({ data: { a: 1 } }),
      headers: { 'Content-Type': 'application/json' },
    });
    expect(wrongType.status).toBe(415);
    expect((await failureOf(root.update('kv/data/p/missing', { data: { a: 1 } }))).status).toBe(404);
  });

  it('keeps at most max_versions versions', async () => {
    await root.write('kv/metadata/ver/x', { max_versions: 2 });
    for (let i = 1; i <= 3; i++) await root.write('kv/data/ver/x', { data: { i } });
    const meta = (await root.read('kv/metadata/ver/x')) as { data: { oldest_version: number; versions: object } };
    expect(meta.data.oldest_version).toBe(2);
    expect(Object.keys(meta.data.versions)).toEqual(['2', '3']);
  });

  it('sys, auth and cubbyhole are not KV mounts', async () => {
    expect((await failureOf(root.read('sys/data/x'))).status).toBe(404);
    expect((await failureOf(root.read('cubbyhole/data/x'))).status).toBe(404);
  });
});
