import { beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createLeases, type LeasesDeps } from '../../../src/webhooks/leases.ts';
import { createOutcomeBatch, type OutcomeBatch } from '../../../src/webhooks/outcome-batch.ts';
import { captureLogger, insertEvent, insertLeased } from './helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
const A = 'http://a.example/events';
const B = 'http://b.example/events';
let storage: Storage;
let store: Storage['outbox'];
let clock: ManualClock;
let outcomes: OutcomeBatch;

function leases(over: Partial<LeasesDeps> = {}) {
  return createLeases({ storage, audit: createAuditLog(storage), clock, log: captureLogger().log, leaseMs: 60_000, outcomes, ...over });
}

beforeEach(() => {
  storage = openSqliteStorage(':memory:');
  store = storage.outbox;
  clock = new ManualClock(T0 + 1_000);
  outcomes = createOutcomeBatch({ storage, audit: createAuditLog(storage), clock, log: captureLogger().log, flushIntervalMs: 60_000, flushBatch: 100 });
});

describe('dispatcher leases', () => {
  it("a claim commits the outcomes waiting in its transaction and leases due rows, none beyond a URL's room", async () => {
    const [sent] = await insertLeased(storage, 1, A, T0);
    const told = outcomes.record({ row: sent!, url: A, outcome: 'delivered', status: 200, reason: 'ok' });
    const dueA = [await insertEvent(storage, A, T0), await insertEvent(storage, A, T0 + 1)];
    const dueB = await insertEvent(storage, B, T0 + 2);

    const rows = await leases().claim(clock.now(), 10, (url) => (url === A ? 1 : 5));
    expect(rows.map((r) => r.id)).toEqual([dueA[0], dueB]);
    expect(rows.every((r) => r.state === 'delivering' && r.lease_expires_at === clock.now() + 60_000)).toBe(true);
    expect((await store.get(sent!.id))!.state).toBe('delivered');
    expect(await told).toBe('delivered');
    expect((await store.get(dueA[1]!))!.state).toBe('pending');
  });

  it('a claim that fails still commits the outcomes waiting, on their own, and throws', async () => {
    const [sent] = await insertLeased(storage, 1, A, T0);
    const told = outcomes.record({ row: sent!, url: A, outcome: 'dead', status: 410, error: 'HTTP 410', reason: 'gone' });
    const due = await insertEvent(storage, A, T0);
    // The claim's transaction fails (the outcomes still go through the real storage, on their own).
    const failing: Storage = Object.assign(Object.create(storage) as Storage, {
      transaction: () => Promise.reject(Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' })),
    });
    await expect(leases({ storage: failing }).claim(clock.now(), 10, () => 10)).rejects.toThrow(expect.objectContaining({ code: 'SQLITE_BUSY' }));
    expect(await told).toBe('dead');
    expect((await store.get(sent!.id))!.state).toBe('dead');
    expect((await store.get(due))!.state).toBe('pending');
  });

  it('release gives a leased row back, due at once and unleased', async () => {
    const [row] = await insertLeased(storage, 1, A, T0);
    await leases().release(row!);
    const back = (await store.get(row!.id))!;
    expect([back.state, back.next_attempt_at, back.lease_owner, back.lease_expires_at]).toEqual(['pending', clock.now(), null, null]);
  });
});
