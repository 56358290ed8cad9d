import { describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { createRequestStreams } from '../../../src/broker/request-stream.ts';
import { createServedApp } from '../../../src/served-app.ts';
import type { Harness } from '../../helpers/broker-harness.ts';
import { CONSOLE_PUBLIC_URL, useConsole } from '../../helpers/console-http.ts';

/**
 * The console failing never stops the broker: a broken install (its static
 * files unreadable) switches the console off with one line while the API
 * and the other channels keep deciding; and sign-ins begun without a session
 * are limited per process, so an unauthenticated caller cannot make the
 * database hold challenges without bound.
 */

const PUBLIC_URL = CONSOLE_PUBLIC_URL;
let h: Harness;
let agentToken: string;

useConsole((c) => {
  ({ h, agent: agentToken } = c);
});

/** The served app (the API, the webhook route, the console) built again over the running broker's deps, with console options. */
function servedApp(consoleOptions: Parameters<typeof createServedApp>[3]) {
  const streams = createRequestStreams({ storage: h.broker.deps.storage, log: h.broker.deps.log, maxPerAgent: 4 });
  return { app: createServedApp(h.broker.deps, streams, undefined, consoleOptions), streams };
}

describe('the console failing', () => {
  it('a broken install answers 503 with one line on every console route; the API serves and decisions go on', async () => {
    const { app, streams } = servedApp({
      loadStaticFiles: () => {
        throw new Error("ENOENT: no such file or directory, open '/opt/jit/dist/console/static/console.js'");
      },
    });
    try {
      for (const [method, path] of [['GET', '/console'], ['GET', '/console/sign-in'], ['POST', '/console/sign-in/options'], ['GET', '/console/static/console.js']] as const) {
        const res = await app.request(path, { method, headers: { accept: 'text/html', origin: PUBLIC_URL } });
        expect(res.status, path).toBe(503);
        expect(await res.text(), path).toContain('its static files could not be read');
      }
      const logged = h.logs().split('\n').filter((l) => l.includes('static files could not be read')).map((l) => JSON.parse(l) as { level: number });
      expect(logged.length).toBeGreaterThan(0);
      expect(logged[0]!.level).toBeGreaterThanOrEqual(50);
      // The API on the same app: a tier-2 request, then a decision through the verb Telegram and `jit approve` use.
      const res = await app.request('/jit/request', {
        method: 'POST',
        headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ resource: 'vault', tier: 2, reason: 'console off', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }], ttl: '15m' }),
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      const outcome = await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
      expect(outcome.outcome).toBe('approved');
    } finally {
      streams.close();
    }
  });
});

describe('sign-ins begun without a session', () => {
  it('are limited per process: a burst, then a steady rate, answered 429 with Retry-After and no challenge stored', async () => {
    let now = 0;
    const { app, streams } = servedApp({ signInLimit: { burst: 3, perMinute: 6, now: () => now } });
    const begin = () => app.request('/console/sign-in/options', { method: 'POST', headers: { accept: 'application/json', origin: PUBLIC_URL } });
    try {
      for (let i = 0; i < 3; i++) expect((await begin()).status).toBe(200);
      const refused = await begin();
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('10');
      expect(((await refused.json()) as { detail: string }).detail).toMatch(/too many sign-ins/);
      // Six a minute: one more after ten seconds, not before.
      now += 9_000;
      expect((await begin()).status).toBe(429);
      now += 1_000;
      expect((await begin()).status).toBe(200);
      expect((await begin()).status).toBe(429);
    } finally {
      streams.close();
    }
  });
});
