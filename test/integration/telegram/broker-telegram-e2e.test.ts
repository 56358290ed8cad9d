import { afterEach, describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES } from '../../../src/http/body.ts';
import { callbackData } from '../../../src/telegram/index.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/** The whole broker, its bot talking to the emulator through TELEGRAM_API_ROOT. */
const CHAT = -100777;
const ALICE = 111;
const BOB = 222;
const MALLORY = 999;
const BOT_TOKEN = '7000000002:AAH-e2e-token_abcdefghijklmnopqrstuvwx';

let h: Harness;
let tg: TelegramEmulator;
afterEach(async () => {
  await h?.close();
  await tg?.close();
});

async function start(extra: Record<string, string> = {}) {
  tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'approvals' }], maxLongPollSeconds: 1 });
  h = await startHarness({
    env: {
      TELEGRAM_BOT_TOKEN: BOT_TOKEN,
      TELEGRAM_CHAT_ID: String(CHAT),
      TELEGRAM_APPROVERS: `${ALICE},${BOB}`,
      TELEGRAM_API_ROOT: tg.url,
      ...extra,
    },
    start: { telegram: { syncIntervalMs: 200, pollTimeoutSeconds: 1, callTimeoutSeconds: 5, errorBackoffMs: 50, restartDelayMs: 100 } },
  });
}

const write = { resource: 'vault', tier: 2, reason: 'rotate <the> web key & more', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

describe('Telegram approval through the running broker', () => {
  it('posts the request, applies an approver\'s tap once, and edits the message', async () => {
    await start();
    const token = await h.addAgent('moltbot');
    const res = await h.call('POST', '/jit/request', { token, body: write });
    expect(res.status).toBe(202);
    const id: string = res.body.id;
    const posted = await tg.waitFor(() => tg.botMessages(CHAT).find((m) => m.text?.includes(id)), 5_000, 'approval message');
    expect(posted.text).toContain('moltbot');
    expect(posted.text).toContain('rotate <the> web key & more');
    expect(posted.text).toContain('homelab/data/apps/web');
    expect(tg.buttons(posted)).toEqual([callbackData('approve', id), callbackData('deny', id), `n:${id}`]);

    tg.tap(MALLORY, posted.message_id, callbackData('approve', id));
    await tg.waitFor(() => tg.callbackAnswers().length >= 1, 5_000, 'refusal');
    expect((await h.broker.deps.storage.requests.get(id))?.status).toBe('pending');

    tg.tap(ALICE, posted.message_id, callbackData('approve', id));
    tg.tap(BOB, posted.message_id, callbackData('approve', id), { force: true });
    await tg.waitFor(async () => (await h.broker.deps.storage.requests.get(id))?.status === 'approved', 5_000, 'approval');
    const edited = await tg.waitFor(() => tg.botMessages(CHAT).find((m) => m.message_id === posted.message_id && tg.buttons(m).length === 0), 5_000, 'edited message');
    expect(edited.text).toMatch(/approved/i);
    expect(edited.text).toContain('homelab/data/apps/web');
    expect((await h.broker.deps.storage.requests.get(id))?.decided_by).toBe(`telegram:${ALICE}`);

    const claim = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(claim.status).toBe(201);
    const health = await h.call('GET', '/healthz');
    expect(health.body.telegram).toBe('ok');
    const refused = h.db.prepare(`SELECT COUNT(*) FROM audit_log WHERE event = 'vote.refused' AND actor = ?`).pluck().get(`telegram:${MALLORY}`);
    expect(refused).toBe(1);
    expect(h.logs()).not.toContain(BOT_TOKEN);
  });

  it('20 racing taps give one decision, and 20 racing claims one credential', async () => {
    await start();
    const token = await h.addAgent('moltbot');
    const id: string = (await h.call('POST', '/jit/request', { token, body: write })).body.id;
    const posted = await tg.waitFor(() => tg.botMessages(CHAT).find((m) => m.text?.includes(id)), 5_000, 'approval message');
    for (let i = 0; i < 20; i++) {
      const user = i % 2 ? ALICE : BOB;
      tg.tap(user, posted.message_id, callbackData(i % 5 === 4 ? 'deny' : 'approve', id), { force: true });
    }
    await tg.waitFor(() => tg.callbackAnswers().length >= 20, 10_000, '20 callback answers');
    const decided = (await h.broker.deps.storage.requests.get(id))!;
    expect(['approved', 'denied']).toContain(decided.status);
    const decisions = h.db.prepare(`SELECT COUNT(*) FROM audit_log WHERE request_id = ? AND event IN ('request.approved', 'request.denied')`).pluck().get(id);
    expect(decisions).toBe(1);
    if (decided.status === 'approved') {
      const claims = await Promise.all(Array.from({ length: 20 }, () => h.call('POST', `/jit/requests/${id}/claim`, { token })));
      expect(claims.filter((c) => c.status === 201)).toHaveLength(1);
      expect(claims.filter((c) => c.status === 409)).toHaveLength(19);
    }
    const credentials = h.db.prepare(`SELECT COUNT(*) FROM credentials WHERE request_id = ? AND state NOT IN ('failed', 'abandoned')`).pluck().get(id);
    expect(credentials).toBe(decided.status === 'approved' ? 1 : 0);
  });

  it('routes webhook-mode updates and refuses a wrong secret', async () => {
    await start({ TELEGRAM_WEBHOOK_SECRET: 'webhook-secret_0123456789', JIT_PUBLIC_URL: 'http://127.0.0.1:1' });
    const wrong = await h.call('POST', '/telegram/webhook', { body: { update_id: 1 }, headers: { 'x-telegram-bot-api-secret-token': 'nope' } });
    expect(wrong.status).toBe(401);
    const missing = await h.call('POST', '/telegram/webhook', { body: { update_id: 2 } });
    expect(missing.status).toBe(401);
    await h.broker.telegram!.ready;
    expect(h.broker.telegram!.mode).toBe('webhook');
    const right = await h.call('POST', '/telegram/webhook', { body: { update_id: 3 }, headers: { 'x-telegram-bot-api-secret-token': 'webhook-secret_0123456789' } });
    expect(right.status).toBe(200);
    expect(tg.webhookInfo().url).toBe('http://127.0.0.1:1/telegram/webhook');
    // The route the composition root mounts is under the API's body limit, with the right secret too.
    const huge = await h.call('POST', '/telegram/webhook', {
      body: { update_id: 4, padding: 'x'.repeat(MAX_BODY_BYTES) },
      headers: { 'x-telegram-bot-api-secret-token': 'webhook-secret_0123456789' },
    });
    expect(huge.status).toBe(413);
    expect(huge.body).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
  });
});
