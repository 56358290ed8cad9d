import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeLeaseName, startNodeLease } from '../../../src/broker/node.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createLogger } from '../../../src/lib/logger.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { until } from '../../helpers/chaos-process.ts';

/*
 * A node's lease renewals on a real SQLite file and real timers (a third of
 * a 300 ms TTL). A renewal that hangs (a stalled database connection) must
 * not be joined by a new one every tick.
 */
const dirs: string[] = [];
const storages: Storage[] = [];
afterEach(async () => {
  for (const s of storages.splice(0)) await s.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('node lease', () => {
  it('renews one at a time: while a renewal hangs no other starts, and renewing resumes when it returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jit-node-lease-'));
    dirs.push(dir);
    const storage = openSqliteStorage(join(dir, 'jit.db'));
    storages.push(storage);
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const acquire = storage.leases.acquire.bind(storage.leases);
    let calls = 0;
    let hang: (() => void) | undefined;
    let hanging: Promise<void> | undefined;
    // The real acquire, delayed while `hanging` is pending.
    storage.leases.acquire = async (...args) => {
      calls += 1;
      if (hanging) await hanging;
      return acquire(...args);
    };
    const lease = await startNodeLease({ storage, clock, log: createLogger('silent'), id: 'node_x', ttlMs: 300 });
    expect(calls).toBe(1);
    await until(() => calls >= 2, undefined, 'a renewal');
    hanging = new Promise((resolve) => (hang = resolve));
    const before = calls;
    await until(() => calls === before + 1, undefined, 'the renewal that hangs to start');
    // Five renewal intervals pass while it hangs: no other renewal starts.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(calls).toBe(before + 1);
    hanging = undefined;
    hang!();
    await until(() => calls >= before + 3, undefined, 'renewals to resume');
    await lease.stop();
    expect(await storage.leases.get(nodeLeaseName('node_x'))).toBeUndefined();
  });
});
