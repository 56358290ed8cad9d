import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { RATE_EVENTS_KEPT_MS, RATE_PRUNE_BATCH, oneAtATime, startAuditUpkeep } from '../../../src/broker/audit-upkeep.ts';
import { RATE_WINDOW_MS } from '../../../src/broker/request-credential.ts';
import { openKeyRing } from '../../../src/keys/key-ring-db.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createLogger } from '../../../src/lib/logger.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';

describe('audit upkeep timers', () => {
  it('skip a tick while the previous run is still going, and stop waits for the run in progress', async () => {
    let runs = 0;
    let finish!: () => void;
    const task = oneAtATime(
      () =>
        new Promise<void>((resolve) => {
          runs++;
          finish = resolve;
        }),
    );
    task.tick();
    task.tick(); // a slow run: this tick is skipped, not run alongside
    expect(runs).toBe(1);
    let idle = false;
    const waited = task.idle().then(() => (idle = true));
    await Promise.resolve();
    expect(idle).toBe(false);
    finish();
    await waited;
    task.tick();
    expect(runs).toBe(2);
    finish();
    await task.idle();
    await task.idle();
  });
});

describe('rate limit events', () => {
  it('are pruned five windows after the fact, not one (a broker whose clock runs ahead cannot let an agent past its limit), in batches until none is left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jit-upkeep-'));
    const storage = openSqliteStorage(join(dir, 'jit.db'));
    try {
      const clock = new ManualClock(1_700_000_000_000);
      const now = clock.now();
      const keys = await openKeyRing({ config: { dbPath: join(dir, 'jit.db') }, store: storage.signingKeys, noTimer: true });
      // Past the kept margin, more than two batches of them; then one older than the window but within the margin.
      for (let i = 0; i < 2 * RATE_PRUNE_BATCH + 5; i++) await storage.rateLimits.record('agt_1', now - RATE_EVENTS_KEPT_MS - 1 - i);
      await storage.rateLimits.record('agt_1', now - 2 * RATE_WINDOW_MS);
      await storage.rateLimits.record('agt_1', now - 1_000);
      const upkeep = startAuditUpkeep({ storage, audit: createAuditLog(storage), clock, log: createLogger('silent'), keys }, { primary: true });
      await upkeep.stop();
      const since = now - 10 * RATE_WINDOW_MS;
      expect(await storage.rateLimits.nthNewestSince('agt_1', since, 2)).toBe(now - 2 * RATE_WINDOW_MS);
      expect(await storage.rateLimits.nthNewestSince('agt_1', since, 3)).toBeUndefined();
      expect(RATE_EVENTS_KEPT_MS).toBeGreaterThanOrEqual(5 * RATE_WINDOW_MS);
    } finally {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
