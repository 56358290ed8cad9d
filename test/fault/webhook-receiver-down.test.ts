import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideRequest } from '../../src/broker/decide.ts';
import { startFaultProxy } from '../fakes/fault-proxy.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.ts';
import { startHarness, type Harness } from '../helpers/broker-harness.ts';
import { until } from '../helpers/chaos-process.ts';
import { figureLog } from '../helpers/chaos-report.ts';
import { runJit } from '../helpers/cli.ts';

/**
 * The webhook receiver down for a long stretch, time driven by the
 * harness's ManualClock: first it answers 503 with Retry-After, then it is
 * unreachable for most of a day. Every event is retried on the documented
 * schedule, keeps its webhook-id, and is delivered once the receiver is
 * back; an event that outlives the whole schedule goes dead (kept, not
 * lost) and `jit webhooks retry --all-dead` delivers it with the same id.
 */
const HOOKS = 'openclaw-hooks-fault-token-0123456789abcdef';
const write = (i: number) => ({ resource: 'vault', tier: 2, reason: `receiver outage ${i}`, vault_paths: [{ path: `homelab/data/apps/app${i}`, capabilities: ['read', 'update'] }] });

interface Row {
  id: string;
  request_id: string;
  type: string;
  state: string;
  attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
}

describe('fault: webhook receiver down for a long stretch', () => {
  let h: Harness;
  let receiver: WebhookReceiver;
  let proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  let token: string;
  const rows = (): Row[] => h.db.prepare('SELECT * FROM webhook_outbox ORDER BY created_at, id').all() as Row[];
  const settle = () => until(() => rows().every((r) => r.state !== 'delivering'), 10_000, 'no delivery in flight', 20);
  /** Moves the clock to when every pending row is due, delivers, and waits for the outcomes. */
  const nextRound = async () => {
    const due = Math.max(...rows().filter((r) => r.state === 'pending').map((r) => r.next_attempt_at));
    if (due > h.clock.now()) h.clock.set(due + 1);
    await h.broker.dispatcher.drainOnce();
    await settle();
  };

  beforeAll(async () => {
    let harness: Harness | undefined;
    receiver = await startWebhookReceiver({ jwks: () => harness!.broker.deps.keys.jwks(), now: () => harness!.clock.now(), bearer: HOOKS });
    proxy = await startFaultProxy(receiver.url);
    harness = await startHarness({ env: { OPENCLAW_HOOKS_URL: `${proxy.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS } });
    h = harness;
    token = await h.addAgent('moltbot');
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
    await receiver?.close();
  });

  it('retries with backoff through a ~21 h outage, keeps ids stable, and delivers everything once it is back', async () => {
    const f = figureLog('fault: webhook receiver down');
    const t0 = h.clock.now();
    // Phase A: the receiver is up but failing, asking for 10 minutes of quiet.
    receiver.script(...Array.from({ length: 6 }, () => ({ status: 503, headers: { 'retry-after': '600' } })));
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await h.call('POST', '/jit/request', { token, body: write(i) });
      ids.push(res.body.id);
    }
    for (const id of ids.slice(0, 3)) await decideRequest(h.broker.deps, id, { approver: 'telegram:111', decision: 'approve' });
    for (const id of ids.slice(3, 5)) await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'deny', reason: 'not now' });
    expect((await h.call('POST', `/jit/requests/${ids[5]}/revoke`, { token })).status).toBe(200);
    await receiver.waitForRequests(6, 10_000);
    await settle();
    const firstIds = new Map(receiver.requests.map((r) => [String(r.headers['webhook-id']), r]));
    expect(firstIds.size).toBe(6);
    expect(rows().every((r) => r.state === 'pending' && r.attempts === 1 && r.last_status === 503)).toBe(true);
    const waits = rows().map((r) => r.next_attempt_at - h.clock.now());
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(600_000 - 1_000); // Retry-After beats the 5 s schedule
    f.line(`attempt 1: 6 events → 503 Retry-After 600 → next attempt in ${Math.round(Math.min(...waits) / 1000)}-${Math.round(Math.max(...waits) / 1000)} s`);

    // Phase B: the receiver is gone (every connection dropped) for attempts 2..7.
    proxy.setFault(() => 'reset');
    for (let attempt = 2; attempt <= 7; attempt++) {
      const before = proxy.seen.length;
      await nextRound();
      const r = rows();
      expect(r.every((x) => x.state === 'pending' && x.attempts === attempt)).toBe(true);
      expect(r.every((x) => x.last_error?.startsWith('network error'))).toBe(true);
      const gaps = r.map((x) => x.next_attempt_at - h.clock.now());
      f.line(`attempt ${attempt} at +${((h.clock.now() - t0) / 3_600_000).toFixed(2)} h: ${proxy.seen.length - before} connections dropped → next in ${(Math.min(...gaps) / 60_000).toFixed(1)}-${(Math.max(...gaps) / 60_000).toFixed(1)} min`);
    }
    const downHours = (h.clock.now() - t0) / 3_600_000;
    expect(receiver.requests).toHaveLength(6); // nothing got through while down

    // Phase C: back; the 8th (last scheduled) attempt delivers.
    proxy.setFault(undefined);
    await nextRound();
    const final = rows();
    expect(final.every((r) => r.state === 'delivered' && r.attempts === 8)).toBe(true);
    const delivered = receiver.requests.slice(6);
    expect(delivered).toHaveLength(6);
    for (const d of delivered) {
      expect(d.verification.ok).toBe(true);
      expect(d.answer).toBe(200);
      const id = String(d.headers['webhook-id']);
      expect(firstIds.has(id)).toBe(true); // the same id as on the first attempt
      expect(d.body).toBe(firstIds.get(id)!.body); // and the same body
      expect(d.headers['idempotency-key']).toBe(id);
    }
    const retries = h.db.prepare(`SELECT COUNT(*) FROM audit_log WHERE event = 'webhook.retry'`).pluck().get() as number;
    f.line(`back at +${((h.clock.now() - t0) / 3_600_000).toFixed(2)} h: 6/6 delivered on attempt 8, same webhook-id and body as attempt 1, signatures valid; ${retries} webhook.retry audit entries`);
    f.set('events', 6);
    f.set('attempts_each', 8);
    f.set('down_hours', downHours.toFixed(1));
    f.set('delivered', final.filter((r) => r.state === 'delivered').length);
    f.set('lost', 6 - final.filter((r) => r.state === 'delivered').length);
    f.set('ids_changed', delivered.filter((d) => !firstIds.has(String(d.headers['webhook-id']))).length);
    f.print();
  }, 60_000);

  it('an event that outlives the whole schedule goes dead, is kept, and `jit webhooks retry --all-dead` delivers it', async () => {
    const f = figureLog('fault: webhook dead letter and operator retry');
    proxy.setFault(() => 'reset');
    const res = await h.call('POST', '/jit/request', { token, body: write(9) });
    await decideRequest(h.broker.deps, res.body.id, { approver: 'local-cli', decision: 'deny' });
    await until(() => rows().some((r) => r.request_id === res.body.id && r.attempts >= 1 && r.state !== 'delivering'), 10_000, 'first attempt');
    const id = rows().find((r) => r.request_id === res.body.id)!.id;
    const started = h.clock.now();
    for (let i = 0; i < 10 && rows().find((r) => r.id === id)!.state !== 'dead'; i++) await nextRound();
    const dead = rows().find((r) => r.id === id)!;
    expect(dead).toMatchObject({ state: 'dead', attempts: 8 });
    f.line(`receiver down throughout: dead after ${dead.attempts} attempts over ${((h.clock.now() - started) / 3_600_000).toFixed(1)} h: ${dead.last_error?.slice(0, 80)}`);

    proxy.setFault(undefined);
    const seen = receiver.requests.length;
    const retry = await runJit(['webhooks', 'retry', '--all-dead'], { JIT_DB: join(h.dir, 'jit.db'), JIT_POLICIES: h.policiesDir, OPENCLAW_HOOKS_URL: `${proxy.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS });
    expect(retry.code, retry.stderr).toBe(0);
    await until(() => rows().find((r) => r.id === id)!.state === 'delivered', 10_000, 'delivery after the operator retry');
    const got = receiver.requests.slice(seen);
    expect(got.map((r) => r.headers['webhook-id'])).toEqual([id]);
    expect(got[0]!.verification.ok).toBe(true);
    f.line(`jit webhooks retry --all-dead (exit ${retry.code}) → delivered by the running broker with the same webhook-id`);
    f.set('dead_then_delivered', 1);
    f.set('lost', 0);
    f.print();
  }, 60_000);
});
