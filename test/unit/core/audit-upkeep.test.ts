import { describe, expect, it } from 'vitest';
import { oneAtATime } from '../../../src/broker/audit-upkeep.ts';

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
