import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../src/broker/audit.ts';
import { createDispatcher } from '../../../src/webhooks/dispatcher.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import { DEFAULT_RETRY_SCHEDULE_MS } from '../../../src/webhooks/retry.ts';
import { HOOKS_TOKEN, databaseBytes, makeWorld, until, type World } from './setup.ts';

let w: World;
beforeEach(async () => {
  w = await makeWorld();
});
afterEach(async () => {
  await w.close();
});

describe('delivery to OpenClaw', () => {
  it('POSTs {hooks}/agent with bearer token, Idempotency-Key = webhook-id, and a signature that verifies', async () => {
    const row = await w.record('moltbot');
    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    const [req] = w.openclaw.requests;
    expect(req).toMatchObject({ method: 'POST', path: '/hooks/agent', answer: 200 });
    expect(req!.headers.authorization).toBe(`Bearer ${HOOKS_TOKEN}`);
    expect(req!.headers['idempotency-key']).toBe(row.id);
    expect(req!.headers['webhook-id']).toBe(row.id);
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.verification).toMatchObject({ ok: true, id: row.id, kid: w.keyRing.current().kid });
    expect(JSON.parse(req!.body)).toMatchObject({ name: 'JIT broker', sessionKey: 'hook:jit:moltbot', wakeMode: 'now', deliver: false });
    expect(await w.row(row.id)).toMatchObject({ state: 'delivered', attempts: 1, last_status: 200, delivered_at: w.clock.now() });
    expect(w.audit('webhook.delivered')).toEqual([
      { event: 'webhook.delivered', request_id: row.request_id, data: { event_id: row.id, type: 'jit.request.approved', target: 'openclaw', attempt: 1, status: 200 } },
    ]);
  });

  it('retries 500 three times, then 200: same webhook-id, increasing timestamps, delivered after 4 attempts', async () => {
    w.openclaw.script({ status: 500 }, { status: 500 }, { status: 500 });
    const row = await w.record('moltbot');
    const d = w.dispatcher();
    for (let i = 0; i < 3; i++) {
      expect(await d.drainOnce()).toEqual({ delivered: 0, retried: 1, dead: 0 });
      expect(await w.row(row.id)).toMatchObject({ state: 'pending', attempts: i + 1, last_status: 500, next_attempt_at: w.clock.now() + DEFAULT_RETRY_SCHEDULE_MS[i]! });
      // Not due yet: nothing is sent early.
      w.clock.advance(DEFAULT_RETRY_SCHEDULE_MS[i]! - 1000);
      expect(await d.drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 0 });
      w.clock.advance(1000);
    }
    expect(await d.drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });

    const reqs = w.openclaw.requests;
    expect(reqs.map((r) => r.answer)).toEqual([500, 500, 500, 200]);
    expect(new Set(reqs.map((r) => r.headers['webhook-id']))).toEqual(new Set([row.id]));
    expect(new Set(reqs.map((r) => r.headers['idempotency-key']))).toEqual(new Set([row.id]));
    const stamps = reqs.map((r) => Number(r.headers['webhook-timestamp']));
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
    expect(new Set(stamps).size).toBe(4);
    expect(new Set(reqs.map((r) => r.body)).size).toBe(1);
    expect(reqs.every((r) => r.verification.ok)).toBe(true);
    expect(await w.row(row.id)).toMatchObject({ state: 'delivered', attempts: 4, last_status: 200 });
    expect(w.audit('webhook.retry').map((a) => [a.data.attempt, a.data.status, a.data.reason])).toEqual([
      [1, 500, 'http_500'],
      [2, 500, 'http_500'],
      [3, 500, 'http_500'],
    ]);
  });

  it.each([
    ['seconds', () => '120', 120_000],
    ['an HTTP date', () => new Date(w.clock.now() + 90_000).toUTCString(), 90_000],
  ])('honours Retry-After given as %s when longer than the schedule', async (_kind, value, expected) => {
    w.openclaw.script({ status: 429, headers: { 'retry-after': value() } });
    const row = await w.record('moltbot');
    const d = w.dispatcher();
    await d.drainOnce();
    expect(await w.row(row.id)).toMatchObject({ state: 'pending', last_status: 429, next_attempt_at: w.clock.now() + expected });
    w.clock.advance(expected - 1000);
    expect((await d.drainOnce()).delivered).toBe(0);
    w.clock.advance(1000);
    expect((await d.drainOnce()).delivered).toBe(1);
  });

  it('keeps the schedule when Retry-After is shorter', async () => {
    w.openclaw.script({ status: 503, headers: { 'retry-after': '1' } });
    const row = await w.record('moltbot');
    await w.dispatcher().drainOnce();
    expect((await w.row(row.id)).next_attempt_at).toBe(w.clock.now() + 5_000);
  });

  it.each([
    [400, '{"ok":false,"error":"sessionKey must start with one of: hook:"}', /allowRequestSessionKey/],
    [401, 'Unauthorized', /OPENCLAW_HOOKS_TOKEN must equal hooks.token/],
    [403, 'Forbidden', /OPENCLAW_HOOKS_TOKEN/],
    [404, 'Not Found', /OPENCLAW_HOOKS_URL/],
    [410, 'Gone', /gone/],
  ])('dead-letters an OpenClaw %i at once, with the reason, logged at error level', async (status, body, hint) => {
    w.openclaw.script({ status, body });
    const row = await w.record('moltbot');
    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 1 });
    const dead = await w.row(row.id);
    expect(dead).toMatchObject({ state: 'dead', attempts: 1, last_status: status });
    expect(dead.last_error).toContain(`HTTP ${status}: ${body}`);
    expect(dead.last_error).toMatch(hint);
    expect(w.audit('webhook.dead').map((a) => a.data)).toEqual([
      { event_id: row.id, type: 'jit.request.approved', target: 'openclaw', attempt: 1, status, reason: 'configuration' },
    ]);
    const line = w.logs.text().split('\n').find((l) => l.includes('decision webhook DEAD'))!;
    expect(JSON.parse(line)).toMatchObject({ level: 50, event_id: row.id, status });
  });

  it('a wrong token gets a real 401 from the OpenClaw-shaped receiver and is dead at once', async () => {
    await w.close();
    w = await makeWorld({ OPENCLAW_HOOKS_TOKEN: 'not-the-right-token' });
    const row = await w.record('moltbot');
    await w.dispatcher().drainOnce();
    expect(w.openclaw.requests[0]!.answer).toBe(401);
    expect(await w.row(row.id)).toMatchObject({ state: 'dead', last_status: 401 });
  });

  it('dead-letters after the schedule is exhausted (8 attempts over about a day)', async () => {
    w.openclaw.script(...Array.from({ length: 8 }, () => ({ status: 503 })));
    const row = await w.record('moltbot');
    const d = w.dispatcher();
    const t0 = w.clock.now();
    for (const delay of DEFAULT_RETRY_SCHEDULE_MS) {
      expect((await d.drainOnce()).retried).toBe(1);
      w.clock.advance(delay);
    }
    expect(await d.drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 1 });
    expect((w.clock.now() - t0) / 3_600_000).toBeGreaterThan(24);
    expect(await w.row(row.id)).toMatchObject({ state: 'dead', attempts: 8, last_status: 503, last_error: expect.stringMatching(/gave up after 8 attempts; last: HTTP 503/) });
    expect(w.audit('webhook.dead')[0]!.data.reason).toBe('exhausted');
    w.clock.advance(100 * 3_600_000);
    expect(await d.drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 0 });
    expect(w.openclaw.requests).toHaveLength(8);
  });
});

describe('delivery to a standard receiver', () => {
  it('sends the generic event, signed; no bearer token or Idempotency-Key', async () => {
    const row = await w.record('ci', 'denied', { status: 'denied', decision_reason: 'no' });
    await w.dispatcher().drainOnce();
    const [req] = w.standard.requests;
    expect(req!.path).toBe('/events');
    expect(req!.headers.authorization).toBeUndefined();
    expect(req!.headers['idempotency-key']).toBeUndefined();
    expect(req!.verification.ok).toBe(true);
    expect(JSON.parse(req!.body)).toMatchObject({ type: 'jit.request.denied', id: row.id, request_id: row.request_id, agent: 'ci', status: 'denied', reason: 'no' });
  });

  it('retries a 401 from a generic receiver (only OpenClaw statuses are known configuration errors), dead-letters a 410', async () => {
    w.standard.script({ status: 401 }, { status: 410 });
    const row = await w.record('ci');
    const d = w.dispatcher();
    expect((await d.drainOnce()).retried).toBe(1);
    w.clock.advance(5_000);
    expect((await d.drainOnce()).dead).toBe(1);
    expect(await w.row(row.id)).toMatchObject({ state: 'dead', last_status: 410 });
  });

  it('does not follow redirects (the event and token never go to a URL the receiver names)', async () => {
    const elsewhere = await w.extraReceiver();
    w.standard.script({ status: 302, headers: { location: `${elsewhere.url}/steal` } });
    const row = await w.record('ci');
    expect((await w.dispatcher().drainOnce()).retried).toBe(1);
    expect(elsewhere.requests).toHaveLength(0);
    expect(await w.row(row.id)).toMatchObject({ state: 'pending', last_status: 302 });
  });

  it('treats a dropped connection as a failed attempt and retries', async () => {
    w.standard.script({ reset: true });
    const row = await w.record('ci');
    const d = w.dispatcher();
    expect((await d.drainOnce()).retried).toBe(1);
    expect((await w.row(row.id)).last_error).toMatch(/^network error/);
    w.clock.advance(5_000);
    expect((await d.drainOnce()).delivered).toBe(1);
  });
});

describe('concurrency and crash safety', () => {
  it('a hanging receiver does not delay delivery to a healthy one', async () => {
    w.slow.script({ hang: true });
    const stuck = await w.record('slow');
    const healthy = await w.record('ci');
    const d = w.dispatcher({ timeoutMs: 3_000, pollIntervalMs: 20, concurrency: 4 });
    d.start();
    await until(async () => (await w.row(healthy.id)).state === 'delivered');
    // Delivered while the hung attempt still waits for its answer: not queued behind it (an order, not a clock).
    expect(w.slow.requests).toHaveLength(1);
    expect((await w.row(stuck.id)).state).toBe('delivering');
    // The hung attempt times out on its own and is scheduled for a retry.
    await until(async () => (await w.row(stuck.id)).state === 'pending');
    expect(await w.row(stuck.id)).toMatchObject({ attempts: 1, last_status: null, last_error: 'no response within 3000 ms' });
    await d.stop();
  });

  it('drainOnce delivers in parallel: the healthy receiver is answered before the hung one times out', async () => {
    w.slow.script({ hang: true });
    await w.record('slow');
    const healthy = await w.record('ci');
    const started = Date.now();
    expect(await w.dispatcher({ timeoutMs: 600 }).drainOnce()).toEqual({ delivered: 1, retried: 1, dead: 0 });
    expect(w.standard.requests[0]!.receivedAt - started).toBeLessThan(500);
    expect((await w.row(healthy.id)).state).toBe('delivered');
  });

  it('the per-attempt timeout fires even when garbage collection runs during the attempt', async () => {
    // Regression: an AbortSignal.any(...) signal can be collected on Node 20 and never fire.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    w.slow.script({ hang: true });
    const stuck = await w.record('slow');
    const gcs = setInterval(gc, 25);
    try {
      expect(await w.dispatcher({ timeoutMs: 300 }).drainOnce()).toEqual({ delivered: 0, retried: 1, dead: 0 });
    } finally {
      clearInterval(gcs);
    }
    expect((await w.row(stuck.id)).last_error).toBe('no response within 300 ms');
  });

  it('a row left delivering by a crashed dispatcher is re-sent by a new one after its lease expires', async () => {
    const row = await w.record('moltbot');
    // Dispatcher 1 claims the row and "crashes" mid-send: the process and its connection are gone.
    const now = w.clock.now();
    expect((await w.storage.outbox.claim({ now, dueBy: now, owner: 'crashed:1', leaseUntil: now + 60_000, limit: 1 }))[0]?.id).toBe(row.id);
    w.db.close();

    const db2 = openSqliteStorage(w.dbPath);
    try {
      const d2 = createDispatcher({ storage: db2, clock: w.clock, log: w.logs.log, keyRing: w.keyRing, config: w.config });
      expect(await d2.drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 0 });
      w.clock.advance(60_000);
      expect(await d2.drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });
      expect(w.openclaw.requests.map((r) => r.headers['webhook-id'])).toEqual([row.id]);
      expect(await db2.outbox.get(row.id)).toMatchObject({ state: 'delivered', attempts: 2, lease_owner: null });
    } finally {
      await db2.close();
    }
  });

  it('resumes after a restart purely from the table (pending rows written before the dispatcher existed)', async () => {
    const rows = [await w.record('moltbot'), await w.record('ci')];
    w.db.close();
    const db2 = openSqliteStorage(w.dbPath);
    try {
      const d = createDispatcher({ storage: db2, clock: w.clock, log: w.logs.log, keyRing: w.keyRing, config: w.config });
      expect(await d.pendingCount()).toBe(2);
      expect((await d.drainOnce()).delivered).toBe(2);
      expect(await d.pendingCount()).toBe(0);
      for (const r of rows) expect((await db2.outbox.get(r.id))!.state).toBe('delivered');
    } finally {
      await db2.close();
    }
  });

  it('two dispatchers on two connections to one database never send a row twice', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await w.record(i % 2 ? 'ci' : 'moltbot')).id);
    const db2 = openSqliteStorage(w.dbPath);
    try {
      const a = w.dispatcher({ concurrency: 4 });
      const b = createDispatcher({ storage: db2, clock: w.clock, log: w.logs.log, keyRing: w.keyRing, config: w.config, concurrency: 4 });
      const [ra, rb] = await Promise.all([a.drainOnce(), b.drainOnce()]);
      expect(ra.delivered + rb.delivered).toBe(12);
      const seen = [...w.openclaw.requests, ...w.standard.requests].map((r) => r.headers['webhook-id']);
      expect(seen.sort()).toEqual([...ids].sort());
    } finally {
      await db2.close();
    }
  });

  it('notify() wakes an idle worker at once; stop() aborts a hung send and leaves the row due for the next start', async () => {
    const d = w.dispatcher({ pollIntervalMs: 60_000, timeoutMs: 10_000 });
    d.start();
    await new Promise((r) => setTimeout(r, 20));
    const first = await w.record('ci');
    d.notify();
    await until(async () => (await w.row(first.id)).state === 'delivered', 1_000);

    w.slow.script({ hang: true });
    const stuck = await w.record('slow');
    d.notify();
    await w.slow.waitForRequests(1, 1_000);
    const t = Date.now();
    await d.stop();
    expect(Date.now() - t).toBeLessThan(500);
    expect(await w.row(stuck.id)).toMatchObject({ state: 'pending', next_attempt_at: w.clock.now(), lease_owner: null });

    expect((await w.dispatcher().drainOnce()).delivered).toBe(1);
    expect(w.slow.requests.map((r) => r.headers['webhook-id'])).toEqual([stuck.id, stuck.id]);
  });
});

describe('no secrets at rest or in logs', () => {
  it('the OpenClaw token and the signing key appear in no outbox row, audit entry, log line or database page', async () => {
    // A receiver echoing the token back in an error must not get it stored either.
    w.openclaw.script({ status: 500, body: `upstream said: Bearer ${HOOKS_TOKEN}` }, { status: 400, body: `{"ok":false,"error":"token ${HOOKS_TOKEN} rejected"}` });
    const a = await w.record('moltbot');
    await w.record('ci');
    const d = w.dispatcher();
    await d.drainOnce();
    w.clock.advance(5_000);
    await d.drainOnce();
    expect((await w.row(a.id)).state).toBe('dead');
    w.keyRing.rotate();

    const seeds = (JSON.parse(readFileSync(`${w.dir}/signing-keys.json`, 'utf8')).keys as { d?: string }[]).flatMap((k) => (k.d ? [k.d] : []));
    expect(seeds).toHaveLength(1);
    const secrets = [HOOKS_TOKEN, ...seeds, ...seeds.map((s) => Buffer.from(s, 'base64url').toString('base64')), ...seeds.map((s) => Buffer.from(s, 'base64url').toString('hex'))];
    const outbox = JSON.stringify(w.db.prepare('SELECT * FROM webhook_outbox').all());
    const audit = JSON.stringify(w.db.prepare('SELECT * FROM audit_log').all());
    w.db.pragma('wal_checkpoint(TRUNCATE)');
    const raw = databaseBytes(w.dbPath);
    for (const secret of secrets) {
      expect(outbox).not.toContain(secret);
      expect(audit).not.toContain(secret);
      expect(w.logs.text()).not.toContain(secret);
      expect(raw).not.toContain(secret);
    }
    expect(outbox).toContain('[redacted]');
    expect((await verifyAuditChain(w.storage)).ok).toBe(true);
  });
});
