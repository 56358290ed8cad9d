import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/cli/io.ts';
import { webhooksCommand } from '../../../src/cli/commands/webhooks.ts';
import { HOOKS_TOKEN, makeWorld, type World } from '../webhooks/setup.ts';

/** `jit webhooks retry --all-dead` on a large batch: a summary and progress instead of one line per event. */
let w: World;
beforeEach(async () => {
  // No OPENCLAW_HOOKS_URL: every OpenClaw event is written dead at once.
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
    const ids = Array.from({ length: 25 }, () => w.record('moltbot').id);
    expect(ids.every((id) => w.row(id).state === 'dead')).toBe(true);
    const fixed = { ...w.env, OPENCLAW_HOOKS_URL: `${w.openclaw.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN };
    const res = await retryAll(fixed);
    expect(res.code).toBe(0);
    expect(res.err).toEqual(['Re-queueing 25 dead webhook events…']);
    expect(res.out).toEqual([expect.stringMatching(/^Re-queued 25 of 25 dead webhook events; /)]);
    expect(ids.every((id) => w.row(id).state === 'pending')).toBe(true);
    expect(w.audit('webhook.requeued')).toHaveLength(25);
    // Nothing dead is left: a second run says so.
    expect((await retryAll(fixed)).out).toEqual(['No dead webhook events.']);
  });

  it('counts the events it could not re-queue and exits 1', async () => {
    for (let i = 0; i < 3; i++) w.record('moltbot');
    const res = await retryAll(w.env); // OPENCLAW_HOOKS_URL still unset
    expect(res.code).toBe(1);
    expect(res.err.filter((l) => l.includes('OPENCLAW_HOOKS_URL is not set'))).toHaveLength(3);
    expect(res.out.at(-1)).toMatch(/^Re-queued 0 of 3 dead webhook events \(3 not re-queued, see above\)/);
  });
});
