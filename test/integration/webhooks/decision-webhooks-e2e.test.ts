import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { sweep } from '../../../src/broker/lifecycle.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { runJit } from '../../helpers/cli.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { join } from 'node:path';

/**
 * Decisions reach the agent's OpenClaw session as signed webhooks, whoever
 * made them: the HTTP API, the local CLI, the sweep.
 */
const HOOKS_TOKEN = 'openclaw-hooks-token-for-tests-0123456789';
let h: Harness;
let receiver: WebhookReceiver;
let token: string;

beforeEach(async () => {
  let harness: Harness | undefined;
  receiver = await startWebhookReceiver({ jwks: () => harness!.broker.deps.keys.jwks(), now: () => harness!.clock.now(), bearer: HOOKS_TOKEN });
  harness = await startHarness({ env: { OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN } });
  h = harness;
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
  await receiver.close();
});

const write = { resource: 'vault', tier: 2, reason: 'rotate the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

async function pendingId(): Promise<string> {
  const res = await h.call('POST', '/jit/request', { token, body: write });
  expect(res.status).toBe(202);
  return res.body.id;
}

describe('decision webhooks to OpenClaw', () => {
  it('pushes a signed approval with the exact claim call', async () => {
    const id = await pendingId();
    await decideRequest(h.broker.deps, id, { approver: 'telegram:42', decision: 'approve' });
    const [hook] = await receiver.waitForRequests(1);
    expect(hook!.path).toBe('/hooks/agent');
    expect(hook!.answer).toBe(200);
    expect(hook!.verification.ok).toBe(true);
    expect(hook!.headers['idempotency-key']).toBe(hook!.headers['webhook-id']);
    const body = JSON.parse(hook!.body);
    expect(body).toMatchObject({ name: 'JIT broker', sessionKey: 'hook:jit:moltbot', wakeMode: 'now', deliver: false });
    expect(body.message).toContain(id);
    expect(body.message).toContain(`/jit/requests/${id}/claim`);
    expect(body.message).toMatch(/approved/i);
    expect(hook!.body).not.toContain(token);
    expect(hook!.body).not.toContain(HOOKS_TOKEN);
    // The dispatcher counts the outcome once it is recorded.
    let scraped = '';
    for (let i = 0; i < 50 && !/jit_webhook_deliveries_total\{[^}]*outcome="delivered"[^}]*\} 1/.test(scraped); i++) {
      await new Promise((r) => setTimeout(r, 20));
      scraped = (await h.call('GET', '/metrics')).body as string;
    }
    expect(scraped).toMatch(/jit_webhook_deliveries_total\{[^}]*outcome="delivered"[^}]*target="openclaw"[^}]*\} 1/);
  });

  it('pushes denials, timeouts and revocations', async () => {
    const denied = await pendingId();
    await decideRequest(h.broker.deps, denied, { approver: 'local-cli', decision: 'deny', reason: 'not today' });
    // Delivered and recorded before the clock jumps ten minutes, past the delivery's lease.
    const outboxState = (id: string) => h.db.prepare('SELECT state FROM webhook_outbox WHERE request_id = ?').pluck().get(id);
    for (let i = 0; i < 500 && outboxState(denied) !== 'delivered'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(outboxState(denied)).toBe('delivered');
    const timedOut = await pendingId();
    h.clock.advance(601_000);
    await sweep(h.broker.deps);
    const revoked = await pendingId();
    await h.call('POST', `/jit/requests/${revoked}/revoke`, { token });
    const hooks = await receiver.waitForRequests(3);
    expect(hooks).toHaveLength(3);
    const messages = hooks.map((r) => JSON.parse(r.body).message as string);
    expect(messages.find((m) => m.includes(denied))).toMatch(/denied/i);
    expect(messages.find((m) => m.includes(timedOut))).toMatch(/timed out|timed_out/i);
    expect(messages.find((m) => m.includes(revoked))).toMatch(/revoked/i);
    expect(hooks.every((r) => r.verification.ok)).toBe(true);
  });

  it('delivers a decision made with `jit approve` from another process', async () => {
    const id = await pendingId();
    const cli = await runJit(['approve', id], {
      JIT_DB: join(h.dir, 'jit.db'),
      JIT_POLICIES: h.policiesDir,
      OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`,
      OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN,
      VAULT_ADDR: h.proxy.url,
      VAULT_TOKEN: 'unused-by-approve',
    });
    expect(cli.code, cli.stderr).toBe(0);
    // The CLI stamped the event with the real time; bring the broker's manual clock up to it.
    h.clock.set(Date.now() + 1_000);
    const [hook] = await receiver.waitForRequests(1, 10_000);
    expect(JSON.parse(hook!.body).message).toContain(id);
    expect(hook!.verification.ok).toBe(true);
  });

  it('reports the outbox depth in /healthz while the receiver is down', async () => {
    receiver.script({ status: 503 }, { status: 503 });
    const id = await pendingId();
    await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    await receiver.waitForRequests(1);
    const health = await h.call('GET', '/healthz');
    expect(health.body.outbox_pending).toBe(1);
  });
});
