import { beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { openDatabase, type Db } from '../../../src/db/open.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createLeases, type LeasesDeps } from '../../../src/webhooks/leases.ts';
import { createOutcomeBatch, type OutcomeBatch } from '../../../src/webhooks/outcome-batch.ts';
import { createOutboxStore, type OutboxStore } from '../../../src/webhooks/outbox.ts';
import { captureLogger, insertEvent, insertLeased } from './helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
const A = 'http://a.example/events';
const B = 'http://b.example/events';
let db: Db;
let store: OutboxStore;
let clock: ManualClock;
let outcomes: OutcomeBatch;

function leases(over: Partial<LeasesDeps> = {}) {
  return createLeases({ db, store, clock, log: captureLogger().log, leaseMs: 60_000, outcomes, ...over });
}

beforeEach(() => {
  db = openDatabase(':memory:');
  store = createOutboxStore(db);
  clock = new ManualClock(T0 + 1_000);
  outcomes = createOutcomeBatch({ db, store, audit: createAuditLog(db), clock, log: captureLogger().log, flushIntervalMs: 60_000, flushBatch: 100 });
});

describe('dispatcher leases', () => {
  it("a claim commits the outcomes waiting in its transaction and leases due rows, none beyond a URL's room", async () => {
    const [sent] = insertLeased(db, store, 1, A, T0);
    const told = outcomes.record({ row: sent!, url: A, outcome: 'delivered', status: 200, reason: 'ok' });
    const dueA = [insertEvent(db, store, A, T0), insertEvent(db, store, A, T0 + 1)];
    const dueB = insertEvent(db, store, B, T0 + 2);

    const rows = leases().claim(clock.now(), 10, (url) => (url === A ? 1 : 5));
    expect(rows.map((r) => r.id)).toEqual([dueA[0], dueB]);
    expect(rows.every((r) => r.state === 'delivering' && r.lease_expires_at === clock.now() + 60_000)).toBe(true);
    expect(store.get(sent!.id)!.state).toBe('delivered');
    expect(await told).toBe('delivered');
    expect(store.get(dueA[1]!)!.state).toBe('pending');
  });

  it('a claim that fails still commits the outcomes waiting, on their own, and throws', async () => {
    const [sent] = insertLeased(db, store, 1, A, T0);
    const told = outcomes.record({ row: sent!, url: A, outcome: 'dead', status: 410, error: 'HTTP 410', reason: 'gone' });
    const due = insertEvent(db, store, A, T0);
    const failing: LeasesDeps['store'] = {
      addressUnresolved: store.addressUnresolved,
      release: store.release,
      claimBatch: () => {
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      },
    };
    expect(() => leases({ store: failing }).claim(clock.now(), 10, () => 10)).toThrow(expect.objectContaining({ code: 'SQLITE_BUSY' }));
    expect(await told).toBe('dead');
    expect(store.get(sent!.id)!.state).toBe('dead');
    expect(store.get(due)!.state).toBe('pending');
  });

  it('release gives a leased row back, due at once and unleased', () => {
    const [row] = insertLeased(db, store, 1, A, T0);
    leases().release(row!);
    const back = store.get(row!.id)!;
    expect([back.state, back.next_attempt_at, back.lease_owner, back.lease_expires_at]).toEqual(['pending', clock.now(), null, null]);
  });
});
