import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackData } from '../../src/telegram/index.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../fakes/telegram-emulator/index.ts';
import { startHarness, type Harness } from '../helpers/broker-harness.ts';
import { sleep, until } from '../helpers/chaos-process.ts';
import { figureLog } from '../helpers/chaos-report.ts';

/**
 * Telegram down and back, with the whole broker in-process and its bot on
 * the Telegram emulator: while every Bot API call fails (dropped
 * connections, 500s, a 429 with retry_after), requests stay pending, the
 * broker keeps serving, and nothing crashes; once Telegram answers again,
 * every pending request is posted exactly once and taps work.
 */
const CHAT = -100424242;
const ALICE = 111;
const BOT_TOKEN = '7000000003:AAH-fault-token_abcdefghijklmnopqrstuvwx';
const METHODS = ['sendMessage', 'editMessageText', 'getUpdates', 'answerCallbackQuery', 'getMe', 'setMyCommands', 'deleteWebhook'];
const tier2 = (i: number) => ({ resource: 'vault', tier: 2, reason: `while Telegram is down ${i}`, vault_paths: [{ path: `homelab/data/apps/app${i}`, capabilities: ['read', 'update'] }] });
const tier1 = { resource: 'vault', tier: 1, reason: 'tier 1 during the outage', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };

describe('fault: Telegram down and back', () => {
  let tg: TelegramEmulator;
  let h: Harness;
  let token: string;
  const messagesFor = (id: string) => tg.botMessages(CHAT).filter((m) => m.text?.includes(id));

  beforeAll(async () => {
    tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'approvals' }], maxLongPollSeconds: 1 });
    h = await startHarness({
      env: { TELEGRAM_BOT_TOKEN: BOT_TOKEN, TELEGRAM_CHAT_ID: String(CHAT), TELEGRAM_APPROVERS: String(ALICE), TELEGRAM_API_ROOT: tg.url },
      start: { telegram: { syncIntervalMs: 200, pollTimeoutSeconds: 1, callTimeoutSeconds: 2, errorBackoffMs: 100, restartDelayMs: 100, retry: { maxAttempts: 2, maxRetryAfterSeconds: 0, baseDelayMs: 50 } } },
    });
    token = await h.addAgent('moltbot');
    await h.broker.telegram!.ready;
  });
  afterAll(async () => {
    tg?.clearFaults();
    await h?.close();
    await tg?.close();
  });

  it('keeps requests pending through an outage and posts each once when Telegram is back', async () => {
    const f = figureLog('fault: telegram down and back');
    const callsBefore = tg.calls().length;
    // Down: connections dropped for polling and posting, 500s for the rest.
    for (const m of METHODS) tg.failNext(m, m === 'getUpdates' || m === 'sendMessage' ? { kind: 'drop' } : { kind: 'server_error' }, 100_000);

    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await h.call('POST', '/jit/request', { token, body: tier2(i) });
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    }
    await sleep(1_800); // sync passes and polls fail meanwhile
    const issued = await h.call('POST', '/jit/request', { token, body: tier1 });
    expect(issued.status).toBe(201);
    const health = await h.call('GET', '/healthz');
    expect(health.status).toBe(200);
    const statuses = await Promise.all(ids.map(async (id) => (await h.call('GET', `/jit/requests/${id}`, { token })).body.status));
    expect(statuses.every((s) => s === 'pending')).toBe(true);
    const failedCalls = tg.calls().slice(callsBefore).filter((c) => c.status !== 200);
    const byMethod = new Map<string, number>();
    for (const c of failedCalls) byMethod.set(c.method, (byMethod.get(c.method) ?? 0) + 1);
    f.line(`down 1.8 s: ${failedCalls.length} Bot API calls failed (${[...byMethod].map(([m, n]) => `${m} ${n}`).join(', ')}); ${ids.length} tier-2 requests pending, none posted: ${ids.every((id) => messagesFor(id).length === 0)}`);
    f.line(`down: tier-1 request ${issued.status}, /healthz ${health.status} telegram=${health.body.telegram}`);
    expect(ids.every((id) => messagesFor(id).length === 0)).toBe(true);

    // Back.
    const back = Date.now();
    tg.clearFaults();
    await until(() => ids.every((id) => messagesFor(id).length > 0), 20_000, 'every pending request posted');
    const postedAfter = Date.now() - back;
    await sleep(1_000); // a few more passes: nothing may be posted twice
    const counts = ids.map((id) => messagesFor(id).length);
    f.line(`back: all ${ids.length} posted ${postedAfter} ms after Telegram recovered; messages per request ${counts.join(',')}`);
    expect(counts.every((n) => n === 1)).toBe(true);

    // Taps work again, and the message shows the outcome.
    const m = messagesFor(ids[0]!)[0]!;
    tg.tap(ALICE, m.message_id, callbackData('approve', ids[0]!));
    await until(async () => (await h.broker.deps.storage.requests.get(ids[0]!))?.status === 'approved', 10_000, 'approval by tap');
    await until(() => tg.buttons(messagesFor(ids[0]!)[0]!).length === 0, 10_000, 'message edited');
    const health2 = await h.call('GET', '/healthz');
    f.line(`back: tap approved ${ids[0]!.slice(0, 12)}…, message edited; /healthz telegram=${health2.body.telegram}`);

    f.set('failed_bot_api_calls', failedCalls.length);
    f.set('requests_kept_pending', ids.length);
    f.set('posted_once', counts.filter((n) => n === 1).length);
    f.set('duplicates', counts.filter((n) => n > 1).length);
    f.print();
  }, 60_000);

  it('honours 429 retry_after and posts once afterwards', async () => {
    const f = figureLog('fault: telegram 429 retry_after');
    tg.failNext('sendMessage', { kind: 'retry_after', seconds: 2 });
    const t0 = Date.now();
    const res = await h.call('POST', '/jit/request', { token, body: tier2(99) });
    const id = res.body.id as string;
    await until(() => messagesFor(id).length > 0, 15_000, 'post after retry_after');
    const waited = Date.now() - t0;
    await sleep(500);
    f.line(`sendMessage answered 429 retry_after=2: posted after ${waited} ms, ${messagesFor(id).length} message(s)`);
    f.set('waited_ms', waited);
    f.print();
    expect(waited).toBeGreaterThanOrEqual(1_900);
    expect(messagesFor(id)).toHaveLength(1);
  }, 30_000);
});
