import { beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { insertEvent } from './helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
const A = 'http://a.example/hooks/agent';
const B = 'http://b.example/events';
let storage: Storage;
let store: Storage['outbox'];
let n = 0;

/** A pending event for `url`, due at `due`. */
const event = (url: string | null, due = T0): Promise<string> => insertEvent(storage, url, due);
const claim = (limit: number, room?: (url: string) => number, now = T0 + 1000) =>
  store.claim({ now, dueBy: now, owner: `o${++n}`, leaseUntil: now + 60_000, limit, ...(room ? { room } : {}) });

beforeEach(() => {
  storage = openSqliteStorage(':memory:');
  store = storage.outbox;
});

describe('outbox: claiming a batch', () => {
  it('leases up to `limit` due rows in one go, oldest first, counting an attempt on each', async () => {
    const ids = [await event(A, T0 + 3), await event(B, T0 + 1), await event(A, T0 + 2), await event(B, T0 + 4)];
    await event(A, T0 + 5_000); // not due yet
    const rows = await claim(3);
    expect(rows.map((r) => r.id)).toEqual([ids[1], ids[2], ids[0]]);
    expect(new Set(rows.map((r) => r.lease_owner)).size).toBe(1);
    expect(rows.every((r) => r.state === 'delivering' && r.attempts === 1 && r.lease_expires_at === T0 + 61_000)).toBe(true);
    expect((await claim(10)).map((r) => r.id)).toEqual([ids[3]]);
    expect(await claim(10)).toEqual([]);
  });

  it('takes no more rows for a URL than its room, and finds other targets behind a long backlog', async () => {
    const backlog: string[] = [];
    for (let i = 0; i < 50; i++) backlog.push(await event(A, T0 + i));
    const other = await event(B, T0 + 100);
    const rows = await claim(10, (url) => (url === A ? 2 : 10));
    expect(rows.map((r) => r.id)).toEqual([backlog[0], backlog[1], other]);
    expect(await claim(10, (url) => (url === A ? 0 : 10))).toEqual([]);
  });

  it('takes leases a crashed dispatcher left behind first, then rows without a URL like any other', async () => {
    const crashed = await event(A, T0);
    expect((await store.claim({ now: T0, dueBy: T0, owner: 'crashed', leaseUntil: T0 + 500, limit: 1 }))[0]?.id).toBe(crashed);
    const orphan = await event(null, T0 + 1);
    const due = await event(A, T0 + 2);
    const rows = await claim(2);
    expect(rows.map((r) => [r.id, r.attempts])).toEqual([[crashed, 2], [orphan, 1]]);
    expect((await claim(5)).map((r) => r.id)).toEqual([due]);
  });
});
