import { beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../../src/db/open.ts';
import { createOutboxStore, type OutboxStore } from '../../../src/webhooks/outbox.ts';
import { insertEvent } from './helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
const A = 'http://a.example/hooks/agent';
const B = 'http://b.example/events';
let db: Db;
let store: OutboxStore;
let n = 0;

/** A pending event for `url`, due at `due`. */
const event = (url: string | null, due = T0): string => insertEvent(db, store, url, due);
const claim = (limit: number, room?: (url: string) => number, now = T0 + 1000) =>
  store.claimBatch({ now, dueBy: now, owner: `o${++n}`, leaseUntil: now + 60_000, limit, ...(room ? { room } : {}) });

beforeEach(() => {
  db = openDatabase(':memory:');
  store = createOutboxStore(db);
});

describe('outbox: claiming a batch', () => {
  it('leases up to `limit` due rows in one go, oldest first, counting an attempt on each', () => {
    const ids = [event(A, T0 + 3), event(B, T0 + 1), event(A, T0 + 2), event(B, T0 + 4)];
    event(A, T0 + 5_000); // not due yet
    const rows = claim(3);
    expect(rows.map((r) => r.id)).toEqual([ids[1], ids[2], ids[0]]);
    expect(new Set(rows.map((r) => r.lease_owner)).size).toBe(1);
    expect(rows.every((r) => r.state === 'delivering' && r.attempts === 1 && r.lease_expires_at === T0 + 61_000)).toBe(true);
    expect(claim(10).map((r) => r.id)).toEqual([ids[3]]);
    expect(claim(10)).toEqual([]);
  });

  it('takes no more rows for a URL than its room, and finds other targets behind a long backlog', () => {
    const backlog = Array.from({ length: 50 }, (_, i) => event(A, T0 + i));
    const other = event(B, T0 + 100);
    const rows = claim(10, (url) => (url === A ? 2 : 10));
    expect(rows.map((r) => r.id)).toEqual([backlog[0], backlog[1], other]);
    expect(claim(10, (url) => (url === A ? 0 : 10))).toEqual([]);
  });

  it('takes leases a crashed dispatcher left behind first, then rows without a URL like any other', () => {
    const crashed = event(A, T0);
    expect(store.claimNext({ now: T0, dueBy: T0, owner: 'crashed', leaseUntil: T0 + 500 })?.id).toBe(crashed);
    const orphan = event(null, T0 + 1);
    const due = event(A, T0 + 2);
    const rows = claim(2);
    expect(rows.map((r) => [r.id, r.attempts])).toEqual([[crashed, 2], [orphan, 1]]);
    expect(claim(5).map((r) => r.id)).toEqual([due]);
  });
});
