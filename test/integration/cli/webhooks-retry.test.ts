import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { webhooksCommand } from '../../../src/cli/commands/webhooks.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { recordServiceSettings } from '../../../src/config/service-settings.ts';
import { HOOKS_TOKEN, makeWorld, type World } from '../webhooks/setup.ts';

/** `jit webhooks retry --all-dead` on a large batch: a summary and progress instead of one line per event. */
let w: World;
beforeEach(async () => {
  // No OPENCLAW_HOOKS_URL: the dispatcher dead-letters every OpenClaw event at its first turn.
  w = await makeWorld({ OPENCLAW_HOOKS_URL: undefined, OPENCLAW_HOOKS_TOKEN: undefined });
});
afterEach(() => w.close());

async function retryAll(env: Record<string, string | undefined>) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { env, out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await webhooksCommand(['retry', '--all-dead'], io);
  return { code, out, err };
}

describe('jit webhooks retry --all-dead', () => {
  it('re-queues a large batch with a start line, a summary, and no line per event', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await w.record('moltbot')).id);
    await w.dispatcher({ batchSize: 1000 }).drainOnce();
    expect((await Promise.all(ids.map((id) => w.row(id)))).every((row) => row.state === 'dead')).toBe(true);
    const fixed = { ...w.env, OPENCLAW_HOOKS_URL: `${w.openclaw.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN };
    await recordServiceSettings(w.storage, loadConfig(fixed), w.clock.now());
    const res = await retryAll(w.env);
    expect(res.code).toBe(0);
    expect(res.err).toEqual(['Re-queueing 25 dead webhook events…']);
    expect(res.out).toEqual([expect.stringMatching(/^Re-queued 25 of 25 dead webhook events; /)]);
    expect((await Promise.all(ids.map((id) => w.row(id)))).every((row) => row.state === 'pending')).toBe(true);
    expect(w.audit('webhook.requeued')).toHaveLength(25);
    // Nothing dead is left: a second run says so.
    expect((await retryAll(w.env)).out).toEqual(['No dead webhook events.']);
  });

  it('counts the events it could not re-queue and exits 1', async () => {
    for (let i = 0; i < 3; i++) await w.record('moltbot');
    await w.dispatcher().drainOnce();
    await recordServiceSettings(w.storage, w.config, w.clock.now()); // the service still has no OPENCLAW_HOOKS_URL
    const res = await retryAll({ ...w.env, OPENCLAW_HOOKS_URL: `${w.openclaw.url}/hooks` });
    expect(res.code).toBe(1);
    expect(res.err.filter((l) => l.includes('the service has no OPENCLAW_HOOKS_URL'))).toHaveLength(3);
    expect(res.out.at(-1)).toMatch(/^Re-queued 0 of 3 dead webhook events \(3 not re-queued, see above\)/);
  });
});
