import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createAttempt, RELEASED, type Settled } from '../../../src/webhooks/attempt.ts';
import { createKeyRing } from '../../../src/keys/key-ring.ts';
import type { OutboxRow } from '../../../src/webhooks/outbox.ts';
import type { Transport, TransportRequest, TransportResponse } from '../../../src/webhooks/transport.ts';
import { HOOKS_TOKEN, captureLogger, testConfig } from './helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
const HOOKS = 'http://openclaw.example:18789/hooks';
const SCHEDULE = [5_000, 300_000];

function row(over: Partial<OutboxRow> = {}): OutboxRow {
  return {
    id: 'evt_0001', request_id: 'req_0001', type: 'jit.request.approved', target: 'standard', url: 'http://rx.example/events', url_source: 'policy',
    session_key: null, body_format: 'rendered', body: '{"type":"jit.request.approved"}', state: 'delivering', attempts: 1, next_attempt_at: T0,
    lease_owner: 'owner', lease_expires_at: T0 + 60_000, last_status: null, last_error: null, created_at: T0, updated_at: T0, delivered_at: null,
    ...over,
  };
}

const answer = (status: number, body = '', headers: Record<string, string> = {}): TransportResponse => ({ status, body, headers: { get: (n) => headers[n.toLowerCase()] ?? null } });

/** An attempt whose transport is `send`; `sent` collects the requests it was given. */
function setup(send: Transport, timeoutMs = 60_000) {
  const clock = new ManualClock(T0);
  const config = testConfig({ OPENCLAW_HOOKS_URL: HOOKS, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN });
  const sent: TransportRequest[] = [];
  const attempt = createAttempt({
    clock, log: captureLogger().log, keyRing: createKeyRing({ config, clock }), config, timeoutMs, schedule: SCHEDULE, jitter: 0,
    transport: (req) => (sent.push(req), send(req)),
  });
  return { attempt, sent, clock };
}

/** A transport that never answers and ignores its abort signal (a badly written custom transport). */
const deaf: Transport = () => new Promise<never>(() => {});

describe('one delivery attempt', () => {
  describe.each([
    { target: 'standard' as const, status: 204, outcome: 'delivered', reason: 'ok' },
    { target: 'standard' as const, status: 401, outcome: 'retried', reason: 'http_401' },
    { target: 'openclaw' as const, status: 401, outcome: 'dead', reason: 'configuration' },
    { target: 'openclaw' as const, status: 413, outcome: 'dead', reason: 'configuration' },
    { target: 'standard' as const, status: 410, outcome: 'dead', reason: 'gone' },
    { target: 'openclaw' as const, status: 503, outcome: 'retried', reason: 'http_503' },
  ])('$target receiver answers $status', ({ target, status, outcome, reason }) => {
    it(`is ${outcome} (${reason})`, async () => {
      const { attempt, sent } = setup(async () => answer(status));
      const r = (await attempt(row({ target, url_source: target === 'openclaw' ? 'config' : 'policy' }), new AbortController().signal)) as Settled;
      expect([r.outcome, r.reason, r.status]).toEqual([outcome, reason, status]);
      expect(sent[0]!.headers['webhook-id']).toBe('evt_0001');
      expect(sent[0]!.url).toBe(target === 'openclaw' ? `${HOOKS}/agent` : 'http://rx.example/events');
      expect(sent[0]!.headers.authorization).toBe(target === 'openclaw' ? `Bearer ${HOOKS_TOKEN}` : undefined);
    });
  });

  it('an attempt started after stop() (a row claimed while the dispatcher stopped) sends nothing and gives the row back', async () => {
    const { attempt, sent } = setup(async () => answer(204));
    const stop = new AbortController();
    stop.abort(new Error('dispatcher stopping'));
    expect(await attempt(row(), stop.signal)).toBe(RELEASED);
    expect(sent).toEqual([]);
  });

  it('a retry waits for the schedule, or for a longer Retry-After', async () => {
    const { attempt, clock } = setup(async () => answer(503, '', { 'retry-after': '60' }));
    const r = (await attempt(row(), new AbortController().signal)) as Settled;
    expect(r.nextAttemptAt).toBe(clock.now() + 60_000);
    const last = (await attempt(row({ attempts: SCHEDULE.length + 1 }), new AbortController().signal)) as Settled;
    expect([last.outcome, last.reason]).toEqual(['dead', 'exhausted']);
  });

  it('stop cuts short a send whose transport ignores its signal: the row is to be released, not failed', async () => {
    const { attempt, sent } = setup(deaf);
    const stop = new AbortController();
    const pending = attempt(row(), stop.signal);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.signal.aborted).toBe(false);
    stop.abort(new Error('dispatcher stopping'));
    expect(await pending).toBe(RELEASED);
    expect(sent[0]!.signal.aborted).toBe(true);
    // Already stopped: released at once.
    expect(await attempt(row(), stop.signal)).toBe(RELEASED);
  });

  it('the per-attempt timeout fails a send whose transport ignores its signal, as a retry', async () => {
    const { attempt } = setup(deaf, 20);
    const r = (await attempt(row(), new AbortController().signal)) as Settled;
    expect([r.outcome, r.reason, r.error]).toEqual(['retried', 'timeout', 'no response within 20 ms']);
  });

  it('a network error is a retry, and receiver text is scrubbed of the hooks token', async () => {
    const { attempt } = setup(() => Promise.reject(new Error('connect ECONNREFUSED', { cause: new Error(`refused ${HOOKS_TOKEN}`) })));
    const r = (await attempt(row(), new AbortController().signal)) as Settled;
    expect([r.outcome, r.reason]).toEqual(['retried', 'network']);
    expect(r.error).toBe('network error: refused [redacted]');
    const body = (await setup(async () => answer(500, `echo ${HOOKS_TOKEN}`)).attempt(row(), new AbortController().signal)) as Settled;
    expect(body.error).not.toContain(HOOKS_TOKEN);
  });
});
