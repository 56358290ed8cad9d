import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../src/broker/audit.ts';
import { openSqliteStorage, sqliteDatabase } from '../../../src/storage/sqlite/index.ts';
import type { Storage, Transaction } from '../../../src/storage/storage.ts';
import { createDispatcher } from '../../../src/webhooks/dispatcher.ts';
import { createHttpTransport, type Transport } from '../../../src/webhooks/transport.ts';
import { makeWorld, until, type World } from './setup.ts';

/**
 * The dispatcher leases due rows in batches and commits attempt outcomes in
 * batches. These check that batching loses nothing: every outcome is
 * recorded and audited once, an outcome that never got committed (the
 * process died first) means the event is sent again after its lease with the
 * same webhook-id, and one hung receiver cannot take every slot.
 */
let w: World;
beforeEach(async () => {
  w = await makeWorld();
});
afterEach(async () => {
  await w.close();
});

/** The same storage, counting its transactions (each is one commit; they do not nest). */
function countingCommits(storage: Storage): { storage: Storage; commits: () => number } {
  let commits = 0;
  const counted = Object.assign(Object.create(storage) as Storage, {
    transaction: <T>(fn: (tx: Transaction) => Promise<T>) => {
      commits++;
      return storage.transaction(fn);
    },
  });
  return { storage: counted, commits: () => commits };
}

/** `n` recorded events (agent of each by index), in order; their ids. */
async function recordMany(n: number, agent: (i: number) => string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await w.record(agent(i))).id);
  return ids;
}
const states = (ids: string[]) => Promise.all(ids.map(async (id) => (await w.row(id)).state));

/** Answers 200 at once, in process, and remembers the webhook-ids. */
function instantTransport(): Transport & { ids: string[] } {
  const ids: string[] = [];
  const transport: Transport = async (req) => {
    ids.push(req.headers['webhook-id']!);
    return { status: 200, headers: { get: () => null }, body: '' };
  };
  return Object.assign(transport, { ids });
}

describe('batched claims and outcomes', () => {
  it('commits 40 outcomes in a handful of transactions, each recorded and audited exactly once', async () => {
    const ids = await recordMany(40, () => 'ci');
    const { storage, commits } = countingCommits(w.storage);
    const transport = instantTransport();
    const counted: string[] = [];
    const d = w.dispatcher({ storage, transport, concurrency: 16, perTargetConcurrency: 16, onOutcome: (o) => counted.push(o) });

    expect(await d.drainOnce()).toEqual({ delivered: 40, retried: 0, dead: 0 });
    // One claim and one outcome transaction per event before batching: 80.
    expect(commits()).toBeLessThanOrEqual(10);
    expect(transport.ids.sort()).toEqual([...ids].sort());
    for (const id of ids) expect(await w.row(id)).toMatchObject({ state: 'delivered', attempts: 1, lease_owner: null, last_status: 200 });
    const audited = w.audit('webhook.delivered').map((a) => a.data.event_id as string);
    expect(audited.sort()).toEqual([...ids].sort());
    expect(counted).toHaveLength(40);
    expect((await verifyAuditChain(w.storage)).ok).toBe(true);
  });

  it('stop() in the middle of a busy run: every row ends delivered (audited once) or due again, none left leased', async () => {
    const ids = await recordMany(30, (i) => (i % 2 ? 'ci' : 'moltbot'));
    const received = () => w.openclaw.requests.length + w.standard.requests.length;
    const d = w.dispatcher();
    d.start();
    await until(() => received() >= 10, 5_000);
    await d.stop();
    expect((await states(ids)).filter((s) => s !== 'delivered' && s !== 'pending')).toEqual([]);
    const after = await states(ids);
    const delivered = ids.filter((_, i) => after[i] === 'delivered');
    expect(w.audit('webhook.delivered').map((a) => a.data.event_id).sort()).toEqual([...delivered].sort());

    // The next run sends the rest (an attempt stop() cut short goes again, with its id).
    const d2 = w.dispatcher();
    d2.start();
    await until(async () => (await states(ids)).every((st) => st === 'delivered'), 5_000);
    await d2.stop();
    expect(w.audit('webhook.delivered').map((a) => a.data.event_id).sort()).toEqual([...ids].sort());
    const sent = new Set([...w.openclaw.requests, ...w.standard.requests].map((r) => String(r.headers['webhook-id'])));
    expect([...sent].sort()).toEqual([...ids].sort());
    expect((await verifyAuditChain(w.storage)).ok).toBe(true);
  });

  it('an outcome lost before its batch commit (the process died): the event is sent again after its lease, with the same webhook-id', async () => {
    const row = await w.record('ci');
    // Dispatcher 1, on its own connection, delivers; the receiver answers 200; then the
    // process "dies" before the batch holding that outcome is committed.
    const storage1 = openSqliteStorage(w.dbPath);
    const http = createHttpTransport();
    const dies: Transport = async (req) => {
      const res = await http(req);
      sqliteDatabase(storage1).close();
      return res;
    };
    const d1 = createDispatcher({ storage: storage1, clock: w.clock, log: w.logs.log, keyRing: w.keyRing, config: w.config, transport: dies, batchSize: 1 });
    expect(await d1.drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 0 });
    http.close();
    expect(w.logs.text()).toContain('could not record webhook outcomes');
    expect(w.standard.requests).toHaveLength(1);
    expect(w.standard.requests[0]!.answer).toBe(200);
    const leased = await w.row(row.id);
    expect(leased).toMatchObject({ state: 'delivering', attempts: 1 });
    expect(w.audit('webhook.delivered')).toEqual([]);

    // Until the lease runs out, nobody sends it again.
    const d2 = w.dispatcher();
    expect(await d2.drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 0 });
    expect(w.standard.requests).toHaveLength(1);

    w.clock.set(leased.lease_expires_at!);
    expect(await d2.drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    expect(w.standard.requests.map((r) => r.headers['webhook-id'])).toEqual([row.id, row.id]);
    expect(w.standard.requests.every((r) => r.verification.ok)).toBe(true);
    expect(await w.row(row.id)).toMatchObject({ state: 'delivered', attempts: 2, lease_owner: null });
    expect(w.audit('webhook.delivered').map((a) => a.data)).toEqual([expect.objectContaining({ event_id: row.id, attempt: 2 })]);
  });
});

describe('per-target share of the slots', () => {
  it('a hung receiver holds only its share; events for others, queued behind its backlog, go through', async () => {
    w.slow.script(...Array.from({ length: 6 }, () => ({ hang: true as const })));
    const stuck = await recordMany(6, () => 'slow');
    w.clock.advance(1);
    const healthy = await recordMany(3, () => 'ci');
    const d = w.dispatcher({ concurrency: 4, timeoutMs: 10_000, pollIntervalMs: 50 });
    d.start();
    await until(async () => (await states(healthy)).every((st) => st === 'delivered'), 2_000);
    // Its share of 4 slots is 2: two attempts hang, the other four events wait unclaimed.
    expect(w.slow.requests).toHaveLength(2);
    expect((await states(stuck)).sort()).toEqual(['delivering', 'delivering', 'pending', 'pending', 'pending', 'pending']);
    await d.stop();
    expect((await states(stuck)).every((st) => st === 'pending')).toBe(true);
  });
});
