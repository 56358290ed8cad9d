import { Hono } from 'hono';
import { html } from 'hono/html';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addApprover } from '../../../src/broker/approvers.ts';
import type { ConsoleEnv } from '../../../src/console/env.ts';
import { auditPage } from '../../../src/console/pages/audit.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/**
 * The audit page's limits on its chain verify, with small limits: past the
 * cap it does not verify and says where to; within the cache age it shows
 * the verdict it has. The page is mounted as the console core mounts it,
 * under a wrapper that sets the session of a registered approver and a
 * minimal renderer (the full console is driven in more-pages.test.ts).
 */
let h: Harness;
let app: (limits: Parameters<typeof auditPage>[1]) => Hono;

beforeAll(async () => {
  h = await startHarness();
  const { approver } = await addApprover(h.broker.deps, { name: 'alice' });
  for (const name of ['a1', 'a2', 'a3']) await h.addAgent(name);
  app = (limits) => {
    const wrapper = new Hono<ConsoleEnv>();
    wrapper.use('*', async (c, next) => {
      const now = h.clock.now();
      c.set('session', { idHash: 'x', approver, csrf: 'csrf-token', createdAt: now, lastSeenAt: now });
      c.set('csrf', 'csrf-token');
      c.set('page', async (title, body, init) => c.html(html`<title>${title}</title><main>${body}</main>`, (init?.status ?? 200) as ContentfulStatusCode));
      await next();
    });
    wrapper.route('/console', auditPage(h.broker.deps, limits));
    return wrapper as unknown as Hono;
  };
});
afterAll(async () => {
  await h?.close();
});

describe('the audit page', () => {
  it('does not verify a log longer than its cap, and says to run jit audit verify', async () => {
    const entries = (await h.broker.deps.storage.audit.last())!.seq;
    expect(entries).toBeGreaterThan(3);
    const page = await (await app({ verifyMaxEntries: 3 }).request('/console/audit')).text();
    expect(page).toContain(`The log has ${entries} entries, more than the console verifies on a page load (3)`);
    expect(page).toContain('jit audit verify');
    expect(page).not.toContain('Chain intact');
  });

  it('keeps its verdict for its cache age, then verifies again', async () => {
    const pages = app({ verifyMaxAgeMs: 10_000 });
    const first = await (await pages.request('/console/audit')).text();
    const verified = /(\d+) entries verified at ([^ ]+)/.exec(first)!;
    await h.addAgent('a4');
    expect(await (await pages.request('/console/audit')).text()).toContain(`${verified[1]} entries verified at ${verified[2]}`);
    h.clock.advance(10_001);
    const later = await (await pages.request('/console/audit')).text();
    expect(later).toContain(`${Number(verified[1]) + 1} entries verified`);
  });
});
