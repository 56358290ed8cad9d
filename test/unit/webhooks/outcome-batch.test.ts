import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import type { Storage, Transaction } from '../../../src/storage/storage.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import type { Settled } from '../../../src/webhooks/attempt.ts';
import { createOutcomeBatch, type OutcomeBatchDeps } from '../../../src/webhooks/outcome-batch.ts';
import type { OutboxRow } from '../../../src/webhooks/outbox.ts';
import { captureLogger, insertLeased } from './helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
const URL_A = 'http://a.example/events';
let storage: Storage;
let db: Db;
let store: Storage['outbox'];
let clock: ManualClock;

/** `count` events, leased (state `delivering`), as the dispatcher holds them while sending. */
const leased = (count: number): Promise<OutboxRow[]> => insertLeased(storage, count, URL_A, T0);

const delivered = (row: OutboxRow): Settled => ({ row, url: URL_A, outcome: 'delivered', status: 204, reason: 'ok' });
const retried = (row: OutboxRow): Settled => ({ row, url: URL_A, outcome: 'retried', status: 503, error: 'HTTP 503', reason: 'http_503', nextAttemptAt: T0 + 5_000 });
const dead = (row: OutboxRow): Settled => ({ row, url: URL_A, outcome: 'dead', status: 410, error: 'HTTP 410 — gone', reason: 'gone' });

const states = async (rows: OutboxRow[]) => Promise.all(rows.map(async (r) => (await store.get(r.id))!.state));
const auditEvents = () => (db.prepare("SELECT event, data FROM audit_log WHERE event LIKE 'webhook.%' ORDER BY seq").all() as { event: string; data: string }[]);

function batch(over: Partial<OutcomeBatchDeps> = {}) {
  const logs = captureLogger();
  const counted: string[] = [];
  const b = createOutcomeBatch({
    storage, audit: createAuditLog(storage), clock, log: logs.log,
    onOutcome: (outcome) => counted.push(outcome),
    flushIntervalMs: 60_000, flushBatch: 100,
    ...over,
  });
  return { b, counted, logs };
}

beforeEach(() => {
  storage = openSqliteStorage(':memory:');
  db = sqliteDatabase(storage);
  store = storage.outbox;
  clock = new ManualClock(T0 + 1_000);
});

describe('outcome batch', () => {
  it('keeps outcomes waiting until flush, then commits each with its audit entry and tells each waiter', async () => {
    const rows = await leased(3);
    const { b, counted } = batch();
    const told = [b.record(delivered(rows[0]!)), b.record(retried(rows[1]!)), b.record(dead(rows[2]!))];
    expect(await states(rows)).toEqual(['delivering', 'delivering', 'delivering']);
    expect(auditEvents()).toEqual([]);
    expect(counted).toEqual([]);

    await b.flush();
    expect(await states(rows)).toEqual(['delivered', 'pending', 'dead']);
    expect((await store.get(rows[1]!.id))!.next_attempt_at).toBe(T0 + 5_000);
    expect(auditEvents().map((e) => [e.event, JSON.parse(e.data).event_id])).toEqual([
      ['webhook.delivered', rows[0]!.id],
      ['webhook.retry', rows[1]!.id],
      ['webhook.dead', rows[2]!.id],
    ]);
    expect(await Promise.all(told)).toEqual(['delivered', 'retried', 'dead']);
    expect(counted).toEqual(['delivered', 'retried', 'dead']);
  });

  it('commits at once, without waiting for the timer, when flushBatch outcomes are waiting', async () => {
    const rows = await leased(3);
    const { b } = batch({ flushBatch: 2 });
    void b.record(delivered(rows[0]!));
    expect(await states(rows)).toEqual(['delivering', 'delivering', 'delivering']);
    // The second outcome starts the commit at once; it settles when committed.
    await b.record(delivered(rows[1]!));
    expect(await states(rows)).toEqual(['delivered', 'delivered', 'delivering']);
  });

  it('commits what is waiting once flushIntervalMs has passed', async () => {
    const [row] = await leased(1);
    const { b } = batch({ flushIntervalMs: 5 });
    const told = b.record(delivered(row!));
    expect((await store.get(row!.id))!.state).toBe('delivering');
    expect(await told).toBe('delivered');
    expect((await store.get(row!.id))!.state).toBe('delivered');
  });

  it('a batch whose write throws writes nothing and tells every waiter the same outcome, lost', async () => {
    const rows = await leased(3);
    // The retry's write fails inside the batch's transaction.
    const failingTx = (tx: Transaction) =>
      ({
        audit: tx.audit,
        outbox: {
          ...tx.outbox,
          markRetry: () => Promise.reject(Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' })),
        },
        afterCommit: (fn: () => void) => tx.afterCommit(fn),
        afterRollback: (fn: () => void) => tx.afterRollback(fn),
      }) as unknown as Transaction;
    const failing: Storage = Object.assign(Object.create(storage) as Storage, {
      transaction: <T>(fn: (tx: Transaction) => Promise<T>) => storage.transaction((tx) => fn(failingTx(tx))),
    });
    const { b, counted, logs } = batch({ storage: failing });
    const told = [b.record(delivered(rows[0]!)), b.record(retried(rows[1]!)), b.record(dead(rows[2]!))];
    await b.flush();
    expect(await Promise.all(told)).toEqual(['lost', 'lost', 'lost']);
    // The first row's write was rolled back with the rest: every row is still leased, to be sent again after its lease.
    expect(await Promise.all(rows.map(async (r) => [(await store.get(r.id))!.state, (await store.get(r.id))!.lease_owner]))).toEqual(rows.map((r) => ['delivering', r.lease_owner]));
    expect(auditEvents()).toEqual([]);
    expect(counted).toEqual([]);
    expect(logs.text()).toContain('could not record webhook outcomes');
    for (const r of rows) expect(logs.text()).toContain(r.id);
  });

  it('an outcome whose lease another dispatcher took over is lost; the others in its batch are committed', async () => {
    const rows = await leased(2);
    const { b, counted, logs } = batch();
    const stale = { ...rows[0]!, lease_owner: 'a-dispatcher-whose-lease-expired' };
    const told = [b.record(delivered(stale)), b.record(delivered(rows[1]!))];
    await b.flush();
    expect(await Promise.all(told)).toEqual(['lost', 'delivered']);
    expect(await states(rows)).toEqual(['delivering', 'delivered']);
    expect(auditEvents().map((e) => JSON.parse(e.data).event_id)).toEqual([rows[1]!.id]);
    expect(counted).toEqual(['delivered']);
    expect(logs.text()).toContain('webhook outcome not recorded');
  });

  it("take(): the outcomes are written in the caller's transaction; if it rolls back they are committed on their own", async () => {
    const rows = await leased(2);
    const { b } = batch();
    const first = b.record(delivered(rows[0]!));
    const taken = b.take();
    await expect(
      storage.transaction(async (tx) => {
        await taken.write(tx, clock.now());
        throw new Error('the claim failed');
      }),
    ).rejects.toThrow('the claim failed');
    expect(await states(rows)).toEqual(['delivering', 'delivering']);
    taken.rolledBack();
    await first; // committed on their own
    expect(await states(rows)).toEqual(['delivered', 'delivering']);
    expect(await first).toBe('delivered');

    const second = b.record(dead(rows[1]!));
    const next = b.take();
    await storage.transaction((tx) => next.write(tx, clock.now()));
    expect(await states(rows)).toEqual(['delivered', 'dead']);
    const settledYet = vi.fn();
    void second.then(settledYet);
    await Promise.resolve();
    expect(settledYet).not.toHaveBeenCalled();
    next.committed();
    expect(await second).toBe('dead');
    // Taken outcomes are not committed a second time by a later flush.
    await b.flush();
    expect(auditEvents()).toHaveLength(2);
  });
});
