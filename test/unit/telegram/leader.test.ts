import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createLogger } from '../../../src/lib/logger.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { TELEGRAM_LEADER_LEASE, createLeadership, type Leadership } from '../../../src/telegram/leader.ts';
import { until } from '../../helpers/chaos-process.ts';

/*
 * The Telegram leader lease between two brokers, each with its own
 * connection to one SQLite file. Lease rows' times follow a manual clock;
 * the renewals run on real timers (a third of a 300 ms TTL), and a leader
 * measures its own hold in real (monotonic) time.
 */
const TTL = 300;
let dir: string;
let clock: ManualClock;
const storages: Storage[] = [];
const leaderships: Leadership[] = [];
const log = createLogger('silent');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-leader-'));
  clock = new ManualClock(Date.UTC(2026, 0, 1));
});
afterEach(async () => {
  for (const l of leaderships.splice(0)) await l.stop();
  for (const s of storages.splice(0)) await s.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

function broker(holder: string) {
  const storage = openSqliteStorage(join(dir, 'jit.db'));
  storages.push(storage);
  const changes: boolean[] = [];
  const leadership = createLeadership({ storage, clock, log, holder, ttlMs: TTL, onChange: (leader) => changes.push(leader) });
  leaderships.push(leadership);
  return { storage, leadership, changes };
}

describe('telegram leader lease', () => {
  it('one of two brokers leads; the other takes over at once when it stops (the lease is released)', async () => {
    const a = broker('node_a');
    const b = broker('node_b');
    await a.leadership.start();
    await b.leadership.start();
    expect([a.leadership.isLeader(), b.leadership.isLeader()]).toEqual([true, false]);
    expect((await b.storage.leases.get(TELEGRAM_LEADER_LEASE))!.holder).toBe('node_a');
    await a.leadership.stop();
    expect(a.changes).toEqual([true]);
    await until(() => b.leadership.isLeader(), undefined, 'B to lead');
    expect(b.changes).toEqual([true]);
  });

  it('a leader that loses its database steps down once its last renewal ran out; the other takes over only after it expired', async () => {
    const a = broker('node_a');
    const b = broker('node_b');
    await a.leadership.start();
    await b.leadership.start();
    expect(a.leadership.isLeader()).toBe(true);
    // A's connection is gone: its renewals fail from now on.
    await a.storage.close();
    // Its last renewal runs out (a lease of real time since it was sent): A steps down by itself...
    await until(() => !a.leadership.isLeader(), undefined, 'A to step down');
    expect(a.changes).toEqual([true, false]);
    // ...while the lease row, on the lease clock, has not expired: B cannot take it yet, so no two leaders.
    await new Promise((r) => setTimeout(r, 2 * TTL));
    expect(b.leadership.isLeader()).toBe(false);
    // The lease expires on the lease clock: B takes it.
    clock.advance(TTL);
    await until(() => b.leadership.isLeader(), undefined, 'B to lead');
    expect((await b.storage.leases.get(TELEGRAM_LEADER_LEASE))!.holder).toBe('node_b');
  });

  it('a leader whose renewal hangs (the database stalls) steps down once its last renewal ran out, without waiting for the renewal', async () => {
    const a = broker('node_a');
    await a.leadership.start();
    expect(a.leadership.isLeader()).toBe(true);
    // From now on A's renewals never answer: a stalled connection, not an error.
    const hang = new Promise<boolean>(() => {});
    a.storage.leases.acquire = () => hang;
    // The lease A last renewed runs out while the renewal hangs: another broker may take it then, so A must no
    // longer lead (nor poll), without waiting for the renewal to answer.
    await until(() => a.changes.length === 2, undefined, 'A to step down');
    expect(a.leadership.isLeader()).toBe(false);
    expect(a.changes).toEqual([true, false]);
    // Stopping does not wait for the hung renewal.
    const leadership = leaderships.splice(leaderships.indexOf(a.leadership), 1)[0]!;
    await leadership.stop();
  });
});
